"""Carrying a removal plan out: verify, delete, record.

3. Verify, right before deleting (``remove``): the tags of every planned repository are listed and resolved
   again; a pair whose set of tags changed since the plan is skipped and reported, never deleted.
4. Delete on a bounded pool, an index's children and a digest's signatures once it is gone; each outcome is
   written to ``deletions`` in the same transaction that takes the pair out of the inventory, so the inventory
   equals the registry after every single deletion.

The library never prints: it returns a ``RemovalResult`` and raises named errors.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from sqlalchemy import (
    Connection,
    Engine,
    delete,
    insert,
    select,
)

from .. import models
from ..client import RegistryClient
from ..db import write_transaction
from ..errors import (
    AuthenticationFailed,
    DeleteDisabled,
    RegdbError,
    RegistryError,
    RemovalIncomplete,
    RepositoryNotFound,
    ScopeRefused,
)
from ..sync import BATCH, utcnow
from ..summaries import refresh_summaries

from .plan import Plan, PlannedDeletion, freed_bytes

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
    outcome: str  # 'deleted', 'skipped' or 'failed'
    http_status: int | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        return {**self.row.as_dict(), "outcome": self.outcome, "http_status": self.http_status, "error": self.error}


@dataclass
class RemovalResult:
    run_id: str
    registry: str
    deleted: list[Outcome] = field(default_factory=list)
    skipped: list[Outcome] = field(default_factory=list)
    failed: list[Outcome] = field(default_factory=list)
    bytes_planned: int = 0
    bytes_freed: int = 0  # what a garbage collection frees after the deletions actually done

    @property
    def complete(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "registry": self.registry,
            "deleted": [o.as_dict() for o in self.deleted],
            "skipped": [o.as_dict() for o in self.skipped],
            "failed": [o.as_dict() for o in self.failed],
            "bytes_planned": self.bytes_planned,
            "bytes_freed": self.bytes_freed,
        }


def new_run_id() -> str:
    return f"{utcnow():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def remove(engine: Engine, client: RegistryClient, plan: Plan, *, jobs: int = 16,
           run_id: str | None = None) -> RemovalResult:
    """Verify the plan against the registry, delete it, record every outcome. See the module docstring.

    Raises ``DeleteDisabled`` / ``ScopeRefused`` when the registry refuses every deletion and nothing was
    deleted, ``RemovalIncomplete`` (with ``.result``) when anything planned and not skipped was not deleted.
    """
    if client.url != plan.registry:
        raise RegdbError(f"this plan is for {plan.registry}, not {client.url}: plan again for that registry")
    run_id = run_id or new_run_id()
    result = RemovalResult(run_id=run_id, registry=plan.registry, bytes_planned=plan.bytes_freed)
    if not plan.rows:
        return result
    recorder = _Recorder(engine, plan, result)
    changed = verify(engine, client, plan, jobs=jobs)
    for row in plan.rows:
        if (row.repo, row.digest) in changed:
            recorder.record([Outcome(row, "skipped", error=changed[(row.repo, row.digest)])])
    fatal: RegdbError | None = None
    with ThreadPoolExecutor(max_workers=max(jobs, 1), thread_name_prefix="regdb-delete") as pool:
        for depth in sorted({row.depth for row in plan.rows}):
            wave = [row for row in plan.rows if row.depth == depth and (row.repo, row.digest) not in changed]
            runnable = []
            skipped = []
            for row in wave:
                blocked = [d for d in row.after if recorder.state.get((row.repo, d)) != "deleted"]
                if blocked:
                    what = "index" if row.reason.startswith("child of") else "subject"
                    skipped.append(Outcome(row, "skipped", error=f"its {what} {blocked[0]} was not deleted"))
                else:
                    runnable.append(row)
            recorder.record(skipped)
            fatal = _delete_wave(pool, max(jobs, 1), client, runnable, recorder)
            if fatal is not None:
                break
    result.bytes_freed = freed_bytes(engine, plan.registry_id, [(o.row.repo, o.row.digest) for o in result.deleted])
    if fatal is not None and not result.deleted:
        raise fatal
    if fatal is not None or result.failed:
        raise RemovalIncomplete(incomplete_message(result, plan, fatal), result=result)
    return result


def _delete_wave(pool: ThreadPoolExecutor, jobs: int, client: RegistryClient, rows: list[PlannedDeletion],
                 recorder: "_Recorder") -> RegdbError | None:
    """Delete ``rows`` concurrently; record outcomes as they come. Returns the error that stops the run, if any.

    At most ``jobs`` DELETEs are handed to the pool at a time, so that a refusal that stops the run stops it
    after the DELETEs in flight, not after everything already queued.
    """
    pending = iter(rows)
    inflight: dict[Future, PlannedDeletion] = {}
    fatal: RegdbError | None = None

    def top_up() -> None:
        while fatal is None and len(inflight) < jobs:
            row = next(pending, None)
            if row is None:
                return
            inflight[pool.submit(_delete_one, client, row)] = row

    top_up()
    while inflight:
        try:
            done, _ = wait(inflight, return_when=FIRST_COMPLETED)
        except KeyboardInterrupt:
            # Interrupted: start nothing new, but record the DELETEs already sent, whatever they answer, so
            # the inventory still equals the registry.
            for future in inflight:
                future.cancel()
            done, _ = wait(inflight)
            recorder.record([f.result()[0] for f in done if not f.cancelled()])
            raise
        outcomes = []
        for future in done:
            inflight.pop(future)
            if future.cancelled():
                continue
            outcome, stop = future.result()
            outcomes.append(outcome)
            if stop is not None and fatal is None:
                # Deletion disabled or the delete scope refused: every other DELETE would be refused the same
                # way. Nothing more is sent; what is in flight is still recorded as it answers.
                fatal = stop
        # Deleted manifests leave the inventory in the same transaction that records them (see _Recorder).
        recorder.record(outcomes)
        top_up()
    return fatal


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
        return Outcome(row, "failed", error.status, str(error)), None
    # 404 MANIFEST_UNKNOWN: already gone (deleted by someone else, or a retried DELETE that had succeeded).
    return Outcome(row, "deleted", status), None


class _Recorder:
    """Writes outcomes to ``deletions`` and, for deleted pairs, takes them out of the inventory, together."""

    def __init__(self, engine: Engine, plan: Plan, result: RemovalResult):
        self.engine = engine
        self.plan = plan
        self.result = result
        self.state: dict[tuple[str, str], str] = {}

    def record(self, outcomes: list[Outcome]) -> None:
        if not outcomes:
            return
        now = utcnow()
        with write_transaction(self.engine) as conn:
            conn.execute(insert(_deletions), [
                {
                    "run_id": self.result.run_id, "at": now, "registry": self.plan.registry, "repo": o.row.repo,
                    "digest": o.row.digest, "tags": ",".join(o.row.tags) or None, "media_type": o.row.media_type,
                    "bytes": o.row.bytes, "reason": o.row.reason, "outcome": o.outcome,
                    "http_status": o.http_status, "error": o.error,
                }
                for o in outcomes
            ])
            for o in outcomes:
                if o.outcome == "deleted":
                    _forget_pair(conn, self.plan.registry_id, o.row.repo, o.row.digest)
            refresh_summaries(conn, self.plan.registry_id)  # the BI views' summaries, in the same transaction
        for o in outcomes:
            self.state[(o.row.repo, o.row.digest)] = o.outcome
            getattr(self.result, o.outcome).append(o)


def _forget_pair(conn: Connection, registry_id: int, repo: str, digest: str) -> None:
    """The registry dropped the manifest and every tag of the repository on it: so does the inventory.

    The ``digests`` row stays: it is content-addressed, may be in other repositories, and is never re-fetched.
    """
    repo_id = select(_repos.c.id).where(_repos.c.registry_id == registry_id, _repos.c.name == repo).scalar_subquery()
    digest_id = select(_digests.c.id).where(_digests.c.digest == digest).scalar_subquery()
    conn.execute(delete(_tags).where(_tags.c.repo_id == repo_id, _tags.c.digest_id == digest_id))
    conn.execute(
        delete(_repo_digests).where(_repo_digests.c.repo_id == repo_id, _repo_digests.c.digest_id == digest_id)
    )


def verify(engine: Engine, client: RegistryClient, plan: Plan, *, jobs: int = 16) -> dict[tuple[str, str], str]:
    """List and resolve the tags of every planned repository again; (repo, digest) -> why it must be skipped.

    A pair is skipped when its set of tags in the registry differs from the plan's: a tag added to it or moved
    onto it (deleting would destroy a tag nobody selected), or a planned tag moved away or gone. An untagged
    manifest planned as an index's child or a removed repository's leftover is skipped too when a tag of its
    repository now names a manifest the inventory has never seen there: a new index may list it.
    """
    repos = plan.repos
    now: dict[str, dict[str, set[str]]] = {repo: defaultdict(set) for repo in repos}
    with ThreadPoolExecutor(max_workers=max(jobs, 1), thread_name_prefix="regdb-verify") as pool:
        listings = dict(zip(repos, pool.map(lambda repo: _tags_or_none(client, repo), repos)))
        lookups = [(repo, tag) for repo in repos for tag in listings[repo] or ()]
        for (repo, tag), ref in zip(lookups, pool.map(lambda pair: client.resolve(*pair), lookups)):
            if ref is not None:  # deleted between the listing and the HEAD: it is on no digest
                now[repo][ref.digest].add(tag)
    known = _known_digests(engine, plan.registry_id, repos)
    changed: dict[tuple[str, str], str] = {}
    for row in plan.rows:
        planned, current = set(row.tags), now[row.repo].get(row.digest, set())
        if planned != current:
            parts = []
            if current - planned:
                parts.append("now also tagged " + ", ".join(sorted(current - planned)))
            if planned - current:
                parts.append("no longer tagged " + ", ".join(sorted(planned - current)))
            changed[(row.repo, row.digest)] = "tags changed since the plan: " + "; ".join(parts)
            continue
        if not row.tags and not row.reason.startswith("signature of"):
            new = sorted(set(now[row.repo]) - known.get(row.repo, set()))
            if new:
                changed[(row.repo, row.digest)] = (
                    f"untagged, and {row.repo} has a manifest pushed since the plan ({new[0]}) that may list it"
                )
    return changed


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
    done = {(o.row.repo, o.row.digest) for o in result.deleted}
    not_deleted = [row for row in plan.rows if (row.repo, row.digest) not in done]
    why = {(o.row.repo, o.row.digest): o for o in result.failed + result.skipped}
    lines = [
        f"removal incomplete: {len(result.deleted)} of {len(plan.rows)} manifests deleted"
        + (f" ({fatal})" if fatal is not None else "")
    ]
    for o in result.deleted[:limit]:
        lines.append(f"  deleted: {o.row.repo}@{o.row.digest}")
    for row in not_deleted[:limit]:
        o = why.get((row.repo, row.digest))
        detail = f"{o.outcome}: {o.error}" if o is not None else "not attempted"
        lines.append(f"  not deleted: {row.repo}@{row.digest} ({detail})")
    hidden = max(len(result.deleted) - limit, 0) + max(len(not_deleted) - limit, 0)
    if hidden:
        lines.append(f"  ... {hidden} more: SELECT * FROM deletions WHERE run_id = '{result.run_id}'")
    return "\n".join(lines)
