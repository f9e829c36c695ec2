"""The one exception tree of TVM.

A user's program failing is never an exception: it is data on the result
(``status`` = ``runtime_error``, ``timeout``, ...). Exceptions are for the
service itself and for bad requests::

    TVMError
    ├── ConfigError                 bad settings or catalog (operator must fix)
    ├── NotUtf8                     Judge0: a text attribute is not UTF-8 and base64 was not asked
    ├── RequestError                the client's fault, HTTP 4xx
    │   ├── InvalidRequest          400: a field is wrong; names the field and allowed range
    │   ├── UnknownLanguage         400: no such language / version in the catalog
    │   ├── Unauthorized            401: a valid API key is required
    │   ├── Forbidden               403: the key may not do this (an admin key may)
    │   ├── NotFound                404: no such submission / image / key
    │   │   ├── SandboxLost         410: a live sandbox's worker stopped, and the sandbox with it
    │   │   └── SandboxEnded        409: a live sandbox ended on its own (lifetime, its agent),
    │   │                            before or during the call (E2B's routes: 404)
    │   ├── DestinationRefused      400: an outbound request may not go there (outbound.py)
    │   └── LiveOperationError      4xx: a live sandbox refused an operation (no such file: 404,
    │                               a directory read as a file: 409)
    ├── CapacityError               429/503 with Retry-After: too busy right now
    ├── Unreachable                 an allowed outbound destination did not answer in time
    ├── ImageError
    │   ├── ImageNotBuilt           503: the language's image must be built first
    │   └── ImageBuildFailed        an image build failed
    ├── SandboxError                the sandbox or its agent misbehaved: internal_error
    │   ├── DriverUnavailable       the isolation driver cannot run on this host
    │   ├── ZygoteGone              a namespace zygote takes no more requests (ask its successor)
    │   └── AgentError              the agent died, or broke the protocol
    └── PlatformError               bringing up or reading a deployment (Lima, Kubernetes)
        └── ToolMissing             limactl / kubectl is not installed; says how to get it

Backend failures (OSError from a subprocess, a broken pipe...) are mapped onto
this tree at one boundary per layer with ``raise ... from exc``.
"""

from __future__ import annotations


class TVMError(Exception):
    """Root of every error TVM raises on purpose."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, object]:
        return {"message": self.message}


class ConfigError(TVMError):
    """Settings or the language catalog are invalid."""


class NotUtf8(TVMError):
    """A Judge0 text attribute is not UTF-8 and ``base64_encoded`` was not asked for
    (Judge0 answers with a message in the submission's place, not an HTTP error)."""


class RequestError(TVMError):
    """The request is wrong; the client must change it."""

    status_code = 400


class InvalidRequest(RequestError):
    """A field has a bad value. The message names the field and what is allowed."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def to_dict(self) -> dict[str, object]:
        return {"message": self.message, "field": self.field}


class UnknownLanguage(RequestError):
    """No catalog entry matches the requested language and version."""


class Unauthorized(RequestError):
    """No API key, or one that is unknown or revoked, where the gateway requires one."""

    status_code = 401


class Forbidden(RequestError):
    """The key is valid but may not do this; an admin key (``admin_keys``) may."""

    status_code = 403


class NotFound(RequestError):
    status_code = 404


class SandboxLost(NotFound):
    status_code = 410


class SandboxEnded(NotFound):
    """A call to a live sandbox that ended on its own, before the call or while it
    was under way: its lifetime ran out, or its agent ended (say killed at its memory
    limit). A 409 on the native API: the sandbox the URL names was made, and its
    state (ended) refuses every call; a 404 is for one never made, or deleted. E2B's
    routes answer their 404 (a subclass of :class:`NotFound` for them).
    ``owner`` is the ended sandbox's, so another key still gets the 404."""

    status_code = 409

    def __init__(self, message: str, owner: str = "") -> None:
        super().__init__(message)
        self.owner = owner

    def to_dict(self) -> dict[str, object]:
        return {"message": self.message, "code": "ended"}


class DestinationRefused(RequestError):
    """An outbound request (a callback) names a destination the service may not reach."""


class Unreachable(TVMError):
    """An outbound request could not connect, or got no answer within its time."""


class LiveOperationError(RequestError):
    """An operation inside a live sandbox failed for the caller's reason;
    ``code`` is the agent's: ``not_found`` (404), ``already_exists`` and ``conflict``
    (409: the sandbox's state refuses a well-formed request, such as a directory
    read as a file), ``forbidden`` (403: the sandbox user may not), ``invalid`` (400:
    malformed), ``internal`` (500)."""

    STATUS = {"not_found": 404, "already_exists": 409, "conflict": 409, "forbidden": 403,
              "invalid": 400, "internal": 500}  # fmt: skip

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status_code = self.STATUS.get(code, 400)

    def to_dict(self) -> dict[str, object]:
        return {"message": self.message, "code": self.code}


class CapacityError(TVMError):
    """Too much work right now; retry after ``retry_after`` seconds."""

    status_code = 429

    def __init__(self, message: str, retry_after: int = 1, status_code: int = 429) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status_code = status_code


class ImageError(TVMError):
    status_code = 503


class ImageNotBuilt(ImageError):
    """The image for a language is missing: tell the operator how to build it."""


class ImageBuildFailed(ImageError):
    status_code = 500


class SandboxError(TVMError):
    """A sandbox could not be created, or its agent failed."""


class DriverUnavailable(SandboxError):
    """The isolation driver cannot run here; ``reason`` says why."""


class AgentError(SandboxError):
    """The in-sandbox agent died or sent something that is not the protocol."""


class ZygoteGone(SandboxError):
    """The zygote asked takes no more requests (replaced, or out of step)."""


class PlatformError(TVMError):
    """A deployment (the Lima VM, a Kubernetes cluster) could not be brought up or read."""


class ToolMissing(PlatformError):
    """A command-line tool the platform needs is not on PATH; the message says how to
    install it."""
