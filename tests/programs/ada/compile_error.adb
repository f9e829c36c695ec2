procedure Main is
   X : Integer := "text";
begin
   null;
end Main;
