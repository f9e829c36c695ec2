"""What the VM drivers (qemu, firecracker) need besides the VMM: a guest
kernel (:mod:`.kernel`), disk images made from the language rootfs
(:mod:`.disks`) and the host's TSC frequency for software-CPU guests
(:mod:`.hostinfo`). The guest's init is the agent (``agent/vminit.py``).
"""
