import std.stdio, std.conv, std.array, std.algorithm;

void main(string[] args)
{
    long total = 0;
    foreach (line; stdin.byLine)
        foreach (tok; line.idup.split)
            total += tok.to!long;
    foreach (a; args[1 .. $])
        total += a.to!long;
    writeln(total);
}
