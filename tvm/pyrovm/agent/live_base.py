"""What live mode's modules share: their error and the program-uid switch.

Stdlib only (inside the sandbox).
"""

from __future__ import annotations

import os


class LiveError(Exception):
    """A request that cannot be served; ``code`` says why, for the host:
    ``not_found``, ``already_exists``, ``conflict`` (the request is well formed but
    the sandbox's state refuses it: a directory read as a file, a file listed as a
    directory, stdin of a command that has none), ``forbidden`` (the sandbox user may
    not), ``invalid`` (malformed), ``internal``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class as_user:
    """Take the program's uid/gid as the effective ids. Effective ids are
    process-wide: hold the live agent's ``priv`` lock around it."""

    def __init__(self, uid: int, gid: int) -> None:
        self.uid, self.gid = uid, gid

    def __enter__(self) -> None:
        os.setresgid(-1, self.gid, -1)
        os.setresuid(-1, self.uid, -1)

    def __exit__(self, *exc: object) -> None:
        os.setresuid(-1, 0, -1)
        os.setresgid(-1, 0, -1)
