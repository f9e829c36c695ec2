"""The live-sandbox routes' OpenAPI schema states what the server answers and
enforces: every status a route can send, the settings' lifetime and memory bounds,
and the path rules of the agent."""

from __future__ import annotations

from typing import Any

import pytest

from tvm.config.settings import Settings
from tvm.pyroshell.app import create_gateway_app
from tvm.pyroshell.live_routes import PREFIX


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    settings = Settings(live_max_timeout_seconds=123, live_max_memory_mb=321)
    served: dict[str, Any] = create_gateway_app(settings).openapi()
    return served


def _ops(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, verb, op) for path, ops in schema["paths"].items()
            if path.startswith(PREFIX) for verb, op in ops.items()]  # fmt: skip


def test_every_route_lists_its_errors(schema: dict[str, Any]) -> None:
    ops = _ops(schema)
    assert len(ops) >= 25
    for path, verb, op in ops:
        codes = set(op["responses"])
        assert {"400", "401", "503"} <= codes, (verb, path, codes)
        if "{sandbox_id}" in path:  # it ended (404), or went with its worker (410)
            assert {"404", "410"} <= codes, (verb, path, codes)
        assert "422" not in codes, (verb, path)  # the gateway answers 400
    assert "429" in schema["paths"][PREFIX]["post"]["responses"]


def test_lifetime_and_memory_bounds_come_from_the_settings(schema: dict[str, Any]) -> None:
    models = schema["components"]["schemas"]

    def integer(model: str, field: str) -> dict[str, Any]:
        prop = models[model]["properties"][field]
        found: dict[str, Any] = next(
            o for o in prop.get("anyOf", [prop]) if o.get("type") == "integer"
        )
        return found

    for model in ("SandboxCreate", "TimeoutUpdate"):
        bounds = integer(model, "timeout")
        assert (bounds["minimum"], bounds["maximum"]) == (1, 123), model
    memory = integer("SandboxCreate", "memory_mb")
    assert (memory["minimum"], memory["maximum"]) == (16, 321)


def test_paths_must_be_non_empty_without_nul(schema: dict[str, Any]) -> None:
    queries = [
        p["schema"] for _, _, op in _ops(schema) for p in op.get("parameters", [])
        if p["in"] == "query" and p["name"] == "path"
    ]  # fmt: skip
    models = schema["components"]["schemas"]
    bodies = [models["PathRequest"]["properties"]["path"],
              models["MoveRequest"]["properties"]["source"],
              models["MoveRequest"]["properties"]["destination"]]  # fmt: skip
    assert len(queries) == 6  # files: read, write, remove, list, stat, watch
    for rule in queries + bodies:
        assert rule["minLength"] == 1 and rule["pattern"] == "^[^\\x00]+$", rule
