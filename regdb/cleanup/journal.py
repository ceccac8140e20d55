"""The deletion journal: ``deletions`` written before each DELETE and after it.

A removal writes one row per planned deletion. Before a DELETE is sent, its row is committed as an *intent*
(outcome ``in-flight``) holding the manifest's bytes, media type and tags; after the answer, the same row is
turned into the outcome (``deleted``, ``failed``) in the transaction that takes a deleted pair out of the
inventory. Intents and outcomes are committed in small batches (at most one batch of concurrent DELETEs), so a
crash, SIGKILL or second Ctrl-C leaves at worst a few ``in-flight`` rows, and the next removal settles them by
asking the registry (``resolve_in_flight``). The bytes are what ``regdb restore RUN_ID`` pushes back.

The write lock is taken and released once before the first DELETE (``check_writable``): an inventory that
cannot be written (read-only volume, full disk, a lock another writer holds) is found before anything is
deleted. The lock is not held through the deletions: a sync or a notification listener may write in between.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from sqlalchemy import Connection, Engine, delete, insert, select, update

from regdb.inventory import models
from regdb.registry.client import RegistryClient
from regdb.inventory.db import write_transaction
from regdb.errors import RegistryError
from regdb.inventory.registries import find_registry
from regdb.inventory.sync import utcnow

IN_FLIGHT = "in-flight"
# The journal keeps each deleted manifest whole. distribution refuses to store a manifest over 4 MiB
# (its maxManifestBodySize), so a bigger one could not be pushed back anyway; such a manifest is not deleted.
MAX_JOURNAL_MANIFEST_BYTES = 4 * 1024 * 1024
# In-flight rows settled per run: each costs one HEAD. A run leaves at most one batch of DELETEs in flight
# (-j, at most 256), so this is many interrupted runs' worth; the rest wait for the next removal.
MAX_RESOLVED_PER_RUN = 10_000

_deletions = models.Deletion.__table__
_repos = models.Repo.__table__
_digests = models.Digest.__table__
_repo_digests = models.RepoDigest.__table__
_tags = models.Tag.__table__


@dataclass(frozen=True)
class Intent:
    """A planned deletion about to be sent, with what the journal keeps of the manifest."""

    repo: str
    digest: str
    tags: tuple[str, ...]
    media_type: str | None
    bytes: int | None
    reason: str | None
    manifest: bytes


@dataclass(frozen=True)
class Resolved:
    """An ``in-flight`` row of an earlier run, settled by asking the registry."""

    run_id: str
    repo: str
    digest: str
    outcome: str  # 'deleted' or 'failed'


def check_writable(engine: Engine) -> None:
    """Take the inventory's write lock and release it: ``InventoryError`` / ``InventoryBusy`` now, before any
    DELETE, rather than after the registry has done them."""
    with write_transaction(engine) as conn:
        # An UPDATE that matches no row still needs a write transaction on SQLite and PostgreSQL alike, so a
        # read-only file fails here and not on the first intent.
        conn.execute(update(_deletions).where(_deletions.c.id == -1).values(outcome=IN_FLIGHT))


def write_intents(engine: Engine, registry: str, run_id: str, intents: list[Intent]) -> list[int]:
    """Commit one intent row per planned DELETE; returns their ids, in order."""
    if not intents:
        return []
    now = utcnow()
    ids = []
    with write_transaction(engine) as conn:
        for each in intents:
            ids.append(conn.execute(insert(_deletions).values(
                run_id=run_id, at=now, intent_at=now, registry=registry, repo=each.repo, digest=each.digest,
                tags=",".join(each.tags) or None, media_type=each.media_type, bytes=each.bytes,
                reason=each.reason, outcome=IN_FLIGHT, manifest=each.manifest,
            )).inserted_primary_key[0])
    return ids


def write_outcome(conn: Connection, row_id: int, outcome: str, http_status: int | None, error: str | None) -> None:
    conn.execute(update(_deletions).where(_deletions.c.id == row_id).values(
        at=utcnow(), outcome=outcome, http_status=http_status, error=error,
    ))


def forget_pair(conn: Connection, registry_id: int, repo: str, digest: str) -> None:
    """The registry dropped the manifest and every tag of the repository on it: so does the inventory, and the
    tags' history ends there.

    The ``digests`` row stays: it is content-addressed, may be in other repositories, and is never re-fetched.
    """
    from regdb.inventory.history import record_tag_history

    repo_id = select(_repos.c.id).where(_repos.c.registry_id == registry_id, _repos.c.name == repo).scalar_subquery()
    digest_id = select(_digests.c.id).where(_digests.c.digest == digest).scalar_subquery()
    tags = conn.execute(select(_tags.c.name).where(_tags.c.repo_id == repo_id, _tags.c.digest_id == digest_id))
    # Where the tags pointed until now, in the transaction that records the deletion (tag_history).
    record_tag_history(conn, registry_id, repo, [(tag, digest, None) for tag in tags.scalars()], source="removal")
    conn.execute(delete(_tags).where(_tags.c.repo_id == repo_id, _tags.c.digest_id == digest_id))
    conn.execute(
        delete(_repo_digests).where(_repo_digests.c.repo_id == repo_id, _repo_digests.c.digest_id == digest_id)
    )


def _registry_id(engine: Engine, client: RegistryClient) -> int | None:
    with engine.connect() as conn:
        return find_registry(conn, client.ref)


def in_flight(engine: Engine, registry: str, *, limit: int = MAX_RESOLVED_PER_RUN) -> list[dict]:
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(
            select(_deletions.c.id, _deletions.c.run_id, _deletions.c.repo, _deletions.c.digest, _deletions.c.tags,
                   _deletions.c.reason)
            .where(_deletions.c.outcome == IN_FLIGHT, _deletions.c.registry == registry)
            .order_by(_deletions.c.id).limit(limit)
        )]


def resolve_in_flight(engine: Engine, client: RegistryClient, *, run_id: str) -> list[Resolved]:
    """Settle the ``in-flight`` rows earlier runs left for this registry: HEAD by digest, gone -> ``deleted``
    (and out of the inventory), present -> ``failed``. A HEAD that fails leaves the row for the next run."""
    rows = in_flight(engine, client.url)
    if not rows:
        return []
    registry_id = _registry_id(engine, client)
    settled: list[tuple[dict, str, str]] = []
    for row in rows:
        try:
            settled.append((row, *_ask(client, row)))
        except RegistryError:
            continue
    resolved = []
    with interrupts_held(), write_transaction(engine) as conn:
        for row, outcome, why in settled:
            conn.execute(update(_deletions).where(_deletions.c.id == row["id"]).values(
                at=utcnow(), outcome=outcome, resolved_by=run_id, error=why,
            ))
            if registry_id is not None and outcome == "deleted":
                forget_pair(conn, registry_id, row["repo"], row["digest"])
            if registry_id is not None and outcome == "untagged":
                repo_id = select(_repos.c.id).where(_repos.c.registry_id == registry_id,
                                                    _repos.c.name == row["repo"]).scalar_subquery()
                conn.execute(delete(_tags).where(_tags.c.repo_id == repo_id, _tags.c.name == row["tags"]))
            resolved.append(Resolved(row["run_id"], row["repo"], row["digest"], outcome))
    return resolved


def _ask(client: RegistryClient, row: dict) -> tuple[str, str]:
    """(outcome, why) of an in-flight row, from the registry as it is now."""
    if (row["reason"] or "").startswith("untag"):
        # An untag's intent: the tag is the thing. Gone: untagged. Anything else (still on the digest, or on a
        # placeholder left half-way) is recorded failed, and untag can be run again.
        ref = client.resolve(row["repo"], row["tags"] or "")
        if ref is None:
            return "untagged", "interrupted before the untag was answered; the tag is gone"
        return "failed", f"interrupted before the untag was answered; the tag names {ref.digest}: untag it again"
    if client.manifest_exists(row["repo"], row["digest"]):
        return "failed", "interrupted before the DELETE was answered; the registry still has it"
    return "deleted", "interrupted before the DELETE was answered; the registry no longer has it"


@contextmanager
def interrupts_held(*, deliver: bool = True) -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) off while the journal is written, so the record of DELETEs already sent is never
    lost to a second Ctrl-C. ``deliver``: raise the held interrupt afterwards (False while a first Ctrl-C is
    already being handled). Only the main thread receives signals; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if held and deliver:
        if callable(previous):
            previous(signal.SIGINT, None)
        elif previous == signal.SIG_DFL:
            raise KeyboardInterrupt
