"""Security faults: a statement that tries to write, credentials that could leak, a certificate nobody checked,
a redirect that could carry the Authorization header to another host.

Credentials come from a Basic-auth reverse proxy in front of the real registry (how distribution is usually
protected); the blob redirect goes to a second loopback server under another host name, standing in for the
S3 bucket or CDN a registry hands downloads to.
"""

from __future__ import annotations

import base64
import re
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import requests
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.rig.cli import error_line, run
from tests.rig.fault_proxy import FaultProxy, Redirect, RequireBasic
from tests.rig.pki import make_pki
from tests.rig.pusher import Pusher
from tests.rig.registry import start_registry
from tests.rig.state import snapshot

USER = "ci-bot"
SECRET = "s3cr3t-Pa55word-do-not-leak"


@pytest.fixture(scope="module")
def origin(module_registry):
    p = Pusher(module_registry.url)
    p.push_image("app", "1.0")
    p.push_index("app", "2.0", oci=True)
    return module_registry


def secrets_in(text: str | bytes) -> list[str]:
    """Which spellings of the secret appear: as typed, in a Basic header, URL-encoded."""
    spellings = [SECRET, base64.b64encode(f"{USER}:{SECRET}".encode()).decode(), SECRET.replace("-", "%2D")]
    data = text.encode() if isinstance(text, str) else text
    return [s for s in spellings if s.encode() in data]


def inventory_bytes(db: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(db.parent.glob(db.name + "*")))


@pytest.mark.parametrize("statement", [
    "DELETE FROM tags",
    "UPDATE repos SET name = 'x'",
    "DROP VIEW images",
    "CREATE TABLE stolen (x)",
    "ATTACH DATABASE '{other}' AS other",
    "PRAGMA journal_mode = DELETE",
    "SELECT 1; DELETE FROM tags",
])
def test_sql_cannot_write_or_attach(origin, tmp_path, statement):
    db = tmp_path / "inv.db"
    assert run("-reg", origin.url, "--db", db, "sync").exit_code == 0
    before, content = db.read_bytes(), snapshot(db)
    result = run("--db", db, "sql", statement.format(other=tmp_path / "other.db"))
    error_line(result)  # exit 1, one line, no traceback: the wording is the data-source suite's to pin
    assert db.read_bytes() == before and snapshot(db) == content
    assert not (tmp_path / "other.db").exists()  # ATTACH created no file either


def test_no_secret_in_the_inventory_or_the_logs(origin, tmp_path):
    db = tmp_path / "inv.db"
    with FaultProxy(origin.url) as proxy:
        guard = proxy.add(RequireBasic(user=USER, password=SECRET))
        ok = run("-reg", proxy.url, "-u", USER, "-p", SECRET, "-l", "debug", "--db", db, "sync")
        assert ok.exit_code == 0, ok.output
        assert any(e.authorization for e in proxy.log()) and guard.acted >= 1  # credentials were in play
        wrong = run("-reg", proxy.url, "-u", USER, "-p", SECRET + "-typo", "-l", "debug", "--db", db, "sync")
        assert wrong.exit_code == 1
    assert "DEBUG" in ok.output  # the log was on, at its most talkative
    assert secrets_in(ok.output) == [] and secrets_in(wrong.output) == []
    assert secrets_in(inventory_bytes(db)) == []
    with closing(sqlite3.connect(db)) as conn:
        errors = [row[0] for row in conn.execute("SELECT error FROM syncs WHERE status = 'failed'")]
    assert len(errors) == 1 and errors[0].startswith(f"authentication failed for user '{USER}'")
    assert secrets_in(errors[0]) == []


def test_tls_is_verified_unless_turned_off(registry_binary, tmp_path, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)  # -v reads it: it must not be set behind our back
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    pki = make_pki(tmp_path / "pki")
    registry = start_registry(tmp_path / "tls", extra={"http": {"tls": {
        "certificate": str(pki.server.cert_path), "key": str(pki.server.key_path)}}})
    try:
        session = requests.Session()
        session.verify = str(pki.ca.cert_path)
        Pusher(registry.url, session=session).push_image("app", "1.0")
        db = tmp_path / "inv.db"
        refused = run("-reg", registry.url, "--db", db, "sync")
        line = error_line(refused)
        assert line.startswith(f"TLS error talking to {registry.url}: certificate verify failed"), line
        assert line.endswith("(use -v CA_BUNDLE, or -v None to skip)"), line
        assert not db.exists() or snapshot(db)["images"] == []  # nothing from an unverified registry

        trusted = run("-reg", registry.url, "-v", pki.ca.cert_path, "--db", db, "sync")
        assert trusted.exit_code == 0, trusted.output
        unchecked = run("-reg", registry.url, "-v", "None", "--db", tmp_path / "other.db", "sync")
        assert unchecked.exit_code == 0, unchecked.output
        assert "TLS certificate verification is disabled (-v None)" in unchecked.output  # said, not silent
    finally:
        registry.stop()


def test_authorization_never_follows_a_redirect_to_another_host(origin, tmp_path):
    storage = HTTPServer(host="127.0.0.1", port=0)
    seen: list[str | None] = []

    def serve_blob(request: Request) -> Response:
        seen.append(request.headers.get("Authorization"))
        repo, digest = re.match(r"^/storage/(.+)/([^/]+)$", request.path).groups()
        blob = requests.get(f"{origin.url}/v2/{repo}/blobs/{digest}", timeout=10)
        return Response(blob.content, status=blob.status_code, content_type="application/octet-stream")

    storage.expect_request(re.compile("^/storage/")).respond_with_handler(serve_blob)
    storage.start()
    try:
        # "localhost", not 127.0.0.1: another host name, as an S3 bucket would be.
        where = f"http://localhost:{storage.port}/storage"
        with FaultProxy(origin.url) as proxy:
            proxy.add(RequireBasic(user=USER, password=SECRET))
            blobs = proxy.add(Redirect(method="GET", path="/blobs/",
                                       location=lambda path: where + path[len("/v2"):].replace("/blobs/", "/")))
            db = tmp_path / "inv.db"
            result = run("-reg", proxy.url, "-u", USER, "-p", SECRET, "--db", db, "sync")
            assert result.exit_code == 0, result.output
            assert blobs.acted == 3  # three image configs: one image, two index children
            assert all(e.authorization for e in proxy.log(method="GET", path="/blobs/"))
    finally:
        storage.stop()
    assert len(seen) == 3 and seen == [None, None, None]
    assert {row[3] for row in snapshot(db)["images"]} >= {"application/vnd.oci.image.index.v1+json"}
