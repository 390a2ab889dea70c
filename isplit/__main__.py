from isplit.cli import main

main()
