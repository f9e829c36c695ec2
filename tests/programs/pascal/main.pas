program Main;
uses SysUtils;
var
  total, n: Int64;
  i: Integer;
begin
  total := 0;
  while not SeekEof do
  begin
    Read(n);
    total := total + n;
  end;
  for i := 1 to ParamCount do
    total := total + StrToInt64(ParamStr(i));
  WriteLn(total);
end.
