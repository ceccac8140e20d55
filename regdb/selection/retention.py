"""Retention selectors: keep the newest N, by age, untagged manifests, compiled into SQL.

They extend the tag selectors of ``regdb.selection.selectors`` (``-t``, ``-re``, ``-x``, ``-xre``) and go through the same
safety rules: a digest is selected only when every tag of it in that repository is selected, an excluded tag
protects its digest, and a digest also present in a repository not named is an intersection. Within one
query every selector given must hold for a tag to be selected (they are ANDed):

* ``keep_latest=N``: per repository, the newest N images are kept; only the tags of older ones are selected.
  Images (digests), not tags, are counted: ``1.4`` and ``1.4.2`` on one digest are one image. An image ranks
  by its newest tag among those the ``-t`` / ``-re`` filter matches (so ``-re '^pr-' --keep-latest 5`` keeps
  the five newest pull-request builds). ``order_by="version"`` (the default) ranks by ``tags.version_key``:
  tags that are no version (``latest``, ``main``) are neither counted nor ever selected by it.
  ``order_by="created"`` ranks by the image's build time (``digests.created``; an index: its newest child's):
  every tag counts, and an image without a build time is neither counted nor selected.
* ``older_than`` / ``newer_than``: a duration back from now (``12h``, ``90d``, ``4w``) or an ISO date, compared
  with ``digests.created``. An image without a build time is never selected by age.
* ``untagged=True``: instead of tags, the repository's manifests that no tag points at and no index of the
  repository lists: a tag's former image after the tag moved, an index's children after the index was
  deleted. Only the age selectors combine with it.

Signatures belong to their subject: tags ``sha256-<hex>[.sig|.att|.sbom]`` (cosign, and the OCI referrers
fallback) are never selected by these selectors, never counted among the newest, and an untagged manifest
whose OCI ``subject`` is present in the repository is never selected on its own. The removal takes them away
with their subject (``regdb.cleanup.plan``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Iterable

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    exists,
    func,
    literal,
    not_,
    select,
    tuple_,
)

from regdb.inventory import models
from regdb.errors import IntersectionError, SelectorError
if TYPE_CHECKING:  # the type only: selectors builds on this module
    from regdb.selection.selectors import TagFilter

from regdb.selection.common import (
    DIGEST_TAG_PREFIX,
    Selected,
    Selection,
    is_digest_tag,
    registry_name,
    resolve_repos,
    values,
)

__all__ = [
    "DIGEST_TAG_PREFIX",
    "ORDERS",
    "Retention",
    "digest_tag",
    "is_digest_tag",
    "parse_age",
    "query_untagged",
    "signatures_of",
]

_tags = models.Tag.__table__
_repos = models.Repo.__table__
_repo_digests = models.RepoDigest.__table__
_digests = models.Digest.__table__
_children = models.DigestChild.__table__
_registries = models.Registry.__table__

ORDERS = ("version", "created")


def digest_tag(tag) -> ColumnElement[bool]:
    """SQL: the tag row (an alias of ``tags``) is a ``sha256-*`` tag. ``substr`` rather than LIKE: SQLite's LIKE
    ignores case, and tags are case-sensitive."""
    return func.substr(tag.c.name, 1, len(DIGEST_TAG_PREFIX)) == DIGEST_TAG_PREFIX


# --- ages -----------------------------------------------------------------------------------------------------

# More than any repository holds (the client refuses a listing past 1,000,000 tags), and a number every
# database binds as an integer.
MAX_KEEP_LATEST = 1_000_000

_DURATION = re.compile(r"(\d+)\s*([hdw])")
_UNIT = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def parse_duration(text: str) -> timedelta:
    """``12h``, ``90d``, ``4w`` as a ``timedelta``; SelectorError naming the text otherwise."""
    duration = _DURATION.fullmatch(str(text).strip())
    try:
        if duration:
            return int(duration.group(1)) * _UNIT[duration.group(2)]
    except OverflowError:
        pass
    raise SelectorError(f"bad duration '{text}': give a number of hours, days or weeks (12h, 90d, 4w)")


def parse_age(text: str, *, now: datetime | None = None) -> datetime:
    """The cutoff (naive UTC, as the inventory stores times) for ``90d``, ``12h``, ``4w`` back from ``now``, or
    for an ISO date / date-time (``2024-01-31``, ``2024-01-31T12:00:00Z``; without a zone it is UTC).

    Raises SelectorError naming the text."""
    value = str(text).strip()
    duration = _DURATION.fullmatch(value)
    try:
        if duration:
            return (now or utcnow()) - int(duration.group(1)) * _UNIT[duration.group(2)]
        when = datetime.fromisoformat(value)
    except (ValueError, OverflowError):
        raise SelectorError(
            f"bad age '{text}': give a duration (12h, 90d, 4w) or an ISO date (2024-01-31)"
        ) from None
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc).replace(tzinfo=None)
    return when


# --- the selectors --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Retention:
    """The retention selectors of one query. See the module docstring for their meaning.

    ``older_than`` / ``newer_than`` are the text the user gave (``"90d"``, ``"2024-01-31"``), turned into
    cutoffs once, against ``now`` (default: when the object is made). ``within``: policy rules only, the
    repositories (names) this applies to, when the query names more repositories than it selects in (the
    others still count as named for the intersection rule). Raises SelectorError for invalid values, naming
    the command-line option.
    """

    keep_latest: int | None = None
    order_by: str | None = None
    older_than: str | None = None
    newer_than: str | None = None
    untagged: bool = False
    within: tuple[str, ...] | None = None
    now: datetime | None = field(default=None, compare=False)
    older_cutoff: datetime | None = field(default=None, init=False)
    newer_cutoff: datetime | None = field(default=None, init=False)
    # Retention by use (issue 15, regdb.inventory.use): select / keep by the registry's pull notifications.
    not_pulled_for: str | None = None
    keep_pulled_within: str | None = None
    unused_since: datetime | None = field(default=None, init=False)
    unused_option: str | None = field(default=None, init=False)

    def __post_init__(self):
        if self.keep_latest is not None and (isinstance(self.keep_latest, bool) or self.keep_latest < 1):
            raise SelectorError("{keep_latest} must be at least 1: it is how many images each repository keeps",
                                fields=("keep_latest",))
        if self.keep_latest is not None and self.keep_latest > MAX_KEEP_LATEST:
            # SQLite binds at most a 64-bit integer (99999999999999999999 raised OverflowError deep in a query).
            raise SelectorError(f"{{keep_latest}} must be at most {MAX_KEEP_LATEST:,}, not {self.keep_latest}",
                                fields=("keep_latest",))
        if self.order_by is not None and self.order_by not in ORDERS:
            raise SelectorError(f"{{order_by}} must be one of {', '.join(ORDERS)}, not '{self.order_by}'",
                                fields=("order_by",))
        if self.order_by is not None and self.keep_latest is None:
            raise SelectorError("{order_by} only orders {keep_latest}: give {keep_latest:N} too",
                                fields=("order_by", "keep_latest"))
        if self.untagged and self.keep_latest is not None:
            raise SelectorError("{untagged} selects manifests without tags: {keep_latest} cannot rank them",
                                fields=("untagged", "keep_latest"))
        now = self.now or utcnow()
        for name, option in (("older_than", "--older-than"), ("newer_than", "--newer-than")):
            text = getattr(self, name)
            if text is not None:
                try:
                    cutoff = parse_age(text, now=now)
                except SelectorError as error:
                    raise SelectorError("{%s}: %s" % (name, error), fields=(name,)) from None
                object.__setattr__(self, name.replace("_than", "_cutoff"), cutoff)
        if self.within is not None:
            object.__setattr__(self, "within", tuple(self.within))
        for name, option in (("not_pulled_for", "--not-pulled-for"), ("keep_pulled_within", "--keep-pulled-within")):
            text = getattr(self, name)
            if text is not None:  # both leave out what was used since the cutoff: the earlier one wins
                try:
                    cutoff = parse_age(text, now=now)
                except SelectorError as error:
                    raise SelectorError("{%s}: %s" % (name, error), fields=(name,)) from None
                if self.unused_since is None or cutoff < self.unused_since:
                    object.__setattr__(self, "unused_since", cutoff)
                    object.__setattr__(self, "unused_option", f"{option} {text}")

    @property
    def ordering(self) -> str:
        return self.order_by or "version"

    @property
    def selects(self) -> bool:
        """True when any selector is set (a query may then go without ``-t`` / ``-re``)."""
        return self.keep_latest is not None or self.older_than is not None or self.newer_than is not None \
            or self.untagged or self.not_pulled_for is not None

    def describe(self) -> str:
        """One line for plans: ``newest 10 by version kept, older than 90d``."""
        parts = []
        if self.untagged:
            parts.append("untagged manifests")
        if self.keep_latest is not None:
            parts.append(f"newest {self.keep_latest} by {self.ordering} kept")
        if self.older_than is not None:
            parts.append(f"older than {self.older_than}")
        if self.newer_than is not None:
            parts.append(f"newer than {self.newer_than}")
        if self.unused_option is not None:
            parts.append(f"not pulled since {self.unused_since:%Y-%m-%d %H:%M}")
        return ", ".join(parts)

    def check_observed(self, conn: Connection, registry_id: int) -> None:
        """Refuse (``SelectorError``) a selection by use over a longer time than the inventory has observed."""
        if self.unused_since is not None:
            from regdb.inventory.use import check_observed

            check_observed(conn, registry_id, self.unused_since, self.unused_option or "")

    # -- SQL, for regdb.selection.selectors and the policy report

    def tag_clause(self, tag, *, registry_id: int, repo_ids: list[int], include: TagFilter | None,
                   dialect: str) -> ColumnElement[bool]:
        """True for a row of ``tag`` (an alias of ``tags``) that these selectors select: never a ``sha256-*``
        tag; in ``within``; beyond the newest N; of the right age. ``include`` is the query's ``-t`` / ``-re``
        filter (None: every tag), within which the newest are ranked."""
        terms: list[ColumnElement[bool]] = [not_(digest_tag(tag))]
        if self.within is not None:
            terms.append(tag.c.repo_id.in_(self._within_ids(registry_id)))
        if self.keep_latest is not None:
            ranked = self.ranked(repo_ids=repo_ids, include=include, dialect=dialect)
            beyond = select(ranked.c.repo_id, ranked.c.digest_id).where(ranked.c.n > self.keep_latest)
            terms.append(tuple_(tag.c.repo_id, tag.c.digest_id).in_(beyond))
            if self.ordering == "version":
                terms.append(tag.c.version_key.is_not(None))  # a tag that is no version has no place in the order
        if self.older_cutoff is not None or self.newer_cutoff is not None:
            terms.append(self.age_clause(tag.c.digest_id))
        if self.unused_since is not None:
            from regdb.inventory.use import used_since

            terms.append(not_(used_since(tag.c.repo_id, tag.c.digest_id, self.unused_since)))
        return and_(*terms)

    def age_clause(self, digest_id) -> ColumnElement[bool]:
        """True when the manifest ``digest_id`` has a build time within the age selectors (never when unknown)."""
        aged = _digests.alias("aged")
        terms = [aged.c.id == digest_id]
        if self.older_cutoff is not None:
            terms.append(aged.c.created < self.older_cutoff)
        if self.newer_cutoff is not None:
            terms.append(aged.c.created > self.newer_cutoff)
        return exists().where(*terms)

    def ranked(self, *, repo_ids: list[int], include: TagFilter | None, dialect: str):
        """Subquery ``(repo_id, digest_id, n)``: each image of the repositories with its place, 1 = newest, in
        the order ``keep_latest`` counts. Images that have no place (no version / no build time) are absent."""
        t = _tags.alias("ranked_tag")
        terms = [t.c.repo_id.in_(repo_ids), not_(digest_tag(t))]
        if include is not None and include:
            terms.append(include.clause(t, dialect))
        if self.ordering == "version":
            newest = func.max(t.c.version_key)
            per_digest = (
                select(t.c.repo_id, t.c.digest_id, newest.label("newest"), newest.label("version"))
                .where(*terms, t.c.version_key.is_not(None))
                .group_by(t.c.repo_id, t.c.digest_id)
            )
        else:
            d = _digests.alias("ranked_digest")
            per_digest = (
                select(t.c.repo_id, t.c.digest_id, d.c.created.label("newest"),
                       func.max(t.c.version_key).label("version"))
                .join(d, d.c.id == t.c.digest_id)
                .where(*terms, d.c.created.is_not(None))
                .group_by(t.c.repo_id, t.c.digest_id, d.c.created)
            )
        per_digest = per_digest.subquery("newest_per_digest")
        # Ties (two images of one build time, one version on two digests) fall to the higher version, then to
        # the digest fetched later, so the ranking is the same on every run and on every database.
        place = func.row_number().over(
            partition_by=per_digest.c.repo_id,
            order_by=[per_digest.c.newest.desc(), per_digest.c.version.desc().nulls_last(),
                      per_digest.c.digest_id.desc()],
        )
        return select(per_digest.c.repo_id, per_digest.c.digest_id, place.label("n")).subquery("ranked")

    def _within_ids(self, registry_id: int) -> Select:
        return select(_repos.c.id).where(_repos.c.registry_id == registry_id, _repos.c.name.in_(self.within or ()))


# --- untagged manifests -----------------------------------------------------------------------------------------


def untagged_terms(rd, d) -> list[ColumnElement[bool]]:
    """Conditions for a ``repo_digests`` row ``rd`` (its digest row ``d``) to be untagged in its repository:
    no tag there points at it, no index present there lists it, and its OCI ``subject`` (a signature's or
    SBOM's image) is not there. Shared by ``--untagged`` and by ``remove-repos``' untagged leftovers."""
    t = _tags.alias("t")
    dc = _children.alias("dc")
    rd_index = _repo_digests.alias("rd_index")
    rd_subject = _repo_digests.alias("rd_subject")
    d_subject = _digests.alias("d_subject")
    listed_by_an_index = (
        select(literal(1))
        .select_from(dc.join(rd_index, and_(rd_index.c.digest_id == dc.c.parent_id,
                                            rd_index.c.repo_id == rd.c.repo_id)))
        .where(dc.c.child_id == rd.c.digest_id)
        .exists()
    )
    subject_present = (
        select(literal(1))
        .select_from(d_subject.join(rd_subject, rd_subject.c.digest_id == d_subject.c.id))
        .where(d_subject.c.digest == d.c.subject_digest, rd_subject.c.repo_id == rd.c.repo_id)
        .exists()
    )
    return [
        not_(exists().where(t.c.repo_id == rd.c.repo_id, t.c.digest_id == rd.c.digest_id)),
        not_(listed_by_an_index),
        not_(subject_present),
    ]


def query_untagged(conn: Connection, registry_id: int, repos, retention: Retention, *,
                   raise_intersecting_repo: bool = True) -> Selection:
    """The manifests of ``repos`` that no tag points at and that belong to nothing present in the repository:
    no index there lists them, and their OCI ``subject`` (a signature's, an SBOM's image) is not there.

    The age selectors of ``retention`` apply. The repository rule of ``query_tags`` applies too: a manifest also
    present in a repository not named raises ``IntersectionError``, or is left out with
    ``raise_intersecting_repo=False``. Rows are ``Selected`` with no tags, by repository, oldest first.
    """
    names = values(repos)
    if not names:
        raise SelectorError("no repositories selected: give at least one {repos:REPO}", fields=("repos",))
    registry = registry_name(conn, registry_id)
    found, missing = resolve_repos(conn, registry_id, names)
    if not found:
        return Selection(missing_repos=missing)
    repo_ids = sorted(found.values())

    rd = _repo_digests.alias("rd")
    d = _digests.alias("d")
    terms: list[ColumnElement[bool]] = [rd.c.repo_id.in_(repo_ids), *untagged_terms(rd, d)]
    if retention.within is not None:
        terms.append(rd.c.repo_id.in_(retention._within_ids(registry_id)))
    if retention.older_cutoff is not None or retention.newer_cutoff is not None:
        terms.append(retention.age_clause(rd.c.digest_id))
    if retention.unused_since is not None:
        from regdb.inventory.use import used_since

        terms.append(not_(used_since(rd.c.repo_id, rd.c.digest_id, retention.unused_since)))

    rd_other = _repo_digests.alias("rd_other")
    r_other = _repos.alias("r_other")
    in_other_repo = (
        select(literal(1))
        .select_from(rd_other.join(r_other, r_other.c.id == rd_other.c.repo_id))
        .where(rd_other.c.digest_id == rd.c.digest_id, rd_other.c.repo_id.not_in(repo_ids),
               r_other.c.registry_id == registry_id)
        .exists()
    )
    base = (
        select(_repos.c.name, d.c.digest, d.c.media_type, d.c.total_size)
        .select_from(rd.join(_repos, _repos.c.id == rd.c.repo_id).join(d, d.c.id == rd.c.digest_id))
        .where(*terms)
    )
    if raise_intersecting_repo:
        _raise_if_in_other_repo(conn, registry_id, base.where(in_other_repo), repo_ids)
    else:
        base = base.where(not_(in_other_repo))
    rows = conn.execute(base.order_by(_repos.c.name, d.c.created.asc().nulls_first(), d.c.digest)).all()
    return Selection(
        (Selected(registry, repo, digest, (), media_type, size) for repo, digest, media_type, size in rows),
        missing_repos=missing,
    )


def _raise_if_in_other_repo(conn: Connection, registry_id: int, violating: Select, repo_ids: list[int]) -> None:
    repo_column, digest_column = violating.selected_columns[0], violating.selected_columns[1]
    found = conn.execute(violating.order_by(repo_column, digest_column).limit(1)).first()
    if found is None:
        return
    repo, digest = found[0], found[1]
    others = list(conn.execute(
        select(_repos.c.name)
        .join(_repo_digests, _repo_digests.c.repo_id == _repos.c.id)
        .join(_digests, _digests.c.id == _repo_digests.c.digest_id)
        .where(_digests.c.digest == digest, _repos.c.registry_id == registry_id, _repos.c.id.not_in(repo_ids))
        .order_by(_repos.c.name)
    ).scalars())
    raise IntersectionError(
        f"{repo}@{digest} is also in repository {', '.join(others)}, which the selection does not include; "
        "name it with -r too, or use --no-raise-intersecting-repo to leave such digests out",
        repo=repo, digest=digest, others=others,
    )


# --- signatures, shown with their subject ---------------------------------------------------------------------------


def signatures_of(conn: Connection, registry_id: int,
                  pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
    """(repo, digest) -> what belongs to it in that repository: its ``sha256-<hex>[.sig|.att|.sbom]`` tags, and
    ``referrer <digest>`` for each OCI 1.1 referrer present there (a manifest whose ``subject`` is it) that
    carries no such tag. Two queries over the repositories of ``pairs``, whatever their number."""
    wanted = set(pairs)
    if not wanted:
        return {}
    repo_names = sorted({repo for repo, _ in wanted})
    found: dict[tuple[str, str], list[str]] = {}
    t = _tags.alias("t")
    in_repos = and_(_repos.c.registry_id == registry_id, _repos.c.name.in_(repo_names))
    for repo, name in conn.execute(
        select(_repos.c.name, t.c.name)
        .join(t, t.c.repo_id == _repos.c.id)
        .where(in_repos, digest_tag(t))
        .order_by(_repos.c.name, t.c.name)
    ):
        subject = "sha256:" + name[len(DIGEST_TAG_PREFIX):].split(".", 1)[0]
        if (repo, subject) in wanted:
            found.setdefault((repo, subject), []).append(name)
    rd = _repo_digests.alias("rd")
    d = _digests.alias("d")
    for repo, subject, referrer in conn.execute(
        select(_repos.c.name, d.c.subject_digest, d.c.digest)
        .join(rd, rd.c.repo_id == _repos.c.id)
        .join(d, d.c.id == rd.c.digest_id)
        .where(in_repos, d.c.subject_digest.is_not(None),
               not_(exists().where(t.c.repo_id == rd.c.repo_id, t.c.digest_id == rd.c.digest_id, digest_tag(t))))
        .order_by(_repos.c.name, d.c.digest)
    ):
        if (repo, subject) in wanted:
            found.setdefault((repo, subject), []).append(f"referrer {referrer}")
    return found
