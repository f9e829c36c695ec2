"""A worker process, reached over its HTTP API: a :class:`WorkerClient`.

The internal contract is the worker's native ``POST /api/v1/execute`` with
``X-Request-ID``, plus ``GET /health`` and its two language lists. Each call
opens its own connection (no keep-alive), so a failure can be placed exactly:

* refused before the job started (connection refused or reset while
  connecting or sending, 429, or 503 with Retry-After): :class:`Refused`;
* lost after the request was sent (the connection broke while waiting for the
  answer, or no answer within ``worker_timeout_seconds``, or a 5xx):
  :class:`Lost`, since the job may have run.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from tvm.api import ExecutionResponse, Job
from tvm.config.settings import Settings
from tvm.errors import ImageNotBuilt, RequestError, TVMError
from tvm.pyroshell.worker_client import Health, Lost, Refused, Unavailable
from tvm.utils.web import REQUEST_ID_HEADER

log = logging.getLogger("tvm.gateway.workers")

# Failures that leave no doubt the worker never got the whole request.
NOT_STARTED = (httpx.ConnectError, httpx.ConnectTimeout, httpx.WriteError, httpx.PoolTimeout)


class HttpLink:
    """The one HTTP client every :class:`HttpWorker` of a pool shares (building
    one costs tens of milliseconds). No keep-alive: every request opens its
    own connection, so a connect error always means the worker never saw the
    job, and a read error always means it died during it (a stale pooled
    connection would blur that). ``transport`` is for tests; ``keepalive``
    (for live sandboxes' many small calls, where a broken connection means
    the same either way: the sandbox is lost) keeps connections open."""

    def __init__(
        self, transport: httpx.AsyncBaseTransport | None = None, keepalive: bool = False
    ) -> None:
        self.transport = transport
        self.keepalive = keepalive
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            limits = httpx.Limits(max_keepalive_connections=20 if self.keepalive else 0)
            self._client = httpx.AsyncClient(limits=limits, transport=self.transport)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class HttpWorker:
    def __init__(self, url: str, settings: Settings, link: HttpLink) -> None:
        self.url = url.rstrip("/")
        self.settings = settings
        self.link = link

    @property
    def name(self) -> str:
        return self.url

    @property
    def live_url(self) -> str | None:
        return self.url

    async def start(self) -> None:
        """Nothing to start: the worker is its own process."""

    async def close(self) -> None:
        """Nothing to close: the pool closes the shared link."""

    async def health(self) -> Health:
        try:
            reply = await self.link.client().get(f"{self.url}/health", timeout=3)
            body = reply.json() if reply.status_code == 200 else {}
        except (httpx.HTTPError, ValueError) as exc:
            raise Unavailable(f"{type(exc).__name__}: {exc}") from exc
        if reply.status_code != 200:
            raise Unavailable(f"/health answered {reply.status_code}")
        boxes = body.get("sandboxes", {})
        return Health(
            admitted=int(body.get("admitted", 0)),
            sandboxes=int(boxes.get("sandboxes", 0)) if isinstance(boxes, dict) else 0,
            driver=str(body.get("driver") or ""),
            boot=str(body.get("boot") or ""),
            live=int((body.get("live") or {}).get("live", 0)),
        )

    async def languages(self, request_id: str) -> list[dict[str, Any]]:
        return await self._get_list("/api/v1/languages", request_id)

    async def runtimes(self, request_id: str) -> list[dict[str, Any]]:
        return await self._get_list("/api/v2/runtimes", request_id)

    async def _get_list(self, path: str, request_id: str) -> list[dict[str, Any]]:
        try:
            reply = await self.link.client().get(
                f"{self.url}{path}", headers={REQUEST_ID_HEADER: request_id}, timeout=10
            )
            if reply.status_code == 200:
                listed: list[dict[str, Any]] = reply.json()
                return listed
        except (httpx.HTTPError, ValueError) as exc:
            raise Unavailable(str(exc)) from exc
        raise Unavailable(f"{path} answered {reply.status_code}", down=False)

    async def execute(
        self, payload: dict[str, Any], request_id: str, job: Job | None = None
    ) -> ExecutionResponse | Refused | Lost:
        try:
            reply = await self.link.client().post(
                f"{self.url}/api/v1/execute",
                json=payload,
                headers={REQUEST_ID_HEADER: request_id},
                timeout=self.settings.worker_timeout_seconds,
            )
        except NOT_STARTED as exc:
            log.warning("worker %s refused the job before it started: %s", self.url, exc)
            return Refused(f"{type(exc).__name__}: {exc}", down=True)
        except httpx.HTTPError as exc:
            log.error("worker %s went away during a job: %s", self.url, exc)
            return Lost(self.url, f"{type(exc).__name__}: {exc}".rstrip(": "), down=True)
        if reply.status_code == 200:
            try:
                return ExecutionResponse.model_validate(reply.json())
            except ValueError as exc:
                return Lost(self.url, f"unreadable answer: {exc}")
        if reply.status_code == 429 or (
            reply.status_code == 503 and "retry-after" in reply.headers
        ):
            return Refused(f"it answered {reply.status_code}: full", down=False)
        if reply.status_code >= 500 and reply.status_code != 503:
            return Lost(self.url, f"it answered {reply.status_code}: {reply.text[:200]}")
        raise _worker_error(reply)


def _worker_error(reply: httpx.Response) -> TVMError:
    """A worker's non-capacity error, as the same error from the gateway."""
    try:
        message = str(reply.json().get("message", reply.text))
    except ValueError:
        message = reply.text or f"worker answered {reply.status_code}"
    if reply.status_code == 503:
        return ImageNotBuilt(message)
    error = RequestError(message)
    error.status_code = reply.status_code
    return error
