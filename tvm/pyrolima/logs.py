"""Which commands print the logs of each part of a deployment.

``tvm logs --component C`` reads, for a Lima or Kubernetes deployment:

=========  ==========================================================================
component  source
=========  ==========================================================================
api        the ``pyroshell`` pods (the gateway)
tvm        the ``pyrovm`` pods (the workers)
lima       the instance's own logs on the host (host agent, serial console) and the
           provisioning output inside the VM
k8s        the cluster's events and its system pods (``kube-system``); on Lima also
           the K3s service's journal
istio      the Istio control plane (``istiod``), the ingress gateway, and the
           sidecars of TVM's pods
=========  ==========================================================================

Each function returns the commands (argv lists) without running them; the CLI runs
them (and prints them with ``--debug``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

COMPONENTS = ("api", "tvm", "lima", "k8s", "istio")
NAMESPACE = "tvm"
_MAX_LOG_REQUESTS = "20"  # kubectl follows at most this many pods at once


@dataclass(frozen=True)
class Kubernetes:
    """A cluster reached with kubectl on this machine (optionally another kubeconfig
    or context)."""

    kubeconfig: str | None = None
    context: str | None = None

    def kubectl(self) -> list[str]:
        argv = ["kubectl"]
        if self.kubeconfig:
            argv.append(f"--kubeconfig={self.kubeconfig}")
        if self.context:
            argv.append(f"--context={self.context}")
        return argv


@dataclass(frozen=True)
class Lima:
    """The cluster inside a Lima instance (kubectl runs in the VM)."""

    instance: str = "tvm"
    lima_home: Path = field(
        default_factory=lambda: Path(os.environ.get("LIMA_HOME", Path.home() / ".lima"))
    )

    def kubectl(self) -> list[str]:
        return ["limactl", "shell", self.instance, "kubectl"]

    def shell(self, *argv: str) -> list[str]:
        return ["limactl", "shell", self.instance, *argv]

    @property
    def dir(self) -> Path:
        return self.lima_home / self.instance


Target = Kubernetes | Lima


def _pod_logs(
    target: Target, namespace: str, selector: str, lines: int, follow: bool, container: str = ""
) -> list[str]:
    argv = [*target.kubectl(), "logs", "-n", namespace, "-l", selector, "--prefix"]
    argv += [f"--container={container}"] if container else ["--all-containers"]
    argv += [f"--tail={lines}", f"--max-log-requests={_MAX_LOG_REQUESTS}"]
    return argv + (["--follow"] if follow else [])


def _tail(paths: list[str], lines: int, follow: bool) -> list[str]:
    return ["tail", "-n", str(lines)] + (["-F"] if follow else []) + paths


def commands(component: str, target: Target, lines: int, follow: bool) -> list[list[str]]:
    """The commands that print ``component``'s logs on ``target``."""
    if component == "api":
        return [_pod_logs(target, NAMESPACE, "app.kubernetes.io/name=pyroshell", lines, follow,
                          container="pyroshell")]  # fmt: skip
    if component == "tvm":
        return [_pod_logs(target, NAMESPACE, "app.kubernetes.io/name=pyrovm", lines, follow,
                          container="pyrovm")]  # fmt: skip
    if component == "k8s":
        events = [*target.kubectl(), "get", "events", "--all-namespaces"]
        events += ["--watch"] if follow else ["--sort-by=.lastTimestamp"]
        system = _pod_logs(target, "kube-system", "k8s-app", lines, follow)
        out = [events, system]
        if isinstance(target, Lima):
            journal = ["journalctl", "-u", "k3s", "--no-pager", "-n", str(lines)]
            out.append(target.shell("sudo", *journal, *(["-f"] if follow else [])))
        return out
    if component == "istio":
        return [
            _pod_logs(target, "istio-system", "app=istiod", lines, follow),
            _pod_logs(target, "istio-system", "app=istio-ingressgateway", lines, follow),
            _pod_logs(target, NAMESPACE, "app.kubernetes.io/part-of=tvm", lines, follow,
                      container="istio-proxy"),
        ]  # fmt: skip
    if component == "lima":
        if not isinstance(target, Lima):
            raise ValueError("the lima component exists only for a Lima deployment")
        host_logs = sorted(str(p) for p in target.dir.glob("*.log"))
        out = [_tail(host_logs, lines, follow)] if host_logs else []
        provisioning = _tail(["/var/log/cloud-init-output.log"], lines, follow)
        return [*out, target.shell("sudo", *provisioning)]
    raise ValueError(f"component: one of {', '.join(COMPONENTS)} (got {component!r})")
