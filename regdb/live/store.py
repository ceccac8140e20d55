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


class EventStore:
    """Append-only inbox of notifications, one SQLite file. Thread-safe: one connection per thread."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._local = threading.local()
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {JOURNAL_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous = FULL")
            self._local.conn = conn
        return conn

    def append(self, events: list[tuple[str | None, str, str | None]], received_at: str) -> int:
        """Store (event id, JSON body, problem) rows in one commit; returns how many were new."""
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO inbox (event_id, received_at, body, problem) VALUES (?, ?, ?, ?)",
                [(event_id, received_at, body, problem) for event_id, body, problem in events],
            )
            new = conn.total_changes - before
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return new

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
