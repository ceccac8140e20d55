"""``regdb listen`` against the real registry: notifications keep the inventory current without any sync.

The registry (Debian's docker-registry, distribution 2.8) is configured with ``notifications.endpoints``
pointing at a ``regdb listen`` process each test starts; pushes are skopeo's or the rig's, pulls skopeo's,
deletes regdb's. Every wait is for a condition (``wait_for``), bounded.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid

import pytest
import requests
from click.testing import CliRunner

from regdb import Inventory, RegistryClient
from regdb.cli import main
from regdb.db import write_transaction
from tests.live_support import Live, skopeo_pull, start_live, wait_for
from tests.rig import Pusher, make_oci_layout, notifications_config, skopeo_copy, start_registry


@pytest.fixture
def live(registry_binary, tmp_path) -> Live:
    setup = start_live(tmp_path / "live")
    yield setup
    setup.stop()


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def synced_state(registry_url: str, path) -> set[tuple[str, str, str]]:
    """What a plain ``regdb sync`` into a fresh inventory records: the reference the listener must equal."""
    with Inventory(path) as inventory:
        inventory.sync(RegistryClient(registry_url))
    with sqlite3.connect(path) as conn:
        return set(conn.execute("SELECT repo, tag, digest FROM images").fetchall())


def repo_digests(live: Live) -> set[tuple[str, str]]:
    return set(live.query(
        "SELECT repos.name, digests.digest FROM repo_digests JOIN repos ON repos.id = repo_digests.repo_id "
        "JOIN digests ON digests.id = repo_digests.digest_id"))


def test_push_move_pull_delete_reach_the_inventory_without_a_sync(live, tmp_path):
    host = live.registry.host
    first = skopeo_copy(make_oci_layout(tmp_path / "a", "v1"), "v1", host, "team/app", "1.0")
    wait_for(lambda: ("team/app", "1.0", first) in live.tags(), "the pushed tag in the inventory")
    # The listener fetched the manifest and its config from the registry, as the sync does.
    assert live.query("SELECT architecture, os, kind FROM digests WHERE digest = ?", first) == [
        ("amd64", "linux", "image")]

    second = skopeo_copy(make_oci_layout(tmp_path / "b", "v1"), "v1", host, "team/app", "1.0")
    wait_for(lambda: ("team/app", "1.0", second) in live.tags(), "the moved tag")
    assert second != first

    for i in range(3):
        skopeo_pull(host, "team/app", "1.0", tmp_path / f"pull{i}")
    wait_for(lambda: live.query("SELECT gets FROM pulls WHERE digest = ?", second) == [(3,)], "three pulls")

    # regdb's own requests are not uses: a sync HEADs every tag, and it must not count.
    assert cli("-reg", live.registry.url, "--db", tmp_path / "other.db", "sync").exit_code == 0
    result = cli("-reg", live.registry.url, "--db", live.db, "remove-tags", "-r", "team/app", "-t", "1.0", "--yes")
    assert result.exit_code == 0, result.output
    wait_for(lambda: live.settled() and ("team/app", second) not in repo_digests(live), "the delete applied")
    assert live.query("SELECT gets, heads FROM pulls WHERE digest = ?", second) == [(3, 0)]
    assert live.query("SELECT count(*) FROM pulls WHERE digest = ?", first) == [(0,)]

    history = live.query("SELECT tag, digest, source, valid_to IS NULL, ended_by FROM tag_history ORDER BY id")
    assert history == [("1.0", first, "event", 0, "event"), ("1.0", second, "event", 0, "event")]
    assert live.tags() == synced_state(live.registry.url, tmp_path / "reference.db") == set()
    assert live.query("SELECT count(*) FROM rejected_events") == [(0,)]
