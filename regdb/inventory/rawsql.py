"""``regdb sql``: one SQL statement on the inventory, read-only for real, and ``regdb schema``'s description.

Read-only is enforced by the database, in layers, never by looking at the statement's text:

* SQLite: the file is opened ``mode=ro`` with ``PRAGMA query_only`` (``create_inventory_engine(readonly=True)``),
  and an authorizer refuses, while the statement is prepared, everything but reading: writes, DDL, ``ATTACH``
  (which would create or write another file, as would ``VACUUM INTO``) and pragmas that change a setting such as
  ``journal_mode``. A refused statement never runs, so the inventory's bytes stay as they were.
* PostgreSQL: the statement runs in a ``READ ONLY`` transaction that has already taken its snapshot (so a
  ``SET TRANSACTION READ WRITE`` in the statement is refused), as a prepared statement (so ``COMMIT; DROP ...``
  cannot smuggle a second statement in), and the transaction is rolled back afterwards.

Parameters are named ``:name`` and always bound as text. On SQLite, SQLite binds them itself; on PostgreSQL,
SQLAlchemy's ``text()`` translates them, so write ``CAST(:n AS INTEGER)`` rather than ``:n::integer``.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Iterator, Mapping

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import InvalidRequestError

from regdb.inventory import models
from regdb.errors import InventoryError, ReadOnlyViolation, SqlError, SqlTimeout
from regdb.inventory.views import VIEWS

# --- SQLite: the authorizer ----------------------------------------------------------------------------------

# Pragmas whose argument names a table or index to describe, not a value to set.
_DESCRIBING_PRAGMAS = frozenset({
    "table_info", "table_xinfo", "table_list", "index_info", "index_xinfo", "index_list", "foreign_key_list",
    "foreign_key_check", "integrity_check", "quick_check", "database_list", "collation_list", "function_list",
    "module_list", "pragma_list", "compile_options",
})
# Pragmas that act when read without an argument.
_ACTING_PRAGMAS = frozenset({"wal_checkpoint", "optimize", "incremental_vacuum", "shrink_memory"})

_WHAT = {
    sqlite3.SQLITE_INSERT: "INSERT into {0}",
    sqlite3.SQLITE_UPDATE: "UPDATE of {0}",
    sqlite3.SQLITE_DELETE: "DELETE from {0}",
    sqlite3.SQLITE_CREATE_TABLE: "CREATE TABLE {0}",
    sqlite3.SQLITE_CREATE_TEMP_TABLE: "CREATE TEMP TABLE {0}",
    sqlite3.SQLITE_CREATE_VIEW: "CREATE VIEW {0}",
    sqlite3.SQLITE_CREATE_TEMP_VIEW: "CREATE TEMP VIEW {0}",
    sqlite3.SQLITE_CREATE_INDEX: "CREATE INDEX {0}",
    sqlite3.SQLITE_CREATE_TEMP_INDEX: "CREATE TEMP INDEX {0}",
    sqlite3.SQLITE_CREATE_TRIGGER: "CREATE TRIGGER {0}",
    sqlite3.SQLITE_CREATE_TEMP_TRIGGER: "CREATE TEMP TRIGGER {0}",
    sqlite3.SQLITE_CREATE_VTABLE: "CREATE VIRTUAL TABLE {0}",
    sqlite3.SQLITE_DROP_TABLE: "DROP TABLE {0}",
    sqlite3.SQLITE_DROP_TEMP_TABLE: "DROP TABLE {0}",
    sqlite3.SQLITE_DROP_VIEW: "DROP VIEW {0}",
    sqlite3.SQLITE_DROP_TEMP_VIEW: "DROP VIEW {0}",
    sqlite3.SQLITE_DROP_INDEX: "DROP INDEX {0}",
    sqlite3.SQLITE_DROP_TEMP_INDEX: "DROP INDEX {0}",
    sqlite3.SQLITE_DROP_TRIGGER: "DROP TRIGGER {0}",
    sqlite3.SQLITE_DROP_TEMP_TRIGGER: "DROP TRIGGER {0}",
    sqlite3.SQLITE_DROP_VTABLE: "DROP TABLE {0}",
    sqlite3.SQLITE_ALTER_TABLE: "ALTER TABLE {1}",
    sqlite3.SQLITE_REINDEX: "REINDEX",
    sqlite3.SQLITE_ANALYZE: "ANALYZE",
    # VACUUM attaches its target (VACUUM INTO a file, or a temporary copy): the authorizer sees an ATTACH.
    sqlite3.SQLITE_ATTACH: "ATTACH or VACUUM",
    sqlite3.SQLITE_DETACH: "DETACH",
    sqlite3.SQLITE_TRANSACTION: "{0} (transaction control)",
    sqlite3.SQLITE_SAVEPOINT: "SAVEPOINT",
}


class _ReadOnlyAuthorizer:
    """SQLite calls this for every action of a statement it prepares; anything but reading is denied and the
    first denial is kept, to tell the user in words what was refused (SQLite itself only says "not
    authorized")."""

    def __init__(self) -> None:
        self.refused: str | None = None

    def __call__(self, action: int, arg1, arg2, _database, _trigger) -> int:
        if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE):
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION:
            if (arg2 or "").lower() == "load_extension":
                return self._deny("load_extension()")
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA:
            name = (arg1 or "").lower()
            if name in _DESCRIBING_PRAGMAS or (arg2 is None and name not in _ACTING_PRAGMAS):
                return sqlite3.SQLITE_OK
            return self._deny(f"PRAGMA {arg1}" + (f" = {arg2}" if arg2 is not None else ""))
        if arg1 in ("sqlite_master", "sqlite_temp_master"):
            if action == sqlite3.SQLITE_UPDATE:
                # SQLite checks this internally when a pragma table-valued function (pragma_table_info) is
                # first used. A user's own UPDATE of the schema table stays impossible: writable_schema
                # cannot be set (a pragma with a value) and the file is open read-only.
                return sqlite3.SQLITE_OK
            if action in (sqlite3.SQLITE_INSERT, sqlite3.SQLITE_DELETE):
                # DROP and CREATE ask about the schema table before naming their object.
                return self._deny("changing the schema")
        template = _WHAT.get(action, "statement (SQLite action {2})")
        return self._deny(template.format(arg1, arg2, action))

    def _deny(self, what: str) -> int:
        if self.refused is None:
            self.refused = what
        return sqlite3.SQLITE_DENY


# --- results ----------------------------------------------------------------------------------------------------


@dataclass
class SqlResult:
    """The answer to one statement: ``columns``, then the rows as they are iterated (one snapshot)."""

    columns: list[str]
    _rows: Iterator[tuple]
    _close: Any

    def __iter__(self) -> Iterator[tuple]:
        return self._rows

    def close(self) -> None:
        self._close()

    def __enter__(self) -> "SqlResult":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# The text SQLAlchemy stores a DateTime as on SQLite: PostgreSQL's timestamps are shown the same way, so
# `regdb sql` prints the same thing whichever database holds the inventory.
SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"


def _value(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.strftime(SQLITE_DATETIME)
    if isinstance(value, Decimal):
        # SUM/AVG on PostgreSQL answer NUMERIC; SQLite answers an integer or a float.
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _one_line(message: str) -> str:
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    return lines[0] if lines else "SQL error"


# --- running a statement ----------------------------------------------------------------------------------------


# `regdb sql --timeout`: the default limit on one statement (a recursive CTE without an end, or a regex such as
# regdb_match('(a+)+$', tag), otherwise runs until killed), and the most one may ask for.
DEFAULT_SQL_TIMEOUT = 30.0
MAX_SQL_TIMEOUT = 86_400.0
# SQLite calls the progress handler every this many virtual-machine instructions (about a millisecond).
PROGRESS_STEPS = 10_000


def run_sql(
    engine: Engine,
    statement: str,
    params: Mapping[str, str] | None = None,
    *,
    prepare: Callable[[Connection], None] | None = None,
    timeout: float | None = None,
) -> SqlResult:
    """Run one statement read-only; raise ``ReadOnlyViolation`` if it tries to change anything and ``SqlError``
    (the database's own message, one line) if it fails. Close the result (or use ``with``) when done.

    ``prepare`` gets the SQLite connection first (to register SQL functions such as ``regdb_match``).
    ``timeout``: seconds the statement (and the reading of its rows) may take, then ``SqlTimeout``; None or 0
    for no limit. SQLite checks it in a progress handler (and, in the main thread, with an interval timer, for
    a regular expression stuck inside one call); PostgreSQL through ``statement_timeout``."""
    params = dict(params or {})
    if timeout is not None and not 0 <= timeout <= MAX_SQL_TIMEOUT:
        raise SqlError(f"the SQL timeout must be from 0 to {MAX_SQL_TIMEOUT:g} seconds, not {timeout:g}")
    timeout = timeout or None
    if engine.dialect.name == "sqlite":
        return _run_sqlite(engine, statement, params, prepare, timeout)
    if engine.dialect.name == "postgresql":
        return _run_postgresql(engine, statement, params, timeout)
    raise InventoryError(f"regdb sql supports SQLite and PostgreSQL inventories, not {engine.dialect.name}")


class _Expired(Exception):
    """Raised by the interval timer inside a call into SQLite (a regdb_match stuck in a regex)."""


class _Deadline:
    """The time limit of one SQLite statement: a progress handler, and in the main thread an interval timer
    (a progress handler is not called while one SQL function runs)."""

    def __init__(self, connection: sqlite3.Connection, timeout: float | None):
        self.connection = connection
        self.timeout = timeout
        self.expired = False
        self.inside = False  # only raise from the timer while SQLite is running, never in the caller's code
        self.at = time.monotonic() + timeout if timeout else None
        self.previous = None
        if timeout is None:
            return
        connection.set_progress_handler(self._progress, PROGRESS_STEPS)
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
            self.previous = signal.signal(signal.SIGALRM, self._alarm)
            signal.setitimer(signal.ITIMER_REAL, timeout)

    def _progress(self) -> int:
        if self.at is not None and time.monotonic() > self.at:
            self.expired = True
        return 1 if self.expired else 0

    def _alarm(self, _signum, _frame) -> None:
        self.expired = True
        if self.inside:
            raise _Expired()

    def stop(self) -> None:
        if self.timeout is None:
            return
        self.connection.set_progress_handler(None, 0)
        if self.previous is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)
            self.previous = None

    def error(self) -> SqlTimeout:
        return SqlTimeout(f"the statement ran past --timeout {self.timeout:g} s and was interrupted")


def _run_sqlite(engine: Engine, statement: str, params: dict, prepare, timeout: float | None = None) -> SqlResult:
    # The DBAPI connection itself: SQLAlchemy must not wrap the statement (its BEGIN would meet the authorizer).
    conn = engine.connect()
    connection: sqlite3.Connection = conn.connection.driver_connection
    authorizer = _ReadOnlyAuthorizer()
    cursor = None
    closed = False
    deadline: _Deadline | None = None

    def close() -> None:
        # Once only: after the first call the connection is back in the pool, maybe someone else's.
        nonlocal closed
        if closed:
            return
        closed = True
        if deadline is not None:
            deadline.stop()
        if cursor is not None:
            cursor.close()
        connection.set_authorizer(None)
        conn.close()

    try:
        if prepare is not None:
            prepare(conn)
        connection.set_authorizer(authorizer)
        cursor = connection.cursor()
        deadline = _Deadline(connection, timeout)
        deadline.inside = True
        try:
            cursor.execute(statement, params)
        finally:
            deadline.inside = False
        columns = [column[0] for column in cursor.description or ()]
    except (sqlite3.Error, sqlite3.Warning, _Expired) as error:
        close()
        raise _sqlite_error(error, authorizer, deadline) from None
    except BaseException:
        close()
        raise

    def rows() -> Iterator[tuple]:
        try:
            while True:
                deadline.inside = True
                try:
                    row = next(cursor, None)
                finally:
                    deadline.inside = False
                if row is None:
                    return
                yield row
        except (sqlite3.Error, _Expired) as error:
            raise _sqlite_error(error, authorizer, deadline) from None
        finally:
            close()

    return SqlResult(columns, rows(), close)


def _sqlite_error(error: Exception, authorizer: _ReadOnlyAuthorizer, deadline: _Deadline | None = None) -> Exception:
    if deadline is not None and deadline.expired:
        return deadline.error()
    if authorizer.refused is not None:
        return ReadOnlyViolation(f"read-only SQL: {authorizer.refused} is refused")
    message = _one_line(error)
    if "readonly database" in message or "read-only" in message:
        # Caught by mode=ro / query_only rather than the authorizer (REINDEX, for one).
        return ReadOnlyViolation(f"read-only SQL: the statement tried to write ({message})")
    return SqlError(message)


def _run_postgresql(engine: Engine, statement: str, params: dict, timeout: float | None = None) -> SqlResult:
    try:
        compiled = text(statement).compile(dialect=engine.dialect)
        values = compiled.construct_params(params)
    except InvalidRequestError as error:
        raise SqlError(_one_line(str(error).split(" (Background on this error", 1)[0])) from None
    dbapi = engine.dialect.loaded_dbapi
    fairy = engine.raw_connection()
    connection = fairy.driver_connection
    cursor = connection.cursor()
    closed = False

    def close() -> None:
        nonlocal closed
        if closed:
            return
        closed = True
        cursor.close()
        connection.rollback()  # nothing to keep: a rollback also undoes any SET the statement made
        fairy.close()

    try:
        cursor.execute("SET TRANSACTION READ ONLY")
        if timeout:
            # Transaction-local: the rollback in close() ends it with the transaction.
            cursor.execute(f"SET LOCAL statement_timeout = {max(int(timeout * 1000), 1)}")
        # Take the snapshot before the user's statement runs: from here on the transaction cannot become
        # read-write ("transaction read-write mode must be set before any query").
        cursor.execute("SELECT 1")
        # prepare=True: the extended protocol runs exactly one statement (psycopg would otherwise send a
        # parameterless string with the simple protocol, which runs "COMMIT; DROP TABLE tags" as two).
        cursor.execute(compiled.string, values, prepare=True)
        columns = [column.name for column in cursor.description or ()]
    except dbapi.Error as error:
        close()
        raise _postgresql_error(error, timeout) from None
    except BaseException:
        close()
        raise

    def rows() -> Iterator[tuple]:
        try:
            if cursor.description is None:
                return
            for row in cursor:
                yield tuple(_value(value) for value in row)
        except dbapi.Error as error:
            raise _postgresql_error(error, timeout) from None
        finally:
            close()

    return SqlResult(columns, rows(), close)


# SQLSTATE 25006 read_only_sql_transaction: "cannot execute INSERT in a read-only transaction".
PG_READ_ONLY_TRANSACTION = "25006"


# SQLSTATE 57014 query_canceled: "canceling statement due to statement timeout".
PG_QUERY_CANCELED = "57014"


def _postgresql_error(error: Exception, timeout: float | None = None) -> Exception:
    diag = getattr(error, "diag", None)
    message = _one_line(getattr(diag, "message_primary", None) or str(error))
    if timeout and getattr(error, "sqlstate", None) == PG_QUERY_CANCELED:
        return SqlTimeout(f"the statement ran past --timeout {timeout:g} s and was interrupted")
    if getattr(error, "sqlstate", None) == PG_READ_ONLY_TRANSACTION:
        return ReadOnlyViolation(f"read-only SQL: {message}")
    return SqlError(message)


# --- regdb schema -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaColumn:
    object: str
    kind: str  # 'table' or 'view'
    column: str
    meaning: str


@dataclass(frozen=True)
class SchemaObject:
    name: str
    kind: str
    doc: str
    columns: list[SchemaColumn]


def _table_doc(table) -> str:
    for mapper in models.Base.registry.mappers:
        if mapper.local_table is table and mapper.class_.__doc__:
            return " ".join(mapper.class_.__doc__.split())
    return ""


def _column_meaning(column) -> str:
    if column.doc:
        return column.doc
    # Keys carry no doc= in the models: say what they are from the schema itself.
    for foreign_key in column.foreign_keys:
        target = foreign_key.column
        return f"The {target.table.name} row it belongs to ({target.table.name}.{target.name})."
    if column.primary_key:
        return "Row id."
    return ""


def describe_schema() -> list[SchemaObject]:
    """Every table and view of the inventory with a one-line meaning per column, views first (they are the
    contract for SQL users; the tables may change between versions)."""
    objects = [
        SchemaObject(v.name, "view", v.doc, [SchemaColumn(v.name, "view", name, meaning)
                                             for name, meaning in v.columns.items()])
        for v in VIEWS
    ]
    for table in models.Base.metadata.sorted_tables:
        objects.append(SchemaObject(
            table.name, "table", _table_doc(table),
            [SchemaColumn(table.name, "table", column.name, _column_meaning(column)) for column in table.columns],
        ))
    return objects
