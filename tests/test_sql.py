"""The inventory as a data source, on SQLite: ``regdb sql`` (formats, parameters, errors, read-only for real),
the views against a real registry, the documented example queries, reading while a sync writes, several
registries in one file, ``regdb schema``, and the migrations. tests/test_postgres.py runs the PostgreSQL side.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy import inspect

from regdb import Inventory, RegistryClient, default_db_path
from regdb.errors import ReadOnlyViolation, SqlError
from regdb.inventory.db import create_inventory_engine
from regdb.inventory.rawsql import describe_schema
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

SQLITE3 = "/usr/bin/sqlite3"


def sync_into(db, data: Dataset) -> None:
    with Inventory(db) as inventory, closing(RegistryClient(data.url)) as client:
        inventory.sync(client, data.repos)


@pytest.fixture(scope="module")
def data(registry) -> Dataset:
    return push_dataset(Pusher(registry.url), registry.host, registry.url)


@pytest.fixture(scope="module")
def inventory_file(data, tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("sql") / "inventory.db"
    sync_into(db, data)
    return db


def fingerprint(db: Path) -> dict[str, str | None]:
    """sha256 of the inventory, its -wal and its -shm (None when absent): what "unchanged" means."""
    return {
        suffix: hashlib.sha256(Path(f"{db}{suffix}").read_bytes()).hexdigest()
        if Path(f"{db}{suffix}").exists() else None
        for suffix in ("", "-wal", "-shm")
    }


# --- the views, against what was pushed -----------------------------------------------------------------------


@pytest.mark.parametrize("view", [v.name for v in VIEWS])
def test_view_rows_are_what_the_registry_holds(inventory_file, data, view):
    with Inventory(inventory_file, readonly=True) as inventory, inventory.sql(f"SELECT * FROM {view}") as result:
        assert result.columns == list(next(v for v in VIEWS if v.name == view).columns)
        rows = [tuple(row) for row in result]
    assert len(rows) == len(set(rows))
    assert set(rows) == data.expected_views()[view]


@pytest.mark.parametrize("example", [e for e in documented_examples() if e.backend in (None, "sqlite")],
                         ids=lambda e: e.name)
def test_documented_example_gives_the_documented_answer(inventory_file, data, example):
    with Inventory(inventory_file, readonly=True) as inventory:
        with inventory.sql(example.sql, example_params(example, data)) as result:
            assert [tuple(row) for row in result] == example_expected(example, data)


# --- output formats -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", list(FORMATS))
def test_sql_prints_each_format_exactly(inventory_file, fmt):
    result = run("--db", inventory_file, "sql", "--format", fmt, LITERAL)
    assert result.exit_code == 0, result.output
    assert result.output == FORMATS[fmt]


def test_sql_defaults_to_the_table_format_and_reads_the_registry_s_default_file(inventory_file, data, monkeypatch):
    # No --db: the file named after --registry, as every command finds it. Copy ours there.
    monkeypatch.chdir(inventory_file.parent)
    default = inventory_file.parent / default_db_path(data.url)
    default.write_bytes(inventory_file.read_bytes())
    result = run("-reg", data.url, "sql", "SELECT tag FROM images WHERE repo = :r ORDER BY tag",
                 "--param", f"r={data.repo('app')}")
    assert result.exit_code == 0, result.output
    assert result.output == "tag\n---\n1.0\n1.1\nlatest\n"


def test_json_output_is_an_array_of_objects_per_row(inventory_file, data):
    result = run("--db", inventory_file, "sql", "--format", "json",
                 "SELECT repo, tags, total_bytes FROM repo_stats ORDER BY repo")
    assert result.exit_code == 0, result.output
    expected = sorted((row[1], row[2], row[4]) for row in data.repo_stats())
    assert [(o["repo"], o["tags"], o["total_bytes"]) for o in json.loads(result.output)] == expected


def test_count_prints_the_number_of_rows(inventory_file):
    result = run("--db", inventory_file, "--count", "sql", "SELECT * FROM images")
    assert result.exit_code == 0, result.output
    assert result.output == "6\n"


# --- parameters -----------------------------------------------------------------------------------------------


def test_params_bind_named_placeholders_as_text(inventory_file, data):
    result = run("--db", inventory_file, "sql", "--format", "csv",
                 "SELECT repo, tags FROM repo_stats WHERE tags >= CAST(:n AS INTEGER) AND repo LIKE :p ORDER BY repo",
                 "--param", "n=2", "--param", f"p={data.prefix}/%")
    assert result.exit_code == 0, result.output
    assert result.output == f"repo,tags\n{data.repo('app')},3\n"


def test_a_colon_inside_a_string_literal_is_not_a_parameter(inventory_file):
    result = run("--db", inventory_file, "sql", "--format", "csv", "SELECT 'a :b' AS text")
    assert result.exit_code == 0, result.output
    assert result.output == "text\na :b\n"


def test_missing_param_is_one_line_error(inventory_file):
    result = run("--db", inventory_file, "sql", "SELECT * FROM images WHERE repo = :repo")
    assert result.exit_code == 1
    assert result.output == "Error: You did not supply a value for binding parameter :repo.\n"


@pytest.mark.parametrize("bad", ["repo", "=x", "two words=x"])
def test_param_without_a_name_is_a_usage_error(inventory_file, bad):
    result = run("--db", inventory_file, "sql", "SELECT 1", "--param", bad)
    assert result.exit_code == 2
    assert f"Error: Invalid value for '--param': expected NAME=VALUE, got '{bad}'" in result.output


# --- errors ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("statement, message", [
    ("SELECT * FROM imagez", "no such table: imagez"),
    ("SELEC 1", 'near "SELEC": syntax error'),
    ("SELECT nope FROM images", "no such column: nope"),
    ("SELECT 1; SELECT 2", "You can only execute one statement at a time."),
])
def test_sql_error_is_sqlite_s_message_on_one_line(inventory_file, statement, message):
    result = run("--db", inventory_file, "sql", statement)
    assert result.exit_code == 1
    assert result.output == f"Error: {message}\n"


def test_sql_never_contacts_the_registry_nor_creates_an_inventory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("-reg", "http://127.0.0.1:9", "sql", "SELECT 1")  # nothing listens on port 9
    assert result.exit_code == 1
    assert result.output == "Error: inventory 127_0_0_1_9.db does not exist; run 'regdb sync' first\n"
    assert list(tmp_path.iterdir()) == []


def test_sql_reads_an_existing_inventory_without_the_registry(inventory_file):
    result = run("-reg", "http://127.0.0.1:9", "--db", inventory_file, "sql", "--format", "csv",
                 "SELECT COUNT(*) AS n FROM images")
    assert result.exit_code == 0, result.output
    assert result.output == "n\n6\n"


# --- read-only for real ---------------------------------------------------------------------------------------

REFUSED = [
    ("INSERT INTO registries (url, name) VALUES ('http://x', 'x')", "INSERT into registries is refused"),
    ("UPDATE digests SET size = 0", "UPDATE of digests is refused"),
    ("DELETE FROM tags", "DELETE from tags is refused"),
    ("WITH doomed AS (SELECT id FROM tags) DELETE FROM tags WHERE id IN (SELECT id FROM doomed)",
     "DELETE from tags is refused"),
    ("DROP TABLE tags", "changing the schema is refused"),
    ("DROP VIEW images", "changing the schema is refused"),
    ("CREATE TABLE scratch (a INTEGER)", "changing the schema is refused"),
    ("CREATE TEMP TABLE scratch (a INTEGER)", "changing the schema is refused"),
    ("ALTER TABLE tags ADD COLUMN note TEXT", "ALTER TABLE tags is refused"),
    ("ATTACH DATABASE '{dir}/other.db' AS other", "ATTACH or VACUUM is refused"),
    ("VACUUM INTO '{dir}/copy.db'", "ATTACH or VACUUM is refused"),
    ("VACUUM", "ATTACH or VACUUM is refused"),
    ("REINDEX", "REINDEX is refused"),
    ("ANALYZE", "changing the schema is refused"),
    ("PRAGMA journal_mode = DELETE", "PRAGMA journal_mode = DELETE is refused"),
    ("PRAGMA query_only = OFF", "PRAGMA query_only = OFF is refused"),
    ("PRAGMA wal_checkpoint(TRUNCATE)", "PRAGMA wal_checkpoint = TRUNCATE is refused"),
    ("BEGIN IMMEDIATE", "BEGIN (transaction control) is refused"),
    ("SELECT load_extension('/tmp/evil')", "load_extension() is refused"),
]


@pytest.mark.parametrize("statement, message", REFUSED, ids=[s for s, _ in REFUSED])
def test_refused_statement_leaves_the_inventory_bytes_unchanged(inventory_file, statement, message):
    # Any SQLite reader (regdb, the sqlite3 shell) creates the -wal and -shm if a writer removed them;
    # take the fingerprint once a reader has been there, so that the refused statement alone is measured.
    assert run("--db", inventory_file, "sql", "SELECT COUNT(*) FROM tags").exit_code == 0
    before, files = fingerprint(inventory_file), sorted(inventory_file.parent.iterdir())
    result = run("--db", inventory_file, "sql", statement.format(dir=inventory_file.parent))
    assert result.exit_code == 1
    assert result.output == f"Error: read-only SQL: {message}\n"
    assert fingerprint(inventory_file) == before
    assert sorted(inventory_file.parent.iterdir()) == files  # no attached or vacuumed-into file appeared


def test_refusal_holds_on_an_inventory_opened_for_writing(inventory_file, tmp_path):
    # Inventory.sql is read-only whatever the inventory was opened for.
    db = tmp_path / "copy.db"
    db.write_bytes(inventory_file.read_bytes())
    with Inventory(db) as inventory:
        with pytest.raises(ReadOnlyViolation, match="^read-only SQL: DELETE from tags is refused$"):
            inventory.sql("DELETE FROM tags")
        with inventory.sql("SELECT COUNT(*) FROM tags") as result:
            assert list(result) == [(6,)]


def test_reading_pragmas_and_the_catalog_is_allowed(inventory_file):
    result = run("--db", inventory_file, "sql", "--format", "csv",
                 "SELECT name FROM pragma_table_info('images') ORDER BY cid")
    assert result.exit_code == 0, result.output
    assert result.output.split() == ["name", *next(v for v in VIEWS if v.name == "images").columns]
    result = run("--db", inventory_file, "sql", "--format", "csv", "PRAGMA journal_mode")
    assert result.exit_code == 0, result.output
    assert result.output == "journal_mode\nwal\n"


def test_a_select_leaves_a_freshly_synced_file_byte_identical(data, tmp_path):
    db = tmp_path / "fresh.db"
    sync_into(db, data)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    result = run("--db", db, "sql", "SELECT * FROM repo_stats")
    assert result.exit_code == 0, result.output
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_regdb_match_is_available_in_hand_written_sql(inventory_file, data):
    result = run("--db", inventory_file, "sql", "--format", "csv",
                 "SELECT tag FROM images WHERE repo = :r AND regdb_match('1\\.', tag) ORDER BY tag",
                 "--param", f"r={data.repo('app')}")
    assert result.exit_code == 0, result.output
    assert result.output == "tag\n1.0\n1.1\n"


def test_library_raises_sql_error_with_the_database_message(inventory_file):
    with Inventory(inventory_file, readonly=True) as inventory:
        with pytest.raises(SqlError, match="^no such table: nope$"):
            inventory.sql("SELECT * FROM nope")


# --- reading while a sync writes ------------------------------------------------------------------------------


def sqlite3_cli(db: Path) -> subprocess.CompletedProcess:
    """Every view, through Debian's sqlite3 shell (its busy timeout is 0: any lock would fail at once)."""
    script = "".join(f"SELECT * FROM {view.name} ORDER BY {', '.join(view.columns)};\n" for view in VIEWS)
    return subprocess.run([SQLITE3, "-bail", "-csv", "-header", str(db)], input=script, capture_output=True,
                          text=True, timeout=30)


def test_sqlite3_shell_reads_every_view_while_a_sync_writes(registry, tmp_path, repo_name):
    pusher = Pusher(registry.url)
    one, two = f"{repo_name}/one", f"{repo_name}/two"
    pusher.push_image(one, "1.1")
    db = tmp_path / "inventory.db"
    with Inventory(db) as inventory, closing(RegistryClient(registry.url)) as client:
        inventory.sync(client, [one])
        before = sqlite3_cli(db)
        assert before.returncode == 0, before.stderr
        assert f"{one},1.1" in before.stdout

        pusher.push_image(one, "1.2")
        pusher.push_image(two, "2.1")
        during: list[subprocess.CompletedProcess] = []
        regdb_during: list[list] = []

        def progress(repos_done: int, _tags: int) -> None:
            # Called by the sync after it wrote a repository, inside its open write transaction.
            during.append(sqlite3_cli(db))
            with Inventory(db, readonly=True) as reader, \
                    reader.sql("SELECT repo, tag FROM images ORDER BY 1, 2") as rows:
                regdb_during.append(list(rows))

        inventory.sync(client, [one, two], progress=progress)

    assert len(during) == 2
    for seen in during:
        assert seen.returncode == 0, seen.stderr
        assert "locked" not in seen.stderr
        assert seen.stdout == before.stdout  # the previous snapshot, whole, until the sync commits
    assert regdb_during == [[(one, "1.1")], [(one, "1.1")]]
    after = sqlite3_cli(db)
    assert after.returncode == 0, after.stderr
    assert f"{one},1.2" in after.stdout and f"{two},2.1" in after.stdout


# --- several registries in one inventory ----------------------------------------------------------------------


def test_second_registry_is_added_beside_the_first(registry, fresh_registry, tmp_path, repo_name):
    shared, fresh = Pusher(registry.url), Pusher(fresh_registry.url)
    same_in_a = shared.push_image(f"{repo_name}/app", "1.1", unique=f"{repo_name}-same")
    same_in_b = fresh.push_image(f"{repo_name}/app", "1.1", unique=f"{repo_name}-same")
    assert same_in_a.digest == same_in_b.digest  # one content-addressed digest, two registries
    shared.push_image(f"{repo_name}/only-a", "2.1")
    fresh.push_image(f"{repo_name}/only-b", "3.1")
    db = tmp_path / "registries.db"

    result = run("-reg", registry.url, "--db", db, "sync", f"{repo_name}/app", f"{repo_name}/only-a")
    assert result.exit_code == 0, result.output
    result = run("-reg", fresh_registry.url, "--db", db, "sync")
    assert result.exit_code == 0, result.output

    def images():
        result = run("--db", db, "sql", "--format", "tsv",
                     "SELECT registry, repo, tag FROM images ORDER BY registry, repo, tag")
        assert result.exit_code == 0, result.output
        return result.output

    a, b = registry.host, fresh_registry.host
    expected = sorted([(a, f"{repo_name}/app", "1.1"), (a, f"{repo_name}/only-a", "2.1"),
                       (b, f"{repo_name}/app", "1.1"), (b, f"{repo_name}/only-b", "3.1")])
    assert images() == "registry\trepo\ttag\n" + "".join("\t".join(row) + "\n" for row in expected)

    # The shared digest: one row per registry in digest_usage, and wholly unique within each registry.
    with Inventory(db, readonly=True) as inventory:
        with inventory.sql("SELECT registry, repos, tags FROM digest_usage WHERE digest = :d ORDER BY registry",
                           {"d": same_in_a.digest}) as rows:
            assert list(rows) == sorted([(a, 1, 1), (b, 1, 1)])
        with inventory.sql("SELECT registry, total_bytes, unique_bytes FROM repo_stats WHERE repo = :r "
                           "ORDER BY registry", {"r": f"{repo_name}/app"}) as rows:
            size = Dataset.image_bytes(same_in_a)
            assert list(rows) == sorted([(a, size, size), (b, size, size)])
        # Commands act on the registry they name.
        assert [(row.repo, row.tag) for row in inventory.list_tags(b)] == [
            (f"{repo_name}/app", "1.1"), (f"{repo_name}/only-b", "3.1")]

    # Re-syncing the first registry after a change replaces its rows only.
    shared.push_image(f"{repo_name}/only-a", "2.2")
    result = run("-reg", registry.url, "--db", db, "sync", f"{repo_name}/app", f"{repo_name}/only-a")
    assert result.exit_code == 0, result.output
    expected.append((a, f"{repo_name}/only-a", "2.2"))
    assert images() == "registry\trepo\ttag\n" + "".join("\t".join(row) + "\n" for row in sorted(expected))


# --- regdb schema ---------------------------------------------------------------------------------------------


def test_schema_describes_every_column_of_every_table_and_view(tmp_path):
    with Inventory(tmp_path / "schema.db") as inventory:  # migrated to head
        inspector = inspect(inventory.engine)
        in_database = {
            (name, column["name"])
            for name in inspector.get_table_names() + inspector.get_view_names() if name != "alembic_version"
            for column in inspector.get_columns(name)
        }
    result = run("schema", "--format", "json")
    assert result.exit_code == 0, result.output
    described = json.loads(result.output)
    assert {(row["object"], row["column"]) for row in described} == in_database
    assert all(row["meaning"] for row in described), [row for row in described if not row["meaning"]]
    assert {row["kind"] for row in described if row["object"] in {v.name for v in VIEWS}} == {"view"}


def test_schema_text_groups_columns_under_each_view_and_table():
    result = run("schema")
    assert result.exit_code == 0, result.output
    blocks = result.output.split("\n\n")
    assert len(blocks) == len(describe_schema())
    assert blocks[3] == (
        "view blob_usage: One row per blob (config or layer) per registry: how many manifests and repositories "
        "use it.\n"
        "  registry     Host[:port] of the registry.\n"
        "  blob_digest  Digest of the blob (sha256:...).\n"
        "  size         Blob size in bytes (compressed, as stored).\n"
        "  manifests    Manifests of this registry that reference the blob.\n"
        "  repos        Repositories of this registry holding such a manifest."
    )
    assert "table tags" in result.output and "  version_key  Sortable key of the tag's version" in result.output


# --- migrations -----------------------------------------------------------------------------------------------


def test_migrations_round_trip_on_sqlite(tmp_path):
    engine = create_inventory_engine(str(tmp_path / "migrate.db"))
    try:
        assert_migrations_round_trip(engine)
    finally:
        engine.dispose()


def test_views_in_a_migrated_file_are_the_documented_statements(tmp_path):
    # regdb/inventory/views.py and the migrations' frozen copies must not drift apart.
    with Inventory(tmp_path / "views.db") as inventory, inventory.engine.connect() as conn:
        stored = dict(conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'view'").all())
    assert {name: " ".join(sql.split()) for name, sql in stored.items()} == {
        view.name: " ".join(view.sql.split()) for view in VIEWS
    }


def test_sqlite_url_gets_the_same_settings_as_a_path(inventory_file):
    result = run("--db", f"sqlite:///{inventory_file}", "sql", "DELETE FROM tags")
    assert result.exit_code == 1
    assert result.output == "Error: read-only SQL: DELETE from tags is refused\n"
    with Inventory(f"sqlite:///{inventory_file}", readonly=True) as inventory:
        assert inventory.engine.url.query.get("mode") == "ro"
