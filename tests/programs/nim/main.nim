import os, strutils

var total = 0
for tok in stdin.readAll().splitWhitespace():
  total += parseInt(tok)
for i in 1 .. paramCount():
  total += parseInt(paramStr(i))
echo total
