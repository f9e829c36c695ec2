my $total = $*IN.slurp.words.map(*.Int).sum + @*ARGS.map(*.Int).sum;
say $total;
