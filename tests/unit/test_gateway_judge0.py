"""The Judge0 CE API of the gateway over a fake worker: statuses, encodings, async,
batch, fields, validation and the static endpoints."""

from __future__ import annotations

import base64
import io
import random
import re
import shlex
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.gateway_support import gateway_client, gateway_settings, wait_done
from tvm.compat import judge0
from tvm.compat.judge0 import SHELL_WORDS_PATTERN, Judge0Submission
from tvm.compat.judge0_status import DESCRIPTIONS, Status

PY, C = 71, 50


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with gateway_client(gateway_settings(tmp_path, judge0_enable_delete=True)) as c:
        yield c


def run(client: TestClient, source: str, language_id: int = PY, **fields: Any) -> dict[str, Any]:
    body = {"source_code": source, "language_id": language_id, **fields}
    reply = client.post("/submissions", params={"wait": "true", "fields": "*"}, json=body)
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


@pytest.mark.parametrize(
    ("source", "fields", "status", "signal"),
    [
        ("out hello", {}, 3, None),
        ("out hello", {"expected_output": "hello"}, 3, None),
        ("out hello  \n\n", {"expected_output": "hello\n\n"}, 3, None),
        ("out hello", {"expected_output": "bye"}, 4, None),
        ("timeout", {}, 5, 9),
        ("cpu 2500", {"cpu_time_limit": 2}, 5, None),
        ("signal SIGSEGV", {}, 7, 11),
        ("signal SIGXFSZ", {}, 8, 25),
        ("flood", {}, 8, 25),
        ("signal SIGFPE", {}, 9, 8),
        ("signal SIGABRT", {}, 10, 6),
        ("exit 3", {}, 11, None),
        ("signal SIGKILL", {}, 12, 9),
        ("oom", {}, 12, 9),
    ],
)
def test_statuses(
    client: TestClient, source: str, fields: dict[str, Any], status: int, signal: int | None
) -> None:
    body = run(client, source, **fields)
    assert body["status"] == {"id": status, "description": DESCRIPTIONS[Status(status)]}
    assert body["status_id"] == status
    assert body["exit_signal"] == signal
    if status == 11:
        assert body["exit_code"] == 3 and body["message"] == "Exited with error status 3"


def test_compilation_error(client: TestClient) -> None:
    body = run(client, "compile_error", C)
    assert body["status"]["id"] == 6
    assert "error" in body["compile_output"]
    assert body["stdout"] is None and body["time"] is None and body["exit_code"] is None


def test_accepted_shape(client: TestClient) -> None:
    reply = client.post("/submissions?wait=true", json={"source_code": "out hi", "language_id": 71})
    body = reply.json()
    assert set(body) == {"token", "time", "memory", "stdout", "stderr", "compile_output",
                         "message", "status"}  # fmt: skip
    assert body["stdout"] == "hi\n" and body["stderr"] is None and body["time"] == "0.001"
    assert isinstance(body["memory"], int)


def test_stdin_args_and_redirect(client: TestClient) -> None:
    body = run(client, "stdin\nargs\nerr oops", stdin="in\n",
               command_line_arguments="a 'b c'", redirect_stderr_to_stdout=True)  # fmt: skip
    assert body["stdout"] == "in\na b c\noops\n" and body["stderr"] is None


def test_base64_round_trip(client: TestClient) -> None:
    source = base64.b64encode(b"hex fffe00\nstdin").decode()
    stdin = base64.b64encode(b"\xc3\xa9t\xc3\xa9").decode()
    body = {"source_code": source, "language_id": PY, "stdin": stdin}
    reply = client.post("/submissions?wait=true&base64_encoded=true", json=body)
    assert reply.status_code == 201
    assert base64.b64decode(reply.json()["stdout"]) == b"\xff\xfe\x00" + "été".encode()


@pytest.mark.parametrize(
    ("text", "data"),
    [
        ("aGk=", b"hi"),
        ("aGk", b"hi"),  # a short last group still gives its bytes
        ("a G\nk=", b"hi"),  # what is not in the alphabet is skipped
        ("aGk=aGk=", b"hi"),  # the first = ends the data
        ("aGkx!", b"hi1"),
        ("a", b""),  # one character holds no whole byte
        ("!!", b""),
    ],
)
def test_base64_is_decoded_as_ruby_does_never_refused(text: str, data: bytes) -> None:
    assert judge0.decode64(text) == data


def test_base64_source_that_is_not_base64_runs_what_it_decodes_to(client: TestClient) -> None:
    # Judge0 (Ruby's decode64) never refuses one: "out x!" is the base64 of other bytes.
    reply = client.post(
        "/submissions?wait=true&base64_encoded=true",
        json={"source_code": base64.b64encode(b"out ok").decode() + "!", "language_id": PY},
    )
    assert reply.status_code == 201, reply.text
    assert base64.b64decode(reply.json()["stdout"]) == b"ok\n"


def test_non_utf8_output_needs_base64(client: TestClient) -> None:
    reply = client.post("/submissions?wait=true", json={"source_code": "hex ff", "language_id": PY})
    assert reply.status_code == 201
    body = reply.json()
    assert body["error"] == judge0.NOT_UTF8 and body["token"]
    shown = client.get(f"/submissions/{body['token']}")
    assert shown.status_code == 400 and shown.json() == {"error": judge0.NOT_UTF8}
    encoded = client.get(f"/submissions/{body['token']}?base64_encoded=true")
    assert base64.b64decode(encoded.json()["stdout"]) == b"\xff"


def test_async_submission(client: TestClient) -> None:
    reply = client.post("/submissions", json={"source_code": "out later", "language_id": PY})
    assert reply.status_code == 201 and set(reply.json()) == {"token"}
    done = wait_done(client, reply.json()["token"])
    assert done["status"]["id"] == 3 and done["stdout"] == "later\n"
    assert done["finished_at"] and done["language"] == {"id": 71, "name": "Python (3.11.2)"}


def test_batch(client: TestClient) -> None:
    subs = [{"source_code": f"out {i}", "language_id": PY} for i in range(3)]
    subs.append({"source_code": "x", "language_id": 999999})
    reply = client.post("/submissions/batch", json={"submissions": subs})
    assert reply.status_code == 201
    answers = reply.json()
    assert answers[3] == {"language_id": ["language with id 999999 doesn't exist"]}
    tokens = [a["token"] for a in answers[:3]]
    for token in tokens:
        wait_done(client, token)
    got = client.get("/submissions/batch", params={"tokens": ",".join([*tokens, "nope"]),
                                                   "fields": "stdout,status_id"})  # fmt: skip
    assert got.status_code == 200
    assert got.json()["submissions"] == [
        {"stdout": "0\n", "status_id": 3}, {"stdout": "1\n", "status_id": 3},
        {"stdout": "2\n", "status_id": 3}, None,
    ]  # fmt: skip
    # Ruby's split: an empty piece is an unknown token, trailing ones are dropped
    odd = client.get("/submissions/batch", params={"tokens": f" ,{tokens[0]},, ",
                                                   "fields": "stdout"})  # fmt: skip
    assert odd.json() == {"submissions": [None, {"stdout": "0\n"}]}
    for tokens_param, words in ((",, ", "at least one"), (",".join("t" * 21), "less than or")):
        refused = client.get("/submissions/batch", params={"tokens": tokens_param})
        assert refused.status_code == 400 and words in refused.json()["error"]


def test_batch_limits(client: TestClient) -> None:
    too_many = [{"source_code": "out", "language_id": PY}] * 21
    reply = client.post("/submissions/batch", json={"submissions": too_many})
    assert reply.status_code == 400 and "less than or equal to 20" in reply.json()["error"]
    empty = {"error": "there should be at least one submission in a batch"}
    for body in ({"submissions": []}, {}, {"submissions": None}):
        reply = client.post("/submissions/batch", json=body)
        assert (reply.status_code, reply.json()) == (400, empty)
    not_a_list = client.post("/submissions/batch", json={"submissions": "abc"})
    assert not_a_list.status_code == 422 and list(not_a_list.json()) == ["submissions"]
    none_valid = client.post("/submissions/batch", json={"submissions": [{"language_id": 71}]})
    assert none_valid.status_code == 422


def test_fields(client: TestClient) -> None:
    token = run(client, "out x")["token"]
    everything = client.get(f"/submissions/{token}?fields=*").json()
    assert {"cpu_time_limit", "wall_time", "exit_code", "source_code"} <= set(everything)
    assert everything["cpu_time_limit"] == "5.0" and everything["memory_limit"] == 128000
    bad = client.get(f"/submissions/{token}?fields=stdout,nope")
    assert bad.status_code == 400 and bad.json() == {"error": "invalid fields: [nope]"}
    assert client.get("/submissions/not-a-token").status_code == 404


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"language_id": PY}, "source_code", "can't be blank"),
        ({"source_code": "x"}, "language_id", "can't be blank"),
        ({"source_code": "x", "language_id": 4242}, "language_id", "doesn't exist"),
        # Judge0 CE 1.13.1's bounds, with Rails' messages
        ({"source_code": "x", "language_id": PY, "cpu_time_limit": 16},
         "cpu_time_limit", "must be less than or equal to 15.0"),
        ({"source_code": "x", "language_id": PY, "cpu_time_limit": -0.5},
         "cpu_time_limit", "must be greater than or equal to 0"),
        ({"source_code": "x", "language_id": PY, "wall_time_limit": 0.5},
         "wall_time_limit", "must be greater than or equal to 1"),
        ({"source_code": "x", "language_id": PY, "memory_limit": 2047},
         "memory_limit", "must be greater than or equal to 2048"),
        ({"source_code": "x", "language_id": PY, "memory_limit": 512001},
         "memory_limit", "must be less than or equal to 512000"),
        ({"source_code": "x", "language_id": PY, "number_of_runs": 21},
         "number_of_runs", "must be less than or equal to 20"),
        ({"source_code": "x", "language_id": PY, "max_processes_and_or_threads": 0},
         "max_processes_and_or_threads", "must be greater than 0"),
        ({"source_code": "x", "language_id": PY, "number_of_runs": 2.5},
         "number_of_runs", "must be an integer"),
        # numeric strings as Rails reads them: in range or out, or not a number
        ({"source_code": "x", "language_id": PY, "cpu_time_limit": "16"},
         "cpu_time_limit", "must be less than or equal to 15.0"),
        ({"source_code": "x", "language_id": PY, "cpu_time_limit": "15.000001"},
         "cpu_time_limit", "must be less than or equal to 15.0"),
        ({"source_code": "x", "language_id": PY, "memory_limit": "-1"},
         "memory_limit", "must be greater than or equal to 2048"),
        ({"source_code": "x", "language_id": PY, "stack_limit": "5.5"},
         "stack_limit", "must be an integer"),
        ({"source_code": "x", "language_id": PY, "cpu_time_limit": "abc"},
         "cpu_time_limit", "is not a number"),
        ({"source_code": "x", "language_id": PY, "cpu_time_limit": "0x1A"},
         "cpu_time_limit", "is not a number"),
        ({"source_code": "x", "language_id": PY, "cpu_time_limit": True},
         "cpu_time_limit", "is not a number"),
        ({"source_code": "x", "language_id": PY, "number_of_runs": True},
         "number_of_runs", "is not a number"),
        ({"source_code": "x", "language_id": "py"}, "language_id", "is not a number"),
        ({"source_code": "x", "language_id": "071"}, "language_id", "doesn't exist"),
        ({"source_code": "x", "language_id": PY, "compiler_options": "x" * 513},
         "compiler_options", "512"),
        # Judge0: options only for a language it compiles; a project has no source
        ({"source_code": "x", "language_id": PY, "compiler_options": "-O"},
         "compiler_options", "setting compiler options is only allowed for compiled languages"),
        ({"source_code": "x", "language_id": 89, "additional_files": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="},
         "source_code", "must be blank"),
        ({"source_code": "x", "language_id": PY, "additional_files": "0"},
         "additional_files", "is not valid base64"),
        ({"source_code": "x", "language_id": PY, "additional_files": "bm90!IGEgemlw"},
         "additional_files", "is not valid base64"),
    ],
)  # fmt: skip
def test_validation(client: TestClient, body: dict[str, Any], field: str, words: str) -> None:
    reply = client.post("/submissions", json=body)
    assert reply.status_code == 422, reply.text
    assert words in reply.json()[field][0]


@pytest.mark.parametrize(
    ("body", "b64", "field"),
    [({"source_code": " \n\t\v\f\r", "language_id": PY}, False, "source_code"),
     ({"source_code": "IA0K", "language_id": PY}, True, "source_code"),  # " \r\n"
     ({"source_code": "====", "language_id": PY}, True, "source_code"),
     ({"additional_files": "IA==", "language_id": 89}, False, "additional_files"),  # " "
     ({"additional_files": "CQkJ\nCQ==", "language_id": 89}, False, "additional_files")],
)  # fmt: skip
def test_blank_once_decoded_is_judge0s_cant_be_blank(
    client: TestClient, body: dict[str, Any], b64: bool, field: str
) -> None:
    params = {"base64_encoded": "true"} if b64 else {}
    reply = client.post("/submissions", params=params, json=body)
    assert reply.status_code == 422, reply.text
    assert reply.json() == {field: ["can't be blank"]}


def test_the_schema_says_what_is_blank() -> None:
    project = Judge0Submission.model_json_schema()["allOf"][0]
    assert not re.search(project["else"]["properties"]["source_code"]["pattern"], " \n\t")
    archive = project["then"]["properties"]["additional_files"]
    assert re.match(archive["not"]["pattern"], "CQkJ\nCQ==")  # blank: refused
    assert not re.match(archive["not"]["pattern"], base64.b64encode(b"PK").decode())


def test_a_batch_whose_every_submission_is_blank_is_a_422_listing_each(
    client: TestClient,
) -> None:
    # Judge0's batch_create: 201 when one submission was saved, else 422; either way
    # one answer per submission, in order: its token or its errors.
    blanks = [
        {"language_id": PY, "source_code": " "},
        {"language_id": 89, "additional_files": "IA=="},
    ]
    reply = client.post("/submissions/batch", json={"submissions": blanks})
    assert reply.status_code == 422, reply.text
    assert reply.json() == [{"source_code": ["can't be blank"]},
                            {"additional_files": ["can't be blank"]}]  # fmt: skip


def test_a_batch_answers_each_bad_submission_with_its_422_body(client: TestClient) -> None:
    reply = client.post("/submissions/batch", json={"submissions": [
        {"language_id": 89, "additional_files": "0"}, {"language_id": PY, "source_code": None},
        {"language_id": PY, "source_code": "print(1)"}]})  # fmt: skip
    assert reply.status_code == 201, reply.text
    first, second, third = reply.json()
    assert first == {"additional_files": ["is not valid base64"]}
    assert second == {"source_code": ["can't be blank"]} and "token" in third


def test_number_of_runs_averages(client: TestClient) -> None:
    body = run(client, "out x", number_of_runs=3)
    assert body["status"]["id"] == 3 and body["number_of_runs"] == 3


def test_additional_files_and_compiler_options(client: TestClient) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("data.txt", "payload")
        zf.writestr("main.c", "must not overwrite the source")
    archive = base64.b64encode(buf.getvalue()).decode()
    reply = client.post("/submissions", json={"source_code": "out ok", "language_id": C,
                                              "additional_files": archive,
                                              "compiler_options": "-O0 -DX=1"})  # fmt: skip
    token = reply.json()["token"]
    wait_done(client, token)
    gw = client.app.state.gateway  # type: ignore[attr-defined]
    row = client.portal.call(gw.store.get, token)  # type: ignore[union-attr]
    names = [f.get("name") for f in row["native"]["files"]]
    assert names == [None, "data.txt"]
    assert row["native"]["compiler_options"] == "-O0 -DX=1"


def test_delete(client: TestClient) -> None:
    token = run(client, "out bye")["token"]
    deleted = client.delete(f"/submissions/{token}?fields=stdout")
    assert deleted.status_code == 200 and deleted.json() == {"stdout": "YnllCg==\n"}
    assert client.get(f"/submissions/{token}").status_code == 404


def test_delete_is_off_by_default_as_in_judge0(tmp_path: Path) -> None:
    with gateway_client(gateway_settings(tmp_path)) as off:
        assert off.get("/config_info").json()["enable_submission_delete"] is False
        token = run(off, "out bye")["token"]
        refused = off.delete(f"/submissions/{token}")
        assert refused.status_code == 400 and refused.json() == {"error": "delete not allowed"}
        assert off.get(f"/submissions/{token}").status_code == 200


def test_static_endpoints(client: TestClient) -> None:
    statuses = client.get("/statuses").json()
    assert [s["id"] for s in statuses] == list(range(1, 15))
    assert statuses[10] == {"id": 11, "description": "Runtime Error (NZEC)"}
    languages = {row["id"]: row["name"] for row in client.get("/languages").json()}
    for wanted in (71, 63, 50, 54, 46):
        assert wanted in languages
    assert languages[71] == "Python (3.11.2)" and languages[50].startswith("C (GCC ")
    detail = client.get("/languages/54").json()
    assert detail["source_file"] == "main.cpp" and detail["compile_cmd"]
    assert client.get("/languages/4242").status_code == 404
    config = client.get("/config_info").json()
    assert config["cpu_time_limit"] == 5 and config["max_cpu_time_limit"] == 15
    assert config["max_submission_batch_size"] == 20
    assert client.get("/about").json()["version"]


def test_the_schema_says_which_arguments_can_be_split() -> None:
    # The 422 "cannot be split" and the schema's pattern agree on every string, so a
    # schema-valid command_line_arguments is never refused.
    field = Judge0Submission.model_json_schema()["properties"]["command_line_arguments"]
    assert field["pattern"] == SHELL_WORDS_PATTERN
    rng = random.Random(7)
    alphabet = ["'", '"', "\\", "a", " ", "\n", "#", "$", "é", "\x00"]
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 9)))
        try:
            splits = "\x00" not in "".join(shlex.split(text))
        except ValueError:
            splits = False
        assert splits == bool(re.match(SHELL_WORDS_PATTERN, text)), repr(text)


def test_arguments_that_cannot_be_split_are_a_422_naming_the_field(client: TestClient) -> None:
    body = {"source_code": "print(1)", "language_id": PY, "command_line_arguments": "'"}
    reply = client.post("/submissions", json=body)
    assert reply.status_code == 422
    assert list(reply.json()) == ["command_line_arguments"]


@pytest.mark.parametrize("options", ["'", "-O2\x00", "x\\"])
def test_compiler_options_that_cannot_be_split_are_a_422_for_every_language(
    client: TestClient, options: str
) -> None:
    field = Judge0Submission.model_json_schema()["properties"]["compiler_options"]
    assert not re.match(field["pattern"], options)
    body = {"source_code": "print(1)", "language_id": PY, "compiler_options": options}
    reply = client.post("/submissions", json=body)
    assert reply.status_code == 422 and list(reply.json()) == ["compiler_options"]


def test_numbers_as_strings_are_taken_as_rails_takes_them(client: TestClient) -> None:
    """Front ends send their form fields: ``"3.0"``, ``"71"``; an empty one is no value."""
    body = run(client, "out hi", language_id=str(PY), cpu_time_limit="2.5",  # type: ignore[arg-type]
               cpu_extra_time=" 0.5 ", memory_limit="65536", number_of_runs="2",
               max_file_size="", stack_limit="+0064000")  # fmt: skip
    assert body["status"]["id"] == 3 and body["language_id"] == PY
    assert body["cpu_time_limit"] == "2.5" and body["cpu_extra_time"] == "0.5"
    assert body["memory_limit"] == 65536 and body["number_of_runs"] == 2
    assert body["max_file_size"] == judge0.DEFAULTS["max_file_size"]
    assert body["stack_limit"] == 64000


def _native_limits(client: TestClient, token: str) -> dict[str, Any]:
    gw = client.app.state.gateway  # type: ignore[attr-defined]
    row = client.portal.call(gw.store.get, token)  # type: ignore[union-attr]
    return dict(row["native"]["limits"])


def test_a_zero_limit_is_isolates_no_limit(client: TestClient) -> None:
    """Judge0 allows 0 for ``cpu_time_limit`` and ``max_file_size``: isolate then sets
    no such limit. Here the wall-clock limit bounds the CPU time, and the language's
    maxima the files and outputs; 0 CPU time is never over the limit."""
    body = run(client, "cpu 2500", cpu_time_limit=0, cpu_extra_time=0, max_file_size=0)
    assert body["status"]["id"] == 3, body
    language = judge0.language_table(judge0.load_catalog())[PY]
    maximum = language.run_limits.maximum
    limits = _native_limits(client, body["token"])
    assert limits["cpu_time_ms"] == maximum.cpu_time_ms
    assert limits["output_bytes"] == maximum.output_bytes
    assert limits["file_size_kb"] == maximum.file_size_kb


def test_blank_compiler_options_are_no_options_for_any_language(client: TestClient) -> None:
    assert run(client, "out hi", compiler_options=" \t")["status"]["id"] == 3


def test_the_schema_says_which_languages_take_compiler_options_and_what_a_project_is() -> None:
    schema = Judge0Submission.model_json_schema()
    project, options = schema["allOf"]
    assert project["if"]["properties"]["language_id"]["enum"] == [89, "89"]
    assert project["then"]["properties"]["source_code"]["anyOf"][1]["pattern"] == (
        judge0.BLANK_TEXT_PATTERN
    )
    refused = options["if"]["properties"]["language_id"]["enum"]
    assert PY in refused and 89 in refused and C not in refused
    assert 88 not in refused  # Groovy: Judge0 compiles it; here its options are ignored
    for name, rule in judge0.RULES.items():
        number, text, _ = schema["properties"][name]["anyOf"]
        assert text["pattern"] == rule.pattern and number["maximum"] == rule.high
