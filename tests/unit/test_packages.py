"""Piston's /api/v2/packages over the image store: list, install (build), uninstall,
admin key only, Piston's bodies. The image build itself is replaced here (minutes of
mmdebstrap); tests/integration/test_image_build.py builds real images."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.gateway_support import gateway_client, gateway_settings
from tvm.config.catalog import ImageRecipe, load_catalog
from tvm.pyroshell import packages
from tvm.pyroshell.auth import hash_secret
from tvm.pyrovm.images import ImageStore

ROOT, USER = "tvm_root0000", "tvm_user0000"
ADMIN = {"X-API-Key": ROOT}


class MarkBuilt:
    """Stands in for ImageBuilder: writes the manifest that makes an image built."""

    built: list[str] = []

    def __init__(self, settings: Any, store: ImageStore) -> None:
        self.store = store

    def build(self, recipe: ImageRecipe) -> None:
        path = self.store.image_dir(recipe)
        path.mkdir(parents=True)
        (path / "manifest.json").write_text("{}")
        MarkBuilt.built.append(recipe.name)


def add_key(gw: TestClient, secret: str) -> None:
    values = {"name": secret, "prefix": secret[:8], "secret_hash": hash_secret(secret)}
    gw.portal.call(gw.app.state.gateway.store.add_key, values)  # type: ignore[union-attr,attr-defined]


@pytest.fixture
def gw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setattr(packages, "ImageBuilder", MarkBuilt)
    with gateway_client(gateway_settings(tmp_path, admin_keys=[ROOT[:8]])) as client:
        add_key(client, ROOT)
        add_key(client, USER)
        yield client


def test_list_says_which_are_installed(gw: TestClient) -> None:
    listed = gw.get("/api/v2/packages").json()
    catalog = load_catalog()
    assert len(listed) == len(catalog)
    assert {"language": "python", "language_version": catalog.resolve("python").version,
            "installed": False} in listed  # fmt: skip


def test_install_then_uninstall(gw: TestClient) -> None:
    python = load_catalog().resolve("python", "3")
    body = {"language": "python", "version": "3"}
    r = gw.post("/api/v2/packages", json=body, headers=ADMIN)
    assert r.status_code == 200 and r.json() == {"language": "python", "version": python.version}
    assert MarkBuilt.built[-1] == python.image.name
    installed = {(p["language"], p["language_version"]) for p in gw.get("/api/v2/packages").json()
                 if p["installed"]}  # fmt: skip
    assert ("python", python.version) in installed
    again = gw.post("/api/v2/packages", json=body, headers=ADMIN)
    assert again.status_code == 500 and again.json() == {"message": "Already installed"}
    r = gw.request("DELETE", "/api/v2/packages", json=body, headers=ADMIN)
    assert r.status_code == 200 and r.json() == {"language": "python", "version": python.version}
    again = gw.request("DELETE", "/api/v2/packages", json=body, headers=ADMIN)
    assert again.status_code == 500
    assert again.json() == {"message": f"python-{python.version} is not installed"}


@pytest.mark.parametrize(
    ("body", "message"),
    [({"language": "python", "version": "9"}, "Requested package python-9 does not exist"),
     ({"language": "py", "version": "*"}, "Requested package py-* does not exist"),
     ({}, "Requested package undefined-undefined does not exist")],
)  # fmt: skip
def test_unknown_packages_are_pistons_404(gw: TestClient, body: dict, message: str) -> None:
    for method in ("POST", "DELETE"):
        r = gw.request(method, "/api/v2/packages", json=body, headers=ADMIN)
        assert r.status_code == 404 and r.json() == {"message": message}


def test_only_an_admin_key_may_change_packages(gw: TestClient) -> None:
    body = {"language": "python", "version": "*"}
    for headers in ({}, {"X-API-Key": "tvm_unknown0"}):
        r = gw.post("/api/v2/packages", json=body, headers=headers)
        assert r.status_code == 401 and set(r.json()) == {"message"}
    r = gw.request("DELETE", "/api/v2/packages", json=body, headers={"X-API-Key": USER})
    assert r.status_code == 403 and "admin_keys" in r.json()["message"]
    # Piston clients send their key as Authorization
    assert (
        gw.post("/api/v2/packages", json=body, headers={"Authorization": ROOT}).status_code == 200
    )
