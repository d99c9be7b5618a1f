from vpp.sandbox.cli import main

main()
