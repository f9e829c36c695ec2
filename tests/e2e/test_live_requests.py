"""What the live-sandbox routes' schema promises, against a real ``tvm start``:
a context's id comes back through the path (restart, delete, then 404), a request
outside the schema's rules is a 400 naming its field, one the sandbox's state
refuses is a 409 (404 only for what the URL names), and the served schema states
the running server's own limits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Server, namespace_unavailable
from tests.live_support import assert_nothing_left
from tvm.config.settings import Settings

pytestmark = pytest.mark.namespace
MOST = 300  # the server's live_max_timeout_seconds


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    reason = namespace_unavailable(Settings())
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("live-requests")
    env = {"TVM_LIVE_MAX_TIMEOUT_SECONDS": str(MOST), "TVM_LIVE_MAX_MEMORY_MB": "256",
           "TVM_LIVE_MEMORY_MB": "128"}  # fmt: skip
    server = Server(tmp, env=env, args=["--driver", "namespace"])
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sandbox(service: Server) -> Iterator[str]:
    made = httpx.post(service.url + "/api/v1/sandboxes", json={"timeout": MOST}, timeout=60)
    assert made.status_code == 201, made.text
    yield made.json()["id"]
    httpx.delete(f"{service.url}/api/v1/sandboxes/{made.json()['id']}", timeout=60)
    assert_nothing_left(service)


def _refused(reply: httpx.Response, field: str) -> None:
    assert reply.status_code == 400, reply.text
    assert field in reply.json()["message"], reply.text


def test_context_ids_round_trip_through_the_path(service: Server, sandbox: str) -> None:
    base = f"{service.url}/api/v1/sandboxes/{sandbox}"
    made = httpx.post(base + "/contexts", json={}, timeout=60)
    assert made.status_code == 201, made.text
    ident = made.json()["id"]
    cell = httpx.post(base + "/code", json={"code": "x = 41\nx + 1", "context": ident}, timeout=60)
    assert cell.json()["text"] == "42", cell.text
    assert ident in [c["id"] for c in httpx.get(base + "/contexts", timeout=30).json()]
    assert httpx.post(f"{base}/contexts/{ident}/restart", timeout=60).status_code == 204
    cell = httpx.post(base + "/code", json={"code": "'x' in dir()", "context": ident}, timeout=60)
    assert cell.json()["text"] == "False", cell.text  # its state went with the restart
    assert httpx.delete(f"{base}/contexts/{ident}", timeout=30).status_code == 204
    again = httpx.delete(f"{base}/contexts/{ident}", timeout=30)
    assert again.status_code == 404 and ident in again.json()["message"], again.text
    # the default context a cell without one makes is reachable by its id too
    httpx.post(base + "/code", json={"code": "1"}, timeout=60).raise_for_status()
    ids = [c["id"] for c in httpx.get(base + "/contexts", timeout=30).json()]
    assert len(ids) == 1
    assert httpx.post(f"{base}/contexts/{ids[0]}/restart", timeout=60).status_code == 204


def test_what_the_sandboxs_state_refuses_is_a_409(service: Server, sandbox: str) -> None:
    base = f"{service.url}/api/v1/sandboxes/{sandbox}"
    with httpx.Client(base_url=base, timeout=60) as api:
        api.put("/files", params={"path": "st/f.txt"}, content=b"x").raise_for_status()
        refused = {
            "a directory read": api.get("/files", params={"path": "st"}),
            "a directory written": api.put("/files", params={"path": "st"}, content=b"x"),
            "a file listed": api.get("/files/list", params={"path": "st/f.txt"}),
            "a file as cwd": api.post("/commands", json={"cmd": "true", "cwd": "st/f.txt"}),
            "a missing cwd": api.post("/commands", json={"cmd": "true", "cwd": "nowhere"}),
            "below a file": api.post("/files/mkdir", json={"path": "st/f.txt/d"}),
            "a missing source": api.post(
                "/files/move", json={"source": "nothing", "destination": "st/g"}
            ),
            "an unknown context": api.post("/code", json={"code": "1", "context": "nope"}),
            "a directory into itself": api.post(
                "/files/move", json={"source": "st", "destination": "st/inner/st"}
            ),
            "the root into the home": api.post(
                "/files/move", json={"source": "/", "destination": "\u00a0I"}
            ),
        }
        for what, reply in refused.items():
            assert reply.status_code == 409, (what, reply.text)
            assert reply.json()["code"] == "conflict", (what, reply.text)
        # across mounts a move copies (the home dir is not /tmp); the user's rights hold
        api.put("/files", params={"path": "/tmp/m.txt"}, content=b"m").raise_for_status()
        moved = api.post("/files/move", json={"source": "/tmp/m.txt", "destination": "st/m"})
        assert (
            moved.status_code == 200 and api.get("/files", params={"path": "st/m"}).content == b"m"
        )
        taken = api.post("/files/move", json={"source": "/etc/passwd", "destination": "h"})
        assert taken.status_code == 403 and taken.json()["code"] == "forbidden", taken.text
        exists = api.post("/files/mkdir", json={"path": "st"})
        assert exists.status_code == 409 and exists.json()["code"] == "already_exists"
        # what the URL names (here with its query) and is not there stays a 404
        missing = api.get("/files", params={"path": "st/none"})
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"
        running = api.post("/commands", json={"cmd": "sleep 30", "background": True})
        pid = running.json()["pid"]
        no_stdin = api.post(f"/commands/{pid}/stdin", json={"data": "x"})
        assert no_stdin.status_code == 409 and "no open stdin" in no_stdin.text, no_stdin.text
        api.post(f"/commands/{pid}/signal", json={"signal": "SIGKILL"}).raise_for_status()


@pytest.mark.parametrize(
    "body, field",
    [({"timeout": 0}, "timeout"), ({"timeout": MOST + 1}, "timeout"),
     ({"memory_mb": 0}, "memory_mb"), ({"memory_mb": 257}, "memory_mb")],
)  # fmt: skip
def test_create_outside_the_bounds_is_refused(
    service: Server, body: dict[str, int], field: str
) -> None:
    _refused(httpx.post(service.url + "/api/v1/sandboxes", json=body, timeout=60), field)


def test_bad_requests_name_their_field(service: Server, sandbox: str) -> None:
    base = f"{service.url}/api/v1/sandboxes/{sandbox}"
    for seconds in (0, MOST + 1, True, "200", 200.5):
        _refused(httpx.post(base + "/timeout", json={"timeout": seconds}, timeout=30), "timeout")
    whole = httpx.post(base + "/timeout", json={"timeout": float(MOST)}, timeout=30)
    assert whole.status_code == 200, whole.text  # JSON's 300.0 is the integer 300
    for bad in ("", "a\x00b"):
        _refused(httpx.get(base + "/files", params={"path": bad}, timeout=30), "path")
        _refused(httpx.post(base + "/files/mkdir", json={"path": bad}, timeout=30), "path")
    _refused(httpx.get(base + "/files/list", params={"path": "/", "depth": 0}, timeout=30), "depth")
    _refused(httpx.post(base + "/commands/x/wait", timeout=30), "pid")
    _refused(httpx.post(base + "/commands", content=b"not json", timeout=30), "body")
    gone = httpx.get(f"{service.url}/api/v1/sandboxes/sb-none", timeout=30)
    assert gone.status_code == 404, gone.text


def test_the_served_schema_has_the_servers_limits(service: Server) -> None:
    schema: dict[str, Any] = httpx.get(service.url + "/openapi.json", timeout=30).json()
    prop = schema["components"]["schemas"]["TimeoutUpdate"]["properties"]["timeout"]
    assert (prop["minimum"], prop["maximum"]) == (1, MOST)
    memory = schema["components"]["schemas"]["SandboxCreate"]["properties"]["memory_mb"]
    assert {"type": "integer", "minimum": 16, "maximum": 256}.items() <= memory["anyOf"][0].items()


def test_a_sandbox_that_ends_on_its_own_is_a_409_during_a_call_and_after(
    service: Server,
) -> None:
    made = httpx.post(service.url + "/api/v1/sandboxes", json={"timeout": 3}, timeout=60)
    assert made.status_code == 201, made.text
    ident = made.json()["id"]
    base = f"{service.url}/api/v1/sandboxes/{ident}"
    cell = httpx.post(base + "/code", json={"code": "import time\ntime.sleep(60)"}, timeout=90)
    # it was made, and its state (ended) refuses the call: not a 404, not a server error
    assert cell.status_code == 409 and cell.json()["code"] == "ended", cell.text
    after = httpx.get(base, timeout=30)
    assert after.status_code == 409 and "lifetime" in after.json()["message"], after.text
    assert httpx.post(base + "/commands", json={"cmd": "true"}, timeout=30).status_code == 409
    # E2B's control plane still answers its 404 for it
    e2b = httpx.get(f"{service.url}/sandboxes/{ident}", timeout=30)
    assert e2b.status_code == 404 and e2b.json()["code"] == 404, e2b.text
    # one deleted by its owner is a 404: it is not there, as asked
    other = httpx.post(service.url + "/api/v1/sandboxes", json={}, timeout=60).json()["id"]
    assert httpx.delete(f"{service.url}/api/v1/sandboxes/{other}", timeout=30).status_code == 204
    assert httpx.get(f"{service.url}/api/v1/sandboxes/{other}", timeout=30).status_code == 404
