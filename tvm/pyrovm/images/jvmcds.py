"""Class-data-sharing archives of the JVM compilers and runs, dumped at image build time.

A JVM compiler (javac, kotlinc, scalac) spends much of its start parsing,
verifying and linking the same few thousand classes on every run. A catalog
compile command that names an archive in :data:`~tvm.config.catalog.CDS_DIR`
(``-XX:SharedArchiveFile=/usr/local/lib/tvm-cds/kotlinc.jsa``, next to
``-Xshare:auto`` and ``-Xlog:cds=off,cds+dynamic=off``, which the catalog
requires) maps those classes from the archive instead. The image build makes
each archive by running that very command on a sample program with
``-XX:ArchiveClassesAtExit`` in place of ``-XX:SharedArchiveFile``: a dynamic
archive layered over the JDK's own ``classes.jsa``, bound by the JVM to the
same JDK, class path (jar sizes and times) and the options it checks. It then
runs the command again with ``-Xshare:on`` (the JVM refuses to start if it
cannot map the archive) so that an archive the command would not use fails
the build rather than ship. At run time a JVM that cannot use it (another
JDK, another class path) runs without it, silently: ``-Xshare:auto``, and the
``cds`` warnings are off.

The warm sandbox's pre-started compiler (``agent/warm/TvmWarm.java``) is the
same JVM with the launcher's options, so it maps the same archive.

A run command may name one too (scala's, for ``scala-library.jar``): the
build compiles the sample, lists the classes its run loads
(``-XX:DumpLoadedClassList``) and dumps a static archive of them with the
run's options for the jars of its class path (:func:`static_dump_command`),
then checks the run maps it.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Sequence
from pathlib import Path

from tvm.config.catalog import CDS_DIR
from tvm.errors import ImageBuildFailed
from tvm.pyrovm.agent.main import DEFAULT_ENV
from tvm.pyrovm.images.gocache import chroot_run

ARCHIVE = re.compile(r"-XX:SharedArchiveFile=(" + re.escape(CDS_DIR) + r"[A-Za-z0-9_.-]+\.jsa)")
WORK = "/work"  # the image's (empty) work dir mount point: the sample compiles there
CLASSLIST = "/tmp/tvm-cds.classlist"  # build time only: what a sample run loaded
_CLASS_PATH_DOT = re.compile(r"(-cp|-classpath|--class-path) (\S+):\.(?=\s)")
SAMPLE_INPUT = "3 14 15 92\n65 35\n"

# Sample programs by source suffix: what a typical request makes the compiler
# load (collections, lambdas, string formatting, stdin, exceptions).
SAMPLES = {
    ".java": """import java.util.*;
import java.util.stream.*;

public class Main {
    interface Shape { double area(); }
    enum Kind { SMALL, LARGE }
    static final class Square implements Shape {
        private final double side;
        Square(double side) { this.side = side; }
        public double area() { return side * side; }
    }
    static int fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
    public static void main(String[] args) throws Exception {
        Scanner in = new Scanner(System.in);
        List<Integer> xs = new ArrayList<>();
        while (in.hasNextInt()) xs.add(in.nextInt());
        Map<Kind, List<Integer>> byKind = xs.stream()
            .collect(Collectors.groupingBy(x -> x > 10 ? Kind.LARGE : Kind.SMALL));
        StringBuilder sb = new StringBuilder();
        for (Map.Entry<Kind, List<Integer>> e : new TreeMap<>(byKind).entrySet()) {
            sb.append(String.format("%s=%d%n", e.getKey(), e.getValue().size()));
        }
        Shape s = new Square(fib(10));
        switch (xs.size()) {
            case 0: System.out.println("none"); break;
            default: System.out.print(sb);
        }
        try {
            System.out.printf("%.2f %s%n", s.area(), Arrays.toString(args));
        } catch (IllegalArgumentException e) {
            throw new RuntimeException(e);
        }
    }
}
""",
    ".kt": """data class Point(val x: Int, val y: Int)

fun fib(n: Int): Int = if (n < 2) n else fib(n - 1) + fib(n - 2)

fun main(args: Array<String>) {
    val xs = generateSequence { readLine() }.flatMap { it.split(" ").asSequence() }
        .mapNotNull { it.toIntOrNull() }.toList()
    val points = xs.mapIndexed { i, v -> Point(i, v) }
    val byParity = points.groupBy { if (it.y % 2 == 0) "even" else "odd" }
    for ((k, v) in byParity.toSortedMap()) println("$k=${v.size}")
    when (xs.size) {
        0 -> println("none")
        else -> println("%.2f".format(xs.average()))
    }
    try {
        println(fib(10).toString() + args.joinToString())
    } catch (e: IllegalStateException) {
        throw RuntimeException(e)
    }
}
""",
    ".scala": """import scala.io.StdIn

case class Point(x: Int, y: Int)

object Main {
  def fib(n: Int): Int = if (n < 2) n else fib(n - 1) + fib(n - 2)

  def main(args: Array[String]): Unit = {
    val xs = Iterator.continually(StdIn.readLine()).takeWhile(_ != null)
      .flatMap(_.split(" ")).filter(_.nonEmpty).map(_.toInt).toList
    val points = xs.zipWithIndex.map { case (v, i) => Point(i, v) }
    val byParity = points.groupBy(p => if (p.y % 2 == 0) "even" else "odd")
    for ((k, v) <- byParity.toSeq.sortBy(_._1)) println(s"$k=${v.size}")
    xs match {
      case Nil => println("none")
      case _ => println(f"${xs.sum.toDouble / xs.size}%.2f")
    }
    try println(fib(10).toString + args.mkString(","))
    catch { case e: IllegalStateException => throw new RuntimeException(e) }
  }
}
""",
}


def archives(command: str) -> list[str]:
    """The archives of :data:`CDS_DIR` that ``command`` names."""
    return ARCHIVE.findall(command)


_FLAG = re.compile(
    r" (?:-J)?(?:-Xshare:auto|-XX:SharedArchiveFile=" + re.escape(CDS_DIR) + r"[A-Za-z0-9_.-]+"
    r"|-Xlog:cds=off,cds\+dynamic=off)(?=[\s\"']|$)"
)


def without_cds(command: str) -> str:
    """``command`` without the archive flags: what it was before it had them
    (the JDK's own ``classes.jsa`` is still mapped)."""
    return _FLAG.sub("", command)


def dump_command(command: str, archive: str) -> str:
    """``command`` writing ``archive`` at its exit instead of mapping it."""
    return command.replace(f"SharedArchiveFile={archive}", f"ArchiveClassesAtExit={archive}")


def check_command(command: str) -> str:
    """``command`` with the archive required: its JVM will not start without it."""
    return command.replace("-Xshare:auto", "-Xshare:on")


def classlist_command(run: str, archive: str) -> str:
    """The run command writing the classes its program loads to :data:`CLASSLIST`."""
    return run.replace(f"-XX:SharedArchiveFile={archive}", f"-XX:DumpLoadedClassList={CLASSLIST}")


def static_dump_command(run: str, archive: str) -> str:
    """The run command's JVM dumping ``archive`` from :data:`CLASSLIST` (and
    exiting): the same options, its class path without the trailing ``.``. The
    program's own classes are no part of it, and a directory on an archive's
    class path must be empty; a class path that the run's extends is still
    the archive's, so the run maps it."""
    dump = run.replace("-Xshare:auto", "-Xshare:dump").replace(
        f"-XX:SharedArchiveFile={archive}",
        f"-XX:SharedClassListFile={CLASSLIST} -XX:SharedArchiveFile={archive}",
    )
    dump, found = _CLASS_PATH_DOT.subn(r"\1 \2", dump)
    if found != 1:
        raise ImageBuildFailed(f"{run}: an archive for a run needs one '-cp JARS:.'")
    return dump


def _in_work(rootfs: Path, source_file: str, scripts: Sequence[str]) -> None:
    """Run each of ``scripts`` (shell text, ``$1`` the sample's file name) in the
    image's work dir holding the sample program; then leave no trace there or
    in ``/tmp``."""
    suffix = Path(source_file).suffix
    if suffix not in SAMPLES:
        raise ImageBuildFailed(f"no sample program for {source_file} to dump a CDS archive with")
    work = rootfs / WORK.lstrip("/")
    (work / source_file).write_text(SAMPLES[suffix])
    tmp_before = set((rootfs / "tmp").iterdir())
    try:
        for script in scripts:
            argv = ["/bin/sh", "-c", script, "compile", source_file]
            proc = chroot_run(rootfs, argv, DEFAULT_ENV, WORK)
            if proc.returncode != 0:
                raise ImageBuildFailed(
                    f"{script}: exited {proc.returncode} on the CDS sample: {proc.stderr[-800:]}"
                )
    finally:
        for path in [*work.iterdir(), *(set((rootfs / "tmp").iterdir()) - tmp_before)]:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def _written(rootfs: Path, archive: str, command: str) -> None:
    target = rootfs / archive.lstrip("/")
    if not target.is_file():
        raise ImageBuildFailed(f"{command}: the JVM wrote no {archive}")
    target.chmod(0o444)


def build_cds(
    rootfs: Path,
    compiles: Sequence[tuple[str, str]],
    runs: Sequence[tuple[str, str, str]] = (),
) -> list[str]:
    """Dump the archive each of ``compiles`` (source file, compile command) names,
    by that command compiling a sample, then each that ``runs`` (source file,
    compile, run) name, from the classes the sample's run loads; the archives
    written (read-only)."""
    written: list[str] = []
    (rootfs / CDS_DIR.lstrip("/")).mkdir(mode=0o755, parents=True, exist_ok=True)
    for source_file, command in compiles:
        for archive in archives(command):
            if archive in written:
                continue
            (rootfs / archive.lstrip("/")).unlink(missing_ok=True)
            _in_work(rootfs, source_file, [dump_command(command, archive)])
            _written(rootfs, archive, command)
            _in_work(rootfs, source_file, [check_command(command)])
            written.append(archive)
    for source_file, compile_, run in runs:
        for archive in archives(run):
            if archive in written:
                continue
            (rootfs / archive.lstrip("/")).unlink(missing_ok=True)
            feed = f"printf {shlex.quote(SAMPLE_INPUT)} | "
            dump = [
                compile_,
                feed + classlist_command(run, archive),
                static_dump_command(run, archive),
            ]
            _in_work(rootfs, source_file, dump)
            _written(rootfs, archive, run)
            _in_work(rootfs, source_file, [compile_, feed + check_command(run)])
            written.append(archive)
    return written
