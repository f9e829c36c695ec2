import System.Environment (getArgs)

main :: IO ()
main = do
  input <- getContents
  args <- getArgs
  let total = sum (map read (words input)) + sum (map read args) :: Integer
  print total
