"""``regdb du`` (issue 17): space per repository, checked against what a real garbage collection frees.

Also pins the registry fact docs/retention.md relies on: ``docker-registry garbage-collect`` removes the
manifest blobs of deleted manifests along with their configs and layers."""

from __future__ import annotations

import json

from tests.rig.cli import run


def du_rows(url: str, db, *args: str) -> dict[str, dict]:
    lines = run("-reg", url, "--db", db, "du", "--format", "ndjson", *args, exit_code=0).stdout.splitlines()
    return {row["repo"]: row for row in map(json.loads, lines)}


def test_du_matches_what_garbage_collection_frees(fresh_registry, fresh_pusher, tmp_path):
    url, db = fresh_registry.url, tmp_path / "inventory.db"
    shared = b"S" * 40_000  # one layer in both repositories
    old = fresh_pusher.push_image("big/app", "1.0", layers=[shared, b"a" * 300_000])
    new = fresh_pusher.push_image("big/app", "2.0", layers=[shared, b"b" * 200_000])
    fresh_pusher.tag("big/app", "latest", new.digest)
    small = fresh_pusher.push_image("small/tool", "1.0", layers=[shared, b"t" * 10_000])
    run("-reg", url, "--db", db, "sync", exit_code=0)

    rows = du_rows(url, db)
    assert list(rows) == ["big/app", "small/tool"]  # most reclaimable first
    app, tool = rows["big/app"], rows["small/tool"]
    assert (app["tags"], app["digests"], tool["tags"]) == (3, 2, 1)

    def image_bytes(pushed, *, layers=True) -> int:
        return pushed.size + pushed.config_size + (sum(size for _, size in pushed.layers) if layers else 0)

    assert app["total_bytes"] == image_bytes(old) + image_bytes(new) - len(shared)
    assert app["unique_bytes"] == app["total_bytes"] - len(shared)
    assert app["reclaimable_bytes"] == app["unique_bytes"]  # nothing deleted yet
    assert tool["unique_bytes"] == image_bytes(small) - len(shared)

    # A deletion not yet collected stays reclaimable for the repository, on top of what it still holds alone.
    run("-reg", url, "--db", db, "remove-tags", "-r", "big/app", "-t", "1.0", "--yes", exit_code=0)
    rows = du_rows(url, db)
    app = rows["big/app"]
    assert app["unique_bytes"] == image_bytes(new) - len(shared)
    assert app["reclaimable_bytes"] == app["unique_bytes"] + image_bytes(old) - len(shared)

    # -r picks repositories; a name the inventory lacks is a warning, not an error.
    result = run("-reg", url, "--db", db, "du", "-r", "small/tool", "nope")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() [0] == "small/tool" and "big/app" not in result.stdout
    assert "repository nope not found" in result.stderr
    table = run("-reg", url, "--db", db, "du", "--format", "table", exit_code=0).stdout.splitlines()
    assert table[0].split() == ["repo", "tags", "digests", "total_bytes", "unique_bytes", "reclaimable_bytes"]
    assert "KiB" in table[2]

    # Removing the repository and collecting frees exactly what du said, manifest blobs included.
    before = fresh_registry.blob_store_bytes()
    run("-reg", url, "--db", db, "remove-repos", "-r", "big/app", "--yes", exit_code=0)
    fresh_registry.stop()
    fresh_registry.garbage_collect()
    assert before - fresh_registry.blob_store_bytes() == app["reclaimable_bytes"]
    fresh_registry.start()
    assert fresh_pusher.get_manifest("small/tool", small.digest)[0] == small.manifest


def test_garbage_collect_removes_deleted_manifests_blobs(fresh_registry, fresh_pusher):
    """distribution's garbage-collect frees a deleted manifest's own blob, not only its config and layers."""
    keep = fresh_pusher.push_image("gc/app", "keep")
    gone = fresh_pusher.push_image("gc/app", "gone")
    manifest_blob = fresh_registry.storage_path / "docker/registry/v2/blobs/sha256" / gone.digest[7:9] / gone.digest[7:]
    assert manifest_blob.exists()
    assert fresh_pusher.delete("gc/app", gone.digest) == 202
    fresh_registry.stop()
    fresh_registry.garbage_collect()
    assert not manifest_blob.exists()
    assert not (manifest_blob.parent.parent / gone.config_digest[7:9] / gone.config_digest[7:]).exists()
    kept = fresh_registry.storage_path / "docker/registry/v2/blobs/sha256" / keep.digest[7:9] / keep.digest[7:]
    assert kept.exists()


def test_du_on_postgresql_matches_sqlite(registry, pusher, repo_name, pg_url, tmp_path):
    shared = b"P" * 5_000
    pusher.push_image(f"{repo_name}/one", "1", layers=[shared, b"1" * 7_000])
    pusher.push_image(f"{repo_name}/two", "1", layers=[shared, b"2" * 3_000])
    repos = [f"{repo_name}/one", f"{repo_name}/two"]
    answers = []
    for db in (tmp_path / "inventory.db", pg_url):
        run("-reg", registry.url, "--db", db, "sync", *repos, exit_code=0)
        answers.append(du_rows(registry.url, db, "-r", *repos))
    assert answers[0] == answers[1]
    assert list(answers[0]) == repos and answers[0][repos[0]]["unique_bytes"] > answers[0][repos[1]]["unique_bytes"]
    assert all(isinstance(row["reclaimable_bytes"], int) for row in answers[1].values())
