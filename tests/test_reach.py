"""Reaching real registries (issue 5), end to end through the CLI.

- The real registry (distribution 2.8) with htpasswd (bcrypt), TLS from a CA made here and ``clientcas`` (a
  client certificate is mandatory): every way to hand regdb credentials and TLS files, and the ways to get
  them wrong (password, client certificate, key, CA, a missing file), each a one-line error.
- The real registry in token mode, with the test token server: a full-rights user, a pull-only user who must
  not delete, anonymous pulls.
- A registry stub (pytest-httpserver) for what distribution 2.8 never does: HTTP Digest, Quay-style and other
  Link pagination, a HEAD that answers 404/405, no Docker-Content-Digest, blobs redirected to another host.
- ``--rate``, and secrets: never in the inventory's bytes, never in ``-l debug`` output.

Retries, 429 storms, 5xx bursts, resets and stalls are the fault-injection suite's (tests/faults/).
"""

from __future__ import annotations

import base64
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from pytest_httpserver import HTTPServer

from regdb.errors import ScopeRefused
from regdb.registry.auth import build_auth
from regdb.registry.client import RegistryClient
from tests.rig.cli import run
from tests.rig.pki import PKI, make_ca, make_client_cert, make_pki
from tests.rig.pusher import Pusher
from tests.rig.registry import RegistryProcess, start_registry
from tests.rig.secure import start_secure_registry, tls_session, write_htpasswd
from tests.rig.stub import DigestChecker, StubRegistry, basic_checker, opaque, paged, serve_blobs
from tests.rig.tokenserver import ALL_REPOSITORIES, PULL_ONLY, RecordingTokenServer

ALICE = ("alice", "alice-Pw-7rQz4kX")
BOB = ("bob", "bob-Pw-2mVn8tJ")
IDENTITY_TOKEN = "idtok-alice-Qw8x2Lp5Zr"  # what `docker login` stores for an OAuth2 registry

# Everything that could steer regdb from the caller's environment: each test sets what it means to test.
ENVIRONMENT = ("REGISTRY", "REGISTRY_USER", "REGISTRY_PASSWORD", "REGISTRY_CLIENT_CERT", "REGISTRY_CLIENT_KEY",
               "REGISTRY_USE_DIGEST_AUTH", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "DOCKER_CONFIG", "REGDB_DATABASE")


@pytest.fixture(autouse=True)
def home(monkeypatch, tmp_path) -> Path:
    """No stray credentials or CA bundles: a clean environment and an empty HOME (no ~/.docker/config.json)."""
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def images(db: Path) -> set[tuple[str, str, str]]:
    """The inventory's tags; empty when no inventory was created (a registry that never answered)."""
    if not db.exists():
        return set()
    with sqlite3.connect(db) as conn:
        return set(conn.execute("SELECT repo, tag, digest FROM images"))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- the real registry: htpasswd + TLS + client certificates -------------------------------------------------


@dataclass
class Secure:
    registry: RegistryProcess
    pki: PKI
    expected: set[tuple[str, str, str]]

    @property
    def url(self) -> str:
        return self.registry.url

    @property
    def host(self) -> str:
        return self.registry.host

    @property
    def tls(self) -> list[str]:
        return ["-v", self.pki.ca.cert_path, "-cert", self.pki.client.cert_path, "-key", self.pki.client.key_path]


@pytest.fixture(scope="module")
def secure(registry_binary, tmp_path_factory) -> Secure:
    root = tmp_path_factory.mktemp("secure")
    pki = make_pki(root / "pki")
    registry = start_secure_registry(root / "registry", pki, write_htpasswd(root / "htpasswd", dict([ALICE])))
    pusher = Pusher(registry.url, tls_session(pki, auth=ALICE))
    app = pusher.push_image("reach/app", "v1")
    pusher.tag("reach/app", "latest", app.digest)
    tool = pusher.push_image("reach/tool", "2.0", architecture="arm64")
    yield Secure(registry, pki, {("reach/app", "v1", app.digest), ("reach/app", "latest", app.digest),
                                 ("reach/tool", "2.0", tool.digest)})
    registry.stop()


def test_flags(secure, tmp_path):
    db = tmp_path / "inv.db"
    result = run("-reg", secure.url, "--db", db, "-u", ALICE[0], "-p", ALICE[1], *secure.tls, "sync")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"synced {secure.url}: 2 repositories, 3 tags, 2 new manifests")
    assert images(db) == secure.expected


def test_seed_environment_variables(secure, tmp_path):
    db = tmp_path / "inv.db"
    env = {
        "REGISTRY": secure.url, "REGISTRY_USER": ALICE[0], "REGISTRY_PASSWORD": ALICE[1],
        "REGISTRY_CLIENT_CERT": str(secure.pki.client.cert_path),
        "REGISTRY_CLIENT_KEY": str(secure.pki.client.key_path),
        "REQUESTS_CA_BUNDLE": str(secure.pki.ca.cert_path),
    }
    result = run("--db", db, "sync", env=env)
    assert result.exit_code == 0, result.output
    assert images(db) == secure.expected


@pytest.mark.parametrize("where, key", [
    ("DOCKER_CONFIG", "{host}"),  # what `docker login` writes today
    ("HOME", "https://{host}/v1/"),  # an older spelling the Docker CLI still matches by host
])
def test_docker_config_auths(secure, tmp_path, home, where, key):
    directory = (tmp_path / "docker") if where == "DOCKER_CONFIG" else (home / ".docker")
    directory.mkdir()
    config = {"auths": {key.format(host=secure.host): {"auth": b64(f"{ALICE[0]}:{ALICE[1]}")},
                        "127.0.0.1:1": {"auth": b64("someone:else")}}}
    (directory / "config.json").write_text(json.dumps(config))
    env = {"DOCKER_CONFIG": str(directory)} if where == "DOCKER_CONFIG" else None
    db = tmp_path / "inv.db"
    result = run("-reg", secure.url, "--db", db, *secure.tls, "sync", env=env)
    assert result.exit_code == 0, result.output
    assert images(db) == secure.expected


HELPER = """#!/bin/sh
# docker-credential-helpers protocol: `get`, the server address on stdin, JSON on stdout.
[ "$1" = get ] || exit 1
read -r server
printf '%s\\n' "$server" >> "$(dirname "$0")/asked"
printf '{{"ServerURL":"%s","Username":"{user}","Secret":"{secret}"}}' "$server"
"""


@pytest.mark.parametrize("style", ["credsStore", "credHelpers"])
def test_credential_helper_on_path(secure, tmp_path, style):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-regdbtest"
    helper.write_text(HELPER.format(user=ALICE[0], secret=ALICE[1]))
    helper.chmod(0o755)
    config = {"credsStore": "regdbtest"} if style == "credsStore" else {"credHelpers": {secure.host: "regdbtest"}}
    config["auths"] = {secure.host: {}}  # what the Docker CLI writes next to a credential store
    docker = tmp_path / "docker"
    docker.mkdir()
    (docker / "config.json").write_text(json.dumps(config))
    env = {"DOCKER_CONFIG": str(docker), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    db = tmp_path / "inv.db"
    result = run("-reg", secure.url, "--db", db, *secure.tls, "sync", env=env)
    assert result.exit_code == 0, result.output
    assert images(db) == secure.expected
    assert (bin_dir / "asked").read_text() == f"{secure.host}\n"  # asked once, for host:port as docker does


def test_wrong_password(secure, tmp_path):
    db = tmp_path / "inv.db"
    result = run("-reg", secure.url, "--db", db, "-u", ALICE[0], "-p", "not-the-password", *secure.tls, "sync")
    assert result.exit_code == 1
    assert result.output == f"Error: authentication failed for user 'alice' at {secure.url} (401)\n"
    assert images(db) == set()


REQUIRES_CLIENT_CERT = "the registry requires a client certificate it trusts (-cert/-key)"
HUNG_UP = "the registry closed the TLS connection abruptly (a client certificate it does not trust? -cert/-key)"


@pytest.mark.parametrize("client_cert, reasons", [
    # Go's TLS server alerts "bad certificate" for a missing one...
    ("none", {REQUIRES_CLIENT_CERT}),
    # ...and for one from a CA it does not trust, either that alert or a hang-up before it (a race in the
    # handshake; the hang-up is retried once or twice, which may then see the alert).
    ("another CA's", {REQUIRES_CLIENT_CERT, HUNG_UP}),
])
def test_client_certificate_missing_or_untrusted(secure, tmp_path, client_cert, reasons):
    flags = ["-v", secure.pki.ca.cert_path]
    if client_cert != "none":
        stranger = make_client_cert(make_ca(tmp_path / "other"), tmp_path / "other")
        flags += ["-cert", stranger.cert_path, "-key", stranger.key_path]
    started = time.monotonic()
    result = run("-reg", secure.url, "--db", tmp_path / "inv.db", "-u", ALICE[0], "-p", ALICE[1], *flags, "sync")
    assert result.exit_code == 1
    assert result.output in {f"Error: TLS error talking to {secure.url}: {reason}\n" for reason in reasons}
    # A refused handshake does not heal: no six retries with backoff (they made this take over 30 s).
    assert time.monotonic() - started < 10


def test_untrusted_ca(secure, tmp_path):
    started = time.monotonic()
    result = run("-reg", secure.url, "--db", tmp_path / "inv.db", "-u", ALICE[0], "-p", ALICE[1],
                 "-cert", secure.pki.client.cert_path, "-key", secure.pki.client.key_path, "sync")
    assert result.exit_code == 1
    assert result.output == (
        f"Error: TLS error talking to {secure.url}: certificate verify failed: unable to get local issuer "
        "certificate (use -v CA_BUNDLE, or -v None to skip)\n"
    )
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("missing, message", [
    ("-v", "CA bundle not found: {path} (-v/--verify)"),
    ("-cert", "client certificate not found: {path} (-cert/--client-cert)"),
    ("-key", "client key not found: {path} (-key/--client-key)"),
])
def test_tls_file_not_found(secure, tmp_path, missing, message):
    flags = dict(zip(secure.tls[::2], secure.tls[1::2], strict=True))
    flags[missing] = tmp_path / "nowhere.pem"
    result = run("-reg", secure.url, "--db", tmp_path / "inv.db", "-u", ALICE[0], "-p", ALICE[1],
                 *[x for pair in flags.items() for x in pair], "sync")
    assert result.exit_code == 1
    assert result.output == f"Error: {message.format(path=tmp_path / 'nowhere.pem')}\n"


def test_client_key_of_another_certificate(secure, tmp_path):
    stranger = make_client_cert(make_ca(tmp_path / "other"), tmp_path / "other")
    result = run("-reg", secure.url, "--db", tmp_path / "inv.db", "-u", ALICE[0], "-p", ALICE[1],
                 "-v", secure.pki.ca.cert_path, "-cert", secure.pki.client.cert_path, "-key", stranger.key_path,
                 "sync")
    assert result.exit_code == 1
    assert result.output == (
        f"Error: TLS error talking to {secure.url}: the client key does not match the client certificate "
        "(-cert/-key)\n"
    )


def test_verify_flag_wins_over_the_environment(secure, tmp_path):
    bogus = make_ca(tmp_path / "bogus").cert_path  # a real bundle, of a CA that never signed the registry's cert
    env = {"REQUESTS_CA_BUNDLE": str(bogus), "CURL_CA_BUNDLE": str(bogus)}
    common = ["-reg", secure.url, "-u", ALICE[0], "-p", ALICE[1],
              "-cert", secure.pki.client.cert_path, "-key", secure.pki.client.key_path]
    # The environment alone is used (the seed's REQUESTS_CA_BUNDLE), and here it is the wrong CA...
    refused = run(*common, "--db", tmp_path / "refused.db", "sync", env=env)
    assert refused.exit_code == 1
    assert "certificate verify failed" in refused.output
    # ...and -v wins over it, although requests lets that variable override Session.verify.
    db = tmp_path / "inv.db"
    result = run(*common, "--db", db, "-v", secure.pki.ca.cert_path, "sync", env=env)
    assert result.exit_code == 0, result.output
    assert images(db) == secure.expected


def test_verify_none_warns_once(secure, tmp_path):
    db = tmp_path / "inv.db"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run("-reg", secure.url, "--db", db, "-u", ALICE[0], "-p", ALICE[1], "-v", "None",
                     "-cert", secure.pki.client.cert_path, "-key", secure.pki.client.key_path, "sync")
    assert result.exit_code == 0, result.output
    assert images(db) == secure.expected
    assert result.stderr == "WARNING regdb: TLS certificate verification is disabled (-v None)\n"
    # urllib3 would add an InsecureRequestWarning for every single request.
    assert [str(w.message) for w in caught if w.category.__name__ == "InsecureRequestWarning"] == []


# --- the real registry in token mode -------------------------------------------------------------------------


@dataclass
class TokenMode:
    registry: RegistryProcess
    tokens: RecordingTokenServer
    expected: set[tuple[str, str, str]]
    app_digest: str

    @property
    def url(self) -> str:
        return self.registry.url


def token_session(user) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    build_auth(*user, session=session)
    return session


@pytest.fixture(scope="module")
def token_mode(registry_binary, tmp_path_factory) -> TokenMode:
    root = tmp_path_factory.mktemp("token")
    tokens = RecordingTokenServer(root / "tokens", users=dict([ALICE, BOB]), refresh_tokens={IDENTITY_TOKEN: "alice"},
                                  grants={"alice": ALL_REPOSITORIES, "bob": PULL_ONLY, None: PULL_ONLY}).start()
    registry = start_registry(root / "registry", extra=tokens.registry_config())
    pusher = Pusher(registry.url, token_session(ALICE))
    app = pusher.push_image("team/app", "v1")
    tool = pusher.push_image("team/tool", "3.1")
    yield TokenMode(registry, tokens, {("team/app", "v1", app.digest), ("team/tool", "3.1", tool.digest)},
                    app.digest)
    registry.stop()
    tokens.stop()


def test_token_mode_full_rights(token_mode, tmp_path):
    db = tmp_path / "inv.db"
    result = run("-reg", token_mode.url, "--db", db, "-u", ALICE[0], "-p", ALICE[1], "sync")
    assert result.exit_code == 0, result.output
    assert images(db) == token_mode.expected


def test_token_mode_docker_identity_token(token_mode, tmp_path):
    docker = tmp_path / "docker"
    docker.mkdir()
    host = token_mode.registry.host
    (docker / "config.json").write_text(json.dumps({"auths": {host: {"auth": "", "identitytoken": IDENTITY_TOKEN}}}))
    db = tmp_path / "inv.db"
    result = run("-reg", token_mode.url, "--db", db, "sync", env={"DOCKER_CONFIG": str(docker)})
    assert result.exit_code == 0, result.output
    assert images(db) == token_mode.expected
    # Exchanged at the realm with the OAuth2 refresh-token grant, as docker does; never sent as a password.
    assert "<refresh>alice" in {r.user for r in token_mode.tokens.requests}


def test_token_mode_pull_only_user_cannot_delete(token_mode, tmp_path):
    db = tmp_path / "inv.db"
    bob = ["-reg", token_mode.url, "--db", db, "-u", BOB[0], "-p", BOB[1]]
    assert run(*bob, "sync", "team/app", "team/tool").exit_code == 0
    # bob may not read the catalog: a removal cannot see the whole registry unless he accepts that.
    result = run(*bob, "remove-tags", "-r", "team/app", "-t", "v1", "--yes")
    assert result.exit_code == 1 and "GET /v2/_catalog answered 401" in result.output, result.output
    result = run(*bob, "remove-tags", "-r", "team/app", "-t", "v1", "--yes", "--only-named-repos")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        "Error: registry refused scope repository:team/app:delete for user 'bob' (401 insufficient_scope)"
    )
    # Through the library too: the error names the scope.
    with pytest.raises(ScopeRefused) as refused:
        RegistryClient(token_mode.url, auth=build_auth(*BOB)).delete_manifest("team/app", token_mode.app_digest)
    assert refused.value.scope == "repository:team/app:delete"
    # Nothing was deleted, and the inventory still says so, with the refusal on record.
    alice = Pusher(token_mode.url, token_session(ALICE))
    assert alice.head_digest("team/app", "v1") == token_mode.app_digest
    assert images(db) == token_mode.expected
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT repo, digest, outcome, http_status FROM deletions").fetchall() == [
            ("team/app", token_mode.app_digest, "failed", 401)]


def test_token_mode_anonymous_pull(token_mode, tmp_path):
    db = tmp_path / "inv.db"
    result = run("-reg", token_mode.url, "--db", db, "sync", "team/app")
    assert result.exit_code == 0, result.output
    assert images(db) == {row for row in token_mode.expected if row[0] == "team/app"}
    # The token server grants anonymous pulls but not the catalog.
    result = run("-reg", token_mode.url, "--db", db, "sync")
    assert result.exit_code == 1
    assert result.output == (
        "Error: registry refused scope registry:catalog:* for anonymous access (401 insufficient_scope)\n"
    )


# --- HTTP Digest (a stub: distribution has no Digest auth) ----------------------------------------------------


@pytest.fixture(scope="module")
def stub_origin():
    # One server for the module (stopping one takes half a second); each test installs its own handlers.
    server = HTTPServer(host="127.0.0.1", threaded=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def stub_server(stub_origin):
    stub_origin.clear()
    yield stub_origin
    stub_origin.clear()


def stub_with_images(server: HTTPServer, **switches) -> tuple[StubRegistry, set]:
    stub = StubRegistry(server, **switches)
    app = stub.push_image("app", "1.0")
    stub.tag("app", "latest", app.digest)
    tool = stub.push_image("tools/tool", "0.9", architecture="arm64", os="linux")
    return stub, {("app", "1.0", app.digest), ("app", "latest", app.digest), ("tools/tool", "0.9", tool.digest)}


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_digest_auth(stub_server, tmp_path, how):
    stub, expected = stub_with_images(stub_server, authorize=DigestChecker(*ALICE))
    db = tmp_path / "inv.db"
    if how == "flag":
        result = run("-reg", stub.url, "--db", db, "--digest-auth", "-u", ALICE[0], "-p", ALICE[1], "sync")
    else:
        result = run("-reg", stub.url, "--db", db, "sync", env={
            "REGISTRY_USE_DIGEST_AUTH": "1", "REGISTRY_USER": ALICE[0], "REGISTRY_PASSWORD": ALICE[1]})
    assert result.exit_code == 0, result.output
    assert images(db) == expected
    assert any(s.headers.get("Authorization", "").startswith("Digest ") for s in stub.requests_of("GET"))


def test_digest_auth_wrong_password(stub_server, tmp_path):
    stub, _ = stub_with_images(stub_server, authorize=DigestChecker(*ALICE))
    result = run("-reg", stub.url, "--db", tmp_path / "inv.db", "--digest-auth", "-u", ALICE[0], "-p", "nope",
                 "sync")
    assert result.exit_code == 1
    assert result.output == f"Error: authentication failed for user 'alice' at {stub.url} (401)\n"


def test_digest_challenge_without_the_flag(stub_server, tmp_path):
    stub, _ = stub_with_images(stub_server, authorize=DigestChecker(*ALICE))
    result = run("-reg", stub.url, "--db", tmp_path / "inv.db", "-u", ALICE[0], "-p", ALICE[1], "sync")
    assert result.exit_code == 1
    assert result.output == f"Error: registry {stub.url} asks for HTTP Digest authentication: use --digest-auth\n"


# --- pagination variants ---------------------------------------------------------------------------------------


REPOS = [f"repo{i}" for i in range(7)]


def stub_with_repos(server: HTTPServer) -> tuple[StubRegistry, set]:
    stub = StubRegistry(server)
    expected = set()
    for name in REPOS:
        image = stub.push_image(name, "v1", unique="shared")  # one digest everywhere: few requests
        expected.add((name, "v1", image.digest))
    return stub, expected


def catalog_queries(stub: StubRegistry) -> list[str]:
    return [s.query for s in stub.requests_of("GET", "/v2/_catalog")]


def test_quay_style_link_with_its_own_parameters(stub_server, tmp_path):
    stub, expected = stub_with_repos(stub_server)
    # Quay: an opaque next_page token, and its own n, whatever n we asked for.
    stub.catalog = lambda request: paged(sorted(stub.repos), request, size=3,
                                         link=lambda last: f"/v2/_catalog?n=50&next_page={opaque(last)}")
    db = tmp_path / "inv.db"
    result = run("-reg", stub.url, "--db", db, "sync")
    assert result.exit_code == 0, result.output
    assert images(db) == expected
    # Each Link followed exactly as given: nothing added, nothing dropped, nothing reordered.
    assert catalog_queries(stub) == ["n=1000", f"n=50&next_page={opaque('repo2')}",
                                     f"n=50&next_page={opaque('repo5')}"]


def test_absolute_link(stub_server, tmp_path):
    stub, expected = stub_with_repos(stub_server)
    stub.catalog = lambda request: paged(sorted(stub.repos), request, size=2,
                                         link=lambda last: f"{stub.url}/v2/_catalog?last={last}&n=2")
    db = tmp_path / "inv.db"
    result = run("-reg", stub.url, "--db", db, "sync")
    assert result.exit_code == 0, result.output
    assert images(db) == expected
    assert len(catalog_queries(stub)) == 4


def test_registry_that_ignores_n(stub_server, tmp_path):
    stub, expected = stub_with_repos(stub_server)
    # Asked for 1000, it answers 3 at a time and links without n (an older Harbor, a proxy with its own cap).
    stub.catalog = lambda request: paged(sorted(stub.repos), request, size=3,
                                         link=lambda last: f"/v2/_catalog?last={last}")
    db = tmp_path / "inv.db"
    result = run("-reg", stub.url, "--db", db, "sync")
    assert result.exit_code == 0, result.output
    assert images(db) == expected
    assert catalog_queries(stub) == ["n=1000", "last=repo2", "last=repo5"]


@pytest.mark.parametrize("loop_to, requests_made", [
    ("/v2/_catalog?last=repo1", 2),  # the second page links to itself
    ("/v2/_catalog?n=1000", 1),  # back to the very first page
])
def test_repeated_link_stops_with_an_error(stub_server, tmp_path, loop_to, requests_made):
    stub, _ = stub_with_repos(stub_server)
    stub.catalog = lambda request: paged(sorted(stub.repos), request, size=2, link=lambda last: loop_to)
    db = tmp_path / "inv.db"
    result = run("-reg", stub.url, "--db", db, "sync")
    assert result.exit_code == 1
    assert result.output == f"Error: GET {loop_to}: the registry's Link header loops back to a page it gave\n"
    assert len(catalog_queries(stub)) == requests_made
    assert images(db) == set()  # a failed sync writes no snapshot


def test_link_to_another_host_is_not_followed(stub_server, tmp_path):
    stub, _ = stub_with_repos(stub_server)
    elsewhere = "http://127.0.0.2:9"
    stub.catalog = lambda request: paged(sorted(stub.repos), request, size=2,
                                         link=lambda last: f"{elsewhere}/v2/_catalog?last={last}")
    result = run("-reg", stub.url, "--db", tmp_path / "inv.db", "sync")
    assert result.exit_code == 1
    assert result.output == (
        f"Error: GET /v2/_catalog?n=1000: the registry's Link header points to another host ({elsewhere}); "
        "not following it\n"
    )


def test_paginated_tags_list(stub_server, tmp_path):
    stub = StubRegistry(stub_server)
    expected = {("app", f"1.{i}", stub.push_image("app", f"1.{i}", unique="same").digest) for i in range(5)}
    # distribution 3 / OCI 1.1 page tags/list with n, last and Link.
    stub.tags_list = lambda request: paged(sorted(stub.repos["app"]), request, size=2,
                                           link=lambda last: f"/v2/app/tags/list?n=2&last={last}")
    db = tmp_path / "inv.db"
    result = run("-reg", stub.url, "--db", db, "sync")
    assert result.exit_code == 0, result.output
    assert images(db) == expected
    assert [s.query for s in stub.requests_of("GET", "/v2/app/tags/list")] == ["", "n=2&last=1.1", "n=2&last=1.3"]


# --- odd servers -----------------------------------------------------------------------------------------------


def test_use_get_manifest_sends_no_head_at_all(stub_server, tmp_path):
    stub, expected = stub_with_images(stub_server)
    db = tmp_path / "inv.db"
    result = run("-reg", stub.url, "--db", db, "--use-get-manifest", "sync")
    assert result.exit_code == 0, result.output
    assert images(db) == expected
    # A re-sync is where tags are resolved by HEAD (a first sync GETs new repositories' tags anyway), and a
    # moved tag leaves a formerly tagged manifest to look for: both go by GET too.
    moved = stub.push_image("app", "1.0")
    result = run("-reg", stub.url, "--db", db, "--use-get-manifest", "sync")
    assert result.exit_code == 0, result.output
    assert images(db) == expected - {row for row in expected if row[1] == "1.0"} | {("app", "1.0", moved.digest)}
    assert stub.requests_of("HEAD") == []
    assert len(stub.requests_of("GET", "/v2/app/manifests/")) >= 5


def resync_with_a_moved_tag(stub: StubRegistry, db: Path, expected: set, *flags):
    """Sync, move app:1.0 to a new image, sync again (the re-sync resolves known tags by HEAD). Returns the
    second run's result and what the inventory must then hold."""
    first = run("-reg", stub.url, "--db", db, *flags, "sync")
    assert first.exit_code == 0, first.output
    assert images(db) == expected
    moved = stub.push_image("app", "1.0")
    result = run("-reg", stub.url, "--db", db, *flags, "sync")
    return result, {row for row in expected if row[1] != "1.0"} | {("app", "1.0", moved.digest)}


@pytest.mark.parametrize("head_status", [404, 405])
def test_broken_head_switches_to_get(stub_server, tmp_path, head_status):
    stub, expected = stub_with_images(stub_server, head_status=head_status)
    db = tmp_path / "inv.db"
    result, now = resync_with_a_moved_tag(stub, db, expected, "-j", "1")
    assert result.exit_code == 0, result.output
    assert images(db) == now
    warning = f"registry {stub.url} answers HEAD badly; resolving tags with GET from now on\n"
    assert f"WARNING regdb.registry.client: {warning}" in result.stderr
    assert len(stub.requests_of("HEAD")) == 1  # one refused HEAD, then GET for the rest of the run


def test_missing_docker_content_digest(stub_server, tmp_path):
    stub, expected = stub_with_images(stub_server, content_digest=False)
    db = tmp_path / "inv.db"
    result, now = resync_with_a_moved_tag(stub, db, expected)
    assert result.exit_code == 0, result.output
    assert images(db) == now  # digests from hashing the bodies, equal to what was pushed
    assert stub.requests_of("HEAD")  # the HEAD without the header was tried, and its GET fallback used


def test_blob_redirect_to_another_host_gets_no_credentials(stub_server, tmp_path):
    storage = HTTPServer(host="127.0.0.2", threaded=True)  # another host, as S3 behind a registry is
    storage.start()
    try:
        stub, expected = stub_with_images(stub_server, authorize=basic_checker(*ALICE))
        stub.blob_redirect = storage.url_for("").rstrip("/")
        storage_headers = serve_blobs(storage, stub)
        db = tmp_path / "inv.db"
        result = run("-reg", stub.url, "--db", db, "-u", ALICE[0], "-p", ALICE[1], "sync")
    finally:
        storage.clear()
        storage.stop()
    assert result.exit_code == 0, result.output
    assert images(db) == expected
    assert len(storage_headers) == 2  # one config blob per image, fetched from storage
    assert [h for h in storage_headers if "Authorization" in h] == []
    blob_requests = stub.requests_of("GET", "/v2/app/blobs/") + stub.requests_of("GET", "/v2/tools/tool/blobs/")
    assert blob_requests and all(s.headers.get("Authorization", "").startswith("Basic ") for s in blob_requests)
    # The config's facts made it into the inventory all the same.
    with sqlite3.connect(db) as conn:
        facts = set(conn.execute("SELECT repo, architecture, os, created FROM images"))
    assert {(repo, arch, os_) for repo, arch, os_, _ in facts} == {("app", "amd64", "linux"),
                                                                   ("tools/tool", "arm64", "linux")}
    assert all(created and created.startswith("2024-05-06") for *_, created in facts)


# --- rate --------------------------------------------------------------------------------------------------------


def test_rate_caps_requests_per_second(stub_server, tmp_path):
    stub = StubRegistry(stub_server)
    for i in range(18):
        stub.push_image("app", f"v{i}", unique="same")
    result = run("-reg", stub.url, "--db", tmp_path / "inv.db", "--rate", "10", "-j", "4", "sync")
    assert result.exit_code == 0, result.output
    times = sorted(s.at for s in stub.seen)
    assert len(times) >= 20  # ping, catalog, tags, 18 tags' manifests, a config
    # 10 a second: n requests span at least (n - 1) / 10 s; loosely, as the stub sees them arrive with the
    # delays of a loaded machine. Unthrottled, all of them take 0.1 to 0.4 s.
    assert times[-1] - times[0] >= (len(times) - 1) / 10 * 0.6


# --- secrets -------------------------------------------------------------------------------------------------------


def secrets_of(token_mode: TokenMode) -> list[str]:
    """Everything that must never be written down: passwords, the Basic header values, every token issued."""
    values = [ALICE[1], BOB[1], IDENTITY_TOKEN, b64(f"{ALICE[0]}:{ALICE[1]}"), b64(f"{BOB[0]}:{BOB[1]}")]
    for token in token_mode.tokens.issued:
        values += [token, token.rsplit(".", 1)[1]]  # the whole JWT, and its signature on its own
    return values


def test_no_secret_in_the_inventory(secure, token_mode, tmp_path):
    db = tmp_path / "inv.db"
    assert run("-reg", secure.url, "--db", db, "-u", ALICE[0], "-p", ALICE[1], *secure.tls, "sync").exit_code == 0
    assert run("-reg", token_mode.url, "--db", db, "-u", ALICE[0], "-p", ALICE[1], "sync").exit_code == 0
    docker = tmp_path / "docker"
    docker.mkdir()
    (docker / "config.json").write_text(json.dumps({"auths": {token_mode.registry.host: {
        "identitytoken": IDENTITY_TOKEN}}}))
    assert run("-reg", token_mode.url, "--db", db, "sync", env={"DOCKER_CONFIG": str(docker)}).exit_code == 0
    # A failed sync records its error in the inventory: that line must not carry the secret either.
    assert run("-reg", secure.url, "--db", db, "-u", ALICE[0], "-p", ALICE[1] + "x", *secure.tls,
               "sync").exit_code == 1
    assert token_mode.tokens.issued
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM syncs WHERE status = 'failed'").fetchone() == (1,)
        assert len(images(db)) == len(secure.expected) + len(token_mode.expected)
    files = [p for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists()]
    stored = b"".join(p.read_bytes() for p in files)
    for secret in secrets_of(token_mode) + [ALICE[1] + "x"]:
        assert secret.encode() not in stored, f"a secret ({secret[:6]}...) is in the inventory"


def run_regdb(*args, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT}
    env["HOME"] = str(home)
    return subprocess.run([sys.executable, "-c", "from regdb.cli.app import main; main()", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=120)


AUTHORIZATION_VALUE = re.compile(r"authorization['\"]?\s*[:=]\s*['\"]?(basic|bearer|digest)\s+(?!\*\*\*)", re.I)


def test_no_secret_in_the_debug_log(secure, token_mode, tmp_path, home):
    alice = ["-u", ALICE[0], "-p", ALICE[1]]
    basic = run_regdb("-l", "debug", "-reg", secure.url, "--db", tmp_path / "basic.db", *alice, *secure.tls, "sync",
                      home=home)
    assert basic.returncode == 0, basic.stderr
    bearer = run_regdb("-l", "debug", "-reg", token_mode.url, "--db", tmp_path / "bearer.db", *alice, "sync",
                       home=home)
    assert bearer.returncode == 0, bearer.stderr
    for process in (basic, bearer):
        log = process.stdout + process.stderr
        # It does show the requests...
        assert '"GET /v2/_catalog?n=1000 HTTP/1.1" 200' in log
        assert re.search(r'"(GET|HEAD) /v2/[a-z/]+/manifests/[\w.:]+ HTTP/1.1" 200', log)
        # ...and none of the secrets that went with them.
        assert not AUTHORIZATION_VALUE.search(log)
        for secret in secrets_of(token_mode):
            assert secret not in log, f"a secret ({secret[:6]}...) is in the debug log"
    assert "fetching a token from" in bearer.stderr


# --- the README's Python examples, run against the token-auth and the TLS registry ---------------------------

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_examples() -> list[str]:
    """The README's Python blocks that connect to a registry (the ones a person would paste first)."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    return [block for block in blocks if "regdb.connect(" in block]


def run_example(code: str, *, registry: str, user: tuple[str, str], tls: dict, cwd: Path, monkeypatch) -> str:
    """Run one README block as written, with only what names the reader's registry put in: its address,
    the credentials, the TLS files. Returns what it printed."""
    monkeypatch.chdir(cwd)
    code = code.replace('"registry.example.com"', repr(registry))
    code = code.replace('user="me", password="secret")', f"user={user[0]!r}, password={user[1]!r}, **TLS)")
    assert "**TLS" in code, "the example no longer connects with user= and password="
    printed: list[str] = []
    namespace = {"TLS": tls, "print": lambda *a, **k: printed.append(" ".join(map(str, a)))}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own code, on purpose
    return "\n".join(printed)


def test_the_readme_python_examples_are_there():
    assert len(readme_examples()) >= 2


@pytest.mark.parametrize("index", range(len(readme_examples())))
def test_readme_python_examples_work_against_a_token_auth_registry(token_mode, tmp_path, monkeypatch, index):
    # The registry speaks plain http here, so it is named by its URL (a bare host means https).
    printed = run_example(readme_examples()[index], registry=token_mode.url, user=ALICE, tls={}, cwd=tmp_path,
                          monkeypatch=monkeypatch)
    assert images(tmp_path / "registry_example_com.db") == token_mode.expected
    assert printed is not None


@pytest.mark.parametrize("index", range(len(readme_examples())))
def test_readme_python_examples_work_against_a_tls_registry_with_client_certificates(secure, tmp_path, monkeypatch,
                                                                                       index):
    tls = {"verify": secure.pki.ca.cert_path, "client_cert": secure.pki.client.cert_path,
           "client_key": secure.pki.client.key_path}
    run_example(readme_examples()[index], registry=secure.host, user=ALICE, tls=tls, cwd=tmp_path,
                monkeypatch=monkeypatch)
    assert images(tmp_path / "registry_example_com.db") == secure.expected


def test_connect_builds_what_the_cli_builds_for_a_token_registry(token_mode, tmp_path):
    """regdb.connect with the same credentials as -u/-p: the token flow works from the library too (a
    (user, password) tuple used to be requests' Basic auth, refused by a token-auth registry)."""
    import regdb as library

    for client in (library.connect(token_mode.url, user=ALICE[0], password=ALICE[1]),
                   RegistryClient(token_mode.url, auth=ALICE)):
        try:
            assert sorted(client.catalog()) == ["team/app", "team/tool"]
        finally:
            client.close()


def test_connect_names_settings_by_field_and_the_cli_by_flag(secure, tmp_path):
    import regdb as library
    from regdb.errors import SettingError

    with pytest.raises(SettingError) as caught:
        library.connect(secure.url, client_key=secure.pki.client.key_path)
    assert str(caught.value) == "client_key needs client_cert"
    result = run("-reg", secure.url, "--db", tmp_path / "inv.db", "-key", secure.pki.client.key_path, "sync")
    assert result.exit_code == 2 and "Error: -key/--client-key needs -cert/--client-cert" in result.output
