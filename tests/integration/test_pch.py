"""The precompiled ``bits/stdc++.h`` baked into the g++ 12 and g++ 14 images is
used by the catalog's exact C++ compile command, and changes nothing in what it builds.

The image's own g++ runs chrooted into the built image (a private mount
namespace puts a scratch ``/work`` into it): the catalog's compile command, word
for word, plus ``-H`` must load the ``.gch``; the same command with the header
found in a copy that has no ``.gch`` beside it (a cold build) must not, and both
must write the same ``a.out`` byte for byte. The program then runs through the
real service, whose output must equal the cold build's.
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

pytestmark = [pytest.mark.namespace]

PROGRAM = r"""#include <bits/stdc++.h>
using namespace std;
int main() {
    int n; cin >> n;
    vector<long long> v(n);
    for (auto &x : v) cin >> x;
    sort(v.begin(), v.end());
    map<long long, int> seen;
    for (auto x : v) seen[x]++;
    cout << accumulate(v.begin(), v.end(), 0LL) << " " << seen.size() << "\n";
    cout << fixed << setprecision(3) << sqrt((double)v.back()) << "\n";
}
"""
STDIN = "5\n9 1 4 4 16\n"


def chroot_sh(rootfs: Path, work: Path, script: str) -> subprocess.CompletedProcess[str]:
    """``script`` run by the image's ``/bin/sh`` in ``/work`` (= ``work``), as root."""
    inner = f"cd /work && {script}"
    setup = (
        f"mount --bind {shlex.quote(str(work))} {shlex.quote(str(rootfs / 'work'))} && "
        f"mount -t tmpfs tmpfs {shlex.quote(str(rootfs / 'tmp'))} && "
        f"exec chroot {shlex.quote(str(rootfs))} env -i PATH=/usr/bin:/bin HOME=/tmp "
        f"/bin/sh -c {shlex.quote(inner)}"
    )
    argv = ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", setup]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(params=["c++@12.2.0", "c++@14.2.0"])
def cpp(settings: Settings, request: pytest.FixtureRequest) -> tuple[str, Path, str]:
    (lang,) = require_languages(settings, request.param)
    if not lang.image.pch:
        pytest.skip("the c++ image precompiles no header")
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is needed to chroot into the image")
    assert lang.compile is not None
    return lang.compile, ImageStore(settings).rootfs(lang.image), lang.version


def test_pch_is_used_and_builds_the_same_bytes(
    cpp: tuple[str, Path, str], tmp_path: Path, api: httpx.Client
) -> None:
    compile_, rootfs, version = cpp
    warm, cold = tmp_path / "warm", tmp_path / "cold"
    for work in (warm, cold):
        work.mkdir()
        (work / "main.cpp").write_text(PROGRAM)
    # The catalog's command word for word, with g++'s include trace on.
    proc = chroot_sh(rootfs, warm, f"{compile_} -H")
    assert proc.returncode == 0, proc.stderr[-2000:]
    used = [line for line in proc.stderr.splitlines() if line.startswith("! ")]
    assert len(used) == 1 and "bits/stdc++.h.gch/" in used[0], proc.stderr[:2000]
    assert (rootfs / used[0][2:].lstrip("/")).is_file()

    # Cold: the same command, the header found first in a copy without a .gch.
    header = used[0][2:].split(".gch/")[0]
    script = (
        f"mkdir -p /tmp/cold/bits && cp {shlex.quote(header)} /tmp/cold/bits/ && "
        f"CPLUS_INCLUDE_PATH=/tmp/cold {compile_} -H && printf {shlex.quote(STDIN)} | ./a.out"
    )
    proc = chroot_sh(rootfs, cold, script)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not any(line.startswith("! ") for line in proc.stderr.splitlines())
    assert ". /tmp/cold/bits/stdc++.h" in proc.stderr
    cold_output = proc.stdout
    assert cold_output.startswith("34 4\n")

    assert (warm / "a.out").read_bytes() == (cold / "a.out").read_bytes()

    # Through the real service: the same output as the cold build, byte for byte.
    reply = api.post(
        "/api/v2/execute",
        json={
            "language": "c++",
            "version": version,
            "files": [{"name": "main.cpp", "content": PROGRAM}],
            "stdin": STDIN,
        },
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["compile"]["code"] == 0, body
    assert body["run"]["stdout"] == cold_output, body


def test_other_flags_ignore_the_pch(cpp: tuple[str, Path, str], tmp_path: Path) -> None:
    """A compile with other flags (another -std) parses the header itself and works."""
    compile_, rootfs, _ = cpp
    (tmp_path / "main.cpp").write_text(PROGRAM)
    other = compile_.replace("-std=gnu++17", "-std=c++14").replace("-std=gnu++20", "-std=c++14")
    assert other != compile_
    proc = chroot_sh(rootfs, tmp_path, f"{other} -H && printf {shlex.quote(STDIN)} | ./a.out")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not any(line.startswith("! ") for line in proc.stderr.splitlines())
    assert proc.stdout.startswith("34 4\n")
