total = 0_i64
STDIN.gets_to_end.split.each { |tok| total += tok.to_i64 }
ARGV.each { |arg| total += arg.to_i64 }
puts total
