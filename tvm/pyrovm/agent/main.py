"""The agent's request loop: one sandbox, one conversation with the host.

Started by the driver inside the sandbox; talks :mod:`protocol` over its
original stdin/stdout, which it moves out of the way first so that nothing
printed by accident can corrupt the channel.
"""

from __future__ import annotations

import base64
import ctypes
import io
import os
import platform
import sys
import tarfile

from . import protocol, supervisor

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
MAX_ARCHIVE = 64 << 20

DEFAULT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "USER": "runner",
    "LOGNAME": "runner",
}


def _prctl(option: int, value: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _safe_relpath(path: str) -> str:
    if not path or "\x00" in path or path.startswith("/"):
        raise ValueError(f"bad file name {path!r}")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"bad file name {path!r}")
    return path


class Agent:
    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfile = os.fdopen(rfd, "rb", buffering=0)
        self.wfd = wfd
        self.uid = 65534
        self.gid = 65534
        self.workdir = "/work"
        self.env = dict(DEFAULT_ENV)

    def send(self, message: dict) -> None:
        data = memoryview(protocol.encode(message))
        while data:
            data = data[os.write(self.wfd, data) :]

    def serve(self) -> None:
        self.send(
            {
                "type": "hello",
                "protocol": protocol.PROTOCOL_VERSION,
                "python": platform.python_version(),
                "pid": os.getpid(),
            }
        )
        while True:
            message = protocol.read_frame(self.rfile.read)
            if message is None:
                return
            kind = message["type"]
            if kind == "shutdown":
                return
            handler = getattr(self, f"on_{kind}", None)
            try:
                if handler is None:
                    raise ValueError(f"unknown request type {kind!r}")
                reply = handler(message)
            except Exception as exc:
                reply = {"type": "error", "message": f"{type(exc).__name__}: {exc}"}
            self.send(reply)

    # -- requests -------------------------------------------------------------
    def on_ping(self, message: dict) -> dict:
        return {"type": "pong"}

    def on_init(self, message: dict) -> dict:
        self.uid = int(message["uid"])
        self.gid = int(message["gid"])
        self.workdir = message.get("workdir", self.workdir)
        self.env = dict(DEFAULT_ENV)
        self.env.update(message.get("env") or {})
        return {"type": "ok"}

    def on_files(self, message: dict) -> dict:
        with _as_user(self.uid, self.gid):
            for item in message["files"]:
                rel = _safe_relpath(item["path"])
                full = os.path.join(self.workdir, rel)
                parent = os.path.dirname(full)
                if parent != self.workdir:
                    os.makedirs(parent, exist_ok=True)
                data = base64.b64decode(item.get("data", ""))
                mode = int(item.get("mode", 0o644)) & 0o777
                fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                finally:
                    os.close(fd)
        return {"type": "ok"}

    def on_stage(self, message: dict) -> dict:
        argv = list(message["argv"])
        if not argv:
            raise ValueError("empty argv")
        result = supervisor.run_stage(
            argv,
            env=self.env,
            cwd=self.workdir,
            stdin=base64.b64decode(message.get("stdin", "")),
            limits=message["limits"],
            uid=self.uid,
            gid=self.gid,
        )
        result["stdout"] = base64.b64encode(result["stdout"]).decode()
        result["stderr"] = base64.b64encode(result["stderr"]).decode()
        result["output"] = base64.b64encode(result["output"]).decode()
        result["type"] = "stage_result"
        return result

    def on_archive(self, message: dict) -> dict:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
            for name in sorted(os.listdir(self.workdir)):
                tar.add(os.path.join(self.workdir, name), arcname=name)
                if buf.tell() > MAX_ARCHIVE:
                    raise ValueError(f"work dir exceeds {MAX_ARCHIVE} bytes")
        return {"type": "archive", "data": base64.b64encode(buf.getvalue()).decode()}

    def on_unpack(self, message: dict) -> dict:
        data = base64.b64decode(message["data"])
        with _as_user(self.uid, self.gid), tarfile.open(fileobj=io.BytesIO(data)) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(self.workdir, filter="data")
            else:  # Python without PEP 706: we run as the program's uid anyway
                tar.extractall(self.workdir)
        return {"type": "ok"}


class _as_user:
    """Temporarily take the program's uid/gid as effective ids (file writes)."""

    def __init__(self, uid: int, gid: int) -> None:
        self.uid, self.gid = uid, gid

    def __enter__(self) -> None:
        os.setresgid(-1, self.gid, -1)
        os.setresuid(-1, self.uid, -1)

    def __exit__(self, *exc: object) -> None:
        os.setresuid(-1, 0, -1)
        os.setresgid(-1, 0, -1)


def main() -> None:
    # Keep the channel on private descriptors; 0 and 1 become /dev/null.
    rfd = os.dup(0)
    wfd = os.dup(1)
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    os.set_inheritable(rfd, False)
    os.set_inheritable(wfd, False)
    _prctl(PR_SET_DUMPABLE, 0)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    try:
        Agent(rfd, wfd).serve()
    except protocol.ProtocolError as exc:
        print(f"tvm-agent: {exc}", file=sys.stderr)
        sys.exit(2)
    except BrokenPipeError:
        pass
