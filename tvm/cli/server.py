"""``tvm start``, ``tvm stop``, ``tvm logs``: the service itself."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from tvm.cli.lima import lima_options, start_lima, stop_lima
from tvm.config.settings import Settings
from tvm.utils.logs import configure_logging


def _pidfile(settings: Settings) -> Path:
    return settings.run_dir / "tvm.pid"


ROLES = ("all", "all-in-one", "gateway", "worker")  # all-in-one: the image's name for all
WORKER_DEFAULT_PORT = 8080  # a standalone worker's port (the image tvm/pyrovm)


@click.command()
@click.option("--host", default=None, help="listen address [TVM_HOST, default 127.0.0.1]")
@click.option("--port", type=int, default=None, help="listen port [TVM_PORT, default 8000]")
@click.option("--driver", default=None, help="auto|namespace|gvisor|qemu|firecracker [TVM_DRIVER]")
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default="all",
    show_default=True,
    help="all: gateway + local workers; gateway: only the gateway (workers from "
    "TVM_WORKERS / TVM_WORKERS_DNS); worker: only a worker (port 8080 by default)",
)
@click.option(
    "--workers",
    "worker_count",
    type=click.IntRange(0, 64),
    default=None,
    help="worker processes for --role all; 0 runs the sandboxes in the gateway's own "
    "process [TVM_WORKER_COUNT, default 0]",
)
@click.option("--debug", is_flag=True, help="debug logging (with --lima: print each command)")
@lima_options
def start(
    host: str | None,
    port: int | None,
    driver: str | None,
    role: str,
    worker_count: int | None,
    debug: bool,
    lima: bool,
    memory: str,
    cpus: int,
    instance: str,
) -> None:
    """Run TVM in the foreground. Ctrl-C (or SIGTERM, or `tvm stop`) stops it all and
    cleans up.

    By default the gateway listens on 127.0.0.1:8000 and runs the sandboxes itself.
    With --workers N it runs N worker processes on loopback ports (TVM_WORKER_PORT and
    up) instead; a worker that dies is restarted.

    With --lima it brings up (or starts) a Lima VM running K3s + Istio, deploys TVM
    into it (deploy/k8s/overlays/dev) and forwards the API to 127.0.0.1:PORT (8080).
    """
    if lima:
        start_lima(memory=memory, cpus=cpus, instance=instance, port=port, debug=debug)
        return
    flags: dict[str, Any] = {
        "host": host,
        "port": port,
        "driver": driver,
        "log_level": "debug" if debug else None,
        "worker_count": worker_count,
    }
    settings = Settings(**{k: v for k, v in flags.items() if v is not None})
    role = "all" if role == "all-in-one" else role
    if role == "worker":
        if port is None and "TVM_PORT" not in os.environ:
            settings = settings.model_copy(update={"port": WORKER_DEFAULT_PORT})
        _run_worker(settings, debug)
    else:
        _run_gateway(settings, role, driver, debug)


KEEP_ALIVE_SECONDS = 100


def _serve(app: Any, settings: Settings, debug: bool) -> None:
    import uvicorn

    # Idle connections stay open longer than clients keep them in their pools
    # (E2B's SDK: 90 s), so that no client reuses one the server just closed.
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None,
                access_log=debug, timeout_keep_alive=KEEP_ALIVE_SECONDS)  # fmt: skip


@contextlib.contextmanager
def _pidfile_for(settings: Settings) -> Iterator[None]:
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    pidfile = _pidfile(settings)
    pidfile.write_text(str(os.getpid()))
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            pidfile.unlink()


def _exit_on_sigterm() -> None:
    """uvicorn re-raises SIGTERM after its graceful shutdown: make that an exit that
    runs our cleanup (``finally``) instead of dying on the spot."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def _run_worker(settings: Settings, debug: bool) -> None:
    from tvm.pyroshell.worker_processes import SUPERVISED_ENV
    from tvm.pyrovm.service import create_app

    configure_logging(settings, component="tvm")
    _exit_on_sigterm()
    if os.environ.get(SUPERVISED_ENV):
        _serve(create_app(settings), settings, debug)
        return
    with _pidfile_for(settings):
        _serve(create_app(settings), settings, debug)


def _run_gateway(settings: Settings, role: str, driver: str | None, debug: bool) -> None:
    from tvm.pyroshell.app import create_gateway_app
    from tvm.pyroshell.worker_processes import WorkerProcesses

    configure_logging(settings, component="api")
    _exit_on_sigterm()
    supervisor = None
    embedded = role == "all" and settings.worker_count == 0
    if embedded:
        settings = settings.model_copy(update={"workers": [], "workers_dns": ""})
    elif role == "all":
        extra = (["--driver", driver] if driver else []) + (["--debug"] if debug else [])
        supervisor = WorkerProcesses(settings, settings.worker_count, extra)
        settings = settings.model_copy(update={"workers": supervisor.urls, "workers_dns": ""})
    elif not settings.workers and not settings.workers_dns:
        raise click.UsageError("--role gateway needs TVM_WORKERS or TVM_WORKERS_DNS")
    _one_gateway_per_sqlite(settings)
    with _pidfile_for(settings):
        try:
            if supervisor is not None:
                supervisor.start()
            _serve(create_gateway_app(settings, embedded=embedded), settings, debug)
        finally:
            if supervisor is not None:
                supervisor.stop()


def _one_gateway_per_sqlite(settings: Settings) -> None:
    """A second gateway on one SQLite file stops here with one clear line."""
    from tvm.pyroshell.replica import SingleGateway
    from tvm.pyroshell.store import database_url

    url = database_url(settings)
    if url.startswith("sqlite"):
        SingleGateway(url).check()


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (an exited process its parent has not reaped yet is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


@click.command()
@click.option("--lima", is_flag=True, help="stop the Lima VM of `tvm start --lima`")
@click.option("--instance", default="tvm", show_default=True, help="the Lima instance")
@click.option("--debug", is_flag=True, help="print each command before it runs")
def stop(lima: bool, instance: str, debug: bool) -> None:
    """Stop a TVM started with ``tvm start`` (by its pid file), or its Lima VM."""
    if lima:
        stop_lima(instance=instance, debug=debug)
        return
    settings = Settings()
    pidfile = _pidfile(settings)
    try:
        pid = int(pidfile.read_text())
    except (FileNotFoundError, ValueError):
        raise click.ClickException(f"TVM is not running (no pid file at {pidfile})") from None
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pidfile.unlink(missing_ok=True)
        raise click.ClickException(
            f"TVM (pid {pid}) was not running; removed stale pid file"
        ) from None
    for _ in range(300):
        if not _alive(pid):
            click.echo(f"stopped TVM (pid {pid})")
            return
        time.sleep(0.1)
    raise click.ClickException(f"TVM (pid {pid}) did not stop within 30 s; try: kill -9 {pid}")


COMMANDS = [start, stop]
