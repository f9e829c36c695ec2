local total = 0
for tok in io.read("*a"):gmatch("%S+") do total = total + tonumber(tok) end
for _, a in ipairs(arg) do total = total + tonumber(a) end
print(string.format("%d", total))
