"""Undoing a removal run: push the manifests the journal kept back, children before their index, then the tags.

A registry's DELETE of a manifest removes the manifest from the repository, not its blobs: the config and
layers stay in the blob store until the registry's garbage collection runs. So until then, pushing the exact
bytes the journal kept (``deletions.manifest``) brings the manifest back under the same digest, and pushing
them again by tag re-points each tag it had. ``plan_restore`` checks everything first and refuses, pushing
nothing, when a run cannot come back whole: an image whose config or layer blob is gone (collected), an index
whose child is neither restored with it nor in the registry, or a tag that now names another manifest (someone
pushed it since: regdb does not move it back over their push).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import quote

from sqlalchemy import Engine, select, update

from regdb.inventory import models
from regdb.registry.client import RegistryClient
from regdb.inventory.db import write_transaction
from regdb.errors import RegistryError, RestoreRefused
from regdb.cleanup import journal
from regdb.cleanup.journal import interrupts_held

_deletions = models.Deletion.__table__

# How many problems a refusal names; the rest are counted.
SHOWN = 20


@dataclass(frozen=True)
class RestoreItem:
    """One manifest of the run to push back into ``repo``, with the tags it had there."""

    repo: str
    digest: str
    media_type: str
    tags: tuple[str, ...]
    manifest: bytes
    row_id: int
    present: bool  # the registry has it again already (pushed back since): only its tags are re-pointed

    def as_dict(self) -> dict:
        return {"repo": self.repo, "digest": self.digest, "media_type": self.media_type, "tags": list(self.tags),
                "present": self.present}


@dataclass
class RestorePlan:
    run_id: str  # the removal run to undo
    registry: str
    items: list[RestoreItem]  # in push order: children and subjects before what refers to them

    def as_dict(self) -> dict:
        return {"run_id": self.run_id, "registry": self.registry, "manifests": [i.as_dict() for i in self.items]}


@dataclass
class RestoreResult:
    run_id: str  # this restore's own run id (``deletions.restored_by``)
    restored_run: str
    pushed: list[RestoreItem] = field(default_factory=list)
    tags: list[tuple[str, str, str]] = field(default_factory=list)  # (repo, tag, digest) re-pointed

    def as_dict(self) -> dict:
        return {"run_id": self.run_id, "restored_run": self.restored_run,
                "pushed": [i.as_dict() for i in self.pushed],
                "tags": [{"repo": r, "tag": t, "digest": d} for r, t, d in self.tags]}


def plan_restore(engine: Engine, client: RegistryClient, run_id: str) -> RestorePlan:
    """What restoring ``run_id`` pushes, checked against the registry; ``RestoreRefused`` if it cannot."""
    journal.resolve_in_flight(engine, client, run_id=f"restore-of-{run_id}")
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(
            select(_deletions.c.id, _deletions.c.repo, _deletions.c.digest, _deletions.c.tags,
                   _deletions.c.media_type, _deletions.c.manifest, _deletions.c.outcome, _deletions.c.restored_by)
            .where(_deletions.c.run_id == run_id, _deletions.c.registry == client.url)
            .order_by(_deletions.c.id)
        )]
    if not rows:
        raise RestoreRefused(f"no removal run {run_id} for {client.url} in the inventory "
                             "(SELECT DISTINCT run_id FROM deletions lists the runs)")
    deleted = [r for r in rows if r["outcome"] == "deleted" and r["restored_by"] is None]
    unkept = [r for r in deleted if r["manifest"] is None]
    if unkept:
        # Deleted by a regdb older than the journal, or found already gone: there are no bytes to push.
        raise RestoreRefused(_listing(
            f"run {run_id} cannot be restored: the journal has no bytes for", unkept,
            lambda r: f"{r['repo']}@{r['digest']}"))
    items = _checked_items(client, run_id, deleted)
    return RestorePlan(run_id=run_id, registry=client.url, items=items)


def _checked_items(client: RegistryClient, run_id: str, rows: list[dict]) -> list[RestoreItem]:
    in_run = {(r["repo"], r["digest"]) for r in rows}
    items: list[RestoreItem] = []
    gone: list[str] = []
    moved: list[str] = []
    blob_present: dict[tuple[str, str], bool] = {}
    for r in rows:
        repo, digest, body = r["repo"], r["digest"], bytes(r["manifest"])
        tags = tuple(t for t in (r["tags"] or "").split(",") if t)
        present = client.manifest_exists(repo, digest)
        if not present:
            for child in _children(body):
                if (repo, child) not in in_run and not client.manifest_exists(repo, child):
                    gone.append(f"{repo}@{digest} (its child {child} is not in the registry)")
            for blob in _blobs(body):
                key = (repo, blob)
                if key not in blob_present:
                    blob_present[key] = _blob_exists(client, repo, blob)
                if not blob_present[key]:
                    gone.append(f"{repo}@{digest} (blob {blob} is gone: garbage-collected?)")
                    break
        for tag in tags:
            ref = client.resolve(repo, tag)
            if ref is not None and ref.digest != digest:
                moved.append(f"{repo}:{tag} (now {ref.digest}, was {digest})")
        media_type = r["media_type"] or _body_media_type(body)
        items.append(RestoreItem(repo, digest, media_type, tags, body, r["id"], present))
    if gone:
        raise RestoreRefused(_listing(f"run {run_id} cannot be restored, nothing pushed: "
                                      "the registry no longer has what these need:", gone, str))
    if moved:
        raise RestoreRefused(_listing(f"run {run_id} not restored, nothing pushed: these tags were pushed again "
                                      "since the removal and name another manifest:", moved, str))
    return _push_order(items)


def restore(engine: Engine, client: RegistryClient, plan: RestorePlan, *, run_id: str | None = None) -> RestoreResult:
    """Push ``plan`` (``plan_restore``) back; every restored row gets ``restored_by``; the repositories are then
    synced so the inventory equals the registry again."""
    from regdb.inventory.sync import sync_registry
    from regdb.cleanup.execute import new_run_id

    result = RestoreResult(run_id=run_id or new_run_id(), restored_run=plan.run_id)
    try:
        for item in plan.items:
            if not item.present:
                client.put_manifest(item.repo, item.digest, item.manifest, item.media_type)
            result.pushed.append(item)
        for item in plan.items:
            for tag in item.tags:
                client.put_manifest(item.repo, tag, item.manifest, item.media_type)
                result.tags.append((item.repo, tag, item.digest))
    finally:
        if result.pushed:
            with interrupts_held(), write_transaction(engine) as conn:
                conn.execute(update(_deletions).where(_deletions.c.id.in_([i.row_id for i in result.pushed]))
                             .values(restored_by=result.run_id))
    repos = list(dict.fromkeys(item.repo for item in plan.items))
    if repos:
        sync_registry(engine, client, repos=repos)
    return result


def _push_order(items: list[RestoreItem]) -> list[RestoreItem]:
    """Children before their index, subjects before their referrers: a registry refuses an index whose
    children it does not have (distribution: MANIFEST_BLOB_UNKNOWN)."""
    pending = {(i.repo, i.digest): i for i in items}
    ordered: list[RestoreItem] = []
    while pending:
        ready = [key for key, item in pending.items()
                 if all((item.repo, d) not in pending or (item.repo, d) == key for d in _refers_to(item.manifest))]
        if not ready:  # a cycle cannot happen with content addresses; push the rest as they come
            ready = list(pending)
        for key in ready:
            ordered.append(pending.pop(key))
    return ordered


def _document(body: bytes) -> dict:
    try:
        document = json.loads(body)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _children(body: bytes) -> list[str]:
    manifests = _document(body).get("manifests")
    if not isinstance(manifests, list):
        return []
    return [m["digest"] for m in manifests if isinstance(m, dict) and isinstance(m.get("digest"), str)]


def _blobs(body: bytes) -> list[str]:
    document = _document(body)
    found = []
    config = document.get("config")
    if isinstance(config, dict) and isinstance(config.get("digest"), str):
        found.append(config["digest"])
    layers = document.get("layers")
    if isinstance(layers, list):
        found.extend(layer["digest"] for layer in layers
                     if isinstance(layer, dict) and isinstance(layer.get("digest"), str))
    return found


def _refers_to(body: bytes) -> list[str]:
    subject = _document(body).get("subject")
    digests = _children(body)
    if isinstance(subject, dict) and isinstance(subject.get("digest"), str):
        digests.append(subject["digest"])
    return digests


def _blob_exists(client: RegistryClient, repo: str, digest: str) -> bool:
    path = f"/v2/{quote(repo, safe='/')}/blobs/{digest}"
    response = client.request("HEAD", path, kind="blob")  # "blob": storage redirects are followed
    if response.status_code == 200:
        return True
    if response.status_code == 404:
        return False
    raise RegistryError(f"HEAD {path}: registry answered {response.status_code}", status=response.status_code)


def _body_media_type(body: bytes) -> str:
    media_type = _document(body).get("mediaType")
    return media_type if isinstance(media_type, str) else "application/vnd.oci.image.manifest.v1+json"


def _listing(head: str, problems: list, show) -> str:
    names = [show(p) for p in problems[:SHOWN]]
    more = f" and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
    return f"{head} {'; '.join(names)}{more}"
