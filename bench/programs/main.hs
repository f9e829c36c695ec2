module Main where

import Data.List (sort)

newtype Stats = Stats [Integer]

total :: Stats -> Integer
total (Stats xs) = sum xs

ordered :: Stats -> [Integer]
ordered (Stats xs) = sort xs

primes :: [Int]
primes = 2 : filter isPrime [3, 5 ..]
  where
    isPrime n = all (\p -> n `mod` p /= 0) (takeWhile (\p -> p * p <= n) primes)

fib :: Int -> Integer
fib n = if n < 2 then toInteger n else fib (n - 1) + fib (n - 2)

main :: IO ()
main = do
  input <- getContents
  let numbers = map read (words input) :: [Integer]
      stats = Stats (take (fromInteger (head numbers)) (tail numbers))
  putStrLn ("sum " ++ show (total stats))
  putStrLn ("sorted " ++ unwords (map show (ordered stats)))
  putStrLn ("primes " ++ show (length (takeWhile (< 100000) primes)))
  putStrLn ("fib " ++ show (fib 20))
