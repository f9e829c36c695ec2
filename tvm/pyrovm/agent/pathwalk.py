"""Paths a sandbox made ahead of its request looks up while it waits.

Each sandbox's root is an overlay of its own (:mod:`mounts`), so its dentry
cache starts empty: the first lookup of a path through it costs about twice a
cached one, and a toolchain that looks up thousands of paths (php's extension
and ini files, ``go build``'s standard library) pays that on every request.
The image build records the paths the language's *own sample program* looks up
(:mod:`tvm.pyrovm.images.pathwalk`, never a user's program) into a list in the
image (``/usr/local/lib/tvm-walk/``); a pooled sandbox stats each of them once,
in its own overlay, before it is handed out. Paths that do not exist are looked up too: a
compiler's search of its include or library dirs is mostly misses, and the
overlay caches those as well. Nothing is read, and nothing of one sandbox's
lookups reaches another.

Stdlib only; runs inside the sandbox.
"""

from __future__ import annotations

import os

MAX_PATHS = 20000  # a list is written by the image build; this only bounds a bad one


def walk(list_path: str) -> int:
    """Look up every path listed in ``list_path`` (one absolute path a line);
    how many were listed. A missing list walks nothing."""
    try:
        with open(list_path, encoding="utf-8", errors="replace") as fh:
            paths = fh.read().splitlines()[:MAX_PATHS]
    except OSError:
        return 0
    stat = os.stat
    for path in paths:
        if path.startswith("/"):
            try:
                stat(path)
            except (OSError, ValueError):
                pass
    return len(paths)
