"""Fixtures of the fault-injection suite: a registry per module, short client timeouts, the CLI, and ways to
look at an inventory file from outside regdb (plain ``sqlite3``, as a BI tool would). The fault proxy itself is
in ``proxy.py``; tests that kill or delete use the shared ``fresh_registry``."""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from regdb.cli.app import main
from regdb.registry.client import RegistryClient
from tests.rig import start_registry


@pytest.fixture(autouse=True)
def _restore_logging():
    """The CLI's setup_logging() gives the "regdb" and "urllib3" loggers a handler on the stream CliRunner
    captured and stops them propagating; left so, later suites that read log records at the root see nothing.
    Each test here leaves the loggers as it found them."""
    saved = {}
    for name in ("regdb", "urllib3"):
        logger = logging.getLogger(name)
        saved[name] = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.fixture(scope="module")
def module_registry(registry_binary, tmp_path_factory):
    """A registry for one test module: populated once by the module, never killed. Tests may add images but
    never delete or count repositories across tests."""
    registry = start_registry(tmp_path_factory.mktemp("registry"))
    yield registry
    registry.stop()


@pytest.fixture
def short_timeouts(monkeypatch):
    """Every ``RegistryClient`` made during the test waits 0.5 s for an answer instead of 60, and backs off
    for hundredths of a second instead of seconds: the faults are the same, the test takes seconds.

    The CLI builds its client with the defaults, so the defaults are what is shortened."""
    defaults = dict(RegistryClient.__init__.__kwdefaults__)
    defaults.update(timeout=(1.0, 0.5), backoff=0.01)
    monkeypatch.setattr(RegistryClient.__init__, "__kwdefaults__", defaults)
    return defaults


def run(*args, input: str | None = None):
    return CliRunner().invoke(main, [str(arg) for arg in args], input=input)


def error_line(result) -> str:
    """The one line a failed command printed, after checking it is one line, exit 1 and no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: "), lines[0]
    return lines[0][len("Error: "):]


def snapshot(db: Path) -> dict[str, list]:
    """Everything a reader sees of one registry's state, in a form two snapshots can be compared in."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return {
            "images": sorted(conn.execute("SELECT repo, tag, digest, media_type, size FROM images")),
            "manifests": sorted(conn.execute(
                "SELECT r.name, d.digest FROM repo_digests rd JOIN repos r ON r.id = rd.repo_id "
                "JOIN digests d ON d.id = rd.digest_id")),
            "digests": sorted(conn.execute("SELECT digest, kind, size, total_size FROM digests")),
        }


def syncs(db: Path) -> list[tuple[str, str | None]]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return list(conn.execute("SELECT status, error FROM syncs ORDER BY id"))


def integrity(db: Path) -> str:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def registry_state(pusher, repos) -> list[tuple[str, str, str]]:
    """(repo, tag, digest) of every tag of ``repos``, asked of the registry itself."""
    return sorted((repo, tag, pusher.head_digest(repo, tag)) for repo in repos for tag in pusher.tags(repo) or [])
