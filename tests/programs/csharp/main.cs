using System;

public class Program
{
    public static void Main(string[] args)
    {
        long total = 0;
        string input = Console.In.ReadToEnd();
        foreach (var tok in input.Split(new[] { ' ', '\n', '\r', '\t' }, StringSplitOptions.RemoveEmptyEntries))
            total += long.Parse(tok);
        foreach (var arg in args) total += long.Parse(arg);
        Console.WriteLine(total);
    }
}
