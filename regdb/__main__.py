"""``python -m regdb``: the same CLI as the ``regdb`` console script."""

from .cli import main

main(prog_name="regdb")
