"""A Ctrl-C, worded once: shared by the console scripts' entry and the group's error boundary.

Standard library only: ``regdb.entry`` imports it before anything that could take long to import.
"""

from __future__ import annotations

import logging
import signal
import sys

# The shell's convention for a process ended by SIGINT: 128 + 2.
INTERRUPTED = 130


def interrupted(prog_name: str, message: str = "interrupted") -> int:
    """Say so once and leave with 130; a second Ctrl-C while saying it is ignored, not a traceback.

    Worker threads may still be finishing a request (a sync's HEADs): their log lines would come after this
    one, which must be the last thing the person reads. Logging stops here."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.disable(logging.CRITICAL)
    try:
        sys.stderr.write(f"{prog_name}: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed or a broken pipe: the exit status still says it
        pass
    return INTERRUPTED
