-module(main).
-export([main/1]).

read_all(Acc) ->
    case io:get_line("") of
        eof -> Acc;
        Line -> read_all(Acc ++ Line)
    end.

main(Args) ->
    Tokens = string:lexemes(read_all(""), " \t\r\n"),
    Total = lists:sum([list_to_integer(T) || T <- Tokens]) +
            lists:sum([list_to_integer(A) || A <- Args]),
    io:format("~B~n", [Total]).
