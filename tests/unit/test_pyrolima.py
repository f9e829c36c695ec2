"""pyrolima's Lima template, checked against Lima's own reference template (read at
test time, never copied), and its provisioning script, checked by bash and
shellcheck."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lima_reference import reference_shape, shape_problems
from tests.specs import spec_path
from tvm import __version__
from tvm.errors import ConfigError
from tvm.pyrolima import lima
from tvm.pyrolima.lima import LimaManager


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    return reference_shape(spec_path("lima-default-template.yaml").read_text())


def rendered(manager: LimaManager | None = None) -> dict[str, Any]:
    return yaml.safe_load((manager or LimaManager()).render())


def test_seed_api() -> None:
    manager = LimaManager(memory="4GiB", cpu=4)
    config = manager._generate_lima_config({8080: 80})
    assert config["memory"] == "4GiB" and config["cpus"] == 4
    assert config["portForwards"] == [{"guestPort": 80, "hostPort": 8080, "hostIP": "127.0.0.1"}]
    assert config["provision"] == [{"mode": "system", "script": manager._get_provision_script()}]


def test_template_fields_and_types_match_limas_reference(reference: dict[str, Any]) -> None:
    problems = shape_problems(rendered(), reference)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("cpus",), "4"),
        (("memroy",), "4GiB"),
        (("mounts", 0, "writeable"), True),
        (("portForwards", 0, "guestPort"), "80"),
        (("provision", 0, "scrpt"), "echo"),
        (("containerd", "system"), "no"),
    ],
)
def test_reference_check_catches_mistakes(
    reference: dict[str, Any], path: tuple[object, ...], value: object
) -> None:
    config = rendered()
    node: Any = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert shape_problems(config, reference)


def test_vm_type_follows_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lima.platform, "system", lambda: "Darwin")
    assert rendered()["vmType"] == "vz"
    monkeypatch.setattr(lima.platform, "system", lambda: "Linux")
    assert rendered()["vmType"] == "qemu"


def test_template_mounts_the_checkout_and_passes_the_version() -> None:
    config = rendered()
    (mount,) = config["mounts"]
    assert mount == {"location": str(lima.SOURCE), "mountPoint": "/tvm", "writable": False}
    assert (Path(mount["location"]) / "deploy/k8s/overlays/dev/kustomization.yaml").is_file()
    assert config["param"]["TVM_VERSION"] == __version__
    assert {image["arch"] for image in config["images"]} == {"x86_64", "aarch64"}
    assert config["containerd"] == {"system": False, "user": False}


def test_sizes() -> None:
    assert lima.size_bytes("4GiB") == 4 << 30 and lima.size_bytes("512MiB") == 512 << 20
    assert lima.size_bytes("1.5GiB") == 3 << 29


def test_bad_sizes_name_the_option() -> None:
    with pytest.raises(ConfigError, match="--memory"):
        LimaManager(memory="4 gigs")
    with pytest.raises(ConfigError, match="--cpus: must be between 1 and 64"):
        LimaManager(cpu=0)


def test_provision_script_does_what_the_seed_says() -> None:
    script = LimaManager()._get_provision_script()
    assert script.startswith("#!/bin/bash\n") and "set -eux -o pipefail" in script
    for step in ("get.k3s.io", "--disable traefik", "istioctl install",
                 "kubectl label node --all tvm.dev/sandbox=true",
                 'docker build -t "${image}"', "k3s ctr images import",
                 'kubectl apply -k "${source_dir}/deploy/k8s/overlays/dev"'):  # fmt: skip
        assert step in script, step
    # Every parameter it reads is one the template passes.
    params = set(rendered()["param"])
    assert set(re.findall(r"PARAM_([A-Z0-9_]+)", script)) <= params


def _write_script(tmp_path: Path) -> Path:
    path = tmp_path / "provision.sh"
    path.write_text(LimaManager()._get_provision_script())
    return path


def test_provision_script_parses(tmp_path: Path) -> None:
    out = subprocess.run(
        ["bash", "-n", str(_write_script(tmp_path))], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr


def test_provision_script_passes_shellcheck(tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (Debian package shellcheck; .ci/run installs it)")
    path = _write_script(tmp_path)
    out = subprocess.run([shellcheck, "--shell=bash", "--severity=style", str(path)],
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stdout
    # ... and shellcheck does catch a mistake in it.
    path.write_text(path.read_text() + "\nrm -rf $source_dir/tmp\n")
    assert subprocess.run([shellcheck, "--shell=bash", str(path)], capture_output=True).returncode
