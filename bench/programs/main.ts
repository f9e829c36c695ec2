declare function require(name: string): any;
const fs = require("fs");

class Stats {
  constructor(private values: number[]) {}
  total(): number { return this.values.reduce((a, b) => a + b, 0); }
  ordered(): number[] { return [...this.values].sort((a, b) => a - b); }
}

function primesBelow(n: number): number {
  const composite = new Uint8Array(n);
  let count = 0;
  for (let i = 2; i < n; i++) {
    if (composite[i]) continue;
    count++;
    for (let j = i * i; j < n; j += i) composite[j] = 1;
  }
  return count;
}

function fib(n: number): number { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

const text: string = fs.readFileSync(0, "utf8");
const data: number[] = text.split(/\s+/).filter(Boolean).map(Number);
const stats = new Stats(data.slice(1, 1 + data[0]));
console.log("sum", stats.total());
console.log("sorted", stats.ordered().join(" "));
console.log("primes", primesBelow(100000));
console.log("fib", fib(20));
