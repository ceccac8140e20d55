"""What a selection asks and what it answers, in plain Python: no SQLAlchemy, no database.

The parsed tag filters of a query (``TagFilter``, ``parse_query``), the rows it answers (``Selected``,
``Skipped``, ``Selection``, ``TagRow``, ``TagList``) and ``regdb_match``, Python's ``re.match`` as SQL sees it.
Two compilers turn a query into SQL: ``regdb.selection.selectors`` into SQLAlchemy expressions (SQLite and
PostgreSQL, every option; ``regdb.selection.common`` holds its SQLAlchemy side), ``regdb.selection.sqlite_reader``
into SQL text for the standard library's ``sqlite3`` (the read-only listings of an SQLite inventory, which then
start without importing SQLAlchemy: issue 17). Both build their answers from these classes, so a listing reads
the same whichever answered it.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Self, TypeVar

from regdb.errors import IntersectionError, SelectorError
from regdb.versions import TagSelector, compile_regex, parse_tag_selector

# cosign's signature / attestation / SBOM tags and the OCI referrers fallback tag all start so
# (docs/registry-behaviour.md, "Referrers and signatures"); such a tag names the digest it belongs to.
DIGEST_TAG_PREFIX = "sha256-"


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


# --- regular expressions in SQL ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def regdb_match(pattern, value) -> int:
    """SQL ``regdb_match(pattern, value)``: 1 when ``re.match`` finds the pattern at the start of value.

    Never NULL (0 for a NULL value), so ``NOT regdb_match(...)`` is a plain boolean inside NOT EXISTS."""
    if pattern is None or value is None:
        return 0
    return 1 if _compiled(pattern).match(value) is not None else 0


def is_digest_tag(name: str) -> bool:
    """True for ``sha256-<hex>`` tags (cosign ``.sig`` / ``.att`` / ``.sbom``, OCI referrers fallback)."""
    return name.startswith(DIGEST_TAG_PREFIX)


# --- tag filters ----------------------------------------------------------------------------------------------


def values(value) -> tuple[str, ...]:
    """One name or many: the Python API accepts ``"app"`` as well as ``["app", "tool"]``, as the seed did."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@dataclass(frozen=True)
class TagFilter:
    """The ``-t`` and ``-re`` values of a query (or its ``-x`` and ``-xre``), parsed and validated; plain data
    (regdb.selection.selectors' subclass adds ``clause``, its SQLAlchemy expression)."""

    selectors: tuple[TagSelector, ...] = ()
    patterns: tuple[str, ...] = ()
    protects: bool = False  # an exclusion or keep rule: versions match by PEP 440 too (regdb.versions)

    @classmethod
    def parse(cls, tags=(), regex=(), *, protects: bool = False) -> Self:
        """Raises SelectorError naming an invalid version or regular expression."""
        selectors = tuple(parse_tag_selector(text) for text in values(tags))
        patterns = values(regex)
        for pattern in patterns:
            compile_regex(pattern)
        return cls(selectors, patterns, protects)

    def __bool__(self) -> bool:
        return bool(self.selectors or self.patterns)


AnyFilter = TypeVar("AnyFilter", bound="TagFilter")  # the selectors' subclass compiles to SQLAlchemy


def parse_query(tags=(), regex=(), exclude=(), exclude_regex=(), *,
                filter_type: type[AnyFilter] = TagFilter) -> tuple[AnyFilter, AnyFilter]:  # type: ignore[assignment]
    """The (include, exclude) filters of a tag query; SelectorError for an invalid or missing selector.
    ``filter_type``: a subclass to parse into (regdb.selection.selectors' compiles to SQLAlchemy)."""
    kind = filter_type
    include = kind.parse(tags, regex)
    if not include:
        raise SelectorError("no tags selected: give at least one {tags:TAG|SELECTOR} or {regex:REGEX}",
                            fields=("tags", "regex"))
    return include, kind.parse(exclude, exclude_regex, protects=True)


# --- the rules' verdicts -----------------------------------------------------------------------------------------
# Both ways of asking (regdb.selection.selectors through SQLAlchemy, regdb.selection.sqlite_reader through
# sqlite3) get back one row per (repository, digest, tag) with the rules' flags as columns: repo, digest,
# media_type, total_size, tag_name, digest_id, then excluded, outside, elsewhere, selected, tag_excluded.
# What those flags mean for the selection is decided here, once.


def apply_rules(rows, registry: str, missing: list[str], *, exclude: bool, check_tags: bool, raise_tags: bool,
                raise_repo: Callable[[list], None] | None,
                other_repos: Callable[[list[int]], dict[int, list[str]]]) -> Selection:
    """The selection the flagged rows make: a pair with an excluded tag is left out (rule 1); with
    ``check_tags``, one with a tag outside the selection raises (``raise_tags``) or is left out (rule 2); one
    also held elsewhere raises through ``raise_repo`` or, without it, is left out naming ``other_repos``
    (rule 3). Rows come by repository and tag version, so a pair's first row places it in the result."""
    skipped: list[Skipped] = []

    def leave_out(flag: str, reason: str, others) -> None:
        nonlocal rows
        out = [row for row in rows if getattr(row, flag)]
        if not out:
            return
        rows = [row for row in rows if not getattr(row, flag)]
        for (repo, digest), pair_rows in by_pair(out).items():
            skipped.append(Skipped(repo, digest, tuple(row.tag_name for row in pair_rows), reason,
                                   others=tuple(others(pair_rows))))

    if exclude:
        leave_out("excluded", EXCLUDED_TAG, lambda pair_rows: [r.tag_name for r in pair_rows if r.tag_excluded])
    if raise_tags:
        raise_intersecting_tag(rows)
    elif check_tags:
        leave_out("outside", OTHER_TAG, lambda pair_rows: [r.tag_name for r in pair_rows if not r.selected])
    if raise_repo is not None:
        raise_repo(rows)
    else:
        elsewhere_ids = sorted({row.digest_id for row in rows if row.elsewhere})
        holders = other_repos(elsewhere_ids) if elsewhere_ids else {}
        leave_out("elsewhere", OTHER_REPO, lambda pair_rows: holders.get(pair_rows[0].digest_id, []))
    grouped: dict[tuple[str, str], tuple[str, int, list[str]]] = {}
    for repo, digest, media_type, size, tag_name, *_ in rows:
        entry = grouped.get((repo, digest))
        if entry is None:
            grouped[repo, digest] = (media_type, size, [tag_name])
        else:
            entry[2].append(tag_name)
    return Selection(
        (
            Selected(registry, repo, digest, tuple(tag_names), media_type, size)
            for (repo, digest), (media_type, size, tag_names) in grouped.items()
        ),
        missing_repos=missing,
        skipped=sorted(skipped, key=lambda item: (item.repo, item.digest)),
    )


def by_pair(rows) -> dict[tuple[str, str], list]:
    grouped: dict[tuple[str, str], list] = {}
    for row in rows:
        grouped.setdefault((row.repo, row.digest), []).append(row)
    return grouped


def first_flagged(rows, flag: str) -> tuple[str, str] | None:
    """The first (repository, digest), by name and digest, whose rows carry ``flag``: the error is stable."""
    flagged = {(row.repo, row.digest) for row in rows if getattr(row, flag)}
    return min(flagged) if flagged else None


def raise_intersecting_tag(rows) -> None:
    found = first_flagged(rows, "outside")
    if found is None:
        return
    repo, digest = found
    others = [row.tag_name for row in rows if (row.repo, row.digest) == found and not row.selected]
    raise IntersectionError(
        f"{repo}@{digest} is also tagged {', '.join(others)} in {repo}, which the selection does not include "
        "(--raise-intersecting-tag); select those tags too, or leave the option out to skip such digests",
        repo=repo, digest=digest, others=others,
    )
