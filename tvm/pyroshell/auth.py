"""API keys, rate limits and concurrency quotas of the gateway.

Keys: ``tvm_<random>``; only the SHA-256 of the secret is stored (it is shown
once, by ``tvm keys create``). A request names its key in ``X-API-Key`` or, as
Judge0 clients do, ``X-Auth-Token``.

Whether a key is required (``auth_required``): ``true`` always, ``false`` never,
unset (the default) only when the gateway listens beyond loopback *and* at least
one key exists, so a local install stays open like Piston and Judge0.

Keys whose prefix is listed in ``admin_keys`` are admin keys: they see and delete
every submission (other keys only their own) and list them all.

Limits, for work-creating requests only (executions and submissions; reads and
polling are free): a token bucket per key (``rate_per_minute`` refill up to
``burst``; defaults from settings, per key overrides) and a concurrency quota
(queued + running executions per key). Without a key, the bucket is per client
address and only when ``anonymous_rate_per_minute`` is set. Over a limit: 429
with ``Retry-After``.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import math
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection

from tvm.config.settings import Settings
from tvm.errors import CapacityError, Unauthorized
from tvm.pyroshell.store import PROCESSING, QUEUED, Store
from tvm.utils import metrics

KEY_HEADERS = ("x-api-key", "x-auth-token")
KEY_CACHE_SECONDS = 5.0


def new_secret() -> str:
    return "tvm_" + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Principal:
    """Who is asking: a key (``key_id``) or an anonymous client address."""

    key_id: int | None
    name: str
    rate_per_minute: int  # 0: unlimited
    burst: int
    max_concurrent: int | None  # None: no quota
    admin: bool = False  # its prefix is in the ``admin_keys`` setting

    def owns(self, owner_key_id: int | None) -> bool:
        """May this principal see and delete a submission made by ``owner_key_id``? Its own
        key's, or any with an admin key; an anonymous one (no key) by its token alone."""
        return owner_key_id is None or self.admin or owner_key_id == self.key_id

    @property
    def bucket(self) -> str:
        return f"key:{self.key_id}" if self.key_id is not None else f"addr:{self.name}"


@dataclass
class Bucket:
    tokens: float
    updated: float


class Limiter:
    """Token buckets and in-flight counts, in this gateway's memory."""

    def __init__(self) -> None:
        self.buckets: dict[str, Bucket] = {}
        self.inflight: dict[str, int] = {}

    def take(self, principal: Principal, n: int = 1) -> None:
        if principal.rate_per_minute <= 0:
            return
        rate = principal.rate_per_minute / 60.0
        capacity = max(principal.burst, n)
        moment = time.monotonic()
        bucket = self.buckets.setdefault(principal.bucket, Bucket(capacity, moment))
        bucket.tokens = min(capacity, bucket.tokens + (moment - bucket.updated) * rate)
        bucket.updated = moment
        if bucket.tokens < n:
            metrics.REFUSED.labels("rate_limit").inc()
            wait = math.ceil((n - bucket.tokens) / rate)
            raise CapacityError(
                f"rate limit of {principal.rate_per_minute}/min (burst {principal.burst}) "
                f"reached for {principal.name}; retry in {wait} s",
                retry_after=wait,
            )
        bucket.tokens -= n

    @contextlib.asynccontextmanager
    async def running(self, principal: Principal, n: int = 1) -> AsyncIterator[None]:
        """Count ``n`` synchronous executions as in flight for the concurrency quota."""
        self.inflight[principal.bucket] = self.inflight.get(principal.bucket, 0) + n
        try:
            yield
        finally:
            self.inflight[principal.bucket] -= n


class Gatekeeper:
    """Authentication plus limits, as the routes use them."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.limiter = Limiter()
        self._keys: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._required: tuple[float, bool] | None = None

    async def required(self) -> bool:
        if self.settings.auth_required is not None:
            return self.settings.auth_required
        if is_loopback(self.settings.host):
            return False
        cached = self._required
        if cached is None or time.monotonic() - cached[0] > KEY_CACHE_SECONDS:
            cached = (time.monotonic(), await self.store.has_keys())
            self._required = cached
        return cached[1]

    async def _key(self, secret: str) -> dict[str, Any] | None:
        digest = hash_secret(secret)
        cached = self._keys.get(digest)
        if cached is None or time.monotonic() - cached[0] > KEY_CACHE_SECONDS:
            cached = (time.monotonic(), await self.store.key_by_hash(digest))
            self._keys[digest] = cached
        key = cached[1]
        return None if key is None or key["revoked"] else key

    async def principal(self, request: HTTPConnection, given: str | None = None) -> Principal:
        """``given``: a key passed some other way than the headers (a browser's
        WebSocket cannot set them)."""
        secret = next((request.headers[h] for h in KEY_HEADERS if request.headers.get(h)), None)
        secret = secret or given
        key = await self._key(secret) if secret else None
        if key is None and await self.required():
            raise Unauthorized(
                "a valid API key is required: send it as X-API-Key (or X-Auth-Token); "
                "keys are made with `tvm keys create`"
                if not secret
                else "the API key is unknown or revoked"
            )
        settings = self.settings
        if key is not None:
            return Principal(
                key_id=key["id"],
                name=f"key {key['prefix']}",
                rate_per_minute=key["rate_per_minute"] or settings.key_rate_per_minute,
                burst=key["burst"] or settings.key_burst,
                max_concurrent=key["max_concurrent"] or settings.key_max_concurrent,
                admin=key["prefix"] in settings.admin_keys,
            )
        client = request.client.host if request.client else "unknown"
        rate = settings.anonymous_rate_per_minute
        return Principal(None, client, rate, max(1, rate // 4 or 1), None)

    async def admit(self, principal: Principal, n: int = 1) -> None:
        """Rate limit and concurrency quota for ``n`` new executions; 429 when over."""
        self.limiter.take(principal, n)
        if principal.max_concurrent is None or principal.key_id is None:
            return
        active = self.limiter.inflight.get(principal.bucket, 0)
        active += await self.store.count((QUEUED, PROCESSING), key_id=principal.key_id)
        if active + n > principal.max_concurrent:
            metrics.REFUSED.labels("concurrency").inc()
            raise CapacityError(
                f"{principal.name} has {active} executions queued or running; its quota is "
                f"max_concurrent={principal.max_concurrent}; retry when one finishes",
                retry_after=1,
            )
