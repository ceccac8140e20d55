"""The sync's direct requests (issue 17, sync CPU): a re-sync's HEADs and a first sync's GETs of manifests
go through the session's urllib3 pool, past requests' per-request machinery, with the same answers;
anything but a plain answer goes the full way."""

from __future__ import annotations

from contextlib import closing
from unittest import mock

import requests

from regdb import Inventory, RegistryClient
from tests.rig.fault_proxy import Answer, Delay, FaultProxy, Reset, Truncate


def images(db) -> set:
    with Inventory(db, readonly=True) as inventory, inventory.sql("SELECT repo, tag, digest FROM images") as rows:
        return set(map(tuple, rows))


def test_resync_heads_skip_requests_and_see_the_same(registry, pusher, repo_name, tmp_path):
    repo = f"{repo_name}/app"
    one = pusher.push_image(repo, "1.0")
    two = pusher.push_image(repo, "1.1")
    db = tmp_path / "inventory.db"
    with Inventory(db) as inventory, closing(RegistryClient(registry.url, jobs=4)) as client:
        inventory.sync(client, [repo])
    pusher.tag(repo, "1.1", one.digest)  # a moved tag: the re-sync must see it
    through_requests = []
    real = requests.Session.request

    def counting(self, method, url, *args, **kwargs):
        through_requests.append((method, url))
        return real(self, method, url, *args, **kwargs)

    with mock.patch.object(requests.Session, "request", counting), Inventory(db) as inventory, \
            closing(RegistryClient(registry.url, jobs=4)) as client:
        result = inventory.sync(client, [repo])
    # Two tags resolved directly; the one HEAD through requests is the check that the untagged 1.1 is still there.
    assert result.tags == 2 and client.stats["head"] == 3
    assert [url.rsplit("/", 1)[1] for method, url in through_requests if method == "HEAD"] == [two.digest]
    assert (repo, "1.1", one.digest) in images(db)


def test_a_direct_head_that_meets_trouble_goes_the_full_way(fresh_registry, fresh_pusher, tmp_path):
    for tag in ("1.0", "1.1", "1.2"):
        fresh_pusher.push_image("app", tag)
    db = tmp_path / "inventory.db"
    with FaultProxy(fresh_registry.url) as proxy:
        with Inventory(db) as inventory, closing(RegistryClient(proxy.url, jobs=1)) as client:
            inventory.sync(client)
        before = images(db)
        proxy.add(Answer(503, method="HEAD", times=1))
        proxy.add(Reset(method="HEAD", times=1))
        with Inventory(db) as inventory, closing(RegistryClient(proxy.url, jobs=1, backoff=0.01)) as client:
            result = inventory.sync(client)
        heads = proxy.log(method="HEAD")
    assert result.tags == 3 and images(db) == before
    # 3 tags, one 503 and one reset: each retried once through requests, nothing asked twice otherwise.
    assert len(heads) == 5, heads


def test_direct_heads_keep_tls_client_certificates_and_credentials(registry_binary, tmp_path):
    """On distribution with TLS from our own CA, a mandatory client certificate and htpasswd: the re-sync's
    direct HEADs verify the server with -v's CA, present the certificate and carry Basic credentials."""
    from tests.rig.pki import make_pki
    from tests.rig.pusher import Pusher
    from tests.rig.secure import start_secure_registry, tls_session, write_htpasswd

    pki = make_pki(tmp_path / "pki")
    secure = start_secure_registry(tmp_path / "registry", pki, write_htpasswd(tmp_path / "htpasswd",
                                                                              {"alice": "pw-direct"}))
    try:
        pusher = Pusher(secure.url, tls_session(pki, auth=("alice", "pw-direct")))
        image = pusher.push_image("tls/app", "1.0")
        pusher.tag("tls/app", "latest", image.digest)
        db = tmp_path / "inventory.db"

        def client() -> RegistryClient:
            from regdb.registry.auth import build_auth

            return RegistryClient(secure.url, auth=build_auth("alice", "pw-direct"), verify=str(pki.ca.cert_path),
                                  cert=(str(pki.client.cert_path), str(pki.client.key_path)), jobs=2)

        with Inventory(db) as inventory, closing(client()) as first:
            inventory.sync(first)
        through_requests = []
        real = requests.Session.request

        def counting(self, method, url, *args, **kwargs):
            through_requests.append(method)
            return real(self, method, url, *args, **kwargs)

        with mock.patch.object(requests.Session, "request", counting), Inventory(db) as inventory, \
                closing(client()) as again:
            result = inventory.sync(again)
        assert result.tags == 2 and again.stats["head"] == 2 and "HEAD" not in through_requests
        assert images(db) == {("tls/app", "1.0", image.digest), ("tls/app", "latest", image.digest)}
    finally:
        secure.stop()


MANIFESTS = "SELECT digest, media_type, kind, size, total_size, config_digest, created, architecture, os FROM digests"


def manifests(db) -> set:
    with Inventory(db, readonly=True) as inventory, inventory.sql(MANIFESTS) as rows:
        return set(map(tuple, rows))


def test_first_sync_gets_skip_requests_and_store_the_same(registry, pusher, repo_name, tmp_path):
    repo = f"{repo_name}/app"
    one = pusher.push_image(repo, "1.0")
    pusher.push_image(repo, "1.1")
    pusher.tag(repo, "stable", one.digest)
    pusher.push_index(repo, "multi")
    through_requests = []
    real = requests.Session.request

    def counting(self, method, url, *args, **kwargs):
        through_requests.append((method, url.split("/v2/", 1)[1]))
        return real(self, method, url, *args, **kwargs)

    direct = tmp_path / "direct.db"
    with mock.patch.object(requests.Session, "request", counting), Inventory(direct) as inventory, \
            closing(RegistryClient(registry.url, jobs=4)) as client:
        result = inventory.sync(client, [repo])
    assert result.tags == 4
    # Tags, index children and configs came past requests: through it only the ping and the tag listing.
    assert sorted(through_requests) == [("GET", ""), ("GET", f"{repo}/tags/list")]
    assert client.stats["manifest"] == 4 + 2 and client.stats["blob"] == 4  # 3 images + 2 children, configs
    # The same rows as a sync that asks everything through requests.
    full = tmp_path / "full.db"
    with mock.patch.object(RegistryClient, "_get_direct", lambda *args: None), Inventory(full) as inventory, \
            closing(RegistryClient(registry.url, jobs=4)) as client:
        inventory.sync(client, [repo])
    assert images(direct) == images(full) and manifests(direct) == manifests(full)
    assert len(manifests(direct)) == 5  # 1.0 (also stable), 1.1, the index and its two children


def test_a_direct_get_that_meets_trouble_goes_the_full_way(fresh_registry, fresh_pusher, tmp_path):
    for tag in ("1.0", "1.1", "1.2"):
        fresh_pusher.push_image("app", tag)
    with FaultProxy(fresh_registry.url) as proxy:
        clean = tmp_path / "clean.db"
        with Inventory(clean) as inventory, closing(RegistryClient(proxy.url, jobs=1)) as client:
            inventory.sync(client)
        proxy.add(Answer(503, method="GET", path="/manifests/", times=1))
        proxy.add(Reset(method="GET", path="/manifests/", times=1))
        proxy.add(Truncate(method="GET", path="/manifests/", times=1))
        before = len(proxy.log(method="GET"))
        db = tmp_path / "inventory.db"
        with Inventory(db) as inventory, closing(RegistryClient(proxy.url, jobs=1, backoff=0.01)) as client:
            result = inventory.sync(client)
        gets = proxy.log(method="GET")[before:]
    assert result.tags == 3 and images(db) == images(clean) and manifests(db) == manifests(clean)
    # ping, catalog, tags/list, 3 tags and 3 configs; the 503, the reset and the broken-off body each asked
    # once more through requests (the 503 twice: urllib3's own retry), nothing else twice.
    assert len(gets) == 3 + 3 + 3 + 3, [exchange.path for exchange in gets]


def test_a_config_redirect_met_by_a_direct_get_is_followed_from_there(httpserver, tmp_path):
    """A config blob redirected to storage (S3 behind the registry): the direct GET's 307 is followed from that
    answer, so the registry is asked once per config, and storage on another host never gets the password."""
    from pytest_httpserver import HTTPServer

    from tests.rig.stub import StubRegistry, basic_checker, serve_blobs

    storage = HTTPServer(host="127.0.0.2", threaded=True)
    storage.start()
    try:
        stub = StubRegistry(httpserver, authorize=basic_checker("alice", "pw-redirect"))
        one = stub.push_image("app", "1.0")
        two = stub.push_image("app", "1.1", architecture="arm64")
        stub.blob_redirect = storage.url_for("").rstrip("/")
        storage_headers = serve_blobs(storage, stub)
        db = tmp_path / "inventory.db"
        with Inventory(db) as inventory, closing(RegistryClient(stub.url, auth=("alice", "pw-redirect"),
                                                                jobs=2)) as client:
            result = inventory.sync(client)
    finally:
        storage.clear()
        storage.stop()
    assert result.tags == 2 and client.stats["blob"] == 2
    blob_gets = stub.requests_of("GET", "/v2/app/blobs/")
    assert len(blob_gets) == 2 and all(s.headers.get("Authorization", "").startswith("Basic ") for s in blob_gets)
    assert len(storage_headers) == 2 and not [h for h in storage_headers if "Authorization" in h]
    with Inventory(db, readonly=True) as inventory, \
            inventory.sql("SELECT tag, digest, architecture FROM images ORDER BY tag") as rows:
        assert list(map(tuple, rows)) == [("1.0", one.digest, "amd64"), ("1.1", two.digest, "arm64")]


def test_a_small_repository_still_has_every_worker_asking(fresh_registry, fresh_pusher, tmp_path):
    """Tags go to workers a few to a job, but never so many per job that a repository's tags leave workers
    idle: against a distant registry (every manifest GET held 1 s here) its 16 tags are all asked at once by
    16 workers, not 8 after 8 by two."""
    image = fresh_pusher.push_image("app", "t0")
    for n in range(1, 16):
        fresh_pusher.tag("app", f"t{n}", image.digest)
    with FaultProxy(fresh_registry.url) as proxy:
        proxy.add(Delay(method="GET", path="/manifests/", seconds=1.0))
        with Inventory(tmp_path / "inventory.db") as inventory, \
                closing(RegistryClient(proxy.url, jobs=16)) as client:
            result = inventory.sync(client)
        arrivals = [exchange.at for exchange in proxy.log(method="GET", path="/manifests/")]
    assert result.tags == 16 and len(arrivals) == 16
    # All asked before the first answer came back: in jobs of eight, the second of a job comes 1 s after the first.
    assert max(arrivals) - min(arrivals) < 1.0, arrivals
