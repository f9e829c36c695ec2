"""Judge0 routes over a fake worker: who may see which submission, the admin-only
routes, encodable text in every field, and the informational endpoints."""

from __future__ import annotations

import base64
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.gateway_support import gateway_client, gateway_settings
from tvm.pyroshell.auth import hash_secret

ALICE, BOB, ROOT = "tvm_alice000", "tvm_bob00000", "tvm_root0000"
PY = 71


def add_key(gw: TestClient, secret: str) -> None:
    values = {"name": secret, "prefix": secret[:8], "secret_hash": hash_secret(secret)}
    gw.portal.call(gw.app.state.gateway.store.add_key, values)  # type: ignore[union-attr,attr-defined]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = gateway_settings(tmp_path, admin_keys=[ROOT[:8]], judge0_enable_delete=True)
    with gateway_client(settings) as c:
        for secret in (ALICE, BOB, ROOT):
            add_key(c, secret)
        yield c


def key(secret: str) -> dict[str, str]:
    return {"X-Auth-Token": secret}


def submit(client: TestClient, secret: str | None, source: str = "out hi") -> str:
    reply = client.post(
        "/submissions?wait=true", json={"source_code": source, "language_id": PY},
        headers=key(secret) if secret else {},
    )  # fmt: skip
    assert reply.status_code == 201, reply.text
    return str(reply.json()["token"])


# -- owners -------------------------------------------------------------------------------
def test_another_keys_submission_is_not_found(client: TestClient) -> None:
    token = submit(client, ALICE)
    assert client.get(f"/submissions/{token}", headers=key(ALICE)).status_code == 200
    for headers in (key(BOB), {}):
        reply = client.get(f"/submissions/{token}", headers=headers)
        assert reply.status_code == 404 and reply.json() == {
            "error": f"submission {token} not found"
        }
    assert client.get(f"/submissions/{token}", headers=key(ROOT)).status_code == 200


def test_another_key_cannot_delete(client: TestClient) -> None:
    token = submit(client, ALICE)
    assert client.delete(f"/submissions/{token}", headers=key(BOB)).status_code == 404
    assert client.get(f"/submissions/{token}", headers=key(ALICE)).status_code == 200
    assert client.delete(f"/submissions/{token}", headers=key(ROOT)).status_code == 200
    assert client.get(f"/submissions/{token}", headers=key(ALICE)).status_code == 404


def test_batch_shows_only_the_keys_own(client: TestClient) -> None:
    mine, theirs, anonymous = submit(client, ALICE), submit(client, BOB), submit(client, None)
    reply = client.get(
        "/submissions/batch", params={"tokens": f"{mine},{theirs},{anonymous}"}, headers=key(ALICE)
    )
    found = reply.json()["submissions"]
    assert [s and s["token"] for s in found] == [mine, None, anonymous]


def test_anonymous_submissions_stay_token_only(client: TestClient) -> None:
    token = submit(client, None)
    for headers in ({}, key(ALICE), key(BOB)):
        assert client.get(f"/submissions/{token}", headers=headers).status_code == 200
    assert client.delete(f"/submissions/{token}", headers=key(BOB)).status_code == 200


# -- admin routes ---------------------------------------------------------------------------
def test_listing_submissions_needs_an_admin_key(client: TestClient) -> None:
    tokens = [submit(client, ALICE), submit(client, BOB), submit(client, None)]
    for headers in ({}, key(ALICE)):
        assert client.get("/submissions", headers=headers).status_code == 403
    first = client.get("/submissions", params={"per_page": 2}, headers=key(ROOT)).json()
    assert [s["token"] for s in first["submissions"]] == tokens[:2]
    assert first["meta"] == {"current_page": 1, "next_page": 2, "prev_page": None,
                             "total_pages": 2, "total_count": 3}  # fmt: skip
    second = client.get(
        "/submissions", params={"page": 2, "per_page": 2, "fields": "token,status_id"},
        headers=key(ROOT),
    ).json()  # fmt: skip
    assert second["submissions"] == [{"token": tokens[2], "status_id": 3}]
    assert second["meta"]["next_page"] is None and second["meta"]["prev_page"] == 1


@pytest.mark.parametrize(
    ("params", "error"),
    [({"page": "0"}, "invalid page: 0"), ({"page": "x"}, "invalid page: 0"),
     ({"per_page": "-1"}, "invalid per_page: -1"), ({"per_page": "101"}, "invalid per_page: 101")],
)  # fmt: skip
def test_bad_pages_are_400(client: TestClient, params: dict[str, str], error: str) -> None:
    reply = client.get("/submissions", params=params, headers=key(ROOT))
    assert reply.status_code == 400 and reply.json()["error"].startswith(error)


def test_authenticate_and_authorize(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, admin_keys=[ROOT[:8]], auth_required=True)
    with gateway_client(settings) as c:
        for secret in (ALICE, ROOT):
            add_key(c, secret)
        assert c.post("/authenticate").status_code == 401
        assert c.post("/authenticate", headers=key("tvm_unknown0")).status_code == 401
        assert c.post("/authenticate", headers=key(ALICE)).status_code == 200
        assert c.post("/authorize", headers=key(ALICE)).status_code == 403
        assert c.post("/authorize", headers=key(ROOT)).status_code == 200


# -- surrogates -----------------------------------------------------------------------------
TEXT_FIELDS = ["source_code", "stdin", "expected_output", "compiler_options",
               "command_line_arguments", "callback_url", "additional_files"]  # fmt: skip


@pytest.mark.parametrize("field", TEXT_FIELDS)
@pytest.mark.parametrize("b64", ["false", "true"])
def test_a_lone_surrogate_is_a_422_naming_the_field(
    client: TestClient, field: str, b64: str
) -> None:
    body = {"source_code": "out x", "language_id": PY, field: "a\ud800b"}
    raw = _json_with_surrogate(body)
    reply = client.post(
        f"/submissions?wait=true&base64_encoded={b64}", content=raw,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert reply.status_code == 422, reply.text
    (problem,) = reply.json()[field]
    assert "surrogate" in problem


@pytest.mark.parametrize("field", TEXT_FIELDS)
def test_a_lone_surrogate_in_a_batch_names_the_field(client: TestClient, field: str) -> None:
    good = {"source_code": "out x", "language_id": PY}
    raw = _json_with_surrogate({"submissions": [good, {**good, field: "\ud800"}]})
    reply = client.post(
        "/submissions/batch", content=raw, headers={"Content-Type": "application/json"}
    )
    assert reply.status_code == 201, reply.text
    first, second = reply.json()
    assert "token" in first and field in second


def _json_with_surrogate(body: dict[str, Any]) -> bytes:
    import json

    return json.dumps(body).encode()  # json escapes the surrogate as \\ud800, as a client would


# -- additional files -----------------------------------------------------------------------
def _zip(entries: dict[str, bytes], links: dict[str, str] | None = None) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, target)
    return base64.b64encode(buf.getvalue()).decode()


@pytest.mark.parametrize(
    ("archive", "problem"),
    [
        (_zip({"/etc/x": b"1"}), "absolute paths are not allowed"),
        (_zip({"../x": b"1"}), "'..' is not allowed"),
        (_zip({"a/../../x": b"1"}), "'..' is not allowed"),
        (_zip({"a\\x": b"1"}), "backslashes"),
        (_zip({"ok": b"1"}, {"link": "/etc/passwd"}), "points outside the work dir"),
        (_zip({"ok": b"1"}, {"d/link": "../../x"}), "points outside the work dir"),
        (_zip({"ok": b"1"}, {"link": "missing"}), "not a file of the archive"),
        (_zip({f"f{i}": b"" for i in range(40)}), "more than"),
        (_zip({"big": b"\0" * (11 << 20)}), "extracts to more than"),
    ],
)
def test_unsafe_archives_are_422(client: TestClient, archive: str, problem: str) -> None:
    body = {"source_code": "out x", "language_id": PY, "additional_files": archive}
    reply = client.post("/submissions", json=body)
    assert reply.status_code == 422, reply.text
    (said,) = reply.json()["additional_files"]
    assert problem in said


def test_an_archive_lands_beside_the_source_and_the_source_wins(client: TestClient) -> None:
    archive = _zip({"./data/in.txt": b"x", "main.py": b"overwritten"}, {"alias.txt": "data/in.txt"})
    body = {"source_code": "out hi", "language_id": PY, "additional_files": archive}
    token = client.post("/submissions", json=body).json()["token"]
    row = client.portal.call(client.app.state.gateway.store.get, token)  # type: ignore[attr-defined,union-attr]
    files = {f.get("name"): base64.b64decode(f["content"]) for f in row["native"]["files"]}
    assert files == {None: b"out hi", "data/in.txt": b"x", "alias.txt": b"x"}


def _stored_files(client: TestClient, body: dict[str, Any]) -> dict[str | None, bytes]:
    reply = client.post("/submissions", json=body)
    assert reply.status_code == 201, reply.text
    row = client.portal.call(client.app.state.gateway.store.get, reply.json()["token"])  # type: ignore[attr-defined,union-attr]
    return {f.get("name"): base64.b64decode(f["content"]) for f in row["native"]["files"]}


def test_bytes_that_are_not_a_zip_unpack_to_nothing_as_under_judge0(client: TestClient) -> None:
    # Judge0 writes them out, its unzip fails (ignored), and the program runs alone.
    not_a_zip = base64.b64encode(b"not a zip").decode()
    body = {"source_code": "out x", "language_id": PY, "additional_files": not_a_zip}
    assert _stored_files(client, body) == {None: b"out x"}


def test_multi_file_needs_its_archive_and_its_run_script_is_looked_for_at_run_time(
    client: TestClient,
) -> None:
    reply = client.post("/submissions", json={"source_code": "", "language_id": 89})
    assert reply.status_code == 422 and "additional_files" in reply.json()
    # No run script: accepted, and a Runtime Error when it runs (bash run.sh), as Judge0.
    body = {"language_id": 89, "additional_files": _zip({"main.py": b"print(1)"})}
    assert _stored_files(client, body) == {"main.py": b"print(1)"}
    body = {"language_id": 89, "additional_files": _zip({"run": b"python3 main.py"})}
    assert client.post("/submissions", json=body).status_code == 201


# -- information ----------------------------------------------------------------------------
JUDGE0_CONFIG_KEYS = [
    "maintenance_mode", "enable_wait_result", "enable_compiler_options",
    "allowed_languages_for_compile_options", "enable_command_line_arguments",
    "enable_submission_delete", "enable_callbacks", "callbacks_max_tries", "callbacks_timeout",
    "enable_additional_files", "max_queue_size", "cpu_time_limit", "max_cpu_time_limit",
    "cpu_extra_time", "max_cpu_extra_time", "wall_time_limit", "max_wall_time_limit",
    "memory_limit", "max_memory_limit", "stack_limit", "max_stack_limit",
    "max_processes_and_or_threads", "max_max_processes_and_or_threads",
    "enable_per_process_and_thread_time_limit", "allow_enable_per_process_and_thread_time_limit",
    "enable_per_process_and_thread_memory_limit",
    "allow_enable_per_process_and_thread_memory_limit", "max_file_size", "max_max_file_size",
    "number_of_runs", "max_number_of_runs", "redirect_stderr_to_stdout", "max_extract_size",
    "enable_batched_submissions", "max_submission_batch_size", "submission_cache_duration",
    "use_docs_as_homepage", "allow_enable_network", "enable_network",
    "disable_implicit_base64_encoding",
]  # fmt: skip


def test_config_info_has_judge0s_keys_in_order(client: TestClient) -> None:
    config = client.get("/config_info").json()
    assert list(config) == JUDGE0_CONFIG_KEYS
    assert config["cpu_time_limit"] == 5.0 and config["max_memory_limit"] == 512000


def test_fields_star_is_judge0s(client: TestClient) -> None:
    token = submit(client, None)
    body = client.get(f"/submissions/{token}?fields=*").json()
    assert not {"started_at", "queued_at", "execution_host", "updated_at"} & set(body)
    assert {"source_code", "language_id", "language", "status", "status_id", "callback_url",
            "additional_files", "enable_network", "wall_time", "exit_code"} <= set(body)  # fmt: skip


def test_about_version_license_isolate(client: TestClient) -> None:
    about = client.get("/about").json()
    assert about["version"] == "1.13.1" and about["tvm_version"]
    version = client.get("/version")
    assert version.text == "1.13.1" and version.headers["content-type"].startswith("text/plain")
    assert "MIT" in client.get("/license").text
    assert "driver" in client.get("/isolate").text


def test_system_info_and_statistics(client: TestClient) -> None:
    info = client.get("/system_info").json()
    assert {"Mem", "Swap"} <= set(info)
    submit(client, None)
    submit(client, None, "exit 3")
    stats = client.get("/statistics", params={"invalidate_cache": "true"}).json()
    assert stats["submissions"]["total"] == 2 and stats["submissions"]["today"] == 2
    assert len(stats["submissions"]["last_30_days"]) == 31
    assert stats["languages"] == [{"language": {"id": PY, "name": "Python (3.11.2)"}, "count": 2}]
    assert {s["status"]["id"]: s["count"] for s in stats["statuses"]} == {3: 1, 11: 1}
    assert client.get("/statistics").json()["cached"] is True


def test_languages_all_and_one(client: TestClient) -> None:
    every = client.get("/languages/all").json()
    assert all(row["is_archived"] is False for row in every)
    names = {row["id"]: row["name"] for row in every}
    assert names[43] == "Plain Text" and names[44] == "Executable"
    assert names[89] == "Multi-file program" and names[52].startswith("C++ (GCC ")
    assert names[75].startswith("C (Clang ") and names[76].startswith("C++ (Clang ")
    multi = client.get("/languages/89").json()
    assert multi["source_file"] is None and multi["name"] == "Multi-file program"
    assert client.get("/languages/47").status_code == 404  # Basic: no runtime here
