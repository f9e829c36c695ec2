fs = require 'fs'
input = fs.readFileSync 0, 'utf8'
total = 0
total += parseInt(tok, 10) for tok in input.split(/\s+/) when tok
total += parseInt(arg, 10) for arg in process.argv[2..]
console.log total
