BEGIN {
    for (i = 1; i < ARGC; i++) total += ARGV[i]
    ARGC = 1
}
{ for (i = 1; i <= NF; i++) total += $i }
END { print total + 0 }
