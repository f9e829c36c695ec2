// The TVM playground: an editor, the catalog's languages, Run (POST
// /api/v1/execute), Interactive (the /api/v1/connect WebSocket in a terminal),
// compile-once-run-many tests, and a shareable link. No framework; no network
// beyond the server that served the page.
import { EditorView, basicSetup } from "codemirror";
import { Compartment } from "@codemirror/state";
import { keymap } from "@codemirror/view";
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import "@xterm/xterm/css/xterm.css";
import { highlighting } from "./languages.js";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "tvm-playground-api-key";
const state = { languages: [], templates: {}, socket: null, term: null, fit: null };

// -- small helpers ---------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function setStatus(text) {
  $("status").textContent = text;
}

function headers() {
  const key = $("api-key").value.trim();
  const out = { "Content-Type": "application/json" };
  if (key) out["X-API-Key"] = key;
  return out;
}

/** Split like a shell would, for the simple cases: spaces, "double" and 'single' quotes. */
export function splitArgs(text) {
  const args = [];
  let current = null;
  let quote = null;
  for (const ch of text) {
    if (quote) {
      if (ch === quote) quote = null;
      else current += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      current = current ?? "";
    } else if (/\s/.test(ch)) {
      if (current !== null) args.push(current);
      current = null;
    } else {
      current = (current ?? "") + ch;
    }
  }
  if (current !== null) args.push(current);
  return args;
}

function limits() {
  const out = {};
  for (const [id, name] of [["timeout", "timeout_ms"], ["cpu", "cpu_time_ms"], ["memory", "memory_mb"]]) {
    const value = $(id).value.trim();
    if (value) out[name] = Number(value);
  }
  return out;
}

function selected() {
  const name = $("language").value;
  const version = $("version").value;
  return state.languages.find((l) => l.name === name && l.version === version);
}

// -- the editor ------------------------------------------------------------------------
const languageSlot = new Compartment();
const editor = new EditorView({
  parent: $("editor"),
  extensions: [
    keymap.of([
      { key: "Mod-Enter", run: () => (run(), true) },
      { key: "Mod-Shift-Enter", run: () => (interactive(), true) },
    ]),
    basicSetup,
    languageSlot.of([]),
    EditorView.contentAttributes.of({ "aria-label": "Source code", "aria-multiline": "true" }),
  ],
});

function code() {
  return editor.state.doc.toString();
}

function setCode(text) {
  editor.dispatch({ changes: { from: 0, to: editor.state.doc.length, insert: text } });
}

// -- languages and versions ------------------------------------------------------------
function names() {
  return [...new Set(state.languages.map((l) => l.name))].sort();
}

function fillVersions(name, version) {
  const versions = state.languages.filter((l) => l.name === name).reverse(); // newest first
  $("version").replaceChildren(
    ...versions.map((l) => el("option", { value: l.version }, `${l.version} — ${l.display_name}`)),
  );
  if (version && versions.some((l) => l.version === version)) $("version").value = version;
  applyLanguage();
}

function applyLanguage() {
  const lang = selected();
  if (!lang) return;
  editor.dispatch({ effects: languageSlot.reconfigure(highlighting(lang.name)) });
  const limitsOf = lang.limits.run;
  for (const [id, name] of [["timeout", "timeout_ms"], ["cpu", "cpu_time_ms"], ["memory", "memory_mb"]]) {
    $(id).placeholder = `default ${limitsOf.default[name]}`;
    $(id).max = limitsOf.max[name];
  }
}

function template(name) {
  return state.templates[name] ?? "";
}

function isTemplateOrEmpty(text) {
  return !text.trim() || Object.values(state.templates).includes(text);
}

async function loadLanguages() {
  const [reply, templates] = await Promise.all([
    fetch("/api/v1/languages", { headers: headers() }),
    fetch("/playground/hello.json").then((r) => r.json()),
  ]);
  if (reply.status === 401) {
    setStatus("This server needs an API key: enter it above.");
    $("api-key").focus();
    return;
  }
  if (!reply.ok) throw new Error(`${reply.status} ${reply.statusText}`);
  const languages = await reply.json();
  state.templates = templates;
  state.languages = languages.filter((l) => l.image_built);
  if (!state.languages.length) {
    setStatus("No language image is built on this server yet (run: tvm images build).");
    return;
  }
  $("language").replaceChildren(...names().map((n) => el("option", { value: n }, n)));
}

// -- running ---------------------------------------------------------------------------
function request(extra = {}) {
  const lang = selected();
  return {
    language: lang.name,
    version: lang.version,
    files: [{ content: code() }],
    stdin: $("stdin").value,
    args: splitArgs($("args").value),
    limits: limits(),
    ...extra,
  };
}

async function execute(body) {
  const reply = await fetch("/api/v1/execute", { method: "POST", headers: headers(), body: JSON.stringify(body) });
  const data = await reply.json().catch(() => ({ message: reply.statusText }));
  if (!reply.ok) {
    const where = data.field ? ` (${data.field})` : "";
    throw new Error(`${reply.status}: ${data.message ?? "request failed"}${where}`);
  }
  return data;
}

function busy(on) {
  for (const id of ["run", "interactive", "run-tests"]) $(id).disabled = on;
}

async function run() {
  if (!selected() || state.socket) return;
  busy(true);
  setStatus("Running…");
  $("terminal-box").hidden = true;
  try {
    const result = await execute(request());
    renderResult(result);
    setStatus(`Finished: ${result.status}.`);
  } catch (error) {
    renderError(error.message);
    setStatus(`Error: ${error.message}`);
  } finally {
    busy(false);
  }
}

async function runTests() {
  const cases = testCases();
  if (!selected() || state.socket || !cases.length) return;
  busy(true);
  setStatus(`Running ${cases.length} test case(s)…`);
  try {
    const result = await execute(request({ tests: cases }));
    renderResult(result);
    const passed = (result.tests ?? []).filter((t) => t.verdict === "accepted").length;
    setStatus(`Tests finished: ${passed} of ${cases.length} accepted.`);
  } catch (error) {
    renderError(error.message);
    setStatus(`Error: ${error.message}`);
  } finally {
    busy(false);
  }
}

// -- interactive -----------------------------------------------------------------------
function terminal() {
  if (!state.term) {
    state.term = new Terminal({ convertEol: false, cursorBlink: true, fontSize: 14, screenReaderMode: true });
    state.fit = new FitAddon();
    state.term.loadAddon(state.fit);
    state.term.open($("terminal"));
    state.term.onData((data) => send({ type: "stdin", data }));
    state.term.onResize(({ rows, cols }) => send({ type: "resize", rows, cols }));
  }
  return state.term;
}

function send(message) {
  if (state.socket && state.socket.readyState === WebSocket.OPEN) state.socket.send(JSON.stringify(message));
}

function interactive() {
  if (!selected() || state.socket) return;
  $("terminal-box").hidden = false;
  const term = terminal();
  term.reset();
  state.fit.fit();
  term.focus();
  const key = $("api-key").value.trim();
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = key ? `?api_key=${encodeURIComponent(key)}` : "";
  const socket = new WebSocket(`${scheme}//${location.host}/api/v1/connect${query}`);
  state.socket = socket;
  busy(true);
  $("stop").disabled = false;
  $("result").replaceChildren();
  setStatus("Connecting…");
  socket.onopen = () => {
    socket.send(JSON.stringify({ type: "start", request: request(), terminal: { rows: term.rows, cols: term.cols } }));
  };
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "output") term.write(message.data);
    else if (message.type === "stage") setStatus(message.stage === "compile" ? "Compiling…" : "Running: type in the terminal.");
    else if (message.type === "exit" && message.stage === "compile" && message.result.status !== "ok") {
      term.write("\r\n\x1b[31m[compile failed]\x1b[0m\r\n");
    } else if (message.type === "result") {
      renderResult(message.result);
      const run = message.result.run;
      const how = run ? (run.signal ? `signal ${run.signal}` : `exit code ${run.exit_code}`) : message.result.status;
      term.write(`\r\n\x1b[2m[${message.result.status}: ${how}]\x1b[0m\r\n`);
      setStatus(`Finished: ${message.result.status}.`);
    } else if (message.type === "error") {
      renderError(message.field ? `${message.message} (${message.field})` : message.message);
      setStatus(`Error: ${message.message}`);
    }
  };
  socket.onclose = () => {
    state.socket = null;
    busy(false);
    $("stop").disabled = true;
  };
}

function stop() {
  send({ type: "signal", signal: "SIGKILL" });
}

// -- tests -----------------------------------------------------------------------------
function addTest(stdin = "", expected = "") {
  const list = $("tests");
  const n = list.children.length + 1;
  const item = el("li", { class: "test" });
  const stdinId = `test-${n}-stdin`;
  const expectedId = `test-${n}-expected`;
  const stdinBox = el("textarea", { id: stdinId, rows: "2", spellcheck: "false", class: "test-stdin" });
  const expectedBox = el("textarea", { id: expectedId, rows: "2", spellcheck: "false", class: "test-expected" });
  stdinBox.value = stdin;
  expectedBox.value = expected;
  const remove = el("button", { type: "button", "aria-label": `Remove test case ${n}` }, "Remove");
  remove.onclick = () => item.remove();
  item.append(
    el("div", { class: "field" }, el("label", { for: stdinId }, `Test ${n}: input`), stdinBox),
    el("div", { class: "field" }, el("label", { for: expectedId }, `Test ${n}: expected output`), expectedBox),
    remove,
  );
  list.append(item);
  $("tests-box").open = true;
}

function testCases() {
  return [...$("tests").children].map((item) => ({
    stdin: item.querySelector(".test-stdin").value,
    expected_output: item.querySelector(".test-expected").value,
  }));
}

// -- the result, for a person ----------------------------------------------------------
const STATUS_TEXT = {
  ok: "OK",
  compile_error: "Compile error",
  runtime_error: "Runtime error",
  signal: "Killed by a signal",
  timeout: "Time limit exceeded",
  memory_limit: "Memory limit exceeded",
  output_limit: "Output limit exceeded",
  internal_error: "Internal error",
};

function badge(status) {
  return el("span", { class: `badge status-${status}` }, STATUS_TEXT[status] ?? status);
}

function figures(stage, cls) {
  const exit = stage.signal ? `signal ${stage.signal}` : stage.exit_code ?? "—";
  // A compiler that exits non-zero is a compile error, not the program's runtime error.
  const status = cls === "compile" && stage.status === "runtime_error" ? "compile_error" : stage.status;
  const items = [
    ["Status", badge(status)],
    ["Exit", exit],
    ["CPU time", `${stage.cpu_ms} ms`],
    ["Wall time", `${stage.wall_ms} ms`],
    ["Memory", `${(stage.memory_kb / 1024).toFixed(1)} MB`],
  ];
  return el("dl", { class: "figures" }, ...items.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function stream(title, text, cls) {
  if (!text) return null;
  return el("div", { class: `stream ${cls}` }, el("h4", {}, title), el("pre", { tabindex: "0" }, text));
}

function renderStage(title, stage, cls) {
  return el(
    "section",
    { class: `stage ${cls}`, "aria-label": title },
    el("h3", {}, title),
    figures(stage, cls),
    stream("stdout", stage.stdout, "stdout"),
    stream("stderr", stage.stderr, "stderr"),
    stage.truncated ? el("p", { class: "note" }, "Output was cut at the output limit.") : null,
    !stage.stdout && !stage.stderr ? el("p", { class: "note" }, "(no output)") : null,
  );
}

function renderTests(tests, cases) {
  const rows = tests.map((t, i) =>
    el(
      "tr",
      { class: `verdict-${t.verdict ?? t.status}` },
      el("th", { scope: "row" }, String(i + 1)),
      el("td", { class: "verdict" }, t.verdict === "accepted" ? "Accepted" : t.verdict === "wrong_answer" ? "Wrong answer" : STATUS_TEXT[t.status] ?? t.status),
      el("td", {}, `${t.wall_ms} ms`),
      el("td", {}, `${(t.memory_kb / 1024).toFixed(1)} MB`),
      el("td", {}, el("pre", {}, cases[i]?.expected_output ?? "")),
      el("td", {}, el("pre", {}, t.stdout + (t.stderr ? `\n${t.stderr}` : ""))),
    ),
  );
  const head = el("tr", {}, ...["#", "Verdict", "Wall time", "Memory", "Expected", "Actual"].map((h) => el("th", { scope: "col" }, h)));
  return el("table", { class: "tests-table" }, el("caption", {}, "Test results"), el("thead", {}, head), el("tbody", {}, ...rows));
}

function renderResult(result) {
  const tests = result.tests ?? [];
  const accepted = tests.filter((t) => t.verdict === "accepted").length;
  const summary =
    tests.length && result.status === "ok"
      ? el("span", { class: `badge ${accepted === tests.length ? "status-ok" : "status-wrong"}` },
          `${accepted} of ${tests.length} accepted`)
      : badge(result.status);
  const parts = [
    el("h2", {}, "Result ", summary),
    el("p", { class: "meta" }, `${result.language} ${result.version}`),
  ];
  if (result.compile && (result.compile.status !== "ok" || result.compile.stdout || result.compile.stderr)) {
    parts.push(renderStage(result.compile.status === "ok" ? "Compile output" : "Compile error", result.compile, "compile"));
  }
  if (result.run) parts.push(renderStage("Run", result.run, "run"));
  if (result.tests) parts.push(renderTests(result.tests, testCases()));
  if (result.message) parts.push(el("p", { class: "note" }, result.message));
  $("result").replaceChildren(...parts);
}

function renderError(message) {
  $("result").replaceChildren(el("div", { class: "error", role: "alert" }, el("h2", {}, "Request refused"), el("p", {}, message)));
}

// -- shareable links -------------------------------------------------------------------
function toBase64Url(bytes) {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64Url(text) {
  const raw = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

async function transform(bytes, stream) {
  const out = new Blob([bytes]).stream().pipeThrough(stream);
  return new Uint8Array(await new Response(out).arrayBuffer());
}

export async function encodeShare(program) {
  const bytes = new TextEncoder().encode(JSON.stringify(program));
  if (typeof CompressionStream === "function") {
    return "z." + toBase64Url(await transform(bytes, new CompressionStream("deflate-raw")));
  }
  return "j." + toBase64Url(bytes);
}

export async function decodeShare(text) {
  const [kind, body] = [text.slice(0, 2), text.slice(2)];
  let bytes = fromBase64Url(body);
  if (kind === "z.") bytes = await transform(bytes, new DecompressionStream("deflate-raw"));
  else if (kind !== "j.") throw new Error("unknown link format");
  return JSON.parse(new TextDecoder().decode(bytes));
}

async function share() {
  const program = {
    language: $("language").value,
    version: $("version").value,
    code: code(),
    stdin: $("stdin").value,
    args: $("args").value,
    tests: testCases(),
  };
  const link = `${location.origin}${location.pathname}#p=${await encodeShare(program)}`;
  history.replaceState(null, "", link);
  try {
    await navigator.clipboard.writeText(link);
    setStatus("Link copied to the clipboard (and in the address bar).");
  } catch {
    setStatus("Link is in the address bar.");
  }
}

async function fromLink() {
  const match = location.hash.match(/^#p=(.+)$/);
  if (!match) return false;
  try {
    const program = await decodeShare(match[1]);
    if (names().includes(program.language)) {
      $("language").value = program.language;
      fillVersions(program.language, program.version);
    }
    setCode(program.code ?? "");
    $("stdin").value = program.stdin ?? "";
    $("args").value = program.args ?? "";
    for (const t of program.tests ?? []) addTest(t.stdin, t.expected_output ?? "");
    setStatus("Loaded the shared program.");
    return true;
  } catch (error) {
    setStatus(`Could not read the shared link: ${error.message}`);
    return false;
  }
}

// -- wiring ----------------------------------------------------------------------------
async function main() {
  $("api-key").value = localStorage.getItem(KEY_STORE) ?? "";
  $("api-key").addEventListener("change", () => {
    localStorage.setItem(KEY_STORE, $("api-key").value.trim());
    if (!state.languages.length) boot();
  });
  $("language").addEventListener("change", () => {
    const keep = !isTemplateOrEmpty(code());
    fillVersions($("language").value);
    if (!keep) setCode(template($("language").value));
  });
  $("version").addEventListener("change", applyLanguage);
  $("run").addEventListener("click", run);
  $("interactive").addEventListener("click", interactive);
  $("stop").addEventListener("click", stop);
  $("share").addEventListener("click", share);
  $("template").addEventListener("click", () => setCode(template($("language").value)));
  $("add-test").addEventListener("click", () => addTest());
  $("run-tests").addEventListener("click", runTests);
  window.addEventListener("resize", () => state.fit && !$("terminal-box").hidden && state.fit.fit());
  await boot();
}

/** Load the catalog, then the shared program or python's hello world. */
async function boot() {
  try {
    await loadLanguages();
  } catch (error) {
    setStatus(`Could not load the languages: ${error.message}`);
    return;
  }
  if (!state.languages.length) return;
  if (!(await fromLink())) {
    const start = names().includes("python") ? "python" : names()[0];
    $("language").value = start;
    fillVersions(start);
    setCode(template(start));
  }
  document.body.dataset.ready = "true";
}

main();
