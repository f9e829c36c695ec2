import sys


class Stats:
    def __init__(self, values):
        self.values = values

    def total(self):
        return sum(self.values)

    def ordered(self):
        return sorted(self.values)


def primes_below(n):
    sieve = bytearray([1]) * n
    sieve[0:2] = b"\0\0"
    for i in range(2, int(n**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, n, i)))
    return sum(sieve)


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def main():
    data = sys.stdin.read().split()
    n = int(data[0])
    stats = Stats([int(x) for x in data[1 : 1 + n]])
    print("sum", stats.total())
    print("sorted", " ".join(map(str, stats.ordered())))
    print("primes", primes_below(100000))
    print("fib", fib(20))


main()
