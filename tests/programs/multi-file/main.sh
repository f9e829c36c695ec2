total=0
while read -r line; do
  for n in $line; do total=$((total + n)); done
done
for n in "$@"; do total=$((total + n)); done
echo "$total"
