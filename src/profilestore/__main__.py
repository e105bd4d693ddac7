"""`python -m profilestore` is the `profilestore` command."""

from profilestore.cli import main

main()
