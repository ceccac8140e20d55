"""The read-only listings of an SQLite inventory through the standard library's ``sqlite3``: no SQLAlchemy.

``list-repo-names``, ``list-tag-names``, ``query-repos`` and ``query-tags`` only read the inventory, and on a
1,000,000-tag inventory their SQL takes milliseconds while importing SQLAlchemy took about two thirds of their
start-up (issue 17, bench rows 3a and 3b). ``InventoryReader`` answers them with SQL text for the same rules
as ``regdb.selection.selectors`` (the tag filters compile to the same expressions; the rules are evaluated over
the named repositories' tags in one statement) and builds the same result rows (``regdb.selection.query``);
tests/test_sqlite_reader.py holds both answers equal on generated inventories and queries (hypothesis).

It answers only what it is sure of, and hands everything else to the full ``Inventory`` (``fallback``): an
inventory that is not an SQLite file at exactly this schema revision, a registry never synced into it (the
full path syncs first), and any ``-r`` / ``-t`` / ``-x`` value holding a glob character (``*``, ``?``, ``[``:
none can occur in a repository or tag name, so such a value is a pattern and the full path owns its meaning).
"""

from __future__ import annotations

import logging
import sqlite3
from collections import namedtuple
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, cast
from urllib.parse import quote

from regdb.errors import IntersectionError, SelectorError
from regdb.registry.reference import RegistryRef
from regdb.selection.patterns import is_glob
from regdb.selection.query import (
    Selection,
    TagFilter,
    TagList,
    TagRow,
    apply_rules,
    first_flagged,
    parse_query,
    regdb_match,
    values,
)
from regdb.versions import ABOVE_PRECISION, MAX_PRECISION, TagSelector, precision_field

log = logging.getLogger(__name__)

# regdb.inventory.db.SCHEMA_HEAD, spelled out: naming it must not import SQLAlchemy (tests/test_sqlite_reader.py holds
# them equal). An inventory at any other revision is answered by the full Inventory (which upgrades or refuses).
SCHEMA_HEAD = "0010"
# regdb.inventory.db.BUSY_TIMEOUT_MS: a reader never waits in WAL mode, but a file in rollback mode can be locked.
BUSY_TIMEOUT_MS = 10_000
# A hint SQLite understands from 3.35 on (2021); older ones get the same statement without it.
MATERIALIZED = "MATERIALIZED " if sqlite3.sqlite_version_info >= (3, 35) else ""
# Digests per IN list when naming the repositories that hold left-out digests (regdb.selection.selectors._BATCH).
BATCH = 500


def open_reader(path: str, registry: RegistryRef | str, *, fallback: Callable[[], object]) -> "InventoryReader | None":
    """A reader of the inventory file ``path`` for ``registry``, or None when the full ``Inventory`` must
    answer: no such file, not readable as an inventory at ``SCHEMA_HEAD``, the registry never synced into it,
    or named by its host alone where two registries have that host (the full path words that error).
    ``fallback()`` gives the full inventory for the queries the reader hands on."""
    ref = RegistryRef.parse(registry) if isinstance(registry, str) else registry
    file = Path(path)
    if not file.is_file():
        return None
    try:
        conn = sqlite3.connect(f"file:{quote(str(file.resolve()))}?mode=ro", uri=True, isolation_level=None,
                               check_same_thread=False)
    except sqlite3.Error:
        return None
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA query_only = ON")
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        # regdb.inventory.registries' rule: by URL; by host too when the scheme was left to be assumed.
        found = conn.execute("SELECT id, name, last_synced_at FROM registries WHERE url = ?", (ref.url,)).fetchall()
        if not found and not ref.explicit_scheme:
            found = conn.execute("SELECT id, name, last_synced_at FROM registries WHERE name = ? ORDER BY id",
                                 (ref.name,)).fetchall()
    except sqlite3.Error:  # not an inventory, a WAL file it cannot read: the full path says what is wrong
        conn.close()
        return None
    if revision is None or revision[0] != SCHEMA_HEAD or len(found) != 1 or found[0][2] is None:
        conn.close()
        return None
    conn.create_function("regdb_match", 2, regdb_match, deterministic=True)
    return InventoryReader(conn, ref, found[0][0], found[0][1], fallback)


def has_glob(names) -> bool:
    return any(is_glob(name) for name in values(names))


class InventoryReader:
    """``list_repos``, ``list_tags``, ``query_repos`` and ``query_tags`` of ``regdb.Inventory`` for one synced
    registry, answered by ``sqlite3``; the same arguments, results and errors."""

    def __init__(self, conn: sqlite3.Connection, ref: RegistryRef, registry_id: int, registry_name: str,
                 fallback: Callable[[], object]):
        self.conn = conn
        self.ref = ref
        self.registry_id = registry_id
        self.registry_name = registry_name
        self._fallback = fallback

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def _snapshot(self):
        """One read transaction per answer, as the full inventory's one connection checkout: a sync committing
        between two of its statements (the repositories named, then their tags) cannot mix two snapshots."""
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")  # nothing was written: this only ends the read

    def _mine(self, registry: RegistryRef | str) -> bool:
        """Whether ``registry`` is the one this reader was opened for (anything else: the full inventory)."""
        # By URL, as the full inventory's lookup first goes (regdb.inventory.registries): -reg HOST means
        # https://HOST; a registry the reader was not opened for goes to the full inventory and its rule.
        url = registry.url if isinstance(registry, RegistryRef) else RegistryRef.parse(registry).url
        return url == self.ref.url

    def _full(self, registry):
        """The full inventory, for a query this reader does not answer (another registry, a glob)."""
        return self._fallback()

    # --- the listings -------------------------------------------------------------------------------------

    def list_repos(self, registry: str) -> list[str]:
        """Names of the repositories with at least one tag, sorted."""
        if not self._mine(registry):
            return self._full(registry).list_repos(registry)
        rows = self._execute(
            "SELECT repos.name FROM repos WHERE repos.registry_id = :registry_id AND "
            "EXISTS (SELECT * FROM tags WHERE tags.repo_id = repos.id) ORDER BY repos.name",
            {"registry_id": self.registry_id}, "repositories with tags",
        )
        return [name for (name,) in rows]

    def list_tags(self, registry: str, repos=None, *, reverse: bool = False) -> TagList:
        """Every tag (of ``repos`` when given): repositories by name, tags in version order, then the tags that
        are no version by name; ``reverse`` reverses each repository's tags."""
        if not self._mine(registry) or has_glob(repos):
            return self._full(registry).list_tags(registry, repos, reverse=reverse)
        with self._snapshot():
            return self._list_tags(repos, reverse)

    def _list_tags(self, repos, reverse: bool) -> TagList:
        where = ""
        missing: list[str] = []
        names = values(repos)
        if names:
            found, missing = self._resolve_repos(names)
            if not found:
                return TagList(missing_repos=missing)
            where = f" AND tags.repo_id IN ({_ids(found.values())})"
        order = "tags.version_key DESC NULLS FIRST, tags.name DESC" if reverse else \
            "tags.version_key ASC NULLS LAST, tags.name ASC"
        rows = self._execute(
            "SELECT repos.name, tags.name, digests.digest FROM tags JOIN repos ON repos.id = tags.repo_id "
            f"JOIN digests ON digests.id = tags.digest_id WHERE repos.registry_id = :registry_id{where} "
            f"ORDER BY repos.name, {order}",
            {"registry_id": self.registry_id}, "tags",
        )
        return TagList((TagRow(repo, tag, digest) for repo, tag, digest in rows), missing_repos=missing)

    def query_repos(self, registry: str, repos, *, raise_intersecting_repo: bool = True) -> Selection:
        """Every tagged digest of ``repos`` (``Inventory.query_repos``)."""
        if not self._mine(registry) or has_glob(repos):
            return self._full(registry).query_repos(registry, repos, raise_intersecting_repo=raise_intersecting_repo)
        return self._select(repos, None, TagFilter(), match_all_tags=False, raise_intersecting_tag=False,
                            raise_intersecting_repo=raise_intersecting_repo)

    def query_tags(self, registry: str, repos, tags=(), regex=(), exclude=(), exclude_regex=(), *,
                   match_all_tags: bool = True, raise_intersecting_tag: bool = False,
                   raise_intersecting_repo: bool = True) -> Selection:
        """The (repository, digest) pairs the selected tags point at (``Inventory.query_tags``, without
        retention: the CLI sends those to the full inventory)."""
        if not self._mine(registry) or has_glob(repos) or has_glob(tags) or has_glob(exclude):
            return self._full(registry).query_tags(
                registry, repos, tags, regex, exclude, exclude_regex, match_all_tags=match_all_tags,
                raise_intersecting_tag=raise_intersecting_tag, raise_intersecting_repo=raise_intersecting_repo,
            )
        include, excluded = parse_query(tags, regex, exclude, exclude_regex, filter_type=TagFilter)
        return self._select(repos, include, excluded, match_all_tags=match_all_tags,
                            raise_intersecting_tag=raise_intersecting_tag,
                            raise_intersecting_repo=raise_intersecting_repo)

    # --- the selection: regdb.selection.selectors._select, as SQL text ------------------------------------------------

    def _select(self, repos, include: TagFilter | None, exclude: TagFilter, **rules) -> Selection:
        with self._snapshot():
            return self._select_in_snapshot(repos, include, exclude, **rules)

    def _select_in_snapshot(self, repos, include: TagFilter | None, exclude: TagFilter, *, match_all_tags: bool,
                            raise_intersecting_tag: bool, raise_intersecting_repo: bool) -> Selection:
        names = values(repos)
        if not names:
            raise SelectorError("no repositories selected: give at least one {repos:REPO}", fields=("repos",))
        found, missing = self._resolve_repos(names)
        if not found:
            return Selection(missing_repos=missing)
        # Inlined, as regdb.selection.selectors inlines them: integers of our own, and no bound-parameter limit.
        repo_ids = _ids(sorted(found.values()))
        params = _Params()
        # The rules of regdb.selection.selectors._select, evaluated over the named repositories' own tags, read once:
        # a pair's tags in its repository are exactly its rows in `tag`, so each EXISTS over them there is an
        # aggregate here. regdb.selection.selectors looks each candidate's tags up by digest instead, which reads every
        # tag of a digest that many repositories share (1,000 per candidate in bench 3a's blocks) three times.
        included = "1" if include is None else _filter_sql(include, "tags", params)
        excluding = _filter_sql(exclude, "tags", params)
        check_tags = match_all_tags and include is not None
        flags = ["excluded", "outside", "elsewhere", "selected", "tag_excluded"]
        statement = (
            "WITH tag AS (SELECT tags.repo_id, tags.digest_id, tags.name, tags.version_key, "
            f"{included} AS selected, {excluding} AS tag_excluded FROM tags WHERE tags.repo_id IN ({repo_ids})), "
            # Materialized, so the repository check runs once per pair, not once per tag of the pair (a third
            # of the statement's time on bench 3a). + 0 on repos.registry_id: see regdb.selection.selectors (without it
            # SQLite walks every repository of the registry).
            f"candidate AS {MATERIALIZED}(SELECT repo_id, digest_id, max(tag_excluded) AS excluded, "
            "max(NOT selected) AS outside, EXISTS (SELECT repo_digests.repo_id FROM repo_digests JOIN repos "
            "ON repos.id = repo_digests.repo_id WHERE repo_digests.digest_id = tag.digest_id AND "
            f"repo_digests.repo_id NOT IN ({repo_ids}) AND repos.registry_id + 0 = {int(self.registry_id)}) "
            "AS elsewhere FROM tag GROUP BY repo_id, digest_id HAVING max(selected AND NOT tag_excluded) = 1) "
            "SELECT repos.name AS repo, digests.digest, digests.media_type, digests.total_size, "
            "tag.name AS tag_name, candidate.digest_id, candidate.excluded, candidate.outside, "
            "candidate.elsewhere, tag.selected, tag.tag_excluded "
            "FROM candidate JOIN tag ON tag.repo_id = candidate.repo_id AND tag.digest_id = candidate.digest_id "
            "JOIN repos ON repos.id = candidate.repo_id JOIN digests ON digests.id = candidate.digest_id "
            "ORDER BY repos.name, tag.version_key ASC NULLS LAST, tag.name ASC"
        )
        columns = ["repo", "digest", "media_type", "total_size", "tag_name", "digest_id", *flags]
        row_type: Any = cast(Any, namedtuple)("Row", columns)  # its fields depend on the query: typed as Any
        rows = [row_type._make(row) for row in self._execute(statement, params.values,
                                                               "selected digests and their tags")]
        raise_tags = check_tags and raise_intersecting_tag

        return apply_rules(
            rows, self.registry_name, missing, exclude=bool(exclude), check_tags=check_tags,
            raise_tags=raise_tags, raise_repo=(lambda rows: self._raise_intersecting_repo(rows, repo_ids))
            if raise_intersecting_repo else None,
            other_repos=lambda digest_ids: self._other_repos(digest_ids, repo_ids),
        )

    def _other_repos(self, digest_ids: list[int], repo_ids: str) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        for start in range(0, len(digest_ids), BATCH):
            rows = self._execute(
                "SELECT repo_digests.digest_id, repos.name FROM repo_digests JOIN repos ON repos.id = "
                f"repo_digests.repo_id WHERE repo_digests.digest_id IN ({_ids(digest_ids[start:start + BATCH])}) "
                f"AND repo_digests.repo_id NOT IN ({repo_ids}) AND repos.registry_id = :registry_id "
                "ORDER BY repos.name",
                {"registry_id": self.registry_id}, "the other repositories holding left-out digests",
            )
            for digest_id, name in rows:
                found.setdefault(digest_id, []).append(name)
        return found

    def _raise_intersecting_repo(self, rows, repo_ids: str) -> None:
        found = first_flagged(rows, "elsewhere")
        if found is None:
            return
        repo, digest = found
        digest_id = next(row.digest_id for row in rows if (row.repo, row.digest) == found)
        others = [name for (name,) in self._execute(
            "SELECT repos.name FROM repos WHERE repos.id IN (SELECT repo_digests.repo_id FROM repo_digests "
            "WHERE repo_digests.digest_id = :digest_id) AND repos.registry_id = :registry_id "
            f"AND repos.id NOT IN ({repo_ids}) ORDER BY repos.name",
            {"digest_id": digest_id, "registry_id": self.registry_id}, "the other repositories holding it",
        )]
        raise IntersectionError(
            f"{repo}@{digest} is also in repository {', '.join(others)}, which the selection does not include; "
            "name it with -r too, or use --no-raise-intersecting-repo to leave such digests out",
            repo=repo, digest=digest, others=others,
        )

    # --- plumbing -----------------------------------------------------------------------------------------

    def _resolve_repos(self, names: tuple[str, ...]) -> tuple[dict[str, int], list[str]]:
        wanted = list(dict.fromkeys(names))
        params = {f"n{i}": name for i, name in enumerate(wanted)}
        rows = self._execute(
            "SELECT repos.id, repos.name FROM repos WHERE repos.registry_id = :registry_id AND repos.name IN "
            f"({', '.join(':' + key for key in params)})",
            {"registry_id": self.registry_id, **params}, "repositories named with -r",
        )
        found = {name: repo_id for repo_id, name in rows}
        return found, [name for name in wanted if name not in found]

    def _execute(self, statement: str, params: dict, purpose: str) -> list[tuple]:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s:\n%s\n-- parameters: %s", purpose, statement, params)
        return self.conn.execute(statement, params).fetchall()


class _Params:
    """Bound parameters named in the order they are made: SQL text assembled in pieces stays unambiguous."""

    def __init__(self):
        self.values: dict[str, object] = {}

    def __call__(self, value) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f":{name}"


def _filter_sql(tag_filter: TagFilter, alias: str, params: _Params) -> str:
    """``regdb.selection.selectors.filter_clause`` for SQLite, as text over the tag row ``alias``; never NULL."""
    names = sorted({s.name for s in tag_filter.selectors if s.op is None and s.name is not None})
    terms: list[str] = []
    if names:
        terms.append(f"{alias}.name IN ({', '.join(params(name) for name in names)})")
    for selector in tag_filter.selectors:
        if selector.op is not None:
            key = f"{alias}.version_key"
            terms.append(f"({key} IS NOT NULL AND {_version_sql(key, selector, tag_filter.protects, params)})")
    for pattern in tag_filter.patterns:
        terms.append(f"regdb_match({params(pattern)}, {alias}.name) = 1")
    return f"({' OR '.join(terms)})" if terms else "0"


def _version_sql(key: str, selector: TagSelector, protects: bool, params: _Params) -> str:
    """``regdb.selection.selectors.version_clause`` as text."""
    # A version selector (op set) always carries its key, base and precision (regdb.versions.TagSelector).
    assert selector.op is not None and selector.key is not None and selector.base is not None
    assert selector.precision is not None
    if selector.op == "==" and not protects:
        return f"{key} = {params(selector.key)}"
    base, high = selector.base, selector.base + ABOVE_PRECISION
    plain = {
        "==": lambda: f"{key} >= {params(base)} AND {key} < {params(high)}",
        "<": lambda: f"{key} < {params(base)}",
        ">": lambda: f"{key} > {params(high)}",
        "<=": lambda: f"{key} < {params(high)}",
        ">=": lambda: f"{key} >= {params(base)}",
    }[selector.op]()
    if protects:
        return f"({plain})"
    field = f"substr({key}, length({key}) - 2)"
    return (f"({plain}) AND {field} >= {params(precision_field(selector.precision))} AND "
            f"{field} <= {params(precision_field(MAX_PRECISION))}")


def _ids(ids) -> str:
    return ", ".join(str(int(value)) for value in ids)
