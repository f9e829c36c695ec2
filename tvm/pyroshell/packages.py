"""Piston's package routes over TVM's images: ``GET/POST/DELETE /api/v2/packages``.

A Piston package is one language at one version; here it is a catalog entry,
``installed`` when its image is built. Installing builds that image (minutes:
mmdebstrap from Debian), uninstalling removes it; an image may serve several
entries (``tvm images list``), which are then installed or removed together.

``GET`` is open like ``/api/v2/runtimes``. ``POST`` and ``DELETE`` change the
host, so they need an admin key (one whose prefix is in the ``admin_keys``
setting, sent as ``X-API-Key``, ``X-Auth-Token`` or, as Piston clients send
theirs, ``Authorization``): 401 without a key, 403 with another key. Bodies
and messages are Piston's: ``{language, version}`` in and out, ``404 {"message":
"Requested package python-9 does not exist"}``, ``500 {"message": "Already
installed"}``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from tvm.compat.piston import PISTON_TAG, PistonMessage
from tvm.config.catalog import Catalog, Language, satisfies
from tvm.config.settings import Settings
from tvm.errors import Forbidden, NotFound, TVMError, Unauthorized
from tvm.pyroshell.auth import KEY_HEADERS, Principal
from tvm.pyroshell.deps import gateway
from tvm.pyrovm.images.build import ImageBuilder
from tvm.pyrovm.images.store import ImageStore, remove_tree
from tvm.utils.responses import errors

Payload = Annotated[Any, Body()]


class PistonPackage(BaseModel):
    language: str
    language_version: str
    installed: bool


class PackageRequest(BaseModel):
    language: str
    version: str


class PackageFailed(TVMError):
    """Piston's 500 ``{"message"}`` for an install or uninstall that cannot be done."""


def packages(catalog: Catalog, store: ImageStore) -> list[dict[str, Any]]:
    return [
        {"language": lang.name, "language_version": lang.version,
         "installed": store.is_built(lang.image)}
        for lang in catalog
    ]  # fmt: skip


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else "undefined"


def find(catalog: Catalog, body: Any) -> Language:
    """Piston's ``get_package``: the newest entry named ``language`` (not an alias)
    whose version satisfies ``version``; 404 with Piston's message otherwise."""
    body = body if isinstance(body, dict) else {}
    language, version = body.get("language"), body.get("version")
    found = [
        lang for lang in catalog
        if isinstance(language, str) and isinstance(version, str)
        and lang.name == language and satisfies(lang.version, version)
    ]  # fmt: skip
    if not found:
        raise NotFound(f"Requested package {_shown(language)}-{_shown(version)} does not exist")
    return found[-1]


async def check_admin(request: Request) -> Principal:
    """Who asks, who must hold an admin key (``Authorization`` counts as a key here)."""
    gate = gateway(request).gate
    secret = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if secret and not any(request.headers.get(h) for h in KEY_HEADERS):
        scope_headers = [*request.scope["headers"], (b"x-api-key", secret.encode())]
        request = Request({**request.scope, "headers": scope_headers})
    who = await gate.principal(request)
    if who.key_id is None:
        raise Unauthorized("an admin key is required: send it as X-API-Key (see admin_keys)")
    if not who.admin:
        raise Forbidden(f"{who.name} is not an admin key; admin_keys lists the ones that are")
    return who


def install(settings: Settings, store: ImageStore, lang: Language) -> dict[str, str]:
    if store.is_built(lang.image):
        raise PackageFailed("Already installed")
    ImageBuilder(settings, store).build(lang.image)
    return {"language": lang.name, "version": lang.version}


def uninstall(store: ImageStore, lang: Language) -> dict[str, str]:
    if not store.is_built(lang.image):
        raise PackageFailed(f"{lang.name}-{lang.version} is not installed")
    with store.lock():
        remove_tree(store.image_dir(lang.image))
    return {"language": lang.name, "version": lang.version}


def packages_router(catalog: Catalog) -> APIRouter:
    router = APIRouter(tags=[PISTON_TAG])
    changes = errors(PistonMessage, 400, 401, 403, 404, 500, 503)
    schema = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object",
        "properties": {"language": {"type": "string", "description": "a catalog name"},
                       "version": {"type": "string", "description": "semver selector"}},
    }}}}}  # fmt: skip

    @router.get("/api/v2/packages", response_model=list[PistonPackage])
    async def list_packages(request: Request) -> JSONResponse:
        return JSONResponse(packages(catalog, ImageStore(gateway(request).settings)))

    @router.post("/api/v2/packages", response_model=PackageRequest, responses=changes,
                 openapi_extra=schema)  # fmt: skip
    async def install_package(request: Request, payload: Payload = None) -> JSONResponse:
        await check_admin(request)
        lang = find(catalog, payload)
        settings = gateway(request).settings
        done = await asyncio.to_thread(install, settings, ImageStore(settings), lang)
        return JSONResponse(done)

    @router.delete("/api/v2/packages", response_model=PackageRequest, responses=changes,
                   openapi_extra=schema)  # fmt: skip
    async def uninstall_package(request: Request, payload: Payload = None) -> JSONResponse:
        await check_admin(request)
        lang = find(catalog, payload)
        store = ImageStore(gateway(request).settings)
        return JSONResponse(await asyncio.to_thread(uninstall, store, lang))

    return router
