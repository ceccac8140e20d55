"""The sync against the real registry: the inventory equals what the registry answers, tag for tag."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from regdb import Inventory, RegistryClient
from tests.rig.cli import run
from tests.rig.layout import make_oci_layout, skopeo_copy
from tests.rig.pusher import Pusher


def registry_state(pusher: Pusher, repos=None) -> set[tuple[str, str, str]]:
    """(repo, tag, digest) for every tag, read straight from the registry with the four-type Accept header."""
    state = set()
    for repo in repos if repos is not None else pusher.catalog():
        for tag in pusher.tags(repo) or []:
            state.add((repo, tag, pusher.head_digest(repo, tag)))
    return state


def inventory_state(path, repos=None) -> set[tuple[str, str, str]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT repo, tag, digest FROM images").fetchall()
    return {row for row in rows if repos is None or row[0] in repos}


@pytest.fixture
def mixed_registry(fresh_registry, fresh_pusher, tmp_path):
    """Every kind of image a real registry holds, plus more than 100 repositories and a repo of 120 tags."""
    p = fresh_pusher
    shared = p.push_image("app", "1.0")
    p.tag("app", "latest", shared.digest)  # one digest under two tags
    p.copy("app", shared.digest, "mirror/app", "1.0")  # and in two repositories
    p.push_image("app", "1.1", oci=True)
    p.push_index("multi", "2.0")  # Docker manifest list
    p.push_index("multi", "2.1", oci=True)  # OCI index
    for i in range(101):
        p.push_image(f"many/r{i:03d}", "v1", unique=f"r{i % 7}")
    for i in range(120):
        p.push_image("big", f"1.{i}", unique=f"big{i % 30}")
    layout = make_oci_layout(tmp_path / "layout", "v1")
    skopeo_copy(layout, "v1", fresh_registry.host, "skopeo/app", "1.0")
    return fresh_registry


def test_sync_mirrors_the_registry_tag_for_tag(mixed_registry, fresh_pusher, tmp_path):
    db = tmp_path / "inv.db"
    with Inventory(db) as inventory:
        client = RegistryClient(mixed_registry.url, page_size=40)
        result = inventory.sync(client)
    expected = registry_state(fresh_pusher)
    assert len(expected) == 2 + 1 + 1 + 2 + 101 + 120 + 1
    assert inventory_state(db) == expected
    assert result.repos == 101 + 5
    assert client.stats["catalog"] == 3  # every page's Link followed: 40 + 40 + 26
    assert result.tags == len(expected)


def test_multi_arch_tags_record_the_index_and_its_children(fresh_registry, fresh_pusher, tmp_path):
    docker = fresh_pusher.push_index("multi", "2.0")
    oci = fresh_pusher.push_index("multi", "2.1", oci=True)
    db = tmp_path / "inv.db"
    with Inventory(db) as inventory:
        inventory.sync(RegistryClient(fresh_registry.url))
    with sqlite3.connect(db) as conn:
        tags = dict(conn.execute("SELECT tag, digest FROM images"))
        assert tags == {"2.0": docker.digest, "2.1": oci.digest}
        children = set(conn.execute(
            "SELECT p.digest, c.digest, dc.architecture, dc.os, dc.variant FROM digest_children dc "
            "JOIN digests p ON p.id = dc.parent_id JOIN digests c ON c.id = dc.child_id"
        ))
        assert children == {
            (index.digest, child.digest, arch, os_, variant)
            for index in (docker, oci)
            for (arch, os_, variant), child in index.children.items()
        }
        # The children are manifests present in the repository too (untagged), with their own config facts.
        present = {row[0] for row in conn.execute(
            "SELECT d.digest FROM repo_digests rd JOIN digests d ON d.id = rd.digest_id")}
        assert present == {docker.digest, oci.digest} | {
            c.digest for index in (docker, oci) for c in index.children.values()}
        arch = dict(conn.execute("SELECT digest, architecture FROM digests WHERE kind = 'image'"))
        assert arch[docker.children[("arm64", "linux", "v8")].digest] == "arm64"
        # An index's size is the sum over its children.
        size = conn.execute("SELECT size FROM images WHERE tag = '2.0'").fetchone()[0]
        assert size == sum(
            c.size + c.config_size + sum(s for _, s in c.layers) for c in docker.children.values())


def test_resync_only_lists_and_resolves_tags(fresh_registry, fresh_pusher, tmp_path):
    fresh_pusher.push_image("app", "1.0")
    fresh_pusher.push_index("app", "2.0")
    db = tmp_path / "inv.db"
    client = RegistryClient(fresh_registry.url)
    with Inventory(db) as inventory:
        first = inventory.sync(client)
        # A new repository: each tag is fetched with GET (no HEAD), then the index's two children by
        # digest, and the three image configs.
        assert client.stats["head"] == 0
        assert client.stats["manifest"] == 4 and client.stats["blob"] == 3
        client.stats.clear()
        second = inventory.sync(client)
    assert second.digests_fetched == 0 and first.digests_fetched == 4
    # Nothing changed: no manifest or blob GETs at all, only the catalog, tags/list and one HEAD per tag.
    assert dict(client.stats) == {"ping": 1, "catalog": 1, "tags": 1, "head": 2}


def test_resync_follows_moved_deleted_and_new_tags(fresh_registry, fresh_pusher, tmp_path):
    p = fresh_pusher
    old = p.push_image("app", "1.0")
    p.push_image("app", "1.1")
    gone = p.push_image("gone", "x")
    db = tmp_path / "inv.db"
    with Inventory(db) as inventory:
        inventory.sync(RegistryClient(fresh_registry.url))
        new = p.push_image("app", "1.0")  # the tag moves; the old manifest stays, untagged
        p.push_image("app", "2.0")
        p.delete("gone", gone.digest)  # every tag gone: the repository stays, empty
        inventory.sync(RegistryClient(fresh_registry.url))
    assert inventory_state(db) == registry_state(p)
    with sqlite3.connect(db) as conn:
        app = {row[0] for row in conn.execute(
            "SELECT d.digest FROM repo_digests rd JOIN digests d ON d.id = rd.digest_id "
            "JOIN repos r ON r.id = rd.repo_id WHERE r.name = 'app'")}
        assert old.digest in app and new.digest in app  # the untagged survivor is still known
        assert conn.execute("SELECT count(*) FROM repos WHERE name = 'gone'").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM repo_digests rd JOIN repos r ON r.id = rd.repo_id "
                            "WHERE r.name = 'gone'").fetchone() == (0,)
        statuses = [row[0] for row in conn.execute("SELECT status FROM syncs ORDER BY id")]
    assert statuses == ["ok", "ok"]


def test_untagged_manifest_that_was_deleted_is_forgotten(fresh_registry, fresh_pusher, tmp_path):
    p = fresh_pusher
    old = p.push_image("app", "1.0")
    db = tmp_path / "inv.db"
    with Inventory(db) as inventory:
        inventory.sync(RegistryClient(fresh_registry.url))
        p.push_image("app", "1.0")
        p.delete("app", old.digest)
        inventory.sync(RegistryClient(fresh_registry.url))
    with sqlite3.connect(db) as conn:
        present = {row[0] for row in conn.execute(
            "SELECT d.digest FROM repo_digests rd JOIN digests d ON d.id = rd.digest_id")}
    assert old.digest not in present and len(present) == 1


def test_named_repositories_limit_the_sync(fresh_registry, fresh_pusher, tmp_path):
    fresh_pusher.push_image("a", "1")
    fresh_pusher.push_image("b", "1")
    db = tmp_path / "inv.db"
    result = run("-reg", fresh_registry.url, "--db", db, "sync", "a", "nope")
    assert result.exit_code == 0, result.output
    assert {row[0] for row in inventory_state(db)} == {"a"}
    assert "warning: repository nope not found" in result.output


def test_cli_sync_reports_and_default_db_is_named_after_the_registry(fresh_registry, fresh_pusher, tmp_path,
                                                                     monkeypatch):
    fresh_pusher.push_image("app", "1.0")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REGISTRY", fresh_registry.url)
    result = run("sync")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"synced {fresh_registry.url}: 1 repository, 1 tag, 1 new manifest,")
    expected = f"127_0_0_1_{fresh_registry.port}.db"
    assert (tmp_path / expected).exists()


def test_throwaway_inventory_with_cache_none(fresh_registry, fresh_pusher, tmp_path, monkeypatch):
    fresh_pusher.push_image("app", "1.0")
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    result = run("-reg", fresh_registry.url, "-c", "None", "sync")
    assert result.exit_code == 0, result.output
    assert "1 repository, 1 tag," in result.output
    assert list(workdir.iterdir()) == []  # nothing written to disk


def test_reader_during_a_sync_sees_only_complete_snapshots(fresh_registry, fresh_pusher, tmp_path):
    p = fresh_pusher
    image = p.push_image("app", "1.0")
    for i in range(1, 40):
        p.tag("app", f"1.{i}", image.digest)
    db = tmp_path / "inv.db"
    with Inventory(db) as inventory:
        inventory.sync(RegistryClient(fresh_registry.url))
    for i in range(40, 120):
        p.tag("app", f"1.{i}", image.digest)
    seen, errors, stop = set(), [], threading.Event()

    def read():
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0)
        while not stop.is_set():
            try:
                seen.add(conn.execute("SELECT count(*) FROM images").fetchone()[0])
            except sqlite3.Error as error:  # "database is locked" would land here
                errors.append(str(error))
            time.sleep(0.005)
        conn.close()

    reader = threading.Thread(target=read)
    reader.start()
    try:
        with Inventory(db) as inventory:
            # --rate keeps the write transaction open long enough for the reader to look many times.
            inventory.sync(RegistryClient(fresh_registry.url, rate=100))
        deadline = time.monotonic() + 2
        while 120 not in seen and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        reader.join()
    assert errors == []
    assert seen == {40, 120}


def test_a_registry_dying_mid_sync_keeps_the_old_snapshot(fresh_registry, fresh_pusher, tmp_path, monkeypatch):
    p = fresh_pusher
    image = p.push_image("app", "1.0")
    for i in range(1, 20):
        p.tag("app", f"1.{i}", image.digest)
    db = tmp_path / "inv.db"
    with Inventory(db) as inventory:
        inventory.sync(RegistryClient(fresh_registry.url))
    before = inventory_state(db)
    for i in range(20, 150):
        p.tag("app", f"1.{i}", image.digest)
    # Kill the registry once the sync is resolving tags (not after a guessed delay, which on a loaded machine
    # could fire before the sync started): the first resolve() call is the signal.
    resolving = threading.Event()
    real_resolve = RegistryClient.resolve

    def resolve(self, *args, **kwargs):
        resolving.set()
        return real_resolve(self, *args, **kwargs)

    monkeypatch.setattr(RegistryClient, "resolve", resolve)
    killer = threading.Thread(target=lambda: resolving.wait(60) and fresh_registry.kill())
    killer.start()
    result = run("-reg", fresh_registry.url, "--db", db, "--rate", "100", "sync")
    killer.join()
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"Error: cannot reach registry {fresh_registry.url}")
    assert len(result.output.strip().splitlines()) == 1
    assert inventory_state(db) == before
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert [r[0] for r in conn.execute("SELECT status FROM syncs ORDER BY id")] == ["ok", "failed"]


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGINT"])
def test_a_killed_sync_leaves_the_previous_snapshot(fresh_registry, fresh_pusher, tmp_path, signal_name):
    import signal
    import subprocess
    import sys

    p = fresh_pusher
    image = p.push_image("app", "1.0")
    db = tmp_path / "inv.db"
    with Inventory(db) as inventory:
        inventory.sync(RegistryClient(fresh_registry.url))
    before = inventory_state(db)
    for i in range(1, 150):
        p.tag("app", f"1.{i}", image.digest)
    command = [sys.executable, "-m", "regdb", "-l", "debug", "-reg", fresh_registry.url, "--db", str(db),
               "--rate", "50", "sync"]
    sync = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Wait for the sync to be resolving tags (150 at 50/s: ~3 s), seen as its first tag HEAD on stderr at
    # -l debug: a fixed sleep would, on a loaded machine, interrupt Python while it is still importing.
    seen = wait_for_line(sync.stderr, "HEAD /v2/app/manifests/1.", timeout=60)
    assert sync.poll() is None, (seen, sync.communicate())
    sync.send_signal(getattr(signal, signal_name))
    _, rest = sync.communicate(timeout=30)
    err = seen + rest
    assert sync.returncode == (130 if signal_name == "SIGINT" else -signal.SIGKILL), err
    if signal_name == "SIGINT":  # Ctrl-C: one line, no traceback
        assert "Traceback" not in err
        assert err.strip().splitlines()[-1] == "regdb: interrupted; the inventory keeps its last complete snapshot"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert inventory_state(db) == before
    with Inventory(db) as inventory:  # and the next sync completes
        inventory.sync(RegistryClient(fresh_registry.url))
    assert inventory_state(db) == registry_state(p)


def wait_for_line(stream, needle: str, *, timeout: float) -> str:
    """Read ``stream`` (a child's stderr) until a line containing ``needle``; everything read so far.

    Reads in a thread so that the deadline holds even while the child prints nothing."""
    import queue
    import threading

    lines: "queue.Queue[str | None]" = queue.Queue()

    def pump() -> None:
        for line in iter(stream.readline, ""):
            lines.put(line)
            if needle in line:
                break
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    read = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            raise AssertionError(f"no line with {needle!r} within {timeout} s:\n{''.join(read)}") from None
        if line is None:
            raise AssertionError(f"the stream ended before a line with {needle!r}:\n{''.join(read)}")
        read.append(line)
        if needle in line:
            return "".join(read)
