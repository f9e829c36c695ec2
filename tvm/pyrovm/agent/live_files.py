"""Live mode's file operations: read, write, stat, list, make dir, move, remove.

Stdlib only (inside the sandbox). Every operation runs with the program's
uid as the effective one, so a live sandbox's caller can touch exactly what
its programs can. Relative paths are relative to the sandbox's home. Large
files travel in pieces: ``file_read`` takes an offset and a length,
``file_write`` can append.
"""

from __future__ import annotations

import base64
import errno
import os
import shutil
import stat as stat_module

from .live_base import LiveError, as_user

# The largest piece one request may carry (the host splits bigger files).
MAX_PIECE = 8 << 20


class Files:
    def __init__(self, live) -> None:
        self.live = live

    def handler(self, op: str):
        return getattr(self, f"op_{op}", None)

    def resolve(self, path: object) -> str:
        text = str(path or "")
        if not text or "\x00" in text:
            raise LiveError("invalid", f"path: {text!r} is not a valid path")
        if not text.startswith("/"):
            text = os.path.join(self.live.home, text)
        return os.path.normpath(text)

    def _as_user(self) -> as_user:
        return as_user(self.live.uid, self.live.gid)

    def entry(self, path: str) -> dict:
        st = os.lstat(path)
        if stat_module.S_ISDIR(st.st_mode):
            kind = "dir"
        elif stat_module.S_ISLNK(st.st_mode):
            kind = "symlink"
        else:
            kind = "file"
        target = None
        if kind == "symlink":
            target = os.readlink(path)
            # E2B reports what a link points to as the entry's own type.
            kind = "dir" if os.path.isdir(path) else "file"
        return {
            "name": os.path.basename(path) or "/",
            "type": kind,
            "path": path,
            "size": st.st_size,
            "mode": stat_module.S_IMODE(st.st_mode),
            "permissions": stat_module.filemode(st.st_mode),
            "owner": _owner(st.st_uid, self.live.uid),
            "group": _owner(st.st_gid, self.live.gid),
            "mtime": st.st_mtime,
            "symlink_target": target,
        }

    # -- operations -------------------------------------------------------------
    def op_stat(self, message: dict) -> dict:
        path = self.resolve(message.get("path"))
        with self.live.priv, self._as_user():
            return {"entry": self.entry(path)}

    def op_file_read(self, message: dict) -> dict:
        path = self.resolve(message.get("path"))
        offset = int(message.get("offset", 0))
        length = min(int(message.get("length", MAX_PIECE)), MAX_PIECE)
        with self.live.priv, self._as_user():
            fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if stat_module.S_ISDIR(os.fstat(fd).st_mode):
                raise LiveError("conflict", f"path: {path} is a directory")
            data = os.pread(fd, length, offset)
        finally:
            os.close(fd)
        return {"data": base64.b64encode(data).decode(), "size": size}

    def op_file_write(self, message: dict) -> dict:
        path = self.resolve(message.get("path"))
        data = base64.b64decode(message.get("data", ""))
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if message.get("append") else os.O_TRUNC)
        with self.live.priv, self._as_user():
            parent = os.path.dirname(path)
            os.makedirs(parent, exist_ok=True)
            fd = os.open(path, flags, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        with self.live.priv, self._as_user():
            return {"entry": self.entry(path)}

    def op_list(self, message: dict) -> dict:
        root = self.resolve(message.get("path"))
        depth = max(1, int(message.get("depth") or 1))
        entries: list[dict] = []
        with self.live.priv, self._as_user():
            if not os.path.isdir(root):
                if not os.path.exists(root):
                    raise LiveError("not_found", f"path {root} does not exist")
                raise LiveError("conflict", f"path: {root} is not a directory")
            self._walk(root, depth, entries)
        return {"entries": entries}

    def _walk(self, directory: str, depth: int, out: list[dict]) -> None:
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            try:
                entry = self.entry(path)
            except OSError:
                continue
            out.append(entry)
            if depth > 1 and entry["type"] == "dir" and not os.path.islink(path):
                self._walk(path, depth - 1, out)

    def op_mkdir(self, message: dict) -> dict:
        path = self.resolve(message.get("path"))
        with self.live.priv, self._as_user():
            if os.path.isdir(path):
                raise LiveError("already_exists", f"directory {path} already exists")
            os.makedirs(path)
            return {"entry": self.entry(path)}

    def op_move(self, message: dict) -> dict:
        source = self.resolve(message.get("source"))
        destination = self.resolve(message.get("destination"))
        if destination != source and os.path.commonpath((source, destination)) == source:
            # what the paths are (a directory, and a path inside it) refuses it
            raise LiveError("conflict", f"cannot move {source} into itself ({destination})")
        with self.live.priv, self._as_user():
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            try:
                os.rename(source, destination)
            except OSError as exc:  # another mount (/tmp, the image): copy, then remove
                if exc.errno != errno.EXDEV:
                    raise
                os.lstat(source)  # a missing source is ENOENT, not EXDEV
                try:
                    shutil.move(source, destination)
                except shutil.Error as failed:  # files of the tree that could not be copied
                    raise LiveError("conflict", f"moving {source}: {failed}"[:1000]) from None
            return {"entry": self.entry(destination)}

    def op_remove(self, message: dict) -> dict:
        path = self.resolve(message.get("path"))
        with self.live.priv, self._as_user():
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        return {}


def _owner(ident: int, program: int) -> str:
    """E2B's user is called ``user``; anything else is shown by number."""
    if ident == program:
        return "user"
    return "root" if ident == 0 else str(ident)
