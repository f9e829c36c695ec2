set total 0
foreach tok [regexp -all -inline {\S+} [read stdin]] { incr total $tok }
foreach a $argv { incr total $a }
puts $total
