"""What every selection shares: its results, repository and registry lookup, the SQL functions it needs.

The selectors (``selectors``) and the retention rules (``retention``) both build on this module; it imports
neither of them.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, Engine, Select, event, select

from regdb.errors import InventoryError
from regdb.inventory import models
# The results, values(), is_digest_tag and regdb_match are plain Python (regdb.selection.query), shared with the
# sqlite3 reader of the read-only listings; imported here so every name stays importable from this module.
from regdb.selection.query import (  # noqa: F401 - re-exported
    DIGEST_TAG_PREFIX,
    EXCLUDED_TAG,
    OTHER_REPO,
    OTHER_TAG,
    Selected,
    Selection,
    Skipped,
    TagList,
    TagRow,
    is_digest_tag,
    values,
)
from regdb.selection.query import regdb_match as _regdb_match

log = logging.getLogger("regdb.selection.selectors")

_repos = models.Repo.__table__
_registries = models.Registry.__table__


def _register(dbapi_connection) -> None:
    # deterministic: SQLite may then evaluate it once per distinct argument pair and use it in indexes.
    dbapi_connection.create_function("regdb_match", 2, _regdb_match, deterministic=True)


def _on_connect(dbapi_connection, record) -> None:
    _register(dbapi_connection)
    record.info["regdb_sql_functions"] = True


def install_sql_functions(engine: Engine) -> None:
    """Give every new SQLite connection of ``engine`` the ``regdb_match`` function (idempotent).

    Connections already open get it from ``ensure_sql_functions`` when a selector query first uses them,
    so this is only needed for SQL written by hand (``regdb sql "... WHERE regdb_match('1\\.', tag)"``)."""
    if engine.dialect.name == "sqlite" and not event.contains(engine, "connect", _on_connect):
        event.listen(engine, "connect", _on_connect)


def ensure_sql_functions(conn: Connection) -> None:
    if conn.dialect.name != "sqlite":
        return
    info = conn.connection.info  # lives as long as the DBAPI connection, across pool checkouts
    if not info.get("regdb_sql_functions"):
        _register(conn.connection.driver_connection)
        info["regdb_sql_functions"] = True


def execute_logged(conn: Connection, statement: Select, purpose: str):
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s:\n%s", purpose, _sql_text(conn, statement))
    return conn.execute(statement)


def _sql_text(conn: Connection, statement: Select) -> str:
    """The statement with its values inlined, for ``-l debug``; falls back to SQL plus parameters."""
    try:
        return str(statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    except Exception:  # noqa: BLE001 - a value the dialect cannot inline must not break the query
        compiled = statement.compile(dialect=conn.dialect)
        return f"{compiled}\n-- parameters: {compiled.params}"


def resolve_repos(conn: Connection, registry_id: int, names: tuple[str, ...]) -> tuple[dict[str, int], list[str]]:
    """(name -> id of the named repositories in the inventory, names it does not hold, in the order given)."""
    wanted = list(dict.fromkeys(names))
    found = {
        name: repo_id
        for repo_id, name in execute_logged(
            conn,
            select(_repos.c.id, _repos.c.name).where(_repos.c.registry_id == registry_id, _repos.c.name.in_(wanted)),
            "repositories named with -r",
        )
    }
    return found, [name for name in wanted if name not in found]


def registry_name(conn: Connection, registry_id: int) -> str:
    name = conn.execute(select(_registries.c.name).where(_registries.c.id == registry_id)).scalar()
    if name is None:
        raise InventoryError(f"registry id {registry_id} is not in the inventory")
    return name
