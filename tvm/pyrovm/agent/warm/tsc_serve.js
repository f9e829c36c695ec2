// tsc pre-started in a warm sandbox (see tvm_agent/warm.py and TvmWarm.java).
//
// Loads typescript's own tsc.js as the `tsc` command would, minus its last
// statement (which runs the command line at once), compiles a throw-away
// program in a scratch directory, tells the agent it is ready (fd 5), then
// waits for its one request (fd 3, from shim.sh). A request for `tsc ARGS`
// from our directory runs `ts.executeCommandLine(ts.sys, ts.noop, ARGS)`,
// which is all tsc.js would do; anything else is answered "cold" (fd 4).
// Parsed default library files (read-only, in the image) are kept across the
// two programs: a SourceFile is shared between programs the way the language
// service's document registry shares it, and only when its text is the same.
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const Module = require("module");

const LAST = "ts.executeCommandLine(ts.sys, ts.noop, ts.sys.args);";
const prefix = process.argv.slice(2); // ["tsc"]

function loadTs() {
  const bin = fs.realpathSync(findTsc());
  const file = path.resolve(path.dirname(bin), "..", "lib", "tsc.js");
  const source = fs.readFileSync(file, "utf8").trimEnd();
  if (!source.endsWith(LAST)) throw new Error(`${file} does not end with ${LAST}`);
  const mod = new Module(file, null);
  mod.filename = file;
  mod.paths = Module._nodeModulePaths(path.dirname(file));
  mod._compile(source.slice(0, -LAST.length) + "module.exports = ts;\n", file);
  return { ts: mod.exports, libDir: path.dirname(file) };
}

function findTsc() {
  for (const dir of (process.env.PATH || "").split(":")) {
    const candidate = path.join(dir, "tsc");
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch (e) {}
  }
  throw new Error("no tsc on PATH");
}

function shareLibFiles(ts, libDir) {
  const parse = ts.createSourceFile;
  const cache = new Map();
  ts.createSourceFile = function (fileName, text, languageVersion, setParentNodes, scriptKind) {
    if (!fileName.startsWith(libDir + "/")) return parse.apply(this, arguments);
    const opts = typeof languageVersion === "object" ? languageVersion : { languageVersion };
    const key = [fileName, opts.languageVersion, opts.impliedNodeFormat, !!setParentNodes, scriptKind].join("\0");
    const hit = cache.get(key);
    if (hit && hit.text === text) return hit;
    const file = parse.apply(this, arguments);
    cache.set(key, file);
    return file;
  };
}

function warmUp(ts) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tvm-warm"));
  const exit = ts.sys.exit;
  const done = {};
  ts.sys.exit = () => {
    throw done;
  };
  try {
    const src = path.join(dir, "main.ts");
    fs.writeFileSync(src, 'const l: string[] = ["w"];\nconsole.log(l.join(","));\n');
    ts.executeCommandLine(ts.sys, ts.noop, [
      "--target", "es2020", "--module", "commonjs", "--outDir", dir,
      "--noEmitOnError", "--pretty", "false", "--skipDefaultLibCheck", src,
    ]);
  } catch (e) {
    if (e !== done) throw e;
  } finally {
    ts.sys.exit = exit;
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function readRequest(fd) {
  const fields = [];
  let wanted = -1;
  let field = [];
  const byte = Buffer.alloc(1);
  while (wanted < 0 || fields.length < wanted) {
    let n;
    try {
      n = fs.readSync(fd, byte, 0, 1, null);
    } catch (e) {
      if (e.code === "EAGAIN") continue;
      throw e;
    }
    if (n === 0) return null;
    if (byte[0] !== 0) {
      field.push(byte[0]);
      continue;
    }
    const text = Buffer.from(field).toString("utf8");
    field = [];
    if (wanted < 0) wanted = Number(text) + 2;
    else fields.push(text);
  }
  return fields;
}

const { ts, libDir } = loadTs();
shareLibFiles(ts, libDir);
warmUp(ts);
function say(what) {
  try {
    fs.writeSync(5, what); // to the agent: ready, then served
  } catch (e) {}
}

say("\n");
const request = readRequest(3);
if (request === null) process.exit(0);
const [command, cwd, ...args] = request;
if (command !== prefix[0] || cwd !== process.cwd() || prefix.length !== 1) {
  fs.writeSync(4, "cold\n");
  process.exit(0);
}
say("s");
fs.closeSync(5);
process.argv = [process.argv[0], findTsc(), ...args];
ts.sys.args = args;
ts.executeCommandLine(ts.sys, ts.noop, ts.sys.args);
