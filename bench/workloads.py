"""The programs `make bench` runs per language: hello world, and a small realistic
program (``bench/programs/``: reads numbers from stdin, a class or record type
and a few functions, a sieve and a recursive Fibonacci) that prints the same
four lines in every language."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROGRAMS = Path(__file__).with_name("programs")

STDIN = "6\n5 3 8 1 9 2\n"
EXPECTED = "sum 28\nsorted 1 2 3 5 8 9\nprimes 9592\nfib 6765\n"

CPP_HELLO = (
    "#include <bits/stdc++.h>\nusing namespace std;\n"
    'int main() { vector<string> w{"hello"}; cout << w[0] << "\\n"; }\n'
)
JAVA_HELLO = (
    "public class Main {\n"
    '    public static void main(String[] args) { System.out.println("hello"); }\n}\n'
)
HELLO = {
    "python": 'print("hello")\n',
    "javascript": 'console.log("hello")\n',
    "typescript": 'console.log("hello");\n',
    "c": '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n',
    "c++": CPP_HELLO,
    "java": JAVA_HELLO,
    "kotlin": 'fun main() {\n    println("hello")\n}\n',
    "scala": 'object Main {\n  def main(args: Array[String]): Unit = println("hello")\n}\n',
    "go": 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hello") }\n',
    "rust": 'fn main() { println!("hello"); }\n',
    "csharp": 'class Program { static void Main() { System.Console.WriteLine("hello"); } }\n',
    "ruby": 'puts "hello"\n',
    "php": '<?php\necho "hello\\n";\n',
    "haskell": 'main :: IO ()\nmain = putStrLn "hello"\n',
}
SOURCE = {  # the realistic program of each language, in bench/programs/
    "python": "main.py", "javascript": "main.js", "typescript": "main.ts", "c": "main.c",
    "c++": "main.cpp", "java": "Main.java", "kotlin": "main.kt", "scala": "main.scala",
    "go": "main.go", "rust": "main.rs", "csharp": "main.cs", "ruby": "main.rb",
    "php": "main.php", "haskell": "main.hs",
}  # fmt: skip
# (language, semver selector as a client sends it): the versions measured.
LANGUAGES = (
    ("python", "3.11"), ("javascript", "20"), ("typescript", "*"), ("c", "12.2.0"),
    ("c++", "12.2.0"), ("c++", "14.2.0"), ("java", "21"), ("kotlin", "*"), ("scala", "*"),
    ("go", "1.24"), ("go", "1.19"), ("rust", "1.85"), ("csharp", "*"), ("ruby", "3.3"),
    ("php", "8.4"), ("haskell", "*"),
)  # fmt: skip


@dataclass(frozen=True)
class Workload:
    language: str
    version: str  # a semver selector
    kind: str  # "hello" or "program"
    code: str
    stdin: str
    expected: str


def workloads(kinds: tuple[str, ...] = ("hello", "program")) -> list[Workload]:
    """Every measured language's hello world, then its realistic program."""
    out = []
    for language, version in LANGUAGES:
        if "hello" in kinds:
            out.append(Workload(language, version, "hello", HELLO[language], "", "hello\n"))
        if "program" in kinds:
            code = (PROGRAMS / SOURCE[language]).read_text()
            out.append(Workload(language, version, "program", code, STDIN, EXPECTED))
    return out
