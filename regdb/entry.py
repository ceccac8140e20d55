"""The console scripts' entry points: ``regdb`` and ``dregutil``.

Only the standard library is imported here, so that everything regdb imports (click, SQLAlchemy, requests)
is imported inside ``_run``: a Ctrl-C at any moment from here on, imports included, ends with one line on
stderr and exit status 130, never a traceback. Inside a command, ``cli.RegdbGroup`` words the interruption
for what was being done (a sync keeps its last snapshot, a removal says what it did and did not delete).
"""

from __future__ import annotations

import signal
import sys

# The shell's convention for a process ended by SIGINT: 128 + 2.
INTERRUPTED = 130


def _run(prog_name: str) -> int:
    try:
        if prog_name == "dregutil":
            from .dregutil import main as dregutil_main

            return dregutil_main()
        from .cli import main

        return main(prog_name=prog_name)
    except KeyboardInterrupt:
        return interrupted(prog_name)


def interrupted(prog_name: str, message: str = "interrupted") -> int:
    """Say so once and leave with 130; a second Ctrl-C while saying it is ignored, not a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        sys.stderr.write(f"{prog_name}: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed or a broken pipe: the exit status still says it
        pass
    return INTERRUPTED


def regdb() -> int:
    return _run("regdb")


def dregutil() -> int:
    return _run("dregutil")
