"""The removal library against a real registry: the plan's closure (index children, signatures, referrers),
its byte count, the fresh-facts refresh and the verify step right before deleting.

Plans that delete nothing use the session registry; every test that deletes has a registry of its own."""

from __future__ import annotations

from contextlib import closing

import pytest

from regdb import Inventory, RegistryClient
from regdb.cleanup.plan import Plan, RepoQuery, TagQuery, plan_removal
from regdb.errors import RegdbError, RemovalIncomplete, SelectorError
from regdb.selection.selectors import Selected, Selection
from tests.rig.pusher import Pushed, PushedIndex
from tests.rig.state import (
    assert_inventory_equals_registry,
    deletions,
    inventory_manifests,
    manifest_present,
    registry_tags,
)


@pytest.fixture
def synced(tmp_path):
    """open(registry) -> (inventory, client), synced; closed at teardown."""
    opened = []

    def open_(registry, repos=None):
        inventory = Inventory(tmp_path / f"inv{len(opened)}.db")
        client = RegistryClient(registry.url)
        opened.append((inventory, client))
        inventory.sync(client, repos)
        return inventory, client

    yield open_
    for inventory, client in opened:
        inventory.close()
        client.close()


def selected(registry, repo: str, image: Pushed | PushedIndex, *tags: str) -> Selected:
    return Selected(registry.host, repo, image.digest, tuple(tags), image.media_type, 0)


def blobs_of(image: Pushed) -> dict[str, int]:
    return {image.config_digest: image.config_size, **dict(image.layers)}


def freed_reference(removed: list[Pushed], kept: list[Pushed]) -> int:
    """The plain-Python rule: blobs of removed images that no kept image uses, once each, plus the removed
    manifests' own bytes (manifests are blobs in the store too)."""
    still = {digest for image in kept for digest in blobs_of(image)}
    freed = {}
    for image in removed:
        freed.update({d: s for d, s in blobs_of(image).items() if d not in still})
    return sum(freed.values()) + sum(image.size for image in {i.digest: i for i in removed}.values())


# --- the plan -----------------------------------------------------------------------------------------------


def test_bytes_freed_count_each_blob_once_and_only_when_nothing_kept_uses_it(registry, pusher, repo_name, synced):
    base = f"base layer of {repo_name}".encode()
    a = pusher.push_image(f"{repo_name}/app", "1.1", layers=[base, b"a" + base])
    b = pusher.push_image(f"{repo_name}/app", "1.2", layers=[base, b"b" + base])
    c = pusher.push_image(f"{repo_name}/app", "1.3", layers=[b"c" + base])
    elsewhere = pusher.push_image(f"{repo_name}/other", "1.1", layers=[b"c" + base])  # shares c's layer
    inventory, _ = synced(registry)
    registry_id = inventory.registry_id(registry.url)
    app = f"{repo_name}/app"

    only_a = plan_removal(inventory.engine, registry_id, [selected(registry, app, a, "1.1")])
    assert only_a.bytes_freed == freed_reference([a], [b, c, elsewhere])
    assert only_a.bytes_freed < a.size + sum(blobs_of(a).values())  # the base layer stays: b uses it

    a_and_b = plan_removal(inventory.engine, registry_id, [selected(registry, app, a, "1.1"),
                                                            selected(registry, app, b, "1.2")])
    assert a_and_b.bytes_freed == freed_reference([a, b], [c, elsewhere])
    assert a_and_b.bytes_freed == sum(row.bytes for row in a_and_b.rows)

    only_c = plan_removal(inventory.engine, registry_id, [selected(registry, app, c, "1.3")])
    assert only_c.bytes_freed == freed_reference([c], [a, b, elsewhere])  # its layer lives on in /other
    assert [(row.repo, row.digest, row.tags, row.why) for row in only_c.rows] == [
        (app, c.digest, ("1.3",), "selected")
    ]


def test_a_digest_in_two_repositories_is_freed_only_when_both_go(registry, pusher, repo_name, synced):
    image = pusher.push_image(f"{repo_name}/a", "1.1")
    pusher.copy(f"{repo_name}/a", image.digest, f"{repo_name}/b", "1.1")
    inventory, _ = synced(registry)
    registry_id = inventory.registry_id(registry.url)
    one = plan_removal(inventory.engine, registry_id, [selected(registry, f"{repo_name}/a", image, "1.1")])
    assert one.bytes_freed == 0
    both = plan_removal(inventory.engine, registry_id, [selected(registry, f"{repo_name}/a", image, "1.1"),
                                                        selected(registry, f"{repo_name}/b", image, "1.1")])
    assert both.bytes_freed == freed_reference([image], [])
    assert [row.bytes for row in both.rows] == [both.bytes_freed, 0]  # counted on one row only


def test_an_index_takes_its_orphaned_children_and_leaves_a_shared_one(fresh_registry, fresh_pusher, synced, tmp_path):
    p = fresh_pusher
    amd64, arm64 = ("amd64", "linux", None), ("arm64", "linux", "v8")
    both = p.push_index("multi", "2.1", platforms=(amd64, arm64), unique="m")
    amd64_only = p.push_index("multi", "2.2", platforms=(amd64,), unique="m")
    assert both.children[amd64].digest == amd64_only.children[amd64].digest
    orphan = both.children[arm64]
    other = p.push_index("multi", "3.1", unique="n")
    p.tag("multi", "arm-3.1", other.children[arm64].digest)  # a child that is also tagged
    inventory, client = synced(fresh_registry)
    registry_id = inventory.registry_id(fresh_registry.url)

    plan = plan_removal(inventory.engine, registry_id, [
        selected(fresh_registry, "multi", both, "2.1"), selected(fresh_registry, "multi", other, "3.1"),
    ])
    assert [(row.digest, row.why, row.after) for row in plan.rows] == [
        (both.digest, "selected", ()),
        (orphan.digest, f"child of {both.digest}", (both.digest,)),
        (other.digest, "selected", ()),
        (other.children[amd64].digest, f"child of {other.digest}", (other.digest,)),
    ]
    expected = freed_reference([orphan, other.children[amd64]],
                               [amd64_only.children[amd64], other.children[arm64]])
    assert plan.bytes_freed == expected + both.size + other.size

    store = fresh_registry.blob_store_bytes()
    result = inventory.remove(client, plan)
    assert sorted(o.row.digest for o in result.deleted) == sorted(row.digest for row in plan.rows)
    assert result.bytes_freed == plan.bytes_freed
    assert not manifest_present(p, "multi", orphan.digest)
    assert manifest_present(p, "multi", amd64_only.children[amd64].digest)  # 2.2 still lists it
    assert manifest_present(p, "multi", other.children[arm64].digest)  # tagged arm-3.1
    assert p.tags("multi") == ["2.2", "arm-3.1"]
    assert_inventory_equals_registry(inventory.target, fresh_registry.url, p, tmp_path)

    fresh_registry.stop()
    fresh_registry.garbage_collect()
    assert store - fresh_registry.blob_store_bytes() == plan.bytes_freed


def test_signatures_and_referrers_go_with_their_image(fresh_registry, fresh_pusher, synced, tmp_path):
    p = fresh_pusher
    image = p.push_image("app", "1.1", oci=True)
    sig = p.push_cosign_signature("app", image.digest, kind="sig")
    att = p.push_cosign_signature("app", image.digest, kind="att")
    subject = {"mediaType": image.media_type, "digest": image.digest, "size": image.size}
    referrer = p.push_image("app", "scratch", oci=True, subject=subject)
    kept_sbom = p.push_cosign_signature("app", image.digest, kind="sbom")
    p.tag("app", "sbom-archive", kept_sbom)  # someone tagged it: it is not just a signature any more
    inventory, client = synced(fresh_registry)
    p.push_image("app", "scratch")  # `scratch` moves on; the referrer stays, untagged, known to the inventory
    inventory.sync(client)
    assert ("app", referrer.digest) in inventory_manifests(inventory.target)

    plan = inventory.plan_removal(client, TagQuery("app", tags=["1.1"]))
    assert {(row.digest, row.why) for row in plan.rows} == {
        (image.digest, "selected"),
        (sig, f"signature of {image.digest}"),
        (att, f"signature of {image.digest}"),
        (referrer.digest, f"referrer of {image.digest}"),
    }
    # Kept for a tag of its own, and the plan says it now points at a removed image.
    assert [(k.digest, k.reason, k.parent, k.tags) for k in plan.skipped] == [
        (kept_sbom, "referrer-kept", image.digest, ("sbom-archive", "sha256-" + image.digest[7:] + ".sbom")),
    ]
    assert inventory.remove(client, plan).failed == []
    assert p.tags("app") == sorted(["sbom-archive", "sha256-" + image.digest[7:] + ".sbom", "scratch"])
    for digest in (image.digest, sig, att, referrer.digest):
        assert not manifest_present(p, "app", digest)
    assert manifest_present(p, "app", kept_sbom)
    assert_inventory_equals_registry(inventory.target, fresh_registry.url, p, tmp_path)


# --- fresh facts ---------------------------------------------------------------------------------------------


def test_the_refresh_sees_tags_pushed_since_the_last_sync(fresh_registry, fresh_pusher, synced):
    p = fresh_pusher
    old = p.push_image("app", "1.1")
    moved = p.push_image("app", "1.2")
    inventory, client = synced(fresh_registry)
    p.tag("app", "prod", old.digest)  # now protected: `prod` is not selected
    newer = p.push_image("app", "1.3")  # now matches '<2'

    stale = inventory.plan_removal(client, TagQuery("app", tags=["<2"]), refresh=False)
    assert {row.digest for row in stale.rows} == {old.digest, moved.digest}
    fresh = inventory.plan_removal(client, TagQuery("app", tags=["<2"]))
    assert fresh.refreshed
    assert {row.digest for row in fresh.rows} == {moved.digest, newer.digest}

    # A selection already made is narrowed, never widened: `old` now carries a tag it was not selected with.
    made = Selection([selected(fresh_registry, "app", old, "1.1"), selected(fresh_registry, "app", moved, "1.2")])
    assert [row.digest for row in inventory.plan_removal(client, made).rows] == [moved.digest]


def test_remove_repos_plans_untagged_manifests_but_not_an_index_s_children(fresh_registry, fresh_pusher, synced):
    p = fresh_pusher
    gone = p.push_image("old", "latest")
    index = p.push_index("old", "2.1")
    p.copy("old", index.digest, "elsewhere", "2.1")
    inventory, client = synced(fresh_registry)
    p.push_image("old", "latest")  # `latest` moves; the refresh of `old` sees it
    plan = inventory.plan_removal(client, RepoQuery("old", raise_intersecting_repo=False))
    # The index is also in `elsewhere`: left in place, and so are its children although untagged.
    assert index.digest not in {row.digest for row in plan.rows}
    assert {(row.digest, row.why) for row in plan.rows if row.reason != "selected"} == {(gone.digest, "untagged")}


# --- verify, right before deleting -------------------------------------------------------------------------------


def test_a_digest_whose_tags_changed_after_the_plan_is_skipped(fresh_registry, fresh_pusher, synced, tmp_path):
    p = fresh_pusher
    gains = p.push_image("app", "1.1")
    signature = p.push_cosign_signature("app", gains.digest)
    loses = p.push_image("app", "1.2")
    p.tag("app", "1.3", loses.digest)
    plain = p.push_image("app", "1.4")
    inventory, client = synced(fresh_registry)
    plan = inventory.plan_removal(client, TagQuery("app", tags=["<2"]))
    assert len(plan.rows) == 4

    p.tag("app", "prod", gains.digest)  # a tag added to a planned digest
    p.push_image("app", "1.3")  # a planned tag moved away
    result = inventory.remove(client, plan)

    assert [o.row.digest for o in result.deleted] == [plain.digest]
    assert {o.row.digest: o.error for o in result.skipped} == {
        gains.digest: "tags changed since the plan: now also tagged prod",
        signature: f"its subject {gains.digest} was not deleted",
        loses.digest: "tags changed since the plan: no longer tagged 1.3",
    }
    assert manifest_present(p, "app", gains.digest) and manifest_present(p, "app", signature)
    assert manifest_present(p, "app", loses.digest)
    assert {r["digest"]: r["outcome"] for r in deletions(inventory.target)} == {
        plain.digest: "deleted", gains.digest: "skipped", signature: "skipped", loses.digest: "skipped",
    }
    # Skipped pairs are untouched in the inventory; a sync brings in what changed in the registry.
    assert ("app", gains.digest) in inventory_manifests(inventory.target)
    inventory.sync(client)
    assert_inventory_equals_registry(inventory.target, fresh_registry.url, p, tmp_path)


def test_an_untagged_child_is_skipped_when_a_new_manifest_may_list_it(fresh_registry, fresh_pusher, synced):
    p = fresh_pusher
    index = p.push_index("multi", "2.1", unique="i")
    inventory, client = synced(fresh_registry)
    plan = inventory.plan_removal(client, TagQuery("multi", tags=["2.1"]))
    assert len(plan.rows) == 3
    # Pushed after the plan: a new index reusing one of the children.
    reuse = p.push_index("multi", "2.2", platforms=(("amd64", "linux", None),), unique="i")
    result = inventory.remove(client, plan)
    assert [o.row.digest for o in result.deleted] == [index.digest]
    assert len(result.skipped) == 2
    assert all(f"has a manifest pushed since the plan ({reuse.digest})" in o.error for o in result.skipped)
    assert registry_tags(p, ["multi"]) == {("multi", "2.2", reuse.digest)}
    assert all(manifest_present(p, "multi", child.digest) for child in index.children.values())


def test_a_refresh_plan_with_nothing_selected_deletes_nothing(fresh_registry, fresh_pusher, synced):
    p = fresh_pusher
    p.push_image("app", "1.1")
    inventory, client = synced(fresh_registry)
    plan = inventory.plan_removal(client, TagQuery("app", tags=["9.9"]))
    assert isinstance(plan, Plan) and plan.rows == [] and plan.bytes_freed == 0
    result = inventory.remove(client, plan)
    assert (result.deleted, result.skipped, result.failed) == ([], [], [])
    assert p.tags("app") == ["1.1"] and deletions(inventory.target) == []


def test_queries_check_their_selectors_when_made():
    with pytest.raises(SelectorError, match="no tags selected"):
        TagQuery(["app"])
    with pytest.raises(SelectorError, match="no repositories selected"):
        RepoQuery([])
    assert TagQuery("app", tags="1.1").repos == ("app",)
    assert RemovalIncomplete.__mro__[1].__name__ == "RegdbError"


def test_the_plan_and_the_removal_are_the_same_on_postgresql(fresh_registry, fresh_pusher, pg_url, tmp_path):
    """The closure and byte count are SQL (a temporary table, NOT EXISTS, string functions): one dialect more."""
    p = fresh_pusher
    p.push_index("multi", "2.1")
    image = p.push_image("multi", "1.1")
    p.push_cosign_signature("multi", image.digest)
    keep = p.push_image("multi", "keep")
    plans = []
    for target in (tmp_path / "inv.db", pg_url):
        with Inventory(target) as inventory, closing(RegistryClient(fresh_registry.url)) as client:
            inventory.sync(client)
            plans.append(inventory.plan_removal(client, TagQuery("multi", tags=["<3"])))
    sqlite_plan, pg_plan = plans
    assert [r.as_dict() for r in pg_plan.rows] == [r.as_dict() for r in sqlite_plan.rows]
    assert pg_plan.bytes_freed == sqlite_plan.bytes_freed > 0
    assert len(pg_plan.rows) == 5  # index, its 2 children, the image, its signature

    with Inventory(pg_url) as inventory, closing(RegistryClient(fresh_registry.url)) as client:
        result = inventory.remove(client, pg_plan)
        assert len(result.deleted) == 5 and result.bytes_freed == pg_plan.bytes_freed
        assert inventory.plan_removal(client, TagQuery("multi", tags=["<3"])).rows == []
    assert p.tags("multi") == ["keep"] and manifest_present(p, "multi", keep.digest)


def test_an_interrupted_removal_still_records_the_deletes_it_sent(fresh_registry, fresh_pusher, synced, monkeypatch,
                                                                  tmp_path):
    import regdb.cleanup.execute as removal

    p = fresh_pusher
    images = [p.push_image("app", f"1.{i}") for i in range(1, 4)]
    inventory, client = synced(fresh_registry)
    plan = inventory.plan_removal(client, TagQuery("app", tags=["<2"]))
    real_wait = removal.wait
    calls = []

    def interrupted_once(futures, timeout=None, return_when="ALL_COMPLETED"):
        # The first wait for DELETE answers (FIRST_COMPLETED; the journal's manifest fetches and the wind-down
        # wait for all) is the one interrupted.
        if return_when != "FIRST_COMPLETED" or calls:
            return real_wait(futures, timeout=timeout, return_when=return_when)
        calls.append(len(futures))
        real_wait(futures)  # the DELETEs reach the registry ...
        raise KeyboardInterrupt  # ... and Ctrl-C arrives before their answers are recorded

    monkeypatch.setattr(removal, "wait", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        inventory.remove(client, plan)
    assert p.tags("app") == []
    assert sorted(r["digest"] for r in deletions(inventory.target) if r["outcome"] == "deleted") == sorted(
        image.digest for image in images
    )
    assert_inventory_equals_registry(inventory.target, fresh_registry.url, p, tmp_path)


def test_a_plan_is_only_carried_out_on_its_own_registry(registry, pusher, repo_name, synced):
    image = pusher.push_image(f"{repo_name}/app", "1.1")
    inventory, client = synced(registry, [f"{repo_name}/app"])
    plan = inventory.plan_removal(client, TagQuery(f"{repo_name}/app", tags=["1.1"]), refresh=False)
    with pytest.raises(RegdbError, match=f"this plan is for {registry.url}, not http://127.0.0.1:9"):
        inventory.remove(RegistryClient("http://127.0.0.1:9"), plan)
    assert manifest_present(pusher, f"{repo_name}/app", image.digest)
