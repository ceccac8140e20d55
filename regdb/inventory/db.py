"""Opening an inventory: engines, SQLite pragmas, read-only access and migrations run from code.

An inventory is an SQLite file (or, for teams, any SQLAlchemy URL such as PostgreSQL). Opening one for
writing upgrades its schema to the newest Alembic revision; opening one read-only never writes a byte.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import weakref
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from sqlalchemy import Connection, Engine, Insert, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError, DBAPIError, OperationalError
from sqlalchemy.pool import StaticPool

from regdb.errors import InventoryBusy, InventoryError, SchemaTooNew

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

log = logging.getLogger(__name__)

# The newest migration in migrations/versions. Opening an inventory that is already at this revision reads
# one row and skips importing Alembic altogether (a query must answer in well under half a second, process
# start included); tests/test_packaging.py holds this equal to Alembic's head.
SCHEMA_HEAD = "0010"

MEMORY = ":memory:"
# How long a writer waits for another writer before giving up. Readers never wait in WAL mode.
BUSY_TIMEOUT_MS = 10_000
# Inventory files an engine created on its first connection and upgrade() has not yet made inventories.
_new_files: "weakref.WeakKeyDictionary[Engine, Path]" = weakref.WeakKeyDictionary()


def is_url(target: str) -> bool:
    """True when ``--db`` names a SQLAlchemy URL (postgresql://...) rather than a file path."""
    return "://" in target


def describe(target: str) -> str:
    """The inventory's name for messages, with any password in a URL hidden."""
    if is_url(target):
        return make_url(target).render_as_string(hide_password=True)
    return target


def create_inventory_engine(target: str, *, readonly: bool = False) -> Engine:
    """An engine for an inventory path, ``:memory:`` or SQLAlchemy URL, with regdb's connection settings."""
    if is_url(target) and make_url(target).get_backend_name() == "sqlite":
        # sqlite:///path is a file like any other: it gets the pragmas, WAL and read-only opening below.
        target = make_url(target).database or MEMORY
    if is_url(target):
        engine = create_engine(target, pool_pre_ping=True)
        if readonly and engine.dialect.name == "postgresql":
            engine = engine.execution_options(postgresql_readonly=True)
        return engine
    if target == MEMORY:
        # One shared connection: a throwaway inventory lives exactly as long as this engine (`-c None`).
        engine = create_engine(
            "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    else:
        path = Path(target)
        if not path.parent.exists():
            raise InventoryError(f"cannot open inventory {target}: directory {path.parent} does not exist")
        if readonly:
            if not path.exists():
                raise InventoryError(f"inventory {target} does not exist; run 'regdb sync' first")
            # mode=ro: SQLite itself refuses every write, whatever the statement.
            url = f"sqlite:///file:{path.resolve()}?mode=ro&uri=true"
            if _on_read_only_filesystem(path):
                # A WAL inventory on a read-only volume (a BI container's mount) cannot get the -shm file a
                # reader needs, and SQLite refuses to open it ("unable to open database file"). Nothing can write
                # there, so reading it as immutable is safe (tests/faults).
                url += "&immutable=1"
        else:
            url = f"sqlite:///{path}"
        engine = create_engine(url, connect_args={"check_same_thread": False})
        if not readonly and not path.exists():
            _new_files[engine] = path  # see upgrade(): removed again if it cannot be made an inventory
    _install_sqlite_pragmas(engine, readonly=readonly)
    return engine


def _install_sqlite_pragmas(engine: Engine, *, readonly: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Take transaction control away from the sqlite3 module so BEGIN IMMEDIATE can be issued (below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if readonly:
                cursor.execute("PRAGMA query_only = ON")
            else:
                # WAL itself is switched on once, in upgrade(), after the file is known to be ours.
                cursor.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as error:
            raise InventoryError(_sqlite_message(engine, error)) from None
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # Writers take the write lock when their transaction starts, not at their first write: a deferred
        # transaction that has read and then tries to write can fail at once with SQLITE_BUSY_SNAPSHOT.
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def _on_read_only_filesystem(path: Path) -> bool:
    """The file is on a file system mounted read-only, with no WAL left beside it (immutable would skip it)."""
    try:
        read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # AttributeError: no statvfs (Windows)
        return False
    return read_only and not Path(f"{path}-wal").exists()


def _inventory_name(engine: Engine) -> str:
    """The inventory's file for messages: a read-only engine opens it as a URI, ``file:PATH?mode=ro``."""
    name = engine.url.database or MEMORY
    return name[len("file:"):] if name.startswith("file:") else name


def _sqlite_message(engine: Engine, error: Exception) -> str:
    name = _inventory_name(engine)
    text = str(getattr(error, "orig", error)).splitlines()[0]
    if "file is not a database" in text or "not a database" in text:
        return f"{name} is not a regdb inventory (not an SQLite database)"
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return f"cannot write inventory {name}: {text}"
    return f"inventory {name}: {text}"


# PostgreSQL has no file lock: writers (sync, removal) serialize on this advisory lock instead, held for the
# transaction so that it goes with a crashed writer's connection. Readers are not blocked: MVCC shows them the
# last committed snapshot, as WAL does on SQLite.
PG_WRITE_LOCK = 0x72656764  # "regd"
# SQLSTATE 55P03 lock_not_available: lock_timeout expired while waiting for the lock.
PG_LOCK_NOT_AVAILABLE = "55P03"


@contextlib.contextmanager
def write_transaction(engine: Engine, *, summarise: bool = True) -> Iterator[Connection]:
    """A connection inside a transaction that holds the inventory's write lock from its first statement.

    Before it commits, the summaries behind the BI views are brought up to date with what the transaction
    wrote (``regdb.inventory.summaries.refresh_dirty``): every writer (sync, removal, untag, restore, the listener) goes
    through here, so none can commit rows their summaries disagree with. ``summarise=False`` only for the
    schema upgrade, which may run before the summary tables exist.
    """
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        try:
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    _take_postgresql_write_lock(conn)
                yield conn
                if summarise and conn.in_transaction():  # not after the caller rolled back on purpose
                    from regdb.inventory.summaries import refresh_dirty

                    refresh_dirty(conn)
        except OperationalError as error:
            if "database is locked" in str(error.orig) or _sqlstate(error) == PG_LOCK_NOT_AVAILABLE:
                raise InventoryBusy(
                    f"another regdb run is writing to {engine.url.database}; try again when it has finished"
                ) from None
            # A full disk, a file turned read-only, an I/O error: the transaction is rolled back and the
            # inventory keeps its last snapshot; the user gets SQLite's reason in one line (tests/faults).
            raise InventoryError(_sqlite_message(engine, error)) from None
        except DatabaseError as error:
            if type(error) is not DatabaseError:
                raise  # IntegrityError and the like are regdb's bugs: keep the traceback
            # "database disk image is malformed": a corrupt file.
            raise InventoryError(_sqlite_message(engine, error)) from None


def _take_postgresql_write_lock(conn: Connection) -> None:
    # Wait as long as SQLite's busy_timeout would, then give up with InventoryBusy (the caller maps 55P03).
    conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{BUSY_TIMEOUT_MS}ms'")
    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_WRITE_LOCK})")
    conn.exec_driver_sql("SET LOCAL lock_timeout TO DEFAULT")


def _sqlstate(error: DBAPIError) -> str | None:
    return getattr(error.orig, "sqlstate", None)


def insert_id(conn: Connection, statement: Insert, values: dict[str, Any] | None = None) -> int:
    """The primary key of the one row ``statement`` inserts (with ``values`` as its parameters, if given)."""
    key = conn.execute(statement, values).inserted_primary_key
    assert key is not None  # None only after an executemany, and one row is one execute
    return key[0]


def alembic_config(connection: Connection | None = None) -> "Config":
    """The one Alembic configuration: it finds the migrations shipped inside the installed package (so they
    run from a wheel) and hands migrations/env.py the open ``connection`` when there is one."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("regdb.migrations")))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _migrations() -> "ScriptDirectory":
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = _migrations().get_current_head()
    if head is None:  # the package ships its migrations: only a broken installation has none
        raise InventoryError("regdb's schema migrations are missing from this installation")
    return head


def upgrade(engine: Engine) -> None:
    """Bring the inventory's schema to the newest revision; refuse files that are not, or not yet, ours.

    A file that this engine created, and that could not be made an inventory (a full disk), is removed again
    rather than left behind half-made. Never when another run holds it (busy): that run may be creating it."""
    new_file = _new_files.pop(engine, None)
    try:
        _upgrade(engine)
    except InventoryBusy:
        raise
    except (InventoryError, DBAPIError) as error:
        if new_file is not None and "locked" not in str(error):
            engine.dispose()
            for leftover in (new_file, Path(f"{new_file}-wal"), Path(f"{new_file}-shm")):
                try:
                    leftover.unlink(missing_ok=True)
                except OSError:  # a read-only file system answers EROFS even for a file it does not have
                    pass
        raise


def _upgrade(engine: Engine) -> None:
    if stored_revision(engine) == SCHEMA_HEAD:
        return
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    try:
        if engine.dialect.name == "sqlite" and stored_revision(engine) is None:
            _refuse_foreign_database(engine)  # before WAL: switching the journal mode rewrites the header
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", MEMORY):
            _enable_wal(engine)
        with write_transaction(engine, summarise=False) as conn:
            config = alembic_config(conn)
            script = _migrations()
            current = MigrationContext.configure(conn).get_current_revision()
            if current is None:
                _refuse_foreign_tables(conn, engine)
            elif current not in {rev.revision for rev in script.walk_revisions()}:
                raise SchemaTooNew(
                    f"inventory {engine.url.database} was written by a newer regdb (schema revision {current}); "
                    "upgrade regdb to use it"
                )
            if current != script.get_current_head():
                log.info("upgrading inventory schema from %s to %s", current, script.get_current_head())
                command.upgrade(config, "head")
    except DBAPIError as error:
        raise InventoryError(_sqlite_message(engine, error)) from None


def _refuse_foreign_database(engine: Engine) -> None:
    with engine.connect() as conn:
        _refuse_foreign_tables(conn, engine)


def _refuse_foreign_tables(conn: Connection, engine: Engine) -> None:
    foreign = [t for t in inspect(conn).get_table_names() if t != "alembic_version"]
    if foreign:
        raise InventoryError(
            f"{describe(str(engine.url.database or engine.url))} is a database but not a regdb "
            f"inventory (it has tables {', '.join(sorted(foreign)[:3])})"
        )


def _enable_wal(engine: Engine) -> None:
    """WAL: readers (the sqlite3 CLI, a BI tool) keep seeing the last committed snapshot while a sync writes,
    and are never refused with "database is locked". The mode is stored in the file, so it is set once."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA journal_mode = WAL")  # outside any transaction: SQLite refuses it inside one
        cursor.close()
    finally:
        raw.close()


def check_revision(engine: Engine) -> None:
    """For read-only use: the schema must be exactly the one this regdb knows."""
    current = stored_revision(engine)
    if current == SCHEMA_HEAD:
        return
    name = _inventory_name(engine)
    if current is None:
        raise InventoryError(f"{name} is not a regdb inventory (no schema revision)")
    known = {rev.revision for rev in _migrations().walk_revisions()}
    if current not in known:
        raise SchemaTooNew(
            f"inventory {name} was written by a newer regdb (schema revision {current}); "
            "upgrade regdb to use it"
        )
    raise InventoryError(
        f"inventory {name} has an older schema ({current}); run 'regdb sync' once to upgrade it"
    )


def stored_revision(engine: Engine) -> str | None:
    """The Alembic revision recorded in the inventory, None for an empty database."""
    try:
        with engine.connect() as conn:
            if "alembic_version" not in inspect(conn).get_table_names():
                return None
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    except DBAPIError as error:
        raise InventoryError(_sqlite_message(engine, error)) from None
