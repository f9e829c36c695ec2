import sys

total = sum(int(tok) for tok in sys.stdin.read().split())
total += sum(int(arg) for arg in sys.argv[1:])
print(total)
