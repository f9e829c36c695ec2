"""`tvm start|stop --lima`, `tvm status` and `tvm logs --component ...` against fake
`limactl` and `kubectl` executables on PATH that record their argv (and keep a
little instance state): a test of which commands the CLI runs, not of Lima."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

FAKE_TOOL = """#!{python}
import json, os, shutil, sys
name = os.path.basename(sys.argv[0])
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as fh:
    fh.write(json.dumps([name, *args]) + "\\n")
state = os.environ["FAKE_STATE"]
def save(status):
    with open(state, "w") as fh:
        json.dump({{"name": "tvm", "status": status, "dir": "/lima/tvm", "cpus": 4,
                   "memory": 4294967296}}, fh)
if name == "limactl" and args[:1] == ["list"]:
    if os.path.exists(state):
        print(open(state).read())
elif name == "limactl" and args[:1] == ["create"]:
    shutil.copy(args[-1], os.environ["FAKE_TEMPLATE"])
    save("Stopped")
elif name == "limactl" and args[:1] == ["start"]:
    save("Running")
elif name == "limactl" and args[:1] == ["stop"]:
    save("Stopped")
else:
    print(name, "says hello")
"""


@dataclass
class Fakes:
    bin: Path
    log: Path
    state: Path
    template: Path
    env: dict[str, str]

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def tvm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tvm.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture
def fakes(tmp_path: Path) -> Fakes:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("limactl", "kubectl"):
        path = bin_dir / tool
        path.write_text(FAKE_TOOL.format(python=sys.executable))
        path.chmod(0o755)
    lima_home = tmp_path / "lima"
    (lima_home / "tvm").mkdir(parents=True)
    (lima_home / "tvm" / "ha.stderr.log").write_text("hostagent line 1\nhostagent line 2\n")
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LIMA_HOME": str(lima_home),
        "TVM_HOME": str(tmp_path / "home"),
        "FAKE_LOG": str(tmp_path / "calls.jsonl"),
        "FAKE_STATE": str(tmp_path / "state.json"),
        "FAKE_TEMPLATE": str(tmp_path / "template.yaml"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    return Fakes(bin_dir, Path(env["FAKE_LOG"]), Path(env["FAKE_STATE"]),
                 Path(env["FAKE_TEMPLATE"]), env)  # fmt: skip


def test_start_lima_without_limactl_says_how_to_install(fakes: Fakes) -> None:
    for tool in fakes.bin.iterdir():
        tool.unlink()
    out = fakes.tvm("start", "--lima")
    assert out.returncode != 0
    assert "limactl" in out.stderr and "brew install lima" in out.stderr
    assert "lima-vm.io" in out.stderr
    assert "Traceback" not in out.stderr
    stop = fakes.tvm("stop", "--lima")
    assert stop.returncode != 0 and "brew install lima" in stop.stderr


def test_start_lima_creates_starts_waits_and_prints_curl(fakes: Fakes) -> None:
    out = fakes.tvm("start", "--lima", "--memory", "6GiB", "--cpus", "3", "--debug")
    assert out.returncode == 0, out.stderr
    calls = fakes.calls()
    create = next(c for c in calls if c[:2] == ["limactl", "create"])
    assert "--name=tvm" in create
    start = next(c for c in calls if c[:2] == ["limactl", "start"])
    assert start[-1] == "tvm" and calls.index(start) > calls.index(create)
    rollouts = [c for c in calls if "rollout" in c]
    assert [c[:4] for c in rollouts] == [["limactl", "shell", "tvm", "kubectl"]] * 2
    assert {c[c.index("status") + 1] for c in rollouts} == {
        "deployment/pyroshell", "deployment/pyrovm"}  # fmt: skip
    # The template limactl was given carries the flags.
    template = yaml.safe_load(fakes.template.read_text())
    assert template["memory"] == "6GiB" and template["cpus"] == 3
    assert template["portForwards"] == [{"guestPort": 80, "hostPort": 8080, "hostIP": "127.0.0.1"}]
    assert "curl -s http://127.0.0.1:8080/api/v2/execute" in out.stdout
    # --debug printed every command it ran, as run.
    assert "+ limactl start --tty=false --timeout=45m tvm" in out.stderr
    assert "+ limactl shell tvm kubectl -n tvm rollout status deployment/pyrovm" in out.stderr


def test_start_lima_again_only_waits(fakes: Fakes) -> None:
    assert fakes.tvm("start", "--lima").returncode == 0
    fakes.log.unlink()
    again = fakes.tvm("start", "--lima")
    assert again.returncode == 0 and "apply only when" not in again.stderr
    assert not [c for c in fakes.calls() if c[:2] in (["limactl", "create"], ["limactl", "start"])]
    bigger = fakes.tvm("start", "--lima", "--cpus", "8")
    assert bigger.returncode == 0
    assert "exists with 4 CPUs and 4 GiB; --memory/--cpus apply only when" in bigger.stderr


def test_bad_memory_names_the_option(fakes: Fakes) -> None:
    out = fakes.tvm("start", "--lima", "--memory", "lots")
    assert out.returncode != 0 and "--memory" in out.stderr and "4GiB" in out.stderr
    assert not [c for c in fakes.calls() if c[:2] == ["limactl", "create"]]


def test_stop_and_status_report_the_instance(fakes: Fakes) -> None:
    missing = fakes.tvm("stop", "--lima")
    assert missing.returncode != 0 and "no Lima instance" in missing.stderr
    assert fakes.tvm("start", "--lima").returncode == 0
    status = fakes.tvm("status")
    assert "instance tvm is Running" in status.stdout, status.stdout + status.stderr
    assert "4 CPUs" in status.stdout
    assert fakes.tvm("stop", "--lima").returncode == 0
    assert ["limactl", "stop", "tvm"] in fakes.calls()
    assert "instance tvm is Stopped" in fakes.tvm("status").stdout


def _logs(fakes: Fakes, *args: str) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    if fakes.log.exists():
        fakes.log.unlink()
    out = fakes.tvm("logs", *args)
    return out, fakes.calls()


LIMA_KUBECTL = ["limactl", "shell", "tvm", "kubectl"]


@pytest.mark.parametrize(
    ("component", "selectors"),
    [
        ("api", ["app.kubernetes.io/name=pyroshell"]),
        ("tvm", ["app.kubernetes.io/name=pyrovm"]),
        ("istio", ["app=istiod", "app=istio-ingressgateway", "app.kubernetes.io/part-of=tvm"]),
    ],
)
def test_pod_logs_through_lima(fakes: Fakes, component: str, selectors: list[str]) -> None:
    out, calls = _logs(fakes, "--component", component, "--lima", "--debug", "-n", "7")
    assert out.returncode == 0, out.stderr
    assert [c[:5] for c in calls] == [[*LIMA_KUBECTL, "logs"]] * len(selectors)
    assert [c[c.index("-l") + 1] for c in calls] == selectors
    for call in calls:
        assert "--tail=7" in call and "--prefix" in call and "--follow" not in call
        assert f"+ {' '.join(call)}" in out.stderr  # --debug shows each command
    if component == "istio":
        assert "--container=istio-proxy" in calls[2] and calls[2][calls[2].index("-n") + 1] == "tvm"
    assert "kubectl says hello" not in out.stdout  # limactl ran it (inside the VM)
    assert "limactl says hello" in out.stdout


def test_follow_follows_everything(fakes: Fakes) -> None:
    out, calls = _logs(fakes, "--component", "k8s", "--lima", "--follow")
    assert out.returncode == 0, out.stderr
    # Followed at once, so recorded in any order.
    (events,) = [c for c in calls if "events" in c]
    (system,) = [c for c in calls if "kube-system" in c]
    (journal,) = [c for c in calls if "journalctl" in c]
    assert events == [*LIMA_KUBECTL, "get", "events", "--all-namespaces", "--watch"]
    assert system[:9] == [*LIMA_KUBECTL, "logs", "-n", "kube-system", "-l", "k8s-app"]
    assert "--follow" in system
    assert journal[:5] == ["limactl", "shell", "tvm", "sudo", "journalctl"] and "-f" in journal


def test_kubernetes_directly_with_context_and_kubeconfig(fakes: Fakes) -> None:
    out, calls = _logs(
        fakes, "--component", "k8s", "--kubeconfig", "/k/config", "--context", "prod"
    )
    assert out.returncode == 0, out.stderr
    assert [c[:3] for c in calls] == [["kubectl", "--kubeconfig=/k/config", "--context=prod"]] * 2
    assert calls[0][3:] == ["get", "events", "--all-namespaces", "--sort-by=.lastTimestamp"]
    out, calls = _logs(fakes, "--component", "api", "--context", "prod", "--follow")
    assert calls == [["kubectl", "--context=prod", "logs", "-n", "tvm", "-l",
                      "app.kubernetes.io/name=pyroshell", "--prefix", "--container=pyroshell",
                      "--tail=100", "--max-log-requests=20", "--follow"]]  # fmt: skip
    assert "kubectl says hello" in out.stdout


def test_lima_component_reads_the_instance_logs(fakes: Fakes) -> None:
    out, calls = _logs(fakes, "--component", "lima", "--debug")
    assert out.returncode == 0, out.stderr
    assert "hostagent line 2" in out.stdout  # the real tail read the host-side log
    host_log = str(Path(fakes.env["LIMA_HOME"]) / "tvm" / "ha.stderr.log")
    assert f"+ tail -n 100 {host_log}" in out.stderr
    assert calls == [["limactl", "shell", "tvm", "sudo", "tail", "-n", "100",
                      "/var/log/cloud-init-output.log"]]  # fmt: skip


def test_every_component_is_accepted_and_bad_ones_are_not(fakes: Fakes) -> None:
    for component in ("api", "tvm", "lima", "k8s", "istio"):
        out, _ = _logs(fakes, "--component", component, "--lima")
        assert out.returncode == 0, (component, out.stderr)
    bad = fakes.tvm("logs", "--component", "etcd")
    assert bad.returncode == 2 and "api" in bad.stderr and "istio" in bad.stderr
    both = fakes.tvm("logs", "--component", "k8s", "--lima", "--context", "x")
    assert both.returncode == 2


def test_local_logs_unchanged(fakes: Fakes) -> None:
    logs_dir = Path(fakes.env["TVM_HOME"]) / "logs"
    logs_dir.mkdir(parents=True)
    (logs_dir / "api.log").write_text("gateway line\n")
    out, calls = _logs(fakes, "--component", "api", "--debug")
    assert out.returncode == 0 and "gateway line" in out.stdout and calls == []
    missing = fakes.tvm("logs", "--component", "tvm")
    assert missing.returncode != 0 and "--lima" in missing.stderr


def test_missing_kubectl_is_a_clear_error(fakes: Fakes) -> None:
    (fakes.bin / "kubectl").unlink()
    fakes.env["PATH"] = str(fakes.bin)  # no kubectl anywhere
    out, _ = _logs(fakes, "--component", "istio", "--context", "prod")
    assert out.returncode == 1 and "kubectl is not installed" in out.stderr
    assert "Traceback" not in out.stderr
