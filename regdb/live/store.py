"""The listener's own journal: accepted notifications, durable before the registry hears 200.

SQLite has one writer, and a sync holds the inventory's write lock for its whole run (minutes on a big
registry). The registry, meanwhile, sends one event per POST and waits for each answer (distribution 2.8:
serial delivery). So the listener never writes the inventory while answering: it appends the event to this
small SQLite file of its own (WAL, ``synchronous=FULL``: the 200 means the event survives a power cut) and
answers; a single applier drains the journal into the inventory in batches whenever the write lock is free.

An event whose id is already in the journal is not stored twice (the registry re-sends until it hears 2xx).
Rows are deleted once the inventory has committed them; ``applied_events`` there is what makes applying
idempotent across a crash between the two commits.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

# How long an append waits for the journal's own lock (the applier deletes applied rows in short transactions).
JOURNAL_BUSY_TIMEOUT_MS = 5_000
SYNC_MODES = ("full", "normal")

SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT UNIQUE,
    received_at TEXT NOT NULL,
    body TEXT NOT NULL,
    problem TEXT
)
"""


@dataclass(frozen=True)
class Journaled:
    seq: int
    event_id: str | None
    received_at: str
    body: str
    problem: str | None  # set when the listener already knew it cannot be applied (wrong shape)


class _Waiter:
    def __init__(self, events: list[tuple[str | None, str, str | None]], received_at: str):
        self.events = events
        self.received_at = received_at
        self.new = 0
        self.error: BaseException | None = None
        self.done = threading.Event()


class EventStore:
    """Append-only inbox of notifications, one SQLite file. Thread-safe: one connection per thread."""

    def __init__(self, path: str | Path, *, synchronous: str = "full"):
        """``synchronous="full"``: an event answered 200 survives a power cut (an fsync per commit);
        ``"normal"``: it survives the listener being killed, not the machine losing power (WAL without fsync
        at commit): several times the rate where fsync is slow."""
        if synchronous not in SYNC_MODES:
            raise ValueError(f"synchronous must be one of {SYNC_MODES}")
        self.synchronous = synchronous.upper()
        self.path = str(path)
        self._local = threading.local()
        self._queue_lock = threading.Lock()
        self._queue: list[_Waiter] = []
        self._committing = False
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {JOURNAL_BUSY_TIMEOUT_MS}")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            self._local.conn = conn
        return conn

    def append(self, events: list[tuple[str | None, str, str | None]], received_at: str) -> int:
        """Store (event id, JSON body, problem) rows durably; returns how many were new (not seen before).

        Group commit: one fsync costs milliseconds, so concurrent appends (several registries, or replicas,
        sending at once) are written in one transaction by whichever caller finds no commit running; the
        others wait for it. Each caller returns only once its own rows are committed."""
        waiter = _Waiter(events, received_at)
        with self._queue_lock:
            self._queue.append(waiter)
            lead = not self._committing
            self._committing = True
        if lead:
            while True:
                with self._queue_lock:
                    group, self._queue = self._queue, []
                    if not group:
                        self._committing = False
                        break
                self._commit(group)
        waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error
        return waiter.new

    def _commit(self, group: list["_Waiter"]) -> None:
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for waiter in group:
                    before = conn.total_changes
                    conn.executemany(
                        "INSERT OR IGNORE INTO inbox (event_id, received_at, body, problem) VALUES (?, ?, ?, ?)",
                        [(event_id, waiter.received_at, body, problem) for event_id, body, problem in waiter.events],
                    )
                    waiter.new = conn.total_changes - before
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except BaseException as error:  # every waiter of the group hears it (a full disk: each answers 500)
            for waiter in group:
                waiter.error = error
        for waiter in group:
            waiter.done.set()

    def pending(self, limit: int) -> list[Journaled]:
        rows = self._connect().execute(
            "SELECT seq, event_id, received_at, body, problem FROM inbox ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [Journaled(*row) for row in rows]

    def count(self) -> int:
        return self._connect().execute("SELECT count(*) FROM inbox").fetchone()[0]

    def done(self, upto_seq: int) -> None:
        """Forget every event up to ``upto_seq``: the inventory has committed them."""
        conn = self._connect()
        conn.execute("DELETE FROM inbox WHERE seq <= ?", (upto_seq,))

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
