use std::io::Read;

fn main() {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).unwrap();
    let mut total: i64 = input.split_whitespace().map(|t| t.parse::<i64>().unwrap()).sum();
    for arg in std::env::args().skip(1) {
        total += arg.parse::<i64>().unwrap();
    }
    println!("{}", total);
}
