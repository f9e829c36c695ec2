"""The execution engine: admission, stages, results.

One request, end to end on a worker: admit it (``max_concurrent_requests``,
beyond that a 429), take a sandbox for the language (warm or new), write the
files, compile, run, destroy the sandbox. With ``tests``, the program is
compiled once and each case runs in its own fresh sandbox against the same
compiled work dir.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fnmatch
import logging
import re
import shlex
from collections.abc import Iterator

from tvm.api import Case, ExecutionResponse, Job, StageResult, TestResult, internal_stage
from tvm.config.catalog import Catalog, Language
from tvm.config.settings import Settings
from tvm.errors import CapacityError, SandboxError
from tvm.pyrovm import hostlimits
from tvm.pyrovm.drivers.base import Driver, Sandbox
from tvm.pyrovm.drivers.messages import StageReply
from tvm.pyrovm.images import ImageStore
from tvm.pyrovm.interactive import InteractiveRun, Terminal
from tvm.pyrovm.pool import SandboxManager

log = logging.getLogger("tvm.engine")

# How many cases of one request run at once.
CASE_PARALLELISM = 2


def run_argv(language: Language, files: list[tuple[str, bytes, int]], args: list[str]) -> list[str]:
    """The run stage's argv: the first of the request's files is the program."""
    entry = files[0][0] if files else language.source_file
    return [*language.run_for(entry), *args]


def compile_argv(
    language: Language, files: list[tuple[str, bytes, int]], options: list[str] | None = None
) -> list[str]:
    """The compile stage's argv; ``options`` (extra flags) are shell-quoted and go where the
    command says ``{options}``, else at its end."""
    assert language.compile is not None
    extra = " ".join(shlex.quote(word) for word in options or [])
    command = language.compile
    if "{options}" in command:
        command = command.replace("{options}", extra)
    elif extra:
        command = f"{command} {extra}"
    names = [name for name, _, _ in files]
    return plain_argv(command, names) or ["/bin/sh", "-c", command, "compile", *names]


# A command made only of plain words, globs and "$@"/"$1" needs no shell: its
# argv is built here, exactly as sh would, which saves starting one per compile.
_ARGS = {'"$@"': "\0@", '"$1"': "\01"}
_SHELL_SYNTAX = re.compile(r"""[;&|<>()$`\\"'!{}~#\n]|^\s*\w+=""")


def plain_argv(command: str, names: list[str]) -> list[str] | None:
    """``command`` (run by ``sh -c command compile NAMES...``) as an argv,
    or None when it uses anything of the shell's beyond word splitting,
    ``"$@"``, ``"$1"`` and ``*``/``?`` globs over the files given."""
    for quoted, mark in _ARGS.items():
        command = command.replace(quoted, mark)
    if _SHELL_SYNTAX.search(command) or "[" in command:
        return None
    # What a glob sees: the work dir's top level (files, and the dirs of nested ones).
    top = sorted({name.split("/", 1)[0] for name in names})
    argv: list[str] = []
    for word in command.split():
        if word == _ARGS['"$@"']:
            argv += names
        elif word == _ARGS['"$1"']:
            argv += names[:1]
        elif "\0" in word:
            return None  # "$@" inside a longer word
        elif ("*" in word or "?" in word) and "/" not in word:
            # sh leaves a pattern that matches nothing as it is; dotfiles need a dot.
            matches = [
                n for n in top
                if fnmatch.fnmatchcase(n, word) and (not n.startswith(".") or word.startswith("."))
            ]  # fmt: skip
            argv += matches or [word]
        elif "*" in word or "?" in word:
            return None
        else:
            argv.append(word)
    return argv or None


def verdict(stdout: str, expected: str | None) -> str | None:
    """Judge-style comparison: trailing whitespace on lines and at the end is ignored."""
    if expected is None:
        return None

    def norm(text: str) -> list[str]:
        lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    return "accepted" if norm(stdout) == norm(expected) else "wrong_answer"


def _text(data: bytes, encoding: str) -> str:
    if encoding == "base64":
        return base64.b64encode(data).decode()
    return data.decode("utf-8", errors="replace")


def stage_result(reply: StageReply, encoding: str = "utf8") -> StageResult:
    return StageResult(
        status=reply.status,
        stdout=_text(reply.stdout, encoding),
        stderr=_text(reply.stderr, encoding),
        output=_text(reply.output, encoding),
        exit_code=reply.exit_code,
        signal=reply.signal,
        cpu_ms=reply.cpu_ms,
        wall_ms=reply.wall_ms,
        memory_kb=reply.memory_kb,
        truncated=reply.stdout_truncated or reply.stderr_truncated,
    )


class Engine:
    def __init__(
        self, settings: Settings, catalog: Catalog, driver: Driver, images: ImageStore | None = None
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.driver = driver
        self.images = images or ImageStore(settings)
        self.sandboxes = SandboxManager(settings, driver, self.images)
        self.admitted = 0
        self.outcomes: dict[str, int] = {}

    async def start(self) -> None:
        if self.driver.host_files:  # its programs' files are the host's (hostlimits)
            largest = max((lang.run_limits.maximum.memory_mb for lang in self.catalog), default=0)
            await asyncio.to_thread(
                hostlimits.size_file_table, self.settings.max_concurrent_vms, largest
            )
        await self.sandboxes.start()
        for name in self.settings.pool_languages if self.settings.pool_size else ():
            built = [
                lang for lang in self.catalog
                if lang.matches(name) and self.images.is_built(lang.image)
            ]  # fmt: skip
            if built:  # the newest built version, which requests without a version get
                self.sandboxes.set_pool_target(built[-1], self.settings.pool_size)

    async def close(self) -> None:
        await self.sandboxes.close()
        await self.driver.close()

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Admission control: at most ``max_concurrent_requests`` at once."""
        limit = self.settings.max_concurrent_requests
        if self.admitted >= limit:
            raise CapacityError(
                f"worker is at max_concurrent_requests={limit}; retry later", retry_after=1
            )
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    async def execute(self, job: Job) -> ExecutionResponse:
        with self.admit():
            response = await self._execute(job)
        self.outcomes[response.status] = self.outcomes.get(response.status, 0) + 1
        return response

    async def _execute(self, job: Job) -> ExecutionResponse:
        language = job.language
        response = ExecutionResponse(language=language.name, version=language.version, status="ok")
        try:
            if not job.batch:
                await self._single(job, response)
            else:
                await self._batch(job, response)
        except SandboxError as exc:
            log.warning("execution failed: %s", exc)
            response.status = "internal_error"
            response.message = str(exc)
            if response.run is None and not job.batch:
                response.run = internal_stage(str(exc))
        return response

    async def _compile(
        self, sandbox: Sandbox, job: Job, response: ExecutionResponse, last: bool
    ) -> bool:
        reply = await sandbox.run_stage(
            "compile",
            compile_argv(job.language, job.files, job.compiler_options),
            b"",
            job.compile_limits,
            last=last,
            files=job.files,
        )
        response.compile = stage_result(reply, job.output_encoding)
        if response.compile.status != "ok":
            response.status = "compile_error"
            return False
        return True

    async def _single(self, job: Job, response: ExecutionResponse) -> None:
        case = job.cases[0]
        async with self.sandboxes.sandbox(job.language) as sandbox:
            compiled = job.language.compiled
            if compiled and not await self._compile(sandbox, job, response, False):
                return
            reply = await sandbox.run_stage(
                "run",
                run_argv(job.language, job.files, case.args),
                case.stdin,
                job.run_limits,
                pyrun=job.language.prestarted and self.settings.prestart,
                files=None if compiled else job.files,
            )
        response.run = stage_result(reply, job.output_encoding)
        response.status = response.run.status

    async def _batch(self, job: Job, response: ExecutionResponse) -> None:
        archive: bytes | None = None
        if job.language.compiled:
            # The cases' sandboxes are made while the program compiles.
            cases = len(job.cases)
            self.sandboxes.expect(job.language, cases, run_only=True)
            try:
                async with self.sandboxes.sandbox(job.language) as sandbox:
                    if not await self._compile(sandbox, job, response, True):
                        return
                    archive = await sandbox.archive()
            finally:
                if archive is None:  # no case will run
                    self.sandboxes.expect(job.language, -cases, run_only=True)
        gate = asyncio.Semaphore(CASE_PARALLELISM)

        async def one(case: Case) -> TestResult:
            async with gate:
                try:
                    return await self._case(job, case, archive)
                except SandboxError as exc:
                    return TestResult(**internal_stage(str(exc)).model_dump())

        results = await asyncio.gather(*(one(case) for case in job.cases))
        response.tests = list(results)
        bad = [r.status for r in results if r.status != "ok"]
        response.status = bad[0] if bad else "ok"

    async def _case(self, job: Job, case: Case, archive: bytes | None) -> TestResult:
        async with self.sandboxes.sandbox(job.language, run_only=archive is not None) as sandbox:
            if archive is not None:
                await sandbox.unpack(archive)
            reply = await sandbox.run_stage(
                "run",
                run_argv(job.language, job.files, case.args),
                case.stdin,
                job.run_limits,
                pyrun=job.language.prestarted and self.settings.prestart,
                files=None if archive is not None else job.files,
            )
        result = stage_result(reply, job.output_encoding)
        text = reply.stdout.decode(errors="replace")
        return TestResult(
            **result.model_dump(),
            verdict=verdict(text, case.expected_output) if result.status == "ok" else None,
        )

    def interactive(self, job: Job, terminal: Terminal | None = None) -> InteractiveRun:
        """An interactive run of ``job`` (:mod:`tvm.pyrovm.interactive`); start
        its ``run()`` in a task."""
        return InteractiveRun(self, job, terminal, self.settings.max_stdin_bytes)
