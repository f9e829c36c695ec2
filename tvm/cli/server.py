"""``tvm start``, ``tvm stop``, ``tvm logs``: the service itself."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import click

from tvm.config.settings import Settings
from tvm.utils.logs import configure_logging


def _pidfile(settings: Settings) -> Path:
    return settings.run_dir / "tvm.pid"


@click.command()
@click.option("--host", default=None, help="listen address [TVM_HOST, default 127.0.0.1]")
@click.option("--port", type=int, default=None, help="listen port [TVM_PORT, default 8000]")
@click.option("--driver", default=None, help="auto|namespace|gvisor|qemu|firecracker [TVM_DRIVER]")
@click.option("--debug", is_flag=True, help="debug logging")
def start(host: str | None, port: int | None, driver: str | None, debug: bool) -> None:
    """Run TVM in the foreground (all-in-one). Ctrl-C stops it and cleans up."""
    import uvicorn

    from tvm.pyrovm.api import create_app

    flags: dict[str, Any] = {"host": host, "port": port, "driver": driver, "log_level": "debug" if debug else None}
    settings = Settings(**{k: v for k, v in flags.items() if v is not None})
    configure_logging(settings, component="tvm")
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    pidfile = _pidfile(settings)
    pidfile.write_text(str(os.getpid()))
    try:
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=debug,
        )
    finally:
        with contextlib.suppress(FileNotFoundError):
            pidfile.unlink()


@click.command()
def stop() -> None:
    """Stop a TVM started with ``tvm start`` (by its pid file)."""
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
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            click.echo(f"stopped TVM (pid {pid})")
            return
        time.sleep(0.1)
    raise click.ClickException(f"TVM (pid {pid}) did not stop within 10 s; try: kill -9 {pid}")


@click.command()
@click.option("--component", type=click.Choice(["api", "tvm"]), default="tvm", show_default=True)
@click.option("--follow", "-f", is_flag=True, help="keep printing new lines")
@click.option("--lines", "-n", type=int, default=100, show_default=True)
def logs(component: str, follow: bool, lines: int) -> None:
    """Print the logs of a component."""
    settings = Settings()
    path = settings.logs_dir / f"{component}.log"
    if not path.exists():
        raise click.ClickException(f"no log at {path}: has `tvm start` run with this TVM_HOME?")
    cmd = ["tail", "-n", str(lines)] + (["-F"] if follow else []) + [str(path)]
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run(cmd, check=False)


COMMANDS = [start, stop, logs]
