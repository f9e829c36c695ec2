"""`make bench`'s per-language section: hello world compile + run through
``POST /api/v2/execute`` against the same toolchain run as bare processes.

The bare side runs the catalog's own compile command (through ``sh``, with the
file names as its positional parameters, as the agent runs it) and then the run
command, chrooted into the very image the sandbox uses, outside any sandbox: a
private mount namespace only to put a scratch ``/work``, ``/tmp``, ``/proc`` and
``/dev`` into the image, with the agent's environment. Samples of both sides are
interleaved, so machine noise hits them alike.
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


def bare_argv(rootfs: Path, work: Path, lang: Language) -> list[str]:
    """Compile (if any) then run ``lang``'s program in ``work``, chrooted into ``rootfs``."""
    run = " ".join(shlex.quote(w.replace("{source}", lang.source_file)) for w in lang.run)
    inner = f"cd /work && {run}"
    if lang.compile:
        compile_ = f"/bin/sh -c {shlex.quote(lang.compile)} compile {lang.source_file}"
        inner = f"cd /work && {compile_} && {run}"
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
    client: httpx.AsyncClient, catalog: Catalog, store: ImageStore, runs: int
) -> dict[str, Any]:
    """``{language@version: {bare, http, ratio, n}}`` (medians, ms), languages
    whose image is not built reported as skipped."""
    results: dict[str, Any] = {}
    for hello in HELLOS:
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

            await bare()  # warm the page cache for both
            await http()
            samples: dict[str, list[float]] = {"bare": [], "http": []}
            for _ in range(runs):
                samples["bare"].append(await _timed(bare))
                samples["http"].append(await _timed(http))
        row: dict[str, Any] = {k: round(statistics.median(v), 1) for k, v in samples.items()}
        row["ratio"] = round(row["http"] / row["bare"], 2)
        row["n"] = runs
        results[lang.key] = row
    return results
