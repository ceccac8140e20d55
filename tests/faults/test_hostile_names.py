"""Names a registry hands us are checked against the OCI distribution grammar before they enter a URL or the
inventory; what fails is named once (escaped) and skipped, the sync completes, and its repository is marked
incomplete (``repos.incomplete``). Control characters never reach a terminal raw. An index whose child the
registry no longer has is recorded with the child marked missing, against the real registry.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from contextlib import closing

import pytest

from regdb.cli.output import to_string
from regdb.errors import DigestMismatch
from regdb.registry.transport import digest_of
from regdb.registry.reference import is_digest, is_repository, is_tag
from tests.rig.cli import run
from tests.rig.hostile import StubRegistry
from tests.rig.media import OCI_INDEX, canonical_json
from tests.rig.pusher import Pusher
from tests.rig.state import integrity

ANSI = "\x1b[2J\x1b]0;pwned\x07\x1b[31m"


@pytest.fixture
def stub(httpserver):
    registry = StubRegistry(httpserver)
    registry.good()
    return registry


def rows(db, sql):
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


def asked(stub) -> list[str]:
    return [request.full_path for request, _ in stub.server.log]


def test_the_grammar():
    assert is_repository("library/alpine") and is_repository("a.b_c__d-e---f/x0")
    for bad in ("../../etc", "/abs", "UPPER", "a//b", "a/", "a..b", "a" * 256, "x\n", "é", "", None, 7):
        assert not is_repository(bad), bad
    assert is_tag("_") and is_tag("v1.2.3-rc.1") and is_tag("x" * 128)
    for bad in ("x" * 129, ".hidden", "-x", "a/b", "1'0", "a b", "a\x1b", ""):
        assert not is_tag(bad), bad
    assert is_digest("sha256:" + "0" * 64) and is_digest("sha512:" + "a" * 128)
    for bad in ("sha256:" + "0" * 63, "sha256:" + "A" * 64, "sha512:" + "0" * 64, "md5:" + "0" * 32,
                "sha1:" + "0" * 40, "blake2b:" + "0" * 128, "shake_128:" + "0" * 64, "sha256:../../../../v2/_catalog?"):
        assert not is_digest(bad), bad


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "blake2b", "shake_128", "shake_256", "sha3_256"])
def test_only_sha256_and_sha512_verify_a_body(algorithm):
    with pytest.raises(DigestMismatch, match="sha256 or sha512 only"):  # shake_* raised TypeError before
        digest_of(b"{}", algorithm)
    assert digest_of(b"{}", "sha512") == "sha512:" + hashlib.sha512(b"{}").hexdigest()


def test_a_repository_climbing_out_of_v2_is_never_asked_for(stub, tmp_path):
    stub.catalog = json.dumps({"repositories": ["app", "../../etc", "a/../../v2/_catalog"]}).encode()
    db = tmp_path / "inv.db"
    result = run("-reg", stub.url, "--db", db, "sync")
    assert result.exit_code == 0, result.output
    assert result.stderr.count("not a valid repository name") == 2
    assert not any("etc" in path or path.startswith("/v2/v2") or "/../" in path for path in asked(stub))
    assert rows(db, "SELECT name FROM repos") == [("app",)]


def test_ansi_escapes_and_newlines_in_names_never_reach_the_terminal(stub, tmp_path):
    evil_repo, evil_tag = f"x{ANSI}y", f"t{ANSI}\nline2"
    stub.catalog = json.dumps({"repositories": ["app", evil_repo, "lib"]}).encode()
    stub.image(evil_repo, "1.0")
    stub.image("lib", evil_tag)
    db = tmp_path / "inv.db"
    result = run("-reg", stub.url, "--db", db, "sync")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 2, result.stderr  # one line each: the newline is shown as \n
    assert "\\x1b[2J" in result.stderr and "\\n" in result.stderr
    assert rows(db, "SELECT name, incomplete IS NOT NULL FROM repos ORDER BY name") == [("app", 0), ("lib", 1)]


def test_text_and_table_output_escape_control_characters_and_json_csv_keep_them_exact():
    value = f"a{ANSI}\nb\x9b\x7f"
    for fmt in ("text", "table"):
        out = to_string([(value, 1)], ["repo", "n"], fmt)
        assert not any(c in out for c in "\x1b\x07\x9b\x7f"), repr(out)
        assert out.count("\n") == (1 if fmt == "text" else 3)  # one line per row, no extra line from \n
    assert json.loads(to_string([(value, 1)], ["repo", "n"], "json")) == [{"repo": value, "n": 1}]
    assert "\x1b" not in to_string([(value, 1)], ["repo", "n"], "ndjson")  # escaped as \u001b
    import csv
    import io

    out = to_string([(value, 1)], ["repo", "n"], "csv")
    assert list(csv.reader(io.StringIO(out))) == [["repo", "n"], [value, "1"]]


def test_sql_output_of_a_hostile_value_is_escaped(tmp_path):
    db = tmp_path / "inv.db"
    from regdb import Inventory

    with Inventory(db):  # an empty inventory is enough for a literal
        pass
    result = run("--db", db, "sql", "SELECT char(27) || '[2J' || char(10) || 'x' AS v")
    assert result.exit_code == 0, result.output
    assert result.output == "v\n-\n\\x1b[2J\\nx\n"


@pytest.mark.parametrize("announced", [
    "md5:" + "0" * 32, "sha1:" + "0" * 40, "blake2b:" + "0" * 128, "shake_128:" + "0" * 64,
    "sha256:../../../../v2/_catalog?",
])
def test_a_digest_of_another_algorithm_or_shape_is_not_taken_as_verified(stub, tmp_path, announced):
    body = canonical_json({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                           "config": {"mediaType": "application/octet-stream", "size": 2,
                                      "digest": "sha256:" + "4" * 64}, "layers": []})
    stub.manifest("lib", "9.9", body, "application/vnd.docker.distribution.manifest.v2+json")
    original = stub.__call__

    def lying(request):
        response = original(request)
        if request.path.endswith("/manifests/9.9"):
            response.headers["Docker-Content-Digest"] = announced
        return response

    stub.server.clear_all_handlers()
    stub.server.expect_request("/v2/").respond_with_data("{}", headers={"Docker-Distribution-API-Version":
                                                                         "registry/2.0"})
    import re

    stub.server.expect_request(re.compile(r"^/v2/.+")).respond_with_handler(lying)
    db = tmp_path / "inv.db"
    result = run("-reg", stub.url, "--db", db, "sync")
    assert result.exit_code == 0, result.output
    assert result.stderr.count("the registry announced an invalid digest") == 1, result.stderr
    assert ("lib", "9.9") not in rows(db, "SELECT repo, tag FROM images")
    [(reason,)] = rows(db, "SELECT incomplete FROM repos WHERE name = 'lib'")
    assert "tag '9.9'" in reason and "invalid digest" in reason
    assert not any("_catalog?" in path and "manifests" in path for path in asked(stub))


def test_an_index_child_digest_climbing_out_of_v2_is_skipped(stub, tmp_path):
    good = stub.image("lib", "2.1")
    bad = "sha256:../../../../v2/_catalog?"
    index = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 10, "digest": good,
         "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 10, "digest": bad,
         "platform": {"architecture": "arm64", "os": "linux"}},
    ]})
    stub.manifest("lib", "multi", index, OCI_INDEX)
    db = tmp_path / "inv.db"
    for attempt in ("first", "re-sync"):  # not stored, so asked and reported again: lib stays incomplete
        result = run("-reg", stub.url, "--db", db, "sync")
        assert result.exit_code == 0, result.output
        assert result.stderr.count("names an invalid child digest 'sha256:../../../../v2/_catalog?'") == 1
        assert rows(db, "SELECT tag FROM images WHERE repo = 'lib' ORDER BY tag") == [("2.0",), ("2.1",)]
        [(reason,)] = rows(db, "SELECT incomplete FROM repos WHERE name = 'lib'")
        assert "invalid child digest" in reason, attempt
    assert not any(path.startswith("/v2/v2/") or path.count("_catalog") and "manifests" in path
                   for path in asked(stub))
    assert integrity(db) == "ok"


# --- an index whose child is gone, on the real registry -----------------------------------------------------


def test_an_index_with_a_missing_child_is_recorded_and_the_sync_completes(fresh_registry, tmp_path):
    p = Pusher(fresh_registry.url)
    index = p.push_index("multi", "1.0")
    arm = next(child for key, child in index.children.items() if key[0] == "arm64")
    amd = next(child for key, child in index.children.items() if key[0] == "amd64")
    p.push_image("plain", "1.0")
    assert p.delete("multi", arm.digest) == 202  # a child deleted by digest: the index still names it
    db = tmp_path / "inv.db"
    for attempt in ("first", "re-sync"):
        result = run("-reg", fresh_registry.url, "--db", db, "sync")
        assert result.exit_code == 0, (attempt, result.output)
        assert rows(db, "SELECT repo, tag, digest FROM images ORDER BY repo") == [
            ("multi", "1.0", index.digest), ("plain", "1.0", p.head_digest("plain", "1.0"))]
        assert rows(db, "SELECT repo, digest, child_digest, architecture, tags FROM broken_indexes") == [
            ("multi", index.digest, arm.digest, "arm64", 1)]
    # The first sync warned, in one line; the re-sync knows the index and asks nothing about it.
    assert rows(db, "SELECT status FROM syncs") == [("ok",), ("ok",)]
    present = {d for (d,) in rows(db, "SELECT d.digest FROM repo_digests rd JOIN digests d ON d.id = rd.digest_id "
                                      "JOIN repos r ON r.id = rd.repo_id WHERE r.name = 'multi'")}
    assert present == {index.digest, amd.digest}  # the missing child is not "present" in the repository
    assert rows(db, f"SELECT kind FROM digests WHERE digest = '{arm.digest}'") == [("missing",)]
    # Pushed again, the child is whole: the placeholder becomes the manifest and the index is no longer broken.
    p.put_manifest("multi", arm.digest, arm.manifest, arm.media_type)
    p.tag("multi", "arm", arm.digest)
    result = run("-reg", fresh_registry.url, "--db", db, "sync")
    assert result.exit_code == 0, result.output
    assert rows(db, "SELECT * FROM broken_indexes") == []
    assert rows(db, f"SELECT kind FROM digests WHERE digest = '{arm.digest}'") == [("image",)]
    assert integrity(db) == "ok"


def test_the_missing_child_warning_is_one_line(fresh_registry, tmp_path):
    p = Pusher(fresh_registry.url)
    index = p.push_index("multi", "1.0")
    gone = next(iter(index.children.values()))
    p.delete("multi", gone.digest)
    result = run("-reg", fresh_registry.url, "--db", tmp_path / "inv.db", "sync")
    assert result.exit_code == 0, result.output
    assert [line for line in result.stderr.splitlines() if "WARNING" in line] == [
        f"WARNING regdb.inventory.sync: index {index.digest} names 1 child manifest(s) the registry no longer has "
        f"({gone.digest}); recorded as missing"]
