"""The six core runtimes through the real service, as a Piston client uses them.

Per language: hello world, stdin, args, multiple files, runtime error with exit
code, SIGSEGV, timeout, memory limit, output limit; compile errors for C/C++.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import require_languages

pytestmark = pytest.mark.usefixtures("no_leaks")

# language -> programs. "echo": read a line from stdin, print it reversed and the args.
PROGRAMS: dict[str, dict[str, Any]] = {
    "python@3.11": {
        "echo": "import sys\nprint(input()[::-1], *sys.argv[1:])\n",
        "exit": "import sys\nprint('bye')\nsys.exit(7)\n",
        "segv": "import ctypes\nctypes.string_at(0)\n",
        "loop": "while True:\n    pass\n",
        "sleep": "import time\ntime.sleep(30)\n",
        "hog": "x = bytearray(1 << 30)\nprint(len(x))\n",
        "flood": "while True:\n    print('y' * 1000)\n",
        "multi": [("main.py", "import helper\nprint(helper.f())\n"),
                  ("helper.py", "def f():\n    return 'from helper'\n")],
    },
    "python@3.13": {
        "echo": "import sys\nprint(input()[::-1], *sys.argv[1:])\n",
        "exit": "import sys\nprint('bye')\nsys.exit(7)\n",
        "segv": "import ctypes\nctypes.string_at(0)\n",
        "loop": "while True:\n    pass\n",
        "sleep": "import time\ntime.sleep(30)\n",
        "hog": "x = bytearray(1 << 30)\nprint(len(x))\n",
        "flood": "while True:\n    print('y' * 1000)\n",
        "multi": [("main.py", "from pkg.mod import f\nprint(f())\n"),
                  ("pkg/mod.py", "def f():\n    return 'from helper'\n")],
    },
    "javascript": {
        "echo": "const line = require('fs').readFileSync(0, 'utf8').split('\\n')[0];\n"
                "console.log([line.split('').reverse().join(''), ...process.argv.slice(2)].join(' '));\n",
        "exit": "console.log('bye'); process.exit(7);\n",
        "segv": "process.kill(process.pid, 'SIGSEGV');\n",
        "loop": "for (;;) {}\n",
        "sleep": "setTimeout(() => {}, 30000);\n",
        "hog": "const a = []; for (;;) a.push(Buffer.alloc(1 << 20, 1));\n",
        "flood": "const s = 'y'.repeat(1000); for (;;) console.log(s);\n",
        "multi": [("main.js", "console.log(require('./helper.js').f());\n"),
                  ("helper.js", "exports.f = () => 'from helper';\n")],
    },
    "c": {
        "echo": "#include <stdio.h>\n#include <string.h>\nint main(int c, char **v) {\n"
                "  char s[256]; if (!fgets(s, sizeof s, stdin)) return 1;\n"
                "  size_t n = strcspn(s, \"\\n\"); s[n] = 0;\n"
                "  for (size_t i = n; i-- > 0;) putchar(s[i]);\n"
                "  for (int i = 1; i < c; i++) printf(\" %s\", v[i]);\n"
                "  puts(\"\"); return 0; }\n",
        "exit": "#include <stdio.h>\nint main(void) { puts(\"bye\"); return 7; }\n",
        "segv": "int main(void) { volatile int *p = 0; return *p; }\n",
        "loop": "int main(void) { for (;;) {} }\n",
        "sleep": "#include <unistd.h>\nint main(void) { sleep(30); return 0; }\n",
        "hog": "#include <stdlib.h>\n#include <string.h>\nint main(void) {\n"
               "  for (;;) { char *p = malloc(1 << 20); if (!p) return 3; memset(p, 1, 1 << 20); } }\n",
        "flood": "#include <stdio.h>\nint main(void) { for (;;) puts(\"yyyyyyyyyyyyyyyyyyyy\"); }\n",
        "multi": [("main.c", "#include <stdio.h>\n#include \"helper.h\"\n"
                             "int main(void) { puts(helper()); return 0; }\n"),
                  ("helper.h", "const char *helper(void);\n"),
                  ("helper.c", "const char *helper(void) { return \"from helper\"; }\n")],
        "syntax": "int main(void) { return 0 }\n",
    },
    "c++": {
        "echo": "#include <algorithm>\n#include <iostream>\n#include <string>\n"
                "int main(int c, char **v) { std::string s; std::getline(std::cin, s);\n"
                "  std::reverse(s.begin(), s.end()); std::cout << s;\n"
                "  for (int i = 1; i < c; i++) std::cout << ' ' << v[i];\n"
                "  std::cout << '\\n'; }\n",
        "exit": "#include <iostream>\nint main() { std::cout << \"bye\\n\"; return 7; }\n",
        "segv": "int main() { volatile int *p = nullptr; return *p; }\n",
        "loop": "int main() { for (;;) {} }\n",
        "sleep": "#include <thread>\n#include <chrono>\n"
                 "int main() { std::this_thread::sleep_for(std::chrono::seconds(30)); }\n",
        "hog": "#include <vector>\n#include <cstring>\nint main() { std::vector<char*> v;\n"
               "  for (;;) { char *p = new char[1 << 20]; std::memset(p, 1, 1 << 20); v.push_back(p); } }\n",
        "flood": "#include <cstdio>\nint main() { for (;;) std::puts(\"yyyyyyyyyyyyyyyyyyyy\"); }\n",
        "multi": [("main.cpp", "#include <iostream>\n#include \"helper.hpp\"\n"
                               "int main() { std::cout << helper() << '\\n'; }\n"),
                  ("helper.hpp", "#include <string>\nstd::string helper();\n"),
                  ("helper.cpp", "#include \"helper.hpp\"\n"
                                 "std::string helper() { return \"from helper\"; }\n")],
        "syntax": "int main() { return 0 }\n",
    },
    "bash": {
        "echo": "read -r line; r=; for ((i=${#line}-1; i>=0; i--)); do r+=${line:i:1}; done\n"
                "echo \"$r\" \"$@\"\n",
        "exit": "echo bye; exit 7\n",
        "segv": "kill -SEGV $$\n",
        "loop": "while :; do :; done\n",
        "sleep": "sleep 30\n",
        "hog": "x=$(head -c 900000000 /dev/zero | tr '\\0' y); echo ${#x}\n",
        "flood": "yes yyyyyyyyyyyyyyyyyyyy\n",
        "multi": [("main.sh", "source ./helper.sh\nhelper\n"),
                  ("helper.sh", "helper() { echo 'from helper'; }\n")],
    },
}  # fmt: skip

LANGUAGES = list(PROGRAMS)


def execute(api: httpx.Client, language: str, files: Any, **extra: Any) -> dict[str, Any]:
    name, _, version = language.partition("@")
    if isinstance(files, str):
        files = [{"content": files}]
    else:
        files = [{"name": n, "content": c} for n, c in files]
    body = {"language": name, "version": version or "*", "files": files, **extra}
    reply = api.post("/api/v2/execute", json=body)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


@pytest.fixture(params=LANGUAGES)
def language(request: pytest.FixtureRequest, settings: Any) -> str:
    key = request.param if "@" in request.param else f"{request.param}@*"
    require_languages(settings, key)
    return str(request.param)


def test_stdin_and_args(api: httpx.Client, language: str) -> None:
    result = execute(api, language, PROGRAMS[language]["echo"], stdin="olleh\n", args=["a", "b c"])
    run = result["run"]
    assert run["stdout"] == "hello a b c\n", run
    assert run["code"] == 0 and run["status"] is None


def test_multiple_files(api: httpx.Client, language: str) -> None:
    run = execute(api, language, PROGRAMS[language]["multi"])["run"]
    assert run["stdout"] == "from helper\n", run


def test_runtime_error_keeps_exit_code_and_output(api: httpx.Client, language: str) -> None:
    run = execute(api, language, PROGRAMS[language]["exit"])["run"]
    assert run["code"] == 7 and run["status"] == "RE" and run["stdout"] == "bye\n", run


def test_sigsegv_is_named(api: httpx.Client, language: str) -> None:
    run = execute(api, language, PROGRAMS[language]["segv"])["run"]
    assert run["signal"] == "SIGSEGV" and run["status"] == "SG", run


def test_cpu_loop_times_out(api: httpx.Client, language: str) -> None:
    # The wall limit is far above the CPU limit, so that on a loaded host (where the
    # loop gets a small share of a core) the CPU limit is still what ends it.
    run = execute(api, language, PROGRAMS[language]["loop"], run_timeout=30000, run_cpu_time=500)[
        "run"
    ]
    assert run["status"] == "TO", run
    assert 400 <= run["cpu_time"] < 3000, run
    assert run["wall_time"] < 30000, run


def test_sleep_past_the_wall_timeout(api: httpx.Client, language: str) -> None:
    run = execute(api, language, PROGRAMS[language]["sleep"], run_timeout=700)["run"]
    assert run["status"] == "TO", run
    assert 600 <= run["wall_time"] < 5000


def test_memory_limit(api: httpx.Client, language: str) -> None:
    result = execute(api, language, PROGRAMS[language]["hog"], run_memory_limit=64 << 20)
    run = result["run"]
    assert run["status"] in ("SG", "RE"), run
    assert run["code"] != 0
    native = api.post(
        "/api/v1/execute",
        json={
            "language": language.partition("@")[0],
            "version": language.partition("@")[2] or None,
            "code": PROGRAMS[language]["hog"],
            "limits": {"memory_mb": 64},
        },
    ).json()
    # The cgroup OOM-kills the program (memory_limit), or its own allocator gives
    # up with an error first (runtime_error): either way never past 64 MB.
    assert native["status"] in ("memory_limit", "runtime_error"), native
    assert native["run"]["memory_kb"] <= 64 * 1024 + 16 * 1024


def test_output_limit(api: httpx.Client, language: str) -> None:
    run = execute(api, language, PROGRAMS[language]["flood"])["run"]
    assert run["status"] == "OL", run
    assert 0 < len(run["stdout"]) <= 65536


@pytest.mark.parametrize("language_key", ["c", "c++"])
def test_compile_error(api: httpx.Client, settings: Any, language_key: str) -> None:
    require_languages(settings, f"{language_key}@*")
    result = execute(api, language_key, PROGRAMS[language_key]["syntax"])
    assert result.get("run") == result["compile"]  # Piston repeats a failed compile as run
    assert result["compile"]["code"] != 0
    assert "error" in result["compile"]["stderr"]
