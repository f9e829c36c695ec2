:- initialization(main, main).

main(Argv) :-
    read_string(user_input, _, Input),
    split_string(Input, " \t\r\n", " \t\r\n", Parts),
    exclude(==(""), Parts, Tokens),
    maplist(number_string, Nums, Tokens),
    maplist(atom_number, Argv, ArgNums),
    sum_list(Nums, S1),
    sum_list(ArgNums, S2),
    Total is S1 + S2,
    format("~d~n", [Total]).
