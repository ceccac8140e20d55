"""The sync: walk a registry and write one consistent snapshot of it into the inventory.

How it stays correct, fast and atomic:
- Every repository comes from ``_catalog`` followed page by page (docker-registry-util stopped at 100), or
  from the names given; every tag is resolved by HEAD with all four manifest types accepted, so a multi-arch
  tag records its index, and OCI images resolve at all.
- A digest is immutable, so its manifest (and an image's config blob) is fetched once, ever: a re-sync only
  lists tags and HEADs them. Index children are fetched like any manifest and recorded with their platform.
- HTTP runs on a bounded worker pool sharing one keep-alive pool; the main thread alone writes to the
  inventory, streaming repository after repository so memory does not grow with the registry.
- The whole run is one write transaction. In WAL mode readers keep seeing the previous snapshot until the
  commit, and a killed run leaves that snapshot as it was. A failed run changes nothing but a ``syncs`` row.
"""

from __future__ import annotations

import itertools
import logging
import queue
import sys
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterable

from sqlalchemy import Connection, Engine, bindparam, delete, insert, select, update

from regdb.inventory import models
from regdb.inventory.models import utcnow
from regdb.registry.reference import check_repository, is_repository, is_tag, printable
from regdb.registry.client import RegistryClient
from regdb.inventory.db import insert_id, write_transaction
from regdb.errors import InvalidName, RegdbError, RegistryError, RepositoryNotFound
from regdb.inventory.history import end_repository_history, reconcile_repository
from regdb.inventory.manifests import ManifestInfo, apply_config, parse_manifest, total_size
from regdb.inventory.summaries import refresh_summaries
from regdb.versions import is_current_key, version_key

log = logging.getLogger(__name__)

BATCH = 500  # rows per IN (...) lookup; well under SQLite's bound-parameter limit
# At most this many tags one worker resolves in a row, as one job: the hand-off of a job to a worker and of its
# answer back to the main thread cost about as much client CPU as the request itself (bench rows 1b, 1c, 1e),
# so it is paid once per few tags. Fewer where a repository has too few tags to keep every worker busy that
# way (_Walk.tags_per_job): against a distant registry a request waits on the network, and a sync of one
# 50-tag repository must still have all its workers asking.
TAGS_PER_JOB = 8
# digests.kind of a placeholder for an index child the registry no longer has (digest_children.missing).
MISSING = "missing"


@dataclass
class SyncResult:
    registry: str
    sync_id: int
    repos: int
    tags: int
    digests_fetched: int
    requests: int
    started_at: datetime
    finished_at: datetime
    missing_repos: list[str] = field(default_factory=list)
    # repository -> why its listing was incomplete (names skipped as invalid); also in repos.incomplete.
    incomplete: dict[str, str] = field(default_factory=dict)
    skipped_repos: list[str] = field(default_factory=list)  # catalog names outside the OCI grammar
    broken_indexes: int = 0  # indexes recorded with a child the registry no longer has


@dataclass
class SyncCounts:
    """How far a sync is, for a progress display: handed to ``watch`` after every tag and every repository."""

    repos_done: int = 0
    repos_total: int | None = None  # known once the catalog (or the list of names) is exhausted
    tags_done: int = 0
    tags_listed: int = 0  # tags of the repositories listed so far: the total once every repository is listed
    repos_listed: int = 0

    @property
    def tags_total(self) -> int | None:
        """Every tag this sync will resolve, once the catalog is known and every repository has been listed."""
        if self.repos_total is not None and self.repos_listed >= self.repos_total:
            return self.tags_listed
        return None


# --- writing ------------------------------------------------------------------------------------------------


class SnapshotWriter:
    """Writes one registry's snapshot inside an open transaction. Used by the sync and by the benchmark."""

    def __init__(self, conn: Connection, url: str, name: str):
        self.conn = conn
        self.registry_id = self._registry(url, name)
        self.digests_stored = 0
        # digest -> id of every digest this run has looked up or stored: most lookups repeat (each tag of a
        # shared digest, each repository holding it), and a query per lookup was a sixth of a sync's time.
        self.ids: dict[str, int] = {}
        table = models.Digest.__table__
        # Whether any placeholder of a missing child exists: only then is a new manifest checked against them.
        self.placeholders = self.conn.execute(select(table.c.id).where(table.c.kind == MISSING).limit(1)).first() \
            is not None

    def _registry(self, url: str, name: str) -> int:
        table = models.Registry.__table__
        found = self.conn.execute(select(table.c.id).where(table.c.url == url)).scalar()
        if found is not None:
            return found
        return insert_id(self.conn, insert(table).values(url=url, name=name))

    def lookup(self, digests: Iterable[str]) -> dict[str, int]:
        """digest -> id for the digests already in the inventory."""
        table = models.Digest.__table__
        found: dict[str, int] = {}
        wanted = []
        for digest in dict.fromkeys(digests):
            if digest in self.ids:
                found[digest] = self.ids[digest]
            else:
                wanted.append(digest)
        for start in range(0, len(wanted), BATCH):
            rows = self.conn.execute(
                select(table.c.digest, table.c.id).where(table.c.digest.in_(wanted[start : start + BATCH]),
                                                         table.c.kind != MISSING)
            )
            found.update((digest, digest_id) for digest, digest_id in rows)
        self.ids.update(found)
        return found

    def store_manifest(self, info: ManifestInfo) -> int:
        """Insert one manifest (its children must be stored already). Returns its id."""
        digests = models.Digest.__table__
        children_ids: list[int] = []
        created, size = info.created, total_size(info)
        if info.kind == "index":
            ids = self.lookup(child.digest for child in info.children)
            children_ids = [ids.get(child.digest) or self._placeholder(child.digest) for child in info.children]
            if children_ids:
                rows = self.conn.execute(
                    select(digests.c.total_size, digests.c.created).where(digests.c.id.in_(set(children_ids)))
                ).all()
                size = sum(row.total_size for row in rows)
                stamps = [row.created for row in rows if row.created is not None]
                created = max(stamps) if stamps else None
            else:
                size = 0
        values = dict(
            digest=info.digest,
            media_type=info.media_type,
            kind=info.kind,
            size=info.size,
            total_size=size,
            config_digest=info.config_digest,
            created=created,
            architecture=info.architecture,
            os=info.os,
            artifact_type=info.artifact_type,
            subject_digest=info.subject_digest,
            fetched_at=utcnow(),
        )
        digest_id = None
        if self.placeholders:
            digest_id = self.conn.execute(
                select(digests.c.id).where(digests.c.digest == info.digest, digests.c.kind == MISSING)
            ).scalar()
        if digest_id is not None:
            # A child that was missing is back (pushed again): its placeholder becomes the manifest.
            self.conn.execute(update(digests).where(digests.c.id == digest_id).values(**values))
            children = models.DigestChild.__table__
            self.conn.execute(update(children).where(children.c.child_id == digest_id).values(missing=False))
        else:
            # The values as parameters, not .values(**values): the statement is then the same every time and its
            # compiled form is reused; building one per manifest cost 0.37 ms against 0.06 ms (a first sync stores
            # every manifest of the registry, bench 1b).
            digest_id = insert_id(self.conn, insert(digests), values)
        if info.kind == "index" and info.children:
            self.conn.execute(
                insert(models.DigestChild.__table__),
                [
                    dict(parent_id=digest_id, position=i, child_id=child_id, architecture=c.architecture,
                         os=c.os, variant=c.variant, missing=c.digest in info.missing_children)
                    for i, (c, child_id) in enumerate(zip(info.children, children_ids, strict=True))
                ],
            )
        blobs = []
        if info.config_digest:
            blobs.append(dict(digest_id=digest_id, position=0, blob_digest=info.config_digest, kind="config",
                              size=info.config_size or 0))
        blobs += [
            dict(digest_id=digest_id, position=i, blob_digest=d, kind="layer", size=s)
            for i, (d, s) in enumerate(info.layers, start=1)
        ]
        if blobs:
            self.conn.execute(insert(models.DigestBlob.__table__), blobs)
        self.digests_stored += 1
        self.ids[info.digest] = digest_id
        return digest_id

    def _placeholder(self, digest: str) -> int:
        """The id of a placeholder row for a child the registry no longer has (made once, reused)."""
        digests = models.Digest.__table__
        found = self.conn.execute(select(digests.c.id).where(digests.c.digest == digest)).scalar()
        if found is not None:
            return found
        self.placeholders = True
        return insert_id(self.conn,
            insert(digests).values(digest=digest, media_type="", kind=MISSING, size=0, total_size=0,
                                   fetched_at=utcnow())
        )

    def repo_id(self, name: str) -> int:
        table = models.Repo.__table__
        found = self.conn.execute(
            select(table.c.id).where(table.c.registry_id == self.registry_id, table.c.name == name)
        ).scalar()
        if found is not None:
            return found
        return insert_id(self.conn,
            insert(table).values(registry_id=self.registry_id, name=name)
        )

    def has_tags(self, name: str) -> bool:
        """Whether the inventory already knows tags of this repository (from an earlier sync)."""
        tags, repos = models.Tag.__table__, models.Repo.__table__
        return self.conn.execute(
            select(tags.c.id)
            .join(repos, repos.c.id == tags.c.repo_id)
            .where(repos.c.registry_id == self.registry_id, repos.c.name == name)
            .limit(1)
        ).first() is not None

    def previous_digests(self, name: str) -> dict[str, int]:
        """digest -> id of every manifest the inventory holds for this repository now."""
        rd, repos, digests = models.RepoDigest.__table__, models.Repo.__table__, models.Digest.__table__
        rows = self.conn.execute(
            select(digests.c.digest, digests.c.id)
            .join(rd, rd.c.digest_id == digests.c.id)
            .join(repos, repos.c.id == rd.c.repo_id)
            .where(repos.c.registry_id == self.registry_id, repos.c.name == name)
        )
        return {digest: digest_id for digest, digest_id in rows}

    def children_of(self, digest_ids: Iterable[int]) -> set[int]:
        table = models.DigestChild.__table__
        wanted = list(set(digest_ids))
        found: set[int] = set()
        for start in range(0, len(wanted), BATCH):
            found.update(
                self.conn.execute(
                    select(table.c.child_id).where(table.c.parent_id.in_(wanted[start : start + BATCH]),
                                                   table.c.missing == False)  # noqa: E712 - SQL, not Python
                ).scalars()
            )
        return found

    def write_repo(self, name: str, tags: dict[str, int], present: set[int], listed_at: datetime | None = None,
                   incomplete: str | None = None) -> None:
        """Make the repository's tags and manifests exactly ``tags`` and ``present`` (digest ids); ``incomplete``
        says why the listing was not whole (NULL: it was)."""
        repo_id = self.repo_id(name)
        repos = models.Repo.__table__
        self.conn.execute(update(repos).where(repos.c.id == repo_id).values(incomplete=incomplete))
        table = models.Tag.__table__
        existing = {}
        rekeyed = []
        for row in self.conn.execute(
            select(table.c.id, table.c.name, table.c.digest_id, table.c.version_key).where(table.c.repo_id == repo_id)
        ):
            existing[row.name] = (row.id, row.digest_id)
            if row.version_key is not None and not is_current_key(row.version_key):
                # A key written before the precision field (regdb.versions): selects nothing until re-keyed.
                rekeyed.append({"tag_id": row.id, "new_key": version_key(row.name)})
        if rekeyed:
            self.conn.execute(
                update(table).where(table.c.id == bindparam("tag_id")).values(version_key=bindparam("new_key")),
                rekeyed,
            )
        reconcile_repository(self.conn, self.registry_id, name, tags, at=listed_at)  # tag_history (issue 15)
        gone = [tag_id for tag, (tag_id, _) in existing.items() if tag not in tags]
        moved = [
            {"tag_id": existing[tag][0], "new_digest": digest_id}
            for tag, digest_id in tags.items()
            if tag in existing and existing[tag][1] != digest_id
        ]
        added = (
            dict(repo_id=repo_id, name=tag, digest_id=digest_id, version_key=version_key(tag))
            for tag, digest_id in tags.items()
            if tag not in existing
        )
        for start in range(0, len(gone), BATCH):
            self.conn.execute(delete(table).where(table.c.id.in_(gone[start : start + BATCH])))
        if moved:
            self.conn.execute(
                update(table).where(table.c.id == bindparam("tag_id")).values(digest_id=bindparam("new_digest")),
                moved,
            )
        while rows := list(itertools.islice(added, BATCH * 10)):  # in slices: a 100,000-tag repository
            self.conn.execute(insert(table), rows)
        rd = models.RepoDigest.__table__
        before = set(
            self.conn.execute(select(rd.c.digest_id).where(rd.c.repo_id == repo_id)).scalars()
        )
        removed = list(before - present)
        for start in range(0, len(removed), BATCH):
            self.conn.execute(
                delete(rd).where(rd.c.repo_id == repo_id, rd.c.digest_id.in_(removed[start : start + BATCH]))
            )
        new = [dict(repo_id=repo_id, digest_id=d) for d in present - before]
        if new:
            self.conn.execute(insert(rd), new)

    def drop_repos(self, keep: set[str] | None = None, names: Iterable[str] = ()) -> None:
        """Forget repositories: all except ``keep`` (after a full sync), or the ``names`` given."""
        table = models.Repo.__table__
        rows = self.conn.execute(
            select(table.c.id, table.c.name).where(table.c.registry_id == self.registry_id)
        ).all()
        doomed = [row.id for row in rows if (keep is not None and row.name not in keep) or row.name in set(names)]
        end_repository_history(self.conn, self.registry_id, [row.name for row in rows if row.id in set(doomed)],
                               source="sync")
        for start in range(0, len(doomed), BATCH):
            self.conn.execute(delete(table).where(table.c.id.in_(doomed[start : start + BATCH])))

    def record(self, *, started_at: datetime, status: str, error: str | None = None, scope=None,
               repos=0, tags=0, digests_fetched=0, requests=0) -> int:
        now = utcnow()
        if status == "ok":
            table = models.Registry.__table__
            self.conn.execute(update(table).where(table.c.id == self.registry_id).values(last_synced_at=now))
        return insert_id(self.conn,
            insert(models.Sync.__table__).values(
                registry_id=self.registry_id, started_at=started_at, finished_at=now, status=status,
                error=error, scope=scope, repos=repos, tags=tags, digests_fetched=digests_fetched,
                requests=requests,
            )
        )


# --- walking the registry -------------------------------------------------------------------------------------


@dataclass
class _RepoState:
    name: str
    tags: list[str] = field(default_factory=list)
    refs: dict[str, str] = field(default_factory=dict)  # tag -> digest (interned: many tags share one)
    bodies: dict[str, tuple[bytes, str | None]] = field(default_factory=dict)  # digest -> manifest, new repos
    pending: int = 0
    stage: str = "tags"
    survivors: set[int] = field(default_factory=set)
    listed_at: datetime = field(default_factory=utcnow)  # when its tags were asked for (tag_history)
    problems: list[str] = field(default_factory=list)  # why the listing is incomplete (repos.incomplete)


@dataclass
class _DigestJob:
    digest: str
    repo: str
    info: ManifestInfo | None = None
    outstanding: int = 0
    waiters: list = field(default_factory=list)  # _RepoState or _DigestJob


class _Walk:
    """Schedules the HTTP work of one sync on a worker pool; the calling thread alone touches the database."""

    def __init__(self, client: RegistryClient, writer: SnapshotWriter, jobs: int,
                 progress: Callable[[int, int], None] | None, watch: Callable[[SyncCounts], None] | None = None):
        self.client = client
        self.writer = writer
        self.pool = ThreadPoolExecutor(max_workers=max(jobs, 1), thread_name_prefix="regdb-sync")
        self.workers = max(jobs, 1)
        self.limit = max(jobs, 1) * 2
        self.queue: deque = deque()
        self.inflight: dict[Future, Callable] = {}
        # Finished futures arrive here: waiting on one queue costs the same however many requests are in
        # flight, where concurrent.futures.wait() re-armed a waiter on every one of them per completion.
        self.done: queue.SimpleQueue[Future] = queue.SimpleQueue()
        self.open: dict[str, _RepoState] = {}
        self.fetching: dict[str, _DigestJob] = {}
        self.progress = progress
        self.watch = watch
        self.counts = SyncCounts()
        self.repos_done = 0
        self.tags_seen = 0
        self.missing: list[str] = []
        self.seen: set[str] = set()
        self.skipped: list[str] = []  # catalog names outside the OCI grammar, reported once each
        self.incomplete: dict[str, str] = {}
        self.broken_indexes = 0

    # the scheduler

    def _submit(self, fn, args, then) -> None:
        self.queue.append((fn, args, then))

    def run(self, names: Iterable[str]) -> None:
        names = iter(names)
        more = True
        try:
            while True:
                while more and len(self.queue) < self.limit and len(self.open) < self.limit * 2:
                    name = next(names, None)
                    if name is None:
                        more = False
                        self.counts.repos_total = len(self.seen)
                        break
                    if name in self.seen:
                        continue
                    self.seen.add(name)
                    if not is_repository(name):
                        # "../../etc" would be asked as GET /etc/tags/list: never put it in a URL or the inventory.
                        log.warning("skipping repository %s: not a valid repository name", printable(name))
                        self.skipped.append(name)
                        continue
                    state = self.open[name] = _RepoState(name)
                    self._submit(self._list_tags, (name,), lambda tags, s=state: self._on_tags(s, tags))
                while self.queue and len(self.inflight) < self.limit:
                    if isinstance(self.queue[0], tuple):
                        fn, args, then = self.queue.popleft()
                    else:  # a generator of jobs (one repository's tags): take the next one
                        job = next(self.queue[0], None)
                        if job is None:
                            self.queue.popleft()
                            continue
                        fn, args, then = job
                    future = self.pool.submit(fn, *args)
                    self.inflight[future] = then
                    future.add_done_callback(self.done.put)
                if not self.inflight:
                    if not more and not self.queue:
                        break
                    continue
                future = self.done.get()
                then = self.inflight.pop(future)
                then(future.result())
        finally:
            for future in self.inflight:
                future.cancel()
            self.pool.shutdown(wait=True, cancel_futures=True)

    # repository stages: tags -> refs -> manifests -> untagged survivors -> write

    def _list_tags(self, name: str) -> list[str] | None:
        try:
            return self.client.tags(name)
        except RepositoryNotFound:
            return None

    def _problem(self, state: _RepoState, problem: str) -> None:
        """A name skipped as invalid: one warning, and the repository's listing is marked incomplete."""
        log.warning("%s: %s; skipped", state.name, problem)
        state.problems.append(problem)

    def _resolve_checked(self, resolve, repo: str, tags: list[str]) -> list:
        """``resolve`` (or ``fetch_tag``) of each of ``tags`` in turn; an invalid digest the registry announces
        comes back as that tag's error."""
        answers: list = []
        for tag in tags:
            try:
                answers.append(resolve(repo, tag))
            except InvalidName as error:
                answers.append(error)
        return answers

    def _fetch_child(self, repo: str, digest: str) -> ManifestInfo | None:
        """An index's child, or None if the registry no longer has it (deleted, garbage-collected)."""
        try:
            return self._fetch(repo, digest)
        except RegistryError as error:
            if error.status == 404:
                return None
            raise

    def _on_tags(self, state: _RepoState, tags: list[str] | None) -> None:
        if tags is None:
            self.missing.append(state.name)
            del self.open[state.name]
            self.counts.repos_listed += 1
            return
        valid = {tag for tag in tags if is_tag(tag)}
        for tag in sorted(set(tags) - valid):
            self._problem(state, f"tag {printable(tag)} is not a valid tag")
        state.tags = sorted(valid)
        self.counts.repos_listed += 1
        self.counts.tags_listed += len(state.tags)
        state.stage = "refs"
        state.pending = len(state.tags)
        # A repository seen for the first time has mostly new manifests: GET each tag (the body comes with
        # its digest, hashed and checked) instead of HEAD now and GET by digest later. A registry spends the
        # same on a GET as on a HEAD, so this saves one request per new manifest. Re-syncs HEAD.
        fetch = not self.client.use_get_manifest and not self.writer.has_tags(state.name)
        resolve = self.client.fetch_tag if fetch else self.client.resolve
        if state.tags:
            # A generator, not one queued job per tag: a repository of 100,000 tags then costs memory for the
            # requests in flight, not for 100,000 waiting closures.
            self.queue.append(
                (self._resolve_checked, (resolve, state.name, chunk),
                 lambda answers, s=state, c=chunk: self._on_refs(s, c, answers))
                for chunk in _chunks(state.tags, self.tags_per_job(len(state.tags)))
            )
        else:
            self._after_refs(state)

    def tags_per_job(self, tags: int) -> int:
        """Tags per job for a repository of ``tags``: up to TAGS_PER_JOB, and never so many that its jobs are
        fewer than the workers."""
        return max(1, min(TAGS_PER_JOB, tags // self.workers))

    def _on_refs(self, state: _RepoState, tags: list[str], answers: list) -> None:
        for tag, got in zip(tags, answers, strict=True):
            self._on_ref(state, tag, got)

    def _on_ref(self, state: _RepoState, tag: str, got) -> None:
        ref = got
        if isinstance(got, InvalidName):
            self._problem(state, f"tag {printable(tag)}: {got}")
            ref = None
        elif isinstance(got, tuple):  # fetch_tag: (ref, body, media type)
            ref, body, media_type = got
            state.bodies.setdefault(ref.digest, (body, media_type))
        if ref is not None:  # None: the tag was deleted between tags/list and HEAD
            state.refs[tag] = sys.intern(ref.digest)
        state.pending -= 1
        self.tags_seen += 1
        if self.watch:
            self.counts.tags_done = self.tags_seen
            self.watch(self.counts)
        if state.pending == 0:
            self._after_refs(state)

    def _after_refs(self, state: _RepoState) -> None:
        state.stage = "manifests"
        wanted = set(state.refs.values())
        known = self.writer.lookup(wanted)
        state.pending = 0
        for digest in wanted - known.keys():
            state.pending += 1
            self._need(digest, state.name, state, state.bodies.get(digest))
        state.bodies.clear()
        if state.pending == 0:
            self._after_manifests(state)

    def _need(self, digest: str, repo: str, waiter, fetched: tuple[bytes, str | None] | None = None,
              child: bool = False) -> None:
        job = self.fetching.get(digest)
        if job is None:
            job = self.fetching[digest] = _DigestJob(digest, repo)
            fetch, args = (self._fetch_child, (repo, digest)) if child else (self._fetch, (repo, digest, fetched))
            self._submit(fetch, args, lambda info, j=job: self._on_manifest(j, info))
        job.waiters.append(waiter)

    def _fetch(self, repo: str, digest: str, fetched: tuple[bytes, str | None] | None = None) -> ManifestInfo:
        body, media_type = fetched if fetched is not None else self.client.manifest(repo, digest)
        info = parse_manifest(digest, body, media_type)
        if (config := info.wanted_config) is not None:
            apply_config(info, self.client.blob(repo, config))
        return info

    def _on_manifest(self, job: _DigestJob, info: ManifestInfo | None) -> None:
        job.info = info
        if info is not None and info.kind == "index":
            children = {child.digest for child in info.children}
            known = self.writer.lookup(children)
            for child in children - known.keys():
                job.outstanding += 1
                self._need(child, job.repo, job, child=True)
        if job.outstanding == 0:
            self._store(job)

    def _store(self, job: _DigestJob) -> None:
        # None: a child the registry no longer has; its index records it as missing. A manifest naming a digest
        # outside the grammar is not stored: every sync fetches and reports it again, so the repositories
        # holding it stay marked incomplete (and the tags on it are left out).
        if job.info is not None and not job.info.problems:
            if job.info.missing_children:
                self.broken_indexes += 1
                log.warning("index %s names %d child manifest(s) the registry no longer has (%s); recorded as "
                            "missing", job.digest, len(job.info.missing_children),
                            ", ".join(sorted(job.info.missing_children)))
            self.writer.store_manifest(job.info)
        del self.fetching[job.digest]
        for waiter in job.waiters:
            if isinstance(waiter, _DigestJob):
                assert waiter.info is not None  # an index waits for its children only once it is parsed
                if job.info is None:
                    waiter.info.missing_children.add(job.digest)
                else:
                    waiter.info.problems.extend(job.info.problems)
                waiter.outstanding -= 1
                if waiter.outstanding == 0:
                    self._store(waiter)
            else:
                for problem in job.info.problems if job.info is not None else ():
                    self._problem(waiter, problem)
                waiter.pending -= 1
                if waiter.pending == 0:
                    self._after_manifests(waiter)

    def _after_manifests(self, state: _RepoState) -> None:
        ids = self.writer.lookup(set(state.refs.values()))
        tagged = set(ids.values())
        present = tagged | self.writer.children_of(tagged)
        # Manifests we knew in this repository that no tag or index holds any more may still be there,
        # untagged (a moved tag, a deleted index's children): keep those the registry still serves.
        previous = self.writer.previous_digests(state.name)
        candidates = {digest: digest_id for digest, digest_id in previous.items() if digest_id not in present}
        state.stage = "untagged"
        state.survivors = present
        state.pending = len(candidates)
        for digest, digest_id in candidates.items():
            self._submit(
                self.client.manifest_exists,
                (state.name, digest),
                lambda exists, s=state, i=digest_id: self._on_untagged(s, i, exists),
            )
        if not candidates:
            self._write(state, ids)

    def _on_untagged(self, state: _RepoState, digest_id: int, exists: bool) -> None:
        if exists:
            state.survivors.add(digest_id)
        state.pending -= 1
        if state.pending == 0:
            self._write(state, self.writer.lookup(set(state.refs.values())))

    def _write(self, state: _RepoState, ids: dict[str, int]) -> None:
        incomplete = "; ".join(dict.fromkeys(state.problems))[:1000] if state.problems else None
        if incomplete:
            self.incomplete[state.name] = incomplete
        # A tag whose manifest vanished while the sync ran (fetched as an index child and gone) is not written.
        tags = {tag: ids[digest] for tag, digest in state.refs.items() if digest in ids}
        self.writer.write_repo(state.name, tags, state.survivors, state.listed_at, incomplete)
        del self.open[state.name]
        self.repos_done += 1
        if self.progress:
            self.progress(self.repos_done, self.tags_seen)
        if self.watch:
            self.counts.repos_done, self.counts.tags_done = self.repos_done, self.tags_seen
            self.watch(self.counts)


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def sync_registry(
    engine: Engine,
    client: RegistryClient,
    *,
    repos: Iterable[str] | None = None,
    jobs: int = 16,
    progress: Callable[[int, int], None] | None = None,
    watch: Callable[[SyncCounts], None] | None = None,
) -> SyncResult:
    """Mirror the registry (or only ``repos``) into the inventory as one snapshot.

    ``progress(repos_done, tags_seen)`` is called after each repository is written; ``watch(SyncCounts)`` after
    each tag too, with the totals once they are known (a progress bar)."""
    started = utcnow()
    named = [check_repository(name) for name in dict.fromkeys(repos)] if repos else None
    requests_before = sum(client.stats.values())
    try:
        client.ping()
        with write_transaction(engine) as conn:
            writer = SnapshotWriter(conn, client.url, client.name)
            walk = _Walk(client, writer, jobs, progress, watch)
            walk.run(named if named is not None else client.catalog())
            if named is None:
                writer.drop_repos(keep=walk.seen - set(walk.missing) - set(walk.skipped))
            else:
                writer.drop_repos(names=walk.missing)
            refresh_summaries(conn, writer.registry_id)  # the BI views' summaries, in the same transaction
            requests = sum(client.stats.values()) - requests_before
            sync_id = writer.record(
                started_at=started, status="ok", scope=" ".join(named) if named else None,
                repos=len(walk.seen) - len(walk.missing) - len(walk.skipped), tags=walk.tags_seen,
                digests_fetched=writer.digests_stored, requests=requests,
            )
    except (RegdbError, KeyboardInterrupt) as error:
        _record_failure(engine, client, started, error, named)
        raise
    return SyncResult(
        registry=client.url, sync_id=sync_id, repos=len(walk.seen) - len(walk.missing) - len(walk.skipped),
        tags=walk.tags_seen, digests_fetched=writer.digests_stored, requests=requests, started_at=started,
        finished_at=utcnow(), missing_repos=walk.missing, incomplete=walk.incomplete, skipped_repos=walk.skipped,
        broken_indexes=walk.broken_indexes,
    )


def _record_failure(engine: Engine, client: RegistryClient, started: datetime, error: BaseException,
                    named: list[str] | None) -> None:
    """Leave a 'failed' row in ``syncs`` (best effort: the inventory itself may be what failed)."""
    reason = str(error) or type(error).__name__
    try:
        with write_transaction(engine) as conn:
            SnapshotWriter(conn, client.url, client.name).record(
                started_at=started, status="failed", error=reason, scope=" ".join(named) if named else None
            )
    except Exception:  # noqa: BLE001 - the original error is the one to report
        log.debug("could not record the failed sync", exc_info=True)
