let () =
  let total = ref 0 in
  (try
     while true do
       Scanf.scanf " %d" (fun n -> total := !total + n)
     done
   with _ -> ());
  Array.iteri (fun i a -> if i > 0 then total := !total + int_of_string a) Sys.argv;
  Printf.printf "%d\n" !total
