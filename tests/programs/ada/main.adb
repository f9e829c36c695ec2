with Ada.Text_IO;         use Ada.Text_IO;
with Ada.Long_Long_Integer_Text_IO;
with Ada.Command_Line;    use Ada.Command_Line;

procedure Main is
   Total : Long_Long_Integer := 0;
   N     : Long_Long_Integer;
begin
   while not End_Of_File loop
      begin
         Ada.Long_Long_Integer_Text_IO.Get (N);
         Total := Total + N;
      exception
         when End_Error => exit;
      end;
   end loop;
   for I in 1 .. Argument_Count loop
      Total := Total + Long_Long_Integer'Value (Argument (I));
   end loop;
   Put_Line (Long_Long_Integer'Image (Total) (2 .. Long_Long_Integer'Image (Total)'Last));
end Main;
