"""The web playground, served by the gateway at ``/``.

The page (``static/index.html``), its stylesheet and the bundle that ``make
playground`` builds from ``playground/`` (CodeMirror 6 and xterm.js, bundled
by esbuild: nothing is fetched from elsewhere at run time), plus
``hello.json``, a hello-world program per catalog language. Files are read
once, gzipped once, and served with an ETag; the API keeps its paths.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request, Response

from tvm.errors import NotFound

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {
    "playground.js": "text/javascript; charset=utf-8",
    "playground.css": "text/css; charset=utf-8",
    "page.css": "text/css; charset=utf-8",
    "hello.json": "application/json",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes
    media_type: str
    etag: str


class Assets:
    def __init__(self, root: Path = STATIC) -> None:
        self.root = root
        self._cache: dict[str, Asset] = {}

    def get(self, name: str, media_type: str) -> Asset:
        asset = self._cache.get(name)
        if asset is None:
            path = self.root / name
            if not path.is_file():
                raise NotFound(
                    f"playground file {name} is missing; build it with `make playground`"
                )
            body = path.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            asset = Asset(body, gzip.compress(body, 6, mtime=0), media_type, etag)
            self._cache[name] = asset
        return asset

    def respond(self, request: Request, name: str, media_type: str) -> Response:
        asset = self.get(name, media_type)
        headers = {"ETag": asset.etag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
        if request.headers.get("if-none-match") == asset.etag:
            return Response(status_code=304, headers=headers)
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return Response(asset.gzipped, media_type=asset.media_type, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)


def playground_router(assets: Assets | None = None) -> APIRouter:
    files = assets or Assets()
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def page(request: Request) -> Response:
        return files.respond(request, "index.html", "text/html; charset=utf-8")

    @router.get("/playground/{name}")
    async def asset(name: str, request: Request) -> Response:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise NotFound(f"no playground file {name}")
        return files.respond(request, name, media_type)

    return router
