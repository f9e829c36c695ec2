"""Judge0's ``additional_files``: a zip archive unpacked into the work dir.

The archive is untrusted input, so it is read, never extracted: every entry is
checked and becomes one file of the native request, and anything that could
land outside the work dir is refused with a 422 naming ``additional_files``:

* at most ``max_files`` files and ``max_bytes`` in total (the sizes the archive
  declares are checked before anything is inflated, and each read is capped);
* no absolute path, no drive letter or backslash, no ``..`` component;
* a symlink becomes a copy of the archive's file it names; one that points
  outside the archive (absolute, ``..`` past the top, or at nothing) is refused;
* no encrypted entry, no two entries with one name.

``./a.py`` and ``a.py`` are the same name. As under Judge0 (``unzip -n``), an
entry that has the name of the submission's source file is skipped: the source
wins. Bytes that are not a readable zip archive unpack to nothing, as Judge0's
``unzip`` (whose failure it ignores) leaves the work dir: the submission is
accepted and runs without them (a multi-file program then has no ``run`` script,
a Runtime Error as under Judge0).
"""

from __future__ import annotations

import io
import posixpath
import stat
import zipfile
import zlib
from dataclasses import dataclass

from tvm.errors import InvalidRequest

FIELD = "additional_files"
MAX_LINK_DEPTH = 8


@dataclass(frozen=True)
class Entry:
    name: str  # normalised, relative to the work dir
    info: zipfile.ZipInfo
    link: bool


def _refuse(problem: str) -> InvalidRequest:
    return InvalidRequest(FIELD, problem)


def safe_name(raw: str) -> str:
    """The entry's path relative to the work dir, or a 422 saying why it cannot be one."""
    if "\x00" in raw or "\\" in raw:
        raise _refuse(f"entry {raw!r}: names may not contain backslashes or NUL bytes")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise _refuse(f"entry {raw!r}: absolute paths are not allowed")
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise _refuse(f"entry {raw!r}: '..' is not allowed in a path")
    if not parts:
        raise _refuse(f"entry {raw!r}: the name is empty")
    return "/".join(parts)


def _entries(zf: zipfile.ZipFile, max_files: int, max_bytes: int) -> dict[str, Entry]:
    entries: dict[str, Entry] = {}
    total = 0
    for info in zf.infolist():
        if info.is_dir():
            continue
        name = safe_name(info.filename)
        if info.flag_bits & 0x1:
            raise _refuse(f"entry {name!r} is encrypted")
        if name in entries:
            raise _refuse(f"entry {name!r} appears twice")
        total += info.file_size
        if len(entries) + 1 > max_files:
            raise _refuse(f"has more than {max_files} files")
        if total > max_bytes:
            raise _refuse(f"extracts to more than {max_bytes // 1024} KB")
        mode = info.external_attr >> 16
        entries[name] = Entry(name, info, stat.S_ISLNK(mode))
    return entries


def _read(zf: zipfile.ZipFile, entry: Entry) -> bytes:
    with zf.open(entry.info) as handle:
        data = handle.read(entry.info.file_size + 1)
    if len(data) > entry.info.file_size:
        raise _refuse(f"entry {entry.name!r} is larger than it says")
    return data


def _resolve(zf: zipfile.ZipFile, entries: dict[str, Entry], entry: Entry) -> Entry:
    """The file a symlink leads to, inside the archive."""
    seen = entry
    for _ in range(MAX_LINK_DEPTH):
        if not seen.link:
            return seen
        target = _read(zf, seen).decode("utf-8", "replace")
        if target.startswith("/"):
            raise _refuse(f"symlink {entry.name!r} points outside the work dir ({target!r})")
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(seen.name), target))
        if joined == ".." or joined.startswith("../"):
            raise _refuse(f"symlink {entry.name!r} points outside the work dir ({target!r})")
        found = entries.get(joined)
        if found is None:
            raise _refuse(f"symlink {entry.name!r} points at {target!r}, not a file of the archive")
        seen = found
    raise _refuse(f"symlink {entry.name!r}: more than {MAX_LINK_DEPTH} links in a chain")


def unpack(
    archive: bytes, max_files: int, max_bytes: int, skip: str | None
) -> list[tuple[str, bytes]]:
    """The archive's files as (name, content), in archive order, without ``skip``;
    none if ``archive`` is not a readable zip."""
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as zf:
            entries = _entries(zf, max_files, max_bytes)
            files = []
            for entry in entries.values():
                if entry.name == skip:
                    continue
                files.append((entry.name, _read(zf, _resolve(zf, entries, entry))))
            return files
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        zlib.error,
        EOFError,
        ValueError,
        NotImplementedError,
    ):
        return []
