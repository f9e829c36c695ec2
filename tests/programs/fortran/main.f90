program main
  implicit none
  integer(kind=8) :: n, total
  integer :: ios, i, p, q, last
  character(len=4096) :: line
  character(len=64) :: arg
  total = 0
  do
    read(*, '(A)', iostat=ios) line
    if (ios /= 0) exit
    last = len_trim(line)
    p = 1
    do while (p <= last)
      if (line(p:p) == ' ' .or. line(p:p) == char(9)) then
        p = p + 1
        cycle
      end if
      q = p
      do while (q <= last)
        if (line(q:q) == ' ' .or. line(q:q) == char(9)) exit
        q = q + 1
      end do
      read(line(p:q-1), *) n
      total = total + n
      p = q
    end do
  end do
  do i = 1, command_argument_count()
    call get_command_argument(i, arg)
    read(arg, *) n
    total = total + n
  end do
  print '(I0)', total
end program main
