"""Checks that scripts/ci-containers.sh runs against TVM in containers.

    python scripts/container_checks.py smoke URL
        a Piston and a Judge0 request, answered correctly.
    python scripts/container_checks.py load --gateway URL --gateway URL \
            --kill 'docker kill X' --kill 'docker kill Y'
        async Judge0 submissions spread over the gateways; while they run, each
        --kill command is run (a worker, a gateway replica); more are sent to the
        gateways still up meanwhile, and synchronous Piston requests go to the
        last gateway all along. Every accepted submission must complete with its
        own output, every synchronous request be answered with its own. Exit
        status 0 when all were.
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import subprocess
import sys
import threading
import time

import httpx

SLEEPER = "import time\ntime.sleep({sleep})\nprint('done', {tag!r})\n"
C_HELLO = '#include <stdio.h>\nint main(void) { printf("hello from c\\n"); return 0; }\n'


def smoke(url: str) -> None:
    with httpx.Client(base_url=url, timeout=120) as client:
        piston = client.post("/api/v2/execute", json={
            "language": "python", "version": "*", "stdin": "olleh",
            "files": [{"content": "print(input()[::-1])"}]}).json()  # fmt: skip
        assert piston["run"]["stdout"] == "hello\n", piston
        judge0 = client.post("/submissions", params={"wait": "true"},
                             json={"source_code": C_HELLO, "language_id": 50}).json()  # fmt: skip
        assert judge0["status"]["id"] == 3 and judge0["stdout"] == "hello from c\n", judge0
    print(f"smoke {url}: piston python ok, judge0 c ok")


def submit(url: str, tag: str, sleep: float) -> str | None:
    """The token, or None when this gateway is down (not accepted: nothing to check)."""
    body = {"source_code": SLEEPER.format(sleep=sleep, tag=tag), "language_id": 71}
    try:
        reply = httpx.post(f"{url}/submissions", json=body, timeout=30)
    except httpx.HTTPError:
        return None
    if reply.status_code != 201:
        return None
    return str(reply.json()["token"])


def state(urls: list[str], tokens: list[str]) -> dict[str, dict[str, object]]:
    """The submissions' state from whichever gateway answers."""
    for url in urls:
        found: dict[str, dict[str, object]] = {}
        try:
            for start in range(0, len(tokens), 20):
                chunk = ",".join(tokens[start : start + 20])
                reply = httpx.get(f"{url}/submissions/batch", timeout=30,
                                  params={"tokens": chunk, "fields": "token,status,stdout"})  # fmt: skip
                reply.raise_for_status()
                found.update({s["token"]: s for s in reply.json()["submissions"]})
            return found
        except httpx.HTTPError:
            continue
    return {}


class Steady(threading.Thread):
    """Synchronous Piston requests, one after another, to a gateway that stays up:
    each must be answered with its own output, even when its worker is killed."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stop, self.sent, self.wrong = url, threading.Event(), 0, []

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=120) as client:
            while not self.stop.is_set():
                self.sent += 1
                code = f"import time\ntime.sleep(0.5)\nprint({self.sent} * 2)"
                body = {"language": "python", "version": "*", "files": [{"content": code}]}
                try:
                    run = client.post("/api/v2/execute", json=body).json()["run"]
                    if run["stdout"] != f"{self.sent * 2}\n":
                        self.wrong.append(run)
                except (httpx.HTTPError, KeyError, ValueError) as exc:
                    self.wrong.append(repr(exc))


def load(urls: list[str], kills: list[str], count: int, sleep: float, timeout: float) -> int:
    accepted: dict[str, str] = {}  # token -> expected stdout
    gateways = itertools.cycle(urls)
    started = time.monotonic()
    steady = Steady(urls[-1])
    steady.start()

    def send(n: int, prefix: str) -> None:
        for i in range(n):
            tag = f"{prefix}-{i}"
            token = submit(next(gateways), tag, sleep)
            if token is not None:
                accepted[token] = f"done {tag}\n"

    send(count, "before")
    time.sleep(sleep / 2)  # some are running now
    for command in kills:
        print(f"load: running {command!r} with {len(accepted)} accepted", flush=True)
        subprocess.run(shlex.split(command), check=True, stdout=subprocess.DEVNULL)
        send(count // 2, f"after-{kills.index(command)}")
    tokens = list(accepted)
    deadline = time.monotonic() + timeout
    while True:
        found = state(urls, tokens)
        done = [t for t in tokens if t in found and found[t]["status"]["id"] >= 3]  # type: ignore[index]
        if len(done) == len(tokens) or time.monotonic() > deadline:
            break
        time.sleep(1)
    steady.stop.set()
    steady.join()
    print(f"load: {steady.sent} synchronous requests to {urls[-1]}, {len(steady.wrong)} wrong")
    for answer in steady.wrong[:5]:
        print(f"load: wrong synchronous answer: {answer}")
    wrong = [found.get(t) for t in tokens
             if t not in found or found[t]["status"]["id"] != 3  # type: ignore[index]
             or found[t]["stdout"] != accepted[t]]  # fmt: skip
    elapsed = time.monotonic() - started
    print(f"load: {len(tokens)} accepted, {len(tokens) - len(wrong)} completed correctly, "
          f"{len(wrong)} not, in {elapsed:.1f} s")  # fmt: skip
    for sub in wrong[:10]:
        print(f"load: NOT completed: {sub}")
    return 1 if wrong or steady.wrong else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("smoke")
    one.add_argument("url")
    many = sub.add_parser("load")
    many.add_argument("--gateway", action="append", required=True)
    many.add_argument("--kill", action="append", default=[])
    many.add_argument("--count", type=int, default=24)
    many.add_argument("--sleep", type=float, default=2.0)
    many.add_argument("--timeout", type=float, default=240)
    args = parser.parse_args()
    if args.command == "smoke":
        smoke(args.url)
        return 0
    return load(args.gateway, args.kill, args.count, args.sleep, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
