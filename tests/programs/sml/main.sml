fun toInt s =
  case Int.fromString s of SOME n => n | NONE => 0

fun sum xs = foldl (op +) 0 (map toInt xs)

fun main () =
  let
    val tokens = String.tokens Char.isSpace (TextIO.inputAll TextIO.stdIn)
  in
    print (Int.toString (sum tokens + sum (CommandLine.arguments ())) ^ "\n")
  end
