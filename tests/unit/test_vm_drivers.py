"""Pure parts of the gvisor/qemu drivers and the guest kernel build (no root, no VM)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tvm.config.settings import Settings
from tvm.pyrovm import drivers
from tvm.pyrovm.agent import vminit
from tvm.pyrovm.drivers.base import Availability, SandboxSpec
from tvm.pyrovm.drivers.gvisor import oci_config, runsc_flags
from tvm.pyrovm.drivers.qemu import sandbox_argv
from tvm.pyrovm.vm import hostinfo, kernel
from tvm.pyrovm.vm.cpio import CpioWriter
from tvm.pyrovm.vm.guest import GuestKernel

SPEC = SandboxSpec(image="img", rootfs=Path("/images/img/rootfs"), uid=60001, memory_mb=256)


def test_fragment_has_what_a_microvm_guest_needs() -> None:
    options = kernel.fragment_options()
    for name in ("PVH", "KVM_GUEST", "ACPI", "VIRTIO_MMIO", "VIRTIO_MMIO_CMDLINE_DEVICES",
                 "VIRTIO_BLK", "VIRTIO_CONSOLE", "VSOCKETS", "VIRTIO_VSOCKETS", "EXT4_FS",
                 "SERIAL_8250_CONSOLE", "DEVTMPFS_MOUNT", "MEMCG", "CGROUP_PIDS",
                 "CGROUP_SCHED", "FAIR_GROUP_SCHED"):  # fmt: skip
        assert options.get(f"CONFIG_{name}") == "y", name
    assert options["CONFIG_MODULES"] == "n"


def test_kernel_digest_follows_source_and_fragment() -> None:
    base = kernel.kernel_digest("6.1.192-2", "CONFIG_A=y\n")
    assert base == kernel.kernel_digest("6.1.192-2", "CONFIG_A=y\n")
    assert base != kernel.kernel_digest("6.1.193-1", "CONFIG_A=y\n")
    assert base != kernel.kernel_digest("6.1.192-2", "CONFIG_A=n\n")


def test_find_built_ignores_kernels_of_another_fragment(tmp_path: Path) -> None:
    assert kernel.find_built(tmp_path) is None
    other = tmp_path / "kernels" / "x"
    other.mkdir(parents=True)
    (other / "vmlinux").write_bytes(b"\x7fELF")
    (other / "manifest.json").write_text('{"fragment_sha256": "other"}')
    assert kernel.find_built(tmp_path) is None


@pytest.mark.skipif(not shutil.which("cpio"), reason="cpio not installed")
def test_cpio_archive_lists_with_gnu_cpio() -> None:
    writer = CpioWriter()
    writer.directory("bin")
    writer.file("bin/hello", b"hi\n", 0o755)
    writer.char_device("dev-console", 5, 1)
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=writer.finish(),
                             capture_output=True, check=True).stdout.decode()  # fmt: skip
    assert listing.split() == ["bin", "bin/hello", "dev-console"]


def test_oci_config_keeps_two_capabilities_and_no_network() -> None:
    config = oci_config(SPEC)
    caps = config["process"]["capabilities"]
    # CAP_SETPCAP only for the agent to empty the bounding set; it drops it at start.
    assert caps["bounding"] == caps["effective"] == ["CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"]
    assert caps["inheritable"] == caps["ambient"] == []
    assert config["process"]["noNewPrivileges"] is True
    assert config["root"] == {"path": str(SPEC.rootfs), "readonly": True}
    assert {"type": "network"} in config["linux"]["namespaces"]
    mounts = {m["destination"]: m for m in config["mounts"]}
    assert "ro" in mounts["/.tvm/tvm_agent"]["options"]
    assert f"size={64 << 20}" in mounts["/work"]["options"]
    assert config["linux"]["resources"]["memory"]["limit"] > 256 << 20
    assert "--network=none" in runsc_flags(Path("/s"), "ptrace")
    assert "--oci-seccomp" in runsc_flags(Path("/s"), "ptrace")
    denied = config["linux"]["seccomp"]["syscalls"][0]
    assert {"ptrace", "unshare", "mount", "bpf"} <= set(denied["names"])
    assert denied["action"] == "SCMP_ACT_ERRNO"


def test_qemu_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostinfo, "tsc_khz", lambda: 2596130)
    guest = GuestKernel(Path("/k/vmlinux"), None, "built")
    argv = sandbox_argv("qemu", "tcg", guest, SPEC, Path("/d.ext4"), Path("/t/agent.sock"))
    joined = " ".join(argv)
    assert "-M microvm" in joined and "-accel tcg" in joined
    assert "tsc_early_khz=2596130" in joined
    assert "file=/d.ext4,format=raw,if=none,readonly=on" in joined
    assert "virtserialport,chardev=c0,name=agent" in joined
    append = argv[argv.index("-append") + 1].split()
    assert {"root=/dev/vda", "init=/.tvm/init", "tvm.channel=virtio:agent"} <= set(append)
    assert {"tvm.work_mb=64", "tvm.tmp_mb=64"} <= set(append) and "tvm.scratch" not in joined
    assert "-netdev" not in joined and "-nic" not in joined and "-initrd" not in joined
    kvm = " ".join(sandbox_argv("qemu", "kvm", guest, SPEC, Path("/d"), Path("/s")))
    assert "-accel kvm -cpu host" in kvm and "tsc_early_khz" not in kvm


def test_auto_never_picks_a_driver_marked_not_for_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    probes = {
        "firecracker": Availability(False, "no kvm"),
        "qemu": Availability(True, "TCG", auto=False),
        "gvisor": Availability(False, "no runsc"),
        "namespace": Availability(True, "ok"),
    }
    monkeypatch.setattr(drivers, "probe_all", lambda settings: probes)
    settings = Settings(driver="auto")
    assert drivers.choose_class(settings).name == "namespace"
    probes["namespace"] = Availability(False, "not root")
    assert drivers.choose_class(settings).name == "qemu"  # the only usable one


def test_vminit_reads_tvm_settings_from_the_kernel_command_line(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("console=ttyS0 quiet tvm.channel=vsock:52 tvm.work_mb=32 init=/.tvm/init\n")
    assert vminit.cmdline(str(cmdline)) == {"channel": "vsock:52", "work_mb": "32"}


def test_a_live_sandbox_gets_a_writable_home_on_every_driver() -> None:
    from dataclasses import replace

    from tvm.pyrovm.vm.cmdline import guest_cmdline

    live = replace(SPEC, home_mb=256)
    home = {m["destination"]: m for m in oci_config(live)["mounts"]}["/home"]
    assert home["type"] == "tmpfs" and f"size={256 << 20}" in home["options"]
    assert "/home" not in {m["destination"] for m in oci_config(SPEC)["mounts"]}
    assert "tvm.home_mb=256" in guest_cmdline(live, "virtio:agent").split()
    assert "tvm.home_mb" not in guest_cmdline(SPEC, "virtio:agent")
