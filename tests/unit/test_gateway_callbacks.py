"""Judge0 callbacks: the PUT Judge0 sends, its tries, and the outbound policy in front."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway_support import gateway_client, gateway_settings, wait_done
from tvm.config.settings import Settings
from tvm.pyroshell.dispatcher import deliver
from tvm.pyroshell.outbound import OutboundPolicy

LOOPBACK = ["127.0.0.1/32"]


class Receiver(http.server.BaseHTTPRequestHandler):
    bodies: list[dict[str, Any]] = []
    methods: list[str] = []
    answer = 200

    def do_PUT(self) -> None:
        data = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.methods.append(self.command)
        Receiver.bodies.append(json.loads(data))
        self.send_response(Receiver.answer)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.bodies, Receiver.methods, Receiver.answer = [], [], 200
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def _received(count: int = 1) -> None:
    for _ in range(200):
        if len(Receiver.bodies) >= count:
            return
        time.sleep(0.05)


def test_callback_gets_judge0_put(tmp_path: Path, receiver: str) -> None:
    with gateway_client(gateway_settings(tmp_path, outbound_allow=LOOPBACK)) as gw:
        body = {"source_code": "out called", "language_id": 71, "callback_url": receiver}
        token = gw.post("/submissions", json=body).json()["token"]
        wait_done(gw, token)
        _received()
    assert Receiver.methods == ["PUT"] and len(Receiver.bodies) == 1
    sent = Receiver.bodies[0]
    assert set(sent) == {"token", "time", "memory", "stdout", "stderr", "compile_output",
                         "message", "status"}  # fmt: skip
    assert sent["token"] == token and sent["status"] == {"id": 3, "description": "Accepted"}
    assert sent["stdout"] == "Y2FsbGVkCg==\n"  # base64 as Judge0 writes it


def test_a_callback_to_loopback_is_refused_when_submitted(tmp_path: Path) -> None:
    with gateway_client(gateway_settings(tmp_path)) as gw:
        for url in ("http://127.0.0.1:8080/x", "http://10.0.0.1/"):
            body = {"source_code": "out x", "language_id": 71, "callback_url": url}
            reply = gw.post("/submissions", json=body)
            assert reply.status_code == 422, reply.text
            (problem,) = reply.json()["callback_url"]
            assert "outbound_allow" in problem
        # an IPv6 literal (which could carry an IPv4 one) is not a form the schema takes
        body = {"source_code": "out x", "language_id": 71, "callback_url": "http://[::1]/"}
        reply = gw.post("/submissions", json=body)
        assert reply.status_code == 422 and "pattern" in reply.json()["callback_url"][0]


async def test_a_name_resolving_to_loopback_gets_no_callback(receiver: str) -> None:
    port = receiver.rsplit(":", 1)[1].split("/")[0]

    async def rebinding(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    policy = OutboundPolicy(resolver=rebinding)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    url = f"http://hooks.example:{port}/hook"
    assert not await deliver(policy, url, "{}", tries=3, sleep=sleep)
    assert Receiver.bodies == [] and slept == []  # refused once, never tried


async def test_connection_errors_are_tried_again_then_given_up() -> None:
    policy = OutboundPolicy.from_settings(Settings(outbound_allow=LOOPBACK))
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    assert not await deliver(policy, "http://127.0.0.1:9/hook", "{}", tries=3, sleep=sleep)
    assert waits == [0.5, 1.0]


async def test_an_http_error_answer_ends_the_delivery(receiver: str) -> None:
    """As Judge0: only connection failures are tried again, not a 500."""
    Receiver.answer = 500
    policy = OutboundPolicy.from_settings(Settings(outbound_allow=LOOPBACK))
    assert await deliver(policy, receiver, '{"a": 1}', tries=3)
    assert Receiver.bodies == [{"a": 1}]
