"""Live sandboxes through E2B's own SDK, against a real ``tvm start``:

* ``Sandbox.create()`` to the first output of its first command (E2B publishes
  about 150 ms to start a sandbox);
* ``run_code("1+1")`` round trip on a code-interpreter sandbox;
* memory per idle live sandbox (the PSS of its processes, and its cgroup's
  usage), and how many idle ones fit in 1 GB.

Run alone (``python bench/live_bench.py [DRIVER] [--workers N]``) or as part of
``make bench`` (which also runs it with two worker processes, every call then
forwarded by the gateway).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import Server, descendants  # noqa: E402
from tests.live_support import wait_for_workers  # noqa: E402
from tvm.pyrovm.drivers.cgroups import CgroupManager  # noqa: E402


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50": round(statistics.median(ordered), 1),
        "p90": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))], 1),
        "min": round(ordered[0], 1),
        "runs": len(ordered),
    }


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _sandbox_memory(server_pid: int) -> tuple[int, int, int]:
    """(count, PSS kB, cgroup usage kB) over the service's sandbox cgroups."""
    own = descendants(server_pid)
    count = pss = usage = 0
    for path in CgroupManager().leftovers():
        owner = path.name.split("-")[0]
        if not owner.isdigit() or int(owner) not in own or "-zygote-" in path.name:
            continue
        for name in ("memory.usage_in_bytes", "memory.current"):
            if (path / name).is_file():
                count += 1
                usage += int((path / name).read_text()) // 1024
                procs = (path / "cgroup.procs").read_text().split()
                pss += sum(_pss_kb(int(pid)) for pid in procs)
    return count, pss, usage


def measure(
    runs: int = 10, driver: str = "namespace", idle: int = 8, workers: int = 0
) -> dict[str, Any]:
    import e2b
    import e2b_code_interpreter

    tmp = Path(tempfile.mkdtemp(prefix="tvmbench-live"))
    server = Server(
        tmp,
        env={
            "TVM_LOG_LEVEL": "warning",
            "TVM_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/db",
            "TVM_LIVE_MAX_SANDBOXES": str(max(idle, 4) + 2),
        },
        args=["--driver", driver, "--workers", str(workers)],
    )
    if workers:
        wait_for_workers(server, workers)
    os.environ.update(E2B_API_URL=server.url, E2B_SANDBOX_URL=server.url, E2B_API_KEY="bench")
    results: dict[str, Any] = {"driver": driver, "workers": workers}
    try:
        first_output, create_only = [], []
        for _ in range(runs + 1):  # the first one starts the image's zygote: not counted
            seen: list[float] = []
            started = time.perf_counter()
            sbx = e2b.Sandbox.create()
            created = time.perf_counter()
            sbx.commands.run(
                "echo hi", on_stdout=lambda _, seen=seen: seen.append(time.perf_counter())
            )
            first_output.append((seen[0] - started) * 1000)
            create_only.append((created - started) * 1000)
            sbx.kill()
        results["create_to_first_output_ms"] = _summary(first_output[1:])
        results["create_ms"] = _summary(create_only[1:])
        with e2b_code_interpreter.Sandbox.create() as sbx:
            sbx.run_code("1+1")  # starts the default context
            trips = []
            for _ in range(runs * 2):
                started = time.perf_counter()
                assert sbx.run_code("1+1").text == "2"
                trips.append((time.perf_counter() - started) * 1000)
        results["run_code_1_plus_1_ms"] = _summary(trips)
        made = [e2b.Sandbox.create() for _ in range(idle)]
        time.sleep(1.0)
        count, pss, usage = _sandbox_memory(server.proc.pid)
        for sbx in made:
            sbx.kill()
        if count:
            per_pss = pss / count / 1024
            results["idle_sandbox_mb"] = {
                "pss": round(per_pss, 1),
                "cgroup_usage": round(usage / count / 1024, 1),
                "sandboxes": count,
                "fit_in_1gb_by_pss": int(1024 // per_pss) if per_pss else None,
            }
    finally:
        server.stop()
    return results


def main() -> None:
    args = sys.argv[1:]
    workers = 0
    if "--workers" in args:
        at = args.index("--workers")
        workers = int(args[at + 1])
        del args[at : at + 2]
    driver = args[0] if args else "namespace"
    print(json.dumps(measure(driver=driver, workers=workers), indent=2))


if __name__ == "__main__":
    main()
