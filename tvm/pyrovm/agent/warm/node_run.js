// node pre-started for a warm sandbox's run stage (see tvm_agent/warm_run.py).
//
// Exec'd as `node --require THIS main.js` by the run stage's runner, under
// the program's uid, environment, work dir and the run stage's maximum
// rlimits, this runs where node runs every --require: after its own start-up
// and before it loads the main module. It says it is ready (fd 98), waits for
// its go (fd 99: the request's extra arguments, as JSON), and returns. Node
// then loads main.js exactly as a cold `node main.js ARGS` would: the same
// process.argv, an empty process.execArgv, nothing of this file left in
// require.cache, and nothing of it on the program's stack. The program's
// stdin (fd 0) is a file the helper fills before the go. The go pipe's end
// with nothing on it means no program comes: exit, and say so.
"use strict";
(function () {
  const fs = require("fs");
  const READY = 98;
  const GO = 99;
  fs.writeSync(READY, "\n");
  const chunks = [];
  const buf = Buffer.alloc(65536);
  for (;;) {
    let n;
    try {
      n = fs.readSync(GO, buf, 0, buf.length, null);
    } catch (e) {
      if (e.code === "EAGAIN" || e.code === "EINTR") continue;
      throw e;
    }
    if (n === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  fs.closeSync(GO);
  if (chunks.length === 0) {
    // Discarded with its sandbox, or its helper failed: never a silent success.
    try {
      fs.writeSync(2, "tvm: the pre-started node got no program\n");
    } catch (e) {}
    process.exit(70);
  }
  process.argv.push(...JSON.parse(Buffer.concat(chunks).toString("utf8")));
  process.execArgv.length = 0;
  delete require.cache[__filename];
  fs.writeSync(READY, "s");
  fs.closeSync(READY);
})();
