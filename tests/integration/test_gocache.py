"""The Go build cache baked into the go 1.24 image serves the catalog's exact
compile command, and changes nothing in what it builds.

The image's own go runs chrooted into the built image (a private mount
namespace puts a scratch ``/work``, ``/tmp`` and ``/proc`` into it): the
catalog's compile command, word for word, must find the standard library in
the baked cache (its fresh per-sandbox cache gets only the program's own
entries); the same command with no ``GOCACHEPROG`` and an empty cache (a cold
build, the standard library compiled from source) must write the same
``a.out`` byte for byte, in the same directory. The program then runs through
the real service, whose output must equal the cold build's.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import require_languages
from tvm.config.settings import Settings
from tvm.pyrovm.images import ImageStore
from tvm.pyrovm.images.gocache import CACHE, OWN_ENTRIES, PROG, go_env

pytestmark = [pytest.mark.namespace]

PROGRAM = """package main

import (
\t"bufio"
\t"fmt"
\t"os"
\t"sort"
\t"strings"
)

func main() {
\tin := bufio.NewScanner(os.Stdin)
\tvar words []string
\tfor in.Scan() {
\t\twords = append(words, strings.Fields(in.Text())...)
\t}
\tsort.Strings(words)
\tfmt.Println(len(words), strings.Join(words, ","))
}
"""
STDIN = "pear apple\nfig\n"


def chroot_sh(rootfs: Path, work: Path, script: str) -> subprocess.CompletedProcess[str]:
    """``script`` run by the image's ``/bin/sh`` in ``/work`` (= ``work``), as root."""
    inner = f"cd /work && {script}"
    r = shlex.quote(str(rootfs))
    setup = (
        f"mount --bind {shlex.quote(str(work))} {r}/work && mount -t tmpfs tmpfs {r}/tmp && "
        f"mount -t proc proc {r}/proc && exec chroot {r} env -i PATH=/usr/bin:/bin HOME=/tmp "
        f"/bin/sh -c {shlex.quote(inner)}"
    )
    argv = ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", setup]
    return subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)


@pytest.fixture
def go(settings: Settings) -> tuple[str, Path]:
    (lang,) = require_languages(settings, "go@1.24.4")
    if not lang.image.go_cache:
        pytest.skip("the go 1.24 image bakes no build cache")
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is needed to chroot into the image")
    assert lang.compile is not None
    return lang.compile, ImageStore(settings).rootfs(lang.image)


def test_cache_is_read_only_and_hit_and_builds_the_same_bytes(
    go: tuple[str, Path], tmp_path: Path, api: httpx.Client
) -> None:
    compile_, rootfs = go
    assert (rootfs / PROG.lstrip("/")).is_file()
    baked = rootfs / CACHE.lstrip("/")
    assert len(list((baked / "a").iterdir())) > 300  # go build std: every package
    assert not any(p.stat().st_mode & 0o022 for p in [baked, *baked.rglob("*")])
    env = go_env(compile_)
    assert env is not None
    own = f"{env['GOCACHE']}/prog/a"
    (tmp_path / "main.go").write_text(PROGRAM)
    stdin = shlex.quote(STDIN)

    # The catalog's command word for word, as the sandbox runs it (sh, file names as $@).
    warm = f"sh -c {shlex.quote(compile_)} compile main.go"
    proc = chroot_sh(rootfs, tmp_path, f"{warm} && ls {own} | wc -l && mv a.out warm.out")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 0 < int(proc.stdout.split()[-1]) <= OWN_ENTRIES, proc.stdout

    # Cold: no GOCACHEPROG, an empty cache: the standard library compiled from source.
    cold_command = compile_.replace(f"GOCACHEPROG={PROG}", "GOCACHEPROG=")
    assert cold_command != compile_
    cold = f"sh -c {shlex.quote(cold_command)} compile main.go"
    proc = chroot_sh(rootfs, tmp_path, f"{cold} && ls {own} 2>/dev/null | wc -l && "
                     f"printf {stdin} | ./a.out")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "0"  # nothing went through the cache program
    cold_output = "\n".join(lines[1:]) + "\n"
    assert cold_output == "3 apple,fig,pear\n"
    assert (tmp_path / "a.out").read_bytes() == (tmp_path / "warm.out").read_bytes()

    # Through the real service: the same output as the cold build.
    reply = api.post(
        "/api/v2/execute",
        json={
            "language": "go",
            "version": "1.24",
            "files": [{"name": "main.go", "content": PROGRAM}],
            "stdin": STDIN,
        },
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["compile"]["code"] == 0, body
    assert body["run"]["stdout"] == cold_output, body


def test_other_flags_miss_the_cache_and_still_build(go: tuple[str, Path], tmp_path: Path) -> None:
    """A build the cache was not made for (``-gcflags=-N``: other compiler flags)
    compiles the standard library itself into the sandbox's cache, and works."""
    compile_, rootfs = go
    env = go_env(compile_)
    assert env is not None
    (tmp_path / "main.go").write_text(PROGRAM)
    other = compile_.replace("go build", "go build -gcflags=all=-N")
    assert other != compile_
    script = (
        f"sh -c {shlex.quote(other)} compile main.go && ls {env['GOCACHE']}/prog/a | wc -l"
        f" && printf {shlex.quote(STDIN)} | ./a.out"
    )
    proc = chroot_sh(rootfs, tmp_path, script)
    assert proc.returncode == 0, proc.stderr[-2000:]
    count, output = proc.stdout.split("\n", 1)
    assert int(count) > 50  # fmt and its dependencies, compiled here
    assert output == "3 apple,fig,pear\n"
