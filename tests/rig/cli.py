"""The CLI run in this process, the one way the tests run it: ``run("-reg", url, "--db", db, "sync")`` reads
as the command line it stands for. The console scripts themselves (``Path(sys.executable).parent / "regdb"``)
are run as subprocesses only where a test needs a real process: signals, exit on a broken pipe, start-up cost.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from click.testing import CliRunner, Result

from regdb.cli.app import main
from regdb.cli.dregutil import main as dregutil_main

# setup_logging() in regdb's main() points these loggers at the stream the run's output was captured in.
CLI_LOGGERS = ("regdb", "urllib3")


@contextlib.contextmanager
def kept_logging() -> Iterator[None]:
    """Undo what a CLI run in this process does to the ``regdb`` and ``urllib3`` loggers (their handlers, level
    and propagation, and the ``logging.disable`` a Ctrl-C leaves), so later tests that read regdb's records
    through the root logger still see them."""
    saved = [(logger, list(logger.handlers), logger.level, logger.propagate)
             for logger in map(logging.getLogger, CLI_LOGGERS)]
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
        for logger, handlers, level, propagate in saved:
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate


def run(*args, input: str | None = None, env: dict | None = None, prog_name: str | None = None,
        exit_code: int | None = None) -> Result:
    """``regdb ARGS``: arguments may be paths or numbers, ``input`` is stdin, ``env`` is added to the environment.

    With ``exit_code``, the run must end with it (the output is the assertion's message). An exception other
    than SystemExit is a bug in regdb, whatever the arguments (a user sees one line and an exit status, never a
    traceback): it is raised here with its own traceback, not left in ``result.exception``."""
    # Given as None, prog_name would make click name the program after sys.argv[0] ("python -m pytest").
    named = {"prog_name": prog_name} if prog_name is not None else {}
    with kept_logging():
        result = CliRunner().invoke(main, [str(arg) for arg in args], input=input, env=env, **named)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    if exit_code is not None:
        assert result.exit_code == exit_code, result.output
    return result


def error_line(result: Result) -> str:
    """The one line a failed command printed, after checking it is one line, exit 1 and no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: "), lines[0]
    return lines[0][len("Error: "):]


@dataclass
class DregutilRun:
    returncode: int
    stdout: str
    stderr: str


def run_dregutil(argv: list[str]) -> DregutilRun:
    """``dregutil`` in this process (its main(), as the console script calls it): a second per run saved, so
    the whole suite fits the test-time budget; the console script itself is run in the removal test."""
    out, err = io.StringIO(), io.StringIO()
    with kept_logging(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            dregutil_main(argv)
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return DregutilRun(code, out.getvalue(), err.getvalue())
