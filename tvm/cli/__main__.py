from tvm.cli import main

main()
