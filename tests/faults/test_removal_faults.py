"""Removal faults: the registry dies half-way, a DELETE fails once, a tag moves between the plan and the DELETE.

What must hold every time: nothing outside the plan is deleted; the ``deletions`` record and the inventory say
exactly what the registry did; a failed run exits 1 listing what was not done; and running the same command
again finishes the job. Every test runs its own registry (it deletes, and some kill it).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from tests.rig.cli import run
from tests.rig.fault_proxy import Answer, DieAfter, FaultProxy, Hook
from tests.rig.state import (
    assert_inventory_equals_registry,
    deletions,
    integrity,
    inventory_manifests,
    manifest_present,
    registry_state,
)


@pytest.fixture
def shop(fresh_registry, fresh_pusher, tmp_path):
    """`app` with eight old releases (1.x, to remove) and what must survive: 2.x, a digest tagged both 1.9 and
    `stable` (not all of its tags selected), and `tool` holding a copy of 2.0."""
    p = fresh_pusher
    old = [p.push_image("app", f"1.{minor}") for minor in range(8)]
    kept = [p.push_image("app", f"2.{minor}") for minor in range(2)]
    both = p.push_image("app", "1.9")
    p.tag("app", "stable", both.digest)
    p.copy("app", kept[0].digest, "tool", "1.0")
    return p, old, kept


def removal(proxy, db, *extra):
    return run("-reg", proxy.url, "--db", db, *extra, "remove-tags", "--yes", "-r", "app", "-t", "<2")


def survivors_intact(p, old, kept):
    """What was never selected is still in the registry, every tag of it."""
    tags = p.tags("app")
    assert {"2.0", "2.1", "1.9", "stable"} <= set(tags), tags
    assert all(manifest_present(p, "app", image.digest) for image in kept)
    assert p.tags("tool") == ["1.0"] and p.head_digest("tool", "1.0") == kept[0].digest


def outcomes(db) -> dict[str, list[str]]:
    by_digest: dict[str, list[str]] = {}
    for row in deletions(db):
        by_digest.setdefault(row["digest"], []).append(row["outcome"])
    return by_digest


@pytest.mark.parametrize("answer_lost", [False, True], ids=["refused", "answer-lost"])
def test_registry_dying_after_half_the_deletes(fresh_registry, shop, tmp_path, short_timeouts, answer_lost):
    p, old, kept = shop
    db = tmp_path / "inv.db"
    with FaultProxy(fresh_registry.url) as proxy:
        assert run("-reg", proxy.url, "--db", db, "sync").exit_code == 0
        # The fifth DELETE kills the registry: before it reaches the registry ("refused"), or after the registry
        # did it but before its answer came back ("answer-lost": the client cannot know it was done).
        proxy.add(DieAfter(method="DELETE", count=4, after_forwarding=answer_lost, on_death=fresh_registry.kill))
        result = removal(proxy, db, "-j", "1")  # one DELETE at a time: "half" is exactly four
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        assert "Error: removal incomplete: 4 of 8 manifests deleted" in result.output
        not_deleted = [line for line in result.output.splitlines() if line.startswith("  not deleted: app@")]
        assert len(not_deleted) == 4, result.output
        assert all(f"cannot reach registry {proxy.url}" in line for line in not_deleted), not_deleted

        fresh_registry.start()
        done = [image for image in old if not manifest_present(p, "app", image.digest)]
        assert len(done) == (5 if answer_lost else 4)
        survivors_intact(p, old, kept)
        record = outcomes(db)
        # The fifth DELETE got no answer either way: the client cannot know, so its intent stays in-flight (and
        # the pair in the inventory) until the next run asks the registry. The other three were never sent.
        assert sorted(record.values()) == [["deleted"]] * 4 + [["failed"]] * 3 + [["in-flight"]]
        assert {d for d, o in record.items() if o == ["deleted"]} <= {image.digest for image in done}
        assert integrity(db) == "ok"
        lost = [d for d, o in record.items() if o == ["in-flight"]]
        assert ("app", lost[0]) in inventory_manifests(db)
        assert (lost[0] in {image.digest for image in done}) == answer_lost

        proxy.clear()
        proxy.start()
        rerun = removal(proxy, db)
    assert rerun.exit_code == 0, rerun.output
    assert all(not manifest_present(p, "app", image.digest) for image in old)
    survivors_intact(p, old, kept)
    assert_inventory_equals_registry(db, fresh_registry.url, p, tmp_path)
    record = outcomes(db)
    # The rerun settled the in-flight row by asking the registry: the record says what the registry did.
    assert sum(o.count("deleted") for o in record.values()) == 8
    assert all(o.count("deleted") == 1 for o in record.values()), record
    assert record[lost[0]][0] == ("deleted" if answer_lost else "failed"), record
    assert set(record) == {image.digest for image in old}  # nothing outside the plan was ever attempted


def test_a_delete_answering_500_once_is_reported_and_a_rerun_finishes(fresh_registry, shop, tmp_path,
                                                                      short_timeouts):
    p, old, kept = shop
    db = tmp_path / "inv.db"
    with FaultProxy(fresh_registry.url) as proxy:
        assert run("-reg", proxy.url, "--db", db, "sync").exit_code == 0
        once = proxy.add(Answer(500, method="DELETE", times=1))
        result = removal(proxy, db)
        assert result.exit_code == 1, result.output
        assert "Error: removal incomplete: 7 of 8 manifests deleted" in result.output
        failed = [line for line in result.output.splitlines() if line.startswith("  not deleted: ")]
        assert len(failed) == 1 and "registry answered 500 UNKNOWN" in failed[0], result.output
        assert once.acted == 1
        assert len(proxy.log(method="DELETE")) == 8  # the 500 was not repeated within the run
        assert_inventory_equals_registry(db, fresh_registry.url, p, tmp_path)
        survivors_intact(p, old, kept)
        rows = deletions(db)
        assert [(r["outcome"], r["http_status"]) for r in rows if r["outcome"] == "failed"] == [("failed", 500)]

        rerun = removal(proxy, db)
    assert rerun.exit_code == 0, rerun.output
    assert "deleted 1, skipped 0, failed 0" in rerun.output
    assert all(not manifest_present(p, "app", image.digest) for image in old)
    survivors_intact(p, old, kept)
    assert_inventory_equals_registry(db, fresh_registry.url, p, tmp_path)


@pytest.mark.parametrize("change", ["tag-added", "tag-moved"])
def test_a_tag_repushed_between_plan_and_delete_is_skipped(fresh_registry, shop, tmp_path, change):
    p, old, kept = shop
    db = tmp_path / "inv.db"
    newcomer = {}

    def repush():
        if change == "tag-added":  # someone tags an old release for a customer: deleting it would destroy that tag
            p.tag("app", "customer-x", old[3].digest)
        else:  # 1.3 is rebuilt: the old digest lost its tag, the new one is not in the plan
            newcomer["image"] = p.push_image("app", "1.3")

    with FaultProxy(fresh_registry.url) as proxy:
        assert run("-reg", proxy.url, "--db", db, "sync").exit_code == 0
        # The removal lists app's tags twice: once to refresh the plan, once to verify it right before the
        # DELETEs. The push lands in between.
        hook = proxy.add(Hook(method="GET", path="^/v2/app/tags/list", every=2, times=1, action=repush))
        result = removal(proxy, db)
    assert hook.acted == 1
    assert result.exit_code == 0, result.output
    assert "deleted 7, skipped 1, failed 0" in result.output
    skipped_lines = [line.split() for line in result.output.splitlines() if line.startswith("skipped ")]
    assert [words[:3] for words in skipped_lines] == [["skipped", "app", old[3].digest]], result.output
    assert " ".join(skipped_lines[0][3:]).startswith("tags changed since the plan: "), result.output
    assert manifest_present(p, "app", old[3].digest)
    assert all(not manifest_present(p, "app", image.digest) for i, image in enumerate(old) if i != 3)
    if change == "tag-added":
        assert p.head_digest("app", "customer-x") == old[3].digest and p.head_digest("app", "1.3") == old[3].digest
    else:
        assert p.head_digest("app", "1.3") == newcomer["image"].digest
    survivors_intact(p, old, kept)
    skipped = [r for r in deletions(db) if r["outcome"] == "skipped"]
    assert [r["digest"] for r in skipped] == [old[3].digest]
    assert "tags changed since the plan" in skipped[0]["error"]
    # Nothing about the skipped digest changed in the inventory: it is there, as planned, with its tag 1.3.
    with closing(sqlite3.connect(db)) as conn, conn:
        assert conn.execute("SELECT tag FROM images WHERE digest = ?", (old[3].digest,)).fetchall() == [("1.3",)]
    assert registry_state(p, ["tool"]) == [("tool", "1.0", kept[0].digest)]
