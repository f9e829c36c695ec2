// Drives the npm `piston-client` package, unchanged, against a TVM server and
// prints what it returned as one JSON object (tests/e2e/test_piston_clients.py
// checks it). Usage: node piston_client.mjs http://127.0.0.1:PORT
import piston from "piston-client";

const client = piston({ server: process.argv[2] });
const out = {};
out.runtimes = await client.runtimes();
out.python = await client.execute("python", "import sys\nprint(input()[::-1], sys.argv[1:])",
  { stdin: "olleh", args: ["a", "b c"] });
out.default_args = await client.execute("python", "import sys; print(sys.argv[1:])");
// Piston ends stdin with a newline when it has none (none: one empty line)
const showStdin = "import sys; print(repr(sys.stdin.read()))";
out.stdin_newline = await client.execute("python", showStdin, { stdin: "a\nb" });
out.stdin_kept = await client.execute("python", showStdin, { stdin: "a\n" });
out.stdin_none = await client.execute("python", showStdin);
// Piston runs the first file by the name it was given; the others sit beside it
out.named_files = await client.execute("python", { args: [], files: [
  { name: "solution.py", content: "import sys, helper; print(sys.argv[0], helper.X)" },
  { name: "helper.py", content: "X = 7" }] });
out.javascript = await client.execute("javascript", "console.log(6 * 7)");
out.bash = await client.execute("bash", "read x; echo \"got $x\"", { stdin: "it\n" });
out.c = await client.execute("c", "#include <stdio.h>\nint main(void){puts(\"hi from c\");}");
out.compile_error = await client.execute("c", "int main( { return 0; }");
out.timeout = await client.execute("python", "while True: pass", { runTimeout: 500 });
out.float_timeouts = await client.execute("python", "print('ok')",
  { runTimeout: 2500.5, compileTimeout: 0, runMemoryLimit: 134217728.5 });
out.bad_limit = await client.execute("python", "print(1)", { runTimeout: 10 ** 9 });
out.unknown = await client.execute("python", "print(1)", { version: "0.0.1" });
console.log(JSON.stringify(out));
