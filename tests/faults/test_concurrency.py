"""Two runs at once on one inventory: two syncs, and readers (``regdb sql``, a BI tool's sqlite3 connection)
during a sync and during a removal.

SQLite in WAL mode lets one writer and any number of readers work at once: readers see the last committed
snapshot and never wait; a second writer waits for the first (``busy_timeout``, 10 s) and then either goes
ahead or gives up with one line. A run is held mid-way deterministically: a proxy rule blocks one request
until the test releases it, so "during" means during, not "probably during".
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import pytest

import regdb.inventory.db
from regdb import Inventory, RegistryClient
from regdb.cleanup.plan import TagQuery
from tests.rig.cli import error_line, run
from tests.rig.fault_proxy import FaultProxy, Hook
from tests.rig.state import integrity, snapshot, syncs

HOLD = 10.0  # the longest a gate holds a run, should a test fail before releasing it


class Gate:
    """A proxy hook that stops the request it claims until ``release()``; ``reached`` says it got there."""

    def __init__(self):
        self.reached = threading.Event()
        self.opened = threading.Event()

    def __call__(self) -> None:
        self.reached.set()
        self.opened.wait(HOLD)

    def release(self) -> None:
        self.opened.set()


class Background(threading.Thread):
    """Run ``fn`` in a thread; ``join()`` returns its result or raises its exception."""

    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn = fn
        self.result = self.error = None

    def run(self):
        try:
            self.result = self.fn()
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            self.error = error

    def join(self, timeout=None):
        super().join(timeout if timeout is not None else HOLD * 2)
        assert not self.is_alive(), "the background run did not finish"
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def setup(fresh_registry, fresh_pusher, tmp_path):
    """A registry behind a proxy, an inventory synced once, and new images so the next sync has work."""
    p = fresh_pusher
    old = [p.push_image("app", f"1.{minor}") for minor in range(4)]
    kept = [p.push_image("app", f"2.{minor}") for minor in range(2)]
    with FaultProxy(fresh_registry.url) as proxy:
        db = tmp_path / "inv.db"
        assert run("-reg", proxy.url, "--db", db, "sync").exit_code == 0
        yield proxy, p, db, old, kept


def library_sync(proxy, db):
    with Inventory(db) as inventory:
        return inventory.sync(RegistryClient(proxy.url), jobs=4)


def sql_rows(db, statement: str) -> list[dict]:
    result = run("--db", db, "sql", "--format", "json", statement)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


# --- two syncs ------------------------------------------------------------------------------------------------


def test_a_second_sync_waits_for_the_first_and_then_runs(setup):
    proxy, p, db, old, kept = setup
    p.push_image("app", "3.0")
    gate = Gate()
    proxy.add(Hook(method="HEAD", times=1, action=gate))
    first = Background(lambda: library_sync(proxy, db))
    first.start()
    assert gate.reached.wait(HOLD)  # the first sync holds the write lock, stopped at a HEAD
    threading.Timer(1.0, gate.release).start()
    started = time.monotonic()
    second = run("-reg", proxy.url, "--db", db, "sync")
    waited = time.monotonic() - started
    assert second.exit_code == 0, second.output
    assert first.join().repos == 1
    assert waited >= 0.9  # it did wait for the first one's commit
    assert [status for status, _ in syncs(db)] == ["ok", "ok", "ok"]
    assert ("app", "3.0") in {(repo, tag) for repo, tag, *_ in snapshot(db)["images"]}
    assert integrity(db) == "ok"


def test_a_second_sync_that_waited_too_long_says_another_run_is_writing(setup, monkeypatch):
    proxy, p, db, old, kept = setup
    p.push_image("app", "3.0")
    gate = Gate()
    proxy.add(Hook(method="HEAD", times=1, action=gate))
    first = Background(lambda: library_sync(proxy, db))
    first.start()
    try:
        assert gate.reached.wait(HOLD)
        # The second run's connections are opened after this: it waits 0.3 s for the lock instead of 10.
        monkeypatch.setattr(regdb.inventory.db, "BUSY_TIMEOUT_MS", 300)
        before = snapshot(db)
        second = run("-reg", proxy.url, "--db", db, "sync")
        assert error_line(second) == f"another regdb run is writing to {db}; try again when it has finished"
        assert snapshot(db) == before  # the first run's writes are not visible before its commit
    finally:
        gate.release()
    first.join()
    assert [status for status, _ in syncs(db)] == ["ok", "ok"]  # the refused run could not even record itself
    assert ("app", "3.0") in {(repo, tag) for repo, tag, *_ in snapshot(db)["images"]}
    assert integrity(db) == "ok"


# --- readers and writers ------------------------------------------------------------------------------------


def test_a_long_reader_does_not_block_a_sync_and_keeps_its_snapshot(setup):
    proxy, p, db, old, kept = setup
    p.push_image("app", "3.0")
    # A BI tool's connection in the middle of a long read: its transaction holds a snapshot.
    reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
    try:
        reader.execute("BEGIN")
        count_before = reader.execute("SELECT count(*) FROM images").fetchone()[0]
        started = time.monotonic()
        result = run("-reg", proxy.url, "--db", db, "sync")
        assert result.exit_code == 0, result.output
        assert time.monotonic() - started < 5
        assert reader.execute("SELECT count(*) FROM images").fetchone()[0] == count_before
        reader.execute("COMMIT")
        assert reader.execute("SELECT count(*) FROM images").fetchone()[0] == count_before + 1
    finally:
        reader.close()
    assert integrity(db) == "ok"


def test_regdb_sql_answers_at_once_while_a_sync_holds_the_write_lock(setup):
    proxy, p, db, old, kept = setup
    p.push_image("app", "3.0")
    gate = Gate()
    proxy.add(Hook(method="HEAD", times=1, action=gate))
    writer = Background(lambda: library_sync(proxy, db))
    writer.start()
    try:
        assert gate.reached.wait(HOLD)
        started = time.monotonic()
        rows = sql_rows(db, "SELECT tag FROM images ORDER BY tag")
        assert time.monotonic() - started < 2
        assert writer.is_alive()  # the sql did not wait for the sync: the sync is still held
        assert [row["tag"] for row in rows] == ["1.0", "1.1", "1.2", "1.3", "2.0", "2.1"]  # the last snapshot
    finally:
        gate.release()
    writer.join()
    assert "3.0" in [row["tag"] for row in sql_rows(db, "SELECT tag FROM images")]


def test_a_long_reader_does_not_block_a_removal(setup):
    proxy, p, db, old, kept = setup
    reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM images").fetchone()[0] == 6
        started = time.monotonic()
        result = run("-reg", proxy.url, "--db", db, "remove-tags", "--yes", "-r", "app", "-t", "<2")
        assert result.exit_code == 0, result.output
        assert time.monotonic() - started < 5
        assert reader.execute("SELECT count(*) FROM images").fetchone()[0] == 6
        assert reader.execute("SELECT count(*) FROM deletions").fetchone()[0] == 0
        reader.execute("COMMIT")
        assert reader.execute("SELECT count(*) FROM images").fetchone()[0] == 2
    finally:
        reader.close()
    assert p.tags("app") == ["2.0", "2.1"]


def test_regdb_sql_during_a_removal_sees_deletions_and_inventory_agree(setup):
    proxy, p, db, old, kept = setup
    gate = Gate()
    # The third DELETE is held: the first ones are done and recorded, the run is not over.
    proxy.add(Hook(method="DELETE", every=3, times=1, action=gate))

    def remove():
        with Inventory(db) as inventory:
            client = RegistryClient(proxy.url)
            return inventory.remove(client, TagQuery(["app"], tags=["<2"]), jobs=1)

    removal = Background(remove)
    removal.start()
    try:
        assert gate.reached.wait(HOLD)
        started = time.monotonic()
        deleted = {row["digest"] for row in sql_rows(
            db, "SELECT digest FROM deletions WHERE outcome = 'deleted'")}
        listed = {row["digest"] for row in sql_rows(db, "SELECT digest FROM images WHERE repo = 'app'")}
        assert time.monotonic() - started < 3
        assert removal.is_alive()
    finally:
        gate.release()
    result = removal.join()
    assert len(deleted) == 2  # two DELETEs were answered before the third was held
    assert deleted.isdisjoint(listed)  # every recorded deletion is already out of the inventory
    assert listed == {image.digest for image in old + kept} - deleted
    assert len(result.deleted) == 4
    assert p.tags("app") == ["2.0", "2.1"]
    assert integrity(db) == "ok"
