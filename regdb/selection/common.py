"""What every selection shares: its results, repository and registry lookup, the SQL functions it needs.

The selectors (``selectors``) and the retention rules (``retention``) both build on this module; it imports
neither of them.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from dataclasses import dataclass
from typing import Iterable

from sqlalchemy import Connection, Engine, Select, event, select

from regdb.errors import InventoryError
from regdb.inventory import models

log = logging.getLogger("regdb.selection.selectors")

# cosign's signature / attestation / SBOM tags and the OCI referrers fallback tag all start so
# (docs/registry-behaviour.md, "Referrers and signatures"); such a tag names the digest it belongs to.
DIGEST_TAG_PREFIX = "sha256-"

_repos = models.Repo.__table__
_registries = models.Registry.__table__


# --- results ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selected:
    """One selected manifest in one repository."""

    registry: str  # host[:port], as in the images view
    repo: str
    digest: str  # the tagged manifest (an index for multi-arch; index children are never selected by tag)
    tags: tuple[str, ...]  # every tag of that digest in that repository, in version order
    media_type: str
    size: int  # digests.total_size: manifest + config + layers (an index: the sum over its children)

    def as_dict(self) -> dict:
        return {"registry": self.registry, "repo": self.repo, "digest": self.digest, "tags": list(self.tags),
                "media_type": self.media_type, "size": self.size}


# Why a digest the selection reached is left out (``Skipped.reason``); what it refers to is in ``parent`` (a
# digest) or ``others`` (tags, repositories). The removal plan adds its own (regdb.cleanup.plan).
EXCLUDED_TAG = "excluded-tag"  # rule 1: others = the excluded tags it carries
OTHER_TAG = "other-tag"  # rule 2: others = its tags the selection does not include
OTHER_REPO = "other-repo"  # rule 3: others = the repositories outside the selection that hold it

_WHY = {
    EXCLUDED_TAG: "carries excluded tag {others}",
    OTHER_TAG: "also tagged {others}, which the selection does not include",
    OTHER_REPO: "also in repository {others}, outside the selection",
    "held-by-index": "listed by index {parent}, which stays",
    "referrer-kept": "has a tag of its own ({tags}) and now refers to {parent}, which is removed",
    "belongs-to-kept": "a signature or referrer of {parent}, which stays",
}


@dataclass(frozen=True)
class Skipped:
    """A manifest the selection reached and the rules keep, with the reason as a code (see above)."""

    repo: str
    digest: str
    tags: tuple[str, ...]
    reason: str
    parent: str | None = None  # a digest the reason refers to (the index that holds it, the removed subject)
    others: tuple[str, ...] = ()  # tags or repositories the reason refers to

    @property
    def why(self) -> str:
        return _WHY.get(self.reason, self.reason).format(
            parent=self.parent, others=", ".join(self.others), tags=", ".join(self.tags)
        )

    def as_dict(self) -> dict:
        return {"repo": self.repo, "digest": self.digest, "tags": list(self.tags), "reason": self.reason,
                "parent": self.parent, "others": list(self.others), "why": self.why}


class Selection(list):
    """``list[Selected]``, ordered by repository, then by the version order of each digest's first tag."""

    def __init__(self, items: Iterable[Selected] = (), missing_repos: Iterable[str] = (),
                 skipped: Iterable[Skipped] = ()):
        super().__init__(items)
        self.missing_repos: list[str] = list(missing_repos)  # -r names the inventory does not hold
        self.skipped: list[Skipped] = list(skipped)  # what the rules left out, and why

    def without_digest_tags(self) -> "Selection":
        """The same selection with ``sha256-*`` tags dropped from each row; a row left with none is dropped,
        unless it had no tag to begin with (``--omit-digest-tags``)."""
        kept = []
        for row in self:
            tags = tuple(tag for tag in row.tags if not is_digest_tag(tag))
            if tags or not row.tags:
                kept.append(dataclasses.replace(row, tags=tags))
        return Selection(kept, missing_repos=self.missing_repos, skipped=self.skipped)


@dataclass(frozen=True)
class TagRow:
    repo: str
    tag: str
    digest: str


class TagList(list):
    """``list[TagRow]`` from ``list_tags``; ``missing_repos`` are the named repositories not in the inventory."""

    def __init__(self, items: Iterable[TagRow] = (), missing_repos: Iterable[str] = ()):
        super().__init__(items)
        self.missing_repos: list[str] = list(missing_repos)

    def without_digest_tags(self) -> "TagList":
        """The same listing without ``sha256-*`` tags (``--omit-digest-tags``)."""
        return TagList((row for row in self if not is_digest_tag(row.tag)), missing_repos=self.missing_repos)


@functools.lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def _regdb_match(pattern, value) -> int:
    """SQL ``regdb_match(pattern, value)``: 1 when ``re.match`` finds the pattern at the start of value.

    Never NULL (0 for a NULL value), so ``NOT regdb_match(...)`` is a plain boolean inside NOT EXISTS."""
    if pattern is None or value is None:
        return 0
    return 1 if _compiled(pattern).match(value) is not None else 0


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


def is_digest_tag(name: str) -> bool:
    """True for ``sha256-<hex>`` tags (cosign ``.sig`` / ``.att`` / ``.sbom``, OCI referrers fallback)."""
    return name.startswith(DIGEST_TAG_PREFIX)


def values(value) -> tuple[str, ...]:
    """One name or many: the Python API accepts ``"app"`` as well as ``["app", "tool"]``, as the seed did."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


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
