"""Retention selectors against a real registry: keep the newest N (by version, by build time), by age, untagged
manifests; signatures go with their subject and are never selected or counted on their own; what GC frees.

Queries share the session registry (unique repository names); tests that delete run their own registry."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regdb import RegistryClient
from regdb.cli.core import FLAGS
from regdb.cleanup.policy import RetentionQuery
from regdb.errors import SelectorError
from regdb.selection.retention import Retention, parse_age
from tests.rig.cli import run
from tests.rig.retention import ago, populate, push_index_of, selected, synced
from tests.rig.state import assert_inventory_equals_registry, manifest_present, registry_tags


def sig_tag(digest: str, kind: str = "sig") -> str:
    return "sha256-" + digest.split(":", 1)[1] + "." + kind


# --- keep the newest N ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def versions(registry, tmp_path_factory):
    """One repository with versions, a version pair on one digest, names, and signatures."""
    from tests.rig.pusher import Pusher

    p = Pusher(registry.url)
    repo = "retention-versions/app"
    v = {t: p.push_image(repo, t) for t in ["1.0", "1.1", "1.2", "2.0", "2.1"]}
    p.tag(repo, "1.2.0", v["1.2"].digest)  # one image with two versions: counted once
    p.tag(repo, "latest", v["2.1"].digest)
    p.tag(repo, "stable", v["1.0"].digest)  # a name on an old version: keeps 1.0's digest (all tags must match)
    dev = p.push_image(repo, "dev")
    p.push_cosign_signature(repo, v["2.1"].digest)
    p.push_cosign_signature(repo, v["1.1"].digest)
    inventory = synced(registry.url, tmp_path_factory.mktemp("versions") / "inv.db")
    yield registry, repo, v, dev, inventory
    inventory.close()


def test_keep_latest_by_version_counts_images_and_never_versionless_or_signature_tags(versions):
    registry, repo, v, dev, inventory = versions
    found = inventory.query_retention(registry.url, [repo], retention=Retention(keep_latest=2))
    assert selected(found) == {v["1.2"].digest: ("1.2", "1.2.0"), v["1.1"].digest: ("1.1",)}
    # Two newest kept (2.1 with latest, 2.0); 1.0 carries `stable`, which no version selector selects.
    found = inventory.query_retention(registry.url, [repo], retention=Retention(keep_latest=4))
    assert selected(found) == {}


def test_keep_latest_ranks_within_the_tag_filter_and_honours_excludes(versions):
    registry, repo, v, dev, inventory = versions
    # The newest 1 among the 1.x versions is 1.2: 1.1 goes, 1.0 is held by `stable`, 2.x is not looked at.
    found = inventory.query_retention(registry.url, [repo], retention=Retention(keep_latest=1), tags=["<2"])
    assert selected(found) == {v["1.1"].digest: ("1.1",)}
    found = inventory.query_retention(registry.url, [repo], retention=Retention(keep_latest=1), exclude=["1.1"])
    assert selected(found) == {v["1.2"].digest: ("1.2", "1.2.0"), v["2.0"].digest: ("2.0",)}
    found = inventory.query_retention(registry.url, [repo], retention=Retention(keep_latest=1), match_all_tags=False)
    assert selected(found) == {v["1.2"].digest: ("1.2", "1.2.0"), v["1.1"].digest: ("1.1",),
                               v["2.0"].digest: ("2.0",), v["1.0"].digest: ("1.0", "stable")}


def test_query_tags_takes_the_retention_options(versions):
    registry, repo, v, dev, inventory = versions
    result = run("-reg", registry.url, "--db", inventory.target, "query-tags", "-r", repo, "--keep-latest", "2",
                 "--format", "json")
    assert result.exit_code == 0, result.output
    assert {row["digest"]: row["tags"] for row in json.loads(result.stdout)} == {
        v["1.2"].digest: ["1.2", "1.2.0"], v["1.1"].digest: ["1.1"]}
    plain = run("-reg", registry.url, "--db", inventory.target, "query-tags", "-r", repo, "-t", "<1.2")
    assert plain.exit_code == 0, plain.output
    assert plain.stdout == f"{repo}  {v['1.1'].digest}\n"  # 1.0 also carries `stable`, and stderr says so
    assert f"kept {repo}@{v['1.0'].digest}: also tagged stable, which the selection does not include" in plain.stderr


@pytest.mark.parametrize("args, message", [
    (["--keep-latest", "0"], "--keep-latest must be at least 1: it is how many images each repository keeps"),
    (["--older-than", "90x"],
     "--older-than: bad age '90x': give a duration (12h, 90d, 4w) or an ISO date (2024-01-31)"),
    (["--order-by", "created"], "--order-by only orders --keep-latest: give --keep-latest N too"),
    (["--untagged", "-t", "1.0"], "--untagged selects manifests without tags: -t, -re, -x and -xre do not apply"),
    ([], "no tags selected: give at least one -t TAG|SELECTOR or -re REGEX"),
])
@pytest.mark.parametrize("command", ["query-tags", "remove-tags"])
def test_retention_mistakes_are_usage_errors(versions, command, args, message):
    registry, repo, v, dev, inventory = versions
    result = run("-reg", registry.url, "--db", inventory.target, command, "-r", repo, *args)
    assert result.exit_code == 2, result.output
    assert result.output.endswith(f"Error: {message}\n")


def test_omit_digest_tags_hides_signature_tags_from_listings(versions):
    registry, repo, v, dev, inventory = versions
    signature = sig_tag(v["2.1"].digest)
    shown = run("-reg", registry.url, "--db", inventory.target, "list-tag-names", repo)
    assert shown.exit_code == 0, shown.output
    assert f"{repo}  {signature}" in shown.output.splitlines()
    hidden = run("-reg", registry.url, "--db", inventory.target, "list-tag-names", repo, "--omit-digest-tags")
    assert hidden.exit_code == 0, hidden.output
    assert [line.split()[1] for line in hidden.output.splitlines()] == [
        "1.0", "1.1", "1.2", "1.2.0", "2.0", "2.1", "dev", "latest", "stable"]
    query = run("-reg", registry.url, "--db", inventory.target, "query-tags", "-r", repo, "-re", "sha256-", "1.1",
                "--omit-digest-tags", "--format", "json")
    assert query.exit_code == 0, query.output
    assert [row["tags"] for row in json.loads(query.output)] == [["1.1"]]


@pytest.fixture(scope="module")
def builds(registry, tmp_path_factory):
    """Pull-request builds of known build times, a release, a build without a time, and a `sha256-*` tag on the
    newest image of all (which must not take a place among the newest)."""
    from tests.rig.pusher import Pusher

    p = Pusher(registry.url)
    repo = "retention-builds/app"
    b = {f"pr-{n}": p.push_image(repo, f"pr-{n}", created=ago(days)) for n, days in
         [(1, 40), (2, 30), (3, 20), (4, 10)]}
    b["pr-x"] = p.push_image(repo, "pr-x", created="")
    b["1.0"] = p.push_image(repo, "1.0", created=ago(5))
    newest = p.push_image(repo, "sha256-" + "ab" * 32, created=ago(1))
    inventory = synced(registry.url, tmp_path_factory.mktemp("builds") / "inv.db")
    yield registry, repo, b, newest, inventory
    inventory.close()


def test_keep_latest_by_created_within_a_regex(builds):
    registry, repo, b, newest, inventory = builds
    found = inventory.query_retention(registry.url, [repo], retention=Retention(keep_latest=2, order_by="created"),
                                      regex=["pr-"])
    assert selected(found) == {b["pr-1"].digest: ("pr-1",), b["pr-2"].digest: ("pr-2",)}


def test_keep_latest_by_created_counts_every_tag_but_signatures_and_skips_unknown_build_times(builds):
    registry, repo, b, newest, inventory = builds
    found = inventory.query_retention(registry.url, [repo], retention=Retention(keep_latest=2, order_by="created"))
    # 1.0 (5 days) and pr-4 (10 days) are the newest two: the sha256-* tagged image is not counted.
    assert selected(found) == {b[t].digest: (t,) for t in ("pr-1", "pr-2", "pr-3")}


# --- age ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ages(registry, tmp_path_factory):
    from tests.rig.pusher import Pusher

    p = Pusher(registry.url)
    repo = "retention-ages/app"
    a = {name: p.push_image(repo, name, created=created) for name, created in
         [("d200", ago(200)), ("d100", ago(100)), ("d10", ago(10)), ("unknown", "")]}
    old_child, new_child = p.push_image(repo, None, created=ago(200)), p.push_image(repo, None, created=ago(10))
    other_old = p.push_image(repo, None, created=ago(200), architecture="arm64")
    mixed = push_index_of(p, repo, "multi", [old_child, new_child])  # an index is as old as its newest child
    old = push_index_of(p, repo, "old-multi", [old_child, other_old])
    inventory = synced(registry.url, tmp_path_factory.mktemp("ages") / "inv.db")
    yield registry, repo, a, mixed, old, inventory
    inventory.close()


def test_older_than_a_duration_uses_the_build_time_and_an_index_s_newest_child(ages):
    registry, repo, a, mixed, old, inventory = ages
    found = inventory.query_retention(registry.url, [repo], retention=Retention(older_than="90d"))
    assert selected(found) == {a["d200"].digest: ("d200",), a["d100"].digest: ("d100",), old: ("old-multi",)}
    found = inventory.query_retention(registry.url, [repo], retention=Retention(newer_than="30d"))
    assert selected(found) == {a["d10"].digest: ("d10",), mixed: ("multi",)}


def test_older_than_an_iso_date_and_an_age_window(ages):
    registry, repo, a, mixed, old, inventory = ages
    cutoff = (datetime.now(timezone.utc) - timedelta(days=150)).date().isoformat()
    found = inventory.query_retention(registry.url, [repo], retention=Retention(older_than=cutoff))
    assert selected(found) == {a["d200"].digest: ("d200",), old: ("old-multi",)}
    found = inventory.query_retention(registry.url, [repo], retention=Retention(older_than="90d", newer_than="21w"))
    assert selected(found) == {a["d100"].digest: ("d100",)}
    found = inventory.query_retention(registry.url, [repo], retention=Retention(older_than="1d"), regex=["d"])
    assert selected(found) == {a[t].digest: (t,) for t in ("d200", "d100", "d10")}


def test_parse_age_units_and_dates():
    now = datetime(2026, 3, 1, 12, 0, 0)
    assert parse_age("12h", now=now) == datetime(2026, 3, 1, 0, 0, 0)
    assert parse_age("2d", now=now) == datetime(2026, 2, 27, 12, 0, 0)
    assert parse_age("1w", now=now) == datetime(2026, 2, 22, 12, 0, 0)
    assert parse_age("2024-01-31", now=now) == datetime(2024, 1, 31)
    assert parse_age("2024-01-31T12:00:00+02:00", now=now) == datetime(2024, 1, 31, 10, 0, 0)


@pytest.mark.parametrize("kwargs, message", [
    ({"keep_latest": 0}, "--keep-latest must be at least 1: it is how many images each repository keeps"),
    ({"older_than": "90x"},
     "--older-than: bad age '90x': give a duration (12h, 90d, 4w) or an ISO date (2024-01-31)"),
    ({"newer_than": "99999999999d"},
     "--newer-than: bad age '99999999999d': give a duration (12h, 90d, 4w) or an ISO date (2024-01-31)"),
    ({"order_by": "created"}, "--order-by only orders --keep-latest: give --keep-latest N too"),
    ({"untagged": True, "keep_latest": 3},
     "--untagged selects manifests without tags: --keep-latest cannot rank them"),
])
def test_bad_retention_values_are_named(kwargs, message):
    """The command line's words (its flags) for the fields the library names by their Python names."""
    with pytest.raises(SelectorError) as error:
        Retention(**kwargs)
    assert error.value.worded(FLAGS) == message
    library = str(error.value)
    assert "--" not in library and set(kwargs) & set(error.value.fields)
    for field in error.value.fields:
        assert field in library


# --- untagged manifests, and removal for real ------------------------------------------------------------------


def test_untagged_after_an_index_removal_removes_only_what_nothing_holds(fresh_registry, fresh_pusher, tmp_path):
    p, repo = fresh_pusher, "app"
    multi = p.push_index(repo, "multi", oci=True, created=ago(3))
    kept = p.push_index(repo, "kept-multi", oci=True)
    moved_from = p.push_image(repo, "1.0", created=ago(200))
    subject = p.push_image(repo, "2.0")
    referrer = p.push_image(repo, "ref", oci=True, subject={
        "mediaType": subject.media_type, "digest": subject.digest, "size": subject.size})
    db = tmp_path / "inv.db"
    inventory = synced(fresh_registry.url, db)
    # Outside regdb: the index is deleted (its children stay, untagged), 1.0 and `ref` move on.
    assert p.delete(repo, multi.digest) == 202
    moved_to = p.push_image(repo, "1.0")
    p.push_image(repo, "ref")
    client = RegistryClient(fresh_registry.url)

    only_old = inventory.plan_removal(client, RetentionQuery([repo], retention=Retention(untagged=True,
                                                                                          older_than="90d")))
    assert [(row.digest, row.tags, row.reason) for row in only_old.rows] == [(moved_from.digest, (), "selected")]

    plan = inventory.plan_removal(client, RetentionQuery([repo], retention=Retention(untagged=True)))
    children = {child.digest for child in multi.children.values()}
    assert {row.digest for row in plan.rows} == children | {moved_from.digest}
    assert {row.reason for row in plan.rows} == {"selected"}
    assert plan.bytes_freed > 0
    before = registry_tags(p, [repo])
    result = inventory.remove(client, plan)
    assert len(result.deleted) == 3 and result.bytes_freed == plan.bytes_freed

    for digest in children | {moved_from.digest}:
        assert not manifest_present(p, repo, digest)
    # What something still holds stays: a present index's children, the referrer of a present subject.
    for digest in [*(c.digest for c in kept.children.values()), referrer.digest, subject.digest, moved_to.digest]:
        assert manifest_present(p, repo, digest), digest
    assert registry_tags(p, [repo]) == before
    assert_inventory_equals_registry(db, fresh_registry.url, p, tmp_path)
    inventory.close()


def test_a_signed_image_goes_with_its_signatures_and_signatures_are_never_counted(fresh_registry, fresh_pusher,
                                                                                   tmp_path):
    p, repo = fresh_pusher, "app"
    v = {t: p.push_image(repo, t) for t in ["1.0", "2.0", "3.0"]}
    sig_1 = p.push_cosign_signature(repo, v["1.0"].digest)
    att_1 = p.push_cosign_signature(repo, v["1.0"].digest, kind="att")
    sig_3 = p.push_cosign_signature(repo, v["3.0"].digest)
    db = tmp_path / "inv.db"
    synced(fresh_registry.url, db).close()

    result = run("-reg", fresh_registry.url, "--db", db, "remove-tags", "-r", repo, "--keep-latest", "1", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "dry run: nothing deleted" in result.output
    result = run("-reg", fresh_registry.url, "--db", db, "remove-tags", "--yes", "-r", repo, "--keep-latest", "1")
    assert result.exit_code == 0, result.output
    assert "deleted 4, skipped 0, failed 0" in result.output
    assert registry_tags(p, [repo]) == {(repo, "3.0", v["3.0"].digest), (repo, sig_tag(v["3.0"].digest), sig_3)}
    for digest in (v["1.0"].digest, v["2.0"].digest, sig_1, att_1):
        assert not manifest_present(p, repo, digest)
    assert_inventory_equals_registry(db, fresh_registry.url, p, tmp_path)


def test_reclaimable_view_gives_what_the_removal_reported_and_gc_frees(fresh_registry, fresh_pusher, tmp_path):
    p, repo = fresh_pusher, "app"
    shared = b"a layer both images use " * 50
    old = p.push_image(repo, "1.0", layers=[shared, b"only 1.0 " * 80], created=ago(100))
    p.push_image(repo, "2.0", layers=[shared, b"only 2.0 " * 90], created=ago(1))
    db = tmp_path / "inv.db"
    inventory = synced(fresh_registry.url, db)
    result = inventory.remove(RegistryClient(fresh_registry.url),
                              RetentionQuery([repo], retention=Retention(older_than="30d")))
    assert [o.row.digest for o in result.deleted] == [old.digest]
    with inventory.sql("SELECT kind, size FROM reclaimable ORDER BY kind") as rows:
        freed = [tuple(row) for row in rows]
    assert freed == [("config", old.config_size), ("layer", len(b"only 1.0 " * 80)), ("manifest", old.size)]
    assert sum(size for _, size in freed) == result.bytes_freed
    inventory.close()
    store = fresh_registry.blob_store_bytes()
    fresh_registry.stop()
    fresh_registry.garbage_collect()
    shrunk = store - fresh_registry.blob_store_bytes()
    # distribution 2.8's collection keeps the manifest blob itself; configs and layers go.
    assert shrunk in (result.bytes_freed, result.bytes_freed - old.size), (shrunk, result.bytes_freed)


def test_signatures_view_shows_each_with_its_subject(fresh_registry, fresh_pusher, tmp_path):
    p, repo = fresh_pusher, "app"
    image = p.push_image(repo, "1.0")
    gone = p.push_image(repo, "0.9")
    sig = p.push_cosign_signature(repo, image.digest)
    sbom = p.push_cosign_signature(repo, image.digest, kind="sbom")
    orphan = p.push_cosign_signature(repo, gone.digest)
    referrer = p.push_image(repo, "sbom-1.0", oci=True,
                            subject={"mediaType": image.media_type, "digest": image.digest, "size": image.size})
    assert p.delete(repo, gone.digest) == 202  # a signature left behind by its image
    inventory = synced(fresh_registry.url, tmp_path / "inv.db")
    with inventory.sql("SELECT repo, subject, digest, tag, kind, subject_present FROM signatures") as rows:
        found = {tuple(row) for row in rows}
    assert found == {
        (repo, image.digest, sig, sig_tag(image.digest), "sig", 1),
        (repo, image.digest, sbom, sig_tag(image.digest, "sbom"), "sbom", 1),
        (repo, gone.digest, orphan, sig_tag(gone.digest), "sig", 0),
        (repo, image.digest, referrer.digest, None, "referrer", 1),
    }
    assert inventory.signatures(fresh_registry.url, [(repo, image.digest)]) == {
        (repo, image.digest): [sig_tag(image.digest, "sbom"), sig_tag(image.digest), f"referrer {referrer.digest}"]
    }
    inventory.close()


# --- the SQL against a plain-Python reference ------------------------------------------------------------------

TAG_POOL = ["1.0", "1.0.0", "1.1", "v1.2", "2.0", "2.0-rc1", "10.0", "latest", "dev", "pr-1", "pr-2",
            "sha256-" + "ab" * 32, "sha256-" + "cd" * 32 + ".sig"]
NOW = datetime(2026, 6, 1)


def reference(repos, created, ids, retention: Retention, match_all_tags: bool) -> set[tuple[str, str]]:
    """Issue #7's keep-latest and age rules, written plainly: which (repo, label) pairs are selected."""
    from regdb.versions import version_key

    chosen = set()
    for repo, tags in repos.items():
        counted = {t: label for t, label in tags.items() if not t.startswith("sha256-")}
        if retention.ordering == "version":
            counted = {t: label for t, label in counted.items() if version_key(t) is not None}
            rank_key = {label: (max(version_key(t) for t, other in counted.items() if other == label),)
                        for label in set(counted.values())}
        else:
            rank_key = {}
            for label in set(counted.values()):
                if created[label] is not None:
                    keys = [version_key(t) for t, other in counted.items() if other == label and version_key(t)]
                    rank_key[label] = (created[label], (1, max(keys)) if keys else (0, ""))
        order = sorted(rank_key, key=lambda label: (rank_key[label], ids[label]), reverse=True)
        beyond = set(order[retention.keep_latest:]) if retention.keep_latest else None

        def tag_selected(tag, label, beyond=beyond):
            if tag.startswith("sha256-"):
                return False
            if beyond is not None:
                if label not in beyond or (retention.ordering == "version" and version_key(tag) is None):
                    return False
            when = created[label]
            if retention.older_cutoff and (when is None or not when < retention.older_cutoff):
                return False
            return True

        for label in set(tags.values()):
            mine = [t for t, other in tags.items() if other == label]
            picked = [tag_selected(t, label) for t in mine]
            if (all(picked) if match_all_tags else any(picked)):
                chosen.add((repo, label))
    return chosen


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    assignment=st.lists(st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(TAG_POOL),
                                  st.sampled_from(["i1", "i2", "i3", "i4", "i5"])), max_size=14),
    days=st.lists(st.sampled_from([None, 5, 50, 200]), min_size=5, max_size=5),  # few values: ties happen
    keep_latest=st.one_of(st.none(), st.integers(1, 4)),
    order_by=st.sampled_from([None, "created"]),
    older_than=st.one_of(st.none(), st.sampled_from(["30d", "100d"])),
    match_all_tags=st.booleans(),
)
def test_retention_sql_agrees_with_the_plain_python_rules(memory_inventory, assignment, days, keep_latest,
                                                          order_by, older_than, match_all_tags):
    repos: dict[str, dict[str, str]] = {"a": {}, "b": {}}
    for repo, tag, label in assignment:
        repos[repo][tag] = label
    created = {f"i{n + 1}": (NOW - timedelta(days=d) if d is not None else None) for n, d in enumerate(days)}
    if keep_latest is None and older_than is None:
        keep_latest = 2
    retention = Retention(keep_latest=keep_latest, order_by=order_by if keep_latest else None,
                          older_than=older_than, now=NOW)
    from regdb.selection.selectors import query_tags

    with memory_inventory.engine.connect() as conn:
        transaction = conn.begin()
        try:
            registry_id = populate(conn, None, repos, created)
            ids = {label: conn.exec_driver_sql("SELECT id FROM digests WHERE digest = ?",
                                               ("sha256:" + hashlib.sha256(label.encode()).hexdigest(),)).scalar()
                   for label in created}
            found = query_tags(conn, registry_id, ["a", "b"], match_all_tags=match_all_tags,
                               raise_intersecting_repo=False, retention=retention)
        finally:
            transaction.rollback()
    labels = {"sha256:" + hashlib.sha256(label.encode()).hexdigest(): label for label in created}
    assert {(row.repo, labels[row.digest]) for row in found} == reference(repos, created, ids, retention,
                                                                          match_all_tags)


@pytest.fixture(scope="module")
def memory_inventory():
    from regdb import Inventory

    with Inventory(":memory:") as inventory:
        yield inventory


def test_images_of_one_build_time_rank_by_version_then_by_digest(memory_inventory):
    from regdb.selection.selectors import query_tags

    same = datetime(2026, 1, 1)
    repos = {"a": {"1.0": "i1", "2.0": "i2", "dev": "i3", "nightly": "i4"}}
    created = {"i1": same, "i2": same, "i3": same, "i4": same}
    with memory_inventory.engine.connect() as conn:
        transaction = conn.begin()
        try:
            registry_id = populate(conn, None, repos, created)
            ranked = [query_tags(conn, registry_id, ["a"], retention=Retention(keep_latest=n, order_by="created"))
                      for n in (1, 2, 3)]
        finally:
            transaction.rollback()
    label = {"sha256:" + hashlib.sha256(name.encode()).hexdigest(): name for name in created}
    # 2.0 before 1.0 (higher version), then the images without a version, the one fetched later first.
    assert [sorted(label[row.digest] for row in selection) for selection in ranked] == [
        ["i1", "i3", "i4"], ["i3", "i4"], ["i3"]]


def test_retention_on_postgresql_answers_as_on_sqlite(pg_url, memory_inventory):
    """Window functions, row-value IN and the age comparisons, on both databases."""
    from regdb import Inventory
    from regdb.selection.selectors import query_tags

    repos = {"a": {"1.0": "i1", "1.1": "i2", "2.0": "i3", "latest": "i3", "pr-1": "i4", "pr-2": "i5",
                   "sha256-" + "ab" * 32 + ".sig": "i6"},
             "b": {"0.1": "i1", "0.2": "i7"}}
    created = {"i1": NOW - timedelta(days=200), "i2": NOW - timedelta(days=100), "i3": NOW - timedelta(days=5),
               "i4": NOW - timedelta(days=40), "i5": None, "i6": NOW, "i7": NOW - timedelta(days=1), "i8": None,
               "i9": NOW - timedelta(days=300)}
    untagged = {"a": ["i8", "i9"]}
    queries = [
        dict(retention=Retention(keep_latest=1, now=NOW)),
        dict(retention=Retention(keep_latest=2, order_by="created", now=NOW)),
        dict(retention=Retention(keep_latest=1, order_by="created", now=NOW), regex=["pr-"]),
        dict(retention=Retention(older_than="30d", now=NOW)),
        dict(retention=Retention(older_than="30d", newer_than="150d", now=NOW), match_all_tags=False),
        dict(retention=Retention(untagged=True, now=NOW)),
        dict(retention=Retention(untagged=True, older_than="250d", now=NOW)),
    ]

    def answers(engine) -> list[list[tuple]]:
        with engine.connect() as conn:
            transaction = conn.begin()
            try:
                registry_id = populate(conn, None, repos, created, untagged)
                return [[(r.repo, r.digest, r.tags) for r in query_tags(conn, registry_id, ["a", "b"], **q)]
                        for q in queries]
            finally:
                transaction.rollback()

    on_sqlite = answers(memory_inventory.engine)
    with Inventory(pg_url) as inventory:
        assert answers(inventory.engine) == on_sqlite
    assert [len(rows) for rows in on_sqlite] == [3, 2, 0, 4, 2, 2, 1]
