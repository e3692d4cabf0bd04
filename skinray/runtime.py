"""Connecting to Ray: an existing cluster when there is one, else a local instance."""

from __future__ import annotations

import os


def init_ray(address: str | None = None) -> None:
    """Join ``address`` / ``RAY_ADDRESS`` / the job's cluster, or start a local Ray.

    A local Ray is started with twice as many logical CPUs as cores (at least 4): Train workers
    hold whole CPUs, and on a small machine Ray Data would otherwise get none and training would
    hang waiting for data.
    """
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    ray.init(num_cpus=max(4, 2 * (os.cpu_count() or 1)), include_dashboard=False,
             log_to_driver=True, configure_logging=False)
