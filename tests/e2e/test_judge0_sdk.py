"""Judge0's official Python SDK (``judge0`` 0.0.8 from the package index, unchanged)
against a real ``tvm start``: its documented examples, every language alias, and
the verdicts a judge reports.

The README's examples run as they are written, each in its own interpreter,
with the SDK pointed at TVM the documented way (``JUDGE0_CE_ENDPOINT`` and
``JUDGE0_CE_AUTH_HEADERS``) or with ``judge0.Client(endpoint)``. Examples that
need Judge0 Extra CE's languages (the default ``PYTHON_FOR_ML``) or its
``post_execution_filesystem`` are not Judge0 CE's and are run with
``language=judge0.PYTHON`` instead (they say so below).
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Server, namespace_unavailable
from tests.integration.test_languages import case, main_program
from tvm.compat.judge0_languages import language_table
from tvm.config.catalog import load_catalog
from tvm.config.settings import Settings

judge0 = pytest.importorskip(
    "judge0", reason="the judge0 SDK is a dev extra: pip install -e .[dev]"
)

pytestmark = [pytest.mark.namespace, pytest.mark.slow]

CATALOG = load_catalog()
TABLE = language_table(CATALOG)
CE = judge0.data.LANGUAGE_TO_LANGUAGE_ID["1.13.1"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    settings = Settings()
    reason = namespace_unavailable(settings)
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("judge0-sdk")
    env = {
        "TVM_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/tvm.db",
        "TVM_OUTBOUND_ALLOW": '["127.0.0.1/32"]',  # the callback receiver below
        # Two at a time: on a small shared host, eight JVMs and compilers at once
        # run past their compile time limits.
        "TVM_DISPATCHER_CONCURRENCY": "2",
    }
    srv = Server(tmp, env=env)
    try:
        yield srv
    finally:
        srv.stop()
        print(f"--- server log ({srv.log}) ---\n{srv.log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def client(server: Server) -> Any:
    return judge0.Client(endpoint=server.url)


def needs(*keys: str) -> None:
    reason = namespace_unavailable(Settings(), [CATALOG.get(key) for key in keys])
    if reason:
        pytest.skip(reason)


def example(server: Server, code: str) -> str:
    """Run a README example unchanged in a fresh interpreter; its standard output."""
    env = dict(os.environ, JUDGE0_CE_ENDPOINT=server.url, JUDGE0_CE_AUTH_HEADERS="{}")
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"example failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


# -- the README's examples -----------------------------------------------------------------
def test_hello_world(server: Server) -> None:
    needs("python@3.11.2")
    out = example(
        server,
        """
        import judge0
        result = judge0.run(source_code="print('hello, world')", language=judge0.PYTHON)
        print(result.stdout)
    """,
    )
    assert out == "hello, world\n\n"


def test_running_c_and_the_custom_client(server: Server) -> None:
    needs("c@12.2.0")
    out = example(
        server,
        f"""
        import judge0

        client = judge0.Client("{server.url}")

        source_code = \"\"\"
        #include <stdio.h>

        int main() {{
            printf("hello, world\\\\n");
            return 0;
        }}
        \"\"\"

        result = judge0.run(client=client, source_code=source_code, language=judge0.C)
        print(result.stdout)
    """,
    )
    assert out == "hello, world\n\n"


def test_running_java(server: Server) -> None:
    needs("java@17.0.19")
    out = example(
        server,
        """
        import judge0

        source_code = \"\"\"
        public class Main {
            public static void main(String[] args) {
                System.out.println("hello, world");
            }
        }
        \"\"\"

        result = judge0.run(source_code=source_code, language=judge0.JAVA)
        print(result.stdout)
    """,
    )
    assert out == "hello, world\n\n"


def test_reading_from_standard_input(server: Server) -> None:
    needs("c@12.2.0")
    out = example(
        server,
        """
        import judge0

        source_code = \"\"\"
        #include <stdio.h>

        int main() {
            int a, b;
            scanf("%d %d", &a, &b);
            printf("%d\\\\n", a + b);

            char name[10];
            scanf("%s", name);
            printf("Hello, %s!\\\\n", name);

            return 0;
        }
        \"\"\"

        stdin = \"\"\"
        3 5
        Bob
        \"\"\"

        result = judge0.run(source_code=source_code, stdin=stdin, language=judge0.C)
        print(result.stdout)
    """,
    )
    assert out == "8\nHello, Bob!\n\n"


def test_test_cases(server: Server) -> None:
    """The README's example with ``language=judge0.PYTHON`` added: its default language
    (PYTHON_FOR_ML) is Judge0 Extra CE's, not Judge0 CE's."""
    needs("python@3.11.2")
    out = example(
        server,
        """
        import judge0

        results = judge0.run(
            source_code="print(f'Hello, {input()}!')",
            language=judge0.PYTHON,
            test_cases=[
                ("Bob", "Hello, Bob!"),
                {
                    "input": "Alice",
                    "expected_output": "Hello, Alice!"
                },
                ["Charlie", "Hello, Charlie!"],
            ],
        )

        for i, result in enumerate(results):
            print(f"--- Test Case #{i + 1} ---")
            print(result.stdout)
            print(result.status)
    """,
    )
    assert out == "".join(
        f"--- Test Case #{i} ---\nHello, {name}!\n\nAccepted\n"
        for i, name in enumerate(["Bob", "Alice", "Charlie"], 1)
    )


def test_test_cases_and_multiple_languages(server: Server) -> None:
    needs("python@3.11.2", "c@12.2.0")
    out = example(
        server,
        """
        import judge0

        submissions = [
            judge0.Submission(
                source_code="print(f'Hello, {input()}!')",
                language=judge0.PYTHON,
            ),
            judge0.Submission(
                source_code=\"\"\"
        #include <stdio.h>

        int main() {
            char name[10];
            scanf("%s", name);
            printf("Hello, %s!\\\\n", name);
            return 0;
        }
        \"\"\",
                language=judge0.C,
            ),
        ]

        test_cases=[
            ("Bob", "Hello, Bob!"),
            ("Alice", "Hello, Alice!"),
            ("Charlie", "Hello, Charlie!"),
        ]

        results = judge0.run(submissions=submissions, test_cases=test_cases)

        for i in range(len(submissions)):
            print(f"--- Submission #{i + 1} ---")

            for j in range(len(test_cases)):
                result = results[i * len(test_cases) + j]

                print(f"--- Test Case #{j + 1} ---")
                print(result.stdout)
                print(result.status)
    """,
    )
    names = ["Bob", "Alice", "Charlie"]
    one = "".join(
        f"--- Test Case #{j} ---\nHello, {n}!\n\nAccepted\n" for j, n in enumerate(names, 1)
    )
    assert out == f"--- Submission #1 ---\n{one}--- Submission #2 ---\n{one}"


def test_asynchronous_execution(server: Server) -> None:
    """The README's example with ``language=judge0.PYTHON`` (see test_test_cases)."""
    needs("python@3.11.2")
    out = example(
        server,
        """
        import judge0

        submission = judge0.async_run(source_code="print('hello, world')", language=judge0.PYTHON)
        print(submission.stdout) # Prints 'None'

        judge0.wait(submissions=submission) # Wait for the submission to finish.

        print(submission.stdout) # Prints 'hello, world'
    """,
    )
    assert out == "None\nhello, world\n\n"


def test_get_languages(server: Server) -> None:
    out = example(
        server,
        """
        import judge0
        client = judge0.get_client()
        print(client.get_languages())
    """,
    )
    assert "Language(id=71, name='Python (3.11.2)'" in out and "id=89" in out


def test_filesystem_additional_files(server: Server) -> None:
    """The README's Filesystem example without its last line (Judge0 CE has no
    post_execution_filesystem)."""
    needs("bash@5.2.15")
    out = example(
        server,
        """
        import judge0
        from judge0 import Filesystem, File, Submission

        fs = Filesystem(
            content=[
                File(name="./my_dir1/my_file1.txt", content="hello from my_file.txt"),
            ]
        )

        source_code = \"\"\"
        cat ./my_dir1/my_file1.txt

        mkdir my_dir2
        echo "hello, world" > ./my_dir2/my_file2.txt
        \"\"\"

        submission = Submission(
            source_code=source_code,
            language=judge0.BASH,
            additional_files=fs,
        )

        result = judge0.run(submissions=submission)

        print(result.stdout)
    """,
    )
    assert out == "hello from my_file.txt\n"


# -- aliases --------------------------------------------------------------------------------
SUPPORTED = {alias: i for alias, i in CE.items() if i in TABLE}
MISSING = {alias: i for alias, i in CE.items() if i not in TABLE}


def _program(judge0_id: int) -> tuple[str, dict[str, Any]]:
    """The catalog's test program for an id and its default case (tests/programs)."""
    lang = TABLE[judge0_id]
    main = main_program(lang)
    assert main is not None, lang.key
    return main.read_text(), case(lang)


def test_every_alias_of_judge0_ce_with_a_runtime_runs(client: Any) -> None:
    """Each alias of Judge0 CE 1.13.1 that Debian has a runtime for runs the catalog's
    test program through the SDK (one batch, as a judge sends it)."""
    languages = {TABLE[i].key for i in SUPPORTED.values() if i != 89}
    reason = namespace_unavailable(Settings(), [CATALOG.get(key) for key in sorted(languages)])
    if reason:
        pytest.skip(reason)
    assert {"C", "CPP", "JAVA", "PYTHON", "JAVASCRIPT", "C_CLANG", "CPP_CLANG", "OCTAVE",
            "PLAIN_TEXT", "EXECUTABLE", "MULTI_FILE"} <= {a.name for a in SUPPORTED}  # fmt: skip
    submissions, expected = [], []
    for alias, judge0_id in sorted(SUPPORTED.items()):
        if judge0_id in (44, 89):
            continue  # their sources are not text programs: tested on their own below
        assert client.is_language_supported(alias), alias
        source, spec = _program(judge0_id)
        submissions.append(
            judge0.Submission(
                source_code=source, language=alias, stdin=spec["stdin"],
                command_line_arguments=" ".join(spec["args"]), wall_time_limit=20,
                cpu_time_limit=10, memory_limit=512000,
            )
        )  # fmt: skip
        expected.append((alias, spec["expected"]))
    results = judge0.run(client=client, submissions=submissions)
    for (alias, want), result in zip(expected, results, strict=True):
        assert result.status == judge0.Status.ACCEPTED, (alias, result.compile_output, result)
        assert (result.stdout or "").strip() == want, (alias, result.stdout, result.stderr)


def test_aliases_without_a_runtime_are_refused_as_judge0_refuses_them(
    client: Any, server: Server
) -> None:
    # VISUAL_BASIC (84): bookworm packages no VB.Net compiler (no mono-vbnc)
    assert {a.name for a in MISSING} >= {"BASIC", "PYTHON2", "SWIFT", "VISUAL_BASIC"}
    for alias, judge0_id in MISSING.items():
        assert not client.is_language_supported(alias)
        reply = httpx.post(
            f"{server.url}/submissions", json={"source_code": "x", "language_id": judge0_id}
        )
        assert reply.status_code == 422
        assert reply.json() == {"language_id": [f"language with id {judge0_id} doesn't exist"]}


def test_a_front_ends_string_limits_are_taken_as_judge0_takes_them(server: Server) -> None:
    """Front ends send their form fields as strings (a public client's limits object:
    ``cpu_time_limit: '3.0'``); Judge0's Rails parses them, and so does TVM."""
    needs("python@3.11.2")
    body = {"source_code": "print(input()[::-1])", "language_id": "71", "stdin": "abc",
            "cpu_time_limit": "3.0", "cpu_extra_time": "0.5", "wall_time_limit": "5.0",
            "memory_limit": 131072, "stack_limit": 65536, "max_file_size": "",
            "max_processes_and_or_threads": "32", "enable_network": False}  # fmt: skip
    reply = httpx.post(f"{server.url}/submissions", params={"wait": "true", "fields": "*"},
                       json=body, timeout=60)  # fmt: skip
    assert reply.status_code == 201, reply.text
    result = reply.json()
    assert result["status"]["id"] == 3 and result["stdout"] == "cba\n", result
    assert result["cpu_time_limit"] == "3.0" and result["max_processes_and_or_threads"] == 32
    refused = httpx.post(f"{server.url}/submissions", json=dict(body, memory_limit="1024"))
    assert refused.status_code == 422
    assert refused.json() == {"memory_limit": ["must be greater than or equal to 2048"]}
    options = httpx.post(f"{server.url}/submissions", json=dict(body, compiler_options="-O"))
    assert options.json() == {
        "compiler_options": ["setting compiler options is only allowed for compiled languages"]
    }


def test_executable_runs_a_binary(client: Any) -> None:
    needs("executable@1.0.0")
    elf = _static_binary()
    result = judge0.run(client=client, language=judge0.EXECUTABLE, source_code=elf)
    assert result.status == judge0.Status.ACCEPTED and result.stdout == "from a binary\n"


def _static_binary() -> bytes:
    """A tiny static x86-64 ELF that writes "from a binary\\n" and exits 0."""
    import struct

    msg = b"from a binary\n"
    code = (
        b"\x48\xc7\xc0\x01\x00\x00\x00"  # mov rax, 1 (write)
        b"\x48\xc7\xc7\x01\x00\x00\x00"  # mov rdi, 1
        b"\x48\x8d\x35\x15\x00\x00\x00"  # lea rsi, [rip+0x15]
        + b"\x48\xc7\xc2"
        + struct.pack("<I", len(msg))  # mov rdx, len
        + b"\x0f\x05"  # syscall
        b"\x48\xc7\xc0\x3c\x00\x00\x00"  # mov rax, 60 (exit)
        b"\x48\x31\xff"  # xor rdi, rdi
        b"\x0f\x05"  # syscall
    )
    base, header = 0x400000, 64 + 56
    body = code + msg
    ehdr = (
        b"\x7fELF\x02\x01\x01"
        + b"\x00" * 9
        + struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, base + header, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    )
    phdr = struct.pack(
        "<IIQQQQQQ", 1, 5, 0, base, base, header + len(body), header + len(body), 0x1000
    )
    return ehdr + phdr + body


def test_multi_file_program(client: Any) -> None:
    needs("multi-file@1.0.0")
    fs = judge0.Filesystem(content=[
        judge0.File(name="./lib/greet.py", content="def greet(n):\n    return f'Hello, {n}!'\n"),
        judge0.File(name="./main.py", content="import sys\nsys.path.append('lib')\n"
                    "from greet import greet\nprint(greet(input()))\n"),
        judge0.File(name="compile", content="python3 -m py_compile main.py lib/greet.py\n"),
        judge0.File(name="run", content="python3 main.py\n"),
    ])  # fmt: skip
    result = judge0.run(
        client=client, source_code="", language=judge0.MULTI_FILE, additional_files=fs,
        stdin="Ada",
    )  # fmt: skip
    assert result.status == judge0.Status.ACCEPTED, result
    assert result.stdout == "Hello, Ada!\n"
    broken = judge0.Filesystem(content=[
        judge0.File(name="compile.sh", content="echo 'cannot build' >&2; exit 3\n"),
        judge0.File(name="run.sh", content="echo never\n"),
    ])  # fmt: skip
    failed = judge0.run(
        client=client, source_code="", language=judge0.MULTI_FILE, additional_files=broken
    )
    assert failed.status == judge0.Status.COMPILATION_ERROR
    assert failed.compile_output == "cannot build\n" and failed.stdout is None
    # No run script: accepted, and bash run.sh fails when it runs, as under Judge0.
    scriptless = judge0.Filesystem(content=[judge0.File(name="main.py", content="print(1)\n")])
    missing = judge0.run(
        client=client, source_code="", language=judge0.MULTI_FILE, additional_files=scriptless
    )
    assert missing.status == judge0.Status.RUNTIME_ERROR_NZEC, missing
    assert "run.sh: No such file or directory" in (missing.stderr or ""), missing


# -- verdicts -------------------------------------------------------------------------------
def test_verdicts(client: Any) -> None:
    needs("python@3.11.2", "c@12.2.0")
    cases = [
        (judge0.C, "int main(void) { return undeclared; }", {}, judge0.Status.COMPILATION_ERROR),
        (judge0.PYTHON, "while True: pass", {"cpu_time_limit": 1, "wall_time_limit": 3},
         judge0.Status.TIME_LIMIT_EXCEEDED),
        (judge0.PYTHON, "raise SystemExit(3)", {}, judge0.Status.RUNTIME_ERROR_NZEC),
        (judge0.C, "int main(void) { int *p = 0; return *p; }", {},
         judge0.Status.RUNTIME_ERROR_SIGSEGV),
        (judge0.C, "#include <stdlib.h>\nint main(void) { abort(); }", {},
         judge0.Status.RUNTIME_ERROR_SIGABRT),
        (judge0.PYTHON, "print('yes')", {"expected_output": "no"}, judge0.Status.WRONG_ANSWER),
        (judge0.PYTHON, "print('yes')", {"expected_output": "yes"}, judge0.Status.ACCEPTED),
    ]  # fmt: skip
    submissions = [
        judge0.Submission(source_code=src, language=lang, **extra) for lang, src, extra, _ in cases
    ]
    results = judge0.run(client=client, submissions=submissions)
    assert [r.status for r in results] == [want for *_, want in cases]
    compile_error, timeout, nzec = results[0], results[1], results[2]
    assert "undeclared" in compile_error.compile_output
    assert timeout.time is not None and nzec.exit_code == 3
    assert {s["id"] for s in client.get_statuses()} == set(range(1, 15))


def test_binary_output_round_trips_in_base64(client: Any, server: Server) -> None:
    needs("python@3.11.2")
    source = "import sys; sys.stdout.buffer.write(bytes(range(256)))"
    result = judge0.run(client=client, source_code=source, language=judge0.PYTHON)
    assert result.status == judge0.Status.ACCEPTED
    assert result.stdout == bytes(range(256)).decode(errors="backslashreplace")
    raw = httpx.get(f"{server.url}/submissions/{result.token}", params={"fields": "stdout"})
    assert raw.status_code == 400 and "base64_encoded=true" in raw.json()["error"]


def test_fields_and_config_match_the_sdk(client: Any, server: Server) -> None:
    needs("python@3.11.2")
    config = httpx.get(f"{server.url}/config_info").json()
    assert set(judge0.base_types.Config.model_fields) <= set(config)
    about = httpx.get(f"{server.url}/about").json()
    assert about["version"] == "1.13.1" and client.version == "1.13.1" and about["tvm_version"]
    result = judge0.run(client=client, source_code="print(1)", language=judge0.PYTHON)
    body = httpx.get(f"{server.url}/submissions/{result.token}",
                     params={"fields": "*", "base64_encoded": "true"}).json()  # fmt: skip
    model = set(judge0.Submission.model_fields) | judge0.submission.SKIP_FIELDS
    assert set(body) <= model | {"stdin", "expected_output", "number_of_runs"}
    assert result.created_at is not None and result.finished_at is not None
    assert json.loads(httpx.get(f"{server.url}/languages/89").text)["name"] == "Multi-file program"


class Receiver(http.server.BaseHTTPRequestHandler):
    puts: list[tuple[str, dict[str, Any]]] = []

    def do_PUT(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Receiver.puts.append((self.path, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_callback_arrives_as_judge0_sends_it(server: Server) -> None:
    needs("python@3.11.2")
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{hook.server_address[1]}/done?id=7"
        body = {"source_code": "print('called back')", "language_id": 71, "callback_url": url}
        token = httpx.post(f"{server.url}/submissions", json=body).json()["token"]
        deadline = time.monotonic() + 60
        while not Receiver.puts and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        hook.shutdown()
        hook.server_close()
    ((path, sent),) = Receiver.puts
    assert path == "/done?id=7" and sent["token"] == token
    assert sent["status"] == {"id": 3, "description": "Accepted"}
    assert base64.b64decode(sent["stdout"]) == b"called back\n"
