class Stats
  def initialize(values)
    @values = values
  end

  def total
    @values.sum
  end

  def ordered
    @values.sort
  end
end

def primes_below(n)
  composite = Array.new(n, false)
  count = 0
  (2...n).each do |i|
    next if composite[i]

    count += 1
    (i * i).step(n - 1, i) { |j| composite[j] = true }
  end
  count
end

def fib(n)
  n < 2 ? n : fib(n - 1) + fib(n - 2)
end

tok = $stdin.read.split.map(&:to_i)
stats = Stats.new(tok[1, tok[0]])
puts "sum #{stats.total}"
puts "sorted #{stats.ordered.join(' ')}"
puts "primes #{primes_below(100_000)}"
puts "fib #{fib(20)}"
