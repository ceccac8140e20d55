"""Bad input and odd servers: one clear line, exit 1, no traceback, nothing changed.

The real registry cannot be made to omit a header or lie about a digest, so those cases use
pytest-httpserver; everything a real registry can show is tested against the real one elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import socket
import sqlite3

import pytest
from werkzeug import Response

from regdb import Inventory, RegistryClient
from tests.rig.cli import run
from tests.rig.media import DOCKER_MANIFEST, canonical_json

V2_HEADERS = {"Docker-Distribution-API-Version": "registry/2.0", "Content-Type": "application/json"}


def assert_one_line_error(result, expected_start: str):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: " + expected_start), lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_closed_port(tmp_path):
    port = closed_port()
    result = run("-reg", f"http://127.0.0.1:{port}", "--db", str(tmp_path / "x.db"), "sync")
    assert_one_line_error(result, f"cannot reach registry http://127.0.0.1:{port}: connection refused")
    assert not (tmp_path / "x.db").exists()  # no inventory is created for a registry that never answered


def test_unknown_host(tmp_path):
    result = run("-reg", "no-such-host.invalid", "--db", str(tmp_path / "x.db"), "sync")
    assert_one_line_error(result, "cannot reach registry https://no-such-host.invalid: unknown host")


def test_html_server_is_not_a_registry(httpserver, tmp_path):
    httpserver.expect_request("/v2/").respond_with_data("<html>hello</html>", content_type="text/html")
    result = run("-reg", httpserver.url_for("").rstrip("/"), "--db", str(tmp_path / "x.db"), "sync")
    assert_one_line_error(result, f"{httpserver.url_for('').rstrip('/')} is not a Docker Registry v2 / OCI "
                                  "registry (GET /v2/ answered 200, text/html)")


def test_404_on_v2_is_not_a_registry(httpserver, tmp_path):
    result = run("-reg", httpserver.url_for("").rstrip("/"), "--db", str(tmp_path / "x.db"), "sync")
    assert_one_line_error(result, f"{httpserver.url_for('').rstrip('/')} is not a Docker Registry v2")


def test_401_names_the_registry(httpserver, tmp_path):
    httpserver.expect_request("/v2/").respond_with_data(
        "", status=401, headers={"WWW-Authenticate": 'Basic realm="x"'})
    url = httpserver.url_for("").rstrip("/")
    result = run("-reg", url, "-u", "bob", "-p", "s3cret-pw", "--db", str(tmp_path / "x.db"), "sync")
    assert result.exit_code == 1, result.output
    assert "s3cret-pw" not in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_db_in_a_missing_directory(tmp_path):
    result = run("-reg", "http://127.0.0.1:1", "--db", str(tmp_path / "nope" / "x.db"), "sync")
    assert_one_line_error(result, f"cannot open inventory {tmp_path / 'nope' / 'x.db'}: directory "
                                  f"{tmp_path / 'nope'} does not exist")
    assert not (tmp_path / "nope").exists()


def test_a_file_that_is_not_sqlite_is_left_alone(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 100)
    before = path.read_bytes()
    result = run("-reg", "http://127.0.0.1:1", "--db", str(path), "sync")
    assert_one_line_error(result, f"{path} is not a regdb inventory (not an SQLite database)")
    assert path.read_bytes() == before


def test_an_unrelated_sqlite_database_is_left_alone(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    before = path.read_bytes()
    result = run("-reg", "http://127.0.0.1:1", "--db", str(path), "sync")
    assert_one_line_error(result, f"{path} is a database but not a regdb inventory (it has tables invoices)")
    assert path.read_bytes() == before


def test_an_inventory_from_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "inv.db"
    Inventory(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_future'")
    before = path.read_bytes()
    result = run("-reg", "http://127.0.0.1:1", "--db", str(path), "sync")
    assert_one_line_error(result, f"inventory {path} was written by a newer regdb (schema revision 9999_future)")
    assert path.read_bytes() == before


def test_no_registry_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.delenv("REGISTRY", raising=False)
    result = run("--db", str(tmp_path / "x.db"), "sync")
    assert result.exit_code == 2
    assert "Error: no registry given: use -reg/--registry or set REGISTRY" in result.output


# --- odd servers (pytest-httpserver: what a real registry cannot show) -------------------------------------


def manifest_body() -> bytes:
    config = canonical_json({"architecture": "amd64", "os": "linux", "created": "2024-05-01T10:00:00Z"})
    return canonical_json({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                   "digest": "sha256:" + hashlib.sha256(config).hexdigest()},
        "layers": [],
    }), config


def fake_registry(httpserver, *, head: str = "ok", body_override: bytes | None = None):
    """One repository `app` with one tag `1.0`. head: 'ok', 'no-digest' or '404'."""
    body, config = manifest_body()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    served = body_override if body_override is not None else body
    httpserver.expect_request("/v2/").respond_with_data("{}", headers=V2_HEADERS)
    httpserver.expect_request("/v2/_catalog").respond_with_json({"repositories": ["app"]})
    httpserver.expect_request("/v2/app/tags/list").respond_with_json({"name": "app", "tags": ["1.0"]})

    def manifest(request):
        headers = {"Content-Type": DOCKER_MANIFEST}
        if request.method == "HEAD":
            if head == "404":
                return Response(status=404)
            if head == "ok":
                headers["Docker-Content-Digest"] = digest
            return Response(b"", headers={**headers, "Content-Length": str(len(served))})
        if head == "ok":  # a real registry announces the digest on GET too
            headers["Docker-Content-Digest"] = digest
        return Response(served, headers=headers)

    httpserver.expect_request("/v2/app/manifests/1.0").respond_with_handler(manifest)
    httpserver.expect_request(f"/v2/app/manifests/{digest}").respond_with_handler(manifest)
    httpserver.expect_request(f"/v2/app/blobs/{json.loads(body)['config']['digest']}").respond_with_data(config)
    return digest


@pytest.mark.parametrize("head", ["no-digest", "404"])
def test_head_without_digest_or_with_404_falls_back_to_get(httpserver, tmp_path, head):
    digest = fake_registry(httpserver, head=head)
    url = httpserver.url_for("").rstrip("/")
    with Inventory(tmp_path / "inv.db") as inventory:
        inventory.sync(RegistryClient(url))  # a new repository: tags are fetched with GET
        client = RegistryClient(url)
        inventory.sync(client)  # a known one: tags are resolved with HEAD
    assert client.stats["head"] == 1 and client.stats["manifest"] == 1
    with sqlite3.connect(tmp_path / "inv.db") as conn:
        assert conn.execute("SELECT tag, digest, created FROM images").fetchall() == [
            ("1.0", digest, "2024-05-01 10:00:00.000000")]
    if head == "404":
        assert client.use_get_manifest  # switched to GET for the rest of the run (Nexus)


def test_manifest_whose_body_does_not_match_its_digest_is_refused(httpserver, tmp_path):
    body, _ = manifest_body()
    tampered = body.replace(b"schemaVersion", b"schemaVersion ")
    digest = fake_registry(httpserver, body_override=tampered)
    path = tmp_path / "inv.db"
    result = run("-reg", httpserver.url_for("").rstrip("/"), "--db", str(path), "sync")
    # The tag is new, so it is fetched with GET: the announced digest and the body disagree.
    assert_one_line_error(result, "GET /v2/app/manifests/1.0: body hashes to sha256:")
    assert result.output.strip().endswith(f", not {digest}")
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM digests").fetchone() == (0,)


def test_malformed_json_from_the_catalog(httpserver, tmp_path):
    httpserver.expect_request("/v2/").respond_with_data("{}", headers=V2_HEADERS)
    httpserver.expect_request("/v2/_catalog").respond_with_data("{not json", content_type="application/json")
    result = run("-reg", httpserver.url_for("").rstrip("/"), "--db", str(tmp_path / "x.db"), "sync")
    assert_one_line_error(result, "GET /v2/_catalog?n=1000: the registry's answer is not JSON")


def test_a_failed_sync_keeps_the_previous_snapshot(fresh_registry, fresh_pusher, tmp_path):
    fresh_pusher.push_image("app", "1.0")
    path = tmp_path / "inv.db"
    assert run("-reg", fresh_registry.url, "--db", str(path), "sync").exit_code == 0
    snapshot = tmp_path / "before.db"
    with sqlite3.connect(path) as conn, sqlite3.connect(snapshot) as copy:
        conn.backup(copy)
    fresh_registry.stop()
    result = run("-reg", fresh_registry.url, "--db", str(path), "sync")
    assert_one_line_error(result, f"cannot reach registry {fresh_registry.url}")
    with sqlite3.connect(path) as conn, sqlite3.connect(snapshot) as old:
        assert conn.execute("SELECT * FROM images").fetchall() == old.execute("SELECT * FROM images").fetchall()
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_credentials_in_the_registry_url_are_refused_and_not_echoed(tmp_path):
    result = run("-reg", "https://bob:s3cret-pw@registry.example.com", "--db", str(tmp_path / "x.db"), "sync")
    assert_one_line_error(result, "the registry URL must not contain credentials: use -u/--user and -p/--password")
    assert "s3cret-pw" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_client_key_without_certificate_is_a_usage_error(tmp_path):
    result = run("-reg", "http://127.0.0.1:1", "-key", str(tmp_path / "k.pem"), "--db", str(tmp_path / "x.db"),
                 "sync")
    assert result.exit_code == 2, result.output
    assert "Error: -key/--client-key needs -cert/--client-cert" in result.output
