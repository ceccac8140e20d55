"""The removal plan: which (repository, digest) pairs a removal deletes, in SQL over the inventory.

A registry deletes per (repository, digest): ``DELETE /v2/<repo>/manifests/<digest>`` removes that manifest and
every tag of that repository pointing at it, and leaves the same digest in other repositories alone
(docs/registry-behaviour.md). So a removal is a list of (repository, digest) pairs:

1. Fresh facts (``refresh_selection``): the selected repositories are re-read from the registry (a sync of just
   those) and the selection is made again on that state, so a tag pushed since the last sync is seen.
2. The plan (``plan_removal``), in SQL over the inventory: the selected pairs; for an index, its child manifests
   that nothing else in the repository still references (else a garbage collection frees nothing); cosign tags
   ``sha256-<hex>.sig|.att|.sbom`` and OCI referrers (``subject``) of a removed digest in the same repository;
   and the bytes a garbage collection would then free, each blob counted once across the registry.

Carrying a plan out is ``regdb.cleanup.execute``. The library never prints: it returns a ``Plan``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable, Iterable, Protocol, Sequence, runtime_checkable

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)

from regdb.inventory import models
from regdb.registry.client import RegistryClient
from regdb.errors import (
    AuthenticationFailed,
    IncompleteInventory,
    NoCatalog,
    SelectorError,
)
from regdb.selection.common import Selection, values
from regdb.selection.retention import Retention
from regdb.selection.selectors import Skipped
from regdb.inventory.registries import RegistryNotInInventory, find_registry
from regdb.inventory.sync import BATCH, sync_registry, utcnow

log = logging.getLogger(__name__)

# Tags that belong to the image `sha256:<hex>` of the same repository (docs/registry-behaviour.md, "Referrers and
# signatures"): cosign's signature, attestation and SBOM tags `sha256-<hex>.sig|.att|.sbom`, and the OCI 1.1
# referrers fallback tag `sha256-<hex>` (an index of the referrers, on registries without the referrers API).
SIGNATURE_TAG_SUFFIXES = ("", ".sig", ".att", ".sbom")

# Plan reasons: a code, and for the rows that go with another one its digest in ``PlannedDeletion.parent``
# (never a sentence parsed back: ``PlannedDeletion.why`` renders both for a person).
SELECTED = "selected"
UNTAGGED = "untagged"  # remove-repos: an untagged manifest of a removed repository
CHILD = "child"  # parent: the removed index that lists it
SIGNATURE = "signature"  # parent: the removed image its sha256-<hex>[.sig|.att|.sbom] tag names
REFERRER = "referrer"  # parent: the removed image its OCI `subject` names

# Why a manifest stays although the selection or the closure reached it (``Plan.skipped``, with the selectors'
# own reasons in ``regdb.selection.selectors``).
HELD_BY_INDEX = "held-by-index"  # parent: an index that stays in that repository and lists it
REFERRER_KEPT = "referrer-kept"  # parent: the removed subject; kept for a tag of its own, now points at nothing
BELONGS_TO_KEPT = "belongs-to-kept"  # parent: the digest left out that this signature or referrer belongs to

_WHY = {
    SELECTED: "selected",
    UNTAGGED: "untagged",
    CHILD: "child of {parent}",
    SIGNATURE: "signature of {parent}",
    REFERRER: "referrer of {parent}",
}

# How old the inventory's last complete sync of the whole registry may be before a removal syncs it whole
# again: the cross-repository rule (a digest shared with a repository outside the selection) is only as good
# as the inventory's view of the other repositories. A day, as a nightly sync keeps it.
DEFAULT_MAX_INVENTORY_AGE = timedelta(hours=24)

# Statuses with which a registry refuses its catalog (Docker Hub 401, GHCR 404, some proxies 403 / 405).
NO_CATALOG_STATUSES = (401, 403, 404, 405)

_registries = models.Registry.__table__
_repos = models.Repo.__table__
_digests = models.Digest.__table__
_repo_digests = models.RepoDigest.__table__
_tags = models.Tag.__table__
_children = models.DigestChild.__table__
_blobs = models.DigestBlob.__table__
_deletions = models.Deletion.__table__

# The plan lives in a temporary table for the length of one transaction, so that the closure (children,
# signatures) and the bytes a garbage collection frees are joins against the inventory, not Python loops over it.
_plan_metadata = MetaData()
_plan = Table(
    "regdb_removal_plan",
    _plan_metadata,
    Column("seq", Integer, primary_key=True),
    Column("repo_id", Integer, nullable=False),
    Column("digest_id", Integer, nullable=False),
    Column("depth", Integer, nullable=False),
    Column("parent_id", Integer),
    Column("reason", String, nullable=False),
    prefixes=["TEMPORARY"],
)
# Pairs that an index staying in the repository lists: never planned, whatever selects or reaches them.
_held = Table(
    "regdb_removal_held",
    _plan_metadata,
    Column("repo_id", Integer, primary_key=True),
    Column("digest_id", Integer, primary_key=True),
    prefixes=["TEMPORARY"],
)


# --- the plan -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedDeletion:
    """One (repository, digest) to delete, with every tag of that repository that goes with it."""

    repo: str
    digest: str
    tags: tuple[str, ...]
    media_type: str
    kind: str  # 'image' or 'index'
    reason: str  # SELECTED, UNTAGGED, CHILD, SIGNATURE or REFERRER
    bytes: int  # bytes a garbage collection frees because of this row (each blob counted on one row only)
    depth: int = 0  # 0: selected; n: deleted after the rows of smaller depth it depends on
    after: tuple[str, ...] = ()  # digests in this repository that must be deleted before this one
    parent: str | None = None  # CHILD, SIGNATURE, REFERRER: the planned digest this row goes with

    @property
    def why(self) -> str:
        """The reason for a person: ``child of sha256:...``."""
        return _WHY.get(self.reason, self.reason).format(parent=self.parent)

    def as_dict(self) -> dict:
        return {
            "repo": self.repo,
            "digest": self.digest,
            "tags": list(self.tags),
            "media_type": self.media_type,
            "reason": self.reason,
            "parent": self.parent,
            "bytes": self.bytes,
        }


@dataclass
class Plan:
    """Everything a removal would delete, and what a garbage collection would free afterwards."""

    registry: str  # URL
    registry_name: str  # host[:port]
    registry_id: int
    rows: list[PlannedDeletion]
    bytes_freed: int
    missing_repos: list[str] = field(default_factory=list)
    refreshed: bool = False
    # What the selection reached and the rules keep, and why: the selectors' (an excluded or other tag, a
    # repository outside the selection) and the plan's (an index that stays lists it; a referrer kept for a tag
    # of its own). ``regdb.selection.selectors.Skipped`` rows.
    skipped: list[Skipped] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    @property
    def repos(self) -> list[str]:
        return list(dict.fromkeys(row.repo for row in self.rows))

    def as_dict(self) -> dict:
        return {
            "registry": self.registry_name,
            "rows": [row.as_dict() for row in self.rows],
            "manifests": len(self.rows),
            "repos": len(self.repos),
            "bytes_freed": self.bytes_freed,
            "skipped": [item.as_dict() for item in self.skipped],
        }


@runtime_checkable
class RemovalQuery(Protocol):
    """A removal's selection as the user wrote it, so that it can be made again on fresh facts
    (``refresh_selection``): ``TagQuery``, ``RepoQuery``, a retention policy's ``PolicyQuery``."""

    repos: tuple[str, ...]
    raise_intersecting_repo: bool
    untagged: bool  # True: the repositories are removed whole and lose their untagged manifests too

    def select(self, conn: Connection, registry_id: int) -> Selection: ...


@dataclass(frozen=True)
class TagQuery:
    """A ``remove-tags`` selection as the user wrote it: the parameters of
    ``regdb.selection.selectors.query_tags``, and optionally a ``Retention`` (``--keep-latest``,
    ``--older-than``, ``--untagged``, ...), which makes ``tags`` / ``regex`` optional."""

    repos: tuple[str, ...]
    tags: tuple[str, ...] = ()
    regex: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    exclude_regex: tuple[str, ...] = ()
    match_all_tags: bool = True
    raise_intersecting_tag: bool = False
    raise_intersecting_repo: bool = True
    retention: Retention | None = None

    untagged = False  # only repositories removed whole lose their untagged manifests

    def __post_init__(self):
        from regdb.selection.selectors import TagFilter

        for name in ("repos", "tags", "regex", "exclude", "exclude_regex"):
            object.__setattr__(self, name, values(getattr(self, name)))
        # Mistakes surface here, before any registry is contacted, with the selectors' own messages.
        _require_repos(self.repos)
        selects_by_retention = self.retention is not None and self.retention.selects
        if not TagFilter.parse(self.tags, self.regex) and not selects_by_retention:
            raise SelectorError("no tags selected: give at least one {tags:TAG|SELECTOR} or {regex:REGEX}",
                                fields=("tags", "regex"))
        TagFilter.parse(self.exclude, self.exclude_regex)
        if selects_by_retention and self.retention.untagged and (self.tags or self.regex or self.exclude
                                                                  or self.exclude_regex):
            raise SelectorError("{untagged} selects manifests without tags: {tags}, {regex}, {exclude} and "
                                "{exclude_regex} do not apply",
                                fields=("untagged", "tags", "regex", "exclude", "exclude_regex"))

    def select(self, conn: Connection, registry_id: int) -> Selection:
        from regdb.selection.selectors import query_tags

        return query_tags(
            conn, registry_id, list(self.repos), list(self.tags), list(self.regex), list(self.exclude),
            list(self.exclude_regex), match_all_tags=self.match_all_tags,
            raise_intersecting_tag=self.raise_intersecting_tag, raise_intersecting_repo=self.raise_intersecting_repo,
            retention=self.retention,
        )


@dataclass(frozen=True)
class RepoQuery:
    """A ``remove-repos`` selection: every tagged digest of the repositories, and their untagged manifests."""

    repos: tuple[str, ...]
    raise_intersecting_repo: bool = True

    untagged = True

    def __post_init__(self):
        object.__setattr__(self, "repos", values(self.repos))
        _require_repos(self.repos)

    def select(self, conn: Connection, registry_id: int) -> Selection:
        from regdb.selection.selectors import query_repos

        made = query_repos(conn, registry_id, list(self.repos), raise_intersecting_repo=self.raise_intersecting_repo)
        return _keep_what_belongs_to_kept(conn, made)


def _keep_what_belongs_to_kept(conn: Connection, selection):
    """remove-repos selects every tagged digest, signatures included; a digest left out (also in a repository
    outside the selection) keeps what belongs to it in its repository: the manifests tagged only with its
    signature tags (``sha256-<hex>.sig`` ...) and its OCI referrers. Nobody chose those on their own."""
    kept = {(item.repo, item.digest) for item in selection.skipped}
    if not kept:
        return selection
    digests = list({item.digest for item in selection})
    subject_of: dict[str, str] = {}
    for start in range(0, len(digests), BATCH):
        subject_of.update(conn.execute(
            select(_digests.c.digest, _digests.c.subject_digest).where(
                _digests.c.digest.in_(digests[start : start + BATCH]), _digests.c.subject_digest.is_not(None)
            )
        ).all())
    stems = {f"{digest.replace(':', '-', 1)}{suffix}": (repo, digest) for repo, digest in kept
             for suffix in SIGNATURE_TAG_SUFFIXES}
    chosen, skipped = [], list(selection.skipped)
    for item in selection:
        owners = {stems[tag] for tag in item.tags if tag in stems and stems[tag][0] == item.repo}
        only_signature_tags = item.tags and all(tag in stems and stems[tag][0] == item.repo for tag in item.tags)
        subject = subject_of.get(item.digest)
        if only_signature_tags:
            skipped.append(Skipped(item.repo, item.digest, item.tags, BELONGS_TO_KEPT, parent=min(owners)[1]))
        elif subject is not None and (item.repo, subject) in kept:
            skipped.append(Skipped(item.repo, item.digest, item.tags, BELONGS_TO_KEPT, parent=subject))
        else:
            chosen.append(item)
    return type(selection)(chosen, missing_repos=selection.missing_repos,
                           skipped=sorted(skipped, key=lambda k: (k.repo, k.digest)))


def _require_repos(repos: tuple[str, ...]) -> None:
    if not repos:
        raise SelectorError("no repositories selected: give at least one {repos:REPO}", fields=("repos",))


def plan_fresh(engine: Engine, client: RegistryClient, selection, *, refresh: bool = True, jobs: int = 16,
               max_inventory_age: timedelta = DEFAULT_MAX_INVENTORY_AGE, only_named_repos: bool = False,
               announce: Callable[[str], None] | None = None) -> Plan:
    """Fresh facts, then the plan: ``refresh_selection`` followed by ``plan_removal``."""
    registry_id, selected, untagged_repos, refreshed = refresh_selection(
        engine, client, selection, refresh=refresh, jobs=jobs, max_inventory_age=max_inventory_age,
        only_named_repos=only_named_repos, announce=announce,
    )
    plan = plan_removal(engine, registry_id, selected, untagged_repos=untagged_repos)
    plan.refreshed = refreshed
    return plan


def plan_removal(engine: Engine, registry_id: int, selection: Iterable, *, untagged_repos: Iterable[str] = ()) -> Plan:
    """The plan for removing ``selection`` (``Selected`` rows: ``.repo``, ``.digest``) from the inventory's state.

    ``untagged_repos``: repositories removed whole, whose untagged manifests go too (``remove-repos``).
    Pure SQL over the inventory; nothing is written (the temporary table is rolled back).

    The plan is a reachability computation. The selected pairs and what goes with them (an index's children,
    a removed image's signatures and referrers) are planned; then any planned manifest that something staying
    in its repository still reaches (an index that is not planned lists it) is taken out again, and the plan is
    made anew without it, until nothing staying reaches anything planned. Each round only grows the set taken
    out, so there are at most as many rounds as planned rows. Raises ``IncompleteInventory`` when a planned
    repository, or one sharing a planned digest, was listed incompletely by its last sync.
    """
    selected = list(dict.fromkeys((item.repo, item.digest) for item in selection))
    missing = list(getattr(selection, "missing_repos", []) or [])
    skipped: list[Skipped] = list(getattr(selection, "skipped", []) or [])
    held: dict[tuple[int, int], int] = {}  # (repo_id, digest_id) taken out -> the staying index that lists it
    with engine.connect() as conn:
        with conn.begin() as transaction:
            try:
                url, name = conn.execute(
                    select(_registries.c.url, _registries.c.name).where(_registries.c.id == registry_id)
                ).one()
                untagged_repos = list(dict.fromkeys(untagged_repos))
                while True:
                    _create_plan_table(conn)
                    _insert_pairs(conn, registry_id, selected, depth=0, reason=SELECTED, present_only=True)
                    if untagged_repos:
                        _insert_untagged(conn, registry_id, untagged_repos)
                    _drop_held(conn, held)
                    depth = 1
                    while _close_over(conn, depth):
                        depth += 1
                    reached = _reached_from_staying(conn)
                    if not reached:
                        break
                    held.update(reached)
                _order_after_parents(conn)
                _refuse_incomplete(conn, registry_id)
                rows, total = _read_plan(conn, registry_id)
                skipped += _held_selected(conn, registry_id, selected, held)
                skipped += _kept_referrers(conn)
            finally:
                transaction.rollback()
    return Plan(registry=url, registry_name=name, registry_id=registry_id, rows=rows, bytes_freed=total,
                missing_repos=missing, skipped=skipped)


def _drop_held(conn: Connection, held: dict[tuple[int, int], int]) -> None:
    """Take the pairs a staying index reaches (found in an earlier round) out of the plan, and keep them out."""
    _held.drop(conn, checkfirst=True)
    _held.create(conn)
    if not held:
        return
    conn.execute(insert(_held), [dict(repo_id=repo_id, digest_id=digest_id) for repo_id, digest_id in held])
    h = _held.alias("h")
    conn.execute(delete(_plan).where(exists().where(h.c.repo_id == _plan.c.repo_id, h.c.digest_id == _plan.c.digest_id)))


def _not_held(repo_id, digest_id):
    h = _held.alias()
    return ~exists().where(h.c.repo_id == repo_id, h.c.digest_id == digest_id)


def _reached_from_staying(conn: Connection) -> dict[tuple[int, int], int]:
    """Planned (repo_id, digest_id) -> the digest_id of an index of the same repository that stays and lists it.

    "Stays" is every manifest of the repository the plan does not hold, tagged or not: deleting a child that an
    untagged index still lists would break that index just the same. Tags need no check of their own: every tag
    on a planned pair is either selected with it (match-all-tags, or --no-match-all-tags by the user's choice)
    or a signature tag of a planned digest.
    """
    p = _plan.alias("p")
    dc = _children.alias("dc")
    rd = _repo_digests.alias("rd")
    query = (
        select(p.c.repo_id, p.c.digest_id, func.min(dc.c.parent_id))
        .select_from(
            p.join(dc, dc.c.child_id == p.c.digest_id).join(
                rd, and_(rd.c.repo_id == p.c.repo_id, rd.c.digest_id == dc.c.parent_id)
            )
        )
        .where(~_in_plan(p.c.repo_id, dc.c.parent_id))
        .group_by(p.c.repo_id, p.c.digest_id)
    )
    return {(repo_id, digest_id): parent_id for repo_id, digest_id, parent_id in conn.execute(query)}


def _order_after_parents(conn: Connection) -> None:
    """A planned child of a planned index, or referrer of a planned subject, in the same repository is deleted
    after it, whatever made it planned (``-t v1 v1-amd64`` selects both at depth 0): if the index cannot be
    deleted (its tags changed since the plan), the child it lists is then skipped instead of torn out of it.

    The links are read with one join each; the depths (longest path from a row nothing planned points at) are
    computed here. Digests are content hashes, so the links form no cycle; the loop is bounded by the plan's
    size anyway."""
    p = _plan.alias("p")
    q = _plan.alias("q")
    dc = _children.alias("dc")
    d = _digests.alias("d")
    dq = _digests.alias("dq")
    listed_by = select(p.c.seq, q.c.seq).select_from(
        p.join(dc, dc.c.child_id == p.c.digest_id).join(
            q, and_(q.c.repo_id == p.c.repo_id, q.c.digest_id == dc.c.parent_id)
        )
    )
    refers_to = select(p.c.seq, q.c.seq).select_from(
        p.join(d, d.c.id == p.c.digest_id)
        .join(dq, dq.c.digest == d.c.subject_digest)
        .join(q, and_(q.c.repo_id == p.c.repo_id, q.c.digest_id == dq.c.id))
    )
    edges = {tuple(edge) for query in (listed_by, refers_to) for edge in conn.execute(query)}
    if not edges:
        return
    depth = dict(conn.execute(select(_plan.c.seq, _plan.c.depth)).all())
    changed: dict[int, int] = {}
    for _ in range(len(depth)):
        moved = False
        for child, parent in edges:
            if depth[child] <= depth[parent]:
                depth[child] = changed[child] = depth[parent] + 1
                moved = True
        if not moved:
            break
    if changed:
        conn.execute(
            update(_plan).where(_plan.c.seq == bindparam("row_seq")).values(depth=bindparam("row_depth")),
            [{"row_seq": seq, "row_depth": value} for seq, value in changed.items()],
        )


def _refuse_incomplete(conn: Connection, registry_id: int) -> None:
    """A repository whose last listing was incomplete (``repos.incomplete``) may hold tags the inventory never
    saw: a removal planning anything in it, or a digest also present in it, refuses."""
    p = _plan.alias("p")
    rd = _repo_digests.alias("rd")
    r = _repos.alias("r")
    planned_in = select(r.c.name, r.c.incomplete).select_from(p.join(r, r.c.id == p.c.repo_id)).where(
        r.c.incomplete.is_not(None)
    )
    shared_with = (
        select(r.c.name, r.c.incomplete)
        .select_from(p.join(rd, rd.c.digest_id == p.c.digest_id).join(r, r.c.id == rd.c.repo_id))
        .where(r.c.incomplete.is_not(None), r.c.registry_id == registry_id)
    )
    for query in (planned_in, shared_with):
        found = conn.execute(query.order_by(r.c.name).limit(1)).first()
        if found is not None:
            raise IncompleteInventory(
                f"repository {found.name} was listed incompletely by the last sync ({found.incomplete}): "
                "regdb does not remove anything in it or shared with it; fix the listing and sync again",
                repo=found.name,
            )


def _held_selected(conn: Connection, registry_id: int, selected: Sequence[tuple[str, str]],
                   held: dict[tuple[int, int], int]) -> list[Skipped]:
    """The selected pairs the plan took out because an index that stays lists them, as ``Skipped`` rows."""
    if not held:
        return []
    repo_ids, digest_ids = _ids(conn, registry_id, selected)
    names = {v: k for k, v in repo_ids.items()}
    wanted = {(repo_ids[r], digest_ids[d]) for r, d in selected if r in repo_ids and d in digest_ids}
    ids = {digest_id for pair in held for digest_id in pair[1:]} | set(held.values())
    digest_of = dict(conn.execute(select(_digests.c.id, _digests.c.digest).where(_digests.c.id.in_(ids))).all())
    found = []
    for (repo_id, digest_id), parent_id in held.items():
        if (repo_id, digest_id) not in wanted:
            continue  # taken out of the closure only: it was never selected, it simply stays
        tags = tuple(conn.execute(
            select(_tags.c.name).where(_tags.c.repo_id == repo_id, _tags.c.digest_id == digest_id)
            .order_by(_tags.c.version_key.is_(None), _tags.c.version_key, _tags.c.name)
        ).scalars())
        found.append(Skipped(names[repo_id], digest_of[digest_id], tags, HELD_BY_INDEX, parent=digest_of[parent_id]))
    return sorted(found, key=lambda item: (item.repo, item.digest))


def _kept_referrers(conn: Connection) -> list[Skipped]:
    """Referrers (``subject``) and signature-tagged manifests of a planned image that stay in its repository
    because they carry a tag of their own (``sbom-2.0``): kept, and from now on pointing at a removed image."""
    p = _plan.alias("p")
    d = _digests.alias("d")
    referrer = _digests.alias("referrer")
    rd = _repo_digests.alias("rd")
    t = _tags.alias("t")
    r = _repos.alias("r")
    by_subject = (
        select(r.c.name, referrer.c.digest, d.c.digest.label("subject"), referrer.c.id, r.c.id.label("repo_id"))
        .select_from(
            p.join(d, d.c.id == p.c.digest_id)
            .join(referrer, referrer.c.subject_digest == d.c.digest)
            .join(rd, and_(rd.c.repo_id == p.c.repo_id, rd.c.digest_id == referrer.c.id))
            .join(r, r.c.id == p.c.repo_id)
        )
        .where(~_in_plan(p.c.repo_id, referrer.c.id))
    )
    by_tag = (
        select(r.c.name, referrer.c.digest, d.c.digest.label("subject"), referrer.c.id, r.c.id.label("repo_id"))
        .select_from(
            p.join(d, d.c.id == p.c.digest_id)
            .join(t, and_(t.c.repo_id == p.c.repo_id, t.c.name.in_(_signature_tag_names(d.c.digest))))
            .join(referrer, referrer.c.id == t.c.digest_id)
            .join(r, r.c.id == p.c.repo_id)
        )
        .where(~_in_plan(p.c.repo_id, t.c.digest_id))
    )
    found: dict[tuple[str, str], Skipped] = {}
    for query in (by_subject, by_tag):
        for name, digest, subject, digest_id, repo_id in conn.execute(query):
            if (name, digest) in found:
                continue
            tags = tuple(conn.execute(
                select(_tags.c.name).where(_tags.c.repo_id == repo_id, _tags.c.digest_id == digest_id)
                .order_by(_tags.c.name)
            ).scalars())
            found[(name, digest)] = Skipped(name, digest, tags, REFERRER_KEPT, parent=subject)
    return sorted(found.values(), key=lambda item: (item.repo, item.digest))


def _create_plan_table(conn: Connection) -> None:
    _plan.drop(conn, checkfirst=True)  # a leftover of an interrupted run on a pooled connection
    _plan.create(conn)


def _ids(conn: Connection, registry_id: int, pairs: Sequence[tuple[str, str]]) -> tuple[dict, dict]:
    """(repo name -> id, digest -> id) for the names and digests in ``pairs``."""
    repo_names = list({repo for repo, _ in pairs})
    digests = list({digest for _, digest in pairs})
    repo_ids: dict[str, int] = {}
    digest_ids: dict[str, int] = {}
    for start in range(0, len(repo_names), BATCH):
        repo_ids.update(conn.execute(
            select(_repos.c.name, _repos.c.id).where(
                _repos.c.registry_id == registry_id, _repos.c.name.in_(repo_names[start : start + BATCH])
            )
        ).all())
    for start in range(0, len(digests), BATCH):
        digest_ids.update(conn.execute(
            select(_digests.c.digest, _digests.c.id).where(_digests.c.digest.in_(digests[start : start + BATCH]))
        ).all())
    return repo_ids, digest_ids


def _insert_pairs(conn: Connection, registry_id: int, pairs: Sequence[tuple[str, str]], *, depth: int,
                  reason: str, present_only: bool) -> None:
    repo_ids, digest_ids = _ids(conn, registry_id, pairs)
    rows = [
        dict(repo_id=repo_ids[repo], digest_id=digest_ids[digest], depth=depth, parent_id=None, reason=reason)
        for repo, digest in pairs
        if repo in repo_ids and digest in digest_ids
    ]
    if present_only and rows:
        # A selection made on another state may name a pair the inventory no longer holds: nothing to delete.
        present = set()
        by_repo = defaultdict(list)
        for row in rows:
            by_repo[row["repo_id"]].append(row["digest_id"])
        for repo_id, ids in by_repo.items():
            for start in range(0, len(ids), BATCH):
                present.update(
                    (repo_id, digest_id)
                    for digest_id in conn.execute(
                        select(_repo_digests.c.digest_id).where(
                            _repo_digests.c.repo_id == repo_id,
                            _repo_digests.c.digest_id.in_(ids[start : start + BATCH]),
                        )
                    ).scalars()
                )
        rows = [row for row in rows if (row["repo_id"], row["digest_id"]) in present]
    if rows:
        conn.execute(insert(_plan), rows)


def _in_plan(repo_id, digest_id):
    """EXISTS: (repo_id, digest_id) is already in the plan."""
    q = _plan.alias()
    return exists().where(q.c.repo_id == repo_id, q.c.digest_id == digest_id)


def _signature_tag_names(digest_column):
    """The tag names that belong to a digest: ``sha256:<hex>`` -> ``sha256-<hex>``, ``sha256-<hex>.sig`` etc."""
    stem = func.replace(digest_column, ":", "-")
    return [stem + suffix for suffix in SIGNATURE_TAG_SUFFIXES]


def _only_signature_tags(repo_id, digest_id):
    """NOT EXISTS a tag of (repo_id, digest_id) other than a cosign tag of a planned digest of that repository.

    A signature, attestation or referrer goes with its subject only when no tag outside the plan holds it:
    a tag the user did not select is never destroyed as a side effect.
    """
    t = _tags.alias()
    q = _plan.alias()
    d = _digests.alias()
    names = _signature_tag_names(d.c.digest)
    is_signature_of_planned = (
        select(literal(1))
        .select_from(q.join(d, d.c.id == q.c.digest_id))
        .where(q.c.repo_id == t.c.repo_id, t.c.name.in_(names))
        .exists()
    )
    return ~exists().where(t.c.repo_id == repo_id, t.c.digest_id == digest_id, ~is_signature_of_planned)


def _insert_untagged(conn: Connection, registry_id: int, repo_names: list[str]) -> None:
    """remove-repos: every manifest of the repositories that no tag holds and that does not belong to a manifest
    that stays (an index listing it, a subject it refers to): those are handled by the closure instead."""
    from regdb.selection.retention import untagged_terms

    rd = _repo_digests.alias("rd")
    d = _digests.alias("d")
    query = (
        select(rd.c.repo_id, rd.c.digest_id, literal(0), literal(None, Integer), literal(UNTAGGED))
        .select_from(
            rd.join(_repos, _repos.c.id == rd.c.repo_id).join(d, d.c.id == rd.c.digest_id)
        )
        .where(
            _repos.c.registry_id == registry_id,
            _repos.c.name.in_(repo_names),
            ~_in_plan(rd.c.repo_id, rd.c.digest_id),
            *untagged_terms(rd, d),
        )
        .order_by(rd.c.repo_id, d.c.digest)
    )
    conn.execute(
        insert(_plan).from_select(["repo_id", "digest_id", "depth", "parent_id", "reason"], query)
    )


def _close_over(conn: Connection, depth: int) -> bool:
    """Add, at ``depth``, what goes with the planned manifests (never a held pair); True if anything was added."""
    added = 0
    added += _add_orphaned_children(conn, depth)
    added += _add_signature_tags(conn, depth)
    added += _add_referrers(conn, depth)
    return added > 0


def _add_orphaned_children(conn: Connection, depth: int) -> int:
    """Children of a planned index, present in the same repository, that no tag and no remaining index holds.

    Deleting an index leaves its children in the repository (docs/registry-behaviour.md), so without this a garbage
    collection would free nothing of a removed multi-arch image.
    """
    p = _plan.alias("p")
    dc = _children.alias("dc")
    rd = _repo_digests.alias("rd")
    t = _tags.alias("t")
    dc_other = _children.alias("dc_other")
    rd_other = _repo_digests.alias("rd_other")
    held_by_a_remaining_index = (
        select(literal(1))
        .select_from(dc_other.join(rd_other, rd_other.c.digest_id == dc_other.c.parent_id))
        .where(
            dc_other.c.child_id == dc.c.child_id,
            rd_other.c.repo_id == p.c.repo_id,
            ~_in_plan(p.c.repo_id, dc_other.c.parent_id),
        )
        .exists()
    )
    query = (
        select(p.c.repo_id, dc.c.child_id, literal(depth), func.min(p.c.digest_id), literal(CHILD))
        .select_from(
            p.join(dc, dc.c.parent_id == p.c.digest_id).join(
                rd, and_(rd.c.repo_id == p.c.repo_id, rd.c.digest_id == dc.c.child_id)
            )
        )
        .where(
            ~_in_plan(p.c.repo_id, dc.c.child_id),
            _not_held(p.c.repo_id, dc.c.child_id),
            ~exists().where(t.c.repo_id == p.c.repo_id, t.c.digest_id == dc.c.child_id),
            ~held_by_a_remaining_index,
        )
        .group_by(p.c.repo_id, dc.c.child_id)
        .order_by(func.min(p.c.seq), func.min(dc.c.position))  # as the index lists them
    )
    return conn.execute(
        insert(_plan).from_select(["repo_id", "digest_id", "depth", "parent_id", "reason"], query)
    ).rowcount


def _add_signature_tags(conn: Connection, depth: int) -> int:
    """Manifests tagged ``sha256-<hex>.sig|.att|.sbom`` (cosign) or ``sha256-<hex>`` (the OCI referrers
    fallback) for a planned digest of the same repository."""
    p = _plan.alias("p")
    d = _digests.alias("d")
    t = _tags.alias("t")
    query = (
        select(p.c.repo_id, t.c.digest_id, literal(depth), func.min(p.c.digest_id), literal(SIGNATURE))
        .select_from(
            p.join(d, d.c.id == p.c.digest_id).join(
                t, and_(t.c.repo_id == p.c.repo_id, t.c.name.in_(_signature_tag_names(d.c.digest)))
            )
        )
        .where(~_in_plan(p.c.repo_id, t.c.digest_id), _not_held(p.c.repo_id, t.c.digest_id),
               _only_signature_tags(p.c.repo_id, t.c.digest_id))
        .group_by(p.c.repo_id, t.c.digest_id)
        .order_by(func.min(p.c.seq), func.min(t.c.name))
    )
    return conn.execute(
        insert(_plan).from_select(["repo_id", "digest_id", "depth", "parent_id", "reason"], query)
    ).rowcount


def _add_referrers(conn: Connection, depth: int) -> int:
    """OCI 1.1 referrers (``subject`` = a planned digest) present in the same repository."""
    p = _plan.alias("p")
    d = _digests.alias("d")
    referrer = _digests.alias("referrer")
    rd = _repo_digests.alias("rd")
    query = (
        select(p.c.repo_id, referrer.c.id, literal(depth), func.min(p.c.digest_id), literal(REFERRER))
        .select_from(
            p.join(d, d.c.id == p.c.digest_id)
            .join(referrer, referrer.c.subject_digest == d.c.digest)
            .join(rd, and_(rd.c.repo_id == p.c.repo_id, rd.c.digest_id == referrer.c.id))
        )
        .where(~_in_plan(p.c.repo_id, referrer.c.id), _not_held(p.c.repo_id, referrer.c.id),
               _only_signature_tags(p.c.repo_id, referrer.c.id))
        .group_by(p.c.repo_id, referrer.c.id, referrer.c.digest)
        .order_by(func.min(p.c.seq), referrer.c.digest)
    )
    return conn.execute(
        insert(_plan).from_select(["repo_id", "digest_id", "depth", "parent_id", "reason"], query)
    ).rowcount


def _remaining_pair(rd, registry_id: int):
    """Conditions on a repo_digests alias ``rd``: a manifest of this registry that the plan keeps."""
    r = _repos.alias()
    return and_(
        exists().where(r.c.id == rd.c.repo_id, r.c.registry_id == registry_id),
        ~_in_plan(rd.c.repo_id, rd.c.digest_id),
    )


def _freed_by_row(conn: Connection, registry_id: int) -> dict[int, int]:
    """plan seq -> bytes a garbage collection frees, every freed blob and manifest counted on one row only.

    A blob (config or layer) is freed when no manifest that remains anywhere in the registry references it;
    a manifest's own bytes (manifests are blobs too) when the digest remains in no repository of the registry.
    """
    p = _plan.alias("p")
    b = _blobs.alias("b")
    b_other = _blobs.alias("b_other")
    rd = _repo_digests.alias("rd_remaining")
    blob_still_referenced = (
        select(literal(1))
        .select_from(b_other.join(rd, rd.c.digest_id == b_other.c.digest_id))
        .where(b_other.c.blob_digest == b.c.blob_digest, _remaining_pair(rd, registry_id))
        .exists()
    )
    freed_blobs = (
        select(func.min(p.c.seq).label("seq"), func.max(b.c.size).label("size"))
        .select_from(p.join(b, b.c.digest_id == p.c.digest_id))
        .where(~blob_still_referenced)
        .group_by(b.c.blob_digest)
        .subquery()
    )
    rd2 = _repo_digests.alias("rd_manifest")
    d = _digests.alias("d")
    manifest_still_present = (
        select(literal(1))
        .select_from(rd2)
        .where(rd2.c.digest_id == p.c.digest_id, _remaining_pair(rd2, registry_id))
        .exists()
    )
    freed_manifests = (
        select(func.min(p.c.seq).label("seq"), func.max(d.c.size).label("size"))
        .select_from(p.join(d, d.c.id == p.c.digest_id))
        .where(~manifest_still_present)
        .group_by(p.c.digest_id)
        .subquery()
    )
    freed: dict[int, int] = defaultdict(int)
    for sub in (freed_blobs, freed_manifests):
        for seq, size in conn.execute(select(sub.c.seq, func.sum(sub.c.size)).group_by(sub.c.seq)):
            freed[seq] += int(size or 0)
    return freed


def _read_plan(conn: Connection, registry_id: int) -> tuple[list[PlannedDeletion], int]:
    p = _plan.alias("p")
    d = _digests.alias("d")
    parent = _digests.alias("parent")
    rows = conn.execute(
        select(p.c.seq, p.c.repo_id, p.c.depth, p.c.reason, _repos.c.name, d.c.digest, d.c.media_type, d.c.kind,
               parent.c.digest.label("parent"))
        .select_from(
            p.join(_repos, _repos.c.id == p.c.repo_id)
            .join(d, d.c.id == p.c.digest_id)
            .outerjoin(parent, parent.c.id == p.c.parent_id)
        )
        .order_by(p.c.seq)
    ).all()
    tags: dict[int, list[str]] = defaultdict(list)
    t = _tags.alias("t")
    for seq, name in conn.execute(
        select(p.c.seq, t.c.name)
        .select_from(p.join(t, and_(t.c.repo_id == p.c.repo_id, t.c.digest_id == p.c.digest_id)))
        # Version order, tags that are no version after them (the order of list-tag-names).
        .order_by(p.c.seq, t.c.version_key.is_(None), t.c.version_key, t.c.name)
    ):
        tags[seq].append(name)
    after = _dependencies(conn)
    freed = _freed_by_row(conn, registry_id)

    by_seq = {row.seq: row for row in rows}
    planned: dict[int, PlannedDeletion] = {}
    for row in rows:
        planned[row.seq] = PlannedDeletion(
            repo=row.name, digest=row.digest, tags=tuple(tags.get(row.seq, ())), media_type=row.media_type,
            kind=row.kind, reason=row.reason, bytes=freed.get(row.seq, 0), depth=row.depth,
            after=tuple(sorted(after.get(row.seq, ()))), parent=row.parent,
        )
    # Show each manifest right under the one it goes with: repository by repository, a selected row, then its
    # children and signatures (a plan is read by a person before anything is deleted).
    root: dict[int, int] = {}
    seq_of = {(row.repo_id, row.digest): row.seq for row in rows}
    for row in rows:
        if row.parent is None:
            root[row.seq] = row.seq
        else:
            root[row.seq] = root.get(seq_of.get((row.repo_id, row.parent), row.seq), row.seq)
    ordered = sorted(
        by_seq, key=lambda seq: (by_seq[seq].name, root[seq], by_seq[seq].depth, seq)
    )
    result = [planned[seq] for seq in ordered]
    return result, sum(row.bytes for row in result)


def _dependencies(conn: Connection) -> dict[int, set[str]]:
    """plan seq -> planned digests of the same repository that must be gone first: an index listing it, the
    subject it refers to, the image its cosign tag names."""
    p = _plan.alias("p")
    q = _plan.alias("q")
    d = _digests.alias("d")
    dq = _digests.alias("dq")
    dc = _children.alias("dc")
    t = _tags.alias("t")
    found: dict[int, set[str]] = defaultdict(set)
    listed_by = (
        select(p.c.seq, dq.c.digest)
        .select_from(
            p.join(dc, dc.c.child_id == p.c.digest_id)
            .join(q, and_(q.c.repo_id == p.c.repo_id, q.c.digest_id == dc.c.parent_id))
            .join(dq, dq.c.id == q.c.digest_id)
        )
        .where(q.c.depth < p.c.depth)
    )
    refers_to = (
        select(p.c.seq, dq.c.digest)
        .select_from(
            p.join(d, d.c.id == p.c.digest_id)
            .join(dq, dq.c.digest == d.c.subject_digest)
            .join(q, and_(q.c.repo_id == p.c.repo_id, q.c.digest_id == dq.c.id))
        )
        .where(q.c.depth < p.c.depth)
    )
    signs = (
        select(p.c.seq, dq.c.digest)
        .select_from(
            p.join(t, and_(t.c.repo_id == p.c.repo_id, t.c.digest_id == p.c.digest_id))
            .join(q, q.c.repo_id == p.c.repo_id)
            .join(dq, and_(dq.c.id == q.c.digest_id, t.c.name.in_(_signature_tag_names(dq.c.digest))))
        )
        .where(q.c.depth < p.c.depth)
    )
    for query in (listed_by, refers_to, signs):
        for seq, digest in conn.execute(query):
            found[seq].add(digest)
    return found


# --- fresh facts ----------------------------------------------------------------------------------------------


def refresh_selection(engine: Engine, client: RegistryClient, selection, *, refresh: bool = True,
                      jobs: int = 16, max_inventory_age: timedelta = DEFAULT_MAX_INVENTORY_AGE,
                      only_named_repos: bool = False, announce: Callable[[str], None] | None = None):
    """Re-read the selected repositories from the registry and make the selection again on that state.

    First the cross-repository rule gets the whole registry to look at: when the inventory holds no complete
    sync of the whole registry (no inventory yet, ``-c None``, only syncs of named repositories) or the last one
    finished more than ``max_inventory_age`` ago, the whole registry is synced, whatever ``refresh`` says
    (``announce`` gets one line saying so). A registry without ``_catalog`` cannot be synced whole: ``NoCatalog``,
    unless ``only_named_repos`` accepts that only the repositories in the inventory are checked.

    ``selection`` is a ``TagQuery`` / ``RepoQuery`` (made again from scratch: a tag pushed onto a selected
    digest since the last sync takes it out, a new tag matching the selector comes in), or a ``Selection``
    already made (kept only where the registry still shows exactly the tags it was selected with).
    Returns ``(registry_id, selection, untagged_repos, refreshed)``.
    """
    is_query = isinstance(selection, RemovalQuery)
    repos = list(selection.repos) if is_query else list(dict.fromkeys(item.repo for item in selection))
    refreshed = False
    if repos and not only_named_repos:
        why = whole_sync_needed(engine, client.url, max_inventory_age)
        if why is not None:
            _require_catalog(client)
            if announce is not None:
                announce(f"syncing the whole registry {client.name} first ({why}): a removal checks every "
                         "repository for digests shared with the selection")
            sync_registry(engine, client, jobs=jobs)
            refreshed = True
    registry_id = _registry_id(engine, client)
    if refresh and repos and not refreshed:
        sync_registry(engine, client, repos=repos, jobs=jobs)
        registry_id = _registry_id(engine, client)
        refreshed = True
    if registry_id is None:
        raise RegistryNotInInventory(client.ref)
    if is_query:
        with engine.connect() as conn:
            made = selection.select(conn, registry_id)
        return registry_id, made, (list(selection.repos) if selection.untagged else []), refreshed
    if refreshed:
        selection = _still_as_selected(engine, registry_id, selection)
    return registry_id, selection, [], refreshed


def whole_sync_needed(engine: Engine, url: str, max_age: timedelta = DEFAULT_MAX_INVENTORY_AGE) -> str | None:
    """Why the inventory's view of the whole registry is not good enough for a removal, or None if it is.

    Good enough: a successful sync of the whole registry (``syncs.scope IS NULL``) that finished at most
    ``max_age`` ago. A scoped sync since then does not make it older: the other repositories were last seen
    by that whole sync."""
    syncs = models.Sync.__table__
    last = None
    with engine.connect() as conn:
        last = conn.execute(
            select(func.max(syncs.c.finished_at))
            .join(_registries, _registries.c.id == syncs.c.registry_id)
            .where(_registries.c.url == url, syncs.c.status == "ok", syncs.c.scope.is_(None))
        ).scalar()
    if last is None:
        return "the inventory holds no complete sync of it"
    age = utcnow() - last
    if age > max_age:
        return f"its last complete sync is {_duration(age)} old, more than --max-inventory-age {_duration(max_age)}"
    return None


def _duration(value: timedelta) -> str:
    hours = value.total_seconds() / 3600
    return f"{hours / 24:.1f}d" if hours >= 48 else f"{hours:.1f}h"


def _require_catalog(client: RegistryClient) -> None:
    """``NoCatalog`` when the registry refuses ``_catalog`` (Docker Hub, GHCR): it cannot be seen whole."""
    try:
        status = client.request("GET", "/v2/_catalog?n=1", kind="catalog").status_code
    except AuthenticationFailed as error:  # a token server refusing scope registry:catalog:* for this user
        status = error.status or 401
    if status in NO_CATALOG_STATUSES:
        raise NoCatalog(
            f"registry {client.name} does not list its repositories to us (GET /v2/_catalog answered {status}), "
            "so a removal cannot check the repositories outside the selection for shared digests; "
            "--only-named-repos checks only the repositories in the inventory (a risk: see docs/removal.md)"
        )


def _registry_id(engine: Engine, client: RegistryClient) -> int | None:
    with engine.connect() as conn:
        return find_registry(conn, client.ref)


def _still_as_selected(engine: Engine, registry_id: int | None, selection) -> list:
    """The items of a ready-made selection whose digest still carries exactly the tags it was selected with."""
    items = list(selection)
    if registry_id is None or not items:
        return []
    pairs = [(item.repo, item.digest) for item in items]
    current: dict[tuple[str, str], set[str]] = defaultdict(set)
    present: set[tuple[str, str]] = set()
    with engine.connect() as conn:
        repo_ids, digest_ids = _ids(conn, registry_id, pairs)
        names = {v: k for k, v in repo_ids.items()}
        digests = {v: k for k, v in digest_ids.items()}
        for repo_id in names:
            wanted = [digest_ids[d] for r, d in pairs if repo_ids.get(r) == repo_id and d in digest_ids]
            for start in range(0, len(wanted), BATCH):
                chunk = wanted[start : start + BATCH]
                for digest_id in conn.execute(
                    select(_repo_digests.c.digest_id).where(
                        _repo_digests.c.repo_id == repo_id, _repo_digests.c.digest_id.in_(chunk)
                    )
                ).scalars():
                    present.add((names[repo_id], digests[digest_id]))
                for digest_id, tag in conn.execute(
                    select(_tags.c.digest_id, _tags.c.name).where(
                        _tags.c.repo_id == repo_id, _tags.c.digest_id.in_(chunk)
                    )
                ):
                    current[(names[repo_id], digests[digest_id])].add(tag)
    kept = [
        item for item in items
        if (item.repo, item.digest) in present and current[(item.repo, item.digest)] == set(item.tags)
    ]
    for item in items:
        if item not in kept:
            log.info("not removing %s@%s: it changed in the registry since it was selected", item.repo, item.digest)
    return kept


def freed_bytes(engine: Engine, registry_id: int, pairs: Sequence[tuple[str, str]]) -> int:
    """Bytes a garbage collection frees once ``pairs`` are gone from the registry (and from the inventory, or not).

    The same rule as the plan's total, for the deletions actually done (some may have been skipped or failed).
    """
    pairs = list(dict.fromkeys(pairs))
    if not pairs:
        return 0
    with engine.connect() as conn:
        with conn.begin() as transaction:
            try:
                _create_plan_table(conn)
                _insert_pairs(conn, registry_id, pairs, depth=0, reason=SELECTED, present_only=False)
                return sum(_freed_by_row(conn, registry_id).values())
            finally:
                transaction.rollback()
