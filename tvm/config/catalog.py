"""The language catalog: the one place a language is described.

The data lives in ``languages.toml`` beside this module. It has three parts:

* ``[limits.*]``: default and maximum limits per stage (compile, run), which a
  language entry may override;
* ``[images.NAME]``: root filesystem recipes (Debian suite + packages);
* ``[[language]]``: one entry per language *and* version: Piston name and
  aliases, image, source file name, compile command, run command, limits.

Adding a language is one ``[[language]]`` entry plus one test program in
``tests/programs/``.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import nodesemver

from tvm.errors import ConfigError, UnknownLanguage

CATALOG_PATH = Path(__file__).with_name("languages.toml")

# Bumped when the way images are built changes, so every image is rebuilt.
IMAGE_FORMAT = 1


@dataclass(frozen=True)
class StageLimits:
    """Limits of one stage (compile or run) of an execution."""

    timeout_ms: int  # wall clock
    cpu_time_ms: int
    memory_mb: int
    processes: int
    output_bytes: int  # per stream (stdout, stderr)
    file_size_kb: int  # largest file the program may write
    open_files: int

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def merged(self, overrides: Mapping[str, Any] | None) -> StageLimits:
        if not overrides:
            return self
        unknown = set(overrides) - set(self.names())
        if unknown:
            raise ConfigError(f"unknown limit(s) {sorted(unknown)}; known: {self.names()}")
        return replace(self, **{k: int(v) for k, v in overrides.items()})


@dataclass(frozen=True)
class LimitSpec:
    """Default and maximum limits of one stage."""

    default: StageLimits
    maximum: StageLimits


@dataclass(frozen=True)
class ImageRecipe:
    """How to build a root filesystem: a Debian suite and packages."""

    name: str
    suite: str
    packages: tuple[str, ...]
    pip: tuple[str, ...] = ()

    @property
    def digest(self) -> str:
        """Content hash of the recipe: a rebuild is skipped while it is unchanged."""
        recipe = {
            "format": IMAGE_FORMAT,
            "suite": self.suite,
            "packages": sorted(self.packages),
            "pip": sorted(self.pip),
        }
        blob = json.dumps(recipe, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class Language:
    """One language at one version."""

    name: str
    version: str
    display_name: str
    image: ImageRecipe
    source_file: str
    run: tuple[str, ...]
    compile: str | None = None
    aliases: tuple[str, ...] = ()
    runtime: str | None = None
    judge0_ids: tuple[int, ...] = ()  # Judge0 CE language ids; the first is the canonical one
    run_limits: LimitSpec = field(repr=False, default=None)  # type: ignore[assignment]
    compile_limits: LimitSpec = field(repr=False, default=None)  # type: ignore[assignment]

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def compiled(self) -> bool:
        return self.compile is not None

    @property
    def prestarted(self) -> bool:
        """Runs as ``python3 SOURCE``: the agent's own interpreter can run it
        in a forked child, without starting a second one (agent/pyrun.py)."""
        return tuple(self.run[:2]) in (("python3", "{source}"), ("/usr/bin/python3", "{source}"))

    def matches(self, name: str) -> bool:
        wanted = name.strip().lower()
        return wanted == self.name or wanted in self.aliases


class Catalog:
    """All languages, with lookup by name/alias and a semver selector."""

    def __init__(self, languages: Iterable[Language], images: Mapping[str, ImageRecipe]) -> None:
        self.languages = sorted(languages, key=lambda lang: (lang.name, _semver_key(lang.version)))
        self.images = dict(images)

    def __iter__(self) -> Iterator[Language]:
        return iter(self.languages)

    def __len__(self) -> int:
        return len(self.languages)

    def names(self) -> list[str]:
        return sorted({lang.name for lang in self.languages})

    def resolve(self, language: str, version: str | None = None) -> Language:
        """The newest entry whose name or alias is ``language`` and whose
        version satisfies ``version`` (a semver selector as Piston takes it:
        ``3.11.2``, ``3.11``, ``3``, ``*``, ``>=3.12``; ``None`` = newest)."""
        candidates = [lang for lang in self.languages if lang.matches(language)]
        if not candidates:
            raise UnknownLanguage(
                f"{language}-{version or '*'} runtime is unknown: language '{language}' is not "
                f"supported; supported: {', '.join(self.names())} (GET /api/v1/languages)"
            )
        selector = (version or "*").strip() or "*"
        matching = [lang for lang in candidates if _satisfies(lang.version, selector)]
        if not matching:
            have = ", ".join(lang.version for lang in candidates)
            raise UnknownLanguage(
                f"{language}-{selector} runtime is unknown; versions of {language}: {have}"
            )
        return matching[-1]

    def get(self, key: str) -> Language:
        name, _, version = key.partition("@")
        return self.resolve(name, version or None)


def _semver_key(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("-")[0].split("."):
        parts.append(int(piece) if piece.isdigit() else 0)
    return tuple(parts)


def _satisfies(version: str, selector: str) -> bool:
    if selector in ("*", "latest", "x"):
        return True
    if selector == version:
        return True
    try:
        return bool(nodesemver.satisfies(version, selector, loose=True))
    except (ValueError, TypeError):
        return False


def _limit_spec(raw: Mapping[str, Any], stage: str, entry: Mapping[str, Any]) -> LimitSpec:
    base_default = StageLimits(**raw[f"{stage}_default"])
    base_max = StageLimits(**raw[f"{stage}_max"])
    own = entry.get("limits", {}).get(stage, {})
    default = base_default.merged(own.get("default"))
    maximum = base_max.merged(own.get("max"))
    for name in StageLimits.names():
        if getattr(default, name) > getattr(maximum, name):
            raise ConfigError(f"{entry.get('name')}: {stage} default {name} exceeds its maximum")
    return LimitSpec(default=default, maximum=maximum)


def _int_tuple(value: int | list[int] | tuple[int, ...]) -> tuple[int, ...]:
    return (value,) if isinstance(value, int) else tuple(int(v) for v in value)


def parse_catalog(data: Mapping[str, Any]) -> Catalog:
    """Build a :class:`Catalog` from the TOML structure (see ``languages.toml``)."""
    try:
        images = {
            name: ImageRecipe(
                name=name,
                suite=spec["suite"],
                packages=tuple(spec.get("packages", ())),
                pip=tuple(spec.get("pip", ())),
            )
            for name, spec in data["images"].items()
        }
        languages = []
        seen: set[str] = set()
        for entry in data["language"]:
            image_name = entry["image"]
            if image_name not in images:
                raise ConfigError(f"{entry['name']}: unknown image '{image_name}'")
            lang = Language(
                name=entry["name"],
                version=entry["version"],
                display_name=entry.get("display_name", f"{entry['name']} {entry['version']}"),
                image=images[image_name],
                source_file=entry["source_file"],
                run=tuple(entry["run"]),
                compile=entry.get("compile"),
                aliases=tuple(a.lower() for a in entry.get("aliases", ())),
                runtime=entry.get("runtime"),
                judge0_ids=_int_tuple(entry.get("judge0_id", ())),
                run_limits=_limit_spec(data["limits"], "run", entry),
                compile_limits=_limit_spec(data["limits"], "compile", entry),
            )
            if lang.key in seen:
                raise ConfigError(f"duplicate catalog entry {lang.key}")
            seen.add(lang.key)
            languages.append(lang)
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"language catalog is malformed: missing or bad {exc}") from exc
    return Catalog(languages, images)


@lru_cache(maxsize=4)
def load_catalog(path: Path = CATALOG_PATH) -> Catalog:
    """Load and validate the catalog file (cached)."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read language catalog {path}: {exc}") from exc
    return parse_catalog(data)
