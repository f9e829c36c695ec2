"""The checked-in OpenAPI schema of the gateway is the one the code generates."""

from __future__ import annotations

from tvm.pyroshell import openapi


def test_checked_in_schema_is_current() -> None:
    assert openapi.DOC_PATH.exists(), "run: python -m tvm.pyroshell.openapi"
    assert openapi.DOC_PATH.read_text() == openapi.render(), (
        "docs/openapi.json is stale; regenerate it with: python -m tvm.pyroshell.openapi"
    )


def test_schema_has_every_public_route() -> None:
    paths = set(openapi.schema()["paths"])
    assert {"/api/v1/execute", "/api/v2/execute", "/api/v2/runtimes", "/api/v1/languages",
            "/submissions", "/submissions/{token}", "/submissions/batch", "/languages",
            "/statuses", "/config_info", "/about", "/health"} <= paths  # fmt: skip
