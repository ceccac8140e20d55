"""The same inventory on PostgreSQL (Debian's server, started by tests/rig/pg.py): migrations without
drift and back to base, a sync from a real registry, the views and documented examples giving exactly what
they give on SQLite, selectors with PostgreSQL's regex operator, ``regdb sql`` read-only through a read-only
transaction, readers never blocked by a sync, and writers serialized by the advisory lock.
"""

from __future__ import annotations

import threading
import time
from contextlib import closing

import pytest
from sqlalchemy import text

from regdb import Inventory, InventoryBusy, RegistryClient
from regdb.errors import ReadOnlyViolation, SqlError
from regdb.inventory import db as regdb_db
from regdb.inventory.db import create_inventory_engine, write_transaction
from regdb.inventory.views import VIEWS
from tests.rig.cli import run
from tests.rig.dataset import (
    FORMATS,
    LITERAL,
    Dataset,
    assert_migrations_round_trip,
    documented_examples,
    example_expected,
    example_params,
    push_dataset,
)
from tests.rig.pusher import Pusher


@pytest.fixture(scope="module")
def data(registry) -> Dataset:
    return push_dataset(Pusher(registry.url), registry.host, registry.url)


@pytest.fixture(scope="module")
def synced_pg(postgres_server, data) -> str:
    """A PostgreSQL inventory of the dataset, synced through the CLI as a user would."""
    name = postgres_server.create_database("synced")
    url = postgres_server.url(name)
    result = run("-reg", data.url, "--db", url, "sync", *data.repos)
    assert result.exit_code == 0, result.output
    assert "4 repositories, 6 tags" in result.output
    yield url
    postgres_server.drop_database(name)


@pytest.fixture(scope="module")
def synced_sqlite(data, tmp_path_factory) -> str:
    db = str(tmp_path_factory.mktemp("pg-vs-sqlite") / "inventory.db")
    result = run("-reg", data.url, "--db", db, "sync", *data.repos)
    assert result.exit_code == 0, result.output
    return db


def rows(db: str, statement: str, params=None) -> list[tuple]:
    with Inventory(db, readonly=True) as inventory, inventory.sql(statement, params) as result:
        return [tuple(row) for row in result]


# --- migrations -----------------------------------------------------------------------------------------------


def test_migrations_round_trip_on_postgresql(pg_url):
    engine = create_inventory_engine(pg_url)
    try:
        assert_migrations_round_trip(engine)
    finally:
        engine.dispose()


# --- the views and examples, as on SQLite ---------------------------------------------------------------------


@pytest.mark.parametrize("view", [v.name for v in VIEWS])
def test_view_answers_exactly_as_on_sqlite(synced_pg, synced_sqlite, data, view):
    statement = f"SELECT * FROM {view}"
    on_pg = rows(synced_pg, statement)
    assert sorted(on_pg, key=repr) == sorted(rows(synced_sqlite, statement), key=repr)
    assert set(on_pg) == data.expected_views()[view]


@pytest.mark.parametrize("example", [e for e in documented_examples() if e.backend in (None, "postgresql")],
                         ids=lambda e: e.name)
def test_documented_example_gives_the_documented_answer(synced_pg, data, example):
    assert rows(synced_pg, example.sql, example_params(example, data)) == example_expected(example, data)


def test_resync_fetches_nothing_new(synced_pg, data):
    result = run("-reg", data.url, "--db", synced_pg, "sync", *data.repos)
    assert result.exit_code == 0, result.output
    assert "4 repositories, 6 tags, 0 new manifests" in result.output


def test_selectors_match_regexes_with_postgresql_s_operator(synced_pg, synced_sqlite, data):
    # Anchored at the start like re.match (a tag that merely contains '\.0' is not matched), with global flags.
    repos = [data.repo("app"), data.repo("tool")]
    for db in (synced_pg, synced_sqlite):
        with Inventory(db) as inventory:
            selected = inventory.query_tags(data.url, repos, regex=[r"1\.1", r"(?i)LATEST"])
            assert [(row.repo, row.digest) for row in selected] == [(data.repo("app"), data.b.digest)]
            assert list(inventory.query_tags(data.url, repos, regex=[r"\.0"])) == []
            selected = inventory.query_tags(data.url, repos, regex=[r"[12]\.0"], raise_intersecting_repo=False)
            # A (app:1.0) is also in mirror, outside the selection: left out; C (tool:2.0) is selected.
            assert [(row.repo, row.digest) for row in selected] == [(data.repo("tool"), data.c.digest)]
            listed = inventory.list_tags(data.url, [data.repo("app")])
            assert [row.tag for row in listed] == ["1.0", "1.1", "latest"]


# --- regdb sql ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_sql_prints_each_format_exactly_as_on_sqlite(synced_pg, fmt):
    result = run("--db", synced_pg, "sql", "--format", fmt, LITERAL)
    assert result.exit_code == 0, result.output
    assert result.output == FORMATS[fmt]


def test_sql_binds_params(synced_pg, data):
    result = run("--db", synced_pg, "sql", "--format", "csv",
                 "SELECT repo, tags FROM repo_stats WHERE tags >= CAST(:n AS INTEGER) AND repo LIKE :p ORDER BY repo",
                 "--param", "n=2", "--param", f"p={data.prefix}/%")
    assert result.exit_code == 0, result.output
    assert result.output == f"repo,tags\n{data.repo('app')},3\n"


def test_sql_error_is_postgresql_s_message_on_one_line(synced_pg):
    result = run("--db", synced_pg, "sql", "SELECT * FROM imagez")
    assert result.exit_code == 1
    assert result.output == 'Error: relation "imagez" does not exist\n'


PG_REFUSED = [
    ("INSERT INTO registries (url, name) VALUES ('http://x', 'x')",
     "read-only SQL: cannot execute INSERT in a read-only transaction"),
    ("UPDATE digests SET size = 0", "read-only SQL: cannot execute UPDATE in a read-only transaction"),
    ("DELETE FROM tags", "read-only SQL: cannot execute DELETE in a read-only transaction"),
    # PostgreSQL names the statement's top level: a SELECT whose WITH deletes.
    ("WITH doomed AS (DELETE FROM tags RETURNING id) SELECT COUNT(*) FROM doomed",
     "read-only SQL: cannot execute SELECT in a read-only transaction"),
    ("DROP TABLE tags", "read-only SQL: cannot execute DROP TABLE in a read-only transaction"),
    ("CREATE TABLE scratch (a integer)", "read-only SQL: cannot execute CREATE TABLE in a read-only transaction"),
    # A second statement cannot ride along: the statement is prepared, and prepared statements are single.
    ("COMMIT; DROP TABLE tags", "cannot insert multiple commands into a prepared statement"),
    # The snapshot is taken before the user's statement, so the transaction cannot be turned read-write.
    ("SET TRANSACTION READ WRITE", "transaction read-write mode must be set before any query"),
]


@pytest.mark.parametrize("statement, message", PG_REFUSED, ids=[s for s, _ in PG_REFUSED])
def test_sql_refuses_writes_on_postgresql(synced_pg, statement, message):
    before = rows(synced_pg, "SELECT (SELECT COUNT(*) FROM tags), (SELECT COUNT(*) FROM registries)")
    result = run("--db", synced_pg, "sql", statement)
    assert result.exit_code == 1
    assert result.output == f"Error: {message}\n"
    assert rows(synced_pg, "SELECT (SELECT COUNT(*) FROM tags), (SELECT COUNT(*) FROM registries)") == before
    assert rows(synced_pg, "SELECT COUNT(*) FROM pg_tables WHERE tablename = 'scratch'") == [(0,)]


def test_a_session_setting_does_not_outlive_its_statement(synced_pg):
    # SET SESSION ... READ WRITE is allowed inside a read-only transaction, but the rollback undoes it: the
    # next statement on the same pooled connection is read-only again.
    with Inventory(synced_pg, readonly=True) as inventory:
        with inventory.sql("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE") as result:
            assert list(result) == []
        with pytest.raises(ReadOnlyViolation, match="cannot execute DELETE in a read-only transaction"):
            inventory.sql("DELETE FROM tags")
        with pytest.raises(SqlError, match="^A value is required for bind parameter 'repo'$"):
            inventory.sql("SELECT * FROM images WHERE repo = :repo")


def test_password_in_the_url_never_reaches_the_output(postgres_server):
    url = f"postgresql+psycopg://regdb:hunter2@127.0.0.1:{postgres_server.port}/no_such_database"
    for args in (["sql", "SELECT 1"], ["-reg", "http://127.0.0.1:9", "sync"]):
        result = run("--db", url, *args)
        assert result.exit_code == 1
        assert "hunter2" not in result.output
        assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
        assert 'database "no_such_database" does not exist' in result.output


# --- concurrency ----------------------------------------------------------------------------------------------


def test_readers_see_the_last_snapshot_while_a_writer_holds_its_transaction(synced_pg):
    (count,) = rows(synced_pg, "SELECT COUNT(*) FROM tags")[0]
    engine = create_inventory_engine(synced_pg)
    try:
        with write_transaction(engine) as conn:
            conn.execute(text("DELETE FROM tags"))
            seen: list = []
            reader = threading.Thread(target=lambda: seen.append(rows(synced_pg, "SELECT COUNT(*) FROM tags")))
            reader.start()
            reader.join(10)
            assert not reader.is_alive(), "a reader waited for the writer"
            assert seen == [[(count,)]]
            conn.rollback()
    finally:
        engine.dispose()


def test_writers_wait_for_each_other_then_give_up_with_inventory_busy(pg_url, monkeypatch):
    Inventory(pg_url).close()  # migrated
    engine = create_inventory_engine(pg_url)
    other = create_inventory_engine(pg_url)
    try:
        with write_transaction(engine):
            monkeypatch.setattr(regdb_db, "BUSY_TIMEOUT_MS", 300)
            started = time.monotonic()
            with pytest.raises(InventoryBusy, match="another regdb run is writing to"):
                with write_transaction(other):
                    pass
            assert time.monotonic() - started >= 0.3
            monkeypatch.setattr(regdb_db, "BUSY_TIMEOUT_MS", 10_000)

            # A second writer that starts now waits for the first, and proceeds once it has committed.
            entered: list[float] = []

            def second_writer():
                with write_transaction(other):
                    entered.append(time.monotonic())

            thread = threading.Thread(target=second_writer)
            thread.start()
            # Wait until the second writer is blocked on the lock (PostgreSQL says so), not for a guessed time.
            deadline = time.monotonic() + 30
            with engine.connect() as watcher:
                while not watcher.execute(text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )).scalar():
                    assert time.monotonic() < deadline, "the second writer never waited for the lock"
                    time.sleep(0.01)
            assert entered == []
            released = time.monotonic()
        thread.join(10)
        assert entered and entered[0] >= released
    finally:
        engine.dispose()
        other.dispose()


def test_sync_into_postgresql_from_the_library(pg_url, data):
    with Inventory(pg_url) as inventory, closing(RegistryClient(data.url)) as client:
        result = inventory.sync(client, data.repos)
        assert (result.repos, result.tags) == (4, 6)
        assert inventory.last_synced(data.url) is not None
    assert set(rows(pg_url, "SELECT * FROM images")) == data.images()
