set total 0
while read -l line
    for n in (string split -n ' ' -- $line)
        set total (math $total + $n)
    end
end
for n in $argv
    set total (math $total + $n)
end
echo $total
