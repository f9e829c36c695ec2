"""Facts about the host that VM command lines depend on."""

from __future__ import annotations

import functools
import os
import re
import subprocess
from pathlib import Path


@functools.lru_cache(maxsize=1)
def tsc_khz() -> int | None:
    """The host TSC frequency in kHz (``tsc: Detected 2596.130 MHz processor``).

    A guest on a software CPU (TCG) cannot calibrate its TSC against anything
    and hangs at "Marking TSC unstable" without ``tsc_early_khz=``.
    """
    sources: list[str] = []
    try:
        sources.append(subprocess.run(["dmesg"], capture_output=True, text=True, timeout=5).stdout)
    except (OSError, subprocess.TimeoutExpired):
        pass
    for text in sources:
        match = re.search(r"tsc: Detected ([\d.]+) MHz", text) or re.search(
            r"tsc: Refined TSC clocksource calibration: ([\d.]+) MHz", text
        )
        if match:
            return int(float(match.group(1)) * 1000)
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    match = re.search(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.M)
    return int(float(match.group(1)) * 1000) if match else None


def kvm_device() -> str | None:
    """Why /dev/kvm cannot be used (None when it can be opened read-write)."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return f"/dev/kvm: {exc.strerror}"
    os.close(fd)
    return None
