"""The firecracker driver's API traffic, checked against Firecracker's own spec.

Every request body the driver sends in every path (cold boot, pause, snapshot
create, snapshot load, resume) goes through a fake Firecracker API (httpx
MockTransport) that validates it with a JSON-schema validator against
``../shared/specs/firecracker-api-v1.16.1.yaml``. The hybrid-vsock
``CONNECT`` handshake runs against a fake Unix-socket server.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tvm.errors import SandboxError
from tvm.pyrovm.agent import protocol
from tvm.pyrovm.drivers import fcapi
from tvm.pyrovm.drivers.base import SandboxSpec
from tvm.pyrovm.drivers.firecracker import (
    API_SOCK,
    SNAP_MEM,
    SNAP_STATE,
    VSOCK,
    FirecrackerVM,
    JailPaths,
    boot_args,
    boot_calls,
    jailer_argv,
)

SPEC = Path(__file__).resolve().parents[3] / "shared" / "specs" / "firecracker-api-v1.16.1.yaml"

jsonschema = pytest.importorskip("jsonschema")
yaml = pytest.importorskip("yaml")


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    if not SPEC.is_file():
        pytest.skip(f"Firecracker API spec not found at {SPEC} (it lives outside the repo)")
    data: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    return data


def _operation(spec: dict[str, Any], method: str, path: str) -> tuple[dict[str, Any], dict]:
    for template, item in spec["paths"].items():
        pattern = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"
        match = re.match(pattern, path)
        if match and method.lower() in item:
            return item[method.lower()], match.groupdict()
    raise AssertionError(f"{method} {path} is not an operation of the Firecracker API")


def validate(spec: dict[str, Any], method: str, path: str, body: Any) -> None:
    """Raise if the request is not what the spec allows (schema + path params)."""
    operation, params = _operation(spec, method, path)
    body_params = [p for p in operation.get("parameters", []) if p.get("in") == "body"]
    if not body_params:
        assert body is None, f"{method} {path} takes no body"
        return
    schema = {**body_params[0]["schema"], "definitions": spec["definitions"]}
    jsonschema.Draft4Validator(schema).validate(body)
    for name, value in params.items():
        if name in body:
            assert body[name] == value, f"path {name}={value} but body says {body[name]}"


class FakeFirecracker:
    """Records and validates requests; answers like Firecracker does."""

    def __init__(self, spec: dict[str, Any], fail: str | None = None) -> None:
        self.spec = spec
        self.requests: list[tuple[str, str, Any]] = []
        self.fail = fail

    def handler(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.requests.append((request.method, request.url.path, body))
        try:
            validate(self.spec, request.method, request.url.path, body)
        except Exception as exc:
            return httpx.Response(400, json={"fault_message": f"invalid request: {exc}"})
        if self.fail and request.url.path == self.fail:
            return httpx.Response(400, json={"fault_message": "simulated failure"})
        if request.method == "GET":
            return httpx.Response(200, json={"id": "x", "state": "Running",
                                             "vmm_version": "1.16.1", "app_name": "Firecracker"})  # fmt: skip
        return httpx.Response(204)

    def api(self, tmp: Path) -> fcapi.FirecrackerAPI:
        return fcapi.FirecrackerAPI(tmp / "api.sock", transport=httpx.MockTransport(self.handler))


def _vm(tmp_path: Path, fake: FakeFirecracker) -> FirecrackerVM:
    return FirecrackerVM(JailPaths(tmp_path / "firecracker" / "tvm-x", "tvm-x"), fake.api(tmp_path))


async def test_cold_boot_requests_match_the_spec(spec: dict, tmp_path: Path) -> None:
    fake = FakeFirecracker(spec)
    vm = _vm(tmp_path, fake)
    await vm.api.wait_ready()
    await vm.run(boot_calls(512 + 96, 2, boot_args(SandboxSpec("img", Path("/r"), uid=60001))))
    paths = [(m, p) for m, p, _ in fake.requests]
    assert paths == [
        ("GET", "/"), ("PUT", "/machine-config"), ("PUT", "/boot-source"),
        ("PUT", "/drives/rootfs"), ("PUT", "/drives/scratch"), ("PUT", "/vsock"),
        ("PUT", "/actions"),
    ]  # fmt: skip
    bodies = {p: b for _, p, b in fake.requests}
    assert bodies["/machine-config"] == {"vcpu_count": 2, "mem_size_mib": 608, "smt": False}
    assert bodies["/drives/rootfs"]["is_read_only"] is True
    assert bodies["/drives/rootfs"]["is_root_device"] is True
    assert bodies["/vsock"] == {"guest_cid": 3, "uds_path": VSOCK}
    assert bodies["/actions"] == {"action_type": "InstanceStart"}
    args = bodies["/boot-source"]["boot_args"].split()
    assert {"tvm.channel=vsock:52", "tvm.scratch=/dev/vdb", "init=/.tvm/init"} <= set(args)
    assert {"tvm.work_mb=64", "tvm.tmp_mb=64", "console=ttyS0", "reboot=k"} <= set(args)
    await vm.api.close()


async def test_snapshot_create_load_pause_resume_match_the_spec(spec: dict, tmp_path: Path) -> None:
    fake = FakeFirecracker(spec)
    vm = _vm(tmp_path, fake)
    await vm.snapshot(SNAP_STATE, SNAP_MEM)  # pause + create
    await vm.resume()
    await vm.pause()
    await vm.load(SNAP_STATE, SNAP_MEM)
    assert [(m, p, b) for m, p, b in fake.requests] == [
        ("PATCH", "/vm", {"state": "Paused"}),
        ("PUT", "/snapshot/create",
         {"snapshot_type": "Full", "snapshot_path": SNAP_STATE, "mem_file_path": SNAP_MEM}),
        ("PATCH", "/vm", {"state": "Resumed"}),
        ("PATCH", "/vm", {"state": "Paused"}),
        ("PUT", "/snapshot/load",
         {"snapshot_path": SNAP_STATE, "resume_vm": True,
          "mem_backend": {"backend_type": "File", "backend_path": SNAP_MEM}}),
    ]  # fmt: skip
    await vm.api.close()


def test_the_validator_rejects_what_firecracker_rejects(spec: dict) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate(spec, "PUT", "/machine-config", {"vcpu_count": 0, "mem_size_mib": 128})
    with pytest.raises(jsonschema.ValidationError):
        validate(spec, "PUT", "/vsock", {"guest_cid": 2, "uds_path": "v.sock"})
    with pytest.raises(jsonschema.ValidationError):
        validate(spec, "PATCH", "/vm", {"state": "Stopped"})
    with pytest.raises(AssertionError):
        validate(spec, "PUT", "/drives/a", {"drive_id": "b", "is_root_device": False})


async def test_api_failures_become_sandbox_errors_with_the_fault(
    spec: dict, tmp_path: Path
) -> None:
    fake = FakeFirecracker(spec, fail="/actions")
    vm = _vm(tmp_path, fake)
    with pytest.raises(SandboxError, match="simulated failure"):
        await vm.run(boot_calls(256, 1, "console=ttyS0"))
    await vm.api.close()


def test_jailer_command_line(tmp_path: Path) -> None:
    jail = JailPaths(tmp_path / "firecracker" / "tvm-abc", "tvm-abc")
    argv = jailer_argv("/usr/bin/jailer", "/usr/bin/firecracker", jail, 60005, 512, 64,
                       "/var/run/netns/tvm-abc", 2, cpus=2)  # fmt: skip
    joined = " ".join(argv)
    assert "--id tvm-abc" in joined and "--uid 60005 --gid 60005" in joined
    assert f"--chroot-base-dir {tmp_path}" in joined
    assert "--cgroup memory.max=608M" in joined and "--cgroup pids.max=128" in joined
    assert "cpu.max=200000 100000" in argv and "--netns /var/run/netns/tvm-abc" in joined
    assert argv[-3:] == ["--", "--api-sock", API_SOCK]
    v1 = jailer_argv("j", "f", jail, 60005, 512, 64, None, 1)
    assert f"memory.limit_in_bytes={608 << 20}" in " ".join(v1) and "--netns" not in v1
    assert "cpu.cfs_quota_us=100000" in v1


async def test_hybrid_vsock_connect_retries_and_keeps_guest_bytes(tmp_path: Path) -> None:
    """Firecracker closes the connection until the guest listens, then answers
    ``OK <port>``; bytes right after that line belong to the agent."""
    jail = JailPaths(tmp_path / "firecracker" / "tvm-v", "tvm-v")
    uds = jail.host(VSOCK)
    uds.parent.mkdir(parents=True)
    attempts = 0
    hello = protocol.encode({"type": "hello", "protocol": protocol.PROTOCOL_VERSION})

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        attempts += 1
        line = await reader.readline()
        assert line == b"CONNECT 52\n"
        if attempts < 3:  # guest still booting
            writer.close()
            return
        writer.write(b"OK 1073741824\n" + hello)
        await writer.drain()
        await reader.read()  # until the host hangs up
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_unix_server(serve, path=str(uds))
    vm = FirecrackerVM(jail, fcapi.FirecrackerAPI(jail.host(API_SOCK)))
    try:
        channel = await vm.connect_agent(timeout=5)
        header = await channel.recv(4)
        frame = protocol.decode_body(await channel.recv(protocol.decode_header(header)))
        assert frame["type"] == "hello"
        assert attempts == 3
        await channel.close()
    finally:
        server.close()
        await server.wait_closed()
