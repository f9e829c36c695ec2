"""A compiler pre-started in a warm sandbox gives exactly what a cold one gives.

For every language whose catalog entry has a ``warm_compiler``, the same
programs (hello world, a realistic one reading input, a compile error, a
runtime exception with a stack trace) are compiled and run twice in real
sandboxes taken from the warm pool: once with the compiler pre-started, once
without (``prestart_compilers`` off). Compile and run stdout, stderr, status
and exit code must be byte for byte the same, and so must every file the
compile left in the work dir (class files, the JS output, the jar's entries).
The warm side must really have been served by the pre-started compiler (the
stage reply says so), or the comparison would prove nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import shutil
import subprocess
import tarfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest

from tests.conftest import require_languages, warm_pool
from tests.integration.scala_programs import PROGRAMS as SCALA_PROGRAMS
from tvm.config.catalog import Language, StageLimits
from tvm.config.settings import Settings
from tvm.pyrovm.agent.warm_serve import WARM as WARM_DIR
from tvm.pyrovm.agent.warm_serve import split_java
from tvm.pyrovm.drivers.messages import StageReply
from tvm.pyrovm.engine import compile_argv, run_argv
from tvm.pyrovm.images import ImageStore

pytestmark = pytest.mark.usefixtures("no_leaks")

STDIN = "3\n10 20 30\nhello world\n"

JAVA = {
    "hello": "public class Main {\n    public static void main(String[] args) {\n"
    '        System.out.println("hello");\n    }\n}\n',
    "realistic": "import java.util.*;\n\npublic class Main {\n"
    "    static long sum(long[] xs) { long s = 0; for (long x : xs) s += x; return s; }\n"
    '    static String shout(String s) { return s.toUpperCase(Locale.ROOT) + "!"; }\n'
    "    public static void main(String[] args) {\n"
    "        Scanner in = new Scanner(System.in);\n"
    "        int n = in.nextInt();\n        long[] xs = new long[n];\n"
    "        for (int i = 0; i < n; i++) xs[i] = in.nextLong();\n        in.nextLine();\n"
    '        System.out.println(sum(xs) + " " + shout(in.nextLine()));\n    }\n}\n',
    "compile-error": "public class Main {\n    public static void main(String[] args) {\n"
    '        int x = "text";\n        System.out.println(y)\n    }\n}\n',
    "exception": "public class Main {\n    static void f(int d) {\n"
    '        if (d == 0) throw new IllegalStateException("boom");\n        f(d - 1);\n    }\n'
    "    public static void main(String[] args) { f(3); }\n}\n",
}
KOTLIN = {
    "hello": 'fun main(args: Array<String>) {\n    println("hello")\n}\n',
    "realistic": "fun sum(xs: List<Long>) = xs.fold(0L) { a, b -> a + b }\n"
    'fun shout(s: String) = s.toUpperCase() + "!"\n\n'
    "fun main(args: Array<String>) {\n    readLine()\n"
    '    val xs = readLine()!!.split(" ").map { it.toLong() }\n'
    '    println("${sum(xs)} ${shout(readLine()!!)}")\n}\n',
    "compile-error": 'fun main(args: Array<String>) {\n    val x: Int = "text"\n    println(y)\n}\n',
    "exception": 'fun f(d: Int) {\n    if (d == 0) throw IllegalStateException("boom")\n'
    "    f(d - 1)\n}\n\nfun main(args: Array<String>) {\n    f(3)\n}\n",
}
SCALA = {
    "hello": 'object Main {\n  def main(args: Array[String]): Unit = println("hello")\n}\n',
    "realistic": "object Main {\n  def sum(xs: Seq[Long]): Long = xs.sum\n"
    '  def shout(s: String): String = s.toUpperCase + "!"\n'
    "  def main(args: Array[String]): Unit = {\n    scala.io.StdIn.readLine()\n"
    '    val xs = scala.io.StdIn.readLine().split(" ").map(_.toLong)\n'
    '    println(s"${sum(xs)} ${shout(scala.io.StdIn.readLine())}")\n  }\n}\n',
    "compile-error": "object Main {\n  def main(args: Array[String]): Unit = {\n"
    '    val x: Int = "text"\n    println(y)\n  }\n}\n',
    "exception": "object Main {\n  def f(d: Int): Unit = {\n"
    '    if (d == 0) throw new IllegalStateException("boom")\n    f(d - 1)\n  }\n'
    "  def main(args: Array[String]): Unit = f(3)\n}\n",
    # The warm-up compile's `object Main` (TvmWarm.java) is unknown to a
    # request: a compiler reused fsc's way would still know it and compile this.
    "warm-up-names": "object Other {\n  def main(args: Array[String]): Unit = Main.main(args)\n}\n",
    # The package the warm-up compiles into is unlinked before the request.
    "warm-up-package": "object Main {\n"
    "  def main(args: Array[String]): Unit = tvm_warmup.Main.main(args)\n}\n",
}
TYPESCRIPT = {
    "hello": 'const greeting: string = "hello";\nconsole.log(greeting);\n',
    "realistic": "declare function require(name: string): any; // no @types/node in the image\n"
    'const fs = require("fs");\n\n'
    "function sum(xs: number[]): number {\n  return xs.reduce((a, b) => a + b, 0);\n}\n"
    'const shout = (s: string): string => s.toUpperCase() + "!";\n'
    'const lines = fs.readFileSync(0, "utf8").split("\\n");\n'
    'console.log(`${sum(lines[1].split(" ").map(Number))} ${shout(lines[2])}`);\n',
    "compile-error": 'const x: number = "text";\nconsole.log(y);\n',
    "exception": "function f(d: number): void {\n"
    '  if (d === 0) throw new Error("boom");\n  f(d - 1);\n}\nf(3);\n',
    # A global clashing with the default library's (lib.dom.d.ts declares
    # `name`): reported in main.ts; the library itself is not checked
    # (--skipDefaultLibCheck), warm or cold.
    "lib-clash": "let name = 1;\nconsole.log(name);\n",
    # The warm-up program's global (tsc_serve.js) is unknown to a request.
    "warm-up-names": "console.log(l);\n",
}
PROGRAMS = {"java": JAVA, "kotlin": KOTLIN, "scala": SCALA, "typescript": TYPESCRIPT}
LANGUAGES = ["java@17.0.19", "java@21.0.13", "kotlin@1.3.31", "scala@2.11.12", "typescript@4.8.4"]


def stage(reply: StageReply | None) -> dict[str, Any] | None:
    if reply is None:
        return None
    return {
        "status": reply.status,
        "exit_code": reply.exit_code,
        "signal": reply.signal,
        "stdout": reply.stdout,
        "stderr": reply.stderr,
    }


def outputs(archive: bytes) -> dict[str, bytes]:
    """The work dir's files; a jar as its entries (a jar's own bytes carry times)."""
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            data = tar.extractfile(member)
            if data is None:
                continue
            content = data.read()
            if member.name.endswith(".jar"):
                with zipfile.ZipFile(io.BytesIO(content)) as jar:
                    for entry in jar.namelist():
                        files[f"{member.name}!{entry}"] = jar.read(entry)
            else:
                files[member.name] = content
    return files


async def compile_and_run(
    settings: Settings, lang: Language, code: str, compile_limits: StageLimits | None = None
) -> dict[str, Any]:
    """Compile and run ``code`` in a sandbox taken from the warm pool."""
    files = [(lang.source_file, code.encode(), 0o644)]
    async with warm_pool(settings, lang) as manager, manager.sandbox(lang) as sandbox:
        manager.set_pool_target(lang, 0)  # taken: make no other
        compiled = await sandbox.run_stage(
            "compile", compile_argv(lang, files), b"",
            compile_limits or lang.compile_limits.default,
            last=False, files=files,
        )  # fmt: skip
        archive = await sandbox.archive()
        ran = None
        if compiled.status == "ok":
            ran = await sandbox.run_stage(
                "run", run_argv(lang, [], []), STDIN.encode(), lang.run_limits.default
            )
    return {
        "warm": compiled.warm,
        "cpu": compiled.cpu_ms,
        "compile": stage(compiled),
        "run": stage(ran),
        "files": outputs(archive),
    }


@pytest.mark.parametrize("key", LANGUAGES)
async def test_a_prestarted_compiler_gives_what_a_cold_one_gives(
    settings: Settings, key: str
) -> None:
    (lang,) = require_languages(settings, key)
    cold_settings = settings.model_copy(update={"prestart_compilers": False})
    warm_settings = settings.model_copy(update={"prestart_compilers": True})
    for name, code in PROGRAMS[lang.name].items():
        cold = await compile_and_run(cold_settings, lang, code)
        warm = await compile_and_run(warm_settings, lang, code)
        cold.pop("cpu"), warm.pop("cpu")  # the point of it: not compared
        assert not cold.pop("warm"), f"{name}: the cold side was served warm"
        assert warm.pop("warm"), f"{name}: the pre-started compiler did not serve the compile"
        assert warm == cold, f"{key} {name}: warm and cold differ"
        if name == "hello":
            assert cold["run"]["stdout"] == b"hello\n"
        if name == "realistic":
            assert cold["run"]["stdout"] == b"60 HELLO WORLD!\n"
        if name == "compile-error":
            diagnostics = cold["compile"]["stderr"] + cold["compile"]["stdout"]  # tsc: stdout
            assert cold["compile"]["status"] != "ok" and b"error" in diagnostics
        if name == "exception":
            assert cold["run"]["status"] == "runtime_error" and b"boom" in cold["run"]["stderr"]
        if name in ("warm-up-names", "warm-up-package"):
            built = [n for n in cold["files"] if n.endswith((".class", ".js"))]
            assert cold["compile"]["status"] != "ok" and not built, cold
        if name == "lib-clash":
            assert cold["compile"]["stdout"] == (
                b"main.ts(1,5): error TS2451: Cannot redeclare block-scoped variable 'name'.\n"
            ), cold


async def test_a_compile_with_too_little_memory_for_the_warm_compiler_runs_cold(
    settings: Settings,
) -> None:
    """A limit below what the waiting compiler holds could not even be set on
    its cgroup: the agent ends it first and the stage runs as it would cold."""
    (lang,) = require_languages(settings, "java@17.0.19")
    limits = dataclasses.replace(lang.compile_limits.default, memory_mb=lang.warm_memory_mb)
    cold = await compile_and_run(
        settings.model_copy(update={"prestart_compilers": False}), lang, JAVA["hello"], limits
    )
    warm = await compile_and_run(settings, lang, JAVA["hello"], limits)
    cold.pop("cpu"), warm.pop("cpu")
    assert warm.pop("warm") is False and cold.pop("warm") is False
    assert warm == cold and warm["run"]["stdout"] == b"hello\n"


def _bwrap(rootfs: Path, mnt: Path, cwd: str, script: str, *args: str) -> CompletedProcess[bytes]:
    """``sh -c script`` in the image, as its bare toolchain runs (no sandbox):
    ``mnt`` is /mnt, the agent's warm/ dir /srv."""
    return subprocess.run(
        [
            "bwrap", "--ro-bind", str(rootfs), "/", "--proc", "/proc", "--dev", "/dev",
            "--tmpfs", "/tmp", "--bind", str(mnt), "/mnt", "--ro-bind", str(WARM_DIR), "/srv",
            "--unshare-all", "--die-with-parent", "--chdir", cwd, "--clearenv",
            "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp",
            "sh", "-c", script, "sh", *args,
        ],
        capture_output=True,
        timeout=300,
    )  # fmt: skip


def _launcher_argv(rootfs: Path, mnt: Path, script: str, *args: str) -> list[str]:
    """The argv scalac's launcher runs ``java`` with for ``script`` (its JAVACMD)."""
    rec = mnt / "rec"
    shutil.rmtree(rec, ignore_errors=True)
    rec.mkdir()
    for name in args:
        (rec / name).parent.mkdir(parents=True, exist_ok=True)
        (rec / name).write_text("")
    done = _bwrap(rootfs, mnt, "/mnt/rec", f"JAVACMD=/mnt/record; export JAVACMD; {script}", *args)
    assert done.returncode == 0, done
    return (mnt / "argv").read_bytes().decode().split("\0")[:-1]


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_a_reused_scalac_compiles_exactly_what_a_cold_scalac_does(
    settings: Settings, tmp_path: Path
) -> None:
    """The pre-started scalac reuses its warm-up's compiler (a new Run on the
    same Global, the warm-up's package unlinked). For every program of the
    corpus, the very JVM command scalac's launcher runs is run cold, and the
    same request is served by the pre-started server in the image: class files
    (names and sha256), stdout, stderr and exit code must be identical, and the
    server must say it reused its compiler. A request the reused compiler must
    not take (a directory in the work dir, which it listed once at warm-up; a
    Java source) is compiled fresh, identically too."""
    (lang,) = require_languages(settings, "scala@2.11.12")
    if shutil.which("bwrap") is None:
        pytest.skip("bwrap is not installed: the bare toolchain runs under it")
    assert lang.compile is not None and lang.warm_compiler is not None
    rootfs = ImageStore(settings).rootfs(lang.image)
    (tmp_path / "record").write_text("#!/bin/sh\nprintf '%s\\0' \"$@\" > /mnt/argv\n")
    (tmp_path / "record").chmod(0o755)
    prefix = _launcher_argv(rootfs, tmp_path, lang.warm_compiler)
    split = split_java(prefix)
    assert split is not None and split[1] == "scala.tools.nsc.Main", prefix
    options, main, main_args = split
    server = ["java", *options, "/srv/TvmWarm.java", main, str(len(main_args)), *main_args]
    corpus = {name: (files, True) for name, files in SCALA_PROGRAMS.items()}
    corpus["subdir"] = ({"main.scala": SCALA["hello"], "lib/util.scala": "object U\n"}, False)
    java = "object Main {\n  def main(args: Array[String]): Unit = println(J.v())\n}\n"
    corpus["java-source"] = (
        {"main.scala": java, "J.java": "public class J { static int v() { return 1; } }\n"},
        False,
    )

    def compile_both(name: str, files: dict[str, str]) -> dict[str, dict[str, Any]]:
        argv = _launcher_argv(rootfs, tmp_path, lang.compile or "", *files)
        results: dict[str, dict[str, Any]] = {}
        for side in ("cold", "warm"):
            work = tmp_path / f"{name}.{side}"
            for file, text in files.items():
                (work / file).parent.mkdir(parents=True, exist_ok=True)
                (work / file).write_text(text)
        cwd = f"/mnt/{name}.warm"
        request = b"".join(f"{v}\0".encode() for v in [len(argv), "java", cwd, *argv])
        (tmp_path / f"{name}.req").write_bytes(request)
        # fd 5 is a pipe, as in the sandbox: the server reopens /proc/self/fd/5
        at = f"/mnt/{name}"
        warm_script = (
            f'{{ "$@" 3<{at}.req 4>{at}.reply 5>&1 1>&6 6>&-; echo $? > {at}.code; }} 6>&1'
            f" | cat > {at}.ready; exit $(cat {at}.code)"
        )
        with ThreadPoolExecutor(2) as pool:
            cold = pool.submit(
                _bwrap, rootfs, tmp_path, f"/mnt/{name}.cold", 'exec java "$@"', *argv
            )
            warm = pool.submit(
                _bwrap, rootfs, tmp_path, cwd, warm_script, *server, "--", "java", *prefix
            )
            for side, done in (("cold", cold.result()), ("warm", warm.result())):
                results[side] = {
                    "exit": done.returncode,
                    "stdout": done.stdout,
                    "stderr": done.stderr,
                    "files": _tree(tmp_path / f"{name}.{side}"),
                }
        results["warm"]["said"] = (tmp_path / f"{name}.ready").read_bytes()
        return results

    for name, (files, reused) in corpus.items():
        results = compile_both(name, files)
        said = results["warm"].pop("said")
        assert said == (b"\nsr" if reused else b"\ns"), f"{name}: the server said {said!r}"
        assert results["warm"] == results["cold"], f"{name}: reused and cold scalac differ"
        built = [f for f in results["cold"]["files"] if f.endswith(".class")]
        if name in ("error", "other", "names"):
            assert results["cold"]["exit"] == 1 and not built, results["cold"]
            assert b"error" in results["cold"]["stderr"]
        else:
            assert results["cold"]["exit"] == 0 and built, results["cold"]
