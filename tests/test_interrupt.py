"""Ctrl-C at any moment, from the console script's entry point on: exit 130, one line, never a traceback.

Each case runs regdb in a child process with the interruption made to happen at a chosen point: a
KeyboardInterrupt raised while a given module is being imported (what a Ctrl-C during start-up is), or from
inside the sync's last write to the inventory. A real SIGINT during a sync's tag resolution is
tests/test_sync.py::test_a_killed_sync_leaves_the_previous_snapshot; during a removal's DELETEs,
tests/faults/test_journal_faults.py.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from regdb import Inventory, RegistryClient

# Runs the real entry point (regdb/entry.py, what the console script calls) after arranging the interruption.
CHILD = textwrap.dedent(
    """
    import importlib.abc, sys

    point, argv = sys.argv[1], sys.argv[2:]

    class InterruptOnImport(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == point.removeprefix("import:"):
                raise KeyboardInterrupt
            return None

    if point.startswith("import:"):
        sys.meta_path.insert(0, InterruptOnImport())
    elif point == "sync-write":
        import regdb.inventory.sync

        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt

        regdb.inventory.sync.SnapshotWriter.drop_repos = interrupted  # inside the open write transaction

    from regdb.entry import regdb
    sys.argv = ["regdb", *argv]
    sys.exit(regdb())
    """
)


def run_interrupted(point: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD, point, *argv], capture_output=True, text=True,
                          timeout=120)


def assert_one_interrupted_line(run: subprocess.CompletedProcess, expected: str) -> None:
    assert "Traceback" not in run.stderr, run.stderr
    assert (run.returncode, run.stdout, run.stderr) == (130, "", expected + "\n")


@pytest.mark.parametrize("module", ["regdb.cli.app", "click", "sqlalchemy"])
def test_ctrl_c_while_importing(module, tmp_path):
    run = run_interrupted(f"import:{module}", "--db", str(tmp_path / "inv.db"), "sql", "SELECT 1")
    # Before the command runs the line is "regdb: interrupted"; inside it, it adds that the inventory is intact.
    assert "Traceback" not in run.stderr, run.stderr
    assert (run.returncode, run.stdout) == (130, "")
    assert run.stderr in ("regdb: interrupted\n",
                          "regdb: interrupted; the inventory keeps its last complete snapshot\n"), run.stderr
    assert not (tmp_path / "inv.db").exists()


def test_ctrl_c_before_the_first_request(tmp_path):
    # requests is imported when the client is first needed, before any request is sent.
    run = run_interrupted("import:requests", "-reg", "http://127.0.0.1:9", "--db", str(tmp_path / "inv.db"),
                          "sync")
    assert_one_interrupted_line(run, "regdb: interrupted; the inventory keeps its last complete snapshot")
    assert not (tmp_path / "inv.db").exists()


def test_ctrl_c_while_writing_the_inventory(fresh_registry, fresh_pusher, tmp_path):
    fresh_pusher.push_image("app", "1.0")
    db = tmp_path / "inv.db"
    with Inventory(db) as inventory:
        inventory.sync(RegistryClient(fresh_registry.url))
    fresh_pusher.push_image("app", "2.0")
    with sqlite3.connect(db) as conn:
        before = conn.execute("SELECT repo, tag, digest FROM images ORDER BY 1, 2").fetchall()

    run = run_interrupted("sync-write", "-reg", fresh_registry.url, "--db", str(db), "sync")

    assert_one_interrupted_line(run, "regdb: interrupted; the inventory keeps its last complete snapshot")
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT repo, tag, digest FROM images ORDER BY 1, 2").fetchall() == before
        assert [row[0] for row in conn.execute("SELECT status FROM syncs ORDER BY id")] == ["ok", "failed"]
