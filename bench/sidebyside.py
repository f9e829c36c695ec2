"""Two (or more) TVM source trees against bare ``python3``, side by side.

``python bench/sidebyside.py --tree before=/tmp/tvm-main --tree after=.``
starts one ``tvm start`` per tree (its own source first on ``PYTHONPATH``,
each service in an accounting cgroup of its own, :mod:`bench.cpu`), then lets
bare ``python3 -c 'print(1)'`` and ``POST /api/v2/execute`` on every service
take turns, ``--rounds`` times ``--per-round`` executions with ``--clients``
concurrent clients, so that the machine's load hits each alike. Prints, per
method, the rate and the CPU per execution (the benchmark's own process, its
HTTP client included, plus the service's cgroup), each against bare, and the
spread of the per-round CPU. A change is measured by running its tree against
the tree it changes in one run, several times; on a shared machine the CPU
per execution is the number to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench import PRINT1, Probe, run_process, throughput  # noqa: E402
from bench.cpu import Meter, meters  # noqa: E402
from tests.conftest import Server  # noqa: E402


def _service(tree: Path, tmp: Path, meter: Meter | None) -> Server:
    env = {
        "TVM_LOG_LEVEL": "warning",
        "TVM_DRIVER": "namespace",
        "TVM_POOL_SIZE": "1",
        "TVM_POOL_LANGUAGES": '["python"]',
        "PYTHONPATH": str(tree),
    }
    here = os.getcwd()
    os.chdir(tree)  # `python -m` puts the working directory first on sys.path
    try:
        if meter is None:
            return Server(tmp, env=env)
        with meter.inside():
            return Server(tmp, env=env)
    finally:
        os.chdir(here)


def _http(client: httpx.AsyncClient) -> Probe:
    body = {"language": "python", "version": "3.11", "files": [{"content": PRINT1}]}

    async def probe() -> None:
        reply = await client.post("/api/v2/execute", json=body)
        data = reply.json()
        if reply.status_code != 200 or data["run"]["stdout"] != "1\n":
            raise RuntimeError(f"http: {reply.status_code} {data}")

    return probe


async def _bare() -> None:
    await run_process("/usr/bin/python3", "-c", PRINT1)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    trees = dict(item.split("=", 1) for item in args.tree)
    cpu = meters("client", *trees)
    if cpu is not None:
        cpu["client"].enter()
    tmp = Path(tempfile.mkdtemp(prefix="tvmsxs"))
    servers: dict[str, Server] = {}
    clients: list[httpx.AsyncClient] = []
    try:
        for name, tree in trees.items():
            servers[name] = _service(
                Path(tree).resolve(), tmp, cpu[name] if cpu is not None else None
            )
            if cpu is not None:
                cpu["client"].enter()
        probes: dict[str, Probe] = {"bare": _bare}
        for name, server in servers.items():
            client = httpx.AsyncClient(base_url=server.url, timeout=60)
            clients.append(client)
            probes[name] = _http(client)

        def used(name: str) -> int:
            if cpu is None:
                return 0
            return cpu["client"].ns() + (cpu[name].ns() if name in trees else 0)

        for probe in probes.values():  # warm-up: pools, zygotes, caches
            await throughput(probe, args.clients, args.clients * 4)
        seconds = dict.fromkeys(probes, 0.0)
        per_round: dict[str, list[float]] = {name: [] for name in probes}
        for _ in range(args.rounds):
            for name, probe in probes.items():
                before = used(name)
                seconds[name] += await throughput(probe, args.clients, args.per_round)
                per_round[name].append((used(name) - before) / args.per_round / 1e6)
        done = args.rounds * args.per_round
        return {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "load": os.getloadavg(),
            "clients": args.clients,
            "executions": done,
            "rate": {n: done / s for n, s in seconds.items()},
            "cpu_ms": {n: statistics.fmean(v) for n, v in per_round.items()},
            "cpu_ms_rounds": per_round,
        }
    finally:
        for client in clients:
            await client.aclose()
        for server in servers.values():
            server.stop()
        if cpu is not None:
            cpu["client"].leave()
            for meter in cpu.values():
                meter.remove()


def report(result: dict[str, Any]) -> None:
    rate, cpu = result["rate"], result["cpu_ms"]
    print(
        f"{result['when']}  load {result['load'][0]:.1f}  {result['clients']} clients, "
        f"{result['executions']} executions each"
    )
    print(f"{'method':<12}{'rate/s':>9}{'/bare':>8}{'CPU ms':>9}{'/bare':>8}  CPU per round")
    for name in rate:
        rounds = " ".join(f"{v:.1f}" for v in result["cpu_ms_rounds"][name])
        print(
            f"{name:<12}{rate[name]:>9.1f}{rate[name] / rate['bare']:>7.2f}x"
            f"{cpu[name]:>9.2f}{cpu[name] / cpu['bare']:>7.2f}x  {rounds}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, help="NAME=PATH (repeat)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=40)
    report(asyncio.run(measure(parser.parse_args())))


if __name__ == "__main__":
    main()
