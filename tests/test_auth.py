"""Registry authentication (regdb.registry.auth), Docker CLI credentials (regdb.registry.credentials) and log redaction
(regdb.redact).

Fake registries here are pytest-httpserver handlers that answer the way distribution 2.8 does (its challenge
format, its per-method scopes, ``error="insufficient_scope"``), backed by a real token server
(tests/rig/tokenserver.py) whose JWTs they verify. The last tests run the real ``docker-registry`` in token mode.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
import ssl
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from regdb.errors import AuthenticationFailed, RegistryUnreachable, ScopeRefused
from regdb.redact import RedactingFilter, install_redaction, redact
from regdb.registry.auth import (
    DigestAuth,
    RegistryAuth,
    build_auth,
    normalize_scope,
    parse_challenges,
    required_scopes,
)
from regdb.registry.credentials import DockerConfigError, docker_credentials
from tests.rig.pki import make_pki
from tests.rig.tokenserver import ALL_REPOSITORIES, PULL_ONLY, TokenServer

ALICE = ("alice", "alice-pw-9f3k")
BOB = ("bob", "bob-pw-7x2q")
DIGEST = "sha256:" + "ab" * 32
MANIFEST_ACCEPT = "application/vnd.oci.image.manifest.v1+json"


# --- fixtures and fakes --------------------------------------------------------------------------------------


def _server(**kwargs) -> HTTPServer:
    server = HTTPServer(host="127.0.0.1", threaded=True, **kwargs)
    server.start()
    return server


@pytest.fixture
def fake():
    """A fake registry origin (threaded: the caching tests hit it from 16 threads)."""
    server = _server()
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def storage():
    """A second origin, standing in for the S3 bucket a registry redirects blob downloads to."""
    server = _server()
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def make_tokens(tmp_path):
    started: list[TokenServer] = []

    def make(**kwargs) -> TokenServer:
        kwargs.setdefault("users", dict([ALICE, BOB]))
        kwargs.setdefault("grants", {"alice": ALL_REPOSITORIES, "bob": PULL_ONLY})
        server = TokenServer(tmp_path / f"tokens{len(started)}", **kwargs).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def tokens(make_tokens) -> TokenServer:
    return make_tokens()


def session_with(auth) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=16)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    auth.attach(session)
    return session


def distribution_access(method: str, path: str) -> list[tuple[str, str, str]]:
    """What distribution 2.8 (registry/handlers/app.go appendAccessRecords) requires, written out on its own
    so the test does not reuse regdb's derivation."""
    if path == "/v2/":
        return []
    if path == "/v2/_catalog":
        return [("registry", "catalog", "*")]
    match = re.match(r"^/v2/(.+?)/(manifests/[^/]+|blobs/uploads/[^/]*|blobs/[^/]+|tags/list|referrers/[^/]+)$", path)
    assert match, f"fake registry got an unexpected path {path}"
    name = match.group(1)
    actions = {"GET": ["pull"], "HEAD": ["pull"], "DELETE": ["delete"]}.get(method, ["push", "pull"])
    return [("repository", name, action) for action in actions]


class BearerRegistry:
    """A fake registry in token mode: challenges as distribution 2.8 writes them and verifies the JWTs."""

    def __init__(self, server: HTTPServer, tokens: TokenServer, *, access=distribution_access):
        self.server = server
        self.tokens = tokens
        self.access = access
        self.revoked: set[str] = set()
        self.reject_all = False
        self.redirect_blobs_to: str | None = None
        self.seen_tokens: list[str] = []
        self.bodies: list[bytes] = []  # of the requests that passed
        self._lock = threading.Lock()
        server.expect_request(re.compile(r"^/v2/.*")).respond_with_handler(self)

    @property
    def url(self) -> str:
        return self.server.url_for("/").rstrip("/")

    def statuses(self) -> list[int]:
        return [response.status_code for _, response in self.server.log]

    def _challenge(self, access, error=None) -> Response:
        by_resource: dict[tuple[str, str], list[str]] = {}
        for kind, name, action in access:
            by_resource.setdefault((kind, name), []).append(action)
        scope = " ".join(f"{k}:{n}:{','.join(a)}" for (k, n), a in by_resource.items())
        body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]})
        return Response(body, 401, content_type="application/json",
                        headers={"WWW-Authenticate": self.tokens.challenge(scope or None, error)})

    def __call__(self, request: Request) -> Response:
        access = self.access(request.method, request.path)
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return self._challenge(access)
        token = header[len("Bearer "):]
        with self._lock:
            self.seen_tokens.append(token)
        if self.reject_all or token in self.revoked:
            return self._challenge(access, "invalid_token")
        try:
            claims = self.tokens.verify(token)
        except ValueError:
            return self._challenge(access, "invalid_token")
        granted = {(a["type"], a["name"], act) for a in claims["access"] for act in a["actions"]}
        if any(item not in granted for item in access):
            return self._challenge(access, "insufficient_scope")
        if self.redirect_blobs_to and "/blobs/" in request.path and request.method == "GET":
            return Response("", 307, headers={"Location": self.redirect_blobs_to})
        with self._lock:
            self.bodies.append(request.get_data())
        status = {"DELETE": 202, "PUT": 201, "POST": 202}.get(request.method, 200)
        return Response(json.dumps({"path": request.path}), status, content_type="application/json")


def basic_registry(server: HTTPServer, user: str, password: str, *, redirect_blobs_to: str | None = None):
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def handler(request: Request) -> Response:
        if request.headers.get("Authorization") != expected:
            return Response('{"errors":[{"code":"UNAUTHORIZED"}]}', 401, content_type="application/json",
                            headers={"WWW-Authenticate": 'Basic realm="Registry Realm"'})
        if redirect_blobs_to and "/blobs/" in request.path:
            return Response("", 307, headers={"Location": redirect_blobs_to})
        return Response("{}", 200, content_type="application/json")

    server.expect_request(re.compile(r"^/v2/.*")).respond_with_handler(handler)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- challenges and scopes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header, expected",
    [
        ('Basic realm="Registry Realm"', [("basic", {"realm": "Registry Realm"})]),
        (
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:samalba/my-app:pull,push"',
            [("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                         "scope": "repository:samalba/my-app:pull,push"})],
        ),
        # Two headers joined by requests with ", ": two challenges.
        (
            'Basic realm="x", Bearer realm="https://a/t",service="s",error="insufficient_scope"',
            [("basic", {"realm": "x"}), ("bearer", {"realm": "https://a/t", "service": "s",
                                                    "error": "insufficient_scope"})],
        ),
        ('Digest realm="r", qop="auth,auth-int", nonce="n1"',
         [("digest", {"realm": "r", "qop": "auth,auth-int", "nonce": "n1"})]),
        ("Bearer realm=unquoted, service=svc", [("bearer", {"realm": "unquoted", "service": "svc"})]),
        ('Bearer realm="a\\"b"', [("bearer", {"realm": 'a"b'})]),
    ],
)
def test_parse_challenges(header, expected):
    assert parse_challenges(header) == expected


@pytest.mark.parametrize(
    "method, path, expected",
    [
        ("GET", "/v2/_catalog?n=1000", {"registry:catalog:*"}),
        ("GET", "/v2/", set()),
        ("HEAD", "/v2/team/app/manifests/latest", {"repository:team/app:pull"}),
        ("GET", "/v2/team/app/tags/list?n=100&last=x", {"repository:team/app:pull"}),
        ("GET", f"/v2/a/b/c/blobs/{DIGEST}", {"repository:a/b/c:pull"}),
        ("GET", f"/v2/team/app/referrers/{DIGEST}", {"repository:team/app:pull"}),
        ("DELETE", f"/v2/team/app/manifests/{DIGEST}", {"repository:team/app:delete"}),
        ("PUT", "/v2/team/app/manifests/v1", {"repository:team/app:pull,push"}),
        ("POST", "/v2/team/app/blobs/uploads/", {"repository:team/app:pull,push"}),
        ("PATCH", "/v2/team/app/blobs/uploads/0c5f-uuid", {"repository:team/app:pull,push"}),
        # A repository may be called ".../manifests/...": only one split leaves a valid reference.
        ("GET", "/v2/odd/manifests/name/manifests/latest", {"repository:odd/manifests/name:pull"}),
        ("GET", "/v2/x/tags/tags/list", {"repository:x/tags:pull"}),
        ("GET", "/prefix/v2/team/app/tags/list", {"repository:team/app:pull"}),
        ("GET", "/healthz", None),
        ("OPTIONS", "/v2/team/app/tags/list", None),
    ],
)
def test_required_scopes(method, path, expected):
    got = required_scopes(method, "https://reg.example.com" + path)
    assert (set(got) if got is not None else None) == expected


def test_scope_actions_are_normalized():
    # distribution 2.8 writes "push,pull" or "pull,push" at random (a Go map); both must be one cache key.
    assert normalize_scope("repository:team/app:push,pull") == normalize_scope("repository:team/app:pull,push")
    assert normalize_scope("repository:localhost:5000/app:pull") == "repository:localhost:5000/app:pull"


# --- Basic ---------------------------------------------------------------------------------------------------


def test_basic_challenge_then_preemptive(fake):
    basic_registry(fake, *BOB)
    session = session_with(build_auth(*BOB))
    base = fake.url_for("/").rstrip("/")
    for _ in range(5):
        assert session.get(base + "/v2/team/app/tags/list").status_code == 200
    statuses = [r.status_code for _, r in fake.log]
    # One 401 to learn the registry wants Basic; after that, credentials go out with the request.
    assert statuses == [401] + [200] * 5


def test_basic_utf8_password(fake):
    basic_registry(fake, "bob", "pässwörd")  # requests' own Basic helper encodes Latin-1; docker sends UTF-8
    session = session_with(build_auth("bob", "pässwörd"))
    assert session.get(fake.url_for("/v2/")).status_code == 200


def test_basic_wrong_password(fake):
    basic_registry(fake, *BOB)
    session = session_with(build_auth("bob", "not-the-pw-41x"))
    with pytest.raises(AuthenticationFailed) as caught:
        session.get(fake.url_for("/v2/"))
    port = fake.port
    assert str(caught.value) == f"authentication failed for user 'bob' at http://127.0.0.1:{port} (401)"
    assert "not-the-pw-41x" not in str(caught.value)
    assert caught.value.status == 401
    assert len(fake.log) == 2  # asked once, answered once, then gave up: no loop


def test_basic_without_credentials(fake):
    basic_registry(fake, *BOB)
    session = session_with(build_auth(None, None))
    with pytest.raises(AuthenticationFailed, match=r"requires a user name and password \(401 Basic\)"):
        session.get(fake.url_for("/v2/"))


# --- Bearer --------------------------------------------------------------------------------------------------


def test_bearer_scope_per_request(fake, tokens):
    registry = BearerRegistry(fake, tokens)
    session = session_with(build_auth(*ALICE))
    url = registry.url
    assert session.get(url + "/v2/").status_code == 200
    assert session.get(url + "/v2/_catalog").status_code == 200
    assert session.head(url + "/v2/team/app/manifests/latest", headers={"Accept": MANIFEST_ACCEPT}).status_code == 200
    assert session.get(url + "/v2/team/app/tags/list").status_code == 200
    assert session.delete(url + f"/v2/team/app/manifests/{DIGEST}").status_code == 202
    assert session.put(url + "/v2/team/app/manifests/v1", data=b"{}").status_code == 201
    asked = [(r.method, r.user, r.service, r.scopes) for r in tokens.requests]
    assert asked == [
        ("GET", "alice", tokens.service, []),
        ("GET", "alice", tokens.service, ["registry:catalog:*"]),
        ("GET", "alice", tokens.service, ["repository:team/app:pull"]),  # shared by HEAD and tags/list
        ("GET", "alice", tokens.service, ["repository:team/app:delete"]),
        ("GET", "alice", tokens.service, ["repository:team/app:pull,push"]),
    ]
    # Only the very first request met a 401: once the realm is known, tokens are attached before sending.
    assert registry.statuses().count(401) == 1


def test_token_cached_across_requests_and_threads(fake, tokens):
    registry = BearerRegistry(fake, tokens)
    session = session_with(build_auth(*ALICE))
    repos = [f"team/app{i}" for i in range(4)]
    barrier = threading.Barrier(16)

    def work(worker: int) -> list[int]:
        barrier.wait()  # all 16 start together: the worst case for duplicate token fetches
        return [
            session.get(f"{registry.url}/v2/{repos[(worker + i) % 4]}/tags/list").status_code for i in range(20)
        ]

    with ThreadPoolExecutor(16) as pool:
        results = [status for statuses in pool.map(work, range(16)) for status in statuses]
    assert results == [200] * 320
    # One token per repository, however many threads wanted it at once.
    assert tokens.count == 4
    assert sorted(r.scopes[0] for r in tokens.requests) == [f"repository:{r}:pull" for r in repos]
    # At most the first request of each thread met a 401.
    assert registry.statuses().count(401) <= 16


@pytest.mark.parametrize("field", ["access_token", "both"])
def test_access_token_answers(fake, make_tokens, field):
    tokens = make_tokens(token_field=field)
    registry = BearerRegistry(fake, tokens)
    session = session_with(build_auth(*BOB))
    assert session.get(registry.url + "/v2/team/app/tags/list").status_code == 200
    assert session.get(registry.url + "/v2/team/app/tags/list").status_code == 200
    assert tokens.count == 1


def test_token_refreshed_shortly_before_expiry(fake, make_tokens):
    tokens = make_tokens(expires_in=120)
    registry = BearerRegistry(fake, tokens)
    clock = FakeClock()
    session = session_with(RegistryAuth(*ALICE, clock=clock))
    path = registry.url + "/v2/team/app/tags/list"
    assert session.get(path).status_code == 200
    clock.now += 105  # 15 s left: still used
    assert session.get(path).status_code == 200
    assert tokens.count == 1
    clock.now += 6  # 9 s left: inside the refresh margin, fetch a new one before sending
    assert session.get(path).status_code == 200
    assert tokens.count == 2
    assert registry.statuses().count(401) == 1


@pytest.mark.parametrize("expires_in", [5, None])
def test_short_or_missing_expires_in_counts_as_60_seconds(fake, make_tokens, expires_in):
    # The token spec: absent means 60 s, and docker treats anything shorter as 60 s too.
    tokens = make_tokens(expires_in=expires_in)
    registry = BearerRegistry(fake, tokens)
    clock = FakeClock()
    session = session_with(RegistryAuth(*ALICE, clock=clock))
    path = registry.url + "/v2/team/app/tags/list"
    session.get(path)
    clock.now += 45
    session.get(path)
    assert tokens.count == 1
    clock.now += 6
    session.get(path)
    assert tokens.count == 2


def test_insufficient_scope_raises_scope_refused(fake, tokens):
    registry = BearerRegistry(fake, tokens)
    session = session_with(build_auth(*BOB))
    with pytest.raises(ScopeRefused) as caught:
        session.delete(registry.url + f"/v2/team/app/manifests/{DIGEST}")
    error = caught.value
    assert error.scope == "repository:team/app:delete"
    assert str(error) == "registry refused scope repository:team/app:delete for user 'bob' (401 insufficient_scope)"
    assert BOB[1] not in str(error)
    assert isinstance(error, AuthenticationFailed)  # a caller catching the broader error still sees it
    # One token fetched, one retry with it, then the refusal: no loop.
    assert tokens.count == 1
    assert registry.statuses() == [401, 401]
    # Pulling is still fine for bob.
    assert session.get(registry.url + "/v2/team/app/tags/list").status_code == 200
    # And a second delete fails the same way (the refused token is not reused blindly).
    with pytest.raises(ScopeRefused):
        session.delete(registry.url + f"/v2/team/app/manifests/{DIGEST}")


@pytest.mark.parametrize("status", [403, 401])
def test_token_server_refusing_a_scope(fake, make_tokens, status):
    tokens = make_tokens(refuse_denied=True, deny_status=status)
    registry = BearerRegistry(fake, tokens)
    session = session_with(build_auth(*BOB))
    with pytest.raises(ScopeRefused) as caught:
        session.delete(registry.url + f"/v2/team/app/manifests/{DIGEST}")
    assert caught.value.scope == "repository:team/app:delete"
    assert caught.value.status == status
    assert str(caught.value) == (
        f"token server {tokens.realm} refused scope repository:team/app:delete for user 'bob' ({status})"
    )


def test_wrong_password_at_token_server(fake, tokens):
    registry = BearerRegistry(fake, tokens)
    session = session_with(build_auth("bob", "wrong-secret-123"))
    with pytest.raises(AuthenticationFailed) as caught:
        session.get(registry.url + "/v2/team/app/tags/list")
    assert type(caught.value) is AuthenticationFailed  # not a ScopeRefused: the password is what is wrong
    assert str(caught.value) == f"authentication failed for user 'bob' at {tokens.realm} (401)"
    assert "wrong-secret-123" not in str(caught.value)


def test_anonymous_tokens(fake, make_tokens):
    tokens = make_tokens(grants={None: [("repository", "public/*", ("pull",))]})
    registry = BearerRegistry(fake, tokens)
    session = session_with(build_auth(None, None))
    assert session.get(registry.url + "/v2/public/app/tags/list").status_code == 200
    assert tokens.requests[-1].user is None
    with pytest.raises(ScopeRefused, match=r"repository:private/app:pull for anonymous access"):
        session.get(registry.url + "/v2/private/app/tags/list")


def test_anonymous_refused_by_token_server(fake, make_tokens):
    tokens = make_tokens(allow_anonymous=False)
    registry = BearerRegistry(fake, tokens)
    session = session_with(build_auth(None, None))
    with pytest.raises(AuthenticationFailed, match=r"requires credentials \(401\): anonymous access refused"):
        session.get(registry.url + "/v2/")


def test_rejected_cached_token_is_refetched_once(fake, tokens):
    registry = BearerRegistry(fake, tokens)
    session = session_with(build_auth(*ALICE))
    path = registry.url + "/v2/team/app/tags/list"
    assert session.get(path).status_code == 200
    registry.revoked.add(registry.seen_tokens[-1])  # e.g. the registry restarted with a new trust bundle
    assert session.get(path).status_code == 200
    assert tokens.count == 2
    registry.reject_all = True  # the registry does not trust the token server at all
    with pytest.raises(AuthenticationFailed, match=r"rejected the token from .*invalid_token"):
        session.get(path)
    assert tokens.count == 3  # one refresh, then the error: no loop


def test_challenge_scope_is_authoritative(fake, tokens):
    def wants_push_to_read(method, path):
        return [(t, n, a) for t, n, _ in distribution_access(method, path) for a in ("pull", "push")]

    registry = BearerRegistry(fake, tokens, access=wants_push_to_read)
    session = session_with(build_auth(*ALICE))
    path = registry.url + "/v2/team/app/tags/list"
    assert session.get(path).status_code == 200
    assert session.get(path).status_code == 200
    assert [r.scopes for r in tokens.requests] == [["repository:team/app:pull,push"]]
    assert registry.statuses() == [401, 200, 200]  # the second GET went out with the right token at once


def test_file_body_is_rewound_for_the_retry(fake, tokens):
    registry = BearerRegistry(fake, tokens)
    session = session_with(build_auth(*ALICE))
    manifest = json.dumps({"schemaVersion": 2, "pad": "x" * 5000}).encode()
    response = session.put(registry.url + "/v2/team/app/manifests/v1", data=io.BytesIO(manifest), timeout=5)
    assert response.status_code == 201
    assert registry.statuses() == [401, 201]
    assert registry.bodies == [manifest]  # the retry sent the whole body again, not an exhausted stream


def test_identity_token_uses_oauth_refresh_grant(fake, make_tokens):
    tokens = make_tokens(refresh_tokens={"rt-secret-1": "alice"})
    registry = BearerRegistry(fake, tokens)
    session = session_with(build_auth("<token>", "rt-secret-1"))
    assert session.delete(registry.url + f"/v2/team/app/manifests/{DIGEST}").status_code == 202
    assert [(r.method, r.user) for r in tokens.requests] == [("POST", "<refresh>alice")]

    session = session_with(build_auth("<token>", "expired-rt-2"))
    with pytest.raises(AuthenticationFailed) as caught:
        session.get(registry.url + "/v2/team/app/tags/list")
    assert "identity token" in str(caught.value) and "docker login" in str(caught.value)
    assert "expired-rt-2" not in str(caught.value)


def test_token_server_down(fake, tokens):
    registry = BearerRegistry(fake, tokens)
    tokens.stop()
    session = session_with(build_auth(*ALICE))
    with pytest.raises(RegistryUnreachable, match=r"cannot reach token server http://127\.0\.0\.1:\d+/token"):
        session.get(registry.url + "/v2/")


# --- redirects never carry credentials to another host ------------------------------------------------------


def test_bearer_blob_redirect_to_storage_gets_no_token(fake, storage, tokens):
    registry = BearerRegistry(fake, tokens)
    # A hostile or misconfigured storage host that challenges for a token itself.
    storage.expect_request("/blob").respond_with_response(
        Response("denied", 401, headers={"WWW-Authenticate": tokens.challenge("repository:team/app:pull")})
    )
    registry.redirect_blobs_to = storage.url_for("/blob")
    session = session_with(build_auth(*ALICE))
    response = session.get(registry.url + f"/v2/team/app/blobs/{DIGEST}")
    assert response.status_code == 401  # storage's answer, handed back as it is
    assert [req.headers.get("Authorization") for req, _ in storage.log] == [None]
    assert tokens.count == 1  # only the registry's own challenge was answered


def test_basic_blob_redirect_to_storage_gets_no_password(fake, storage):
    storage.expect_request("/blob").respond_with_response(
        Response("denied", 401, headers={"WWW-Authenticate": 'Basic realm="storage"'})
    )
    basic_registry(fake, *BOB, redirect_blobs_to=storage.url_for("/blob"))
    session = session_with(build_auth(*BOB))
    assert session.get(fake.url_for("/v2/")).status_code == 200  # now Basic goes out up front
    response = session.get(fake.url_for(f"/v2/team/app/blobs/{DIGEST}"))
    assert response.status_code == 401
    assert [req.headers.get("Authorization") for req, _ in storage.log] == [None]


# --- TLS: token requests use the registry request's settings ------------------------------------------------


def _server_context(pki, *, require_client_cert=False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server.cert_path, pki.server.key_path)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.ca.cert_path)
    return context


def test_token_fetch_uses_the_requests_verify_and_client_cert(tmp_path, make_tokens, monkeypatch):
    pki = make_pki(tmp_path / "pki")
    tokens = make_tokens(ssl_context=_server_context(pki, require_client_cert=True))
    registry_server = _server(ssl_context=_server_context(pki))
    # Would break every https request if anything fell back to requests' environment lookup.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "nowhere.pem"))
    try:
        registry = BearerRegistry(registry_server, tokens)
        assert registry.url.startswith("https://")
        session = session_with(build_auth(*ALICE))
        tls = {"verify": str(pki.ca.cert_path), "cert": (str(pki.client.cert_path), str(pki.client.key_path))}
        assert session.get(registry.url + "/v2/team/app/tags/list", **tls).status_code == 200
        assert tokens.count == 1
        # The same request without the client certificate: the registry does not ask for one, the token
        # server does, so the failure can only come from the token fetch honouring the request's settings.
        session = session_with(build_auth(*ALICE))
        with pytest.raises(RegistryUnreachable, match="token server"):
            session.get(registry.url + "/v2/team/app/tags/list", verify=str(pki.ca.cert_path))
    finally:
        registry_server.clear()
        registry_server.stop()


def test_no_password_to_plain_http_realm_from_https_registry(tmp_path, tokens):
    pki = make_pki(tmp_path / "pki")
    registry_server = _server(ssl_context=_server_context(pki))
    try:
        registry = BearerRegistry(registry_server, tokens)  # tokens.realm is http://
        session = session_with(build_auth(*ALICE))
        with pytest.raises(AuthenticationFailed, match="plain-HTTP token server"):
            session.get(registry.url + "/v2/", verify=str(pki.ca.cert_path))
        assert tokens.count == 0
    finally:
        registry_server.clear()
        registry_server.stop()


# --- Digest --------------------------------------------------------------------------------------------------


class DigestRegistry:
    """RFC 2617 Digest with qop=auth, verified the long way (werkzeug parses the header)."""

    realm = "regdb-digest"

    def __init__(self, server: HTTPServer, user: str, password: str):
        self.user, self.password = user, password
        self.nonces: set[str] = set()
        server.expect_request(re.compile(r"^/v2/.*")).respond_with_handler(self)

    @staticmethod
    def _md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    def __call__(self, request: Request) -> Response:
        auth = request.authorization
        if auth is not None and auth.type == "digest" and auth.nonce in self.nonces and auth.username == self.user:
            ha1 = self._md5(f"{self.user}:{self.realm}:{self.password}")
            ha2 = self._md5(f"{request.method}:{auth.uri}")
            expected = self._md5(f"{ha1}:{auth.nonce}:{auth.nc}:{auth.cnonce}:{auth.qop}:{ha2}")
            if auth.response == expected:
                return Response("{}", 200, content_type="application/json")
        nonce = uuid.uuid4().hex
        self.nonces.add(nonce)
        return Response("", 401, headers={
            "WWW-Authenticate": f'Digest realm="{self.realm}", qop="auth", nonce="{nonce}", opaque="o1"'})


def test_digest_auth(fake):
    DigestRegistry(fake, *BOB)
    auth = build_auth(*BOB, digest=True)
    assert isinstance(auth, DigestAuth)
    session = session_with(auth)
    for _ in range(3):
        assert session.get(fake.url_for("/v2/team/app/tags/list")).status_code == 200
    # One challenge; then requests' HTTPDigestAuth reuses the nonce with a counter.
    assert [r.status_code for _, r in fake.log] == [401, 200, 200, 200]


def test_digest_wrong_password(fake):
    DigestRegistry(fake, *BOB)
    session = session_with(build_auth("bob", "bad-digest-pw", digest=True))
    with pytest.raises(AuthenticationFailed) as caught:
        session.get(fake.url_for("/v2/"))
    assert str(caught.value) == f"authentication failed for user 'bob' at http://127.0.0.1:{fake.port} (401)"


def test_digest_challenge_without_digest_flag(fake):
    DigestRegistry(fake, *BOB)
    session = session_with(build_auth(*BOB))
    with pytest.raises(AuthenticationFailed, match="use --digest-auth"):
        session.get(fake.url_for("/v2/"))


def test_digest_needs_a_user():
    with pytest.raises(AuthenticationFailed, match="--digest-auth needs"):
        build_auth(None, None, digest=True)


# --- Docker CLI credentials ----------------------------------------------------------------------------------


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def write_config(directory, config) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config) if not isinstance(config, str) else config)
    return {"DOCKER_CONFIG": str(directory), "PATH": "/usr/bin:/bin"}


@pytest.mark.parametrize(
    "key, url",
    [
        ("reg.example.com:5000", "https://reg.example.com:5000"),
        ("reg.example.com:5000", "reg.example.com:5000"),
        ("https://reg.example.com:5000", "http://reg.example.com:5000/"),
        ("https://reg.example.com:5000/v1/", "https://reg.example.com:5000"),
        ("http://REG.example.com:5000/v2/", "https://reg.example.com:5000/v2"),
        ("https://index.docker.io/v1/", "https://registry-1.docker.io"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("index.docker.io", "https://index.docker.io"),
    ],
)
def test_credentials_from_auths(tmp_path, key, url):
    environ = write_config(tmp_path / "docker", {"auths": {key: {"auth": _b64("bob:pa:ss")}}})
    assert docker_credentials(url, environ=environ) == ("bob", "pa:ss")  # split at the first colon only


def test_credentials_host_and_port_must_match(tmp_path):
    environ = write_config(tmp_path / "docker", {"auths": {"reg.example.com:5000": {"auth": _b64("bob:pw")}}})
    assert docker_credentials("https://reg.example.com", environ=environ) is None
    assert docker_credentials("https://other.example.com:5000", environ=environ) is None


def test_credentials_exact_key_wins_over_legacy_spelling(tmp_path):
    environ = write_config(tmp_path / "docker", {"auths": {
        "https://reg.example.com/v1/": {"auth": _b64("old:pw")},
        "reg.example.com": {"auth": _b64("new:pw")},
    }})
    assert docker_credentials("https://reg.example.com", environ=environ) == ("new", "pw")


def test_credentials_username_password_fields_and_identitytoken(tmp_path):
    environ = write_config(tmp_path / "docker", {"auths": {
        "a.example.com": {"username": "carol", "password": "c-pw"},
        "b.example.com": {"auth": _b64("ignored:pw"), "identitytoken": "id-token-1"},
    }})
    assert docker_credentials("a.example.com", environ=environ) == ("carol", "c-pw")
    assert docker_credentials("b.example.com", environ=environ) == ("<token>", "id-token-1")


def test_credentials_home_docker_config(tmp_path):
    write_config(tmp_path / "home" / ".docker", {"auths": {"reg.example.com": {"auth": _b64("h:pw")}}})
    environ = {"HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    assert docker_credentials("reg.example.com", environ=environ) == ("h", "pw")


def test_credentials_missing_config(tmp_path):
    assert docker_credentials("reg.example.com", environ={"DOCKER_CONFIG": str(tmp_path / "none")}) is None


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"auths": {"reg.example.com": {"auth": "x"}', r"is not valid JSON \(Expecting"),
        ("[]", "is not a JSON object"),
        ('{"auths": []}', "'auths' is not an object"),
        ('{"auths": {"reg.example.com": {"auth": "%%%notbase64"}}}', r"auths\['reg.example.com'\].auth is not base64"),
        ('{"auths": {"reg.example.com": {"auth": "' + _b64("nocolon") + '"}}}', "not base64 of user:password"),
    ],
)
def test_credentials_malformed_config(tmp_path, content, message):
    environ = write_config(tmp_path / "docker", content)
    with pytest.raises(DockerConfigError, match=message) as caught:
        docker_credentials("reg.example.com", environ=environ)
    text = str(caught.value)
    assert str(tmp_path / "docker" / "config.json") in text and "\n" not in text


def write_helper(directory, name, script_body: str) -> None:
    """A docker-credential-<name> that logs its argv and stdin, then runs ``script_body`` (sh)."""
    directory.mkdir(parents=True, exist_ok=True)
    helper = directory / f"docker-credential-{name}"
    helper.write_text(
        "#!/bin/sh\n"
        f'input=$(cat)\nprintf "%s %s\\n" "$1" "$input" >> "{directory}/calls.log"\n'
        + script_body
    )
    helper.chmod(0o755)


def helper_environ(tmp_path, config) -> dict:
    environ = write_config(tmp_path / "docker", config)
    environ["PATH"] = f"{tmp_path / 'bin'}:/usr/bin:/bin"
    return environ


def test_credentials_from_cred_helper(tmp_path):
    write_helper(tmp_path / "bin", "pass",
                 'echo "{\\"ServerURL\\":\\"$input\\",\\"Username\\":\\"dave\\",\\"Secret\\":\\"d-secret\\"}"\n')
    environ = helper_environ(tmp_path, {
        "credHelpers": {"reg.example.com:5000": "pass"},
        "auths": {"reg.example.com:5000": {"auth": _b64("inline:pw")}},
    })
    assert docker_credentials("https://reg.example.com:5000", environ=environ) == ("dave", "d-secret")
    assert (tmp_path / "bin" / "calls.log").read_text() == "get reg.example.com:5000\n"


def test_credentials_from_creds_store_for_docker_hub(tmp_path):
    write_helper(tmp_path / "bin", "desktop",
                 'echo "{\\"ServerURL\\":\\"$input\\",\\"Username\\":\\"<token>\\",\\"Secret\\":\\"rt-9\\"}"\n')
    environ = helper_environ(tmp_path, {"credsStore": "desktop", "auths": {"https://index.docker.io/v1/": {}}})
    assert docker_credentials("registry-1.docker.io", environ=environ) == ("<token>", "rt-9")
    # Docker Hub is asked for under its legacy index address, as `docker login` stored it.
    assert (tmp_path / "bin" / "calls.log").read_text() == "get https://index.docker.io/v1/\n"


def test_credentials_helper_not_found(tmp_path):
    write_helper(tmp_path / "bin", "osxkeychain", 'echo "credentials not found in native keychain"\nexit 1\n')
    environ = helper_environ(tmp_path, {"credsStore": "osxkeychain", "auths": {"reg.example.com": {}}})
    assert docker_credentials("reg.example.com", environ=environ) is None
    # Not in the helper, but written inline (before the helper was set up): that entry is used.
    environ = helper_environ(tmp_path, {"credsStore": "osxkeychain",
                                        "auths": {"reg.example.com": {"auth": _b64("old:pw")}}})
    assert docker_credentials("reg.example.com", environ=environ) == ("old", "pw")


def test_credentials_helper_failure_is_an_error(tmp_path):
    write_helper(tmp_path / "bin", "pass",
                 'echo "gpg: decryption failed: No secret key password=hunter2" >&2\nexit 1\n')
    environ = helper_environ(tmp_path, {"credsStore": "pass"})
    with pytest.raises(DockerConfigError) as caught:
        docker_credentials("reg.example.com", environ=environ)
    assert str(caught.value).startswith("credential helper docker-credential-pass failed for reg.example.com (exit 1)")
    assert "hunter2" not in str(caught.value)


def test_credentials_helper_missing_or_garbled(tmp_path):
    environ = helper_environ(tmp_path, {"credHelpers": {"reg.example.com": "nosuch"}})
    with pytest.raises(DockerConfigError, match=r"docker-credential-nosuch \(named in .*config.json\) is not on PATH"):
        docker_credentials("reg.example.com", environ=environ)
    write_helper(tmp_path / "bin", "garbled", "echo not-json\n")
    environ = helper_environ(tmp_path, {"credHelpers": {"reg.example.com": "garbled"}})
    with pytest.raises(DockerConfigError, match="not JSON"):
        docker_credentials("reg.example.com", environ=environ)


# --- redaction -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, secret, kept",
    [
        ("Authorization: Bearer eyJhbGciOi.eyJzdWIi.c2ln", "eyJhbGciOi", "Authorization: Bearer ***"),
        ("{'Accept': '*/*', 'Authorization': 'Basic Ym9iOnMzY3JldA=='}", "Ym9iOnMzY3JldA",
         "'Authorization': 'Basic ***'"),
        ('{"token": "t0k3n", "access_token": "a1", "expires_in": 300}', "t0k3n", '"expires_in": 300'),
        ('{"refresh_token":"r3fr3sh"}', "r3fr3sh", '"refresh_token":"***"'),
        ('"GET /token?service=reg&scope=repository:a:pull&access_token=q5ecret HTTP/1.1" 200', "q5ecret",
         "scope=repository:a:pull"),
        ("grant_type=refresh_token&refresh_token=f0rm5ecret&service=reg", "f0rm5ecret", "grant_type=refresh_token"),
        ("https://bob:hunter2@reg.example.com/v2/", "hunter2", "https://bob:***@reg.example.com/v2/"),
        ("login(user='bob', password='hunter2')", "hunter2", "user='bob'"),
        ('{"auths": {"reg": {"auth": "Ym9iOmh1bnRlcjI="}}}', "Ym9iOmh1bnRlcjI", '"auths"'),
        ('{"ServerURL": "reg", "Username": "bob", "Secret": "k3ych41n"}', "k3ych41n", '"Username": "bob"'),
        ("got eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJ4In0.c2lnbmF0dXJl back", "c2lnbmF0dXJl", "got *** back"),
    ],
)
def test_redact(line, secret, kept):
    redacted = redact(line)
    assert secret not in redacted
    assert kept in redacted


@pytest.mark.parametrize(
    "line",
    [
        'WWW-Authenticate: Bearer realm="https://auth.example.com/token",service="reg",scope="repository:a:pull"',
        'WWW-Authenticate: Basic realm="Registry Realm"',
        "GET /v2/team/app/manifests/sha256:" + "ab" * 32,
        "fetching a token from https://auth.example.com/token for scope repository:team/app:pull",
    ],
)
def test_redact_leaves_harmless_lines_alone(line):
    assert redact(line) == line


def test_redacting_filter_covers_args_tracebacks_and_child_loggers():
    parent = logging.getLogger(f"regdb-test-{uuid.uuid4().hex}")
    parent.propagate = False
    parent.setLevel(logging.DEBUG)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    parent.addHandler(handler)
    installed = install_redaction(parent)
    assert isinstance(installed, RedactingFilter) and installed in handler.filters
    assert install_redaction(parent) is installed  # idempotent
    child = logging.getLogger(parent.name + ".connectionpool")  # like urllib3's: logs on a child logger
    child.debug("send: %s", {"Authorization": "Bearer abcdefghijklmnopqrstuvwxyz012345"})
    secret = "tr4ceback" + "-t0ken"  # built here, so the traceback's source line does not hold it
    try:
        raise ValueError(f"bad answer {json.dumps({'token': secret})}")
    except ValueError:
        parent.exception("token fetch failed for %s", "https://bob:hunter2@reg.example.com")
    text = stream.getvalue()
    assert "abcdefghijklmnopqrstuvwxyz012345" not in text and "Bearer ***" in text
    assert "hunter2" not in text and "tr4ceback-t0ken" not in text
    assert "ValueError" in text  # the traceback is still there, only the secret is gone
    parent.removeHandler(handler)


def test_debug_logging_of_a_whole_token_flow_has_no_secret(fake, tokens):
    registry = BearerRegistry(fake, tokens)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    installed = install_redaction(root)
    try:
        session = session_with(build_auth(*ALICE))
        response = session.get(registry.url + "/v2/team/app/tags/list")
        # What a debugging client might log: the request it sent and the token server's answer.
        logging.getLogger("regdb.registry.client").debug("sent %s", response.request.headers)
        logging.getLogger("regdb.registry.client").debug("token server said %s",
                                                         json.dumps({"token": registry.seen_tokens[-1]}))
    finally:
        root.removeHandler(handler)
        root.removeFilter(installed)
        handler.removeFilter(installed)
        root.setLevel(old_level)
    text = stream.getvalue()
    assert "fetching a token from" in text and "127.0.0.1" in text
    assert ALICE[1] not in text
    assert all(token not in text for token in registry.seen_tokens)


# --- the real registry in token mode -------------------------------------------------------------------------


@pytest.fixture
def token_registry(registry_binary, make_tokens, tmp_path):
    from tests.rig.registry import start_registry

    tokens = make_tokens()
    registry = start_registry(tmp_path / "registry", extra=tokens.registry_config())
    yield registry, tokens
    registry.stop()


def test_real_registry_token_mode(token_registry):
    from tests.rig.media import ACCEPT_ALL
    from tests.rig.pusher import Pusher

    registry, tokens = token_registry
    alice = session_with(build_auth(*ALICE))
    pushed = Pusher(registry.url, alice).push_image("team/app", "v1")  # HEAD, POST, PUT blobs; PUT manifest
    # The push needed only pull,push on team/app (and the scopeless ping token is never needed).
    assert {tuple(r.scopes) for r in tokens.requests} == {("repository:team/app:pull",),
                                                          ("repository:team/app:pull,push",)}

    bob = session_with(build_auth(*BOB))
    tags = bob.get(registry.url + "/v2/team/app/tags/list")
    assert tags.status_code == 200 and tags.json()["tags"] == ["v1"]
    head = bob.head(registry.url + "/v2/team/app/manifests/v1", headers={"Accept": ACCEPT_ALL})
    assert head.headers["Docker-Content-Digest"] == pushed.digest
    with pytest.raises(ScopeRefused) as caught:
        bob.delete(registry.url + f"/v2/team/app/manifests/{pushed.digest}")
    assert caught.value.scope == "repository:team/app:delete"
    with pytest.raises(ScopeRefused, match="registry:catalog:\\*"):
        bob.get(registry.url + "/v2/_catalog")

    assert alice.delete(registry.url + f"/v2/team/app/manifests/{pushed.digest}").status_code == 202
    assert bob.head(registry.url + "/v2/team/app/manifests/v1", headers={"Accept": ACCEPT_ALL}).status_code == 404


def test_real_registry_token_mode_through_the_client(token_registry):
    from regdb.registry.client import RegistryClient
    from tests.rig.pusher import Pusher

    registry, tokens = token_registry
    Pusher(registry.url, session_with(build_auth(*ALICE))).push_image("team/app", "v1")
    client = RegistryClient(registry.url, auth=build_auth(*ALICE))  # the client installs it as session.auth
    client.ping()
    assert list(client.catalog()) == ["team/app"]
    assert client.tags("team/app") == ["v1"]
    tokens.reset()
    for _ in range(5):
        client.tags("team/app")
    assert tokens.count == 0  # cached for the whole run, far longer than these requests take
