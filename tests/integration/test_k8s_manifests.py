"""deploy/k8s: every overlay renders with the real `kubectl kustomize`, every core
object passes `kubernetes-validate --strict` (Kubernetes 1.32 schemas), every Istio
object passes the schema of Istio's own CRD, and the manifests hang together the way
no validator checks (tests/k8s_checks.py). No API server runs here: what the pods
do is proven by the container image's own tests."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

from tests import istio_schema
from tests import k8s_checks as checks
from tests.specs import spec_path
from tvm.config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "production")
KUBE_VERSION = "1.32.0"
# Secrets an operator creates by hand (documented in the overlay's kustomization).
EXTERNAL_SECRETS = {"dev": set(), "production": {"tvm-database"}}
THIRD_PARTY_IMAGES = {"dev": {"postgres:16"}, "production": set()}

Obj = dict[str, Any]


def render(path: Path) -> list[Obj]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (it renders the kustomizations)")
    out = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, f"kubectl kustomize {path} failed:\n{out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


_rendered: dict[str, list[Obj]] = {}


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Obj]]:
    name = request.param
    if name not in _rendered:
        _rendered[name] = render(K8S / "overlays" / name)
    return name, copy.deepcopy(_rendered[name])


def by(objs: list[Obj], kind: str, name: str) -> Obj:
    found = checks.named(objs, kind).get(name)
    assert found is not None, f"{kind}/{name} is not rendered"
    return found


def container(objs: list[Obj], deployment: str) -> Obj:
    return by(objs, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]


# -- real validators ----------------------------------------------------------------


def test_base_renders_too() -> None:
    kinds = {o["kind"] for o in render(K8S / "base")}
    assert {"Namespace", "Deployment", "Service", "ConfigMap", "VirtualService"} <= kinds


def test_core_objects_pass_strict_schema_validation(overlay: tuple[str, list[Obj]]) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    _, objs = overlay
    core = [o for o in objs if not checks.is_istio(o)]
    assert len(core) >= 15
    for obj in core:
        try:
            kv.validate(obj, KUBE_VERSION, strict=True)
        except kv.ValidationError as exc:  # pragma: no cover - the failure message
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {exc.path}")


def test_strict_validation_rejects_an_unknown_field() -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    objs = render(K8S / "overlays" / "dev")
    deployment = copy.deepcopy(by(objs, "Deployment", "pyroshell"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, KUBE_VERSION, strict=True)


@pytest.fixture(scope="module")
def istio_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    return istio_schema.load_schemas(spec_path("istio-crd-all.gen.yaml"))


def test_istio_objects_pass_their_crd_schemas(
    overlay: tuple[str, list[Obj]], istio_schemas: dict[tuple[str, str], dict[str, Any]]
) -> None:
    _, objs = overlay
    mesh = [o for o in objs if checks.is_istio(o)]
    kinds = {o["kind"] for o in mesh}
    assert {"Gateway", "VirtualService", "DestinationRule", "PeerAuthentication",
            "AuthorizationPolicy"} <= kinds  # fmt: skip
    problems = [p for obj in mesh for p in istio_schema.validate(obj, istio_schemas)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda vs: vs["spec"]["http"][2].update(timeOut="360s"),  # unknown field
        lambda vs: vs["spec"]["http"][2]["retries"].update(attempts="two"),  # wrong type
        lambda vs: vs["spec"].update(http=[{"route": [{"destination": {"port": 1}}]}]),
    ],
    ids=["unknown-field", "wrong-type", "missing-required"],
)
def test_istio_schema_check_catches_mistakes(
    istio_schemas: dict[tuple[str, str], dict[str, Any]], breakage: Any
) -> None:
    objs = render(K8S / "overlays" / "dev")
    vs = copy.deepcopy(by(objs, "VirtualService", "pyroshell"))
    assert istio_schema.validate(vs, istio_schemas) == []
    breakage(vs)
    assert istio_schema.validate(vs, istio_schemas)


# -- what validators cannot see ---------------------------------------------------


def test_cross_references_hold(overlay: tuple[str, list[Obj]]) -> None:
    name, objs = overlay
    problems = (
        checks.check_namespace(objs)
        + checks.check_services(objs)
        + checks.check_probes_and_ports(objs)
        + checks.check_policies_select(objs)
        + checks.check_service_accounts(objs)
        + checks.check_istio_references(objs)
        + checks.check_secrets(objs, EXTERNAL_SECRETS[name])
        + checks.check_images(objs, THIRD_PARTY_IMAGES[name])
        + checks.check_settings_keys(objs)
        + checks.check_retries(objs)
    )
    assert not problems, "\n".join(problems)


def test_external_secrets_are_documented() -> None:
    text = (K8S / "overlays" / "production" / "kustomization.yaml").read_text()
    for secret in EXTERNAL_SECRETS["production"]:
        assert f"create secret generic {secret}" in text


def _settings_of(env: dict[str, str]) -> Settings:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TVM_")}
    clean.update(env, TVM_CONFIG="/nonexistent/config.toml")
    clean = {k: v for k, v in clean.items() if v != "<secret>"}
    with mock.patch.dict(os.environ, clean, clear=True):
        return Settings()


def test_every_tvm_container_gets_valid_settings(overlay: tuple[str, list[Obj]]) -> None:
    _, objs = overlay
    seen = 0
    for wl, c in checks.tvm_containers(objs):
        env = checks.container_env(objs, c)
        settings = _settings_of(env)  # raises on a value out of range
        assert settings.port == 8080 and settings.host == "0.0.0.0", wl["metadata"]["name"]
        assert str(settings.home) == "/var/lib/tvm"
        seen += 1
    assert seen == 2


def test_timeouts_outlast_the_longest_execution(overlay: tuple[str, list[Obj]]) -> None:
    _, objs = overlay
    settings = _settings_of(checks.container_env(objs, container(objs, "pyroshell")))
    longest = settings.worker_timeout_seconds + settings.dispatch_wait_seconds
    assert not checks.check_timeouts(objs, longest)
    vs = by(objs, "VirtualService", "pyroshell")
    post = [r for r in vs["spec"]["http"] if checks.route_can_match(r, "POST")]
    bounded = [r for r in post if checks.seconds(r["timeout"]) > 0]  # 0s: no timeout
    assert bounded and all(checks.seconds(r["timeout"]) > longest for r in bounded)
    routes = {r["name"]: r for r in vs["spec"]["http"]}
    assert routes["submissions"] in bounded and "match" not in routes["submissions"]


@pytest.mark.parametrize(
    ("breakage", "check"),
    [
        (lambda o: by(o, "ConfigMap", "tvm-settings")["data"].update(TVM_MAX_VMS="9"),
         checks.check_settings_keys),
        (lambda o: container(o, "pyrovm")["env"].append({"name": "TVM_DRIVR", "value": "x"}) if "env" in container(o, "pyrovm") else container(o, "pyrovm").update(env=[{"name": "TVM_DRIVR", "value": "x"}]),
         checks.check_settings_keys),
        (lambda o: by(o, "Service", "pyrovm")["spec"].update(selector={"app": "nope"}),
         checks.check_services),
        (lambda o: by(o, "Service", "pyroshell")["spec"]["ports"][0].update(targetPort="web"),
         checks.check_services),
        (lambda o: container(o, "pyroshell").update(image="tvm/pyrovm:latest"),
         lambda objs: checks.check_images(objs, THIRD_PARTY_IMAGES["dev"])),
        (lambda o: by(o, "VirtualService", "pyroshell")["spec"]["http"][-1].pop("retries"),
         checks.check_retries),
        (lambda o: by(o, "AuthorizationPolicy", "pyrovm-from-gateway")["spec"]["rules"][0]["from"][0]["source"].update(principals=["cluster.local/ns/tvm/sa/someone"]),
         checks.check_service_accounts),
        (lambda o: by(o, "DestinationRule", "pyrovm")["spec"].update(host="workers.tvm.svc.cluster.local"),
         checks.check_istio_references),
        (lambda o: by(o, "NetworkPolicy", "pyrovm-from-gateway")["spec"]["ingress"][0]["ports"][0].update(port="grpc"),
         checks.check_policies_select),
    ],
    ids=["configmap-key", "env-name", "service-selector", "target-port", "image-tag",
         "post-retried", "principal", "destination-host", "netpol-port"],
)  # fmt: skip
def test_each_check_catches_its_mistake(breakage: Any, check: Any) -> None:
    objs = copy.deepcopy(_rendered.get("dev") or render(K8S / "overlays" / "dev"))
    assert check(objs) == []
    breakage(objs)
    assert check(objs), "the broken manifests passed the check"


def test_timeout_check_catches_a_short_timeout() -> None:
    objs = render(K8S / "overlays" / "dev")
    by(objs, "VirtualService", "pyroshell")["spec"]["http"][-1]["timeout"] = "60s"
    assert checks.check_timeouts(objs, 330)


# -- what an operator reads ---------------------------------------------------------


def test_gateway_is_replicated_probed_and_locked_down(overlay: tuple[str, list[Obj]]) -> None:
    _, objs = overlay
    deployment = by(objs, "Deployment", "pyroshell")
    pod = deployment["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert deployment["spec"]["replicas"] >= 2
    assert c["args"] == ["gateway"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    assert c["livenessProbe"]["httpGet"]["path"].startswith("/health")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert not c["securityContext"].get("privileged")
    assert c["resources"]["requests"] and c["resources"]["limits"]
    assert by(objs, "HorizontalPodAutoscaler", "pyroshell")["spec"]["minReplicas"] >= 2
    assert by(objs, "PodDisruptionBudget", "pyroshell")["spec"]["minAvailable"] >= 1


def test_workers_one_per_sandbox_node_found_by_headless_service(
    overlay: tuple[str, list[Obj]],
) -> None:
    name, objs = overlay
    deployment = by(objs, "Deployment", "pyrovm")
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    c = pod["containers"][0]
    assert c["args"] == ["worker"]
    assert pod["nodeSelector"] == {"tvm.dev/sandbox": "true"}
    (term,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert checks.selects(term["labelSelector"]["matchLabels"], labels)
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert "/var/lib/tvm" in mounts
    assert ("/dev/kvm" in mounts) == (name == "production")
    # The gateway resolves the headless Service to every worker.
    service = by(objs, "Service", "pyrovm")
    assert service["spec"]["clusterIP"] == "None"
    assert checks.selects(service["spec"]["selector"], labels)
    gateway_env = checks.container_env(objs, container(objs, "pyroshell"))
    port = service["spec"]["ports"][0]["port"]
    assert gateway_env["TVM_WORKERS_DNS"] == f"pyrovm.tvm.svc.cluster.local:{port}"
    env = checks.container_env(objs, c)
    assert {"TVM_MAX_CONCURRENT_VMS": "10", "TVM_MAX_CONCURRENT_REQUESTS": "20",
            "TVM_MAX_VM_LIFETIME_SECONDS": "60"}.items() <= env.items()  # fmt: skip


def test_only_the_worker_is_privileged(overlay: tuple[str, list[Obj]]) -> None:
    _, objs = overlay
    privileged = {
        wl["metadata"]["name"]
        for wl, tpl in checks.pod_templates(objs)
        for c in checks.containers(tpl)
        if c.get("securityContext", {}).get("privileged")
    }
    assert privileged == {"pyrovm"}


def test_database_per_overlay(overlay: tuple[str, list[Obj]]) -> None:
    name, objs = overlay
    env = container(objs, "pyroshell")["env"]
    (url,) = [v for v in env if v["name"] == "TVM_DATABASE_URL"]
    assert url["valueFrom"]["secretKeyRef"]["name"] == "tvm-database"
    statefulsets = checks.named(objs, "StatefulSet")
    if name == "dev":
        assert "postgres" in statefulsets
        secret = by(objs, "Secret", "tvm-database")["stringData"]["database-url"]
        assert secret.startswith("postgresql+asyncpg://") and "postgres.tvm.svc" in secret
    else:
        assert not statefulsets and "tvm-database" not in checks.named(objs, "Secret")


def test_mesh_policies(overlay: tuple[str, list[Obj]]) -> None:
    _, objs = overlay
    peer = by(objs, "PeerAuthentication", "default")["spec"]
    assert peer == {"mtls": {"mode": "STRICT"}}  # namespace-wide: no selector
    assert by(objs, "AuthorizationPolicy", "allow-nothing")["spec"] == {}

    def principals(policy: str) -> list[str]:
        spec = by(objs, "AuthorizationPolicy", policy)["spec"]
        assert spec["action"] == "ALLOW"
        return [p for r in spec["rules"] for s in r["from"] for p in s["source"]["principals"]]

    assert principals("pyrovm-from-gateway") == ["cluster.local/ns/tvm/sa/pyroshell"]
    assert principals("pyroshell-from-ingress") == [
        "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
    ]
    rule = by(objs, "DestinationRule", "pyroshell")["spec"]["trafficPolicy"]
    assert rule["outlierDetection"]["maxEjectionPercent"] <= 50
    assert rule["connectionPool"]["http"]["http1MaxPendingRequests"] > 0
    # Workers accept only the gateway below the mesh too.
    netpol = by(objs, "NetworkPolicy", "pyrovm-from-gateway")["spec"]["ingress"][0]
    assert netpol["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "pyroshell"}}}
    ]


# -- the image the pods run (the Dockerfile and its entry point) ---------------------


def test_pods_match_the_image_contract(overlay: tuple[str, list[Obj]]) -> None:
    """Each TVM container's first argument is a role the image's entry point knows,
    on the port the image exposes; the gateway runs as the image's own user."""
    _, objs = overlay
    entrypoint = (ROOT / "scripts" / "docker-entrypoint.sh").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    roles = {
        role.strip()
        for labels in re.findall(r"^    ([a-z| -]+)\)$", entrypoint, re.M)
        for role in labels.split("|")
    }
    assert {"gateway", "worker"} <= roles
    (exposed,) = re.findall(r"^EXPOSE (\d+)$", dockerfile, re.M)
    for wl, c in checks.tvm_containers(objs):
        assert c["args"][0] in roles, wl["metadata"]["name"]
        assert [p["containerPort"] for p in c["ports"]] == [int(exposed)]
    (uid,) = re.findall(r"useradd .*--uid (\d+)", dockerfile)
    pod = by(objs, "Deployment", "pyroshell")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == int(uid)
