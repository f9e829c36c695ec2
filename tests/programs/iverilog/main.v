// Verilog has no argv: numbers come from stdin only.
module main;
  integer fd, n, total, code;
  initial begin
    total = 0;
    fd = 32'h8000_0000;
    code = $fscanf(fd, "%d", n);
    while (code == 1) begin
      total = total + n;
      code = $fscanf(fd, "%d", n);
    end
    $display("%0d", total);
    $finish;
  end
endmodule
