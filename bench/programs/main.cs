using System;
using System.Collections.Generic;
using System.Linq;

class Stats
{
    private readonly List<long> values;

    public Stats(List<long> values) { this.values = values; }

    public long Total() { return values.Sum(); }

    public List<long> Ordered()
    {
        var copy = new List<long>(values);
        copy.Sort();
        return copy;
    }
}

static class Program
{
    static int PrimesBelow(int n)
    {
        var composite = new bool[n];
        int count = 0;
        for (int i = 2; i < n; i++)
        {
            if (composite[i]) continue;
            count++;
            for (long j = (long)i * i; j < n; j += i) composite[j] = true;
        }
        return count;
    }

    static long Fib(int n) { return n < 2 ? n : Fib(n - 1) + Fib(n - 2); }

    static void Main()
    {
        var separators = new[] { ' ', '\n', '\r', '\t' };
        var tok = Console.In.ReadToEnd().Split(separators, StringSplitOptions.RemoveEmptyEntries);
        int n = int.Parse(tok[0]);
        var stats = new Stats(tok.Skip(1).Take(n).Select(long.Parse).ToList());
        Console.WriteLine("sum " + stats.Total());
        Console.WriteLine("sorted " + string.Join(" ", stats.Ordered()));
        Console.WriteLine("primes " + PrimesBelow(100000));
        Console.WriteLine("fib " + Fib(20));
    }
}
