"""End to end under QEMU: ``/api/v2/execute`` with ``TVM_DRIVER=qemu`` boots a
microVM (a software CPU here), runs a Python program with stdin in it, and
leaves no VM, socket or temp dir behind once the service stops."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import Server
from tvm.config.catalog import load_catalog
from tvm.config.settings import Settings
from tvm.pyrovm.images import ImageStore

pytestmark = [pytest.mark.qemu, pytest.mark.slow]


def _qemu_processes() -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if cmd.startswith(b"/usr/bin/qemu-system") and b"/tmp/tvm-qemu-" in cmd:
            found.append(pid)
    return found


def test_execute_python_with_stdin_in_a_vm(tmp_path: Path) -> None:
    from tvm.pyrovm.drivers.qemu import QemuDriver

    availability = QemuDriver.probe(Settings())
    if not availability.usable:
        pytest.skip(f"qemu driver unusable: {availability.reason}")
    language = load_catalog().get("python@3.11.2")
    if not ImageStore(Settings()).is_built(language.image):
        pytest.skip(f"image {language.image.name} not built (run: tvm images build)")
    before = {p for p in os.listdir("/tmp") if p.startswith("tvm-qemu-")}
    server = Server(tmp_path, env={"TVM_DRIVER": "qemu", "TVM_POOL_SIZE": "0"})
    try:
        with server.client() as client:
            assert client.get("/health").status_code == 200
            response = client.post("/api/v2/execute", json={
                "language": "python", "version": "3.11.2",
                "files": [{"name": "main.py",
                           "content": "import sys\nprint('hi', sys.stdin.read().strip()[::-1])"}],
                "stdin": "olleh",
            })  # fmt: skip
            assert response.status_code == 200, response.text
            run = response.json()["run"]
            assert run["stdout"] == "hi hello\n", response.json()
            assert run["code"] == 0
    finally:
        server.stop()
        print(server.log.read_text()[-3000:])
    assert not _qemu_processes(), "a qemu process outlived the service"
    left = {p for p in os.listdir("/tmp") if p.startswith("tvm-qemu-")} - before
    assert not left, f"VM temp dirs (sockets) left behind: {left}"
