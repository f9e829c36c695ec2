use std::io::{self, Read};

struct Stats {
    values: Vec<i64>,
}

impl Stats {
    fn total(&self) -> i64 {
        self.values.iter().sum()
    }

    fn ordered(&self) -> Vec<i64> {
        let mut copy = self.values.clone();
        copy.sort();
        copy
    }
}

fn primes_below(n: usize) -> usize {
    let mut composite = vec![false; n];
    let mut count = 0;
    for i in 2..n {
        if composite[i] {
            continue;
        }
        count += 1;
        let mut j = i * i;
        while j < n {
            composite[j] = true;
            j += i;
        }
    }
    count
}

fn fib(n: u32) -> i64 {
    if n < 2 { n as i64 } else { fib(n - 1) + fib(n - 2) }
}

fn main() {
    let mut input = String::new();
    io::stdin().read_to_string(&mut input).unwrap();
    let mut tok = input.split_whitespace();
    let n: usize = tok.next().unwrap().parse().unwrap();
    let stats = Stats { values: tok.take(n).map(|t| t.parse().unwrap()).collect() };
    let ordered: Vec<String> = stats.ordered().iter().map(|v| v.to_string()).collect();
    println!("sum {}", stats.total());
    println!("sorted {}", ordered.join(" "));
    println!("primes {}", primes_below(100000));
    println!("fib {}", fib(20));
}
