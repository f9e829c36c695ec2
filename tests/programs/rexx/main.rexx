/* sum of the numbers on stdin and in the arguments */
total = 0
do while lines() > 0
  line = linein()
  do i = 1 to words(line)
    total = total + word(line, i)
  end
end
parse arg args
do i = 1 to words(args)
  total = total + word(args, i)
end
say total
