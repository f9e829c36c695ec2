"""`make bench`: TVM against the floor, side by side in one run.

Measured, interleaved run by run so that machine noise hits every method alike:

* bare       ``python3 -c 'print(1)'`` as a plain process (the floor)
* bwrap      the same under raw bubblewrap over the same Debian image
* engine     TVM's engine called in-process (sandbox + agent, no HTTP)
* http       ``POST /api/v2/execute`` on a real ``tvm start`` service

then throughput and CPU per execution (cgroup accounting, :mod:`bench.cpu`) with
1, 2, 4 and 8 concurrent clients, the methods taking turns; C compile+run against
the catalog's C compile command (``gcc ... *.c -lm``, through sh) + run as bare
processes, the service's own overhead per request, and every other
usable driver; then live sandboxes through E2B's SDK (``live_bench.py``), and
hello world per language through the API against the same toolchain run bare in
its image (:mod:`bench.languages`). Prints tables, saves JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.cds import cds_rows, report_cds  # noqa: E402
from bench.cpu import Meter, meters  # noqa: E402
from bench.judge import judge  # noqa: E402
from bench.languages import Probe, chroot_setup, per_language, timed_probe  # noqa: E402
from bench.warm_memory import report_warm_memory, warm_memory  # noqa: E402
from tests.conftest import Server  # noqa: E402
from tvm.api import CodeExecutionRequest, build_job  # noqa: E402
from tvm.config.catalog import load_catalog  # noqa: E402
from tvm.config.settings import Settings  # noqa: E402
from tvm.pyrovm import drivers  # noqa: E402
from tvm.pyrovm.drivers.namespace import NamespaceDriver  # noqa: E402
from tvm.pyrovm.engine import Engine  # noqa: E402
from tvm.pyrovm.images import ImageStore  # noqa: E402

PRINT1 = "print(1)"
C_VERSION = "12"  # bookworm's gcc, the host's own
C_HELLO = '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_process(*argv: str, cwd: str | None = None) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=cwd
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {err.decode()[-500:]}")


async def throughput(probe: Probe, clients: int, total: int) -> float:
    """Seconds that ``clients`` concurrent clients take to make ``total`` executions."""
    remaining = total

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await probe()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - start


class Bench:
    def __init__(self, runs: int, settings: Settings, meters: dict[str, Meter] | None) -> None:
        self.runs = runs
        self.meters = meters  # "client" (this process and its children), "service"
        self.settings = settings
        self.catalog = load_catalog()
        self.python = self.catalog.resolve("python", "3.11")
        self.rootfs = ImageStore(settings).rootfs(self.python.image)
        self.results: dict[str, Any] = {
            "latency_ms": {},
            "throughput_per_s": {},
            "cpu_ms_per_execution": {},
        }
        self.overheads: list[float] = []

    # -- probes ---------------------------------------------------------------
    async def bare(self) -> None:
        await run_process("/usr/bin/python3", "-c", PRINT1)

    async def bwrap(self) -> None:
        await run_process(
            "bwrap", "--ro-bind", str(self.rootfs), "/", "--proc", "/proc", "--dev", "/dev",
            "--tmpfs", "/tmp", "--unshare-all", "--die-with-parent", "--new-session",
            "--clearenv", "--setenv", "PATH", "/usr/bin:/bin",
            "python3", "-c", PRINT1,
        )  # fmt: skip

    def engine_probe(self, engine: Engine, code: str) -> Probe:
        request = CodeExecutionRequest(language="python", version="3.11", code=code)
        job = build_job(request, self.settings)

        async def probe() -> None:
            result = await engine.execute(job)
            if result.status != "ok":
                raise RuntimeError(f"engine: {result}")

        return probe

    def http_probe(self, client: httpx.AsyncClient, body: dict[str, Any]) -> Probe:
        async def probe() -> None:
            start = time.perf_counter()
            reply = await client.post("/api/v2/execute", json=body)
            elapsed = (time.perf_counter() - start) * 1000
            data = reply.json()
            if reply.status_code != 200 or data["run"]["status"] is not None:
                raise RuntimeError(f"http: {reply.status_code} {data}")
            self.overheads.append(elapsed - data["run"]["wall_time"])

        return probe

    # -- measurements ---------------------------------------------------------
    async def latency(self, probes: dict[str, Probe]) -> None:
        samples: dict[str, list[float]] = {name: [] for name in probes}
        for probe in probes.values():  # warm up caches once
            await probe()
        self.overheads.clear()
        for _ in range(self.runs):
            for name, probe in probes.items():
                samples[name].append(await timed_probe(probe))
        for name, values in samples.items():
            self.results["latency_ms"][name] = {
                "p50": round(statistics.median(values), 2),
                "p90": round(pct(values, 0.9), 2),
                "n": len(values),
            }
        self.results["service_overhead_ms"] = {
            "p50": round(statistics.median(self.overheads), 2),
            "p90": round(pct(self.overheads, 0.9), 2),
            "what": "HTTP latency minus the program's own wall time: HTTP, validation, "
            "scheduling, sandbox hand-over, agent round trip",
        }

    def cpu_ns(self, name: str) -> int:
        """CPU so far of what method ``name`` runs on: this process and its
        children, plus the service's cgroup for ``http``."""
        if self.meters is None:
            return 0
        used = self.meters["client"].ns()
        return used + (self.meters["service"].ns() if name == "http" else 0)

    async def rates(
        self, probes: dict[str, Probe], clients: list[int], total: int, rounds: int = 4
    ) -> None:
        """Throughput and CPU per execution; the methods take turns, ``rounds``
        times per client count, so that the machine's load hits them alike."""
        per_round = max(1, total // rounds)
        for n in clients:
            seconds = dict.fromkeys(probes, 0.0)
            cpu = dict.fromkeys(probes, 0)
            for _ in range(rounds):
                for name, probe in probes.items():
                    before = self.cpu_ns(name)
                    seconds[name] += await throughput(probe, n, per_round)
                    cpu[name] += self.cpu_ns(name) - before
            for name in probes:
                done = per_round * rounds
                rate = round(done / seconds[name], 1)
                self.results["throughput_per_s"].setdefault(name, {})[str(n)] = rate
                if self.meters is not None:
                    ms = round(cpu[name] / done / 1e6, 2)
                    self.results["cpu_ms_per_execution"].setdefault(name, {})[str(n)] = ms

    async def compiled(self, engine_client: httpx.AsyncClient) -> None:
        if not shutil.which("gcc"):
            return
        with tempfile.TemporaryDirectory(prefix="tvmbench") as tmp:
            Path(tmp, "main.c").write_text(C_HELLO)

            # The bare side runs the very command the catalog compiles C with,
            # through sh as it is written (globs, -lm and all): the same work.
            command = self.catalog.resolve("c", C_VERSION).compile
            assert command is not None

            async def bare() -> None:
                await run_process("/bin/sh", "-c", command, "compile", "main.c", cwd=tmp)
                await run_process("./a.out", cwd=tmp)

            files = [{"name": "main.c", "content": C_HELLO}]
            body = {"language": "c", "version": C_VERSION, "files": files}

            async def http() -> None:
                reply = await engine_client.post("/api/v2/execute", json=body)
                if reply.json().get("run", {}).get("stdout") != "hello\n":
                    raise RuntimeError(f"c: {reply.text}")

            samples: dict[str, list[float]] = {"c_bare_gcc_run": [], "c_http": []}
            await bare()
            await http()
            for _ in range(max(5, self.runs // 4)):
                samples["c_bare_gcc_run"].append(await timed_probe(bare))
                samples["c_http"].append(await timed_probe(http))
        for name, values in samples.items():
            self.results["latency_ms"][name] = {
                "p50": round(statistics.median(values), 2),
                "p90": round(pct(values, 0.9), 2),
                "n": len(values),
            }

    async def other_drivers(self) -> None:
        for name, availability in drivers.probe_all(self.settings).items():
            if name == "namespace" or not availability.usable:
                self.results.setdefault("drivers", {})[name] = {
                    "usable": availability.usable,
                    "reason": availability.reason,
                }
                continue
            engine = Engine(self.settings, self.catalog, drivers.driver_class(name)(self.settings))
            try:
                probe = self.engine_probe(engine, PRINT1)
                await probe()
                values = [await timed_probe(probe) for _ in range(max(5, self.runs // 4))]
                self.results.setdefault("drivers", {})[name] = {
                    "usable": True, "p50_ms": round(statistics.median(values), 2),
                    "p90_ms": round(pct(values, 0.9), 2),
                }  # fmt: skip
            except Exception as exc:
                self.results.setdefault("drivers", {})[name] = {
                    "usable": False,
                    "reason": str(exc)[:200],
                }
            finally:
                await engine.close()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings()
    # CPU accounting: this process (bare processes, the in-process engine and
    # its sandboxes are its children) and the service, each in a cgroup of its own.
    cpu = meters("client", "service")
    if cpu is not None:
        cpu["client"].enter()
    bench = Bench(args.runs, settings, cpu)
    engine = Engine(settings, bench.catalog, NamespaceDriver(settings))
    await engine.start()
    tmp = Path(tempfile.mkdtemp(prefix="tvmbench"))
    defaults = Settings.model_fields  # the service as shipped: warm pools on
    env = {
        "TVM_LOG_LEVEL": "warning",
        "TVM_DRIVER": "namespace",
        "TVM_POOL_SIZE": str(defaults["pool_size"].default),
        "TVM_POOL_LANGUAGES": json.dumps(defaults["pool_languages"].default_factory()),  # type: ignore[misc]
    }
    if cpu is not None:
        with cpu["service"].inside():  # the service and all it starts count there
            server = Server(tmp, env=env)
        cpu["client"].enter()
    else:
        server = Server(tmp, env=env)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            body = {"language": "python", "version": "3.11", "files": [{"content": PRINT1}]}
            probes = {
                "bare": bench.bare,
                "bwrap": bench.bwrap,
                "engine": bench.engine_probe(engine, PRINT1),
                "http": bench.http_probe(client, body),
            }
            if not args.languages_only:
                await bench.latency(probes)
                await bench.rates(probes, [1, 2, 4, 8], args.total)
                await bench.compiled(client)
            store = ImageStore(settings)
            bench.results["languages_ms"] = await per_language(
                client, bench.catalog, store, args.lang_runs, frozenset(args.lang)
            )
            bench.results["languages_chroot_setup_ms"] = await chroot_setup(
                store, bench.catalog, max(3, args.lang_runs)
            )
            bench.results["cds_ms"] = await cds_rows(
                bench.catalog, store, settings.home, args.lang_runs, frozenset(args.lang)
            )
            if not args.lang:
                bench.results["judge_ms"] = await judge(
                    client, bench.catalog, store, args.lang_runs
                )
            bench.results["warm_memory"] = await warm_memory(settings, bench.catalog)
        if not args.languages_only:
            await bench.other_drivers()
    finally:
        server.stop()
        await engine.close()
        shutil.rmtree(tmp, ignore_errors=True)
        if cpu is not None:
            cpu["client"].leave()
            for meter in cpu.values():
                meter.remove()
    if not args.languages_only:
        from live_bench import measure  # live sandboxes through E2B's SDK

        bench.results["live"] = await asyncio.to_thread(measure, min(args.runs, 20))
        bench.results["live_two_workers"] = await asyncio.to_thread(
            measure, min(args.runs, 20), "namespace", 8, 2
        )
    bench.results["machine"] = {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "driver": "namespace",
        "runs": args.runs,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return bench.results


def report_languages(console: Console, rows: dict[str, Any]) -> None:
    table = Table(
        title="compile + run (ms, medians): API against bare in the image; CPU ms"
        " (bare: its processes; API: the compile and run stages)"
    )
    cols = ("language", "bare", "http", "http / bare", "bare cold (no pch)", "CPU bare", "CPU API")
    for col in cols:
        table.add_column(col, justify="right" if col != "language" else "left")
    for key, row in rows.items():
        cells = _against_bare(row)
        if "skipped" not in row:
            cold = f"{row['bare_cold']:.0f}" if "bare_cold" in row else ""
            cells += [cold, *(f"{row.get('cpu', {}).get(k, 0):.0f}" for k in ("bare", "http"))]
        table.add_row(key, *cells)
    console.print(table)
    _print_failed_samples(console, rows)


def _against_bare(row: dict[str, Any]) -> list[str]:
    """A row's bare and API medians and their ratio (or why it was skipped)."""
    if "skipped" in row:
        return ["-", "-", f"skipped: {row['skipped'][:60]}"]
    cells = [f"{row[k]:.0f}" if k in row else "-" for k in ("bare", "http")]
    ratio = f"{row['ratio']:.2f}x" if "ratio" in row else "-"
    if row.get("errors"):
        ratio += f" ({len(row['errors'])} failed)"
    return [*cells, ratio]


def _print_failed_samples(console: Console, rows: dict[str, Any]) -> None:
    for key, row in rows.items():
        for error in row.get("errors", [])[:2]:
            console.print(f"{key} failed sample: {error}")


def report_judge(console: Console, rows: dict[str, Any]) -> None:
    table = Table(title="judge: compile once + 20 test cases (ms, medians)")
    for col in ("language", "bare compile + 20 runs", "API tests (20)", "API / bare"):
        table.add_column(col, justify="right" if col != "language" else "left")
    for key, row in rows.items():
        table.add_row(key, *_against_bare(row))
    console.print(table)
    _print_failed_samples(console, rows)


def report_cpu(console: Console, cpu: dict[str, Any]) -> None:
    """CPU per execution: what the machine's load does not move."""
    if not cpu:
        console.print("CPU per execution: not measured (no cgroup could be made)")
        return
    table = Table(title="CPU per execution (ms; http: client + service, sandboxes included)")
    clients = list(next(iter(cpu.values())))
    table.add_column("method")
    for n in clients:
        table.add_column(f"{n} clients", justify="right")
    table.add_column("4 clients / bare", justify="right")
    for name, row in cpu.items():
        ratio = row.get("4", 0) / (cpu["bare"].get("4") or 1)
        table.add_row(name, *(f"{row[n]:.2f}" for n in clients), f"{ratio:.2f}x")
    console.print(table)


def report(results: dict[str, Any]) -> None:
    console = Console()
    if "languages_ms" in results:
        report_languages(console, results["languages_ms"])
        setup = results["languages_chroot_setup_ms"]
        console.print(f"bare side's own setup (mount namespace + chroot): {setup} ms")
    if results.get("cds_ms"):
        report_cds(console, results["cds_ms"])
    if "judge_ms" in results:
        report_judge(console, results["judge_ms"])
    if "warm_memory" in results:
        report_warm_memory(console, results["warm_memory"])
    if not results["latency_ms"]:
        return
    lat = results["latency_ms"]
    bare = lat["bare"]["p50"]
    table = Table(title="latency of print(1) (ms)")
    for col in ("method", "p50", "p90", "p50 / bare"):
        table.add_column(col, justify="right" if col != "method" else "left")
    for name, row in lat.items():
        base = lat["c_bare_gcc_run"]["p50"] if name.startswith("c_") else bare
        table.add_row(name, f"{row['p50']:.1f}", f"{row['p90']:.1f}", f"{row['p50'] / base:.2f}x")
    console.print(table)
    tput = results["throughput_per_s"]
    table = Table(title="throughput (executions/s) by concurrent clients")
    clients = list(next(iter(tput.values())))
    table.add_column("method")
    for n in clients:
        table.add_column(f"{n} clients", justify="right")
    table.add_column("4 clients / bare", justify="right")
    for name, row in tput.items():
        ratio = row.get("4", 0) / tput["bare"].get("4", 1)
        table.add_row(name, *(f"{row[n]:.1f}" for n in clients), f"{ratio:.2f}x")
    console.print(table)
    report_cpu(console, results.get("cpu_ms_per_execution", {}))
    over = results["service_overhead_ms"]
    console.print(f"service overhead per request: p50 {over['p50']} ms, p90 {over['p90']} ms")
    for name, info in results.get("drivers", {}).items():
        console.print(f"driver {name}: {info}")
    for key, shape in (("live", "embedded worker"), ("live_two_workers", "2 worker processes")):
        live = results.get(key, {})
        if live:
            console.print(
                f"live sandboxes (E2B SDK, {shape}): create -> first output p50 "
                f"{live['create_to_first_output_ms']['p50']} ms, run_code('1+1') p50 "
                f"{live['run_code_1_plus_1_ms']['p50']} ms, "
                f"idle sandbox {live.get('idle_sandbox_mb')}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60, help="interleaved latency samples")
    parser.add_argument("--total", type=int, default=80, help="executions per throughput point")
    parser.add_argument(
        "--lang-runs", type=int, default=int(os.environ.get("TVM_BENCH_LANG_RUNS", "3")),
        help="interleaved samples per language (env TVM_BENCH_LANG_RUNS)",
    )  # fmt: skip
    parser.add_argument("--languages-only", action="store_true", help="only the language table")
    parser.add_argument("--lang", action="append", default=[], help="only this language (repeat)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("make bench needs root (the namespace driver runs sandboxes as root)")
    results = asyncio.run(main_async(args))
    report(results)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for path in (args.out / f"bench-{stamp}.json", args.out / "latest.json"):
        path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"saved {args.out / f'bench-{stamp}.json'}")


if __name__ == "__main__":
    main()
