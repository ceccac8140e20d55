"""Selectors: docker-registry-util's ``query-repos`` / ``query-tags`` selections, compiled into SQL.

A query names repositories (``-r``), tags to select (``-t`` exact names or version comparisons, ``-re``
regular expressions) and tags to exclude (``-x``, ``-xre``). It selects (repository, digest) pairs: the
manifests the selected tags point at, one row per repository that holds them.

The safety rules (issue #3, after docker-registry-util's documentation), in the order they apply:

1. A digest that carries an excluded tag in that repository is left out, always and silently.
2. With ``match_all_tags`` (the default), a digest that also carries a tag of that repository which the
   selection does not include is left out, or ``IntersectionError`` with ``raise_intersecting_tag``.
3. A digest also present (tagged or not, index children included: ``repo_digests``) in a repository of the
   same registry that ``-r`` does not name raises ``IntersectionError`` naming that repository, or is left out
   with ``raise_intersecting_repo=False``. Naming both repositories is not an intersection: deletion is per
   (repository, digest), so the other repository's copy is never touched by it.

Everything is evaluated by the database in one statement: the tag filters are SQL expressions over
``tags.name`` and ``tags.version_key`` (a version comparison is an index range scan), each rule is an
``EXISTS`` subquery selected as a flag column of the candidate rows. Python only groups the result rows and
reads those flags: a flagged pair either raises or is left out and reported in ``Selection.skipped`` with the
rule's reason (the excluded tag, the other tag, the other repository), so a person can see why it stays. Regular
expressions go through ``regex_match``: the ``regdb_match`` SQL function on SQLite (Python's ``re.match``), the
``~`` operator on PostgreSQL.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from sqlalchemy import (
    BindParameter,
    Connection,
    ColumnElement,
    and_,
    bindparam,
    exists,
    false,
    func,
    not_,
    or_,
    select,
    true,
)

from regdb.inventory import models
from regdb.errors import IntersectionError, SelectorError
from regdb.selection import query
from regdb.selection.patterns import glob_regex, is_glob
from regdb.selection.common import (
    Selected,
    Selection,
    Skipped,
    TagList,
    TagRow,
    ensure_sql_functions,
    execute_logged,
    install_sql_functions,
    registry_name,
    resolve_repos,
    values,
)
from regdb.selection.query import apply_rules, first_flagged
from regdb.versions import (
    ABOVE_PRECISION,
    MAX_PRECISION,
    TagSelector,
    precision_field,
)

__all__ = [
    "Selected",
    "Selection",
    "Skipped",
    "TagFilter",
    "TagList",
    "TagRow",
    "install_sql_functions",
    "list_repos",
    "list_tags",
    "parse_query",
    "query_repos",
    "query_tags",
    "regex_match",
]

log = logging.getLogger(__name__)

# Digests per IN list when naming the repositories that hold left-out digests: well under SQLite's limit on
# bound parameters (32766).
_BATCH = 500

_tags = models.Tag.__table__
_repos = models.Repo.__table__
_repo_digests = models.RepoDigest.__table__
_digests = models.Digest.__table__
_registries = models.Registry.__table__


# --- regular expressions in SQL -------------------------------------------------------------------------------


# A leading group of global flags, ``(?i)``: Python accepts global flags only at the very start of a pattern
# (PostgreSQL's AREs too), so anchoring must keep them in front: ``(?i)^(?:rest)``, never ``^(?:(?i)rest)``.
_GLOBAL_FLAGS = re.compile(r"^(?:\(\?[aiLmsux]+\))+")


def anchored(pattern: str) -> str:
    """The pattern anchored at the start, as ``re.match`` anchors it, for engines that search instead."""
    flags = _GLOBAL_FLAGS.match(pattern)
    head = flags.group(0) if flags else ""
    return f"{head}^(?:{pattern[len(head):]})"


def regex_match(column: ColumnElement, pattern: str, dialect_name: str) -> ColumnElement[bool]:
    """``column`` matches ``pattern`` from its start (``re.match``): the one place that knows each dialect.

    SQLite has no regular expressions of its own; ``regdb_match`` runs Python's ``re`` on every connection
    (SQLAlchemy's ``regexp_match`` would use ``re.search``, and wrapping a pattern in ``^(?:...)`` breaks those
    that start with global flags such as ``(?i)``). PostgreSQL's ``~`` searches, so the pattern is anchored;
    its regex dialect (ARE) agrees with Python's for the usual tag patterns (classes, ``\\d``, ``(?i)``)."""
    if dialect_name == "postgresql":
        return column.op("~", is_comparison=True)(anchored(pattern))
    return func.regdb_match(pattern, column) == 1


# --- tag filters ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TagFilter(query.TagFilter):
    """The ``-t`` and ``-re`` values of a query (or its ``-x`` and ``-xre``), parsed and validated
    (regdb.selection.query, plain Python), compiled into SQLAlchemy by ``clause``."""

    def clause(self, tag, dialect_name: str) -> ColumnElement[bool]:
        """True when the tag row matches any selector or pattern; never NULL, so it can be negated."""
        names = sorted({s.name for s in self.selectors if s.op is None and s.name is not None})
        terms: list[ColumnElement[bool]] = []
        if names:
            terms.append(tag.c.name.in_(names))
        for selector in self.selectors:
            if selector.op is not None:
                # version_key IS NULL for a tag without a version: without the guard `NOT (key < :k)` would be
                # NULL, and NOT EXISTS would wrongly treat such a tag as selected.
                terms.append(and_(tag.c.version_key.is_not(None), version_clause(tag.c.version_key, selector,
                                                                                 protects=self.protects)))
        for pattern in self.patterns:
            terms.append(regex_match(tag.c.name, pattern, dialect_name))
        return or_(*terms) if terms else false()


def version_clause(key, selector: TagSelector, *, protects: bool) -> ColumnElement[bool]:
    """SQL for one version selector over a ``version_key`` column: plain byte comparisons on the key (an index
    range), plus, for what selects, the precision field read from the key's last three characters.

    Every precision of the operand's version lies in ``base + "#"`` .. ``base + "$"`` (regdb.versions), so plain
    PEP 440 is a range comparison; keys written before the precision field existed (no ``#``) compare the
    same way under these bounds, and never pass the precision check, so they select nothing until re-synced.
    """
    assert selector.base is not None and selector.op is not None and selector.precision is not None  # a version
    base, high = selector.base, selector.base + ABOVE_PRECISION
    plain = {
        "==": and_(key >= base, key < high),
        "<": key < base,
        ">": key > high,
        "<=": key < high,
        ">=": key >= base,
    }[selector.op]
    if protects:
        return plain  # the precision rule only narrows PEP 440, so "either of the two" is PEP 440
    if selector.op == "==":
        return key == selector.key
    field = func.substr(key, func.length(key) - 2)  # substr and length mean the same in SQLite and PostgreSQL
    return and_(plain, field >= precision_field(selector.precision), field <= precision_field(MAX_PRECISION))


# --- running statements ----------------------------------------------------------------------------------------


def _version_order(tag) -> list:
    """ORDER BY terms for version order: versions ascending, then tags without a version, by name."""
    return [tag.c.version_key.asc().nulls_last(), tag.c.name.asc()]


# --- the queries ----------------------------------------------------------------------------------------------


def parse_query(tags=(), regex=(), exclude=(), exclude_regex=()) -> tuple[TagFilter, TagFilter]:
    """The (include, exclude) filters of a tag query; SelectorError for an invalid or missing selector."""
    return query.parse_query(tags, regex, exclude, exclude_regex, filter_type=TagFilter)


def query_tags(
    conn: Connection,
    registry_id: int,
    repos,
    tags=(),
    regex=(),
    exclude=(),
    exclude_regex=(),
    *,
    match_all_tags: bool = True,
    raise_intersecting_tag: bool = False,
    raise_intersecting_repo: bool = True,
    retention=None,
) -> Selection:
    """The (repository, digest) pairs that the tags matching ``tags`` / ``regex`` point at, in ``repos``.

    ``tags``: exact tag names or version comparisons (``<1.4``, ``>=v2``, ``==1.0``); ``regex``: patterns matched
    from the start of the tag (``re.match``); ``exclude`` / ``exclude_regex``: the same, for tags whose digests
    must not be selected. The safety rules are in the module docstring. Raises ``SelectorError`` for an invalid
    selector or an empty one, ``IntersectionError`` as those rules say.

    ``retention``: a ``regdb.selection.retention.Retention`` (``--keep-latest``, ``--older-than``, ``--newer-than``):
    its selectors must hold too, and ``tags`` / ``regex`` may then be empty (every tag). With ``--untagged`` the
    query selects manifests without tags instead (``regdb.selection.retention.query_untagged``).
    """
    if retention is None or not retention.selects:
        include, excluded = parse_query(tags, regex, exclude, exclude_regex)
        if retention is not None and retention.unused_since is not None:  # --keep-pulled-within alone protects
            retention.check_observed(conn, registry_id)
        else:
            retention = None
    else:
        include, excluded = TagFilter.parse(tags, regex), TagFilter.parse(exclude, exclude_regex, protects=True)
        retention.check_observed(conn, registry_id)  # --not-pulled-for: only as far back as pulls were seen
        if retention.untagged:
            from regdb.selection.retention import query_untagged

            if include or excluded:
                raise SelectorError("{untagged} selects manifests without tags: {tags}, {regex}, {exclude} and "
                                    "{exclude_regex} do not apply",
                                    fields=("untagged", "tags", "regex", "exclude", "exclude_regex"))
            return query_untagged(conn, registry_id, repos, retention, raise_intersecting_repo=raise_intersecting_repo)
    return _select(
        conn, registry_id, repos, include, excluded,
        match_all_tags=match_all_tags, raise_intersecting_tag=raise_intersecting_tag,
        raise_intersecting_repo=raise_intersecting_repo, retention=retention,
    )


def query_repos(conn: Connection, registry_id: int, repos, *, raise_intersecting_repo: bool = True) -> Selection:
    """Every tagged digest of ``repos``, one row per (repository, digest), with the repository check of
    ``query_tags`` (a digest also in a repository not named raises, or is left out)."""
    return _select(
        conn, registry_id, repos, None, TagFilter(), match_all_tags=False, raise_intersecting_tag=False,
        raise_intersecting_repo=raise_intersecting_repo,
    )


def _select(
    conn: Connection,
    registry_id: int,
    repos,
    include: TagFilter | None,
    exclude: TagFilter,
    *,
    match_all_tags: bool,
    raise_intersecting_tag: bool,
    raise_intersecting_repo: bool,
    retention=None,
) -> Selection:
    names = values(repos)
    if not names:
        raise SelectorError("no repositories selected: give at least one {repos:REPO}", fields=("repos",))
    ensure_sql_functions(conn)
    dialect = conn.dialect.name
    registry = registry_name(conn, registry_id)
    found, missing = resolve_repos(conn, registry_id, names)
    if not found:
        return Selection(missing_repos=missing)
    # Inlined rather than bound: a query over thousands of repositories would otherwise run into SQLite's
    # limit on bound parameters (32766), once for each of the two places the list appears.
    repo_ids: BindParameter[list[int]] = bindparam("repo_ids", sorted(found.values()), expanding=True,
                                                   literal_execute=True)

    def included(tag) -> ColumnElement[bool]:
        if include is None:
            return true()
        if retention is None:
            return include.clause(tag, dialect)
        return and_(
            include.clause(tag, dialect) if include else true(),
            retention.tag_clause(tag, registry_id=registry_id, repo_ids=repo_ids, include=include or None,
                                 dialect=dialect),
        )

    # Candidates: (repository, digest) pairs with at least one selected tag.
    seed_tag = _tags.alias("selected_tag")
    candidate = (
        select(seed_tag.c.repo_id, seed_tag.c.digest_id)
        .where(seed_tag.c.repo_id.in_(repo_ids), included(seed_tag), not_(exclude.clause(seed_tag, dialect)))
        .distinct()
        .subquery("candidate")
    )

    def any_tag_of_candidate(alias: str, condition) -> ColumnElement[bool]:
        tag = _tags.alias(alias)
        return exists().where(_same_pair(tag, candidate), condition(tag))

    # Each rule is a flag column of the rows: one statement answers the query, finds any violation and says
    # why each left-out pair is left out, so the checks cost one pass, not two.
    flags: list[ColumnElement] = []
    if exclude:
        # Rule 1: an excluded tag protects its digest, whatever else points at it.
        flags.append(any_tag_of_candidate("excluded_tag", lambda tag: exclude.clause(tag, dialect)).label("excluded"))
    check_tags = match_all_tags and include is not None
    if check_tags:
        # Rule 2: every tag of the digest in that repository must be selected.
        flags.append(any_tag_of_candidate("outside_tag", lambda tag: not_(included(tag))).label("outside"))
    # Rule 3: the digest must not be present in a repository of this registry that -r does not name.
    elsewhere = exists(
        select(_repo_digests.c.repo_id)
        .join(_repos, _repos.c.id == _repo_digests.c.repo_id)
        .where(
            _repo_digests.c.digest_id == candidate.c.digest_id,
            _repo_digests.c.repo_id.not_in(repo_ids),
            # + 0: without ANALYZE statistics SQLite otherwise walks every repository of the registry for each
            # candidate (sqlite_autoindex_repos_1) instead of the few holding its digest: 18 s instead of
            # milliseconds for 100 of 10,000 repositories (bench 3a).
            _repos.c.registry_id + 0 == registry_id,
        )
    )
    flags.append(elsewhere.label("elsewhere"))
    raise_tags = check_tags and raise_intersecting_tag

    # Every tag of each candidate pair, in version order, and whether each is selected / excluded.
    tag = _tags.alias("tag")
    columns = [_repos.c.name.label("repo"), _digests.c.digest, _digests.c.media_type, _digests.c.total_size,
               tag.c.name.label("tag_name"), candidate.c.digest_id, *flags]
    if check_tags:
        columns.append(included(tag).label("selected"))
    if exclude:
        columns.append(exclude.clause(tag, dialect).label("tag_excluded"))
    rows = execute_logged(
        conn,
        select(*columns)
        .select_from(candidate)
        .join(_repos, _repos.c.id == candidate.c.repo_id)
        .join(_digests, _digests.c.id == candidate.c.digest_id)
        .join(tag, _same_pair(tag, candidate))
        .order_by(_repos.c.name, *_version_order(tag)),
        "selected digests and their tags",
    ).all()

    return apply_rules(
        rows, registry, missing, exclude=bool(exclude), check_tags=check_tags, raise_tags=raise_tags,
        raise_repo=(lambda rows: _raise_intersecting_repo(conn, registry_id, rows, repo_ids))
        if raise_intersecting_repo else None,
        other_repos=lambda digest_ids: _other_repos(conn, registry_id, digest_ids, repo_ids),
    )


def _other_repos(conn: Connection, registry_id: int, digest_ids: list[int], repo_ids) -> dict[int, list[str]]:
    """digest_id -> the repositories outside the selection (``repo_ids``) that hold it, by name."""
    found: dict[int, list[str]] = {}
    for start in range(0, len(digest_ids), _BATCH):
        for digest_id, name in execute_logged(
            conn,
            select(_repo_digests.c.digest_id, _repos.c.name)
            .join(_repos, _repos.c.id == _repo_digests.c.repo_id)
            .where(
                _repo_digests.c.digest_id.in_(digest_ids[start : start + _BATCH]),
                _repo_digests.c.repo_id.not_in(repo_ids),
                _repos.c.registry_id == registry_id,
            )
            .order_by(_repos.c.name),
            "the other repositories holding left-out digests",
        ):
            found.setdefault(digest_id, []).append(name)
    return found


def _same_pair(tag, candidate) -> ColumnElement[bool]:
    """The tags of a candidate (repository, digest) pair, looked up by digest.

    ``repo_id + 0`` is the same value, but SQLite cannot use an index for it, so it looks the tags up with
    ix_tags_digest_id_repo_id (the few tags of one digest) and checks the repository on each. Without ANALYZE
    statistics it would otherwise pick ix_tags_repo_id_version_key and read every tag of the repository for
    each candidate: measured 83 ms instead of 23 ms for 100 repositories of 100 tags, and linear in the size
    of the repositories."""
    return and_(tag.c.digest_id == candidate.c.digest_id, tag.c.repo_id + 0 == candidate.c.repo_id)


def _raise_intersecting_repo(conn, registry_id, rows, repo_ids) -> None:
    found = first_flagged(rows, "elsewhere")
    if found is None:
        return
    repo, digest = found
    digest_id = next(row.digest_id for row in rows if (row.repo, row.digest) == found)
    others = list(
        execute_logged(
            conn,
            select(_repos.c.name)
            .where(
                _repos.c.id.in_(select(_repo_digests.c.repo_id).where(_repo_digests.c.digest_id == digest_id)),
                _repos.c.registry_id == registry_id,
                _repos.c.id.not_in(repo_ids),
            )
            .order_by(_repos.c.name),
            "the other repositories holding it",
        ).scalars()
    )
    raise IntersectionError(
        f"{repo}@{digest} is also in repository {', '.join(others)}, which the selection does not include; "
        "name it with -r too, or use --no-raise-intersecting-repo to leave such digests out",
        repo=repo, digest=digest, others=others,
    )


# --- listings -------------------------------------------------------------------------------------------------


def list_repos(conn: Connection, registry_id: int) -> list[str]:
    """Names of the registry's repositories that have at least one tag, sorted (as docker-registry-util)."""
    tagged = exists().where(_tags.c.repo_id == _repos.c.id)
    return list(
        execute_logged(
            conn,
            select(_repos.c.name).where(_repos.c.registry_id == registry_id, tagged).order_by(_repos.c.name),
            "repositories with tags",
        ).scalars()
    )


def list_tags(conn: Connection, registry_id: int, repos=None, *, reverse: bool = False) -> TagList:
    """Every tag of the registry (or of ``repos``): repositories by name; in each, tags in version order and
    tags without a version after them by name. ``reverse`` reverses the tag order within each repository."""
    statement = (
        select(_repos.c.name, _tags.c.name, _digests.c.digest)
        .join(_repos, _repos.c.id == _tags.c.repo_id)
        .join(_digests, _digests.c.id == _tags.c.digest_id)
        .where(_repos.c.registry_id == registry_id)
    )
    missing: list[str] = []
    names = values(repos)
    if names:
        found, missing = resolve_repos(conn, registry_id, names)
        statement = statement.where(_tags.c.repo_id.in_(sorted(found.values())))
    if reverse:
        order = [_tags.c.version_key.desc().nulls_first(), _tags.c.name.desc()]
    else:
        order = _version_order(_tags)
    rows = execute_logged(conn, statement.order_by(_repos.c.name, *order), "tags")
    return TagList((TagRow(repo, tag, digest) for repo, tag, digest in rows), missing_repos=missing)


def repo_clause(patterns, column, dialect: str):
    """SQL: the repository name ``column`` matches one of the patterns (glob, ``re:REGEX``, or a name)."""
    names = [p for p in patterns if not p.startswith("re:") and not is_glob(p)]
    terms = [column.in_(names)] if names else []
    for pattern in patterns:
        if pattern.startswith("re:"):
            terms.append(regex_match(column, pattern[3:], dialect))
        elif is_glob(pattern):
            terms.append(regex_match(column, glob_regex(pattern), dialect))
    return or_(*terms)
