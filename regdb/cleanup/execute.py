"""Carrying a removal plan out: verify, delete, record, one repository at a time.

For each planned repository in turn, right before its DELETEs:

3. Verify (``verify_repo``): the repository's tags are listed and resolved again; a pair whose set of tags
   changed since the plan is skipped and reported, never deleted. Verifying each repository just before its
   own DELETEs keeps the check-then-delete window to one repository's deletions, not the whole run's.
4. Delete on a bounded pool, an index's children and a digest's signatures once it is gone. Each batch of
   DELETEs is journaled first (``regdb.cleanup.journal``): the manifest's bytes and an ``in-flight`` row are
   committed before the DELETE is sent, the outcome after, in the transaction that takes the pair out of the
   inventory. A 5xx is checked with a HEAD by digest before it is recorded: the registry may have done it.
5. Re-list the repository's tags: a tag that vanished without being planned (pushed onto a planned digest
   after the verification) stops the run, named with its digest.

The library never prints: it returns a ``RemovalResult`` and raises named errors.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from sqlalchemy import Engine, insert, select

from regdb.inventory import models
from regdb.registry.client import RegistryClient
from regdb.inventory.db import write_transaction
from regdb.errors import (
    AuthenticationFailed,
    DeleteDisabled,
    InventoryError,
    PlanTooLarge,
    RegdbError,
    RegistryError,
    RemovalIncomplete,
    RemovalInterrupted,
    RepositoryNotFound,
    ScopeRefused,
)
from regdb.inventory.models import utcnow
from regdb.inventory.sync import BATCH

from regdb.cleanup import journal
from regdb.cleanup.journal import IN_FLIGHT, Intent, Resolved, forget_pair, interrupts_held
from regdb.cleanup.plan import CHILD, REFERRER, SIGNATURE, Plan, PlannedDeletion, freed_bytes

log = logging.getLogger(__name__)

_repos = models.Repo.__table__
_digests = models.Digest.__table__
_repo_digests = models.RepoDigest.__table__
_tags = models.Tag.__table__
_deletions = models.Deletion.__table__


@dataclass(frozen=True)
class Outcome:
    """What happened to one planned deletion."""

    row: PlannedDeletion
    outcome: str  # 'deleted', 'skipped', 'failed', or 'in-flight' (sent, answer unknown: the next run asks)
    http_status: int | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        return {**self.row.as_dict(), "outcome": self.outcome, "http_status": self.http_status, "error": self.error}


@dataclass(frozen=True)
class Vanished:
    """A tag that was in the registry right before a repository's DELETEs, was not planned, and is gone after."""

    repo: str
    tag: str
    digest: str

    def as_dict(self) -> dict:
        return {"repo": self.repo, "tag": self.tag, "digest": self.digest}


@dataclass
class RemovalResult:
    run_id: str
    registry: str
    deleted: list[Outcome] = field(default_factory=list)
    skipped: list[Outcome] = field(default_factory=list)
    failed: list[Outcome] = field(default_factory=list)
    in_flight: list[Outcome] = field(default_factory=list)
    vanished: list[Vanished] = field(default_factory=list)
    resolved: list[Resolved] = field(default_factory=list)  # in-flight rows of earlier runs settled first
    bytes_planned: int = 0
    bytes_freed: int = 0  # what a garbage collection frees after the deletions actually done

    @property
    def complete(self) -> bool:
        return not (self.failed or self.in_flight or self.vanished)

    def as_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "registry": self.registry,
            "deleted": [o.as_dict() for o in self.deleted],
            "skipped": [o.as_dict() for o in self.skipped],
            "failed": [o.as_dict() for o in self.failed],
            "in_flight": [o.as_dict() for o in self.in_flight],
            "vanished": [v.as_dict() for v in self.vanished],
            "resolved": [vars(r) for r in self.resolved],
            "bytes_planned": self.bytes_planned,
            "bytes_freed": self.bytes_freed,
        }


def new_run_id() -> str:
    return f"{utcnow():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def check_max_delete(plan: Plan, max_delete: int | None) -> None:
    """``PlanTooLarge`` when the plan deletes more than ``max_delete`` manifests (None: no limit)."""
    if max_delete is not None and len(plan.rows) > max_delete:
        raise PlanTooLarge(
            f"the plan deletes {len(plan.rows)} manifests, more than the limit of {max_delete} (max_delete): "
            "nothing deleted",
            count=len(plan.rows), limit=max_delete,
        )


def remove(engine: Engine, client: RegistryClient, plan: Plan, *, jobs: int = 16,
           run_id: str | None = None, max_delete: int | None = None) -> RemovalResult:
    """Verify the plan against the registry, delete it, record every outcome. See the module docstring.

    Raises, before anything is deleted: ``PlanTooLarge`` (more than ``max_delete`` manifests),
    ``InventoryError`` (the inventory cannot be written, so nothing could be recorded). After: ``DeleteDisabled``
    / ``ScopeRefused`` when the registry refuses every deletion and nothing was deleted,
    ``RemovalInterrupted`` on Ctrl-C and ``RemovalIncomplete`` (with ``.result``) when anything planned and not
    skipped was not deleted, or a tag that was not planned vanished.
    """
    if client.url != plan.registry:
        raise RegdbError(f"this plan is for {plan.registry}, not {client.url}: plan again for that registry")
    check_max_delete(plan, max_delete)
    run_id = run_id or new_run_id()
    result = RemovalResult(run_id=run_id, registry=plan.registry, bytes_planned=plan.bytes_freed)
    # In-flight rows an interrupted run left: asked of the registry first (writes only if there are any).
    result.resolved = journal.resolve_in_flight(engine, client, run_id=run_id)
    if not plan.rows:
        return result
    journal.check_writable(engine)
    recorder = _Recorder(engine, plan, result)
    known = _known_digests(engine, plan.registry_id, plan.repos)
    fatal: RegdbError | None = None
    jobs = max(jobs, 1)
    try:
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="regdb-delete") as pool:
            for repo in plan.repos:
                rows = [row for row in plan.rows if row.repo == repo]
                try:
                    listing, changed = verify_repo(client, repo, rows, known.get(repo, set()), pool)
                except RegistryError as error:
                    # Not verified, so not deleted; the other repositories are still tried.
                    recorder.record([Outcome(row, "failed", error.status, f"could not verify it: {error}")
                                     for row in rows])
                    continue
                recorder.record([Outcome(row, "skipped", error=changed[row.digest])
                                 for row in rows if row.digest in changed])
                for depth in sorted({row.depth for row in rows}):
                    wave = [row for row in rows if row.depth == depth and row.digest not in changed]
                    runnable = []
                    skipped = []
                    for row in wave:
                        blocked = [d for d in row.after if recorder.state.get((row.repo, d)) != "deleted"]
                        if blocked:
                            what = "index" if row.reason == CHILD else "subject"
                            skipped.append(Outcome(row, "skipped", error=f"its {what} {blocked[0]} was not deleted"))
                        else:
                            runnable.append(row)
                    recorder.record(skipped)
                    fatal = _delete_wave(pool, jobs, client, runnable, recorder)
                    if fatal is not None:
                        break
                result.vanished.extend(_vanished_tags(client, repo, listing, result))
                if fatal is not None or result.vanished:
                    break
    except KeyboardInterrupt:
        result.bytes_freed = _freed(engine, plan, result)
        raise RemovalInterrupted(interrupted_message(result, plan), result=result) from None
    result.bytes_freed = _freed(engine, plan, result)
    if fatal is not None and not result.deleted:
        raise fatal
    if fatal is not None or not result.complete:
        raise RemovalIncomplete(incomplete_message(result, plan, fatal), result=result)
    return result


def _freed(engine: Engine, plan: Plan, result: RemovalResult) -> int:
    try:
        return freed_bytes(engine, plan.registry_id, [(o.row.repo, o.row.digest) for o in result.deleted])
    except InventoryError:
        return 0


def _delete_wave(pool: ThreadPoolExecutor, jobs: int, client: RegistryClient, rows: list[PlannedDeletion],
                 recorder: "_Recorder") -> RegdbError | None:
    """Delete ``rows``, ``jobs`` at a time; record outcomes as they come. Returns the error that stops the run.

    Each batch: GET every manifest (the journal keeps its bytes), commit the intents, then send the DELETEs. At
    most ``jobs`` DELETEs are in flight, so a refusal that stops the run stops it after those, and an
    interruption leaves at most that many ``in-flight`` rows for the next run to settle.
    """
    for start in range(0, len(rows), jobs):
        batch = rows[start : start + jobs]
        fetches = [pool.submit(_fetch, client, row) for row in batch]
        _wait_awake(fetches)
        fetched = [future.result() for future in fetches]
        recorder.record([got for got in fetched if isinstance(got, Outcome)])
        intents = [got for got in fetched if isinstance(got, Intent)]
        by_key = {(row.repo, row.digest): row for row in batch}
        try:
            ids = recorder.intend(intents)
        except InventoryError as error:
            # Nothing of this batch was sent; what was deleted before is recorded. Say so: finding 5 of #12.
            result = recorder.result
            raise InventoryError(f"{error}; the removal stopped before its next DELETE: {len(result.deleted)} "
                                 f"manifests deleted so far, each recorded under run {result.run_id}") from None
        inflight: dict[Future, tuple[PlannedDeletion, int]] = {}
        fatal: RegdbError | None = None
        # A Ctrl-C anywhere from the first submit to the last record winds down: the DELETEs sent are waited
        # for and recorded. Where a DELETE is handed over or its answer taken from `inflight` and recorded, a
        # Ctrl-C is held off until that is done, so no sent DELETE is ever missing from `inflight` (one that
        # was, was left for the next run to settle, and the run hung on the worker still sending it).
        try:
            with interrupts_held():
                for intent, row_id in zip(intents, ids, strict=True):
                    row = by_key[(intent.repo, intent.digest)]
                    inflight[pool.submit(_delete_one, client, row)] = (row, row_id)
            while inflight:
                done = _wait_awake(inflight, FIRST_COMPLETED)
                with interrupts_held():
                    fatal = _record_answers(done, inflight, recorder, fatal)
        except KeyboardInterrupt:
            _wind_down(inflight, recorder)
            raise
        if fatal is not None:
            return fatal
    return None


# How often the main thread, waiting for workers, wakes to run a pending Ctrl-C. The kernel gives a SIGINT sent to
# the process to any one thread; CPython runs the handler only in the main thread, once that thread runs Python
# code again. A Ctrl-C that landed on a worker (one blocked in a socket read, or an idle one) left the main thread
# asleep in its wait until the DELETE in flight was answered: half a minute in tests/faults/test_journal_faults.py.
WAKE_S = 0.2


def _wait_awake(futures, return_when: str = ALL_COMPLETED) -> set[Future]:
    """``concurrent.futures.wait`` that notices a Ctrl-C within ``WAKE_S``; returns the futures done."""
    while True:
        done, pending = wait(futures, timeout=WAKE_S, return_when=return_when)
        if not pending or (done and return_when == FIRST_COMPLETED):
            return done


def _record_answers(done, inflight: dict[Future, tuple[PlannedDeletion, int]], recorder: "_Recorder",
                    fatal: RegdbError | None) -> RegdbError | None:
    """Take the answered DELETEs out of ``inflight`` and record them; returns the error that stops the run."""
    outcomes = []
    for future in done:
        row, row_id = inflight.pop(future)
        outcome, stop = future.result()
        outcomes.append((outcome, row_id))
        if stop is not None and fatal is None:
            # Deletion disabled or the delete scope refused: every other DELETE would be refused the same way.
            # Nothing more is sent; what is in flight is still recorded as it answers.
            fatal = stop
    try:
        recorder.record_sent(outcomes)
    except InventoryError as error:
        _wind_down(inflight, recorder, quietly=True)
        raise InventoryError(unrecorded_message(error, recorder.result, [o for o, _ in outcomes])) from None
    return fatal


def _wind_down(inflight: dict[Future, tuple[PlannedDeletion, int]], recorder: "_Recorder", *,
               quietly: bool = False) -> None:
    """Stopped with DELETEs in flight: start nothing new, wait for those sent, and record their answers, with
    a second Ctrl-C held off until the record is written."""
    with interrupts_held(deliver=False):
        for future in inflight:
            future.cancel()
        if not quietly:
            log.warning("interrupted: waiting for the DELETEs in flight (%d at most) to be answered and recorded; "
                        "Ctrl-C again does not stop this", len(inflight))
        done = _wait_awake(inflight)
        sent = []
        for future in done:
            row, row_id = inflight[future]
            if future.cancelled():
                sent.append((Outcome(row, "skipped", error="interrupted before its DELETE was sent"), row_id))
            else:
                sent.append((future.result()[0], row_id))
        try:
            recorder.record_sent(sent)
        except InventoryError:
            if not quietly:
                raise


def _fetch(client: RegistryClient, row: PlannedDeletion) -> Intent | Outcome:
    """The manifest's bytes for the journal, or the outcome when there is nothing to delete or to keep."""
    try:
        body, media_type = client.manifest(row.repo, row.digest)
    except RegistryError as error:
        if error.status == 404:
            # Already gone (deleted by someone else since the plan): the registry answers as if deleted.
            return Outcome(row, "deleted", 404, "already gone before its DELETE")
        return Outcome(row, "failed", error.status, f"could not read it for the journal: {error}")
    if len(body) > MAX_JOURNAL_MANIFEST_BYTES:
        return Outcome(row, "failed", None, f"manifest of {len(body)} bytes is over the journal's "
                                            f"{MAX_JOURNAL_MANIFEST_BYTES}: not deleted, it could not be restored")
    return Intent(row.repo, row.digest, row.tags, media_type or row.media_type, row.bytes, row.why, body)


MAX_JOURNAL_MANIFEST_BYTES = journal.MAX_JOURNAL_MANIFEST_BYTES


def _delete_one(client: RegistryClient, row: PlannedDeletion) -> tuple[Outcome, RegdbError | None]:
    try:
        status = client.delete_manifest(row.repo, row.digest)
    except DeleteDisabled as error:
        return Outcome(row, "failed", error.status, str(error)), error
    except ScopeRefused as error:
        return Outcome(row, "failed", error.status, str(error)), error
    except AuthenticationFailed as error:
        refused = ScopeRefused(
            f"registry {client.url} refused scope repository:{row.repo}:delete ({error.status or 401})",
            scope=f"repository:{row.repo}:delete",
            status=error.status,
        )
        return Outcome(row, "failed", error.status, str(refused)), refused
    except RegistryError as error:
        if error.status is not None and error.status < 500:
            return Outcome(row, "failed", error.status, str(error)), None
        # A 5xx, or no answer at all: the registry may have done it before failing to say so. Ask it.
        try:
            present = client.manifest_exists(row.repo, row.digest)
        except RegistryError:
            return Outcome(row, IN_FLIGHT, error.status,
                           f"{error}; whether it was done is unknown until the next run asks the registry"), None
        if present:
            return Outcome(row, "failed", error.status, str(error)), None
        return Outcome(row, "deleted", error.status,
                       f"{error}, but the registry no longer has it (HEAD by digest: 404)"), None
    # 404 MANIFEST_UNKNOWN: already gone (deleted by someone else, or a retried DELETE that had succeeded).
    return Outcome(row, "deleted", status), None


class _Recorder:
    """Writes the journal: intents before the DELETEs, outcomes after, a deleted pair out of the inventory in
    the same transaction as its outcome. Every write holds Ctrl-C off until it is committed."""

    def __init__(self, engine: Engine, plan: Plan, result: RemovalResult):
        self.engine = engine
        self.plan = plan
        self.result = result
        self.state: dict[tuple[str, str], str] = {}

    def intend(self, intents: list[Intent]) -> list[int]:
        with interrupts_held():
            return journal.write_intents(self.engine, self.plan.registry, self.result.run_id, intents)

    def record(self, outcomes: list[Outcome]) -> None:
        """Outcomes of rows that never got an intent (skipped, or failed before their DELETE)."""
        if not outcomes:
            return
        now = utcnow()
        with interrupts_held(), write_transaction(self.engine) as conn:
            conn.execute(insert(_deletions), [
                {
                    "run_id": self.result.run_id, "at": now, "registry": self.plan.registry, "repo": o.row.repo,
                    "digest": o.row.digest, "tags": ",".join(o.row.tags) or None, "media_type": o.row.media_type,
                    "bytes": o.row.bytes, "reason": o.row.why, "outcome": o.outcome,
                    "http_status": o.http_status, "error": o.error,
                }
                for o in outcomes
            ])
            for o in outcomes:
                if o.outcome == "deleted":
                    forget_pair(conn, self.plan.registry_id, o.row.repo, o.row.digest)
        self._note(outcomes)

    def record_sent(self, sent: list[tuple[Outcome, int]]) -> None:
        """Outcomes of DELETEs sent: each turns its intent row into what happened."""
        if not sent:
            return
        with interrupts_held(), write_transaction(self.engine) as conn:
            for o, row_id in sent:
                journal.write_outcome(conn, row_id, o.outcome, o.http_status, o.error)
                if o.outcome == "deleted":
                    forget_pair(conn, self.plan.registry_id, o.row.repo, o.row.digest)
        self._note([o for o, _ in sent])

    def _note(self, outcomes: list[Outcome]) -> None:
        for o in outcomes:
            self.state[(o.row.repo, o.row.digest)] = o.outcome
            getattr(self.result, o.outcome.replace("-", "_")).append(o)


def verify(engine: Engine, client: RegistryClient, plan: Plan, *, jobs: int = 16) -> dict[tuple[str, str], str]:
    """Every planned repository verified now (``verify_repo``); (repo, digest) -> why it must be skipped.

    ``remove`` verifies each repository right before its own DELETEs instead; this is for a look ahead."""
    known = _known_digests(engine, plan.registry_id, plan.repos)
    changed: dict[tuple[str, str], str] = {}
    with ThreadPoolExecutor(max_workers=max(jobs, 1), thread_name_prefix="regdb-verify") as pool:
        for repo in plan.repos:
            rows = [row for row in plan.rows if row.repo == repo]
            _listing, found = verify_repo(client, repo, rows, known.get(repo, set()), pool)
            changed.update({(repo, digest): why for digest, why in found.items()})
    return changed


def verify_repo(client: RegistryClient, repo: str, rows: list[PlannedDeletion], known: set[str],
                pool: ThreadPoolExecutor) -> tuple[dict[str, str], dict[str, str]]:
    """List and resolve ``repo``'s tags again: (tag -> digest now, planned digest -> why it must be skipped).

    A pair is skipped when its set of tags in the registry differs from the plan's: a tag added to it or moved
    onto it (deleting would destroy a tag nobody selected), or a planned tag moved away or gone. An untagged
    manifest planned as an index's child or a removed repository's leftover is skipped too when a tag of its
    repository now names a manifest the inventory has never seen there (``known``): a new index may list it.
    """
    tags = _tags_or_none(client, repo) or []
    listing: dict[str, str] = {}
    for tag, ref in zip(tags, pool.map(lambda tag: client.resolve(repo, tag), tags), strict=True):
        if ref is not None:  # deleted between the listing and the HEAD: it is on no digest
            listing[tag] = ref.digest
    now: dict[str, set[str]] = defaultdict(set)
    for tag, digest in listing.items():
        now[digest].add(tag)
    changed: dict[str, str] = {}
    for row in rows:
        planned, current = set(row.tags), now.get(row.digest, set())
        if planned != current:
            parts = []
            if current - planned:
                parts.append("now also tagged " + ", ".join(sorted(current - planned)))
            if planned - current:
                parts.append("no longer tagged " + ", ".join(sorted(planned - current)))
            changed[row.digest] = "tags changed since the plan: " + "; ".join(parts)
            continue
        if not row.tags and row.reason not in (SIGNATURE, REFERRER):
            new = sorted(set(now) - known)
            if new:
                changed[row.digest] = (
                    f"untagged, and {repo} has a manifest pushed since the plan ({new[0]}) that may list it"
                )
    return listing, changed


def _vanished_tags(client: RegistryClient, repo: str, before: dict[str, str], result: RemovalResult) -> list[Vanished]:
    """Tags of ``repo`` listed right before its DELETEs, not on anything deleted as planned, and gone now."""
    planned_gone = {tag for o in result.deleted if o.row.repo == repo for tag in o.row.tags}
    try:
        after = set(_tags_or_none(client, repo) or [])
    except RegistryError as error:
        log.warning("could not list the tags of %s again after its deletions: %s", repo, error)
        return []
    return [Vanished(repo, tag, digest) for tag, digest in sorted(before.items())
            if tag not in after and tag not in planned_gone]


def _known_digests(engine: Engine, registry_id: int, repos: list[str]) -> dict[str, set[str]]:
    """repo -> every digest the inventory holds in it."""
    found: dict[str, set[str]] = defaultdict(set)
    with engine.connect() as conn:
        for start in range(0, len(repos), BATCH):
            for name, digest in conn.execute(
                select(_repos.c.name, _digests.c.digest)
                .select_from(
                    _repos.join(_repo_digests, _repo_digests.c.repo_id == _repos.c.id).join(
                        _digests, _digests.c.id == _repo_digests.c.digest_id
                    )
                )
                .where(_repos.c.registry_id == registry_id, _repos.c.name.in_(repos[start : start + BATCH]))
            ):
                found[name].add(digest)
    return found


def _tags_or_none(client: RegistryClient, repo: str) -> list[str] | None:
    try:
        return client.tags(repo)
    except RepositoryNotFound:
        return None


def incomplete_message(result: RemovalResult, plan: Plan, fatal: RegdbError | None, *, limit: int = 20) -> str:
    """What was and was not deleted, for a person: the first ``limit`` of each, then where to read the rest."""
    lines = [
        f"tag {v.repo}:{v.tag} (on {v.digest} when verified) vanished during the removal without being "
        "planned: it was moved onto a deleted digest, or deleted, after the verification; the run stopped"
        for v in result.vanished
    ]
    head = (f"removal incomplete: {len(result.deleted)} of {len(plan.rows)} manifests deleted"
            + (f" ({fatal})" if fatal is not None else ""))
    if lines:
        return "\n".join(lines + [head] + _done_and_not_done(result, plan, limit))
    return "\n".join([head] + _done_and_not_done(result, plan, limit))


def interrupted_message(result: RemovalResult, plan: Plan, *, limit: int = 20) -> str:
    return "\n".join([
        f"interrupted: removal run {result.run_id} deleted {len(result.deleted)} of {len(plan.rows)} manifests; "
        "every DELETE sent was recorded"
    ] + _done_and_not_done(result, plan, limit))


def unrecorded_message(error: InventoryError, result: RemovalResult, outcomes: list[Outcome]) -> str:
    lost = [o for o in outcomes if o.outcome == "deleted"]
    names = ", ".join(f"{o.row.repo}@{o.row.digest}" for o in lost[:5]) + (" ..." if len(lost) > 5 else "")
    return (f"{error}; the removal stopped: {len(result.deleted) + len(lost)} manifests deleted, "
            f"{len(lost)} of them not recorded ({names or 'none'}): they stay in-flight in deletions under run "
            f"{result.run_id}, and the next removal asks the registry and records them")


def _done_and_not_done(result: RemovalResult, plan: Plan, limit: int) -> list[str]:
    done = {(o.row.repo, o.row.digest) for o in result.deleted}
    not_deleted = [row for row in plan.rows if (row.repo, row.digest) not in done]
    why = {(o.row.repo, o.row.digest): o for o in result.failed + result.skipped + result.in_flight}
    lines = []
    for o in result.deleted[:limit]:
        lines.append(f"  deleted: {o.row.repo}@{o.row.digest}")
    for row in not_deleted[:limit]:
        known = why.get((row.repo, row.digest))
        detail = f"{known.outcome}: {known.error}" if known is not None else "not attempted"
        lines.append(f"  not deleted: {row.repo}@{row.digest} ({detail})")
    hidden = max(len(result.deleted) - limit, 0) + max(len(not_deleted) - limit, 0)
    if hidden:
        lines.append(f"  ... {hidden} more: SELECT * FROM deletions WHERE run_id = '{result.run_id}'")
    return lines
