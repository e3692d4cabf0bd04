"""Connecting to Ray: an existing cluster when there is one, else a local instance."""

from __future__ import annotations

import contextlib
import os
import socket


def init_ray(address: str | None = None) -> None:
    """Join ``address`` / ``RAY_ADDRESS`` / the job's cluster, or start a local Ray.

    A local Ray is started with twice as many logical CPUs as cores (at least 4): Train workers
    hold whole CPUs, and on a small machine Ray Data would otherwise get none and training would
    hang waiting for data.

    Its dashboard listens on a free loopback port, and ``RAY_API_SERVER_ADDRESS`` points Ray's
    state API at it for this process and every Ray process it starts. Ray Train's placement
    group cleaner asks the state API whether the run's controller is alive; left to find "the"
    Ray on the machine, it can ask another instance (any other Ray with a dashboard, e.g. a
    local cluster or `serve run`), hear "no such actor" and remove a live run's workers. Pinned,
    it also frees the workers of runs stopped from outside (ASHA-stopped Tune trials).
    """
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Inherited by the raylet this call starts, and so by every worker of this instance.
    os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
    with _job_agent_port(_free_port()):
        ray.init(num_cpus=max(4, 2 * (os.cpu_count() or 1)), log_to_driver=True, configure_logging=False,
                 include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=port)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _job_agent_port(port: int):
    """Give the local Ray's job agent ``port``. ``ray.init`` always uses 52365 (``ray start`` has
    ``--dashboard-agent-listen-port``); with another Ray on the machine holding it, the agent
    fails and every job submission (the endpoint's archive jobs) answers "No available agent"."""
    from ray._private import parameter

    original = parameter.RayParams

    class RayParams(original):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("dashboard_agent_listen_port", port)
            super().__init__(*args, **kwargs)

    parameter.RayParams = RayParams
    try:
        yield
    finally:
        parameter.RayParams = original
