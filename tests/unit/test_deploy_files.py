"""The container files agree with the code: the image's version, the compose files'
settings, roles, ports and privileges."""

from __future__ import annotations

import ipaddress
import itertools
import json
import re
from pathlib import Path
from typing import Any

import yaml

from tvm import __version__
from tvm.cli.server import ROLES
from tvm.config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def compose(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return loaded


def test_the_image_labels_the_package_version() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"ARG TVM_VERSION={__version__}\n" in dockerfile
    assert 'org.opencontainers.image.version="${TVM_VERSION}"' in dockerfile
    assert "ARG BASE_IMAGE=debian:bookworm-slim" in dockerfile


def test_entrypoint_roles_are_the_cli_roles() -> None:
    entrypoint = (ROOT / "scripts/docker-entrypoint.sh").read_text()
    for role in ("all-in-one", "gateway", "worker"):
        assert role in ROLES and re.search(rf"^\s+{role}\b.*\)$", entrypoint, re.M), role


def every_service(name: str) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose(name)["services"]
    return services


def test_compose_sets_only_real_settings() -> None:
    for name in ("docker-compose.yml", "docker-compose.hostnet.yml",
                 "compose.override.example.yml"):  # fmt: skip
        for service in every_service(name).values():
            for key in service.get("environment") or {}:
                if key.startswith("TVM_"):
                    assert key[4:].lower() in Settings.model_fields, f"{name}: {key}"


def test_ordinary_compose_finds_workers_by_dns_and_waits_for_postgres() -> None:
    services = every_service("docker-compose.yml")
    gateway, worker = services["gateway"], services["worker"]
    assert gateway["command"] == ["gateway"] and worker["command"] == ["worker"]
    assert gateway["environment"]["TVM_WORKERS_DNS"] == "worker:8080"
    assert gateway["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert worker["privileged"] is True and "ports" not in worker  # so it scales
    assert "healthcheck" in services["postgres"]


def test_hostnet_compose_ports_uids_and_addresses() -> None:
    services = every_service("docker-compose.hostnet.yml")
    assert all(s["network_mode"] == "host" for s in services.values())
    ports = [s["environment"]["TVM_PORT"] for s in services.values() if "TVM_PORT" in
             (s.get("environment") or {})]  # fmt: skip
    assert len(ports) == len(set(ports)) == 4
    workers = {n: s for n, s in services.items() if s["command"] == ["worker"]}
    listed = json.loads(services["gateway-a"]["environment"]["TVM_WORKERS"])
    assert sorted(listed) == sorted(f"http://127.0.0.1:{w['environment']['TVM_PORT']}"
                                    for w in workers.values())  # fmt: skip
    ranges = sorted((int(w["environment"]["TVM_UID_BASE"]), int(w["environment"]["TVM_UID_COUNT"]))
                    for w in workers.values())  # fmt: skip
    assert all(a + n <= b for (a, n), (b, _) in itertools.pairwise(ranges))
    default = Settings(home=Path("/nonexistent"))
    low, high = default.uid_base, default.uid_base + default.uid_count  # the images' users
    assert all(low <= a and a + n <= high for a, n in ranges)
    for worker in workers.values():
        assert worker["cap_drop"] == ["SYS_RESOURCE"] and "privileged" not in worker
    text = (ROOT / "docker-compose.hostnet.yml").read_text()
    for found in re.findall(r"\b\d+\.\d+\.\d+\.\d+\b", text):
        assert ipaddress.ip_address(found).is_loopback, found
