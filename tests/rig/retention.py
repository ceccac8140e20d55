"""Helpers for the retention, policy and untag tests: build times relative to now, indexes of chosen children,
and placeholders left in a registry's storage (the OCI 1.1 proxy is in http_proxy.py)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from regdb import Inventory, RegistryClient
from regdb.cleanup.untag import PLACEHOLDER_ANNOTATION
from tests.rig.media import OCI_INDEX, canonical_json
from tests.rig.pusher import Pushed, Pusher


def ago(days: float) -> str:
    """An image config ``created`` this many days back, as build tools write it."""
    when = datetime.now(timezone.utc) - timedelta(days=days)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def synced(url: str, db: Path) -> Inventory:
    inventory = Inventory(db)
    inventory.sync(RegistryClient(url))
    return inventory


def push_index_of(pusher: Pusher, repo: str, tag: str | None, children: list[Pushed]) -> str:
    """An OCI index over images already pushed to ``repo`` (each child's own build time is kept)."""
    body = canonical_json({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": child.media_type, "size": child.size, "digest": child.digest,
             "platform": {"architecture": f"arch{i}", "os": "linux"}}
            for i, child in enumerate(children)
        ],
    })
    return pusher.put_manifest(repo, tag or "sha256:" + hashlib.sha256(body).hexdigest(), body, OCI_INDEX)


def selected(selection) -> dict[str, tuple[str, ...]]:
    """digest -> tags of a Selection (one repository)."""
    return {item.digest: item.tags for item in selection}


def live_placeholders(storage: Path, repo: str) -> list[str]:
    """Digests of manifests in ``repo`` that regdb's untag made and that the registry still serves: the
    repository's revision links (a deleted manifest loses its link) whose blob carries our annotation."""
    base = storage / "docker" / "registry" / "v2"
    revisions = base / "repositories" / repo / "_manifests" / "revisions" / "sha256"
    found = []
    for link in revisions.glob("*/link") if revisions.exists() else []:
        digest = link.read_text().strip()
        hexpart = digest.split(":", 1)[1]
        data = base / "blobs" / "sha256" / hexpart[:2] / hexpart / "data"
        try:
            annotations = json.loads(data.read_bytes()).get("annotations") or {}
        except (OSError, ValueError):
            continue
        if PLACEHOLDER_ANNOTATION in annotations:
            found.append(digest)
    return found


def populate(conn, registry_id: int | None, repos: dict[str, dict[str, str]], created: dict[str, object],
             untagged: dict[str, list[str]] | None = None) -> int:
    """Write a snapshot with plain inserts: ``repos`` = {repo: {tag: label}}, ``created`` = {label: datetime or
    None}, ``untagged`` = {repo: [labels present without a tag]}. Each label is one image manifest (digest =
    sha256 of the label). Returns the registry id."""
    from sqlalchemy import insert, select

    from regdb.inventory import models
    from regdb.inventory.sync import utcnow
    from regdb.versions import version_key

    if registry_id is None:
        registry_id = conn.execute(insert(models.Registry.__table__).values(
            url="https://registry.test", name="registry.test", last_synced_at=utcnow())).inserted_primary_key[0]
    digests = models.Digest.__table__
    untagged = untagged or {}
    labels = sorted({label for tags in repos.values() for label in tags.values()}
                    | {label for extra in untagged.values() for label in extra})
    if not labels:
        return registry_id
    conn.execute(insert(digests), [
        dict(digest="sha256:" + hashlib.sha256(label.encode()).hexdigest(),
             media_type="application/vnd.docker.distribution.manifest.v2+json", kind="image", size=100,
             total_size=1000, created=created.get(label), fetched_at=utcnow())
        for label in labels
    ])
    ids = dict(conn.execute(select(digests.c.digest, digests.c.id)).all())
    for repo, tags in repos.items():
        repo_id = conn.execute(insert(models.Repo.__table__).values(registry_id=registry_id, name=repo)
                               ).inserted_primary_key[0]
        present = set(tags.values()) | set(untagged.get(repo, ()))
        digest_of = {label: ids["sha256:" + hashlib.sha256(label.encode()).hexdigest()] for label in present}
        if tags:
            conn.execute(insert(models.Tag.__table__), [
                dict(repo_id=repo_id, name=tag, digest_id=digest_of[label], version_key=version_key(tag))
                for tag, label in tags.items()
            ])
        if present:
            conn.execute(insert(models.RepoDigest.__table__), [
                dict(repo_id=repo_id, digest_id=digest_id) for digest_id in sorted(set(digest_of.values()))
            ])
    return registry_id
