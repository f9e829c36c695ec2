variable total  0 total !

: add-number ( c-addr u -- )
    s>number? 0= abort" not a number" d>s total +! ;

: add-line ( c-addr u -- )
    begin
        bl skip dup
    while
        2dup bl scan 2dup 2>r nip - add-number 2r>
    repeat 2drop ;

create buf 256 allot
: read-stdin ( -- )
    begin buf 256 stdin read-line throw while buf swap add-line repeat drop ;

: add-args ( -- )
    begin next-arg dup while add-number repeat 2drop ;

read-stdin add-args total @ 0 .r cr bye
