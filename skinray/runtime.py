"""Connecting to Ray: an existing cluster when there is one, else a local instance.

The `skinray` commands are quiet (:func:`quiet_ray_output`): Ray's own lines (its loggers and its
C++ core worker in this process, and what its workers and actors print, forwarded here) go to a
log file whose path is printed once; a worker's own ``[skinray]`` lines (training progress) still
reach the terminal. ``-v`` / ``--verbose`` leaves Ray as it is.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import sys
import tempfile
import threading
import time

SKINRAY_MARK = "[skinray] "  # what a worker prints for the user starts with this
_quiet: dict = {}  # while quiet_ray_output() is on: log_path, file, handler, and what to restore


@contextlib.contextmanager
def quiet_ray_output(command: str, log_dir: str | None = None):
    """Within this context, Ray started by :func:`init_ray` writes its own lines to
    ``LOG_DIR/skinray-COMMAND-TIME-PID.log`` (default: the temporary folder's ``skinray-logs``,
    or ``SKINRAY_LOG_DIR``) instead of the terminal, and the path is printed once when Ray
    starts. On leaving, a Ray it started is shut down (its last lines go to the log too) and
    the terminal is given back. Yields the log path."""
    log_dir = log_dir or os.environ.get("SKINRAY_LOG_DIR") or os.path.join(tempfile.gettempdir(), "skinray-logs")
    name = f"skinray-{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    _quiet.clear()
    _quiet.update(log_path=os.path.join(log_dir, name), restore=[])
    try:
        yield _quiet["log_path"]
    finally:
        _end_quiet()


def is_quiet() -> bool:
    return bool(_quiet.get("log_path"))


def _open_log():
    if _quiet.get("file") is None:
        os.makedirs(os.path.dirname(_quiet["log_path"]), exist_ok=True)
        _quiet["file"] = open(_quiet["log_path"], "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        _quiet["handler"] = logging.StreamHandler(_quiet["file"])
        _quiet["handler"].setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return _quiet["file"]


def _ray_loggers_to_file() -> None:
    """Ray's Python loggers in this process ('ray', 'ray.data', ...) write to the log file, not
    the terminal. Called before and after ``ray.init`` (which may add a console handler)."""
    _open_log()
    ours = _quiet["handler"]
    for name in ["ray"] + [n for n in list(logging.Logger.manager.loggerDict) if n.startswith("ray.")]:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is not logging.FileHandler and isinstance(handler, logging.StreamHandler) \
                    and handler is not ours:
                logger.removeHandler(handler)
                _quiet["restore"].append(lambda lg=logger, h=handler: lg.addHandler(h))
        if (name in ("ray", "ray.data") or not logger.propagate) and ours not in logger.handlers:
            logger.addHandler(ours)
            _quiet["restore"].append(lambda lg=logger: lg.removeHandler(ours))


def _stderr_fd_to_log() -> None:
    """Ray's C++ core worker in this process writes its warnings to file descriptor 2 itself
    (e.g. "Actor with class name ... has constructor arguments in the object store"): fd 2 goes
    to the log file, and Python's ``sys.stderr`` (skinray's own lines, tracebacks, warnings)
    to a copy of the terminal's descriptor."""
    if "terminal_fd" in _quiet:
        return
    sys.stderr.flush()
    old = sys.stderr
    _quiet["terminal_fd"] = os.dup(2)
    os.dup2(_open_log().fileno(), 2)
    sys.stderr = os.fdopen(os.dup(_quiet["terminal_fd"]), "w", buffering=1,
                           encoding=getattr(old, "encoding", None) or "utf-8", errors="backslashreplace")

    def restore() -> None:  # run last: after the handlers below are given ``old`` back
        sys.stderr.flush()
        os.dup2(_quiet["terminal_fd"], 2)
        os.close(_quiet["terminal_fd"])
        sys.stderr.close()
        sys.stderr = old
    _quiet["restore"].append(restore)
    for handler in logging.getLogger().handlers:  # the CLI's own logging (basicConfig) keeps the terminal
        if isinstance(handler, logging.StreamHandler) and handler.stream is old:
            handler.setStream(sys.stderr)
            _quiet["restore"].append(lambda h=handler: h.setStream(old))


def _route_worker_lines(data: dict) -> None:
    """Replaces Ray's printer of the lines its workers and actors print: every line goes to the
    log file; a line with ``[skinray] `` in it is a worker's message for the user and is also
    printed, from that mark on, to this process's stdout (or stderr)."""
    from ray.experimental.tqdm_ray import RAY_TQDM_MAGIC  # Ray's own progress bars: dropped

    if not is_quiet():
        return
    who = data.get("actor_name") or data.get("task_name") or ""
    prefix = f"({who} pid={data.get('pid')}{', ip=' + str(data['ip']) if data.get('ip') else ''}) "
    sink = sys.stderr if data.get("is_err") else getattr(sys.stdout, "terminal", sys.stdout)
    log, handler = _open_log(), _quiet["handler"]
    handler.acquire()  # the file is shared with the logging handler
    try:
        for line in data.get("lines", []):
            if RAY_TQDM_MAGIC in line:
                continue
            log.write(prefix + line + "\n")
            at = line.find(SKINRAY_MARK)
            if at >= 0:
                print(line[at:], file=sink, flush=True)
    finally:
        handler.release()


class _MarkedLinesOnly(io.TextIOBase):
    """This process's stdout while Ray code in it prints for itself (Ray Tune's configuration
    table and trial status): a line with ``[skinray] `` in it goes to the terminal, from that
    mark on; any other line to the log file."""

    def __init__(self, terminal) -> None:
        super().__init__()
        self.terminal, self._pending, self._lock = terminal, "", threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            *lines, self._pending = (self._pending + text).split("\n")
            for line in lines:
                at = line.find(SKINRAY_MARK)
                if at >= 0:
                    print(line[at:], file=self.terminal, flush=True)
                else:
                    _open_log().write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.terminal.flush()


@contextlib.contextmanager
def ray_prints_to_log():
    """Within this context (quiet commands only), what this process prints goes to the log file
    except skinray's own lines: around Ray code that prints to stdout itself (``Tuner.fit``)."""
    if not is_quiet():
        yield
        return
    sys.stdout.flush()
    saved = sys.stdout
    sys.stdout = _MarkedLinesOnly(saved)
    try:
        yield
    finally:
        sys.stdout.write("\n")  # the last partial line, if any
        sys.stdout = saved


@contextlib.contextmanager
def _ray_init_log():
    """While a quiet ``ray.init(configure_logging=False)`` runs: it clears the 'ray' logger's
    handlers, so its warnings (e.g. on token authentication) would reach the terminal through
    logging's last resort; they go to the log file instead."""
    if not is_quiet():
        yield
        return
    saved, logging.lastResort = logging.lastResort, _quiet["handler"]
    try:
        yield
    finally:
        logging.lastResort = saved


def _quiet_before_init() -> None:
    import ray.data  # noqa: F401 (configures its loggers on import: redirected next)

    _ray_loggers_to_file()
    _stderr_fd_to_log()


def _quiet_after_init() -> None:
    import ray.data
    from ray._private import worker as ray_worker
    from ray._private.ray_logging import global_worker_stdstream_dispatcher

    _quiet["started"] = True
    _ray_loggers_to_file()
    global_worker_stdstream_dispatcher.remove_handler("ray_print_logs")
    global_worker_stdstream_dispatcher.remove_handler("skinray_logs")
    global_worker_stdstream_dispatcher.add_handler("skinray_logs", _route_worker_lines)
    _quiet["restore"].append(lambda: global_worker_stdstream_dispatcher.remove_handler("skinray_logs"))
    # The raylet's error messages to this driver ("(raylet) Task ServeController.graceful_shutdown
    # failed ..." when Serve shuts down) are printed by another thread through this function.
    saved_printer = ray_worker.print_to_stdstream
    ray_worker.print_to_stdstream = lambda data, ignore_prefix=False: _route_worker_lines(data)
    _quiet["restore"].append(lambda: setattr(ray_worker, "print_to_stdstream", saved_printer))
    # Ray Data: no progress bars, no "Execution plan" lines (datasets built from now on copy the
    # context, also those that Ray Train runs in its own actors)
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.enable_progress_bars, ctx.print_on_execution_start)
    ctx.enable_progress_bars = ctx.print_on_execution_start = False
    _quiet["restore"].append(lambda: setattr(ctx, "enable_progress_bars", saved[0])
                             or setattr(ctx, "print_on_execution_start", saved[1]))
    print(f"[skinray] Ray's messages: {_quiet['log_path']} (-v shows them here)", file=sys.stderr, flush=True)


def _end_quiet() -> None:
    if _quiet.get("started"):
        import ray

        try:
            ray.shutdown()  # now, while its last lines still go to the log
        except Exception:  # noqa: BLE001 (the command's result is already out)
            pass
    for restore in reversed(_quiet.get("restore", [])):
        restore()
    if _quiet.get("file") is not None:
        _quiet["file"].close()
    _quiet.clear()


def init_ray(address: str | None = None) -> None:
    """Join ``address`` / ``RAY_ADDRESS`` / the job's cluster, or start a local Ray.

    A local Ray is started with twice as many logical CPUs as cores (at least 4): Train workers
    hold whole CPUs, and on a small machine Ray Data would otherwise get none and training would
    hang waiting for data.

    Its dashboard listens on a free loopback port (``local_dashboard()``), and
    ``RAY_API_SERVER_ADDRESS`` points Ray's state API at it for every Ray process it starts
    (set while the raylet starts, then taken back: in this process it would override the
    address of every Jobs API client, so a job meant for another cluster ran here). Ray Train's placement
    group cleaner asks the state API whether the run's controller is alive; left to find "the"
    Ray on the machine, it can ask another instance (any other Ray with a dashboard, e.g. a
    local cluster or `serve run`), hear "no such actor" and remove a live run's workers. Pinned,
    it also frees the workers of runs stopped from outside (ASHA-stopped Tune trials).
    """
    import ray

    if ray.is_initialized():
        return
    if is_quiet():
        _quiet_before_init()
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        with _ray_init_log():
            ray.init(address=address, log_to_driver=True, configure_logging=not is_quiet())
        if is_quiet():
            _quiet_after_init()
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    # Inherited by the raylet this call starts, and so by every worker of this instance.
    with _env("RAY_API_SERVER_ADDRESS", url), _job_agent_port(_free_port()), _ray_init_log():
        ray.init(num_cpus=max(4, 2 * (os.cpu_count() or 1)), log_to_driver=True, configure_logging=False,
                 include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=port)
    _local["dashboard"] = url
    if is_quiet():
        _quiet_after_init()


_local: dict = {}


def local_dashboard() -> str | None:
    """The dashboard (and Jobs API) URL of the local Ray that ``init_ray`` started, else None."""
    return _local.get("dashboard")


@contextlib.contextmanager
def _env(name: str, value: str):
    """``os.environ[name] = value`` for the block, then as it was."""
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


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
