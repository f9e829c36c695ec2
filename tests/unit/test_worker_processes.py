from __future__ import annotations

import itertools

from tvm.config.settings import Settings
from tvm.pyroshell.worker_processes import WorkerProcesses


def test_each_worker_gets_its_own_uid_range() -> None:
    settings = Settings(uid_base=60000, uid_count=1000, worker_port=18100)
    supervisor = WorkerProcesses(settings, count=3)
    slices = [supervisor._uid_slice(worker) for worker in supervisor.workers]
    ranges = [range(int(s["TVM_UID_BASE"]), int(s["TVM_UID_BASE"]) + int(s["TVM_UID_COUNT"]))
              for s in slices]  # fmt: skip
    assert [r.start for r in ranges] == [60000, 60333, 60666]
    for a, b in itertools.pairwise(ranges):
        assert a.stop <= b.start  # disjoint
    assert ranges[-1].stop <= 61000
