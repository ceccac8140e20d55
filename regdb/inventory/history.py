"""Tag history: where each tag pointed, from when to when, whoever saw the change.

Three writers, one function: the listener (a push or delete event), the sync (a tag that moved between two
snapshots) and regdb's own removals and untags (in the same transaction as their journal). Each change closes
the tag's open row (``valid_to``) and, unless the tag is gone, opens a new one. A change that is no change (the
sync finding what an event already recorded) writes nothing, so the listener and the sync can both run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

from sqlalchemy import Connection, and_, bindparam, insert, or_, select, update

from regdb.inventory import models

SOURCES = ("event", "sync", "removal")
BATCH = 500  # names per IN (...) list: well under SQLite's bound-parameter limit


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class TagChange:
    """A tag that now points at ``new`` (None: removed); ``old`` is what it pointed at, when known."""

    tag: str
    old: str | None
    new: str | None


def record_tag_history(conn: Connection, registry_id: int, repo: str,
                       changes: Iterable[TagChange | tuple[str, str | None, str | None]], *,
                       source: str, at: datetime | None = None) -> int:
    """Write the changes of one repository's tags into ``tag_history`` inside the caller's transaction.

    A change is a ``TagChange`` or a plain (tag, old digest, new digest) tuple; digests are strings
    (``sha256:...``), None for "no tag". Returns the number of rows opened or closed. For the removal and untag
    code, in the transaction that records its journal:

        record_tag_history(conn, registry_id, "team/app", [("1.0", "sha256:...", None)], source="removal")
    """
    if source not in SOURCES:
        raise ValueError(f"tag history source must be one of {SOURCES}, not {source!r}")
    at = at or utcnow()
    table = models.TagHistory.__table__
    changes = [change if isinstance(change, TagChange) else TagChange(*change) for change in changes]
    changes = list({change.tag: change for change in changes}.values())  # the last word on each tag
    if not changes:
        return 0
    written = 0
    # In slices: a first sync of a 100,000-tag repository opens 100,000 rows, and building them all as
    # parameter dicts at once doubled the sync's peak memory (tests/faults/test_huge_tag_list.py).
    for start in range(0, len(changes), WRITE_BATCH):
        written += _record_slice(conn, table, registry_id, repo, changes[start : start + WRITE_BATCH], source, at)
    return written


# Changes written per statement batch: bounds the parameter lists a big first sync builds.
WRITE_BATCH = 5_000


def _record_slice(conn: Connection, table, registry_id: int, repo: str, changes: list[TagChange], source: str,
                  at: datetime) -> int:
    tags = [change.tag for change in changes]
    open_rows: dict[str, tuple[int, str]] = {}
    for start in range(0, len(tags), BATCH):  # bounded IN lists
        open_rows.update(
            (row.tag, (row.id, row.digest))
            for row in conn.execute(
                select(table.c.id, table.c.tag, table.c.digest).where(
                    table.c.registry_id == registry_id, table.c.repo == repo,
                    table.c.tag.in_(tags[start : start + BATCH]), table.c.valid_to.is_(None),
                )
            )
        )
    ended, opened = [], []
    for change in changes:
        current = open_rows.get(change.tag)
        if (current[1] if current is not None else None) == change.new:
            continue  # already recorded (an event, then the sync finding the same), or nothing to end
        if current is not None:
            ended.append({"row_id": current[0]})
        if change.new is not None:
            opened.append(dict(registry_id=registry_id, repo=repo, tag=change.tag, digest=change.new,
                               valid_from=at, source=source))
    if ended:
        conn.execute(update(table).where(table.c.id == bindparam("row_id")).values(valid_to=at, ended_by=source),
                     ended)
    if opened:
        conn.execute(insert(table), opened)
    return len(ended) + len(opened)


def end_repository_history(conn: Connection, registry_id: int, repos: Iterable[str], *, source: str,
                           at: datetime | None = None) -> None:
    """Close every open stretch of these repositories' tags: the repositories are gone."""
    table = models.TagHistory.__table__
    names = list(repos)
    for start in range(0, len(names), BATCH):
        conn.execute(update(table).where(
            table.c.registry_id == registry_id, table.c.repo.in_(names[start : start + BATCH]),
            table.c.valid_to.is_(None),
        ).values(valid_to=at or utcnow(), ended_by=source))


def reconcile_repository(conn: Connection, registry_id: int, repo: str, tags: dict[str, int], *,
                         at: datetime | None = None) -> int:
    """The sync's part: make the repository's open stretches match its listing (tag -> digest id), seen at
    ``at`` (when the sync listed the repository's tags).

    The diff is against the history's open rows, not the previous snapshot's tags, so the history heals
    whatever happened in between: an untag or removal that wrote no history, events a restarting registry
    dropped. (No event is applied while a sync runs: it holds the write lock, so nothing here is newer.)"""
    table = models.TagHistory.__table__
    open_rows = {
        row.tag: row
        for row in conn.execute(select(table.c.tag, table.c.digest, table.c.valid_from, table.c.source).where(
            table.c.registry_id == registry_id, table.c.repo == repo, table.c.valid_to.is_(None)))
    }
    digests = models.Digest.__table__
    wanted = list(set(tags.values()))
    names: dict[int, str] = {}
    for start in range(0, len(wanted), BATCH):
        names.update(conn.execute(
            select(digests.c.id, digests.c.digest).where(digests.c.id.in_(wanted[start : start + BATCH]))).all())
    at = at or utcnow()
    changes = []
    for tag in open_rows.keys() | tags.keys():
        row = open_rows.get(tag)
        new = names.get(tags[tag]) if tag in tags else None
        if row is not None and row.digest == new:
            continue
        changes.append(TagChange(tag, row.digest if row is not None else None, new))
    return record_tag_history(conn, registry_id, repo, changes, source="sync", at=at)


def last_sync_change_at(conn: Connection, registry_id: int, repo: str, tag: str) -> datetime | None:
    """When a sync last changed the tag's history (regdb's clock), if the newest change was a sync's."""
    table = models.TagHistory.__table__
    row = conn.execute(
        select(table.c.valid_from, table.c.valid_to, table.c.source, table.c.ended_by).where(
            table.c.registry_id == registry_id, table.c.repo == repo, table.c.tag == tag)
        .order_by(table.c.id.desc()).limit(1)
    ).first()
    if row is None:
        return None
    if row.valid_to is not None:
        return row.valid_to if row.ended_by == "sync" else None
    return row.valid_from if row.source == "sync" else None


@dataclass(frozen=True)
class HistoryRow:
    repo: str
    tag: str
    digest: str
    valid_from: datetime
    valid_to: datetime | None
    source: str
    ended_by: str | None


def tag_history(conn: Connection, registry_id: int, repo: str, tag: str | None = None) -> list[HistoryRow]:
    """Every stretch of the repository's tags (or one tag), oldest first."""
    table = models.TagHistory.__table__
    query = select(table.c.repo, table.c.tag, table.c.digest, table.c.valid_from, table.c.valid_to,
                   table.c.source, table.c.ended_by).where(table.c.registry_id == registry_id,
                                                           table.c.repo == repo)
    if tag is not None:
        query = query.where(table.c.tag == tag)
    return [HistoryRow(*row) for row in conn.execute(query.order_by(table.c.tag, table.c.valid_from, table.c.id))]


@dataclass(frozen=True)
class Change:
    at: datetime
    change: str  # added, moved, removed
    repo: str
    tag: str
    old: str | None
    new: str | None
    source: str


def changes_since(conn: Connection, registry_id: int, since: datetime) -> list[Change]:
    """Tags added, moved and removed after ``since``, in time order.

    A stretch that starts after ``since`` is an addition, or a move when the same tag's previous stretch ended
    at that same moment; a stretch that ends after ``since`` with no successor is a removal."""
    table = models.TagHistory.__table__
    rows = conn.execute(
        select(table).where(
            table.c.registry_id == registry_id,
            or_(table.c.valid_from > since, and_(table.c.valid_to.is_not(None), table.c.valid_to > since)),
        ).order_by(table.c.repo, table.c.tag, table.c.valid_from, table.c.id)
    ).all()
    out: list[Change] = []
    by_tag: dict[tuple[str, str], list] = {}
    for row in rows:
        by_tag.setdefault((row.repo, row.tag), []).append(row)
    for (repo, tag), stretches in by_tag.items():
        ended = {row.valid_to: row for row in stretches if row.valid_to is not None}
        started = {row.valid_from for row in stretches}
        for row in stretches:
            if row.valid_from > since:
                before = ended.get(row.valid_from)
                if before is not None:
                    out.append(Change(row.valid_from, "moved", repo, tag, before.digest, row.digest, row.source))
                else:
                    out.append(Change(row.valid_from, "added", repo, tag, None, row.digest, row.source))
            if row.valid_to is not None and row.valid_to > since and row.valid_to not in started:
                out.append(Change(row.valid_to, "removed", repo, tag, row.digest, None, row.ended_by or row.source))
    return sorted(out, key=lambda c: (c.at, c.repo, c.tag))
