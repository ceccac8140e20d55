"""Registry notifications into the inventory: read an event, check its shape, apply a batch in one commit.

What distribution 2.8 sends (seen on the real registry, pinned in tests/test_live.py): every push, pull,
delete and mount, of manifests and of blobs, one event per POST. An event names its repository, digest and
(for a tag) the tag; its ``target.url`` is never followed: a manifest the inventory lacks is fetched from the
registry the listener was started for, by repository and digest, exactly as the sync fetches it.

- push of a manifest: the manifest (and an image's config) is stored once, the (repository, digest) recorded,
  the tag set or moved (``tag_history``). Blob pushes and mounts change nothing the inventory holds.
- pull of a manifest (GET or HEAD, by tag or digest): one more in that day's ``pulls`` row. Blob pulls, and
  regdb's own requests (its User-Agent), are not uses.
- delete by digest: the (repository, digest) and the repository's tags on it go; delete by tag: that tag.
- every applied event moves the observed window on; a new ``source.instanceID`` (the registry restarted, and
  lost its in-memory queue) ends the window and opens another.

Each event id is applied once: ``applied_events`` is written in the same transaction as the event's effect.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable

from sqlalchemy import Connection, Engine, delete, insert, select, update

from regdb.inventory import models
from regdb.registry.client import RegistryClient
from regdb.registry.transport import USER_AGENT
from regdb.inventory.db import write_transaction
from regdb.errors import AuthenticationFailed, RegdbError, RegistryUnreachable
from regdb.inventory.manifests import ManifestInfo, apply_config, parse_manifest, parse_timestamp
from regdb.inventory.sync import SnapshotWriter
from regdb.versions import version_key
from regdb.inventory.history import TagChange, last_sync_change_at, record_tag_history
from regdb.live.store import Journaled

log = logging.getLogger(__name__)

ACTIONS = ("push", "pull", "delete", "mount")
# Manifest media types a registry names in an event (schema 1 too: old clients still push it). Anything else
# (application/octet-stream, layer types) is a blob.
MANIFEST_MEDIA_TYPES = frozenset({
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
})

# The OCI distribution spec's grammar for names, tags and digests: an event that breaks it is rejected rather
# than written into the inventory (or used to build a URL).
REPOSITORY_NAME = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$")
TAG_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
DIGEST = re.compile(r"^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")
# distribution caps a repository name at 255 characters; an event id is a UUID (36) in 2.8.
MAX_REPOSITORY_LENGTH = 255
MAX_EVENT_ID_LENGTH = 256
# An instance id and a user agent are only compared and stored; longer ones are someone else's bytes.
MAX_FIELD_LENGTH = 1024
# What ``rejected_events.event`` keeps of an event: enough to see its shape.
MAX_REJECTED_EVENT_BYTES = 8 * 1024
# An index lists images; an index of indexes happens (attestation layouts), deeper nesting is someone's loop.
MAX_INDEX_DEPTH = 4
# ``applied_events`` is only needed while the registry may still re-send an id: it retries from an in-memory
# queue, so a week covers any listener outage one would not notice anyway; older ids are pruned.
APPLIED_EVENTS_KEPT = timedelta(days=7)


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class EventShapeError(RegdbError):
    """A notification regdb cannot apply: the reason is recorded in ``rejected_events``."""


@dataclass(frozen=True)
class Event:
    id: str
    timestamp: datetime
    action: str
    repo: str
    digest: str | None
    tag: str | None
    media_type: str | None
    method: str | None
    useragent: str
    instance_id: str | None

    @property
    def is_manifest(self) -> bool:
        return self.media_type in MANIFEST_MEDIA_TYPES

    @property
    def is_own_request(self) -> bool:
        # regdb's sync HEADs and the listener's fetches carry regdb's User-Agent; they are not uses.
        return self.useragent == USER_AGENT or self.useragent.startswith(USER_AGENT + "/")


def event_id_of(obj) -> str | None:
    """The id to de-duplicate on, when the event has a usable one."""
    if isinstance(obj, dict) and isinstance(obj.get("id"), str) and 0 < len(obj["id"]) <= MAX_EVENT_ID_LENGTH:
        return obj["id"]
    return None


def parse_event(obj) -> Event:
    """One event of an envelope, checked; raises ``EventShapeError`` saying what is wrong."""
    if not isinstance(obj, dict):
        raise EventShapeError("event is not a JSON object")
    event_id = event_id_of(obj)
    if event_id is None:
        raise EventShapeError("event has no id (a string of at most 256 characters)")
    action = obj.get("action")
    if action is None:
        raise EventShapeError("event has no action")
    if action not in ACTIONS:
        raise EventShapeError(f"unknown action {str(action)[:40]!r}")
    timestamp = parse_timestamp(obj.get("timestamp"))
    if timestamp is None:
        raise EventShapeError("event has no valid timestamp")
    target = obj.get("target")
    if not isinstance(target, dict):
        raise EventShapeError("event has no target object")
    repo = target.get("repository")
    if not isinstance(repo, str) or len(repo) > MAX_REPOSITORY_LENGTH or not REPOSITORY_NAME.match(repo):
        raise EventShapeError(f"invalid repository name {str(repo)[:80]!r}")
    digest = target.get("digest") or None
    if digest is not None and (not isinstance(digest, str) or not DIGEST.match(digest)):
        raise EventShapeError(f"invalid digest {str(digest)[:80]!r}")
    tag = target.get("tag") or None
    if tag is not None and (not isinstance(tag, str) or not TAG_NAME.match(tag)):
        raise EventShapeError(f"invalid tag {str(tag)[:80]!r}")
    media_type = target.get("mediaType") or None
    if media_type is not None and not isinstance(media_type, str):
        raise EventShapeError("target.mediaType is not a string")
    request = obj.get("request") if isinstance(obj.get("request"), dict) else {}
    source = obj.get("source") if isinstance(obj.get("source"), dict) else {}
    method = request.get("method") if isinstance(request.get("method"), str) else None
    useragent = request.get("useragent") if isinstance(request.get("useragent"), str) else ""
    instance_id = source.get("instanceID") if isinstance(source.get("instanceID"), str) else None
    if len(useragent) > MAX_FIELD_LENGTH or (instance_id and len(instance_id) > MAX_FIELD_LENGTH):
        raise EventShapeError("request.useragent or source.instanceID is too long")
    event = Event(event_id, timestamp, action, repo, digest, tag, media_type, method, useragent, instance_id or None)
    if action == "push" and event.is_manifest and digest is None:
        raise EventShapeError("manifest push without a digest")
    if action == "delete" and digest is None and tag is None:
        raise EventShapeError("delete names neither a digest nor a tag")
    return event


# --- applying a batch -----------------------------------------------------------------------------------------


@dataclass
class BatchResult:
    applied: int = 0
    rejected: int = 0
    duplicates: int = 0
    lags: list[float] | None = None
    last_event_at: datetime | None = None


def apply_batch(engine: Engine, client: RegistryClient, batch: list[Journaled], *,
                gap: str | None = None) -> BatchResult:
    """Apply journaled events in order, in one transaction. Raises ``RegistryUnreachable`` (nothing applied:
    retry later) and ``InventoryBusy`` (a sync holds the write lock: retry later).

    ``gap``: why the events may not follow on from the last ones applied (the listener was down): the
    observed window ends there and the first event of this batch opens a new one."""
    parsed: list[tuple[Journaled, Event | None, str | None]] = []
    for row in batch:
        if row.problem is not None:
            parsed.append((row, None, row.problem))
            continue
        try:
            parsed.append((row, parse_event(json.loads(row.body)), None))
        except (ValueError, EventShapeError) as error:
            parsed.append((row, None, str(error)))
    # Fetch what the inventory lacks before taking the write lock: HTTP must not hold up other writers.
    with engine.connect() as conn:
        done = _already_applied(conn, [row.event_id for row, _, _ in parsed if row.event_id])
        known = _known_digests(conn, [e.digest for _, e, _ in parsed if e and e.action == "push" and e.is_manifest
                                      and e.id not in done])
    fetched: dict[str, ManifestInfo] = {}
    problems: dict[int, str] = {}
    for row, event, problem in parsed:
        if event is None or event.id in done or event.action != "push" or not event.is_manifest:
            continue
        try:
            _fetch_missing(client, event.repo, event.digest, known, fetched)
        except (RegistryUnreachable, AuthenticationFailed):
            raise  # the registry, or regdb's credentials for it, will be back: retry rather than lose the push
        except RegdbError as error:
            problems[row.seq] = f"could not fetch {event.repo}@{event.digest}: {error}"
    result = BatchResult(lags=[])
    now = utcnow()
    with write_transaction(engine) as conn:
        writer = SnapshotWriter(conn, client.url, client.name)
        registry_id = writer.registry_id
        done = _already_applied(conn, [row.event_id for row, _, _ in parsed if row.event_id])
        pulls: dict[tuple[str, str, str], list] = {}
        window = _Window(conn, registry_id, gap)
        seen_ids: set[str] = set()
        applied: list[dict] = []
        for row, event, problem in parsed:
            problem = problem or problems.get(row.seq)
            event_id = row.event_id
            if event_id is not None and (event_id in done or event_id in seen_ids):
                result.duplicates += 1
                continue
            if problem is not None:
                _reject(conn, registry_id, row, problem)
                result.rejected += 1
            else:
                assert event is not None
                received_at = parse_timestamp(row.received_at) or now
                if event.action == "push" and event.is_manifest:
                    _apply_push(writer, event, fetched, received_at)
                elif event.action == "pull" and event.is_manifest and event.digest and not event.is_own_request \
                        and event.method in ("GET", "HEAD"):
                    key = (event.repo, event.digest, event.timestamp.strftime("%Y-%m-%d"))
                    counts = pulls.setdefault(key, [0, 0, event.timestamp])
                    counts[0 if event.method == "GET" else 1] += 1
                    counts[2] = max(counts[2], event.timestamp)
                elif event.action == "delete":
                    _apply_delete(writer, event, received_at)
                window.saw(event)
                result.applied += 1
                result.lags.append((now - event.timestamp).total_seconds())
                result.last_event_at = max(result.last_event_at or event.timestamp, event.timestamp)
            if event_id is not None:
                seen_ids.add(event_id)
                applied.append(dict(event_id=event_id, registry_id=registry_id, applied_at=now,
                                    action="rejected" if problem is not None else event.action))
        if applied:
            conn.execute(insert(models.AppliedEvent.__table__), applied)
        _add_pulls(conn, registry_id, pulls)
        window.write()
        table = models.AppliedEvent.__table__
        conn.execute(delete(table).where(table.c.applied_at < now - APPLIED_EVENTS_KEPT))
    return result


def reject_batch(engine: Engine, client: RegistryClient, batch: list[Journaled], reason: str) -> None:
    """Record events as rejected without applying them: the way past an event that fails for a reason regdb
    did not foresee, so one bad event never stops every later one."""
    now = utcnow()
    with write_transaction(engine) as conn:
        registry_id = SnapshotWriter(conn, client.url, client.name).registry_id
        done = _already_applied(conn, [row.event_id for row in batch if row.event_id])
        for row in batch:
            if row.event_id in done:
                continue
            _reject(conn, registry_id, row, reason)
            if row.event_id is not None:
                conn.execute(insert(models.AppliedEvent.__table__).values(
                    event_id=row.event_id, registry_id=registry_id, applied_at=now, action="rejected"))


def _already_applied(conn: Connection, ids: Iterable[str]) -> set[str]:
    table = models.AppliedEvent.__table__
    ids = list(dict.fromkeys(ids))
    found: set[str] = set()
    for start in range(0, len(ids), 500):
        found.update(conn.execute(
            select(table.c.event_id).where(table.c.event_id.in_(ids[start : start + 500]))
        ).scalars())
    return found


def _known_digests(conn: Connection, digests: Iterable[str | None]) -> set[str]:
    table = models.Digest.__table__
    wanted = list({d for d in digests if d})
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        found.update(conn.execute(
            select(table.c.digest).where(table.c.digest.in_(wanted[start : start + 500]))
        ).scalars())
    return found


def _fetch_missing(client: RegistryClient, repo: str, digest: str, known: set[str],
                   fetched: dict[str, ManifestInfo], depth: int = 0) -> None:
    """Fetch a manifest (and an index's unknown children) as the sync does: once, ever, by digest."""
    if digest in known or digest in fetched:
        return
    if depth > MAX_INDEX_DEPTH:
        raise EventShapeError(f"indexes nested deeper than {MAX_INDEX_DEPTH} levels under {digest}")
    body, media_type = client.manifest(repo, digest)
    info = parse_manifest(digest, body, media_type)
    if info.wants_config:
        apply_config(info, client.blob(repo, info.config_digest))
    for child in info.children:
        _fetch_missing(client, repo, child.digest, known, fetched, depth + 1)
    fetched[digest] = info


def _store(writer: SnapshotWriter, digest: str, fetched: dict[str, ManifestInfo]) -> int | None:
    found = writer.lookup([digest]).get(digest)
    if found is not None:
        return found
    info = fetched.get(digest)
    if info is None:
        return None
    for child in info.children:
        _store(writer, child.digest, fetched)
    return writer.store_manifest(info)


def _apply_push(writer: SnapshotWriter, event: Event, fetched: dict[str, ManifestInfo],
                received_at: datetime) -> None:
    conn = writer.conn
    digest_id = _store(writer, event.digest, fetched)
    if digest_id is None:
        raise AssertionError(f"{event.digest} neither known nor fetched")  # _fetch_missing guarantees one
    repo_id = writer.repo_id(event.repo)
    rd = models.RepoDigest.__table__
    present = set(conn.execute(select(rd.c.digest_id).where(rd.c.repo_id == repo_id)).scalars())
    wanted = {digest_id} | writer.children_of({digest_id})
    new = [dict(repo_id=repo_id, digest_id=d) for d in wanted - present]
    if new:
        conn.execute(insert(rd), new)
    if event.tag is None:
        return
    if _stale(writer, event, received_at):
        return
    tags = models.Tag.__table__
    row = conn.execute(
        select(tags.c.id, tags.c.digest_id).where(tags.c.repo_id == repo_id, tags.c.name == event.tag)
    ).first()
    if row is None:
        conn.execute(insert(tags).values(repo_id=repo_id, name=event.tag, digest_id=digest_id,
                                         version_key=version_key(event.tag)))
        old = None
    elif row.digest_id != digest_id:
        conn.execute(update(tags).where(tags.c.id == row.id).values(digest_id=digest_id))
        old = _digest_name(conn, row.digest_id)
    else:
        old = event.digest
    record_tag_history(conn, writer.registry_id, event.repo, [TagChange(event.tag, old, event.digest)],
                       source="event", at=event.timestamp)


def _apply_delete(writer: SnapshotWriter, event: Event, received_at: datetime) -> None:
    conn = writer.conn
    repos, tags = models.Repo.__table__, models.Tag.__table__
    repo_id = conn.execute(
        select(repos.c.id).where(repos.c.registry_id == writer.registry_id, repos.c.name == event.repo)
    ).scalar()
    if event.digest is not None and event.tag is None:
        digest_id = writer.lookup([event.digest]).get(event.digest)
        gone: list[str] = []
        if repo_id is not None and digest_id is not None:
            gone = [row.name for row in conn.execute(
                select(tags.c.name).where(tags.c.repo_id == repo_id, tags.c.digest_id == digest_id))]
            conn.execute(delete(tags).where(tags.c.repo_id == repo_id, tags.c.digest_id == digest_id))
            rd = models.RepoDigest.__table__
            conn.execute(delete(rd).where(rd.c.repo_id == repo_id, rd.c.digest_id == digest_id))
        # Tags whose rows regdb's own removal already deleted still have an open stretch in the history: the
        # registry's event is what says when they ended.
        history = models.TagHistory.__table__
        still_open = conn.execute(select(history.c.tag).where(
            history.c.registry_id == writer.registry_id, history.c.repo == event.repo,
            history.c.digest == event.digest, history.c.valid_to.is_(None))).scalars()
        ended = dict.fromkeys([*gone, *still_open])
        record_tag_history(conn, writer.registry_id, event.repo,
                           [TagChange(tag, event.digest, None) for tag in ended], source="event",
                           at=event.timestamp)
        return
    if _stale(writer, event, received_at):
        return
    row = None
    if repo_id is not None:
        row = conn.execute(
            select(tags.c.id, tags.c.digest_id).where(tags.c.repo_id == repo_id, tags.c.name == event.tag)
        ).first()
    if row is not None:  # distribution 2.8: the delete by digest before it has already taken the tag
        conn.execute(delete(tags).where(tags.c.id == row.id))
    record_tag_history(conn, writer.registry_id, event.repo,
                       [TagChange(event.tag, _digest_name(conn, row.digest_id) if row else None, None)],
                       source="event", at=event.timestamp)


def _stale(writer: SnapshotWriter, event: Event, received_at: datetime) -> bool:
    """A sync listed the tag after this event was received (it waited in the journal while the sync held the
    lock): the sync's state is newer, and applying the event would undo it until the next event.

    Compared on regdb's own clock (the journal's receipt time against the sync's listing time), never the
    registry's: a skewed clock must not make a newer event look stale. An event received after the listing is
    applied even if it happened before it: events arrive in order, so what follows it puts the newer state back.
    """
    changed = last_sync_change_at(writer.conn, writer.registry_id, event.repo, event.tag)
    return changed is not None and changed > received_at


def _digest_name(conn: Connection, digest_id: int) -> str | None:
    table = models.Digest.__table__
    return conn.execute(select(table.c.digest).where(table.c.id == digest_id)).scalar()


def _add_pulls(conn: Connection, registry_id: int, pulls: dict[tuple[str, str, str], list]) -> None:
    table = models.Pull.__table__
    for (repo, digest, day), (gets, heads, last) in pulls.items():
        key = (table.c.registry_id == registry_id, table.c.repo == repo, table.c.digest == digest,
               table.c.day == day)
        row = conn.execute(select(table.c.gets, table.c.heads, table.c.last_pulled_at).where(*key)).first()
        if row is None:
            conn.execute(insert(table).values(registry_id=registry_id, repo=repo, digest=digest, day=day,
                                              gets=gets, heads=heads, last_pulled_at=last))
        else:
            conn.execute(update(table).where(*key).values(
                gets=row.gets + gets, heads=row.heads + heads, last_pulled_at=max(row.last_pulled_at, last)))


def _reject(conn: Connection, registry_id: int, row: Journaled, reason: str) -> None:
    log.warning("rejected event %s: %s", row.event_id or "(no id)", reason)
    conn.execute(insert(models.RejectedEvent.__table__).values(
        registry_id=registry_id, event_id=row.event_id, received_at=parse_timestamp(row.received_at) or utcnow(),
        reason=reason[:1000], event=row.body.encode()[:MAX_REJECTED_EVENT_BYTES].decode(errors="ignore"),
    ))


class _Window:
    """The registry's current observed window, moved on by a batch and written once at its end."""

    def __init__(self, conn: Connection, registry_id: int, gap: str | None = None):
        self.conn = conn
        self.registry_id = registry_id
        self.gap = gap
        table = models.ObservedWindow.__table__
        self.row = conn.execute(
            select(table).where(table.c.registry_id == registry_id, table.c.ended_at.is_(None))
            .order_by(table.c.id.desc()).limit(1)
        ).first()
        self.instance = self.row.instance_id if self.row else None
        self.started = self.row.started_at if self.row else None
        self.last = self.row.last_event_at if self.row else None
        self.id = self.row.id if self.row else None

    def saw(self, event: Event) -> None:
        instance = event.instance_id or "(none)"
        if self.id is not None and instance == self.instance and self.gap is None:
            self.last = max(self.last, event.timestamp)
            return
        table = models.ObservedWindow.__table__
        if self.id is not None:
            reason = self.gap if self.gap is not None and instance == self.instance else \
                f"the registry restarted (source.instanceID {self.instance} -> {instance}): events queued in it " \
                "were lost"
            self.conn.execute(update(table).where(table.c.id == self.id).values(
                last_event_at=self.last, ended_at=self.last, end_reason=reason))
        self.gap = None
        self.id = self.conn.execute(insert(table).values(
            registry_id=self.registry_id, instance_id=instance, started_at=event.timestamp,
            last_event_at=event.timestamp,
        )).inserted_primary_key[0]
        self.instance, self.started, self.last = instance, event.timestamp, event.timestamp

    def write(self) -> None:
        if self.id is not None:
            table = models.ObservedWindow.__table__
            self.conn.execute(update(table).where(table.c.id == self.id).values(last_event_at=self.last))
