"""A JavaScript code context: one Node.js process that keeps its state.

The same protocol as :mod:`.pykernel` (cells as JSON lines on fd 3, one JSON
reply line per cell on fd 4, the cell's output on fds 1 and 2), run by
:mod:`.live_code` as ``node -e SOURCE``. Every cell is a script run in the
same V8 context, so what it declares at top level (``var``, ``let``,
``const``, functions, classes) is there for the next; the value of its last
expression is the result (``util.inspect``, as Node's REPL shows it; a
promise is awaited first); a throw is the error, with its name, message and
stack. Node writes to pipes synchronously on Linux, so a cell's output is
out before its reply.
"""

from __future__ import annotations

SOURCE = r"""
'use strict';
const fs = require('fs');
const vm = require('vm');
const util = require('util');
const readline = require('readline');

function describe(err) {
  if (err instanceof Error) {
    return {name: err.name || 'Error', value: String(err.message),
            traceback: String(err.stack || `${err.name}: ${err.message}`)};
  }
  return {name: 'Error', value: util.inspect(err), traceback: `Uncaught ${util.inspect(err)}`};
}

async function runCell(code, count) {
  let result = null;
  let error = null;
  try {
    let value = vm.runInThisContext(code, {filename: `<cell-${count}>`});
    if (value !== null && typeof value === 'object' && typeof value.then === 'function') {
      value = await value;
    }
    if (value !== undefined) {
      globalThis._ = value;
      result = util.inspect(value);
    }
  } catch (err) {
    error = describe(err);
  }
  return {result, error, count};
}

async function main() {
  const cells = readline.createInterface({input: fs.createReadStream(null, {fd: 3})});
  let count = 0;
  for await (const line of cells) {
    count += 1;
    const request = JSON.parse(line);
    const saved = Object.assign({}, process.env);
    Object.assign(process.env, request.env || {});
    let reply;
    try {
      reply = await runCell(String(request.code), count);
    } finally {
      for (const key of Object.keys(process.env)) {
        if (!(key in saved)) delete process.env[key];
      }
      Object.assign(process.env, saved);
    }
    fs.writeSync(4, JSON.stringify(reply) + '\n');
  }
}

process.on('uncaughtException', (err) => {  // a timer's throw: said, and the context lives
  process.stderr.write(`Uncaught ${describe(err).traceback}\n`);
});
process.on('unhandledRejection', (err) => {
  process.stderr.write(`Unhandled promise rejection: ${describe(err).traceback}\n`);
});
main();
"""
