"""The removal plan as reachability, and the cross-repository rule seeing the whole registry (issue 12,
findings 1 and 2), end to end against a real registry and checked on the registry itself.

Every test that deletes runs its own registry (`fresh_registry`)."""

from __future__ import annotations

import json
import sqlite3

import pytest
from werkzeug import Request, Response

from regdb import Inventory, RegistryClient
from regdb.cleanup.plan import TagQuery
from regdb.errors import IntersectionError
from tests.rig.cli import run
from tests.rig.http_proxy import FaultyProxy
from tests.rig.pusher import Pusher
from tests.rig.registry import start_registry
from tests.rig.state import assert_inventory_equals_registry, manifest_present, registry_tags

AMD64, ARM64 = ("amd64", "linux", None), ("arm64", "linux", "v8")


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def multi_with_tagged_child(p):
    """`multi:v1` (amd64 + arm64) whose amd64 child is also tagged `v1-amd64`, as `docker manifest create`
    workflows leave it."""
    index = p.push_index("multi", "v1", platforms=(AMD64, ARM64))
    p.tag("multi", "v1-amd64", index.children[AMD64].digest)
    return index


def test_a_tagged_child_of_an_index_that_stays_is_kept(fresh_registry, fresh_pusher, tmp_path):
    """Finding 1: removing `v1-amd64` must not tear the amd64 platform out of `multi:v1`."""
    p = fresh_pusher
    index = multi_with_tagged_child(p)
    child = index.children[AMD64].digest
    db = tmp_path / "inv.db"
    ok(run("-reg", fresh_registry.url, "--db", db, "sync"))
    before = registry_tags(p, ["multi"])

    for selector in (["-t", "v1-amd64"], ["-re", ".*-amd64"]):
        dry = ok(run("-reg", fresh_registry.url, "--db", db, "remove-tags", "-r", "multi", *selector, "--dry-run",
                     "--format", "json"))
        plan = json.loads(dry.stdout)
        assert plan["rows"] == []
        assert [(s["digest"], s["reason"], s["parent"]) for s in plan["skipped"]] == [
            (child, "held-by-index", index.digest)
        ]
        result = ok(run("-reg", fresh_registry.url, "--db", db, "remove-tags", "-r", "multi", *selector, "--yes"))
        assert f"kept multi@{child}: listed by index {index.digest}, which stays" in result.stderr
        assert registry_tags(p, ["multi"]) == before
        assert manifest_present(p, "multi", child)

    # Both selected: the index goes first, then the child it listed.
    result = ok(run("-reg", fresh_registry.url, "--db", db, "remove-tags", "-r", "multi", "-t", "v1", "v1-amd64",
                    "--yes", "--format", "json"))
    deleted = [(row["digest"], row["reason"]) for row in json.loads(result.stdout)["deleted"]]
    assert sorted(deleted) == sorted([
        (index.digest, "selected"), (child, "selected"), (index.children[ARM64].digest, "child"),
    ])
    assert p.tags("multi") == []
    assert_inventory_equals_registry(db, fresh_registry.url, p, tmp_path)


def test_an_untagged_index_that_stays_holds_its_children(fresh_registry, fresh_pusher, tmp_path):
    """Staying is not only being tagged: an index nobody selected, tagged or not, keeps every child it lists."""
    p = fresh_pusher
    index = p.push_index("multi", "v1", platforms=(AMD64, ARM64))
    child = index.children[ARM64].digest
    p.tag("multi", "arm", child)
    db = tmp_path / "inv.db"
    ok(run("-reg", fresh_registry.url, "--db", db, "sync"))
    # v1 moves on: the first index stays, untagged. The registry lists no untagged manifests, so only an
    # inventory that saw it tagged knows it is there (a sync keeps what it knew while the registry serves it).
    p.push_index("multi", "v1", platforms=(AMD64,))
    ok(run("-reg", fresh_registry.url, "--db", db, "sync"))
    plan = json.loads(ok(run("-reg", fresh_registry.url, "--db", db, "remove-tags", "-r", "multi", "-t", "arm",
                             "--dry-run", "--format", "json")).stdout)
    assert plan["rows"] == []
    assert [(s["digest"], s["parent"]) for s in plan["skipped"]] == [(child, index.digest)]


def test_the_first_command_sees_a_shared_digest_beyond_the_first_catalog_page(registry_binary, tmp_path):
    """Finding 2: with no inventory yet, a digest shared with a repository the catalog lists on a later page
    (two names a page here, so the client asks for two) is found: refused, or left out."""
    reg = start_registry(tmp_path / "registry", extra={"catalog": {"maxentries": 2}})
    try:
        p = Pusher(reg.url)
        shared = p.push_image("app", "v1")
        p.push_image("app", "v2")
        p.push_image("b", "x")
        p.push_image("c", "x")
        p.copy("app", shared.digest, "zz", "pinned")  # third page
        assert p.catalog()[-1] == "zz"
        lines = []
        with Inventory(tmp_path / "new.db") as inventory:
            client = RegistryClient(reg.url, page_size=2)
            with pytest.raises(IntersectionError, match="also in repository zz"):
                inventory.plan_removal(client, TagQuery(["app"], tags=["v1"]), announce=lines.append)
            assert len(lines) == 1 and "no complete sync" in lines[0]
        with Inventory(tmp_path / "other.db") as inventory:
            plan = inventory.plan_removal(client, TagQuery(["app"], tags=["v1"], raise_intersecting_repo=False))
            assert plan.rows == []
            assert [(s.digest, s.reason, s.others) for s in plan.skipped] == [(shared.digest, "other-repo", ("zz",))]
    finally:
        reg.stop()


def test_the_first_command_line_run_checks_every_repository(fresh_registry, fresh_pusher, tmp_path):
    """The same through the CLI: a new inventory file, and `-c None`."""
    p = fresh_pusher
    shared = p.push_image("app", "v1")
    p.copy("app", shared.digest, "zz", "pinned")
    before = registry_tags(p, ["app", "zz"])
    refused = run("-reg", fresh_registry.url, "--db", tmp_path / "new.db", "remove-tags", "-r", "app", "-t", "v1",
                  "--yes")
    assert refused.exit_code == 1, refused.output
    assert "also in repository zz" in refused.stderr
    assert "syncing the whole registry" in refused.stderr and "no complete sync" in refused.stderr
    for db in (tmp_path / "other.db", "None"):
        result = run("-reg", fresh_registry.url, "--db", db, "--no-raise-intersecting-repo", "remove-tags", "-r", "app",
                     "-t", "v1", "--yes")
        assert result.exit_code == 0, result.output
        assert f"kept app@{shared.digest}: also in repository zz, outside the selection" in result.stderr
        assert registry_tags(p, ["app", "zz"]) == before


def test_a_stale_inventory_is_synced_whole_again(fresh_registry, fresh_pusher, tmp_path):
    p = fresh_pusher
    shared = p.push_image("app", "v1")
    db = tmp_path / "inv.db"
    ok(run("-reg", fresh_registry.url, "--db", db, "sync"))
    p.copy("app", shared.digest, "late", "pinned")  # after the sync: only a whole sync sees it

    fresh = run("-reg", fresh_registry.url, "--db", db, "remove-tags", "-r", "app", "-t", "v1", "--dry-run")
    assert fresh.exit_code == 0 and "syncing the whole registry" not in fresh.stderr, fresh.output

    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE syncs SET finished_at = datetime(finished_at, '-2 hours')")
    stale = run("-reg", fresh_registry.url, "--db", db, "remove-tags", "-r", "app", "-t", "v1", "--max-inventory-age",
                "1h", "--yes")
    assert stale.exit_code == 1, stale.output
    assert "more than --max-inventory-age 1.0h" in stale.stderr and "also in repository late" in stale.stderr
    assert manifest_present(p, "app", shared.digest)

    bad = run("-reg", fresh_registry.url, "--db", db, "remove-tags", "-r", "app", "-t", "v1", "--max-inventory-age",
              "soon")
    assert bad.exit_code == 2 and "bad duration 'soon'" in bad.stderr, bad.output


class _NoCatalog(FaultyProxy):
    """A registry that does not serve `_catalog`, as Docker Hub and GHCR."""

    def _forward(self, request: Request) -> Response:
        if request.path.startswith("/v2/_catalog"):
            return Response('{"errors":[{"code":"UNSUPPORTED"}]}', status=404, content_type="application/json")
        return super()._forward(request)


def test_a_registry_without_catalog_refuses_unless_only_named_repos(fresh_registry, fresh_pusher, tmp_path):
    p = fresh_pusher
    doomed = p.push_image("app", "v1")
    proxy = _NoCatalog(fresh_registry.url)
    try:
        db = tmp_path / "inv.db"
        ok(run("-reg", proxy.url, "--db", db, "sync", "app"))
        refused = run("-reg", proxy.url, "--db", db, "remove-tags", "-r", "app", "-t", "v1", "--yes")
        assert refused.exit_code == 1, refused.output
        assert "does not list its repositories to us (GET /v2/_catalog answered 404)" in refused.stderr
        assert "--only-named-repos" in refused.stderr and "Traceback" not in refused.output
        assert manifest_present(p, "app", doomed.digest)

        ok(run("-reg", proxy.url, "--db", db, "remove-tags", "-r", "app", "-t", "v1", "--yes", "--only-named-repos"))
        assert not manifest_present(p, "app", doomed.digest)
    finally:
        proxy.stop()


def test_an_incomplete_listing_refuses_a_removal_touching_it(fresh_registry, fresh_pusher, tmp_path):
    p = fresh_pusher
    shared = p.push_image("app", "v1")
    p.push_image("app", "v2")
    p.copy("app", shared.digest, "odd", "x")
    p.push_image("odd", "y")
    db = tmp_path / "inv.db"
    ok(run("-reg", fresh_registry.url, "--db", db, "sync"))
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE repos SET incomplete = 'tag listing cut off at 100000' WHERE name = 'odd'")
    before = registry_tags(p, ["app", "odd"])

    for args in (["-r", "odd", "-t", "y"], ["-r", "app", "odd", "-t", "v1", "x"]):
        refused = run("-reg", fresh_registry.url, "--db", db, "remove-tags", *args, "--yes", "--no-refresh")
        assert refused.exit_code == 1, refused.output
        assert "repository odd was listed incompletely by the last sync (tag listing cut off" in refused.stderr
    assert registry_tags(p, ["app", "odd"]) == before
    # Nothing shared with it: app:v2 goes.
    ok(run("-reg", fresh_registry.url, "--db", db, "remove-tags", "-r", "app", "-t", "v2", "--yes", "--no-refresh"))
    assert p.tags("app") == ["v1"]


def test_remove_repos_leaves_a_kept_digest_its_signature(fresh_registry, fresh_pusher, tmp_path):
    """--no-raise-intersecting-repo leaves a shared digest in place, and what belongs to it: its cosign
    signature (a tagged digest of the repository, so remove-repos would otherwise select it)."""
    p = fresh_pusher
    shared = p.push_image("app", "v1")
    p.push_image("app", "v2")
    signature = p.push_cosign_signature("app", shared.digest)
    p.copy("app", shared.digest, "other", "pinned")
    db = tmp_path / "inv.db"
    ok(run("-reg", fresh_registry.url, "--db", db, "sync"))
    result = ok(run("-reg", fresh_registry.url, "--db", db, "--no-raise-intersecting-repo", "remove-repos", "-r", "app",
                    "--yes", "--format", "json"))
    left_out = {(k["digest"], k["reason"], k["parent"]) for k in json.loads(result.stdout)["left_out"]}
    assert left_out == {(shared.digest, "other-repo", None), (signature, "belongs-to-kept", shared.digest)}
    assert p.tags("app") == sorted(["v1", "sha256-" + shared.digest[7:] + ".sig"])
    assert_inventory_equals_registry(db, fresh_registry.url, p, tmp_path)


def test_query_tags_says_why_it_leaves_digests_out(registry, pusher, repo_name, tmp_path):
    p = pusher
    app, other = f"{repo_name}/app", f"{repo_name}/other"
    kept = p.push_image(app, "1.0")
    p.tag(app, "keep", kept.digest)
    aliased = p.push_image(app, "1.1")
    p.tag(app, "stable", aliased.digest)
    shared = p.push_image(app, "1.2")
    p.copy(app, shared.digest, other, "x")
    chosen = p.push_image(app, "1.3")
    db = tmp_path / "inv.db"
    args = ["--no-raise-intersecting-repo", "query-tags", "-r", app, "-re", "1\\.", "-x", "keep"]
    text = ok(run("-reg", registry.url, "--db", db, *args))
    assert text.stdout.split() == [app, chosen.digest]
    assert text.stderr.splitlines() == [f"kept {app}@{digest}: {why}" for digest, why in sorted([
        (kept.digest, "carries excluded tag keep"),
        (aliased.digest, "also tagged stable, which the selection does not include"),
        (shared.digest, f"also in repository {other}, outside the selection"),
    ])]
    as_json = ok(run("-reg", registry.url, "--db", db, *args, "--format", "json"))
    assert [row["digest"] for row in json.loads(as_json.stdout)] == [chosen.digest]
    skipped = json.loads(as_json.stderr)["skipped"]
    assert {(s["digest"], s["reason"], tuple(s["others"])) for s in skipped} == {
        (kept.digest, "excluded-tag", ("keep",)), (aliased.digest, "other-tag", ("stable",)),
        (shared.digest, "other-repo", (other,)),
    }


def test_the_reachability_plan_on_postgresql(fresh_registry, fresh_pusher, pg_url, tmp_path):
    """The plan is SQL over the inventory: the same rules on PostgreSQL (held child, child after its index)."""
    p = fresh_pusher
    index = multi_with_tagged_child(p)
    child = index.children[AMD64].digest
    with Inventory(pg_url) as inventory:
        client = RegistryClient(fresh_registry.url)
        inventory.sync(client)
        plan = inventory.plan_removal(client, TagQuery(["multi"], tags=["v1-amd64"]))
        assert plan.rows == [] and [(s.digest, s.reason, s.parent) for s in plan.skipped] == [
            (child, "held-by-index", index.digest)
        ]
        both = inventory.plan_removal(client, TagQuery(["multi"], tags=["v1", "v1-amd64"]))
        assert {(row.digest, row.reason, row.after) for row in both.rows} == {
            (index.digest, "selected", ()), (child, "selected", (index.digest,)),
            (index.children[ARM64].digest, "child", (index.digest,)),
        }
