total = $stdin.read.split.sum(&:to_i)
total += ARGV.sum(&:to_i)
puts total
