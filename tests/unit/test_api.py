from __future__ import annotations

import base64

import pytest

from tvm.api import CodeExecutionRequest, build_job
from tvm.config.settings import Settings
from tvm.errors import InvalidRequest, UnknownLanguage


@pytest.fixture
def settings() -> Settings:
    return Settings(max_files=3, max_file_bytes=100, max_stdin_bytes=50, max_args=2, max_tests=2)


def req(**kw: object) -> CodeExecutionRequest:
    kw.setdefault("language", "python")
    kw.setdefault("code", "print(1)")
    return CodeExecutionRequest(**kw)  # type: ignore[arg-type]


def test_defaults_come_from_the_catalog(settings: Settings) -> None:
    job = build_job(req(), settings)
    assert job.files == [("main.py", b"print(1)", 0o644)]
    assert job.run_limits == job.language.run_limits.default
    assert job.compile_limits == job.language.compile_limits.default
    assert len(job.cases) == 1 and not job.batch


def test_limits_above_the_maximum_name_the_field_and_range(settings: Settings) -> None:
    with pytest.raises(InvalidRequest) as err:
        build_job(req(limits={"memory_mb": 10**6}), settings)
    assert err.value.field == "limits.memory_mb"
    assert "between 1 and" in err.value.problem
    with pytest.raises(InvalidRequest, match="compile_limits.timeout_ms"):
        build_job(req(language="c", compile_limits={"timeout_ms": 0}), settings)


@pytest.mark.parametrize(
    ("name", "problem"),
    [("/etc/passwd", "relative"), ("../x", "'..'"), ("a/../../b", "'..'"), ("a\x00b", "NUL"),
     ("x" * 300, "1 to 255"), ("a//b", "empty")],
)  # fmt: skip
def test_bad_file_names(settings: Settings, name: str, problem: str) -> None:
    with pytest.raises(InvalidRequest, match=problem):
        build_job(req(code=None, files=[{"name": name, "content": "x"}]), settings)


def test_files_are_decoded_and_capped(settings: Settings) -> None:
    content = base64.b64encode(b"\x00\x01binary").decode()
    job = build_job(
        req(code=None, files=[{"name": "a.bin", "content": content, "encoding": "base64"}]),
        settings,
    )
    assert job.files[0][1] == b"\x00\x01binary"
    with pytest.raises(InvalidRequest, match="files\\[0\\].content: is not valid base64"):
        build_job(req(code=None, files=[{"content": "!!!", "encoding": "base64"}]), settings)
    with pytest.raises(InvalidRequest, match="at most 100 bytes"):
        build_job(req(code="x" * 101), settings)
    with pytest.raises(InvalidRequest, match="at most 3 files"):
        build_job(
            req(code=None, files=[{"name": f"f{i}", "content": ""} for i in range(4)]), settings
        )
    with pytest.raises(InvalidRequest, match="duplicate"):
        build_job(
            req(code=None, files=[{"name": "a", "content": ""}, {"name": "a", "content": ""}]),
            settings,
        )
    with pytest.raises(InvalidRequest, match="duplicate"):  # `code` is the main file
        build_job(req(code="x", files=[{"name": "main.py", "content": "y"}]), settings)


def test_code_with_files_comes_first_and_neither_is_an_empty_program(settings: Settings) -> None:
    job = build_job(req(code="main", files=[{"content": "other"}]), settings)
    assert [(name, data) for name, data, _ in job.files] == [
        ("main.py", b"main"),
        ("file1", b"other"),
    ]
    job = build_job(req(code=None), settings)
    assert [(name, data) for name, data, _ in job.files] == [("main.py", b"")]
    with pytest.raises(InvalidRequest, match="files\\[0\\].content: is not valid hex"):
        build_job(req(code="x", files=[{"content": "a b", "encoding": "hex"}]), settings)


def test_stdin_args_and_tests_are_capped(settings: Settings) -> None:
    with pytest.raises(InvalidRequest, match="stdin"):
        build_job(req(stdin="x" * 51), settings)
    with pytest.raises(InvalidRequest, match="args"):
        build_job(req(args=["a", "b", "c"]), settings)
    with pytest.raises(InvalidRequest, match="tests"):
        build_job(req(tests=[{"stdin": ""}] * 3), settings)
    job = build_job(
        req(args=["x"], tests=[{"stdin": "1"}, {"stdin": "2", "args": ["y"]}]), settings
    )
    assert job.batch and [c.args for c in job.cases] == [["x"], ["y"]]


def test_unknown_language(settings: Settings) -> None:
    with pytest.raises(UnknownLanguage):
        build_job(req(language="nope"), settings)
    with pytest.raises(UnknownLanguage, match="python"):
        build_job(req(language="python", version="2"), settings)
