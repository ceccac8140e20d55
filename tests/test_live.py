"""``regdb listen`` against the real registry: notifications keep the inventory current without any sync.

The registry (Debian's docker-registry, distribution 2.8) is configured with ``notifications.endpoints``
pointing at a ``regdb listen`` process each test starts; pushes are skopeo's or the rig's, pulls skopeo's,
deletes regdb's. Every wait is for a condition (``wait_for``), bounded.
"""

from __future__ import annotations

import json
import sqlite3
import uuid

import pytest
import requests

from regdb import Inventory, RegistryClient
from regdb.inventory.db import write_transaction
from tests.rig.cli import run
from tests.rig.layout import make_oci_layout, skopeo_copy
from tests.rig.live import Live, skopeo_pull, start_live, wait_for
from tests.rig.pusher import Pusher
from tests.rig.registry import notifications_config, start_registry


@pytest.fixture
def live(registry_binary, tmp_path) -> Live:
    setup = start_live(tmp_path / "live")
    yield setup
    setup.stop()


def synced_state(registry_url: str, path) -> set[tuple[str, str, str]]:
    """What a plain ``regdb sync`` into a fresh inventory records: the reference the listener must equal."""
    with Inventory(path) as inventory:
        inventory.sync(RegistryClient(registry_url))
    with sqlite3.connect(path) as conn:
        return set(conn.execute("SELECT repo, tag, digest FROM images").fetchall())


def repo_digests(live: Live) -> set[tuple[str, str]]:
    return set(live.query(
        "SELECT repos.name, digests.digest FROM repo_digests JOIN repos ON repos.id = repo_digests.repo_id "
        "JOIN digests ON digests.id = repo_digests.digest_id"))


def test_push_move_pull_delete_reach_the_inventory_without_a_sync(live, tmp_path):
    host = live.registry.host
    first = skopeo_copy(make_oci_layout(tmp_path / "a", "v1"), "v1", host, "team/app", "1.0")
    wait_for(lambda: ("team/app", "1.0", first) in live.tags(), "the pushed tag in the inventory")
    # The listener fetched the manifest and its config from the registry, as the sync does.
    assert live.query("SELECT architecture, os, kind FROM digests WHERE digest = ?", first) == [
        ("amd64", "linux", "image")]

    second = skopeo_copy(make_oci_layout(tmp_path / "b", "v1"), "v1", host, "team/app", "1.0")
    wait_for(lambda: ("team/app", "1.0", second) in live.tags(), "the moved tag")
    assert second != first

    for i in range(3):
        skopeo_pull(host, "team/app", "1.0", tmp_path / f"pull{i}")
    wait_for(lambda: live.query("SELECT gets FROM pulls WHERE digest = ?", second) == [(3,)], "three pulls")

    # regdb's own requests are not uses: a sync HEADs every tag, and it must not count.
    assert run("-reg", live.registry.url, "--db", tmp_path / "other.db", "sync").exit_code == 0
    result = run("-reg", live.registry.url, "--db", live.db, "remove-tags", "-r", "team/app", "-t", "1.0", "--yes")
    assert result.exit_code == 0, result.output
    wait_for(lambda: live.settled() and ("team/app", second) not in repo_digests(live), "the delete applied")
    assert live.query("SELECT gets, heads FROM pulls WHERE digest = ?", second) == [(3, 0)]
    assert live.query("SELECT count(*) FROM pulls WHERE digest = ?", first) == [(0,)]

    history = live.query("SELECT tag, digest, source, valid_to IS NULL, ended_by FROM tag_history ORDER BY id")
    # The removal ends the tag's stretch in its own transaction, and the registry's delete event reaches the
    # listener at about the same moment: whichever is first closes it, the other finds it closed.
    assert history[0] == ("1.0", first, "event", 0, "event")
    assert history[1][:4] == ("1.0", second, "event", 0) and history[1][4] in ("event", "removal")
    assert len(history) == 2
    assert live.tags() == synced_state(live.registry.url, tmp_path / "reference.db") == set()
    assert live.query("SELECT count(*) FROM rejected_events") == [(0,)]


def _event(repo="team/app", *, action="push", tag="1.0", digest=None, url=None, instance="instance-1", **extra):
    target = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "repository": repo,
              "digest": digest or "sha256:" + uuid.uuid4().hex * 2, "size": 100, "length": 100}
    if tag:
        target["tag"] = tag
    if url:
        target["url"] = url
    event = {"id": str(uuid.uuid4()), "timestamp": "2026-12-01T10:00:00.123456789Z", "action": action,
             "target": target, "request": {"method": "GET" if action == "pull" else "PUT", "useragent": "test"},
             "actor": {}, "source": {"addr": "x", "instanceID": instance}}
    event.update(extra)
    return event


def test_bad_input_is_refused_or_rejected_and_later_events_still_apply(live, httpserver):
    listener = live.listener
    pull = _event(action="pull", digest="sha256:" + "a" * 64)
    assert listener.post({"events": [pull]}, token=None).status_code == 401
    assert listener.post({"events": [pull]}, token="wrong").status_code == 401
    assert listener.post(b"x" * (1024 * 1024 + 1)).status_code == 413
    assert listener.post(b"{not json").status_code == 400
    assert listener.post(b"\xff\xfe").status_code == 400

    # An event naming another host's URL: the listener fetches from its own registry only (where this digest
    # does not exist), so the event is rejected and the other host never hears a request.
    elsewhere = _event(url=httpserver.url_for("/v2/team/app/manifests/x"))
    shapes = [
        {"events": "not a list"},
        {"events": [{"id": "no-action"}]},
        {"events": [_event(repo="UPPER/case")]},
        {"events": [_event(tag="bad tag!")]},
        {"events": [_event(digest="sha256:short")]},
        {"events": [elsewhere]},
    ]
    for body in shapes:
        assert listener.post(body).status_code == 200, body
    assert listener.post({"events": [pull]}).status_code == 200
    assert listener.post({"events": [pull]}).status_code == 200  # the same id again: applied once
    wait_for(lambda: live.query("SELECT gets FROM pulls") == [(1,)] and live.settled(), "the good event applied")
    reasons = [row[0] for row in live.query("SELECT reason FROM rejected_events ORDER BY id")]
    assert reasons[:5] == [
        "envelope has no 'events' list", "event has no action", "invalid repository name 'UPPER/case'",
        "invalid tag 'bad tag!'", "invalid digest 'sha256:short'"]
    assert reasons[5].startswith(f"could not fetch team/app@{elsewhere['target']['digest']}")
    assert len(reasons) == 6
    assert httpserver.log == []
    assert live.query("SELECT count(*) FROM tags") == [(0,)]  # nothing half-applied
    metrics = requests.get(listener.url + "/metrics", timeout=5).text
    assert "regdb_events_rejected_total 6.0" in metrics
    assert 'regdb_requests_refused_total{status="401"} 2.0' in metrics
    assert "token" not in listener.log() and "s3cret" not in listener.log()


def test_the_listener_refuses_to_start_without_a_secret(tmp_path):
    result = run("-reg", "http://127.0.0.1:1", "--db", tmp_path / "x.db", "listen")
    assert result.exit_code == 2
    assert "no --token-file" in result.output
    assert not (tmp_path / "x.db").exists()


def test_killed_during_a_burst_then_restarted_applies_every_event_once(live, tmp_path):
    pusher = Pusher(live.registry.url)
    pushed = {}
    gets = 0
    for i in range(15):
        image = pusher.push_image("burst/app", f"v{i}")
        pushed[f"v{i}"] = image.digest
        if i % 3 == 0:
            pusher.get_manifest("burst/app", f"v{i}")  # python-requests: a use
            gets += 1
        if i == 5:
            live.listener.kill()  # mid-burst: the registry keeps what it could not deliver and re-sends it
    live.listener.start()
    expected = {("burst/app", tag, digest) for tag, digest in pushed.items()}
    wait_for(lambda: live.tags() == expected and live.settled(), "every tag after the restart", timeout=30)
    # Once more after the registry's retries have surely arrived: the last event applied is the last pushed.
    wait_for(lambda: live.query("SELECT sum(gets) FROM pulls") == [(gets,)], "the pulls, counted once each")
    assert live.tags() == synced_state(live.registry.url, tmp_path / "reference.db")
    assert live.query("SELECT count(*) FROM tag_history") == [(15,)]
    # The listener was down: whatever a registry gave up re-sending meanwhile would be missing, so the window
    # of observed events ends there and a new one begins.
    windows = live.query("SELECT ended_at IS NULL, end_reason FROM observed_windows ORDER BY id")
    assert windows == [(0, "the listener was not running between these events"), (1, None)]
    assert live.query("SELECT count(*) FROM rejected_events") == [(0,)]


def test_events_wait_in_the_journal_while_a_sync_holds_the_write_lock(live, tmp_path):
    pusher = Pusher(live.registry.url)
    pusher.push_image("locked/app", "1.0")
    wait_for(lambda: len(live.tags()) == 1, "the first push")
    with Inventory(live.db) as inventory, write_transaction(inventory.engine):  # what a running sync holds
        image = pusher.push_image("locked/app", "2.0")  # the registry hears 200 for each event meanwhile
        wait_for(lambda: live.listener.pending() > 0, "events journaled while locked")
        assert ("locked/app", "2.0", image.digest) not in live.tags()
    wait_for(lambda: ("locked/app", "2.0", image.digest) in live.tags(), "the events applied after the lock")


def test_an_event_regdb_cannot_apply_does_not_wedge_the_registry(registry_binary, tmp_path):
    # The listener is down while an image is pushed and deleted again: the registry holds both events and
    # re-sends them. When the listener comes up, the push cannot be applied (the manifest is gone): recorded
    # as rejected, answered 200, and everything after it is delivered and applied.
    live = start_live(tmp_path / "live", start_listener=False)
    try:
        pusher = Pusher(live.registry.url)
        gone = pusher.push_image("wedge/app", "old")
        assert pusher.delete("wedge/app", gone.digest) == 202
        live.listener.start()
        kept = pusher.push_image("wedge/app", "new")
        wait_for(lambda: live.tags() == {("wedge/app", "new", kept.digest)} and live.settled(), "the later push")
        reasons = live.query("SELECT reason FROM rejected_events")
        assert len(reasons) == 1 and gone.digest in reasons[0][0]
        assert live.query("SELECT tag, valid_to IS NULL FROM tag_history") == [("new", 1)]
    finally:
        live.stop()


def test_distribution_delivery_facts(registry_binary, tmp_path, httpserver):
    """Pinned facts of distribution 2.8's notifications, which the listener's answers are designed around:
    one event per POST, the same event re-sent on a non-2xx answer, later events held back behind it."""
    posts = []

    def handler(request):
        from werkzeug import Response

        body = json.loads(request.data)
        posts.append(body)
        return Response("no", status=500 if len(posts) <= 3 else 200)

    httpserver.expect_request("/events", method="POST").respond_with_handler(handler)
    registry = start_registry(tmp_path / "registry", extra=notifications_config(httpserver.url_for("/events"),
                                                                                  backoff="50ms"))
    try:
        pusher = Pusher(registry.url)
        image = pusher.push_image("facts/app", "1.0")  # config, layer, manifest: three events
        wait_for(lambda: len(posts) >= 3 + 3, "the events after the retries")
    finally:
        registry.stop()
    assert all(len(body["events"]) == 1 for body in posts)
    ids = [body["events"][0]["id"] for body in posts]
    assert len(set(ids[:4])) == 1  # three 500s, then the same event once more, answered 200
    # Serial: the manifest's event came only after the blobs' events were through, in push order.
    delivered = [body["events"][0]["target"]["digest"] for body in posts[3:6]]
    assert delivered == [image.config_digest, image.layers[0][0], image.digest]


def test_history_changes_and_status_commands(live):
    pusher = Pusher(live.registry.url)
    first = pusher.push_image("cmd/app", "latest")
    second = pusher.push_image("cmd/app", "latest")
    pusher.push_image("cmd/app", "1.0")
    wait_for(lambda: len(live.tags()) == 2 and live.settled(), "the pushes")
    url = live.registry.url
    result = run("-reg", url, "--db", live.db, "history", "-r", "cmd/app", "-t", "latest", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["digest"], r["valid_to"] is None) for r in rows] == [(first.digest, False), (second.digest, True)]

    result = run("-reg", url, "--db", live.db, "changes", "--since", "1h", "--format", "json")
    assert result.exit_code == 0, result.output
    changes = sorted((c["change"], c["tag"], c["old"], c["new"]) for c in json.loads(result.output))
    assert changes == sorted([("added", "latest", None, first.digest), ("moved", "latest", first.digest, second.digest),
                              ("added", "1.0", None, pushed_digest(live, "1.0"))])
    result = run("-reg", url, "--db", live.db, "changes")
    assert result.exit_code == 1 and "no record of a complete sync" in result.output

    result = run("--db", live.db, "status", "--format", "json")
    assert result.exit_code == 0, result.output
    [status] = json.loads(result.output)
    assert status["tags"] == 2 and status["last_complete_sync"] is None and status["observed_since"]
    assert status["observed_until"] is None and status["rejected_events"] == 0
    assert run("--db", live.db, "status").exit_code == 0


def pushed_digest(live: Live, tag: str) -> str:
    return live.query("SELECT digest FROM images WHERE tag = ?", tag)[0][0]


def test_the_sync_writes_tag_history_from_snapshot_to_snapshot(fresh_registry, fresh_pusher, tmp_path):
    db = tmp_path / "inv.db"
    one = fresh_pusher.push_image("hist/app", "latest")
    fresh_pusher.push_image("hist/app", "1.0")
    fresh_pusher.push_image("hist/gone", "x")

    def sync():
        assert run("-reg", fresh_registry.url, "--db", db, "sync").exit_code == 0

    sync()
    two = fresh_pusher.push_image("hist/app", "latest")
    fresh_pusher.delete("hist/app", fresh_pusher.head_digest("hist/app", "1.0"))
    sync()
    sync()  # nothing changed: nothing written
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT repo, tag, digest, valid_to IS NULL, source, ended_by FROM tag_history "
                            "WHERE repo = 'hist/app' ORDER BY tag, id").fetchall()
        result = run("-reg", fresh_registry.url, "--db", db, "changes", "--since-sync", 1, "--format", "json")
    assert [(r[1], r[2], r[3], r[5]) for r in rows] == [
        ("1.0", rows[0][2], 0, "sync"), ("latest", one.digest, 0, "sync"), ("latest", two.digest, 1, None)]
    assert result.exit_code == 0, result.output
    assert sorted((c["change"], c["tag"]) for c in json.loads(result.output)) == [("moved", "latest"),
                                                                                 ("removed", "1.0")]


def test_two_listeners_on_one_postgresql_inventory(registry_binary, tmp_path, pg_url):
    """The registry notifies both; each event is applied once, whichever listener gets there first."""
    from sqlalchemy import create_engine, text

    from tests.rig.live import ListenerProcess
    from tests.rig.loopback import free_port

    token = "pg-secret"
    ports = [free_port(), free_port()]
    endpoints = [notifications_config(f"http://127.0.0.1:{port}/events", token=token, name=f"regdb{i}",
                                      backoff="100ms")["notifications"]["endpoints"][0]
                 for i, port in enumerate(ports)]
    registry = start_registry(tmp_path / "registry", extra={"notifications": {"endpoints": endpoints}})
    listeners = [ListenerProcess(tmp_path / f"listener{i}", registry.url, pg_url, port, token)
                 for i, port in enumerate(ports)]
    engine = create_engine(pg_url)
    try:
        for listener in listeners:
            listener.start()  # one after the other: the first creates the schema
        pusher = Pusher(registry.url)
        pulls = 0
        for i in range(6):
            pusher.push_image("pg/app", f"v{i}")
            if i % 2:
                pusher.get_manifest("pg/app", f"v{i}")
                pulls += 1
        pusher.push_image("pg/app", "v0")  # a move

        def state():
            with engine.connect() as conn:
                return set(conn.execute(text("SELECT repo, tag, digest FROM images")).all())

        expected = synced_state(registry.url, tmp_path / "reference.db")
        wait_for(lambda: state() == expected and all(listener.pending() == 0 for listener in listeners),
                 "both listeners")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT sum(gets) FROM pulls")).scalar() == pulls
            assert conn.execute(text("SELECT count(*) FROM tag_history")).scalar() == 7
            assert conn.execute(text("SELECT count(*) FROM rejected_events")).scalar() == 0
    finally:
        engine.dispose()
        for listener in listeners:
            listener.stop()
        registry.stop()


def test_retention_by_use_selects_only_what_nobody_pulled(live, tmp_path):
    pusher = Pusher(live.registry.url)
    pulled = pusher.push_image("use/app", "1.0")
    idle = pusher.push_image("use/app", "2.0")
    index = pusher.push_index("use/app", "multi")
    child = next(iter(index.children.values()))
    pusher.get_manifest("use/app", "1.0")
    pusher.get_manifest("use/app", child.digest)  # a client reading the index pulls a child by digest
    wait_for(lambda: live.query("SELECT count(*) FROM pulls") == [(2,)] and live.settled(), "the pulls")
    url = live.registry.url

    def query(*args):
        return run("-reg", url, "--db", live.db, "query-tags", "-r", "use/app", *args)

    # The inventory has seen events for seconds, not 30 days: it cannot say what was unused for that long.
    result = query("--not-pulled-for", "30d")
    assert result.exit_code == 2
    assert "--not-pulled-for 30d: the inventory has observed pulls only since" in result.output
    assert "Traceback" not in result.output
    result = query("-t", "2.0", "--keep-pulled-within", "30d")
    assert result.exit_code == 2 and "--keep-pulled-within 30d" in result.output

    with sqlite3.connect(live.db) as conn:  # as if the listener had been running for 40 days
        conn.execute("UPDATE observed_windows SET started_at = datetime('now', '-40 days')")
    result = query("--not-pulled-for", "30d", "--format", "json")
    assert result.exit_code == 0, result.output
    assert [row["digest"] for row in json.loads(result.output)] == [idle.digest]
    result = query("-t", "1.0", "2.0", "multi", "--keep-pulled-within", "7d", "--format", "json")
    assert [row["digest"] for row in json.loads(result.output)] == [idle.digest]

    policy = tmp_path / "policy.toml"
    policy.write_text('[[rule]]\nrepos = ["use/*"]\nnot_pulled_for = "30d"\n')
    result = run("-reg", url, "--db", live.db, "apply", policy, "--dry-run", "--format", "json")
    assert result.exit_code == 0, result.output
    planned = json.loads(result.output)
    assert [row["digest"] for row in planned["plan"]["rows"]] == [idle.digest]
    kept = {row["tag"]: row["reason"] for row in planned["rules"][0]["kept"]}
    assert kept["1.0"].startswith("pulled since") and kept["multi"].startswith("pulled since")

    result = run("-reg", url, "--db", live.db, "remove-tags", "-r", "use/app", "--not-pulled-for", "30d", "--yes")
    assert result.exit_code == 0, result.output
    assert pusher.tags("use/app") == ["1.0", "multi"]  # on the registry itself: what was used survived
    assert pusher.head_digest("use/app", "1.0") == pulled.digest
    assert pusher.head_digest("use/app", "multi") == index.digest


def test_an_event_older_than_a_sync_listing_does_not_undo_it(fresh_registry, fresh_pusher, tmp_path):
    """An event that waited in the journal while a sync held the lock, and that the sync's listing already
    supersedes, leaves the tag as the sync saw it; one received after the listing is applied."""
    from datetime import datetime, timedelta, timezone

    from regdb.live.apply import apply_batch
    from regdb.live.store import Journaled

    old = fresh_pusher.push_image("stale/app", "1.0")
    new = fresh_pusher.push_image("stale/app", "1.0")  # the registry's state now: 1.0 -> new
    db = tmp_path / "inv.db"
    before_sync = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(seconds=1)
    with Inventory(db) as inventory:
        client = RegistryClient(fresh_registry.url)
        inventory.sync(client)
        fresh_pusher.tag("stale/app", "old", old.digest)  # so the old digest stays in the registry to fetch

        def event(received_at: datetime, digest: str) -> Journaled:
            body = _event("stale/app", tag="1.0", digest=digest)
            body["target"]["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json"
            return Journaled(1, body["id"], received_at.isoformat(), json.dumps(body), None)

        apply_batch(inventory.engine, client, [event(before_sync, old.digest)])  # 1.0 -> old, received earlier
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT digest FROM images WHERE tag = '1.0'").fetchall() == [(new.digest,)]
        apply_batch(inventory.engine, client, [event(datetime.now(timezone.utc).replace(tzinfo=None), old.digest)])
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT digest FROM images WHERE tag = '1.0'").fetchall() == [(old.digest,)]
            assert conn.execute("SELECT digest, source, valid_to IS NULL FROM tag_history WHERE tag = '1.0' "
                                "ORDER BY id").fetchall() == [(new.digest, "sync", 0), (old.digest, "event", 1)]


def test_an_event_that_fails_unexpectedly_is_rejected_and_later_events_apply(tmp_path, monkeypatch):
    """A bug in applying one event must not stop every later one: after two failed tries the listener applies
    the first event alone, then records it as rejected and goes on."""
    import regdb.live.app as app_module
    from regdb.live.app import Listener
    from regdb.live.store import EventStore

    poison = _event(action="pull", digest="sha256:" + "b" * 64)
    good = _event(action="pull", digest="sha256:" + "c" * 64)
    real = app_module.apply_batch

    def failing(engine, client, batch, **kwargs):
        if any(row.event_id == poison["id"] for row in batch):
            raise RuntimeError("a bug")
        return real(engine, client, batch, **kwargs)

    monkeypatch.setattr(app_module, "apply_batch", failing)
    monkeypatch.setattr(app_module, "RETRY_DELAY", 0.01)
    with Inventory(tmp_path / "inv.db") as inventory:
        store = EventStore(tmp_path / "journal")
        listener = Listener(inventory.engine, RegistryClient("http://127.0.0.1:9"), store, token=None)
        rows = Listener._journal_rows({"events": [poison]}, b"") + Listener._journal_rows({"events": [good]}, b"")
        store.append(rows, "2026-12-01T10:00:00")
        listener.start()
        try:
            wait_for(lambda: store.count() == 0, "the journal drained")
        finally:
            listener.stop()
            store.close()
        with sqlite3.connect(tmp_path / "inv.db") as conn:
            assert conn.execute("SELECT event_id, reason FROM rejected_events").fetchall() == [
                (poison["id"], "internal error applying it: RuntimeError")]
            assert conn.execute("SELECT digest, gets FROM pulls").fetchall() == [(good["target"]["digest"], 1)]


def test_record_tag_history_is_the_hook_for_removals(tmp_path):
    from regdb.inventory import models
    from regdb.inventory.history import record_tag_history, tag_history

    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    with Inventory(tmp_path / "inv.db") as inventory, write_transaction(inventory.engine) as conn:
        registry_id = conn.execute(models.Registry.__table__.insert().values(
            url="http://r", name="r")).inserted_primary_key[0]
        assert record_tag_history(conn, registry_id, "app", [("1.0", None, a)], source="event") == 1
        assert record_tag_history(conn, registry_id, "app", [("1.0", a, a)], source="sync") == 0  # no change
        assert record_tag_history(conn, registry_id, "app", [("1.0", a, b)], source="sync") == 2
        assert record_tag_history(conn, registry_id, "app", [("1.0", b, None)], source="removal") == 1
        rows = tag_history(conn, registry_id, "app", "1.0")
        with pytest.raises(ValueError):
            record_tag_history(conn, registry_id, "app", [("1.0", None, a)], source="someone")
    assert [(r.digest, r.source, r.ended_by, r.valid_to is None) for r in rows] == [
        (a, "event", "sync", False), (b, "sync", "removal", False)]
