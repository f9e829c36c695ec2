"""`make bench`'s per-language section: hello world compile + run through
``POST /api/v2/execute`` against the same toolchain run as bare processes.

The bare side runs the catalog's own compile command (through ``sh``, with the
file names as its positional parameters, as the agent runs it) and then the run
command, chrooted into the very image the sandbox uses, outside any sandbox: a
private mount namespace only to put a scratch ``/work``, ``/tmp``, ``/proc`` and
``/dev`` into the image, with the agent's environment (that setup alone is
measured too, as ``chroot_setup``). Samples of all sides are interleaved, so
machine noise hits them alike. For an image with precompiled headers the bare
side also runs cold (``bare_cold``: the header found first in a copy with no
``.gch`` beside it), which is what every compile cost before.
"""

from __future__ import annotations

import asyncio
import shlex
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tvm.config.catalog import Catalog, Language
from tvm.pyrovm.agent.main import DEFAULT_ENV
from tvm.pyrovm.images import ImageStore
from tvm.pyrovm.images.pch import compile_flags

CPP_HELLO = (
    "#include <bits/stdc++.h>\nusing namespace std;\n"
    'int main() { vector<string> w{"hello"}; cout << w[0] << "\\n"; }\n'
)
JAVA_HELLO = (
    "public class Main {\n"
    '    public static void main(String[] args) { System.out.println("hello"); }\n}\n'
)


@dataclass(frozen=True)
class Hello:
    language: str
    version: str  # a semver selector, as a client sends it
    code: str


HELLOS = (
    Hello("python", "3.11", 'print("hello")\n'),
    Hello("javascript", "*", 'console.log("hello")\n'),
    Hello("c", "12.2.0", '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'),
    Hello("c++", "12.2.0", CPP_HELLO),
    Hello("java", "*", JAVA_HELLO),
    Hello("go", "*", 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hello") }\n'),
    Hello("rust", "*", 'fn main() { println!("hello"); }\n'),
)

Probe = Callable[[], Awaitable[None]]


async def _timed(probe: Probe) -> float:
    start = time.perf_counter()
    await probe()
    return (time.perf_counter() - start) * 1000


def bare_argv(
    rootfs: Path, work: Path, lang: Language | None, cold: tuple[str, str] | None = None
) -> list[str]:
    """Compile (if any) then run ``lang``'s program in ``work``, chrooted into ``rootfs``
    (no ``lang``: only the chroot setup). ``cold``: ``(image path, include name)`` of a
    precompiled header, copied to a dir searched first so that its ``.gch`` is not found."""
    inner = "true"
    if lang is not None:
        inner = " ".join(shlex.quote(w.replace("{source}", lang.source_file)) for w in lang.run)
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
    setup = (
        f"mount --bind {shlex.quote(str(work))} {shlex.quote(str(rootfs / 'work'))}"
        f" && mount -t tmpfs tmpfs {shlex.quote(str(rootfs / 'tmp'))}"
        f" && mount -t proc proc {shlex.quote(str(rootfs / 'proc'))}"
        f" && mount --rbind /dev {shlex.quote(str(rootfs / 'dev'))}"
    )
    script = f"{setup} && {chroot}{shlex.quote(inner)}"
    return ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script]


async def _run(argv: list[str], expected: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0 or out.decode() != expected:
        raise RuntimeError(f"bare {argv[-1][-200:]}: {proc.returncode} {err.decode()[-500:]}")


async def per_language(
    client: httpx.AsyncClient,
    catalog: Catalog,
    store: ImageStore,
    runs: int,
    only: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """``{language@version: {bare, http, ratio, n}}`` (medians, ms), languages
    whose image is not built reported as skipped; ``only``: just these names."""
    results: dict[str, Any] = {}
    for hello in HELLOS:
        if only and hello.language not in only:
            continue
        lang = catalog.resolve(hello.language, hello.version)
        try:
            rootfs = store.rootfs(lang.image)
        except Exception as exc:  # not built: say so, measure the others
            results[lang.key] = {"skipped": str(exc)[:200]}
            continue
        body = {
            "language": lang.name,
            "version": lang.version,
            "files": [{"name": lang.source_file, "content": hello.code}],
        }

        async def http(body: dict[str, Any] = body, key: str = lang.key) -> None:
            reply = await client.post("/api/v2/execute", json=body)
            data = reply.json()
            if reply.status_code != 200 or data.get("run", {}).get("stdout") != "hello\n":
                raise RuntimeError(f"{key}: {reply.status_code} {reply.text[:500]}")

        with tempfile.TemporaryDirectory(prefix="tvmbench-lang") as tmp:
            work = Path(tmp)
            work.chmod(0o777)
            (work / lang.source_file).write_text(hello.code)
            argv = bare_argv(rootfs, work, lang)

            async def bare(argv: list[str] = argv) -> None:
                await _run(argv, "hello\n")

            probes: dict[str, Probe] = {"bare": bare, "http": http}
            cold = cold_header(rootfs, lang)
            if cold and compile_flags(lang.compile or "") is not None:
                cold_argv = bare_argv(rootfs, work, lang, cold)

                async def bare_cold(argv: list[str] = cold_argv) -> None:
                    await _run(argv, "hello\n")

                probes["bare_cold"] = bare_cold
            samples: dict[str, list[float]] = {name: [] for name in probes}
            errors: list[str] = []
            for i in range(runs + 1):  # the first round warms the page cache for both
                for name, probe in probes.items():
                    try:
                        took = await _timed(probe)
                    except RuntimeError as exc:  # a failed sample is reported, not timed
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
        results[lang.key] = row
    return results


def cold_header(rootfs: Path, lang: Language) -> tuple[str, str] | None:
    """``(image path, include name)`` of the first header ``lang``'s image precompiles."""
    for header in lang.image.pch:
        for gch in sorted(rootfs.glob(f"usr/include/**/{header}.gch")):
            return "/" + str(gch.relative_to(rootfs)).removesuffix(".gch"), header
    return None


async def chroot_setup(store: ImageStore, catalog: Catalog, runs: int) -> float:
    """Median ms of the bare side's setup alone (mount namespace, mounts, chroot)."""
    rootfs = store.rootfs(catalog.resolve("python", "3.11").image)
    with tempfile.TemporaryDirectory(prefix="tvmbench-lang") as tmp:
        argv = bare_argv(rootfs, Path(tmp), None)
        await _run(argv, "")
        return round(
            statistics.median([await _timed(lambda: _run(argv, "")) for _ in range(runs)]), 1
        )
