"""`make bench`'s JVM class-data-sharing section: each compiler with and
without the archive its image dumped for it (:mod:`tvm.pyrovm.images.jvmcds`).

Bare, chrooted into the language's image as :mod:`bench.languages` does, samples
of both sides interleaved: ``compile``, the catalog's compile command on hello
world (a cold compile: what a request pays with no warm sandbox ready), and
``warm_start``, the start of the pre-started compiler (its server loads the
compiler and compiles its warm-up program; run as the agent runs it, its
request pipe at end of file, so it exits once ready), and for a run command
that names an archive (scala's), ``run``: the realistic program, compiled once
beforehand, run. ``plain`` is the same command without the archive flags
(:func:`~tvm.pyrovm.images.jvmcds.without_cds`): the JDK's own ``classes.jsa``
only. Wall and CPU ms, medians.
"""

from __future__ import annotations

import dataclasses
import shlex
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.languages import bare_argv, children_cpu_ms, run_bare
from bench.workloads import Workload, workloads
from tvm.config.catalog import Catalog, Language
from tvm.pyrovm.drivers.base import agent_source_digest
from tvm.pyrovm.images import ImageStore
from tvm.pyrovm.images.jvmcds import archives, without_cds

# The agent's prestart, reduced to what the server needs: its request pipe
# (here at end of file), reply and ready fds, the stage's output on 9 and 10,
# and the prestart stand-ins first on PATH (see tvm_agent/warm.py).
_PRESTART = (
    "import os, sys\n"
    "n = os.open('/dev/null', os.O_RDWR)\n"
    "os.set_inheritable(n, True)\n"
    "[os.dup2(n, fd) for fd in (3, 4, 5, 9, 10) if fd != n]\n"
    "os.environ['PATH'] = '/.tvm/tvm_agent/warm/serve:' + os.environ['PATH']\n"
    "os.execv('/bin/sh', ['sh', '-c', sys.argv[1]])\n"
)


def _prestart_text(command: str) -> str:
    return f"python3 -c {shlex.quote(_PRESTART)} {shlex.quote(command)}"


async def cds_rows(
    catalog: Catalog, store: ImageStore, home: Path, runs: int, only: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """``{"language@version compile|warm_start": {cds, plain, cpu: {cds, plain}, n}}``;
    ``only``: just these language names."""
    hello = {w.language: w for w in workloads(("hello",))}
    program = {w.language: w for w in workloads(("program",))}
    results: dict[str, Any] = {}
    agent = home / "agent" / agent_source_digest() / "tvm_agent"
    for lang in catalog:
        if not lang.compile or not archives(lang.compile) or lang.name not in hello:
            continue
        if only and lang.name not in only:
            continue
        try:
            rootfs = store.rootfs(lang.image)
        except Exception as exc:  # not built: say so, measure the others
            results[f"{lang.key} compile"] = {"skipped": str(exc)[:200]}
            continue
        if not (rootfs / archives(lang.compile)[0].lstrip("/")).is_file():
            results[f"{lang.key} compile"] = {"skipped": "the image has no archive"}
            continue
        with tempfile.TemporaryDirectory(prefix="tvmbench-cds") as tmp:
            work = Path(tmp)
            work.chmod(0o777)
            (work / lang.source_file).write_text(hello[lang.name].code)
            plain = dataclasses.replace(lang, compile=without_cds(lang.compile))
            sides = {
                "compile": {
                    "cds": bare_argv(rootfs, work, lang, run="true"),
                    "plain": bare_argv(rootfs, work, plain, run="true"),
                }
            }
            if lang.warm_compiler and (agent / "warm_serve.py").is_file():
                bare = dataclasses.replace(lang, compile=None)
                sides["warm_start"] = {
                    name: bare_argv(rootfs, work, bare, run=_prestart_text(command), agent=agent)
                    for name, command in (
                        ("cds", lang.warm_compiler),
                        ("plain", without_cds(lang.warm_compiler)),
                    )
                }
            for what, argvs in sides.items():
                results[f"{lang.key} {what}"] = await _interleaved(argvs, runs)
        if archives(shlex.join(lang.run)) and lang.name in program:
            results[f"{lang.key} run"] = await _run_sides(rootfs, lang, program[lang.name], runs)
    return results


async def _run_sides(rootfs: Path, lang: Language, work: Workload, runs: int) -> dict[str, Any]:
    """The run command with and without its archive, on ``work`` compiled once."""
    with tempfile.TemporaryDirectory(prefix="tvmbench-cds") as tmp:
        out = Path(tmp)
        out.chmod(0o777)
        (out / lang.source_file).write_text(work.code)
        built = subprocess.run(
            bare_argv(rootfs, out, lang, run="tar -cf - ."), capture_output=True, check=True
        )
        subprocess.run(["tar", "-xf", "-", "-C", str(out)], input=built.stdout, check=True)
        bare = dataclasses.replace(lang, compile=None)
        plain = dataclasses.replace(bare, run=tuple(without_cds(w) for w in lang.run))
        argvs = {"cds": bare_argv(rootfs, out, bare), "plain": bare_argv(rootfs, out, plain)}
        return await _interleaved(argvs, runs, work.expected, work.stdin)


async def _interleaved(
    argvs: dict[str, list[str]], runs: int, expected: str = "", stdin: str = ""
) -> dict[str, Any]:
    wall: dict[str, list[float]] = {name: [] for name in argvs}
    cpu: dict[str, list[float]] = {name: [] for name in argvs}
    for i in range(runs + 1):  # the first round warms the page cache for both
        for name, argv in argvs.items():
            before, start = children_cpu_ms(), time.perf_counter()
            await run_bare(argv, expected, stdin)
            if i:
                wall[name].append((time.perf_counter() - start) * 1000)
                cpu[name].append(children_cpu_ms() - before)
    row: dict[str, Any] = {k: round(statistics.median(v), 1) for k, v in wall.items()}
    row["cpu"] = {k: round(statistics.median(v), 1) for k, v in cpu.items()}
    row["n"] = runs
    return row


def report_cds(console: Any, rows: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="JVMs with / without their CDS archive (bare, ms, p50)")
    for col in ("language", "wall: plain", "wall: cds", "cpu: plain", "cpu: cds", "cpu cds/plain"):
        table.add_column(col, justify="left" if col == "language" else "right")
    for key, row in rows.items():
        if "skipped" in row:
            table.add_row(key, "skipped", row["skipped"][:60], "", "", "")
            continue
        cpu = row["cpu"]
        ratio = cpu["cds"] / cpu["plain"] if cpu["plain"] else 0.0
        table.add_row(key, f"{row['plain']:.0f}", f"{row['cds']:.0f}", f"{cpu['plain']:.0f}",
                      f"{cpu['cds']:.0f}", f"{ratio:.2f}x")  # fmt: skip
    console.print(table)
