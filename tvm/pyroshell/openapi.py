"""The gateway's OpenAPI schema: generated from the app, refined to tell the truth,
and checked in as ``docs/openapi.json`` (a test fails when it is stale).

FastAPI's own schema says less than the server enforces and documents a 422
the gateway never sends. :func:`refine` fixes that in one place:

* a route's validation error is the 400 its API sends (``ErrorBody``, Piston's
  ``{"message"}``), or, on Judge0 routes, Judge0's 422 ``{attribute: [problem]}``;
* the execute request bodies carry every rule the validation applies
  (:mod:`tvm.request_schema`: languages, versions, per-language maxima, sizes);
* the live sandboxes' lifetime and memory have the settings' bounds
  (:mod:`tvm.pyroshell.live_schema`);

The served ``/openapi.json`` is built from the running server's own settings.

Regenerate: ``python -m tvm.pyroshell.openapi`` (writes docs/openapi.json).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from tvm import request_schema
from tvm.config.catalog import Catalog
from tvm.config.settings import Settings
from tvm.pyroshell import live_schema

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
JUDGE0_TAG = "judge0"
_REF = "#/components/schemas/"
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")
JUDGE0_INVALID = {
    "type": "object",
    "description": "the attribute at fault, with what is wrong with it",
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
}


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _uses(node: Any, name: str) -> bool:
    return f'"{_REF}{name}"' in json.dumps(node)


def _validation_responses(paths: dict[str, Any]) -> None:
    for ops in paths.values():
        for op in ops.values():
            responses = op.get("responses", {})
            invalid = responses.get("422")
            if invalid is None or not _uses(invalid, "HTTPValidationError"):
                continue
            if JUDGE0_TAG in op.get("tags", []):
                invalid["description"] = "an attribute is invalid"
                invalid["content"] = {"application/json": {"schema": JUDGE0_INVALID}}
            else:  # the error handlers answer 400 instead, declared by the route
                del responses["422"]


def refine(schema: dict[str, Any], settings: Settings, catalog: Catalog) -> dict[str, Any]:
    paths = schema["paths"]
    _validation_responses(paths)
    native = paths.get("/api/v1/execute", {}).get("post")
    if native is not None:
        ref = f"{_REF}CodeExecutionRequest"
        native["requestBody"] = _json_body(request_schema.native_request(catalog, settings, ref))
    piston = paths.get("/api/v2/execute", {}).get("post")
    if piston is not None:
        piston["requestBody"] = _json_body(request_schema.piston_request(catalog, settings))
    models = schema.get("components", {}).get("schemas", {})
    live_schema.refine(models, settings)
    for name in _FASTAPI_VALIDATION:
        if not _uses(paths, name):
            models.pop(name, None)
    return schema


def install(app: FastAPI, settings: Settings, catalog: Catalog) -> None:
    """Serve the refined schema at ``/openapi.json`` (built once, on first use)."""
    generate: Callable[[], dict[str, Any]] = app.openapi
    built: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not built:
            built.update(refine(generate(), settings, catalog))
        return built

    app.openapi = openapi  # type: ignore[method-assign]


def schema() -> dict[str, Any]:
    from tvm.pyroshell.app import create_gateway_app

    generated: dict[str, Any] = create_gateway_app(Settings()).openapi()
    return generated


def render() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DOC_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render())
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
