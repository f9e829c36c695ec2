program Main;
begin
  undeclared := 1;
end.
