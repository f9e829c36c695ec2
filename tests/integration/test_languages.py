"""Every catalog entry runs its test program through the real service.

For each language and version (parametrized over the catalog), the program in
``tests/programs/<name>/`` (or ``tests/programs/<name>@<version>/`` when one
version needs its own) is sent to ``POST /api/v2/execute`` exactly as a Piston
client sends it, with stdin and args; it prints the sum of the numbers it read
from both, which must be right. Then the same program goes through the native
API with a list of test cases (compiled once; one case expects a wrong answer
and must get the ``wrong_answer`` verdict), and compiled languages must reject
``compile_error.*`` with a compile error.

A language whose image is not built is skipped, with the reason.

Only entries whose test passed are offered by ``GET /api/v2/runtimes``: the
passing entries and the digest of each entry as tested are recorded in
``tvm/config/verified.toml``. After changing the catalog, regenerate it with
``make verify-languages`` (``TVM_UPDATE_VERIFIED=1``); without that variable a
passing entry that is missing from the record, or recorded with another digest,
fails here, so a stale record cannot hide or offer a language unnoticed.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PROGRAMS
from tvm.config.catalog import VERIFIED_PATH, Language, load_catalog, load_verified
from tvm.config.settings import Settings
from tvm.pyrovm.images import ImageStore

pytestmark = [pytest.mark.namespace, pytest.mark.slow]

CATALOG = load_catalog()
UPDATING = os.environ.get("TVM_UPDATE_VERIFIED", "") not in ("", "0", "false")

# The default case: numbers on stdin (several per line) and in the arguments.
DEFAULT_CASE: dict[str, Any] = {
    "stdin": "1 2 3\n4 5\n",
    "args": ["10", "20"],
    "expected": "45",
    "batch": [
        {"stdin": "7\n", "args": ["-2"], "expected": "5"},
        {"stdin": "100 200\n", "args": [], "expected": "300"},
    ],
}

PASSED: dict[str, str] = {}


def program_dir(lang: Language) -> Path:
    """``tests/programs/<name>@<version>/`` if it exists, else ``tests/programs/<name>/``."""
    own = PROGRAMS / lang.key
    return own if own.is_dir() else PROGRAMS / lang.name


def _source(directory: Path, stem: str) -> Path | None:
    found = sorted(
        p for p in directory.glob("*") if p.is_file() and p.stem.lower() == stem and p.suffix
    )
    return found[0] if found else None


def main_program(lang: Language) -> Path | None:
    return _source(program_dir(lang), "main")


def compile_error_program(lang: Language) -> Path | None:
    return _source(program_dir(lang), "compile_error")


def case(lang: Language) -> dict[str, Any]:
    """The default case, overridden by the program dir's ``case.toml`` if any."""
    spec = dict(DEFAULT_CASE)
    extra = program_dir(lang) / "case.toml"
    if extra.is_file():
        spec.update(tomllib.loads(extra.read_text()))
    spec["batch"] = [
        {"stdin": c.get("stdin", ""), "args": c.get("args", []), "expected": c["expected"]}
        for c in spec["batch"]
    ]
    return spec


def _describe(body: Any) -> str:
    def short(stage: dict[str, Any] | None) -> str:
        if not stage:
            return "-"
        return (
            f"code={stage.get('code', stage.get('exit_code'))} "
            f"status={stage.get('status')} signal={stage.get('signal')}\n"
            f"  stdout: {stage.get('stdout', '')[-1500:]!r}\n"
            f"  stderr: {stage.get('stderr', '')[-1500:]!r}"
        )

    if not isinstance(body, dict):
        return repr(body)[:3000]
    return f"compile: {short(body.get('compile'))}\nrun: {short(body.get('run'))}"


def piston_execute(api: httpx.Client, lang: Language, content: str, stdin: str,
                   args: list[str]) -> dict[str, Any]:  # fmt: skip
    response = api.post(
        "/api/v2/execute",
        json={
            "language": lang.name,
            "version": lang.version,
            "files": [{"name": lang.source_file, "content": content}],
            "stdin": stdin,
            "args": args,
            # Wall-clock bounds at the catalog's maximum: this test is about what a
            # program prints, and a loaded CI host must not turn it into a timeout
            # (the limits have tests of their own). CPU-time limits stay the defaults.
            "compile_timeout": lang.compile_limits.maximum.timeout_ms,
            "run_timeout": lang.run_limits.maximum.timeout_ms,
        },
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["language"] == lang.name and body["version"] == lang.version, body
    return body


@pytest.fixture(scope="module", autouse=True)
def record_verified() -> Iterator[None]:
    """With TVM_UPDATE_VERIFIED=1: write the entries that passed (and their digests)."""
    yield
    if not UPDATING or not PASSED:
        return
    record = load_verified()
    keys = {lang.key for lang in CATALOG}
    record = {k: v for k, v in record.items() if k in keys}  # drop removed entries
    record.update(PASSED)
    lines = [
        "# Generated by `make verify-languages` (tests/integration/test_languages.py):",
        "# the catalog entries whose test program passed, and the digest of each entry",
        "# as tested. GET /api/v2/runtimes offers only these (tvm.config.catalog).",
        "",
        "[verified]",
        *(f'"{key}" = "{record[key]}"' for key in sorted(record)),
        "",
    ]
    VERIFIED_PATH.write_text("\n".join(lines))


@pytest.mark.parametrize("key", [lang.key for lang in CATALOG])
def test_language(key: str, api: httpx.Client, settings: Settings) -> None:
    lang = next(entry for entry in CATALOG if entry.key == key)
    if not ImageStore(settings).is_built(lang.image):
        pytest.skip(f"image '{lang.image.name}' is not built (tvm images build --image "
                    f"{lang.image.name})")  # fmt: skip
    program = main_program(lang)
    assert program is not None, f"no test program for {key} in {program_dir(lang)}"
    content = program.read_text()
    spec = case(lang)

    # 1. As a Piston client sends it: stdin and args.
    body = piston_execute(api, lang, content, spec["stdin"], spec["args"])
    if lang.compiled:
        assert body.get("compile", {}).get("code") == 0, f"compile failed:\n{_describe(body)}"
    run = body.get("run") or {}
    assert run.get("code") == 0 and run.get("status") is None, f"run failed:\n{_describe(body)}"
    assert run["stdout"].strip() == spec["expected"], f"wrong output:\n{_describe(body)}"

    # 2. The native API with test cases: compiled once, one fresh sandbox per case.
    cases = [
        {"stdin": c["stdin"], "args": c["args"], "expected_output": c["expected"] + "\n"}
        for c in spec["batch"]
    ]
    wrong = dict(cases[0], expected_output=cases[0]["expected_output"].strip() + "0\n")
    response = api.post(
        "/api/v1/execute",
        json={
            "language": lang.name,
            "version": lang.version,
            "files": [{"name": lang.source_file, "content": content}],
            "tests": [*cases, wrong],
            "limits": {"timeout_ms": lang.run_limits.maximum.timeout_ms},
            "compile_limits": {"timeout_ms": lang.compile_limits.maximum.timeout_ms},
        },
    )
    assert response.status_code == 200, response.text
    batch = response.json()
    results = batch.get("tests") or []
    verdicts = [r.get("verdict") for r in results]
    details = [f"{r.get('status')} {r.get('stdout')!r} {r.get('stderr', '')[-800:]!r}"
               for r in results]  # fmt: skip
    assert verdicts == ["accepted"] * len(cases) + ["wrong_answer"], (
        f"verdicts {verdicts}:\n" + "\n".join(details) + f"\ncompile: {batch.get('compile')}"
    )
    assert (batch.get("compile") is not None) == lang.compiled

    # 3. Compiled languages: a program that does not compile is a compile error.
    if lang.compiled:
        bad = compile_error_program(lang)
        assert bad is not None, f"compiled language {key} needs a compile_error.* program"
        body = piston_execute(api, lang, bad.read_text(), "", [])
        compile_stage = body.get("compile") or {}
        assert compile_stage.get("code") not in (0, None) or compile_stage.get("status"), (
            f"the compile error was not reported:\n{_describe(body)}"
        )
        # Piston answers a failed compile with a `run` that repeats it: nothing ran.
        assert body.get("run") == body["compile"], (
            f"a failed compile must not run:\n{_describe(body)}"
        )

    PASSED[key] = lang.digest
    if not UPDATING:
        recorded = load_verified().get(key)
        assert recorded == lang.digest, (
            f"{key} passes but tvm/config/verified.toml records "
            f"{'another version of the entry' if recorded else 'nothing'} for it, so "
            "/api/v2/runtimes does not offer it: run `make verify-languages` and commit the file"
        )
