"""The commands `tvm logs` runs for each component and deployment (no tool runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tvm.pyrolima.logs import COMPONENTS, Kubernetes, Lima, commands


def test_every_component_has_commands_on_lima(tmp_path: Path) -> None:
    target = Lima("dev", lima_home=tmp_path)
    for component in COMPONENTS:
        argvs = commands(component, target, lines=5, follow=False)
        assert argvs and all(argv[0] in ("limactl", "tail") for argv in argvs), component
        assert all(
            argv[:3] == ["limactl", "shell", "dev"] for argv in argvs if argv[0] == "limactl"
        )


def test_lima_reads_the_host_logs_it_finds(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    for name in ("ha.stderr.log", "serial.log"):
        (tmp_path / "dev" / name).write_text("x\n")
    argvs = commands("lima", Lima("dev", lima_home=tmp_path), lines=3, follow=True)
    assert argvs[0] == ["tail", "-n", "3", "-F", str(tmp_path / "dev/ha.stderr.log"),
                        str(tmp_path / "dev/serial.log")]  # fmt: skip
    assert argvs[1][-4:] == ["-n", "3", "-F", "/var/log/cloud-init-output.log"]


def test_kubernetes_target_passes_kubeconfig_and_context() -> None:
    (argv,) = commands("tvm", Kubernetes("/cfg", "ctx"), lines=1, follow=True)
    assert argv[:3] == ["kubectl", "--kubeconfig=/cfg", "--context=ctx"]
    assert "app.kubernetes.io/name=pyrovm" in argv and argv[-1] == "--follow"
    assert len(commands("k8s", Kubernetes(), lines=1, follow=False)) == 2  # no journal


def test_bad_requests_are_refused() -> None:
    with pytest.raises(ValueError, match="one of api, tvm, lima, k8s, istio"):
        commands("etcd", Kubernetes(), lines=1, follow=False)
    with pytest.raises(ValueError, match="only for a Lima deployment"):
        commands("lima", Kubernetes(), lines=1, follow=False)
