"""`make bench`'s judge workload: a program compiled once and run on 20 test
cases, through ``POST /api/v1/execute``'s ``tests`` (one fresh sandbox per
case, the engine runs two at a time), against the catalog's compile command
and 20 runs as bare processes in one chroot of the same image (one after the
other: the floor for the work, without the chroot set up per case).

Each case feeds a different list to the realistic program of
:mod:`bench.workloads`; every verdict must be ``accepted``, and the bare runs
must print the same expected outputs.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

import httpx

from bench.languages import Probe, bare_argv, run_bare, run_words, timed_probe
from bench.workloads import PROGRAMS, SOURCE
from tvm.config.catalog import Catalog
from tvm.pyrovm.images import ImageStore

CASES = 20
JUDGED = (("c++", "12.2.0"), ("java", "21"))


def case(i: int) -> tuple[str, str]:
    """The ``i``-th test case's stdin and expected output."""
    values = [(i * 7 + k * 13) % 50 + 1 for k in range(i + 3)]
    ordered = " ".join(map(str, sorted(values)))
    stdin = f"{len(values)}\n{' '.join(map(str, values))}\n"
    return stdin, f"sum {sum(values)}\nsorted {ordered}\nprimes 9592\nfib 6765\n"


def bare_script(run: str) -> str:
    """Run ``run`` on each case's ``in.N`` in ``/work``, comparing with ``out.N``."""
    return " && ".join(f"{run} < in.{i} > got.{i} && cmp -s got.{i} out.{i}" for i in range(CASES))


async def judge(
    client: httpx.AsyncClient, catalog: Catalog, store: ImageStore, runs: int
) -> dict[str, Any]:
    """``{language@version: {bare, http, ratio, n}}``: medians (ms) of one
    request with 20 cases against a bare compile + 20 runs."""
    results: dict[str, Any] = {}
    cases = [case(i) for i in range(CASES)]
    for name, version in JUDGED:
        lang = catalog.resolve(name, version)
        try:
            rootfs = store.rootfs(lang.image)
        except Exception as exc:
            results[lang.key] = {"skipped": str(exc)[:200]}
            continue
        code = (PROGRAMS / SOURCE[name]).read_text()
        body = {
            "language": lang.name,
            "version": lang.version,
            "files": [{"name": lang.source_file, "content": code}],
            "tests": [{"stdin": i, "expected_output": o} for i, o in cases],
        }

        async def http(body: dict[str, Any] = body, key: str = lang.key) -> None:
            reply = await client.post("/api/v1/execute", json=body)
            tests = reply.json().get("tests") or [] if reply.status_code == 200 else []
            verdicts = [t.get("verdict") for t in tests]
            if verdicts != ["accepted"] * CASES:
                raise RuntimeError(f"{key}: {reply.status_code} {verdicts} {reply.text[:300]}")

        with tempfile.TemporaryDirectory(prefix="tvmbench-judge") as tmp:
            work = Path(tmp)
            work.chmod(0o777)
            (work / lang.source_file).write_text(code)
            for i, (stdin, expected) in enumerate(cases):
                (work / f"in.{i}").write_text(stdin)
                (work / f"out.{i}").write_text(expected)
            argv = bare_argv(rootfs, work, lang, run=bare_script(run_words(lang)))

            async def bare(argv: list[str] = argv) -> None:
                await run_bare(argv, "")

            probes: dict[str, Probe] = {"bare": bare, "http": http}
            row = await _sample(probes, runs)
        results[lang.key] = row
    return results


async def _sample(probes: dict[str, Probe], runs: int) -> dict[str, Any]:
    samples: dict[str, list[float]] = {name: [] for name in probes}
    errors: list[str] = []
    for i in range(runs + 1):
        for name, probe in probes.items():
            try:
                took = await timed_probe(probe)
            except RuntimeError as exc:
                errors.append(f"{name}: {exc}"[:300])
                continue
            if i:
                samples[name].append(took)
    row: dict[str, Any] = {k: round(statistics.median(v), 1) for k, v in samples.items() if v}
    if "bare" in row and "http" in row:
        row["ratio"] = round(row["http"] / row["bare"], 2)
    row["n"] = {k: len(v) for k, v in samples.items()}
    if errors:
        row["errors"] = errors
    return row
