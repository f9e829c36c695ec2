"""Live mode's directory watches, by inotify: events as they happen.

Stdlib only (inside the sandbox; inotify through ctypes)::

    host  -> agent  {"id": 9, "op": "watch_start", "watch": 3, "path": "dir", "recursive": false}
    agent -> host   {"type": "reply", "id": 9, "path": "/home/user/dir"}
    agent -> host   {"type": "event", "watch": 3, "kind": "fs", "name": "a.txt", "op": "create"}
    agent -> host   {"type": "event", "watch": 3, "kind": "end", "reason": "..."}
    host  -> agent  {"id": 10, "op": "watch_stop", "watch": 3}

``op`` is ``create`` (also a name moved in), ``write``, ``remove``,
``rename`` (a name moved out) or ``chmod``. A watch ends (``end``) when its
directory goes, when the kernel's queue overflowed, or on ``watch_stop``.

Bounded: at most :data:`MAX_WATCHES` watches per sandbox and
:data:`MAX_DIRS` directories per recursive watch (deeper ones made later
are not watched). Each watch's inotify instance is made with the program's
uid as the real uid, so the kernel charges its instances and watches to the
sandbox's own uid (``fs.inotify.max_user_instances`` / ``max_user_watches``),
never to root's.
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
import threading

from .live_base import LiveError

MAX_WATCHES = 16
MAX_DIRS = 256

IN_MODIFY, IN_ATTRIB, IN_MOVED_FROM, IN_MOVED_TO = 0x2, 0x4, 0x40, 0x80
IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_MOVE_SELF = 0x100, 0x200, 0x400, 0x800
IN_Q_OVERFLOW, IN_IGNORED, IN_ONLYDIR, IN_ISDIR = 0x4000, 0x8000, 0x1000000, 0x40000000
IN_NONBLOCK, IN_CLOEXEC = 0o4000, 0o2000000
MASK = (IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
        | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)  # fmt: skip
OPS = ((IN_CREATE | IN_MOVED_TO, "create"), (IN_MODIFY, "write"), (IN_DELETE, "remove"),
       (IN_MOVED_FROM, "rename"), (IN_ATTRIB, "chmod"))  # fmt: skip
HEADER = struct.Struct("iIII")

_libc = ctypes.CDLL(None, use_errno=True)


class Watch:
    def __init__(self, watches: Watches, ident: int, root: str, recursive: bool) -> None:
        self.watches = watches
        self.ident = ident
        self.root = root
        self.recursive = recursive
        self.fd = watches.live_init()
        self.dirs: dict[int, str] = {}  # watch descriptor -> path below the root ("" for it)
        self.stop_r, self.stop_w = os.pipe()
        self.closed = False  # its descriptors, under the watches' lock

    def add(self, rel: str, announce: bool = False) -> None:
        """Watch the directory ``rel`` (and, recursively, what is below it);
        ``announce``: it is new, so report what was made in it before its
        watch was (a ``mkdir -p a/b && touch a/b/c`` is faster than us)."""
        if len(self.dirs) >= MAX_DIRS:
            return
        path = os.path.join(self.root, rel) if rel else self.root
        wd = _libc.inotify_add_watch(self.fd, os.fsencode(path), MASK)
        if wd < 0:
            if not rel:
                raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), path)
            return  # gone meanwhile, or not ours to read
        self.dirs[wd] = rel
        if not self.recursive:
            return
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            below = os.path.join(rel, entry.name) if rel else entry.name
            if announce:
                self.watches.live.event(watch=self.ident, kind="fs", name=below, op="create")
            if entry.is_dir(follow_symlinks=False):
                self.add(below, announce)

    def run(self) -> None:
        reason = "stopped"
        try:
            reason = self._read_forever()
        finally:
            self.close()
            self.watches.ended(self.ident)
            self.watches.live.event(watch=self.ident, kind="end", reason=reason)

    def close(self) -> None:
        with self.watches.lock:
            if not self.closed:
                self.closed = True
                for fd in (self.fd, self.stop_r, self.stop_w):
                    os.close(fd)

    def _read_forever(self) -> str:
        while True:
            ready, _, _ = select.select([self.fd, self.stop_r], [], [])
            if self.stop_r in ready:
                return "stopped"
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                continue
            offset = 0
            while offset < len(data):
                wd, mask, _cookie, size = HEADER.unpack_from(data, offset)
                raw = data[offset + HEADER.size : offset + HEADER.size + size]
                offset += HEADER.size + size
                name = os.fsdecode(raw.rstrip(b"\0"))
                if mask & IN_Q_OVERFLOW:
                    return "too many events at once (the kernel's queue overflowed)"
                gone = self._one(wd, mask, name)
                if gone:
                    return gone

    def _one(self, wd: int, mask: int, name: str) -> str | None:
        rel = self.dirs.get(wd)
        if rel is None:
            return None
        if mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED):
            self.dirs.pop(wd, None)
            return "the watched directory is gone" if rel == "" else None
        full = os.path.join(rel, name) if rel else name
        for bit, op in OPS:
            if mask & bit:
                self.watches.live.event(watch=self.ident, kind="fs", name=full, op=op)
        if self.recursive and mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO):
            with self.watches.live.priv, self.watches.as_user():
                self.add(full, announce=True)
        return None

    def stop(self) -> None:
        with self.watches.lock:
            if not self.closed:
                os.write(self.stop_w, b"x")


class Watches:
    def __init__(self, live) -> None:
        self.live = live
        self.lock = threading.Lock()
        self.active: dict[int, Watch] = {}

    def handler(self, op: str):
        return getattr(self, f"op_{op}", None)

    def as_user(self):
        return self.live.files._as_user()

    def live_init(self) -> int:
        """An inotify instance charged to the program's uid (real uid), not root's."""
        os.setresuid(self.live.uid, self.live.uid, 0)
        try:
            fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        finally:
            os.setresuid(0, 0, 0)
        if fd < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno), "inotify_init1")
        return int(fd)

    def op_watch_start(self, message: dict) -> tuple[dict, object]:
        ident = int(message["watch"])
        root = self.live.files.resolve(message.get("path"))
        with self.lock:
            if len(self.active) >= MAX_WATCHES:
                raise LiveError("conflict", f"at most {MAX_WATCHES} watches per sandbox: stop one")
            if ident in self.active:
                raise LiveError("already_exists", f"watch {ident} exists")
            with self.live.priv:
                watch = Watch(self, ident, root, bool(message.get("recursive")))
                try:
                    with self.as_user():
                        if not os.path.isdir(root):
                            if not os.path.exists(root):
                                raise LiveError("not_found", f"path {root} does not exist")
                            raise LiveError("conflict", f"path: {root} is not a directory")
                        watch.add("")
                except BaseException:
                    for fd in (watch.fd, watch.stop_r, watch.stop_w):
                        os.close(fd)
                    raise
            self.active[ident] = watch
        thread = threading.Thread(target=watch.run, daemon=True)
        return {"path": root}, thread.start  # events only after the reply

    def op_watch_stop(self, message: dict) -> dict:
        with self.lock:
            watch = self.active.get(int(message["watch"]))
        if watch is None:  # (it may have ended on its own)
            raise LiveError("not_found", f"watch {message.get('watch')} not found")
        watch.stop()
        return {}

    def ended(self, ident: int) -> None:
        with self.lock:
            self.active.pop(ident, None)
