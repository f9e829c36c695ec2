"""TVM on a developer's machine as it runs in production: a Lima VM with K3s and
Istio, into which the ``dev`` overlay of ``deploy/k8s`` is deployed.

:class:`LimaManager` renders the instance's Lima template (:meth:`_generate_lima_config`)
with a provisioning script (:meth:`_get_provision_script`) that installs K3s and
Istio, labels the node for sandboxes, builds the ``tvm/pyrovm`` image into K3s and
applies the overlay. ``tvm start --lima`` creates or starts the instance and waits
for the rollout; the Istio ingress (port 80 in the VM) is forwarded to
``127.0.0.1:<api_port>`` on the host.
"""

from __future__ import annotations

import json
import platform
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tvm import __version__
from tvm.errors import ConfigError, PlatformError
from tvm.pyrolima.commands import Runner

SOURCE = Path(__file__).resolve().parents[2]  # the checkout (deploy/k8s, Dockerfile)
PROVISION_SCRIPT = Path(__file__).with_name("provision.sh")
GUEST_SOURCE = "/tvm"  # where that checkout is mounted in the VM (read-only)
INGRESS_PORT = 80  # the Istio ingress gateway's port inside the VM
ISTIO_VERSION = "1.26.2"
K3S_CHANNEL = "v1.32"
# Debian 12's cloud images, one per architecture Lima can run.
IMAGES = [
    {
        "location": "https://cloud.debian.org/images/cloud/bookworm/latest/"
        "debian-12-genericcloud-amd64.qcow2",
        "arch": "x86_64",
    },
    {
        "location": "https://cloud.debian.org/images/cloud/bookworm/latest/"
        "debian-12-genericcloud-arm64.qcow2",
        "arch": "aarch64",
    },
]
_SIZE = re.compile(r"[1-9][0-9]*(\.[0-9]+)?(MiB|GiB|TiB)")


def size_bytes(size: str) -> int:
    """Bytes of a Lima size such as ``4GiB`` or ``8192MiB``."""
    match = _SIZE.fullmatch(size)
    if match is None:
        raise ConfigError(f"a size such as 4GiB or 8192MiB (got {size!r})")
    unit = {"MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[match.group(2)]
    return int(float(size[: -len(match.group(2))]) * unit)


@dataclass(frozen=True)
class Instance:
    """One Lima instance, as ``limactl list --json`` describes it."""

    name: str
    status: str
    dir: str
    cpus: int
    memory_bytes: int

    @property
    def running(self) -> bool:
        return self.status == "Running"


class LimaManager:
    """Creates, starts, stops and describes the Lima instance that runs TVM.

    Args:
        memory: the VM's memory, as Lima writes it ("4GiB", "8192MiB").
        cpu: the VM's virtual CPUs (1-64).
        instance: the Lima instance's name.
        api_port: the host port the API is forwarded to.
        source: the TVM checkout to mount and deploy (deploy/k8s, Dockerfile).
        runner: runs ``limactl``; its ``debug`` prints every command.
    """

    def __init__(
        self,
        memory: str = "4GiB",
        cpu: int = 4,
        *,
        instance: str = "tvm",
        api_port: int = 8080,
        disk: str = "60GiB",
        source: Path = SOURCE,
        runner: Runner | None = None,
    ) -> None:
        if not _SIZE.fullmatch(memory):
            raise ConfigError(f"--memory: a size such as 4GiB or 8192MiB (got {memory!r})")
        if not _SIZE.fullmatch(disk):
            raise ConfigError(f"disk: a size such as 60GiB (got {disk!r})")
        if not 1 <= cpu <= 64:
            raise ConfigError(f"--cpus: must be between 1 and 64 (got {cpu})")
        if not 1 <= api_port <= 65535:
            raise ConfigError(f"--port: must be between 1 and 65535 (got {api_port})")
        self.memory = memory
        self.cpu = cpu
        self.instance = instance
        self.api_port = api_port
        self.disk = disk
        self.source = source
        self.runner = runner or Runner()

    # -- the template --------------------------------------------------------------

    def _generate_lima_config(self, forwarded_ports: dict[int, int]) -> dict[str, Any]:
        """The Lima template of the instance.

        Args:
            forwarded_ports: host port -> guest port, e.g. ``{8080: 80}`` for the
                Istio ingress.

        Returns:
            The template as a mapping (``yaml.safe_dump`` of it is a lima.yaml).

        :meta public:
        """
        return {
            "minimumLimaVersion": "1.1.0",
            "vmType": "vz" if platform.system() == "Darwin" else "qemu",
            "os": "Linux",
            "images": [dict(image) for image in IMAGES],
            "cpus": self.cpu,
            "memory": self.memory,
            "disk": self.disk,
            "mounts": [
                {"location": str(self.source), "mountPoint": GUEST_SOURCE, "writable": False}
            ],
            # K3s brings its own containerd; Lima's would only compete with it.
            "containerd": {"system": False, "user": False},
            "portForwards": [
                {"guestPort": guest, "hostPort": host, "hostIP": "127.0.0.1"}
                for host, guest in sorted(forwarded_ports.items())
            ],
            "param": {
                "TVM_SOURCE": GUEST_SOURCE,
                "TVM_VERSION": __version__,
                "ISTIO_VERSION": ISTIO_VERSION,
                "K3S_CHANNEL": K3S_CHANNEL,
            },
            "provision": [{"mode": "system", "script": self._get_provision_script()}],
            "probes": [
                {
                    "mode": "readiness",
                    "description": "K3s answers and TVM is deployed",
                    "script": _READINESS_PROBE,
                    "hint": "See /var/log/cloud-init-output.log in the guest, or run "
                    f"`tvm logs --component lima` (instance {self.instance}).",
                }
            ],
            "message": (
                f"TVM runs in this VM on K3s + Istio; its API is http://127.0.0.1:{self.api_port}\n"
                f"  limactl shell {self.instance} kubectl get pods -n tvm\n"
                f"  tvm logs --component api --lima --follow"
            ),
        }

    def _get_provision_script(self) -> str:
        """The provisioning script (bash, run as root at every boot, idempotent):
        K3s, Istio, the sandbox node label, the tvm/pyrovm image, the dev overlay.

        :meta public:
        """
        return PROVISION_SCRIPT.read_text()

    def render(self) -> str:
        """The instance's lima.yaml."""
        config = self._generate_lima_config({self.api_port: INGRESS_PORT})
        return yaml.dump(config, Dumper=_Dumper, sort_keys=False, width=100)

    # -- the instance ----------------------------------------------------------------

    def status(self) -> Instance | None:
        """The instance, or None when it does not exist."""
        out = self.runner.output(["limactl", "list", "--json"])
        for line in out.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            if item.get("name") == self.instance:
                return Instance(
                    name=item["name"],
                    status=item.get("status", "Unknown"),
                    dir=item.get("dir", ""),
                    cpus=int(item.get("cpus", 0)),
                    memory_bytes=int(item.get("memory", 0)),
                )
        return None

    def start(self) -> Instance:
        """Create the instance (or start it when stopped), then wait until TVM's
        Deployments have rolled out in it."""
        current = self.status()
        if current is None:
            if not (self.source / "deploy" / "k8s" / "overlays" / "dev").is_dir():
                raise PlatformError(
                    f"{self.source} has no deploy/k8s/overlays/dev: `tvm start --lima` "
                    "deploys from a checkout of TVM's repository"
                )
            with tempfile.TemporaryDirectory(prefix="tvm-lima-") as tmp:
                template = Path(tmp) / f"{self.instance}.yaml"
                template.write_text(self.render())
                self.runner.run(
                    ["limactl", "create", f"--name={self.instance}", "--tty=false", str(template)]
                )
        if current is None or not current.running:
            # Provisioning (K3s, Istio, the image build) runs before start returns.
            self.runner.run(["limactl", "start", "--tty=false", "--timeout=45m", self.instance])
        for deployment in ("pyroshell", "pyrovm"):
            self.runner.run(
                [
                    *self.kubectl(),
                    "-n",
                    "tvm",
                    "rollout",
                    "status",
                    f"deployment/{deployment}",
                    "--timeout=20m",
                ]
            )
        final = self.status()
        if final is None:
            raise PlatformError(f"Lima instance {self.instance} vanished while starting")
        return final

    def stop(self) -> None:
        if self.status() is None:
            raise PlatformError(f"there is no Lima instance {self.instance!r} to stop")
        self.runner.run(["limactl", "stop", self.instance])

    def kubectl(self) -> list[str]:
        """The command prefix that runs kubectl inside the VM (K3s's own)."""
        return ["limactl", "shell", self.instance, "kubectl"]

    def curl_example(self) -> str:
        return (
            f"curl -s http://127.0.0.1:{self.api_port}/api/v2/execute "
            "-H 'Content-Type: application/json' "
            '-d \'{"language":"python","version":"*","files":[{"content":"print(42)"}]}\''
        )


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (the scripts) as YAML block literals."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)

# Lima runs probes as the user, until they pass (or its start times out).
_READINESS_PROBE = """#!/bin/bash
set -eu -o pipefail
if ! timeout 30s bash -c 'until kubectl get namespace tvm >/dev/null 2>&1; do sleep 3; done'; then
  echo >&2 "K3s or the TVM namespace is not up yet"
  exit 1
fi
"""
