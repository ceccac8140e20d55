"""Removal execution against the real registry: confirmation in scripts, --max-delete, verification right before
each repository's DELETEs, a tag that vanishes during them, and what the journal keeps.

Faults (SIGKILL, Ctrl-C, a locked or read-only inventory, a 500 after the DELETE was done) are in
tests/faults/test_journal_faults.py; restore is in tests/test_restore.py.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from regdb.cli.removal import ASK, PROCEED, REFUSE, confirmation_required
from tests.rig.cli import run
from tests.rig.fault_proxy import FaultProxy, Hook
from tests.rig.state import deletions, inventory_tags, manifest_present, registry_tags


@pytest.fixture
def two_repos(fresh_registry, fresh_pusher, tmp_path):
    p = fresh_pusher
    images = {repo: p.push_image(repo, "1.0") for repo in ("a", "b")}
    kept = {repo: p.push_image(repo, "2.0") for repo in ("a", "b")}
    db = tmp_path / "inv.db"
    assert run("-reg", fresh_registry.url, "--db", db, "sync").exit_code == 0
    return p, db, images, kept


@pytest.mark.parametrize("program, yes, tty, decision", [
    ("regdb", False, True, ASK),
    ("regdb", False, False, REFUSE),
    ("regdb", True, False, PROCEED),
    ("regdb", True, True, PROCEED),
    ("/usr/local/bin/regdb", False, False, REFUSE),
    ("dregutil", False, False, PROCEED),  # docker-registry-util never asked: its scripts have no --yes to pass
    ("dregutil", False, True, PROCEED),
    ("/opt/venv/bin/dregutil", False, False, PROCEED),
])
def test_the_confirmation_rule(program, yes, tty, decision):
    assert confirmation_required(program, yes, tty) == decision


@pytest.mark.parametrize("command", [["remove-tags", "-r", "a", "-t", "1.0"], ["remove-repos", "-r", "a"]])
def test_regdb_in_a_script_refuses_to_delete_without_yes(fresh_registry, two_repos, command):
    p, db, images, kept = two_repos
    result = run("-reg", fresh_registry.url, "--db", db, *command, "--format",
                 "json")  # CliRunner's stdin is no terminal
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        "Error: stdin is not a terminal, so regdb cannot ask: pass --yes to delete"
    ]
    assert manifest_present(p, "a", images["a"].digest) and deletions(db) == []
    # The same command run as dregutil deletes without asking, as docker-registry-util did.
    result = run("-reg", fresh_registry.url, "--db", db, *command, "--format", "json", prog_name="dregutil")
    assert result.exit_code == 0, result.output
    assert not manifest_present(p, "a", images["a"].digest)
    assert manifest_present(p, "b", images["b"].digest)


def test_max_delete_refuses_a_larger_plan_before_anything_is_deleted(fresh_registry, two_repos, tmp_path):
    p, db, images, kept = two_repos
    result = run("-reg", fresh_registry.url, "--db", db, "remove-tags", "--yes", "--max-delete", "1", "-r", "a", "b",
                 "-t", "1.0")
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1] == (
        "Error: the plan deletes 2 manifests, more than the limit of 1 (max_delete): nothing deleted"
    )
    assert all(manifest_present(p, repo, image.digest) for repo, image in images.items()) and deletions(db) == []

    policy = tmp_path / "policy.toml"
    policy.write_text('max_delete = 1\n\n[[rule]]\nrepos = ["a", "b"]\ntags = ["1.0"]\n')
    result = run("-reg", fresh_registry.url, "--db", db, "apply", policy, "--yes", "--format", "json")
    assert result.exit_code == 1, result.output
    assert "the plan deletes 2 manifests, more than the limit of 1 (max_delete)" in result.output
    assert all(manifest_present(p, repo, image.digest) for repo, image in images.items()) and deletions(db) == []

    policy.write_text('max_delete = 0.5\n\n[[rule]]\nrepos = ["a"]\n')
    result = run("-reg", fresh_registry.url, "--db", db, "apply", policy, "--dry-run")
    assert result.exit_code == 1 and "line 1: max_delete must be a whole number of at least 0, not 0.5" in result.output

    result = run("-reg", fresh_registry.url, "--db", db, "remove-tags", "--yes", "--max-delete", "2", "-r", "a", "b",
                 "-t", "1.0")
    assert result.exit_code == 0, result.output
    assert not any(manifest_present(p, repo, image.digest) for repo, image in images.items())


def test_a_tag_pushed_onto_a_planned_digest_while_another_repository_is_deleted_survives(fresh_registry,
                                                                                         two_repos, tmp_path):
    """Finding 4: each repository is verified right before its own DELETEs, not once for the whole run."""
    p, _, images, kept = two_repos
    db = tmp_path / "proxy.db"  # the inventory names registries by URL: this one knows the proxy's
    with FaultProxy(fresh_registry.url) as proxy:
        dry = run("-reg", proxy.url, "--db", db, "remove-tags", "--dry-run", "--format", "json", "-r", "a", "b", "-t",
                  "1.0")
        first, second = [row["repo"] for row in json.loads(dry.stdout)["rows"]]
        # While the first repository is being deleted, someone tags the second one's planned digest.
        hook = proxy.add(Hook(method="DELETE", path=f"^/v2/{first}/manifests/", times=1,
                              action=lambda: p.tag(second, "customer", images[second].digest)))
        result = run("-reg", proxy.url, "--db", db, "remove-tags", "--yes", "-r", "a", "b", "-t", "1.0")
    assert hook.acted == 1
    assert result.exit_code == 0, result.output
    assert "deleted 1, skipped 1, failed 0" in result.output
    assert f"skipped  {second}" in result.output or f"skipped {second}" in result.output, result.output
    assert p.head_digest(second, "customer") == images[second].digest
    assert not manifest_present(p, first, images[first].digest)
    assert all(p.head_digest(repo, "2.0") == image.digest for repo, image in kept.items())
    # The inventory holds what regdb did; the tag pushed behind its back arrives with the next sync.
    assert inventory_tags(db) == registry_tags(p, ["a", "b"]) - {(second, "customer", images[second].digest)}


def test_a_tag_that_vanishes_during_the_deletes_is_reported_loudly(fresh_registry, two_repos, tmp_path):
    p, _, images, kept = two_repos
    doomed, stable = images["a"].digest, kept["a"].digest
    p.tag("a", "stable", stable)
    db = tmp_path / "proxy.db"
    with FaultProxy(fresh_registry.url) as proxy:
        # After a's verification and before its DELETE reaches the registry, `stable` is moved onto the planned
        # digest: the DELETE destroys it. regdb cannot undo that race, but must not keep quiet about it.
        proxy.add(Hook(method="DELETE", path=f"^/v2/a/manifests/{doomed}", times=1,
                       action=lambda: p.tag("a", "stable", doomed)))
        result = run("-reg", proxy.url, "--db", db, "remove-tags", "--yes", "-r", "a", "-t", "1.0")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert (f"Error: tag a:stable (on {stable} when verified) vanished during the removal without being planned"
            in result.output), result.output
    assert p.tags("a") == ["2.0"]


def test_the_journal_keeps_what_restore_needs(fresh_registry, fresh_pusher, tmp_path):
    p = fresh_pusher
    index = p.push_index("multi", "v1")
    p.tag("multi", "latest", index.digest)
    db = tmp_path / "inv.db"
    result = run("-reg", fresh_registry.url, "--db", db, "remove-tags", "--yes", "-r", "multi", "-t", "v1", "latest")
    assert result.exit_code == 0, result.output
    rows = deletions(db)
    assert len(rows) == 3 and {r["outcome"] for r in rows} == {"deleted"}
    for row in rows:
        assert "sha256:" + hashlib.sha256(row["manifest"]).hexdigest() == row["digest"]
        assert row["intent_at"] is not None and row["intent_at"] <= row["at"]
    by_digest = {r["digest"]: r for r in rows}
    assert set(by_digest[index.digest]["tags"].split(",")) == {"latest", "v1"}
    assert by_digest[index.digest]["media_type"] == index.media_type
    assert all(by_digest[child.digest]["tags"] is None for child in index.children.values())


def test_untag_is_journaled_and_refuses_without_yes_too(fresh_registry, fresh_pusher, tmp_path):
    p = fresh_pusher
    image = p.push_image("app", "1.0")
    p.tag("app", "stable", image.digest)
    db = tmp_path / "inv.db"
    refused = run("-reg", fresh_registry.url, "--db", db, "untag", "-r", "app", "-t", "stable", "--format", "json")
    assert refused.exit_code == 2 and "pass --yes" in refused.stderr, refused.output
    assert p.head_digest("app", "stable") == image.digest
    result = run("-reg", fresh_registry.url, "--db", db, "untag", "--yes", "-r", "app", "-t", "stable")
    assert result.exit_code == 0, result.output
    [row] = deletions(db)
    assert row["outcome"] == "untagged" and row["intent_at"] is not None and row["tags"] == "stable"
    assert p.tags("app") == ["1.0"] and p.head_digest("app", "1.0") == image.digest


def test_an_untag_left_in_flight_is_settled_by_resolving_its_tag(fresh_registry, fresh_pusher, tmp_path):
    import sqlite3
    from contextlib import closing

    p = fresh_pusher
    image = p.push_image("app", "1.0")
    p.tag("app", "stable", image.digest)
    p.tag("app", "rc", image.digest)
    db = tmp_path / "inv.db"
    assert run("-reg", fresh_registry.url, "--db", db, "untag", "--yes", "-r", "app", "-t", "stable",
               "rc").exit_code == 0
    p.tag("app", "rc", image.digest)  # rc is back in the registry: its untag did not happen, as far as it shows
    with closing(sqlite3.connect(db)) as conn, conn:  # as if the run had been killed before both answers
        conn.execute("UPDATE deletions SET outcome = 'in-flight', reason = 'untag'")
    result = run("-reg", fresh_registry.url, "--db", db, "remove-tags", "--yes", "-r", "app", "-t", "nothing-selected")
    assert result.exit_code == 0, result.output
    outcomes = {r["tags"]: r["outcome"] for r in deletions(db)}
    assert outcomes == {"stable": "untagged", "rc": "failed"}
    assert "settled: app@" in result.output and ": untagged" in result.output
