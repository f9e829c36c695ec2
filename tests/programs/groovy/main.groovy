def total = 0L
System.in.text.split(/\s+/).findAll { it }.each { total += it as long }
args.each { total += it as long }
println total
