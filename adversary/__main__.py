"""`python -m adversary` runs the CLI."""

from adversary.cli import main

main()
