"""Which Debian mirror image builds use: ``TVM_DEBIAN_MIRROR``, else the host's own
apt sources (deb822 or one-line), else Debian's default."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tvm.config.settings import Settings
from tvm.errors import ConfigError

DEBIAN_CODENAMES = frozenset(
    {"bullseye", "bookworm", "trixie", "forky", "duke", "sid"}
    | {"oldstable", "stable", "testing", "unstable"}
)


@dataclass(frozen=True)
class AptSource:
    """One ``deb`` entry of the host's apt configuration."""

    uri: str
    suites: tuple[str, ...]


def parse_deb822_sources(text: str) -> list[AptSource]:
    """Entries of a deb822 ``*.sources`` file (``Types:``, ``URIs:``, ``Suites:``)."""
    found = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0].isspace() and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        suites = tuple(fields.get("suites", "").split())
        found += [AptSource(uri, suites) for uri in fields.get("uris", "").split()]
    return found


def parse_one_line_sources(text: str) -> list[AptSource]:
    """Entries of a one-line ``sources.list`` (``deb [opts] URI SUITE COMPONENTS``)."""
    found = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 3 or words[0] != "deb":
            continue
        rest = words[1:]
        if rest[0].startswith("["):
            while rest and not rest[0].endswith("]"):
                rest = rest[1:]
            rest = rest[1:]
        if len(rest) >= 2:
            found.append(AptSource(rest[0], (rest[1],)))
    return found


def pick_debian_mirror(sources: Iterable[AptSource]) -> str | None:
    """The main Debian archive among ``sources``: not -security, a Debian suite."""
    best, best_score = None, 0
    for source in sources:
        if "security" in source.uri or all(s.endswith("-security") for s in source.suites):
            continue
        score = 0
        if source.uri.rstrip("/").endswith("/debian"):
            score += 2
        if any(s.split("-")[0] in DEBIAN_CODENAMES for s in source.suites):
            score += 1
        if score > best_score:
            best, best_score = source.uri.rstrip("/"), score
    return best


def host_apt_sources(apt_dir: Path = Path("/etc/apt")) -> list[AptSource]:
    """Every ``deb`` entry configured on this host, in apt's reading order."""
    sources: list[AptSource] = []
    files = [apt_dir / "sources.list"]
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        parse = parse_deb822_sources if path.suffix == ".sources" else parse_one_line_sources
        sources += parse(text)
    return sources


def debian_mirror(settings: Settings, apt_dir: Path = Path("/etc/apt")) -> str:
    """``TVM_DEBIAN_MIRROR`` if set, else the Debian archive the host's apt uses."""
    if settings.debian_mirror.strip():
        return settings.debian_mirror.strip().rstrip("/")
    mirror = pick_debian_mirror(host_apt_sources(apt_dir))
    if mirror is None:
        raise ConfigError(
            f"no Debian archive found in {apt_dir}/sources.list or {apt_dir}/sources.list.d/; "
            "set TVM_DEBIAN_MIRROR (or debian_mirror in config.toml) to a Debian mirror URL"
        )
    return mirror
