"""`python -m dpodoctor` runs the same CLI as the `dpodoctor` command."""

from dpodoctor.cli import main

main()
