from vtag.cli import main

main()
