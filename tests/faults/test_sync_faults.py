"""Sync faults: the registry dies, throttles, stalls, errs or lies in the middle of a sync.

Each test syncs a real registry through the fault proxy and ends in one of two known states: success after
retries, with the inventory equal to the registry; or exit 1 with one line saying what failed, the previous
snapshot intact (a 'failed' row in ``syncs`` is all that changed) and ``PRAGMA integrity_check`` ok.
"""

from __future__ import annotations

import socket
import time

import pytest

from regdb import Inventory, RegistryClient
from regdb.errors import RegistryUnreachable
from tests.rig.cli import error_line, run
from tests.rig.fault_proxy import Answer, FaultProxy, Hook, Reset, Rewrite, SetHeader, Stall, Truncate
from tests.rig.pusher import Pusher
from tests.rig.state import integrity, registry_state, snapshot, syncs

REPOS = ("app", "team/tool", "lib")


def populate(p: Pusher) -> Pusher:
    """Three repositories, 24 tags: Docker and OCI images, a multi-arch index, a digest with three tags."""
    for minor in range(8):
        p.push_image("app", f"1.{minor}")
    shared = p.push_image("app", "2.0", oci=True)
    p.tag("app", "latest", shared.digest)
    p.tag("app", "stable", shared.digest)
    p.push_index("team/tool", "3.0")
    for minor in range(6):
        p.push_image("team/tool", f"2.{minor}")
    for minor in range(5):
        p.push_image("lib", f"0.{minor}", oci=minor % 2 == 0)
    return p


@pytest.fixture(scope="module")
def origin(module_registry):
    """The registry most tests here sync through the proxy. Tests add images to it (so that a sync has new
    manifests to fetch) but never delete: each compares its own two syncs."""
    populate(Pusher(module_registry.url))
    return module_registry


@pytest.fixture
def populated(origin) -> Pusher:
    return Pusher(origin.url)


@pytest.fixture
def proxy(origin):
    with FaultProxy(origin.url) as started:
        yield started


def direct_snapshot(registry, tmp_path):
    """What a sync straight from the registry (no proxy, no faults) records."""
    db = tmp_path / "direct.db"
    with Inventory(db) as inventory:
        inventory.sync(RegistryClient(registry.url))
    return snapshot(db)


def synced_once(proxy, tmp_path):
    """An inventory holding one good snapshot taken through the proxy (before any fault is armed)."""
    db = tmp_path / "inv.db"
    result = run("-reg", proxy.url, "--db", db, "sync")
    assert result.exit_code == 0, result.output
    return db


def assert_failed_cleanly(result, db, before, *, message_start: str) -> str:
    """Exit 1, one line; the previous snapshot intact; the failure recorded with that same line."""
    line = error_line(result)
    assert line.startswith(message_start), line
    assert snapshot(db) == before
    assert integrity(db) == "ok"
    assert syncs(db)[-1] == ("failed", line)
    return line


# --- the registry goes away -----------------------------------------------------------------------------------


def test_registry_killed_mid_sync_keeps_the_old_snapshot_and_a_rerun_completes(
    fresh_registry, fresh_pusher, tmp_path, short_timeouts
):
    populate(fresh_pusher)
    with FaultProxy(fresh_registry.url) as proxy:
        db = synced_once(proxy, tmp_path)
        before = snapshot(db)
        for minor in range(8, 12):  # the next sync has new work to do, so a half-written one would show
            fresh_pusher.push_image("app", f"1.{minor}")

        def kill():  # SIGKILL the registry at the tenth HEAD; the proxy in front of it goes too
            fresh_registry.kill()
            proxy.die()

        proxy.add(Hook(method="HEAD", every=10, times=1, action=kill))
        result = run("-reg", proxy.url, "--db", db, "sync")
        assert_failed_cleanly(result, db, before, message_start=f"cannot reach registry {proxy.url}: ")
        assert not fresh_registry.alive()

        fresh_registry.start()
        proxy.clear()
        proxy.start()  # same address: the inventory knows the registry by its URL
        result = run("-reg", proxy.url, "--db", db, "sync")
    assert result.exit_code == 0, result.output
    assert snapshot(db) == direct_snapshot(fresh_registry, tmp_path)
    assert syncs(db)[-1] == ("ok", None)
    assert integrity(db) == "ok"


# A first sync of a repository GETs each tag's manifest (the body comes with the digest); a re-sync HEADs each
# tag. Faults aimed at tags hit whichever the sync sends.
BY_TAG = r"/manifests/(?!sha256:)"


def resync_with_new_tags(proxy, populated, tmp_path):
    """An inventory synced once, and new tags in the registry: the next sync HEADs every tag."""
    db = synced_once(proxy, tmp_path)
    image = populated.push_image("lib", "0.9")
    for minor in range(10, 14):
        populated.tag("lib", f"0.{minor}", image.digest)
    return db


def test_connection_resets_are_retried(origin, populated, proxy, tmp_path, short_timeouts):
    first = proxy.add(Reset(method="GET", path=BY_TAG, every=4, times=5))
    blob = proxy.add(Reset(method="GET", path="/blobs/", times=2))
    db = tmp_path / "inv.db"
    result = run("-reg", proxy.url, "--db", db, "sync")
    assert result.exit_code == 0, result.output
    assert (first.acted, blob.acted) == (5, 2)
    assert snapshot(db) == direct_snapshot(origin, tmp_path)

    proxy.clear()
    db = resync_with_new_tags(proxy, populated, tmp_path)
    heads = proxy.add(Reset(method="HEAD", every=4, times=5))
    result = run("-reg", proxy.url, "--db", db, "sync")
    assert result.exit_code == 0, result.output
    assert heads.acted == 5
    # A re-synced inventory also keeps what it knew and the registry still holds untagged; compare the tags.
    assert snapshot(db)["images"] == direct_snapshot(origin, tmp_path)["images"]


# --- the registry errs and throttles ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["HEAD", "GET"], ids=["resync-heads", "first-sync-gets"])
def test_one_tag_request_in_ten_answering_500_succeeds_after_retries(origin, populated, proxy, tmp_path,
                                                                     short_timeouts, method):
    db = resync_with_new_tags(proxy, populated, tmp_path) if method == "HEAD" else tmp_path / "inv.db"
    failing = proxy.add(Answer(500, method=method, path=BY_TAG, every=10))
    result = run("-reg", proxy.url, "--db", db, "sync")
    assert result.exit_code == 0, result.output
    assert failing.acted >= 2  # over 20 tags: some requests did fail
    assert snapshot(db)["images"] == direct_snapshot(origin, tmp_path)["images"]
    assert sorted((r, t, d) for r, t, d, *_ in snapshot(db)["images"]) == registry_state(populated, REPOS)
    assert integrity(db) == "ok"


def test_a_429_storm_is_ridden_out_honouring_retry_after(origin, populated, proxy, tmp_path):
    # Default timeouts and backoff: the waits come from Retry-After alone.
    storm = proxy.add(Answer(429, path=BY_TAG, headers={"Retry-After": "1"}, times=8,
                             body=b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'))
    db = tmp_path / "inv.db"
    started = time.monotonic()
    result = run("-reg", proxy.url, "--db", db, "sync")
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert storm.acted == 8
    assert snapshot(db) == direct_snapshot(origin, tmp_path)
    # Every request answered 429 was asked again no sooner than the second Retry-After asked for.
    seen = proxy.log()
    for i, exchange in enumerate(seen):
        if exchange.status == 429:
            retry = next(e for e in seen[i + 1:] if (e.method, e.path) == (exchange.method, exchange.path))
            assert retry.at - exchange.at >= 0.9, (exchange, retry)
    assert elapsed >= 1.0
    assert elapsed < 20  # loosely: Retry-After was honoured, not multiplied by an exponential backoff


def test_a_429_storm_that_never_ends_fails_with_one_line(origin, populated, proxy, tmp_path,
                                                          short_timeouts):
    db = synced_once(proxy, tmp_path)
    before = snapshot(db)
    storm = proxy.add(Answer(429, method="HEAD", headers={"Retry-After": "0"}, times=200))
    result = run("-reg", proxy.url, "--db", db, "sync")
    line = assert_failed_cleanly(result, db, before, message_start="HEAD /v2/")
    assert line.endswith("registry answered 429"), line  # a HEAD answer has no body to name a code
    assert storm.acted < 200  # bounded retries, not a loop


# --- the registry stalls -------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", [
    pytest.param(dict(method="GET", path="/tags/list"), id="tags-list"),
    pytest.param(dict(method="HEAD", path="/manifests/"), id="head"),
])
def test_a_stalled_registry_times_out_with_one_line(origin, populated, proxy, tmp_path, short_timeouts,
                                                    where):
    db = synced_once(proxy, tmp_path)
    before = snapshot(db)
    short_timeouts["retries"] = 2  # 3 tries of 0.5 s each; the default 7 only make the test longer
    proxy.add(Stall(seconds=20, **where))
    started = time.monotonic()
    result = run("-reg", proxy.url, "--db", db, "sync")
    elapsed = time.monotonic() - started
    line = assert_failed_cleanly(result, db, before, message_start=f"registry {proxy.url} did not answer within ")
    assert "0.5 s" in line, line
    assert elapsed < 8  # 3 tries of 0.5 s, not the stall's 20 s


def test_a_registry_that_accepts_no_connection_hits_the_connect_timeout(tmp_path):
    # A listening socket that never accepts: once its backlog is full, the kernel drops further SYNs and a
    # connect hangs. Only the connect timeout ends it.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers = []
        try:
            for _ in range(8):  # fill the accept queue (its length is the backlog, rounded up by the kernel)
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
                fillers.append(filler)
            time.sleep(0.1)
            client = RegistryClient(f"http://127.0.0.1:{port}", timeout=(0.3, 5.0), backoff=0.01)
            started = time.monotonic()
            with pytest.raises(RegistryUnreachable) as raised:
                client.ping()
            elapsed = time.monotonic() - started
        finally:
            for filler in fillers:
                filler.close()
    assert str(raised.value) == f"cannot reach registry http://127.0.0.1:{port}: no connection within 0.3 s"
    assert elapsed < 3


# --- the registry answers garbage ------------------------------------------------------------------------------


@pytest.mark.parametrize("fault, where, message", [
    pytest.param(Truncate, dict(method="GET", path="/manifests/sha256:"), "broke off its answer to GET /v2/app/",
                 id="truncated-manifest"),
    pytest.param(Truncate, dict(method="GET", path="/tags/list"), "broke off its answer to GET /v2/",
                 id="truncated-tags"),
    pytest.param(Truncate, dict(method="GET", path="/blobs/"), "broke off its answer to GET /v2/app/blobs/",
                 id="truncated-config-blob"),
    pytest.param(Rewrite, dict(method="GET", path="/tags/list"), "the registry's answer is not JSON",
                 id="html-tags"),
    pytest.param(Rewrite, dict(method="GET", path="/_catalog"), "the registry's answer is not JSON",
                 id="html-catalog"),
])
def test_truncated_or_non_json_answers_fail_with_one_line(origin, populated, proxy, tmp_path,
                                                           short_timeouts, fault, where, message):
    db = synced_once(proxy, tmp_path)
    before = snapshot(db)
    populated.push_image("app", "9.9")  # a new manifest and config to fetch
    proxy.add(fault(**where))
    result = run("-reg", proxy.url, "--db", db, "sync")
    line = assert_failed_cleanly(result, db, before, message_start="")
    assert message in line, line


def test_one_truncated_answer_is_asked_again(origin, populated, proxy, tmp_path, short_timeouts):
    cut = proxy.add(Truncate(method="GET", path=BY_TAG, times=1))
    blob = proxy.add(Truncate(method="GET", path="/blobs/", times=1))
    db = tmp_path / "inv.db"
    result = run("-reg", proxy.url, "--db", db, "sync")
    assert result.exit_code == 0, result.output
    assert (cut.acted, blob.acted) == (1, 1)
    assert snapshot(db) == direct_snapshot(origin, tmp_path)


def test_a_manifest_that_does_not_hash_to_its_digest_is_refused(origin, populated, proxy, tmp_path):
    db = synced_once(proxy, tmp_path)
    before = snapshot(db)
    image = populated.push_image("app", "9.9")
    # A caching layer serving other bytes under the right headers: the announced digest stays.
    proxy.add(Rewrite(method="GET", path=f"/manifests/{image.digest}", change=lambda body: body + b"\n"))
    result = run("-reg", proxy.url, "--db", db, "sync")
    line = assert_failed_cleanly(result, db, before, message_start=f"GET /v2/app/manifests/{image.digest}: ")
    assert line.endswith(f"not {image.digest}") and "body hashes to sha256:" in line, line


def test_a_config_blob_that_does_not_hash_to_its_digest_is_refused(origin, populated, proxy, tmp_path):
    db = synced_once(proxy, tmp_path)
    before = snapshot(db)
    image = populated.push_image("app", "9.9")
    proxy.add(Rewrite(method="GET", path=f"/blobs/{image.config_digest}",
                      change=lambda body: body.replace(b"amd64", b"arm64")))
    result = run("-reg", proxy.url, "--db", db, "sync")
    assert_failed_cleanly(result, db, before,
                          message_start=f"GET /v2/app/blobs/{image.config_digest}: blob does not hash to")


@pytest.mark.parametrize("link", [
    pytest.param(lambda path: f"<{path}>; rel=\"next\"", id="to-itself"),
    pytest.param(lambda path: '</v2/_catalog?n=1000&last=x>; rel="next"' if "last=x" not in path
                 else '</v2/_catalog?n=1000>; rel="next"', id="two-page-cycle"),
])
def test_a_catalog_link_that_loops_fails_after_a_bounded_number_of_pages(origin, populated, proxy,
                                                                        tmp_path, link):
    db = synced_once(proxy, tmp_path)
    before = snapshot(db)
    proxy.add(SetHeader(method="GET", path="/_catalog", header="Link", value=link))
    result = run("-reg", proxy.url, "--db", db, "sync")
    assert_failed_cleanly(result, db, before, message_start="GET /v2/_catalog")
    assert "the registry's Link header loops back to a page it gave" in result.output
    assert len(proxy.log(method="GET", path="/_catalog")) <= 4


def test_a_head_that_names_a_digest_the_registry_does_not_have(origin, populated, proxy, tmp_path):
    db = synced_once(proxy, tmp_path)
    before = snapshot(db)
    ghost = "sha256:" + "0" * 64
    proxy.add(SetHeader(method="HEAD", path="^/v2/lib/manifests/0.1$", header="Docker-Content-Digest", value=ghost))
    result = run("-reg", proxy.url, "--db", db, "sync")
    line = assert_failed_cleanly(result, db, before, message_start=f"GET /v2/lib/manifests/{ghost}: ")
    assert line.endswith("registry answered 404 MANIFEST_UNKNOWN"), line
