"""remove-tags / remove-repos end to end against a real registry: what was selected is gone, everything else
survives, the inventory equals the registry, and a garbage collection frees what the plan said.

Every test that deletes runs its own registry (`fresh_registry`)."""

from __future__ import annotations

import json

import pytest

from tests.rig.cli import run
from tests.rig.http_proxy import FaultyProxy
from tests.rig.pusher import Pusher
from tests.rig.registry import start_registry
from tests.rig.state import (
    assert_inventory_equals_registry,
    deletions,
    inventory_manifests,
    inventory_tags,
    manifest_present,
    registry_tags,
)


def sync(url, db):
    result = run("-reg", url, "--db", db, "sync")
    assert result.exit_code == 0, result.output


@pytest.fixture
def app(fresh_registry, fresh_pusher, tmp_path):
    """One repository with every kind of tag a removal must tell apart, synced into an inventory."""
    p = fresh_pusher
    images = {
        "shared": p.push_image("app", "1.1"),  # also tagged `stable`, which is not selected
        "selected": p.push_image("app", "1.2"),
        "excluded": p.push_image("app", "1.3"),
        "late": p.push_image("app", "1.4"),  # gets a tag after the sync
        "newer": p.push_image("app", "2.1"),
    }
    p.tag("app", "stable", images["shared"].digest)
    signature = p.push_cosign_signature("app", images["selected"].digest)
    db = tmp_path / "inv.db"
    sync(fresh_registry.url, db)
    return fresh_registry, p, db, images, signature


def test_remove_tags_deletes_the_selection_and_nothing_else(app, tmp_path):
    registry, p, db, images, signature = app
    before = registry_tags(p, ["app"])
    manifests = images["selected"].size + len(p.get_manifest("app", signature)[0])
    # Pushed after the last sync: the inventory still thinks 1.4 is alone on its digest.
    p.tag("app", "hotfix", images["late"].digest)

    result = run("-reg", registry.url, "--db", db, "remove-tags", "--yes", "-r", "app", "-t", "<2", "-x", "1.3",
                 "--format", "json")
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    removed = {(row["repo"], row["digest"], tuple(row["tags"]), row["reason"], row["parent"])
               for row in outcome["deleted"]}
    sig_tag = "sha256-" + images["selected"].digest.split(":")[1] + ".sig"
    assert removed == {
        ("app", images["selected"].digest, ("1.2",), "selected", None),
        ("app", signature, (sig_tag,), "signature", images["selected"].digest),
    }
    assert outcome["skipped"] == [] and outcome["failed"] == []

    after = registry_tags(p, ["app"])
    assert after == before - {("app", "1.2", images["selected"].digest), ("app", sig_tag, signature)} | {
        ("app", "hotfix", images["late"].digest)
    }
    assert not manifest_present(p, "app", images["selected"].digest)
    assert not manifest_present(p, "app", signature)
    assert_inventory_equals_registry(db, registry.url, p, tmp_path)
    recorded = deletions(db)
    assert {(r["digest"], r["outcome"], r["http_status"]) for r in recorded} == {
        (images["selected"].digest, "deleted", 202),
        (signature, "deleted", 202),
    }
    assert {r["run_id"] for r in recorded} == {outcome["run_id"]}

    # The bytes promised are the bytes a garbage collection frees, give or take the manifests themselves.
    planned = outcome["bytes_freed"]
    assert planned == outcome["bytes_planned"] > 0
    store = registry.blob_store_bytes()
    registry.stop()
    registry.garbage_collect()
    shrunk = store - registry.blob_store_bytes()
    assert abs(shrunk - planned) <= manifests, (shrunk, planned)


def test_text_output_shows_the_plan_rows_and_a_summary(app):
    registry, p, db, images, signature = app
    result = run("-reg", registry.url, "--db", db, "remove-tags", "--yes", "-r", "app", "-t", "1.2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["repo", "digest", "tags", "media_type", "reason", "bytes"]
    assert lines[2].split()[:5] == ["app", images["selected"].digest, "1.2", images["selected"].media_type,
                                     "selected"]
    assert lines[3].split()[:3] == ["app", signature, "sha256-" + images["selected"].digest[7:] + ".sig"]
    assert lines[4].startswith("2 manifests in 1 repository; a garbage collection would then free ")
    assert lines[5].startswith("deleted 2, skipped 0, failed 0 (run ")
    assert p.tags("app") == ["1.1", "1.3", "1.4", "2.1", "stable"]


def test_dry_run_deletes_nothing(app):
    registry, p, db, images, signature = app
    before = registry_tags(p, ["app"])
    result = run("-reg", registry.url, "--db", db, "remove-tags", "-r", "app", "-t", "<2", "--dry-run", "--format",
                 "json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert {row["digest"] for row in plan["rows"]} == {  # not `shared`: `stable` is not selected
        images["selected"].digest, signature, images["excluded"].digest, images["late"].digest
    }
    assert plan["bytes_freed"] > 0
    text = run("-reg", registry.url, "--db", db, "remove-tags", "-r", "app", "-t", "<2", "--dry-run")
    assert text.exit_code == 0, text.output
    assert text.stdout.rstrip().endswith("dry run: nothing deleted")
    assert registry_tags(p, ["app"]) == before
    assert deletions(db) == []


def test_on_a_terminal_regdb_asks_first(app, monkeypatch):
    registry, p, db, images, signature = app
    monkeypatch.setattr("regdb.cli.removal.stdin_is_tty", lambda: True)
    before = registry_tags(p, ["app"])
    declined = run("-reg", registry.url, "--db", db, "remove-tags", "-r", "app", "-t", "1.2", input="n\n")
    assert declined.exit_code == 1, declined.output
    assert "Delete the 2 manifests above from " in declined.output
    assert registry_tags(p, ["app"]) == before and deletions(db) == []

    accepted = run("-reg", registry.url, "--db", db, "remove-tags", "-r", "app", "-t", "1.2", input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert ("app", "1.2", images["selected"].digest) not in registry_tags(p, ["app"])

    # --yes: no question even on a terminal.
    skipped = run("-reg", registry.url, "--db", db, "remove-tags", "-r", "app", "-t", "2.1", "--yes")
    assert skipped.exit_code == 0, skipped.output
    assert "Delete the" not in skipped.output
    assert "2.1" not in p.tags("app")


def test_a_digest_shared_by_two_selected_repositories_goes_from_both(fresh_registry, fresh_pusher, tmp_path):
    p = fresh_pusher
    shared = p.push_image("team/a", "1.1")
    p.copy("team/a", shared.digest, "team/b", "1.1")
    p.copy("team/a", shared.digest, "team/c", "keep")
    own = p.push_image("team/b", "1.2")
    db = tmp_path / "inv.db"
    sync(fresh_registry.url, db)

    # team/c also holds the digest: naming only a and b is an intersection, and nothing is deleted.
    refused = run("-reg", fresh_registry.url, "--db", db, "remove-tags", "--yes", "-r", "team/a", "team/b", "-t", "1.1")
    assert refused.exit_code == 1, refused.output
    assert "team/c" in refused.output
    assert manifest_present(p, "team/a", shared.digest) and manifest_present(p, "team/b", shared.digest)

    result = run("-reg", fresh_registry.url, "--db", db, "--no-raise-intersecting-repo", "remove-tags", "--yes", "-r",
                 "team/a", "team/b", "-t", "1.1")
    assert result.exit_code == 0, result.output
    assert "nothing to remove" in result.output  # dropped, as the option says, rather than half-deleted
    as_json = run("-reg", fresh_registry.url, "--db", db, "--no-raise-intersecting-repo", "remove-tags", "--yes", "-r",
                  "team/a", "team/b", "-t", "1.1", "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    assert {k: v for k, v in json.loads(as_json.stdout).items() if k not in ("run_id", "registry")} == {
        "deleted": [], "skipped": [], "failed": [], "in_flight": [], "vanished": [], "resolved": [],
        "bytes_planned": 0, "bytes_freed": 0
    }

    result = run("-reg", fresh_registry.url, "--db", db, "remove-tags", "--yes", "-r", "team/a", "team/b", "team/c",
                 "-t", "1.1", "--format", "json")
    assert result.exit_code == 0, result.output
    assert sorted((row["repo"], row["digest"]) for row in json.loads(result.stdout)["deleted"]) == [
        ("team/a", shared.digest), ("team/b", shared.digest)
    ]
    assert p.tags("team/a") == [] and p.tags("team/b") == ["1.2"] and p.tags("team/c") == ["keep"]
    assert manifest_present(p, "team/c", shared.digest) and manifest_present(p, "team/b", own.digest)
    assert_inventory_equals_registry(db, fresh_registry.url, p, tmp_path)


def test_remove_repos_takes_untagged_manifests_too(fresh_registry, fresh_pusher, tmp_path):
    p = fresh_pusher
    first = p.push_image("old", "latest")
    db = tmp_path / "inv.db"
    sync(fresh_registry.url, db)
    second = p.push_image("old", "latest")  # `latest` moves: the first image stays, untagged
    index = p.push_index("old", "2.1")
    signature = p.push_cosign_signature("old", second.digest, kind="att")
    other = p.push_image("other", "1.1")
    sync(fresh_registry.url, db)
    assert ("old", first.digest) in inventory_manifests(db)

    result = run("-reg", fresh_registry.url, "--db", db, "remove-repos", "--yes", "-r", "old", "--format", "json")
    assert result.exit_code == 0, result.output
    deleted = {row["digest"]: (row["reason"], row["parent"]) for row in json.loads(result.stdout)["deleted"]}
    children = [child.digest for child in index.children.values()]
    assert deleted == {
        first.digest: ("untagged", None),
        second.digest: ("selected", None),
        index.digest: ("selected", None),
        signature: ("selected", None),  # its tag is one of the repository's tags, all selected
        **{child: ("child", index.digest) for child in children},
    }
    assert p.tags("old") == []
    for digest in deleted:
        assert not manifest_present(p, "old", digest)
    assert p.tags("other") == ["1.1"] and manifest_present(p, "other", other.digest)
    assert_inventory_equals_registry(db, fresh_registry.url, p, tmp_path)


def test_deletion_disabled_says_how_to_enable_it(tmp_path, registry_binary):
    registry = start_registry(tmp_path / "registry", delete_enabled=False)
    try:
        p = Pusher(registry.url)
        image = p.push_image("app", "1.1")
        db = tmp_path / "inv.db"
        sync(registry.url, db)
        result = run("-reg", registry.url, "--db", db, "remove-tags", "--yes", "-r", "app", "-t", "1.1")
        assert result.exit_code == 1, result.output
        error = result.output.strip().splitlines()[-1]
        assert error == (
            f"Error: registry {registry.url} has deletion disabled (405 UNSUPPORTED): enable it with "
            "'storage.delete.enabled: true' in its config, or REGISTRY_STORAGE_DELETE_ENABLED=true for the "
            "container"
        )
        assert p.tags("app") == ["1.1"]
        assert [r["outcome"] for r in deletions(db)] == ["failed"]
        assert ("app", "1.1", image.digest) in inventory_tags(db)
    finally:
        registry.stop()


@pytest.fixture
def proxy(fresh_registry):
    proxy = FaultyProxy(fresh_registry.url)
    yield proxy
    proxy.stop()


def test_a_failed_delete_is_reported_and_stays_in_the_inventory(fresh_registry, fresh_pusher, proxy, tmp_path):
    p = fresh_pusher
    good = p.push_image("app", "1.1")
    bad = p.push_image("app", "1.2")
    signature = p.push_cosign_signature("app", bad.digest)
    kept = p.push_image("app", "2.1")
    db = tmp_path / "inv.db"
    sync(proxy.url, db)
    proxy.fail[bad.digest] = 500

    result = run("-reg", proxy.url, "--db", db, "remove-tags", "--yes", "-r", "app", "-t", "<2")
    assert result.exit_code == 1, result.output
    assert f"Error: removal incomplete: 1 of 3 manifests deleted\n  deleted: app@{good.digest}\n" in result.output
    assert (f"  not deleted: app@{bad.digest} (failed: DELETE /v2/app/manifests/{bad.digest}: registry "
            "answered 500 UNKNOWN)") in result.output
    assert f"  not deleted: app@{signature} (skipped: its subject {bad.digest} was not deleted)" in result.output
    assert signature not in proxy.deletes  # a signature is never deleted while its image stays

    assert p.tags("app") == sorted(["1.2", "2.1", "sha256-" + bad.digest[7:] + ".sig"])
    assert {("app", "1.2", bad.digest), ("app", "2.1", kept.digest)} <= inventory_tags(db)
    assert ("app", bad.digest) in inventory_manifests(db)
    assert ("app", good.digest) not in inventory_manifests(db)
    outcomes = {r["digest"]: (r["outcome"], r["http_status"]) for r in deletions(db)}
    assert outcomes == {good.digest: ("deleted", 202), bad.digest: ("failed", 500), signature: ("skipped", None)}
    assert_inventory_equals_registry(db, fresh_registry.url, p, tmp_path)


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_delete_scope_is_named(fresh_registry, fresh_pusher, proxy, tmp_path, status):
    p = fresh_pusher
    image = p.push_image("team/app", "1.1")
    other = p.push_image("team/app", "1.2")
    db = tmp_path / "inv.db"
    sync(proxy.url, db)
    proxy.fail[image.digest] = proxy.fail[other.digest] = status
    result = run("-reg", proxy.url, "--db", db, "-j", "1", "remove-tags", "--yes", "-r", "team/app", "-t", "1.1", "1.2")
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1] == (
        f"Error: registry {proxy.url} refused scope repository:team/app:delete ({status})"
    )
    assert len(proxy.deletes) == 1  # the first refusal stops the run: the rest would be refused the same way
    assert p.tags("team/app") == ["1.1", "1.2"]
    assert [(r["outcome"], r["http_status"]) for r in deletions(db)] == [("failed", status)]


@pytest.mark.parametrize(
    "args, message",
    [
        (["remove-tags", "-r", "app"], "no tags selected: give at least one -t TAG|SELECTOR or -re REGEX"),
        (["remove-tags", "-r", "app", "-t", "<1.x"], "invalid version in selector '<1.x': '1.x'"),
        (["remove-tags", "-r", "app", "-re", "("], "invalid regex '(': missing ), unterminated subpattern at "
                                                   "position 0"),
    ],
)
def test_selector_mistakes_are_usage_errors_before_any_request(tmp_path, args, message):
    # Port 9 (discard) on loopback: any request would fail with "cannot reach registry", not this message.
    result = run("-reg", "http://127.0.0.1:9", "--db", tmp_path / "inv.db", *args)
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1] == f"Error: {message}"


def test_remove_repos_requires_a_repository(tmp_path):
    result = run("-reg", "http://127.0.0.1:9", "--db", tmp_path / "inv.db", "remove-repos")
    assert result.exit_code == 2, result.output
    assert "Missing option '-r' / '--repo'" in result.output
