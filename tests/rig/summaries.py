"""Generated inventories for the BI tests (tests/test_bi.py): written through regdb's own SnapshotWriter, and the
rules the summary-backed views must match: the views as migration 0002 computed them on the fly, and the
summaries as migration 0008 fills them from nothing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from datetime import datetime, timedelta
from pathlib import Path

from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, text

from regdb.inventory.db import write_transaction
from regdb.inventory.manifests import Child, ManifestInfo
from regdb.inventory.summaries import refresh_summaries
from regdb.inventory.sync import SnapshotWriter
from regdb.registry.media import DOCKER_MANIFEST, OCI_INDEX

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations" / "versions"
SUMMARY_TABLES = ("summary_repos", "summary_repo_blobs", "summary_blobs", "summary_digests", "summary_blob_usage")
ON_THE_FLY_VIEWS = ("digest_usage", "repo_stats", "blob_usage")


def migration(name: str):
    spec = importlib.util.spec_from_file_location(f"regdb_test_{name}", MIGRATIONS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


M0002 = migration("0002_views")
M0008 = migration("0008_bi_summaries")


def _select_of(create_view: str) -> str:
    return create_view.strip().split(" AS\n", 1)[1]


# The views as computed on the fly before the summaries (migration 0002's frozen statements).
REFERENCE = {
    "digest_usage": _select_of(M0002.DIGEST_USAGE_VIEW),
    "repo_stats": _select_of(M0002.REPO_STATS_VIEW),
    "blob_usage": _select_of(M0002.BLOB_USAGE_VIEW),
}


def on_the_fly(sql: str) -> str:
    """The same query with every summary-backed view replaced by its on-the-fly definition."""
    for name, select in REFERENCE.items():
        sql = re.sub(rf"\bFROM {name}\b", f"FROM ({select}) AS {name}", sql)
    return sql


def rows(conn: Connection, sql: str, params=None) -> list[tuple]:
    return [tuple(row) for row in conn.execute(text(sql), params or {})]


def assert_views_match_on_the_fly(conn: Connection) -> None:
    for name in ON_THE_FLY_VIEWS:
        fast, slow = rows(conn, f"SELECT * FROM {name}"), rows(conn, REFERENCE[name])
        assert sorted(fast, key=repr) == sorted(slow, key=repr), name


def summary_snapshot(conn: Connection) -> dict[str, list[tuple]]:
    return {table: sorted(rows(conn, f"SELECT * FROM {table}"), key=repr) for table in SUMMARY_TABLES}


def assert_summaries_equal_recomputation(engine: Engine) -> None:
    """The summaries as kept equal those filled from nothing (migration 0008's statements), in a transaction
    rolled back afterwards; and nothing is left marked dirty."""
    with engine.connect() as conn:
        with conn.begin() as transaction:
            kept = summary_snapshot(conn)
            assert rows(conn, "SELECT repo_id FROM summary_dirty") == []
            for table in SUMMARY_TABLES:
                conn.execute(text(f"DELETE FROM {table}"))
            for statement in M0008.FILL:
                conn.execute(text(statement))
            recomputed = summary_snapshot(conn)
            transaction.rollback()
    assert kept == recomputed


# --- generated inventories --------------------------------------------------------------------------------------


def digest_of(*parts) -> str:
    return "sha256:" + hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


LAYERS = [(digest_of("layer", i), 1000 * (i + 1)) for i in range(6)]  # few, so images share them


def image(seed: str, n: int, layers: list[int]) -> ManifestInfo:
    return ManifestInfo(
        digest=digest_of("manifest", seed, n), media_type=DOCKER_MANIFEST, kind="image", size=500 + n,
        config_digest=digest_of("config", seed, n), config_size=1400 + n,
        config_media_type="application/vnd.docker.container.image.v1+json",
        layers=[LAYERS[i] for i in layers], created=datetime(2024, 1, 1) + timedelta(days=n), architecture="amd64",
        os="linux",
    )


def index(seed: str, n: int, children: list[ManifestInfo]) -> ManifestInfo:
    return ManifestInfo(
        digest=digest_of("index", seed, n), media_type=OCI_INDEX, kind="index", size=300 + n,
        children=[Child(child.digest, "amd64", "linux", None) for child in children],
    )


REPOS = ["a", "b", "c", "d"]

# One repository's content: tag -> image number, and untagged image numbers it also holds.
repo_states = st.fixed_dictionaries({
    "tags": st.dictionaries(st.sampled_from(["1.0", "1.1", "2.0", "latest", "v3"]), st.integers(0, 7), max_size=4),
    "untagged": st.lists(st.integers(0, 7), max_size=2),
})
# A registry's content: some of the repositories; a run is several states in a row (each one sync).
registry_states = st.dictionaries(st.sampled_from(REPOS), repo_states, max_size=4)
images_layers = st.lists(st.lists(st.integers(0, len(LAYERS) - 1), min_size=1, max_size=3), min_size=8, max_size=8)


class Generated:
    """A registry in an inventory, written state after state as a sync writes it (images 6 and 7 are indexes
    over images 0/1 and 2/3)."""

    def __init__(self, engine: Engine, url: str, layers: list[list[int]], seed: str = "shared"):
        self.engine, self.url = engine, url
        self.images = [image(seed, n, layers[n]) for n in range(6)]
        self.images += [index(seed, 6, self.images[0:2]), index(seed, 7, self.images[2:4])]

    def write(self, state: dict) -> None:
        with write_transaction(self.engine) as conn:
            writer = SnapshotWriter(conn, self.url, self.url.split("//", 1)[1])
            known = writer.lookup(info.digest for info in self.images)
            ids = {}
            for info in self.images:
                ids[info.digest] = known.get(info.digest) or writer.store_manifest(info)
            for repo, content in state.items():
                tags = {tag: ids[self.images[n].digest] for tag, n in content["tags"].items()}
                present = set(tags.values()) | {ids[self.images[n].digest] for n in content["untagged"]}
                present |= writer.children_of(present)
                writer.write_repo(repo, tags, present)
            writer.drop_repos(keep=set(state))
            refresh_summaries(conn, writer.registry_id)

    def forget(self, repo: str, n: int) -> None:
        """What a removal records for a deleted manifest: the pair and its tags leave the inventory."""
        with write_transaction(self.engine) as conn:
            registry_id = conn.execute(text("SELECT id FROM registries WHERE url = :u"), {"u": self.url}).scalar()
            repo_id = conn.execute(text("SELECT id FROM repos WHERE registry_id = :r AND name = :n"),
                                   {"r": registry_id, "n": repo}).scalar()
            digest_id = conn.execute(text("SELECT id FROM digests WHERE digest = :d"),
                                     {"d": self.images[n].digest}).scalar()
            if repo_id is None or digest_id is None:
                return
            conn.execute(text("DELETE FROM tags WHERE repo_id = :r AND digest_id = :d"), {"r": repo_id, "d": digest_id})
            conn.execute(text("DELETE FROM repo_digests WHERE repo_id = :r AND digest_id = :d"),
                         {"r": repo_id, "d": digest_id})
            refresh_summaries(conn, registry_id)
