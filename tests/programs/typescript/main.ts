declare const require: (name: string) => any;
declare const process: { argv: string[] };

const fs = require("fs");
const input: string = fs.readFileSync(0, "utf8");
let total: number = 0;
for (const tok of input.split(/\s+/)) if (tok) total += parseInt(tok, 10);
for (const arg of process.argv.slice(2)) total += parseInt(arg, 10);
console.log(total);
