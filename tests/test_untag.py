"""untag against a real registry: the tag goes, its digest and the other tags on it stay, no placeholder is left
in the registry, and the inventory and the deletions record say so. Every test runs its own registry."""

from __future__ import annotations

import json

import pytest

from tests.rig.cli import run
from tests.rig.http_proxy import RegistryProxy
from tests.rig.pusher import Pusher
from tests.rig.registry import start_registry
from tests.rig.retention import live_placeholders, synced
from tests.rig.state import assert_inventory_equals_registry, deletions, manifest_present, registry_tags


@pytest.fixture
def app(fresh_registry, fresh_pusher, tmp_path):
    """`1.0` and `stable` on one digest, `2.0` on another; synced."""
    p = fresh_pusher
    image = p.push_image("app", "1.0")
    p.tag("app", "stable", image.digest)
    other = p.push_image("app", "2.0")
    db = tmp_path / "inv.db"
    synced(fresh_registry.url, db).close()
    return fresh_registry, p, db, image, other


def test_untag_removes_the_tag_and_keeps_its_digest_and_other_tag(app, tmp_path):
    registry, p, db, image, other = app
    dry = run("-reg", registry.url, "--db", db, "untag", "-r", "app", "-t", "stable", "--dry-run")
    assert dry.exit_code == 0, dry.output
    lines = dry.output.splitlines()
    assert lines[0].split() == ["repo", "tag", "digest", "other_tags"]
    assert lines[2].split() == ["app", "stable", image.digest, "1.0"]
    assert lines[3].startswith("method: placeholder (the registry has no OCI 1.1 referrers API")
    assert lines[4] == "dry run: nothing untagged"
    assert registry_tags(p, ["app"]) == {("app", "1.0", image.digest), ("app", "stable", image.digest),
                                         ("app", "2.0", other.digest)}

    result = run("-reg", registry.url, "--db", db, "untag", "--yes", "-r", "app", "-t", "stable")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1].startswith("untagged 1, skipped 0, failed 0 (run ")
    assert registry_tags(p, ["app"]) == {("app", "1.0", image.digest), ("app", "2.0", other.digest)}
    assert manifest_present(p, "app", image.digest)
    assert live_placeholders(registry.storage_path, "app") == []
    assert_inventory_equals_registry(db, registry.url, p, tmp_path)
    [record] = deletions(db)
    assert (record["repo"], record["digest"], record["tags"], record["reason"], record["outcome"]) == (
        "app", image.digest, "stable", "untag via placeholder", "untagged")


def test_untagging_the_last_tag_leaves_the_manifest_for_untagged_to_find(app, tmp_path):
    registry, p, db, image, other = app
    result = run("-reg", registry.url, "--db", db, "untag", "--yes", "-r", "app", "-t", "2.0", "--format", "json")
    assert result.exit_code == 0, result.output
    [done] = json.loads(result.output)["untagged"]
    assert (done["tag"], done["digest"], done["method"], done["other_tags"]) == ("2.0", other.digest,
                                                                                  "placeholder", [])
    assert manifest_present(p, "app", other.digest)
    assert live_placeholders(registry.storage_path, "app") == []
    found = run("-reg", registry.url, "--db", db, "remove-tags", "--yes", "-r", "app", "--untagged",
                "--dry-run", "--format", "json")
    assert found.exit_code == 0, found.output
    assert [row["digest"] for row in json.loads(found.output)["rows"]] == [other.digest]


def test_untag_of_several_tags_and_of_a_tag_that_is_not_there(app):
    registry, p, db, image, other = app
    missing = run("-reg", registry.url, "--db", db, "untag", "--yes", "-r", "app", "-t", "stable", "nope")
    assert missing.exit_code == 2
    assert missing.output.endswith(f"Error: tag nope not found in repository app of {registry.host}\n")
    assert run("-reg", registry.url, "--db", db, "untag", "-r", "ghost", "-t", "x").output.endswith(
        f"Error: repository ghost not found in {registry.host}\n")
    result = run("-reg", registry.url, "--db", db, "untag", "--yes", "-r", "app", "-t", "stable", "1.0")
    assert result.exit_code == 0, result.output
    assert registry_tags(p, ["app"]) == {("app", "2.0", other.digest)}
    assert manifest_present(p, "app", image.digest)
    assert live_placeholders(registry.storage_path, "app") == []


def test_a_registry_with_deletion_disabled_stops_before_any_tag_moves(tmp_path):
    registry = start_registry(tmp_path / "registry", delete_enabled=False)
    try:
        p = Pusher(registry.url)
        image = p.push_image("app", "1.0")
        p.tag("app", "stable", image.digest)
        db = tmp_path / "inv.db"
        result = run("-reg", registry.url, "--db", db, "untag", "--yes", "-r", "app", "-t", "stable")
        assert result.exit_code == 1
        assert result.output.endswith(
            f"Error: registry {registry.url} has deletion disabled (405 UNSUPPORTED): enable it with "
            "'storage.delete.enabled: true' in its config, or REGISTRY_STORAGE_DELETE_ENABLED=true for the "
            "container\n")
        assert registry_tags(p, ["app"]) == {("app", "1.0", image.digest), ("app", "stable", image.digest)}
        assert live_placeholders(registry.storage_path, "app") == []
    finally:
        registry.stop()


def test_a_failed_placeholder_delete_puts_the_tag_back_and_leaves_no_placeholder(app, tmp_path):
    registry, p, db, image, other = app
    proxy = RegistryProxy(registry.url)
    try:
        proxy.fail_deletes = 1
        result = run("-reg", proxy.url, "--db", tmp_path / "proxy.db", "untag", "--yes", "-r", "app", "-t", "stable")
        assert result.exit_code == 1
        assert "Error: untag incomplete: 0 of 1 tags removed\n  not removed: app:stable (deleting the " \
               "placeholder failed (" in result.output
        assert f"stable is back on {image.digest})" in result.output
        assert proxy.fail_deletes == 0
    finally:
        proxy.stop()
    assert registry_tags(p, ["app"]) == {("app", "1.0", image.digest), ("app", "stable", image.digest),
                                         ("app", "2.0", other.digest)}
    assert live_placeholders(registry.storage_path, "app") == []
    [record] = deletions(tmp_path / "proxy.db")
    assert (record["outcome"], record["tags"], record["http_status"]) == ("failed", "stable", 500)


def test_an_oci_registry_deletes_the_tag_itself(app, tmp_path):
    registry, p, db, image, other = app
    proxy = RegistryProxy(registry.url, oci=True)
    try:
        proxy_db = tmp_path / "proxy.db"
        dry = run("-reg", proxy.url, "--db", proxy_db, "untag", "-r", "app", "-t", "stable", "--dry-run")
        assert "method: delete-tag (the registry speaks OCI distribution 1.1 (referrers API): DELETE by tag)" \
            in dry.output
        result = run("-reg", proxy.url, "--db", proxy_db, "untag", "--yes", "-r", "app", "-t", "stable")
        assert result.exit_code == 0, result.output
        assert proxy.tag_deletes == ["stable"]
        assert deletions(proxy_db)[0]["reason"] == "untag via delete-tag"
    finally:
        proxy.stop()
    assert registry_tags(p, ["app"]) == {("app", "1.0", image.digest), ("app", "2.0", other.digest)}
    assert live_placeholders(registry.storage_path, "app") == []


def test_a_registry_whose_tag_delete_takes_the_manifest_gets_it_back_under_its_other_tags(app, tmp_path):
    registry, p, db, image, other = app
    proxy = RegistryProxy(registry.url, oci=True, deletes_manifest=True)
    try:
        result = run("-reg", proxy.url, "--db", tmp_path / "proxy.db", "untag", "--yes", "-r", "app", "-t", "stable")
        assert result.exit_code == 0, result.output
    finally:
        proxy.stop()
    assert registry_tags(p, ["app"]) == {("app", "1.0", image.digest), ("app", "2.0", other.digest)}
    assert manifest_present(p, "app", image.digest)
