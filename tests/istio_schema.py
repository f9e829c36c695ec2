"""Validate Istio objects against the OpenAPI v3 schemas inside Istio's own CRDs.

An API server prunes unknown fields of a custom resource silently; here an unknown
field is an error (every object schema with ``properties`` gets
``additionalProperties: false`` unless it preserves unknown fields), so a typo in a
manifest fails the test instead of vanishing in the cluster. CEL rules
(``x-kubernetes-validations``) are not evaluated.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml


def _strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {key: _strict(value) for key, value in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


def load_schemas(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict JSON schema of the object's ``spec``."""
    schemas = {}
    for crd in yaml.safe_load_all(path.read_text()):
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if not version.get("served"):
                continue
            full = version["schema"]["openAPIV3Schema"]
            spec = copy.deepcopy(full["properties"]["spec"])
            schemas[(f"{group}/{version['name']}", kind)] = _strict(spec)
    return schemas


def validate(obj: dict[str, Any], schemas: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """The problems of one Istio object: unknown kind, extra top-level keys, and every
    schema error of its spec (path and message)."""
    name = f"{obj['kind']}/{obj['metadata']['name']}"
    schema = schemas.get((obj["apiVersion"], obj["kind"]))
    if schema is None:
        return [f"{name}: no CRD serves {obj['apiVersion']} {obj['kind']}"]
    problems = [
        f"{name}: unknown top-level field {key!r}"
        for key in obj
        if key not in ("apiVersion", "kind", "metadata", "spec")
    ]
    validator = jsonschema.Draft7Validator(schema)
    for error in validator.iter_errors(obj.get("spec", {})):
        path = ".".join(str(p) for p in error.absolute_path) or "spec"
        problems.append(f"{name}: spec.{path}: {error.message}")
    return problems
