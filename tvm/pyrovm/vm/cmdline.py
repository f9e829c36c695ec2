"""The guest kernel's command line, from the sandbox spec.

What every VM guest gets: the serial console, the agent as init
(``agent/vminit.py``) and the ``tvm.*`` keys that init reads::

    tvm.channel=virtio:agent | vsock:<port>   how the agent is reached
    tvm.scratch=/dev/vdb                      /work and /tmp on this disk
    tvm.work_mb=64 tvm.tmp_mb=64              their sizes
    tvm.clock=<unix seconds>                  the guest has no RTC worth reading

A VMM adds its own words (root device, reboot behaviour); a software CPU
(QEMU's TCG) also needs the host's TSC frequency, or the guest hangs early.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from tvm.pyrovm.drivers.base import SandboxSpec
from tvm.pyrovm.vm import hostinfo

COMMON = ("console=ttyS0", "quiet", "8250.nr_uarts=1", "i8042.noaux", "init=/.tvm/init")


def guest_cmdline(
    spec: SandboxSpec,
    channel: str,
    *,
    vmm: Sequence[str] = (),
    scratch: str | None = None,
    software_cpu: bool = False,
) -> str:
    args = [*COMMON, *vmm]
    if software_cpu:
        khz = hostinfo.tsc_khz()
        if khz:
            args += [f"tsc_early_khz={khz}", "tsc=reliable"]
    args.append(f"tvm.channel={channel}")
    if scratch is not None:
        args.append(f"tvm.scratch={scratch}")
    args += [f"tvm.work_mb={spec.workdir_mb}", f"tvm.tmp_mb={spec.tmp_mb}",
             f"tvm.clock={int(time.time())}"]  # fmt: skip
    if spec.home_mb:  # a live sandbox's writable /home
        args.append(f"tvm.home_mb={spec.home_mb}")
    return " ".join(args)
