"""Which live call a request is, and which worker process a sandbox id names."""

from __future__ import annotations

from tvm.pyroshell.live_proxy import Target, classify
from tvm.pyrovm.live import ID_LENGTH, boot_of, new_boot


def _scope(path: str, headers: dict[str, str] | None = None) -> dict[str, object]:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return {"type": "http", "path": path, "headers": raw}


def test_classify_names_the_family_and_the_sandbox() -> None:
    assert classify(_scope("/api/v1/sandboxes")) == Target("native", None)
    assert classify(_scope("/api/v1/sandboxes/sbX/files")) == Target("native", "sbX")
    assert classify(_scope("/v2/sandboxes")) == Target("e2b", None)
    assert classify(_scope("/v2/sandboxes/sbY/connect")) == Target("e2b", "sbY")
    assert classify(_scope("/sandboxes/sbZ")) == Target("e2b", "sbZ")
    envd = _scope("/process.Process/Start", {"E2b-Sandbox-Id": "sbW"})
    assert classify(envd) == Target("envd", "sbW")
    assert classify(_scope("/api/v1/execute")) is None
    assert classify(_scope("/sandboxesque")) is None


def test_a_sandbox_id_carries_its_workers_boot_tag() -> None:
    boot = new_boot()
    sandbox_id = "sb" + boot + "0123456789abcdef"
    assert len(sandbox_id) == ID_LENGTH
    assert boot_of(sandbox_id) == boot
    assert new_boot() != boot
    assert boot_of("sb" + "zz" * 4 + "0" * 16) is None  # not hex
    assert boot_of("sb1234") is None
    assert boot_of("x" + sandbox_id[1:]) is None
