"""``regdb restore RUN_ID`` against the real registry, and the garbage-collection hazards the README warns about.

A restore after a removal must make the registry answer exactly as before it: every tag on the same digest,
every manifest (index children, signatures) back with the same bytes. After a garbage collection the blobs are
gone, and restore must refuse, naming what cannot come back, and push nothing.
"""

from __future__ import annotations

import json
import subprocess
from contextlib import closing

import requests

from regdb import Inventory, RegistryClient
from regdb.cleanup.plan import TagQuery
from regdb.cleanup.restore import plan_restore, restore
from tests.rig.cli import run
from tests.rig.media import ACCEPT_ALL, DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST, canonical_json
from tests.rig.registry import REGISTRY_BINARY
from tests.rig.state import assert_inventory_equals_registry, deletions, manifest_present


def answers(p, repos, digests) -> dict:
    """What the registry answers: every tag of ``repos`` with its digest, and the bytes of each digest."""
    state = {(repo, tag): p.head_digest(repo, tag) for repo in repos for tag in p.tags(repo) or []}
    for repo, digest in digests:
        response = p.session.get(f"{p.base_url}/v2/{repo}/manifests/{digest}", headers={"Accept": ACCEPT_ALL})
        state[(repo, digest)] = response.content if response.status_code == 200 else response.status_code
    return state


def populate(p):
    """app: two old releases (one signed) and 2.0, which stays; multi: an index with two untagged children."""
    old = [p.push_image("app", f"1.{minor}") for minor in range(2)]
    p.tag("app", "stable", old[1].digest)
    signature = p.push_cosign_signature("app", old[0].digest)
    kept = p.push_image("app", "2.0")
    index = p.push_index("multi", "v1", oci=True)
    every = [("app", image.digest) for image in old + [kept]] + [("app", signature), ("multi", index.digest)]
    every += [("multi", child.digest) for child in index.children.values()]
    return old, kept, index, every


def remove(url, db) -> str:
    result = run("-reg", url, "--db", db, "remove-tags", "--yes", "--format", "json", "-r", "app", "multi", "-t", "<2",
                 "stable")
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert len(outcome["deleted"]) == 6  # two releases, a signature, an index and its two children
    return outcome["run_id"]


def test_restore_makes_the_registry_answer_exactly_as_before(fresh_registry, fresh_pusher, tmp_path):
    p = fresh_pusher
    old, kept, index, every = populate(p)
    db = tmp_path / "inv.db"
    before = answers(p, ["app", "multi"], every)
    run_id = remove(fresh_registry.url, db)
    assert answers(p, ["app", "multi"], every) != before
    assert p.tags("app") == ["2.0"]

    dry = run("-reg", fresh_registry.url, "--db", db, "restore", run_id, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.output.strip().endswith("6 manifests to push back; dry run: nothing pushed")
    assert p.tags("app") == ["2.0"]

    result = run("-reg", fresh_registry.url, "--db", db, "restore", run_id)
    assert result.exit_code == 0, result.output
    assert f"restored 6 manifests and 5 tags of run {run_id}" in result.output
    assert answers(p, ["app", "multi"], every) == before
    assert {r["restored_by"] is not None for r in deletions(db)} == {True}
    assert_inventory_equals_registry(db, fresh_registry.url, p, tmp_path)

    again = run("-reg", fresh_registry.url, "--db", db, "restore", run_id)  # everything is back: nothing left to push
    assert again.exit_code == 0 and "0 manifests to push back" in again.output, again.output


def test_after_garbage_collection_restore_refuses_naming_what_cannot_come_back(fresh_registry, fresh_pusher,
                                                                                tmp_path):
    p = fresh_pusher
    old, kept, index, every = populate(p)
    db = tmp_path / "inv.db"
    run_id = remove(fresh_registry.url, db)
    fresh_registry.stop()
    fresh_registry.garbage_collect()
    fresh_registry.start()
    after_gc = answers(p, ["app", "multi"], every)

    result = run("-reg", fresh_registry.url, "--db", db, "restore", run_id)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith(f"Error: run {run_id} cannot be restored, nothing pushed: ")
    for image in old:
        assert f"app@{image.digest} (blob {image.config_digest} is gone: garbage-collected?)" in lines[0]
    for child in index.children.values():
        assert f"multi@{child.digest} (blob " in lines[0]
    assert answers(p, ["app", "multi"], every) == after_gc  # nothing pushed, not even what could come back


def test_restore_does_not_move_a_tag_pushed_again_since(fresh_registry, fresh_pusher, tmp_path):
    p = fresh_pusher
    old, kept, index, every = populate(p)
    db = tmp_path / "inv.db"
    run_id = remove(fresh_registry.url, db)
    rebuilt = p.push_image("app", "1.0")
    result = run("-reg", fresh_registry.url, "--db", db, "restore", run_id)
    assert result.exit_code == 1, result.output
    assert (f"these tags were pushed again since the removal and name another manifest: app:1.0 (now "
            f"{rebuilt.digest}, was {old[0].digest})") in result.output
    assert p.head_digest("app", "1.0") == rebuilt.digest and not manifest_present(p, "app", old[1].digest)


def test_the_journal_and_restore_on_postgresql(fresh_registry, fresh_pusher, pg_url):
    """The manifest bytes are a BYTEA there; intents, outcomes and restored_by are the same statements."""
    p = fresh_pusher
    old, kept, index, every = populate(p)
    before = answers(p, ["app", "multi"], every)
    with Inventory(pg_url) as inventory, closing(RegistryClient(fresh_registry.url)) as client:
        inventory.sync(client)
        result = inventory.remove(client, TagQuery(["app", "multi"], tags=["<2", "stable"]))
        assert len(result.deleted) == 6 and p.tags("app") == ["2.0"]
        plan = plan_restore(inventory.engine, client, result.run_id)
        assert len(plan.items) == 6
        restored = restore(inventory.engine, client, plan)
        assert len(restored.pushed) == 6 and len(restored.tags) == 5
    assert answers(p, ["app", "multi"], every) == before


def test_restore_of_an_unknown_run_is_one_line(fresh_registry, tmp_path):
    db = tmp_path / "inv.db"
    result = run("-reg", fresh_registry.url, "--db", db, "restore", "20990101T000000Z-00000000")
    assert result.exit_code == 1 and result.output == f"Error: no inventory {db}: restore reads the removal's " \
        "journal from it\n"
    assert not db.exists()
    assert run("-reg", fresh_registry.url, "--db", db, "sync").exit_code == 0
    result = run("-reg", fresh_registry.url, "--db", db, "restore", "20990101T000000Z-00000000")
    assert result.exit_code == 1
    assert result.output.startswith("Error: no removal run 20990101T000000Z-00000000 for "), result.output


# --- the garbage-collection hazards (README: "Garbage collection") ---------------------------------------------


def test_gc_delete_untagged_also_deletes_the_untagged_children_of_a_tagged_index(fresh_registry, fresh_pusher):
    """distribution 2.8: `garbage-collect --delete-untagged` treats an index's children as untagged manifests
    and deletes them, though the index that lists them is tagged: multi:v1 then fails to pull."""
    p = fresh_pusher
    index = p.push_index("multi", "v1")
    fresh_registry.stop()
    fresh_registry.garbage_collect(delete_untagged=True)
    fresh_registry.start()
    assert p.head_digest("multi", "v1") == index.digest  # the index is still there and tagged ...
    for child in index.children.values():
        assert not manifest_present(p, "multi", child.digest)  # ... but no platform can be pulled


def test_gc_on_a_live_registry_destroys_a_push_in_progress(fresh_registry, fresh_pusher):
    """Collection must run with the registry stopped or read-only: blobs uploaded by a push whose manifest is
    not yet written are unreferenced, so a collection in between deletes them and the push fails."""
    p = fresh_pusher
    config = canonical_json({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    layer = b"a layer uploaded while the collection runs"
    config_digest, layer_digest = p.push_blob("late", config), p.push_blob("late", layer)
    done = subprocess.run([REGISTRY_BINARY, "garbage-collect", str(fresh_registry.config_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    manifest = canonical_json({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": len(config), "digest": config_digest},
        "layers": [{"mediaType": DOCKER_LAYER, "size": len(layer), "digest": layer_digest}],
    })
    response = requests.put(f"{fresh_registry.url}/v2/late/manifests/1.0", data=manifest,
                            headers={"Content-Type": DOCKER_MANIFEST}, timeout=10)
    assert response.status_code == 400 and "MANIFEST_BLOB_UNKNOWN" in response.text, response.text
