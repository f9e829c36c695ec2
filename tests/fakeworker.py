"""A fake pyrovm worker for gateway tests: the worker's HTTP contract, no sandboxes.

It validates with the real ``build_job`` and answers ``POST /api/v1/execute`` by
interpreting the program's first file as directives, one per line:

    out TEXT        stdout gets TEXT and a newline      err TEXT    the same on stderr
    hex HEX         raw bytes on stdout                  stdin       echo stdin to stdout
    args            print the args, space-separated      exit N      exit status N
    signal NAME     killed by NAME (e.g. SIGSEGV)        timeout     the wall time ran out
    oom             killed at the memory limit           flood       over the output limit
    sleep S         take S seconds                       cpu MS      report MS ms of CPU
    compile_error   (compiled languages) the compile stage fails

Every execution is appended to ``--journal`` (``start``/``end`` + the first line
of the program), so tests can prove what ran and how often, even after the
worker was killed. Run: ``python -m tests.fakeworker --port P [--journal F]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request

from tvm.api import CodeExecutionRequest, ExecutionResponse, Job, StageResult, build_job
from tvm.compat import piston
from tvm.config.catalog import load_catalog
from tvm.config.settings import Settings
from tvm.errors import CapacityError
from tvm.utils.web import AssumeJSON, install_error_handlers, install_request_id


def _stage(job: Job, status: str, out: bytes = b"", err: bytes = b"", **extra: Any) -> StageResult:
    def enc(data: bytes) -> str:
        if job.output_encoding == "base64":
            return base64.b64encode(data).decode()
        return data.decode(errors="replace")

    fields: dict[str, Any] = dict(exit_code=0, signal=None, cpu_ms=1, wall_ms=2, memory_kb=1024,
                                  truncated=False)  # fmt: skip
    fields.update(extra)
    return StageResult(status=status, stdout=enc(out), stderr=enc(err), output=enc(out + err),
                       **fields)  # type: ignore[arg-type]  # fmt: skip


async def interpret(job: Job) -> ExecutionResponse:
    source = job.files[0][1].decode(errors="replace")
    lines = [line.strip() for line in source.splitlines() if line.strip()]
    response = ExecutionResponse(language=job.language.name, version=job.language.version,
                                 status="ok")  # fmt: skip
    if job.language.compiled:
        failed = "compile_error" in lines
        response.compile = _stage(job, "runtime_error" if failed else "ok",
                                  err=b"main.c:1: error: expected ';'\n" if failed else b"",
                                  exit_code=1 if failed else 0)  # fmt: skip
        if failed:
            response.status = "compile_error"
            return response
    out, err, status = b"", b"", "ok"
    extra: dict[str, Any] = {}
    case = job.cases[0]
    for line in lines:
        word, _, rest = line.partition(" ")
        if word == "out":
            out += rest.encode() + b"\n"
        elif word == "err":
            err += rest.encode() + b"\n"
        elif word == "hex":
            out += bytes.fromhex(rest)
        elif word == "stdin":
            out += case.stdin
        elif word == "args":
            out += " ".join(case.args).encode() + b"\n"
        elif word == "exit":
            status, extra["exit_code"] = "runtime_error", int(rest)
        elif word == "signal":
            status, extra["exit_code"], extra["signal"] = "signal", None, rest
        elif word == "timeout":
            status, extra["exit_code"], extra["signal"] = "timeout", None, "SIGKILL"
        elif word == "oom":
            status, extra["exit_code"], extra["signal"] = "memory_limit", None, "SIGKILL"
        elif word == "flood":
            status, extra["exit_code"], extra["signal"] = "output_limit", None, "SIGKILL"
            out += b"x" * 100
        elif word == "sleep":
            await asyncio.sleep(float(rest))
        elif word == "cpu":
            extra["cpu_ms"] = int(rest)
    response.run = _stage(job, status, out, err, **extra)
    response.status = response.run.status  # type: ignore[assignment]
    return response


def create_fake_worker(settings: Settings, journal: Path | None = None) -> FastAPI:
    catalog = load_catalog()
    app = FastAPI(title="fake worker")
    install_error_handlers(app)
    app.add_middleware(AssumeJSON)
    install_request_id(app)
    app.state.admitted = 0
    app.state.executions = []

    def note(event: str, job: Job) -> None:
        first = job.files[0][1].decode(errors="replace").split("\n", 1)[0]
        app.state.executions.append((event, first))
        if journal is not None:
            with journal.open("a") as fh:
                fh.write(f"{event} {first}\n")
                fh.flush()
                os.fsync(fh.fileno())

    @app.post("/api/v1/execute", response_model=ExecutionResponse)
    async def execute(body: CodeExecutionRequest, request: Request) -> ExecutionResponse:
        job = build_job(body, settings, catalog)
        if app.state.admitted >= settings.max_concurrent_requests:
            raise CapacityError("fake worker is full", retry_after=1)
        app.state.admitted += 1
        try:
            note("start", job)
            response = await interpret(job)
            note("end", job)
            return response
        finally:
            app.state.admitted -= 1

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "admitted": app.state.admitted,
                "sandboxes": {"sandboxes": app.state.admitted}}  # fmt: skip

    @app.get("/api/v2/runtimes")
    async def runtimes() -> list[dict[str, Any]]:
        return piston.runtimes(catalog)

    @app.get("/api/v1/languages")
    async def languages() -> list[dict[str, Any]]:
        return [{"name": lang.name, "version": lang.version} for lang in catalog]

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--journal", type=Path)
    parser.add_argument("--max-concurrent", type=int, default=20)
    args = parser.parse_args()
    settings = Settings(max_concurrent_requests=args.max_concurrent)
    app = create_fake_worker(settings, args.journal)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
