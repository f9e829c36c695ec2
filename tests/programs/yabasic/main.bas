total = 0
dim t$(1)
while (not eof(0))
  line input "" l$
  n = token(l$, t$(), " ")
  for i = 1 to n
    total = total + val(t$(i))
  next i
wend
argc = peek("argument")
for i = 1 to argc
  total = total + val(peek$("argument"))
next i
print total
