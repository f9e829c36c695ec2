<?php
class Stats
{
    public function __construct(private array $values) {}

    public function total(): int { return array_sum($this->values); }

    public function ordered(): array
    {
        $copy = $this->values;
        sort($copy);
        return $copy;
    }
}

function primes_below(int $n): int
{
    $composite = array_fill(0, $n, false);
    $count = 0;
    for ($i = 2; $i < $n; $i++) {
        if ($composite[$i]) continue;
        $count++;
        for ($j = $i * $i; $j < $n; $j += $i) $composite[$j] = true;
    }
    return $count;
}

function fib(int $n): int { return $n < 2 ? $n : fib($n - 1) + fib($n - 2); }

$tok = preg_split('/\s+/', trim(stream_get_contents(STDIN)));
$n = (int)$tok[0];
$stats = new Stats(array_map('intval', array_slice($tok, 1, $n)));
echo "sum ", $stats->total(), "\n";
echo "sorted ", implode(" ", $stats->ordered()), "\n";
echo "primes ", primes_below(100000), "\n";
echo "fib ", fib(20), "\n";
