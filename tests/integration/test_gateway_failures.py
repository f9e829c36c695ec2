"""Real processes: a gateway (``tvm start --role gateway``) in front of fake worker
processes. A worker killed under load and a gateway killed with running and queued
work: every accepted submission completes, only the interrupted ones ran again, and
each ran at most ``max_attempts`` times (the workers' journal)."""

from __future__ import annotations

import collections
import json
import signal
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from tests.gateway_support import start_fake_worker, start_gateway

pytestmark = pytest.mark.slow


def submit(client: httpx.Client, n: int, sleep: float, tag: str) -> list[str]:
    tokens = []
    for i in range(n):
        source = f"out {tag}-{i}\nsleep {sleep}"
        reply = client.post("/submissions", json={"source_code": source, "language_id": 71})
        assert reply.status_code == 201, reply.text
        tokens.append(reply.json()["token"])
    return tokens


def finished(client: httpx.Client, tokens: list[str], timeout: float = 60) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        got = {}
        for start in range(0, len(tokens), 20):
            chunk = tokens[start : start + 20]
            reply = client.get("/submissions/batch", params={"tokens": ",".join(chunk),
                                                             "fields": "token,status,stdout,message"})  # fmt: skip
            for sub in reply.json()["submissions"]:
                got[sub["token"]] = sub
        if all(sub["status"]["id"] >= 3 for sub in got.values()):
            return got
        if time.monotonic() > deadline:
            waiting = [t for t, s in got.items() if s["status"]["id"] < 3]
            raise AssertionError(f"{len(waiting)} submissions never finished")
        time.sleep(0.2)


def starts(journal: Path) -> collections.Counter[str]:
    lines = journal.read_text().splitlines() if journal.exists() else []
    return collections.Counter(line[6:] for line in lines if line.startswith("start "))


def stored_attempts(database: Path, tokens: list[str]) -> dict[str, int]:
    """What the gateway recorded: how often each submission started."""
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT token, attempts, result FROM submissions").fetchall()
    found = {token: attempts for token, attempts, _ in rows if token in tokens}
    for token, attempts, result in rows:
        assert json.loads(result)["attempts"] == attempts, token
    return found


def test_worker_killed_under_load(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    workers = [start_fake_worker(tmp_path, journal) for _ in range(2)]
    gateway = start_gateway(tmp_path, [w.url for w in workers],
                            TVM_DISPATCHER_CONCURRENCY="6", TVM_DISPATCH_WAIT_SECONDS="20")  # fmt: skip
    try:
        gateway.wait_ready()
        with httpx.Client(base_url=gateway.url, timeout=30) as client:
            tokens = submit(client, 30, 0.4, "load")
            time.sleep(1.0)
            workers[0].kill(signal.SIGKILL)
            results = finished(client, tokens)
        statuses = collections.Counter(sub["status"]["id"] for sub in results.values())
        assert statuses == {3: 30}, statuses  # the interrupted ones ran again elsewhere
        ran = starts(journal)
        again = [program for program, n in ran.items() if n > 1]
        assert len(again) <= 6 and max(ran.values()) <= 2, ran  # only what was running
        assert {"out " + s["stdout"].strip() for s in results.values()} == set(ran)
    finally:
        gateway.kill(signal.SIGTERM)
        for worker in workers:
            worker.kill()


def test_gateway_restart_with_queued_work(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    worker = start_fake_worker(tmp_path, journal)
    env = {"TVM_DISPATCHER_CONCURRENCY": "2"}
    gateway = start_gateway(tmp_path, [worker.url], **env)
    try:
        gateway.wait_ready()
        with httpx.Client(base_url=gateway.url, timeout=30) as client:
            tokens = submit(client, 12, 0.5, "restart")
        time.sleep(0.7)
        gateway.kill(signal.SIGKILL)  # mid-run: some done, two running, the rest queued
        gateway = start_gateway(tmp_path, [worker.url], **env)
        gateway.wait_ready()
        with httpx.Client(base_url=gateway.url, timeout=30) as client:
            results = finished(client, tokens)
        attempts = stored_attempts(tmp_path / "tvm.db", tokens)
        assert sorted(attempts.values())[-1] == 2 and min(attempts.values()) == 1, attempts
        statuses = collections.Counter(sub["status"]["id"] for sub in results.values())
        assert statuses == {3: 12}, statuses
        ran = starts(journal)
        assert sum(n > 1 for n in ran.values()) <= 2 and max(ran.values()) <= 2, ran
    finally:
        gateway.kill(signal.SIGTERM)
        worker.kill()


def test_a_second_gateway_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    worker = start_fake_worker(tmp_path, journal)
    first = start_gateway(tmp_path, [worker.url])
    try:
        first.wait_ready()
        second = start_gateway(tmp_path, [worker.url])
        assert second.proc.wait(60) != 0
        log = second.log.read_text()
        assert "error: another gateway" in log and "PostgreSQL" in log, log
        assert "Traceback" not in log
        with httpx.Client(base_url=first.url, timeout=30) as client:  # the first one still works
            (token,) = submit(client, 1, 0, "alone")
            assert finished(client, [token])[token]["status"]["id"] == 3
    finally:
        first.kill(signal.SIGTERM)
        worker.kill()
