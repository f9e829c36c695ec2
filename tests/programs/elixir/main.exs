from_stdin =
  IO.read(:stdio, :eof)
  |> String.split()
  |> Enum.map(&String.to_integer/1)
  |> Enum.sum()

from_args = System.argv() |> Enum.map(&String.to_integer/1) |> Enum.sum()
IO.puts(from_stdin + from_args)
