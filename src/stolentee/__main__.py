from stolentee.cli import main

main()
