"""The WebSocket protocols' pure parts (no sandbox): parsing the native
``start``, what native and Piston messages an interactive run's events
become, and the playground's files (served, gzipped, one template per
language)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tvm.api import StageResult
from tvm.compat import piston_connect
from tvm.config.catalog import load_catalog
from tvm.errors import InvalidRequest
from tvm.pyroshell.playground import STATIC, playground_router
from tvm.pyrovm.connect import NativeSender, native_handler, parse_start
from tvm.pyrovm.interactive import Output, StageEnded, StageStarted, Started, Terminal
from tvm.utils.web import install_error_handlers


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))


def stage(status: str = "ok", code: int | None = 0, signal: str | None = None) -> StageResult:
    return StageResult(status=status, stdout="", stderr="", exit_code=code, signal=signal,
                       cpu_ms=1, wall_ms=2, memory_kb=3, truncated=False)  # fmt: skip


def test_parse_start_takes_the_native_request_and_a_terminal() -> None:
    request, terminal = parse_start(
        {
            "type": "start",
            "request": {"language": "python", "code": "print(1)"},
            "terminal": {"rows": 30, "cols": 100},
        }
    )
    assert request.language == "python" and terminal == Terminal(30, 100)
    assert parse_start({"type": "start", "request": {"language": "c", "code": ""}})[1] is None


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"type": "init"}, "type"),
        ({"type": "start", "request": {"code": "x"}}, "language"),
        ({"type": "start", "request": {"language": "py", "bogus": 1}}, "bogus"),
        (
            {"type": "start", "request": {"language": "py"}, "terminal": {"rows": 0}},
            "terminal.rows",
        ),
        ({"type": "start", "request": {"language": "py"}, "terminal": 5}, "terminal"),
    ],
)
def test_parse_start_names_the_bad_field(message: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_start(message)
    assert caught.value.field == field


def test_native_output_keeps_characters_whole_and_counts_bytes() -> None:
    ws = FakeSocket()
    sender = NativeSender(ws, "utf8")  # type: ignore[arg-type]
    snowman = "☃".encode()  # three bytes, split across two chunks
    asyncio.run(sender(Output("run", "stdout", 0, b"a" + snowman[:2])))
    asyncio.run(sender(Output("run", "stdout", 3, snowman[2:] + b"b")))
    assert [(m["offset"], m["data"]) for m in ws.sent] == [(0, "a"), (1, "☃b")]


def test_native_events_become_native_messages() -> None:
    ws = FakeSocket()
    sender = NativeSender(ws, "base64")  # type: ignore[arg-type]
    for event in (Started("python", "3.11.2"), StageStarted("run"),
                  Output("run", "stderr", 5, b"\xff"), StageEnded("run", stage())):  # fmt: skip
        asyncio.run(sender(event))
    assert ws.sent[0] == {"type": "started", "language": "python", "version": "3.11.2"}
    assert ws.sent[1] == {"type": "stage", "stage": "run"}
    assert ws.sent[2] == {"type": "output", "stage": "run", "stream": "stderr",
                          "offset": 5, "data": "/w=="}  # fmt: skip
    assert ws.sent[3]["type"] == "exit" and ws.sent[3]["result"]["status"] == "ok"


def test_native_client_messages_reach_the_session() -> None:
    calls: list[tuple[Any, ...]] = []

    class Session:
        def stdin(self, data: bytes, field: str = "data") -> None:
            calls.append(("stdin", data))

        def eof(self) -> None:
            calls.append(("eof",))

        def signal(self, name: str, field: str = "signal") -> None:
            calls.append(("signal", name))

        def resize(self, rows: int, cols: int) -> None:
            calls.append(("resize", rows, cols))

    handle = native_handler(Session())  # type: ignore[arg-type]
    handle({"type": "stdin", "data": "hi\n"})
    handle({"type": "stdin", "data": "AAE=", "encoding": "base64"})
    handle({"type": "eof"})
    handle({"type": "signal", "signal": "SIGINT"})
    handle({"type": "resize", "rows": 5, "cols": 6})
    assert calls == [("stdin", b"hi\n"), ("stdin", b"\x00\x01"), ("eof",),
                     ("signal", "SIGINT"), ("resize", 5, 6)]  # fmt: skip
    with pytest.raises(InvalidRequest) as caught:
        handle({"type": "start"})
    assert caught.value.field == "type"
    with pytest.raises(InvalidRequest):
        handle({"type": "stdin", "data": "%%", "encoding": "base64"})


def test_piston_exit_messages_carry_code_signal_and_status() -> None:
    ws = FakeSocket()
    sender = piston_connect.Sender(ws)  # type: ignore[arg-type]
    asyncio.run(sender(StageEnded("run", stage())))
    asyncio.run(sender(StageEnded("run", stage("timeout", None, "SIGKILL"))))
    assert ws.sent[0] == {"type": "exit", "stage": "run", "code": 0, "signal": None}
    assert ws.sent[1] == {"type": "exit", "stage": "run", "code": None, "signal": "SIGKILL",
                          "status": "TO", "message": "Time limit exceeded"}  # fmt: skip


def test_piston_refuses_what_it_refuses() -> None:
    handle = piston_connect.handler(None)  # type: ignore[arg-type]
    for message, code in (({"type": "init"}, 4000),
                          ({"type": "data", "stream": "stdout", "data": "x"}, 4004),
                          ({"type": "signal", "signal": "SIGNOPE"}, 4005)):  # fmt: skip
        with pytest.raises(piston_connect.Close) as caught:
            handle(message)
        assert caught.value.code == code
    handle({"type": "something else"})  # ignored, as Piston does


def test_every_catalog_language_has_a_hello_world() -> None:
    templates = json.loads((STATIC / "hello.json").read_text())
    names = {language.name for language in load_catalog()}
    assert names <= set(templates), f"no template for {sorted(names - set(templates))}"
    assert all(text.strip() for text in templates.values())


def test_playground_files_are_served_gzipped_with_an_etag() -> None:
    app = FastAPI()
    install_error_handlers(app)  # as the gateway has them
    app.include_router(playground_router())
    client = TestClient(app)
    page = client.get("/")
    assert page.status_code == 200 and "TVM playground" in page.text
    assert "/playground/playground.js" in page.text
    bundle = client.get("/playground/playground.js", headers={"Accept-Encoding": "gzip"})
    assert bundle.headers["content-encoding"] == "gzip"
    assert bundle.headers["content-type"].startswith("text/javascript")
    again = client.get(
        "/playground/playground.js", headers={"If-None-Match": bundle.headers["etag"]}
    )
    assert again.status_code == 304
    assert client.get("/playground/secret.py").status_code == 404
