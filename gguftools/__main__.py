from gguftools.cli import main

main()
