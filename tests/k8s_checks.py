"""Checks of rendered Kubernetes manifests that no schema validator makes.

Each check takes the rendered objects (a list of dicts, as ``kubectl kustomize``
prints them) and returns the problems it found, one readable line each; an empty
list means the manifests pass. The tests run them on every overlay and, to show
that each would catch its mistake, on deliberately broken copies.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from tvm import __version__
from tvm.config.settings import Settings

Obj = dict[str, Any]

IMAGE = f"tvm/pyrovm:{__version__}"
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")
ISTIO_GROUPS = ("networking.istio.io", "security.istio.io", "telemetry.istio.io")
# Istio picks a Service port's protocol from its name prefix (or appProtocol).
PROTOCOL_PREFIXES = ("http", "http2", "https", "grpc", "grpc-web", "tcp", "tls", "mongo", "redis")


def is_istio(obj: Obj) -> bool:
    return obj["apiVersion"].split("/")[0] in ISTIO_GROUPS


def named(objs: list[Obj], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def pod_templates(objs: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    """(workload, its pod template) for every workload."""
    for obj in objs:
        if obj["kind"] in WORKLOADS:
            yield obj, obj["spec"]["template"]


def containers(template: Obj) -> list[Obj]:
    spec = template["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def selected(objs: list[Obj], selector: dict[str, str]) -> list[tuple[Obj, Obj]]:
    return [
        (wl, tpl)
        for wl, tpl in pod_templates(objs)
        if selects(selector, tpl["metadata"].get("labels", {}))
    ]


def port_names(template: Obj) -> set[str]:
    return {
        p["name"] for c in template["spec"]["containers"] for p in c.get("ports", []) if "name" in p
    }


def port_numbers(template: Obj) -> set[int]:
    return {p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])}


def check_namespace(objs: list[Obj], namespace: str = "tvm") -> list[str]:
    return [
        f"{o['kind']}/{o['metadata']['name']} is in namespace {o['metadata'].get('namespace')!r}"
        for o in objs
        if o["kind"] != "Namespace" and o["metadata"].get("namespace") != namespace
    ]


def check_services(objs: list[Obj]) -> list[str]:
    """Every Service selects pods, and every port it targets is a port of each of them."""
    problems = []
    for name, svc in named(objs, "Service").items():
        selector = svc["spec"].get("selector") or {}
        pods = selected(objs, selector) if selector else []
        if not pods:
            problems.append(f"Service/{name} selects no pods (selector {selector})")
        for port in svc["spec"]["ports"]:
            pname = port.get("name", "")
            if not (pname.split("-")[0] in PROTOCOL_PREFIXES or port.get("appProtocol")):
                problems.append(f"Service/{name} port {pname!r} does not name its protocol")
            target = port.get("targetPort", port["port"])
            for wl, tpl in pods:
                known = port_names(tpl) if isinstance(target, str) else port_numbers(tpl)
                if target not in known:
                    problems.append(
                        f"Service/{name} targets port {target!r}, which "
                        f"{wl['kind']}/{wl['metadata']['name']} does not expose ({sorted(known)})"
                    )
    return problems


def check_probes_and_ports(objs: list[Obj]) -> list[str]:
    problems = []
    for wl, tpl in pod_templates(objs):
        names = port_names(tpl)
        for c in containers(tpl):
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = c.get(kind, {})
                action = probe.get("httpGet") or probe.get("tcpSocket") or {}
                port = action.get("port")
                if isinstance(port, str) and port not in names:
                    problems.append(
                        f"{wl['metadata']['name']}/{c['name']} {kind} uses unknown port {port!r}"
                    )
    return problems


def check_policies_select(objs: list[Obj]) -> list[str]:
    """NetworkPolicies and Istio policies select pods, and their named ports exist."""
    problems = []
    for obj in objs:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind == "NetworkPolicy":
            selector = obj["spec"]["podSelector"].get("matchLabels", {})
            if not selector:
                continue  # the namespace-wide default
            pods = selected(objs, selector)
            if not pods:
                problems.append(f"NetworkPolicy/{name} selects no pods")
            for rule in obj["spec"].get("ingress", []):
                for peer in rule.get("from", []):
                    peer_sel = peer.get("podSelector", {}).get("matchLabels")
                    if (
                        peer_sel
                        and "namespaceSelector" not in peer
                        and not selected(objs, peer_sel)
                    ):
                        problems.append(
                            f"NetworkPolicy/{name} allows pods that do not exist: {peer_sel}"
                        )
                for port in rule.get("ports", []):
                    value = port.get("port")
                    for wl, tpl in pods:
                        if isinstance(value, str) and value not in port_names(tpl):
                            problems.append(
                                f"NetworkPolicy/{name} port {value!r} is not a port of "
                                f"{wl['metadata']['name']}"
                            )
        elif kind in ("AuthorizationPolicy", "PeerAuthentication"):
            selector = obj.get("spec", {}).get("selector", {}).get("matchLabels")
            if selector and not selected(objs, selector):
                problems.append(f"{kind}/{name} selects no pods ({selector})")
    return problems


def check_service_accounts(objs: list[Obj]) -> list[str]:
    """Each pod's ServiceAccount exists; each principal an AuthorizationPolicy allows
    from this namespace is a ServiceAccount some pod runs as."""
    accounts = set(named(objs, "ServiceAccount"))
    used = {tpl["spec"].get("serviceAccountName", "default") for _, tpl in pod_templates(objs)}
    problems = [f"ServiceAccount/{sa} is used by a pod but not defined" for sa in used - accounts]
    for name, policy in named(objs, "AuthorizationPolicy").items():
        for rule in policy.get("spec", {}).get("rules", []):
            for source in rule.get("from", []):
                for principal in source["source"].get("principals", []):
                    match = re.fullmatch(r"cluster\.local/ns/([^/]+)/sa/([^/]+)", principal)
                    if not match:
                        problems.append(f"AuthorizationPolicy/{name}: odd principal {principal}")
                    elif match[1] == "tvm" and match[2] not in used:
                        problems.append(
                            f"AuthorizationPolicy/{name} allows {principal}: no pod runs as it"
                        )
    return problems


def _service_hosts(objs: list[Obj]) -> dict[str, Obj]:
    return {
        f"{s['metadata']['name']}.{s['metadata']['namespace']}.svc.cluster.local": s
        for s in named(objs, "Service").values()
    }


def check_istio_references(objs: list[Obj]) -> list[str]:
    """VirtualServices route to real Services and ports through real Gateways;
    DestinationRules name real Services."""
    problems = []
    hosts = _service_hosts(objs)
    gateways = set(named(objs, "Gateway"))
    for name, vs in named(objs, "VirtualService").items():
        for gw in vs["spec"].get("gateways", []):
            if gw != "mesh" and gw.split("/")[-1] not in gateways:
                problems.append(f"VirtualService/{name} uses Gateway {gw!r}, not defined")
        for route in vs["spec"].get("http", []):
            for dest in route["route"]:
                host, port = dest["destination"]["host"], dest["destination"].get("port", {})
                svc = hosts.get(host)
                if svc is None:
                    problems.append(f"VirtualService/{name} routes to {host}: no such Service")
                elif port and port["number"] not in {p["port"] for p in svc["spec"]["ports"]}:
                    problems.append(f"VirtualService/{name} routes to {host}:{port['number']}")
    for name, dr in named(objs, "DestinationRule").items():
        if dr["spec"]["host"] not in hosts:
            problems.append(f"DestinationRule/{name} is for {dr['spec']['host']}: no such Service")
    return problems


def _env_sources(objs: list[Obj], container: Obj) -> tuple[dict[str, str], list[str]]:
    """The environment a container gets from ConfigMaps and literal values, and the
    names of the Secrets it reads."""
    configmaps = named(objs, "ConfigMap")
    env: dict[str, str] = {}
    secrets = []
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(configmaps.get(source["configMapRef"]["name"], {}).get("data", {}))
        if "secretRef" in source:
            secrets.append(source["secretRef"]["name"])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            secrets.append(ref["name"])
            env[var["name"]] = "<secret>"
    return env, secrets


def tvm_containers(objs: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    for wl, tpl in pod_templates(objs):
        for c in containers(tpl):
            if c["image"].split(":")[0] == IMAGE.split(":")[0]:
                yield wl, c


def setting_names() -> set[str]:
    return {f"TVM_{field.upper()}" for field in Settings.model_fields}


def check_settings_keys(objs: list[Obj]) -> list[str]:
    """Every key of a ConfigMap a TVM container reads, and every TVM_* variable it
    gets, is a real setting (a typo would be silently ignored by TVM)."""
    problems = []
    settings = setting_names()
    configmaps = named(objs, "ConfigMap")
    for wl, c in tvm_containers(objs):
        for source in c.get("envFrom", []):
            ref = source.get("configMapRef")
            if ref and ref["name"] not in configmaps:
                problems.append(f"{wl['metadata']['name']} reads ConfigMap/{ref['name']}: missing")
            elif ref:
                for key in configmaps[ref["name"]].get("data", {}):
                    if key not in settings:
                        problems.append(f"ConfigMap/{ref['name']} key {key} is not a TVM setting")
        for var in c.get("env", []):
            if var["name"].startswith("TVM_") and var["name"] not in settings:
                problems.append(f"{wl['metadata']['name']} env {var['name']} is not a TVM setting")
    return problems


def container_env(objs: list[Obj], container: Obj) -> dict[str, str]:
    return _env_sources(objs, container)[0]


def check_secrets(objs: list[Obj], external: set[str]) -> list[str]:
    """Every Secret a pod reads is rendered, or is one the operator creates (external)."""
    rendered = set(named(objs, "Secret"))
    problems = []
    for wl, tpl in pod_templates(objs):
        for c in containers(tpl):
            for secret in _env_sources(objs, c)[1]:
                if secret not in rendered | external:
                    problems.append(f"{wl['metadata']['name']} reads Secret/{secret}: missing")
    return problems


def check_images(objs: list[Obj], third_party: set[str]) -> list[str]:
    """TVM's containers run tvm/pyrovm at the package's version; nothing else runs
    except the named third-party images."""
    problems = []
    for wl, tpl in pod_templates(objs):
        for c in containers(tpl):
            image = c["image"]
            if image.startswith("tvm/") and image != IMAGE:
                problems.append(f"{wl['metadata']['name']}/{c['name']} runs {image}, not {IMAGE}")
            elif not image.startswith("tvm/") and image not in third_party:
                problems.append(f"{wl['metadata']['name']}/{c['name']} runs unexpected {image}")
    return problems


def route_can_match(route: Obj, method: str) -> bool:
    """True when an HTTP route of a VirtualService can take a request with ``method``."""
    matches = route.get("match")
    if not matches:
        return True
    for match in matches:
        if "headers" in match and "upgrade" in match["headers"]:
            continue  # WebSocket upgrades are GETs
        rule = match.get("method")
        if rule is None:
            return True
        if rule.get("exact") == method or method.startswith(rule.get("prefix", "\0")):
            return True
        if "regex" in rule and re.fullmatch(rule["regex"], method):
            return True
    return False


def check_retries(objs: list[Obj]) -> list[str]:
    """No route that can take a POST (a submission, an execution) is retried."""
    problems = []
    for name, vs in named(objs, "VirtualService").items():
        for route in vs["spec"].get("http", []):
            attempts = route.get("retries", {}).get("attempts")
            if route_can_match(route, "POST") and attempts != 0:
                problems.append(
                    f"VirtualService/{name} route {route.get('name')!r} takes POST and "
                    f"retries ({attempts=}; Istio's default is 2): set retries.attempts: 0"
                )
    return problems


def seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    return sum(float(value) * units[unit] for value, unit in parts)


def check_timeouts(objs: list[Obj], longest: float) -> list[str]:
    """Routes that carry executions wait longer than the longest one may take."""
    problems = []
    for name, vs in named(objs, "VirtualService").items():
        for route in vs["spec"].get("http", []):
            timeout = route.get("timeout")
            if timeout is None or seconds(timeout) == 0:
                continue  # no timeout at all (streams)
            if seconds(timeout) <= longest:
                problems.append(
                    f"VirtualService/{name} route {route.get('name')!r} times out after "
                    f"{timeout}, before the longest execution ({longest:g} s)"
                )
    return problems
