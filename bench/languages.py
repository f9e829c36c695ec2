"""`make bench`'s per-language section: hello world and a realistic program
(:mod:`bench.workloads`), compile + run through ``POST /api/v2/execute``, against
the same toolchain run as bare processes.

The bare side runs the catalog's own compile command (through ``sh``, with the
file names as its positional parameters, as the agent runs it) and then the run
command, chrooted into the very image the sandbox uses, outside any sandbox: a
private mount namespace only to put a scratch ``/work`` (a fresh copy of the
files each time), ``/tmp``, ``/proc`` and ``/dev`` into the image, with the
agent's environment (that setup alone is measured too, as ``chroot_setup``).
Samples of all sides are interleaved, so machine noise hits them alike. Each
sample's output must be the expected one, the API's the same bytes as the bare
run's. For an image with precompiled headers the bare
side also runs cold (``bare_cold``: the header found first in a copy with no
``.gch`` beside it), which is what every compile cost before.
"""

from __future__ import annotations

import asyncio
import resource
import shlex
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from bench.workloads import Workload, workloads
from tvm.config.catalog import Catalog, Language
from tvm.pyrovm.agent.main import DEFAULT_ENV
from tvm.pyrovm.images import ImageStore
from tvm.pyrovm.images.pch import compile_flags

Probe = Callable[[], Awaitable[None]]


async def timed_probe(probe: Probe) -> float:
    start = time.perf_counter()
    await probe()
    return (time.perf_counter() - start) * 1000


def run_words(lang: Language) -> str:
    """``lang``'s run command as shell words."""
    return " ".join(shlex.quote(w.replace("{source}", lang.source_file)) for w in lang.run)


def bare_argv(
    rootfs: Path,
    work: Path,
    lang: Language | None,
    cold: tuple[str, str] | None = None,
    run: str | None = None,
    agent: Path | None = None,
) -> list[str]:
    """Compile (if any) then run ``lang``'s program in ``work``, chrooted into ``rootfs``
    (no ``lang``: only the chroot setup). ``cold``: ``(image path, include name)`` of a
    precompiled header, copied to a dir searched first so that its ``.gch`` is not found.
    ``run``: shell text to run after the compile instead of the run command.
    ``agent``: a copy of the agent, mounted where a sandbox has it."""
    inner = "true"
    if lang is not None:
        inner = run or run_words(lang)
    if lang is not None and lang.compile:
        compile_ = f"/bin/sh -c {shlex.quote(lang.compile)} compile {lang.source_file}"
        if cold:
            path, name = cold
            copy = f"/tmp/cold/{name}"
            compile_ = (
                f"mkdir -p {shlex.quote(str(Path(copy).parent))} && cp {shlex.quote(path)}"
                f" {shlex.quote(copy)} && CPLUS_INCLUDE_PATH=/tmp/cold {compile_}"
            )
        inner = f"{compile_} && {inner}"
    inner = f"cd /work && {inner}"
    env = [f"{k}={v}" for k, v in DEFAULT_ENV.items()]
    chroot = f"exec chroot {shlex.quote(str(rootfs))} env -i {shlex.join(env)} /bin/sh -c "
    # A fresh copy of ``work`` each time, as the sandbox gets: a build left over
    # from the last sample would let ``go build`` find ``a.out`` up to date.
    setup = (
        f"mount -t tmpfs -o mode=0777 tmpfs {shlex.quote(str(rootfs / 'work'))}"
        f" && cp -a {shlex.quote(str(work))}/. {shlex.quote(str(rootfs / 'work'))}/"
        f" && mount -t tmpfs tmpfs {shlex.quote(str(rootfs / 'tmp'))}"
        f" && mount -t proc proc {shlex.quote(str(rootfs / 'proc'))}"
        f" && mount --rbind /dev {shlex.quote(str(rootfs / 'dev'))}"
    )
    if agent is not None:
        setup += (
            f" && mount --bind {shlex.quote(str(agent))} {shlex.quote(str(rootfs))}/.tvm/tvm_agent"
        )
    script = f"{setup} && {chroot}{shlex.quote(inner)}"
    return ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script]


async def run_bare(argv: list[str], expected: str, stdin: str = "") -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin.encode())
    if proc.returncode != 0 or out.decode() != expected:
        raise RuntimeError(
            f"bare {argv[-1][-200:]}: {proc.returncode} {out.decode()[-300:]!r}"
            f" {err.decode()[-500:]}"
        )


def children_cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


async def per_language(
    client: httpx.AsyncClient,
    catalog: Catalog,
    store: ImageStore,
    runs: int,
    only: frozenset[str] = frozenset(),
    kinds: tuple[str, ...] = ("hello", "program"),
) -> dict[str, Any]:
    """``{"language@version kind": {bare, http, ratio, cpu, n}}`` (medians, ms) for
    each of :func:`bench.workloads.workloads`; languages whose image is not built
    are reported as skipped; ``only``: just these language names.

    Every bare run must print the expected output and every API run the same
    bytes as the bare run (a sample that does not is reported, not timed).
    ``cpu``: median CPU ms of the bare side (its processes' rusage) and of the
    sandbox's compile and run stages as the API reports them."""
    results: dict[str, Any] = {}
    for work in workloads(kinds):
        if only and work.language not in only:
            continue
        lang = catalog.resolve(work.language, work.version)
        key = f"{lang.key} {work.kind}"
        try:
            rootfs = store.rootfs(lang.image)
        except Exception as exc:  # not built: say so, measure the others
            results[key] = {"skipped": str(exc)[:200]}
            continue
        results[key] = await _measure(client, rootfs, lang, work, runs)
    return results


async def _measure(
    client: httpx.AsyncClient, rootfs: Path, lang: Language, work: Workload, runs: int
) -> dict[str, Any]:
    body = {
        "language": lang.name,
        "version": lang.version,
        "files": [{"name": lang.source_file, "content": work.code}],
        "stdin": work.stdin,
    }
    cpu: dict[str, list[float]] = {"bare": [], "http": []}

    async def http() -> None:
        reply = await client.post("/api/v2/execute", json=body)
        data = reply.json()
        if reply.status_code != 200 or data.get("run", {}).get("stdout") != work.expected:
            raise RuntimeError(f"{lang.key}: {reply.status_code} {reply.text[:500]}")
        stages = [data.get("compile") or {}, data["run"]]
        cpu["http"].append(sum(stage.get("cpu_time") or 0 for stage in stages))

    with tempfile.TemporaryDirectory(prefix="tvmbench-lang") as tmp:
        work_dir = Path(tmp)
        work_dir.chmod(0o777)
        (work_dir / lang.source_file).write_text(work.code)
        argv = bare_argv(rootfs, work_dir, lang)

        async def bare() -> None:
            before = children_cpu_ms()
            await run_bare(argv, work.expected, work.stdin)
            cpu["bare"].append(children_cpu_ms() - before)

        probes: dict[str, Probe] = {"bare": bare, "http": http}
        cold = cold_header(rootfs, lang)
        if cold and compile_flags(lang.compile or "") is not None:
            cold_argv = bare_argv(rootfs, work_dir, lang, cold)

            async def bare_cold(argv: list[str] = cold_argv) -> None:
                await run_bare(argv, work.expected, work.stdin)

            probes["bare_cold"] = bare_cold
        samples: dict[str, list[float]] = {name: [] for name in probes}
        errors: list[str] = []
        for i in range(runs + 1):  # the first round warms the page cache for both
            for name, probe in probes.items():
                # Neither side shares the CPU with a warm sandbox still starting
                # (a pre-started compiler takes seconds of it).
                await pool_settled(client, lang.key)
                try:
                    took = await timed_probe(probe)
                except RuntimeError as exc:  # a failed sample is reported, not timed
                    errors.append(f"{name}: {exc}"[:300])
                    continue
                if i:
                    samples[name].append(took)
                elif name in cpu:
                    cpu[name].clear()
    row: dict[str, Any] = {k: round(statistics.median(v), 1) for k, v in samples.items() if v}
    if "bare" in row and "http" in row:
        row["ratio"] = round(row["http"] / row["bare"], 2)
    row["cpu"] = {k: round(statistics.median(v), 1) for k, v in cpu.items() if v}
    row["n"] = {k: len(v) for k, v in samples.items()}
    if errors:
        row["errors"] = errors
    return row


def cold_header(rootfs: Path, lang: Language) -> tuple[str, str] | None:
    """``(image path, include name)`` of the first header ``lang``'s image precompiles."""
    for header in lang.image.pch:
        for gch in sorted(rootfs.glob(f"usr/include/**/{header}.gch")):
            return "/" + str(gch.relative_to(rootfs)).removesuffix(".gch"), header
    return None


async def pool_settled(client: httpx.AsyncClient, key: str, timeout: float = 120.0) -> None:
    """Wait until the service's warm pool for ``key`` holds what it aims to."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = (await client.get("/health")).json()
        pool = (health.get("embedded") or {}).get("sandboxes") or {}
        if pool.get("warm", {}).get(key, 0) >= pool.get("pool_targets", {}).get(key, 0):
            return
        await asyncio.sleep(0.1)


async def chroot_setup(store: ImageStore, catalog: Catalog, runs: int) -> float:
    """Median ms of the bare side's setup alone (mount namespace, mounts, chroot)."""
    rootfs = store.rootfs(catalog.resolve("python", "3.11").image)
    with tempfile.TemporaryDirectory(prefix="tvmbench-lang") as tmp:
        argv = bare_argv(rootfs, Path(tmp), None)
        await run_bare(argv, "")
        return round(
            statistics.median([await timed_probe(lambda: run_bare(argv, "")) for _ in range(runs)]),
            1,
        )
