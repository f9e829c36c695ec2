"""The paths a language's sample program looks up, recorded at image build time.

For each catalog language with ``warm_paths = true``, the build compiles and
runs a sample program of ours (``SAMPLES``, never a user's) in the image,
chrooted, under ``strace``, and writes every absolute path its processes
looked up (found or not) to ``WALK_DIR/<name>.paths`` in the image. A pooled
sandbox looks them up in its own overlay before it is handed out
(:mod:`tvm.pyrovm.agent.pathwalk`), so its request's lookups start cached.

The scratch dirs (``/work``, ``/tmp``) and the kernel's (``/proc``, ``/dev``,
``/sys``) are left out: a sandbox gets fresh ones of its own.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tvm.config.catalog import WALK_DIR
from tvm.errors import ImageBuildFailed
from tvm.pyrovm.agent.main import DEFAULT_ENV

WORK = "/work"
SKIPPED = ("/work", "/tmp", "/proc", "/dev", "/sys", "/.tvm")
# The first string argument of a traced call: its path (strace -e trace=%file).
_PATH_ARG = re.compile(r'^\d+ +\w+\((?:AT_FDCWD, |-?\d+, )?"((?:[^"\\]|\\.)*)"')
_CHROOTED = re.compile(r'^\d+ +chroot\(".*"\) += 0$')
_PLAIN = re.compile(r"^/[A-Za-z0-9_./+@:=,~-]*$")  # no escapes, spaces or newlines
MAX_PATHS = 20000
SAMPLE_INPUT = "3 14 15 92\n65 35\n"

# What a typical request loads: formatted output, stdin, strings, a sort.
SAMPLES = {
    ".php": """<?php
$numbers = array_map('intval', preg_split('/\\s+/', trim(stream_get_contents(STDIN))));
sort($numbers);
printf("%d numbers, sum %d, max %s\\n", count($numbers), array_sum($numbers),
       json_encode(max($numbers)));
echo strtoupper(implode(",", $numbers)), PHP_EOL;
""",
    ".go": """package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Split(bufio.ScanWords)
	var xs []int
	for in.Scan() {
		n, err := strconv.Atoi(in.Text())
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		xs = append(xs, n)
	}
	sort.Ints(xs)
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.Itoa(x)
	}
	fmt.Printf("%d numbers, %s, %.2f\\n", len(xs), strings.Join(parts, ","), math.Sqrt(2))
}
""",
}


def paths_in(trace: Sequence[str]) -> list[str]:
    """The absolute paths a ``strace -f -e trace=%file`` log looked up, once each,
    in first-seen order, without the scratch and kernel dirs; only those after
    its first successful ``chroot`` (before it, the paths are the host's)."""
    chrooted = [i for i, line in enumerate(trace) if _CHROOTED.match(line)]
    seen: dict[str, None] = {}
    for line in trace[chrooted[0] + 1 if chrooted else 0 :]:
        match = _PATH_ARG.match(line)
        if match is None or not match[1]:
            continue
        path = match[1].rstrip("/") or "/"
        if not _PLAIN.match(path) or "/../" in f"{path}/":
            continue
        if any(path == top or path.startswith(f"{top}/") for top in SKIPPED):
            continue
        seen.setdefault(path, None)
    return list(seen)[:MAX_PATHS]


def record_paths(rootfs: Path, runs: Sequence[tuple[str, str, str, str]]) -> list[str]:
    """For each ``(name, source file, compile or "", run)``, write the paths its
    sample program looks up to ``WALK_DIR/<name>.paths``; the lists written."""
    strace = shutil.which("strace")
    if strace is None:
        raise ImageBuildFailed("strace not found (it records the paths): apt-get install strace")
    (rootfs / WALK_DIR.lstrip("/")).mkdir(mode=0o755, parents=True, exist_ok=True)
    written = []
    for name, source_file, compile_, run in runs:
        suffix = Path(source_file).suffix
        if suffix not in SAMPLES:
            raise ImageBuildFailed(f"no sample program for {source_file} to record paths with")
        script = f"printf {shlex.quote(SAMPLE_INPUT)} | {run}"
        if compile_:
            script = f"/bin/sh -c {shlex.quote(compile_)} compile {source_file} && {script}"
        trace = _traced(rootfs, strace, source_file, SAMPLES[suffix], script)
        target = rootfs / WALK_DIR.lstrip("/") / f"{name}.paths"
        target.write_text("".join(f"{path}\n" for path in paths_in(trace)))
        target.chmod(0o444)
        written.append(f"{WALK_DIR}{name}.paths")
    return written


def _traced(rootfs: Path, strace: str, source_file: str, code: str, script: str) -> list[str]:
    """Run ``script`` in the image's work dir holding ``code`` under strace; its
    trace. Leaves no trace in ``/work`` or ``/tmp``."""
    work = rootfs / WORK.lstrip("/")
    (work / source_file).write_text(code)
    tmp_before = set((rootfs / "tmp").iterdir())
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    env = [f"{k}={v}" for k, v in DEFAULT_ENV.items()]
    try:
        with tempfile.TemporaryDirectory(prefix="tvm-walk-") as scratch:
            log = Path(scratch, "trace")
            argv = [strace, "-f", "-qq", "-e", "trace=%file", "-s", "4096", "-o", str(log),
                    chroot, str(rootfs), "/usr/bin/env", "-i", *env,
                    "/bin/sh", "-c", f"cd {WORK} && {script}"]  # fmt: skip
            proc = subprocess.run(
                argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
            )
            if proc.returncode != 0:
                raise ImageBuildFailed(
                    f"{script}: exited {proc.returncode} on the path sample: {proc.stderr[-800:]}"
                )
            return log.read_text(errors="replace").splitlines()
    finally:
        for path in [*work.iterdir(), *(set((rootfs / "tmp").iterdir()) - tmp_before)]:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
