"""The registry's and the inventory's state side by side: what the registry itself answers, and what an
inventory file holds, read from outside regdb (plain ``sqlite3`` on a read-only URI, as a BI tool would)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from regdb import Inventory, RegistryClient
from tests.rig.media import ACCEPT_ALL
from tests.rig.pusher import Pusher


def registry_tags(pusher: Pusher, repos) -> set[tuple[str, str, str]]:
    """(repo, tag, digest) for every tag of ``repos``, straight from the registry."""
    return {(repo, tag, pusher.head_digest(repo, tag)) for repo in repos for tag in pusher.tags(repo) or []}


def manifest_present(pusher: Pusher, repo: str, digest: str) -> bool:
    r = pusher.session.head(f"{pusher.base_url}/v2/{repo}/manifests/{digest}", headers={"Accept": ACCEPT_ALL})
    assert r.status_code in (200, 404), r.status_code
    return r.status_code == 200


def inventory_tags(db: Path) -> set[tuple[str, str, str]]:
    with sqlite3.connect(db) as conn:
        return set(conn.execute("SELECT repo, tag, digest FROM images"))


def inventory_manifests(db: Path) -> set[tuple[str, str]]:
    """(repo, digest) of every manifest the inventory holds in a repository, tagged or not."""
    with sqlite3.connect(db) as conn:
        return set(conn.execute(
            "SELECT r.name, d.digest FROM repo_digests rd JOIN repos r ON r.id = rd.repo_id "
            "JOIN digests d ON d.id = rd.digest_id"
        ))


def deletions(db: Path) -> list[dict]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM deletions ORDER BY id")]


def assert_inventory_equals_registry(db: Path, registry_url: str, pusher: Pusher, scratch: Path, *,
                                     repos=None) -> None:
    """The inventory after a removal is what a fresh sync into a second inventory finds, and every manifest it
    still lists is still in the registry (a fresh sync cannot see untagged manifests it never knew).
    ``repos``: compare only those repositories (the others may be stale on purpose)."""
    second = scratch / "second.db"  # may be an empty inventory made beforehand (creating one takes 0.2 s)
    with Inventory(second) as inventory:
        inventory.sync(RegistryClient(registry_url))
    mine, fresh = inventory_tags(db), inventory_tags(second)
    kept, found = inventory_manifests(db), inventory_manifests(second)
    if repos is not None:
        mine, fresh = {t for t in mine if t[0] in repos}, {t for t in fresh if t[0] in repos}
        kept, found = {m for m in kept if m[0] in repos}, {m for m in found if m[0] in repos}
    assert mine == fresh
    assert found <= kept
    gone = [(repo, digest) for repo, digest in kept if not manifest_present(pusher, repo, digest)]
    assert gone == [], "deleted manifests left in the inventory"


def registry_state(pusher, repos) -> list[tuple[str, str, str]]:
    """(repo, tag, digest) of every tag of ``repos``, asked of the registry itself."""
    return sorted((repo, tag, pusher.head_digest(repo, tag)) for repo in repos for tag in pusher.tags(repo) or [])


def snapshot(db: Path) -> dict[str, list]:
    """Everything a reader sees of one registry's state, in a form two snapshots can be compared in."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return {
            "images": sorted(conn.execute("SELECT repo, tag, digest, media_type, size FROM images")),
            "manifests": sorted(conn.execute(
                "SELECT r.name, d.digest FROM repo_digests rd JOIN repos r ON r.id = rd.repo_id "
                "JOIN digests d ON d.id = rd.digest_id")),
            "digests": sorted(conn.execute("SELECT digest, kind, size, total_size FROM digests")),
        }


def syncs(db: Path) -> list[tuple[str, str | None]]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return list(conn.execute("SELECT status, error FROM syncs ORDER BY id"))


def integrity(db: Path) -> str:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
