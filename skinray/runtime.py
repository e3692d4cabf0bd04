"""Connecting to Ray: an existing cluster when there is one, else a local instance."""

from __future__ import annotations

import os
import socket


def init_ray(address: str | None = None, dashboard: bool = False) -> None:
    """Join ``address`` / ``RAY_ADDRESS`` / the job's cluster, or start a local Ray.

    A local Ray is started with twice as many logical CPUs as cores (at least 4): Train workers
    hold whole CPUs, and on a small machine Ray Data would otherwise get none and training would
    hang waiting for data. ``dashboard=True`` (the tuner) also starts the dashboard on a free
    loopback port and points Ray's state API at it for every process: Ray Train releases the
    workers of a run stopped from outside (an ASHA-stopped trial) through that API, which
    otherwise looks for "the" Ray on the machine and fails when there are several.
    """
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    extra: dict = {"include_dashboard": False}
    if dashboard:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        extra = {"include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": port,
                 "runtime_env": {"env_vars": {"RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{port}"}}}
    ray.init(num_cpus=max(4, 2 * (os.cpu_count() or 1)), log_to_driver=True, configure_logging=False, **extra)
