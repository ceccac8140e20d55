"""The console scripts' entry points: ``regdb`` and ``dregutil``.

Only the standard library is imported here, so that everything regdb imports (click, SQLAlchemy, requests)
is imported inside ``_run``: a Ctrl-C at any moment from here on, imports included, ends with one line on
stderr and exit status 130, never a traceback. Inside a command, ``cli.RegdbGroup`` words the interruption
for what was being done (a sync keeps its last snapshot, a removal says what it did and did not delete).
"""

from __future__ import annotations

from regdb.cli.interrupt import INTERRUPTED, interrupted


def _run(prog_name: str) -> int:
    try:
        if prog_name == "dregutil":
            from regdb.cli.dregutil import main as dregutil_main

            return dregutil_main()
        from regdb.cli.app import main

        return main(prog_name=prog_name)
    except KeyboardInterrupt:
        return interrupted(prog_name)


def regdb() -> int:
    return _run("regdb")


def dregutil() -> int:
    return _run("dregutil")

__all__ = ["INTERRUPTED", "dregutil", "interrupted", "regdb"]
