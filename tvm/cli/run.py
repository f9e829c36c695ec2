"""``tvm run``: run one program locally through the engine, or against a server."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import BinaryIO

import click

from tvm.api import CodeExecutionRequest, ExecutionResponse, FileSpec, LimitsIn, build_job
from tvm.config.catalog import load_catalog
from tvm.config.settings import Settings


async def _run_local(request: CodeExecutionRequest, settings: Settings) -> ExecutionResponse:
    from tvm.pyrovm import drivers
    from tvm.pyrovm.engine import Engine

    catalog = load_catalog()
    job = build_job(request, settings, catalog)
    engine = Engine(settings, catalog, drivers.choose(settings))
    await engine.start()
    try:
        return await engine.execute(job)
    finally:
        await engine.close()


def _run_remote(request: CodeExecutionRequest, url: str) -> ExecutionResponse:
    import httpx

    from tvm.client import Client, ops
    from tvm.errors import TVMError

    try:
        with Client(url.rstrip("/"), api_key=os.environ.get("TVM_API_KEY")) as client:
            return client.run(ops.execute(request))
    except TVMError as exc:
        raise click.ClickException(f"server answered {exc.status_code}: {exc.message}") from exc
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach {url}: {exc}") from exc


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--language", "-l", help="language name or alias (default: from the extension)")
@click.option("--version", "-v", "version", help="version selector (default: newest)")
@click.option(
    "--stdin", "stdin_file", type=click.File("rb"), help="file to feed as stdin ('-': ours)"
)
@click.option("--url", help="run on this TVM server instead of locally, e.g. http://127.0.0.1:8000")
@click.option(
    "--interactive",
    "-i",
    is_flag=True,
    help="stdin and output live (a terminal: the program gets a pty; Ctrl-C sends SIGINT)",
)
@click.option(
    "--timeout", "timeout_ms", type=int, help="wall-time limit of the run stage, in ms (and CPU)"
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(
    file: Path,
    language: str | None,
    version: str | None,
    stdin_file: BinaryIO | None,
    url: str | None,
    interactive: bool,
    timeout_ms: int | None,
    args: tuple[str, ...],
) -> None:
    """Run FILE in a fresh sandbox; print its output; exit with its exit code.

    Arguments after `--` are passed to the program. With --interactive, the
    program reads this terminal (or this command's stdin) as it runs.
    """
    language = language or load_catalog().for_file(file.name)
    if not language:
        raise click.UsageError(f"cannot tell the language of {file.name}; pass --language")
    if interactive and stdin_file is not None:
        raise click.UsageError("--interactive reads this command's own stdin; drop --stdin")
    stdin = stdin_file.read().decode(errors="replace") if stdin_file else ""
    request = CodeExecutionRequest(
        language=language,
        version=version,
        files=[FileSpec(name=None, content=file.read_text())],
        stdin=stdin,
        args=list(args),
        limits=LimitsIn(timeout_ms=timeout_ms, cpu_time_ms=timeout_ms),
    )
    if interactive:
        from tvm.cli.interactive import run_interactive
        from tvm.errors import TVMError

        try:
            response = run_interactive(request, url, Settings())
        except TVMError as exc:
            raise click.ClickException(exc.message) from exc
    elif url:
        response = _run_remote(request, url)
    else:
        response = asyncio.run(_run_local(request, Settings()))
    _exit_with(response, printed=interactive)


def _exit_with(response: ExecutionResponse, printed: bool) -> None:
    """Print what the run wrote (unless ``printed`` already, live) and exit as it did."""
    if response.compile is not None and response.compile.status != "ok":
        if not printed:
            sys.stderr.write(response.compile.stdout + response.compile.stderr)
        click.secho(f"compile failed: {response.compile.status}", fg="red", err=True)
        sys.exit(response.compile.exit_code or 1)
    stage = response.run
    if stage is None:
        raise click.ClickException(response.message or f"execution failed: {response.status}")
    if not printed:
        sys.stdout.write(stage.stdout)
        sys.stderr.write(stage.stderr)
    if stage.status not in ("ok", "runtime_error"):
        detail = f" ({stage.signal})" if stage.signal else ""
        click.secho(f"tvm: {stage.status}{detail}", fg="red", err=True)
    if stage.exit_code is not None:
        sys.exit(stage.exit_code)
    sys.exit(128 + 9 if stage.signal else 1)


COMMANDS = [run]
