"""Hostile input: names at the registry's limits, JSON of the wrong shape, names no registry should serve.

Names at the limits go through the real registry (it enforces them: a 256-character name or a 129-character
tag is refused). Wrong JSON types cannot come from a real registry, so a pytest-httpserver stub serves them.
A bad answer fails the sync with one line and leaves the previous snapshot; an odd but harmless one (a config
with a number where a date belongs) is recorded with NULL for what makes no sense.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

import pytest

from tests.rig.cli import error_line, run
from tests.rig.hostile import StubRegistry
from tests.rig.media import DOCKER_MANIFEST, OCI_INDEX, canonical_json
from tests.rig.pusher import Pusher
from tests.rig.registry import RigError
from tests.rig.state import integrity, snapshot, syncs

# Every character the registry's grammars allow. A repository path component is [a-z0-9]+ joined by one of
# the separators . _ __ or any run of -; the whole name is at most 255 characters (distribution's
# reference.NameTotalLengthMax). A tag is [\w][\w.-]{0,127}.
COMPONENT = "abcdefghijklmnopqrstuvwxyz0123456789"
SEPARATED = "a.b_c__d-e---f"
LONG_REPO = f"{COMPONENT}/{SEPARATED}/" + "p" * (255 - len(COMPONENT) - len(SEPARATED) - 2)
TAG_CHARACTERS = "_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"
LONG_TAG = TAG_CHARACTERS + "x" * (128 - len(TAG_CHARACTERS))
ODD_TAGS = ["_", "0", "Z", "a--.._", "1.0.0-rc.1", "v1.2.3_beta", "1e10", "0x1F", "NULL", "latest.-"]


def test_names_at_the_registry_limits_with_every_allowed_character(module_registry, tmp_path):
    assert len(LONG_REPO) == 255 and len(LONG_TAG) == 128
    p = Pusher(module_registry.url)
    with pytest.raises(RigError):  # the limits are the registry's: one more character is refused
        p.push_image(LONG_REPO + "p", "1.0")
    with pytest.raises(RigError):
        p.push_image("short", LONG_TAG + "x")
    long_image = p.push_image(LONG_REPO, LONG_TAG)
    odd = {tag: p.push_image(LONG_REPO, tag) for tag in ODD_TAGS}
    db = tmp_path / "inv.db"

    result = run("-reg", module_registry.url, "--db", db, "sync")
    assert result.exit_code == 0, result.output
    with closing(sqlite3.connect(db)) as conn:
        rows = set(conn.execute("SELECT repo, tag, digest FROM images WHERE repo = ?", (LONG_REPO,)))
    assert rows == {(LONG_REPO, LONG_TAG, long_image.digest)} | {(LONG_REPO, t, i.digest) for t, i in odd.items()}

    result = run("--db", db, "sql", "--format", "json", "SELECT tag FROM images WHERE repo = :repo AND tag = :tag",
                 "--param", f"repo={LONG_REPO}", "--param", f"tag={LONG_TAG}")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [{"tag": LONG_TAG}]

    # The 128-character tag goes, every odd one stays: the names survive the URL both ways.
    result = run("-reg", module_registry.url, "--db", db, "remove-tags", "--yes", "-r", LONG_REPO, "-t", LONG_TAG)
    assert result.exit_code == 0, result.output
    assert p.tags(LONG_REPO) == sorted(ODD_TAGS)
    assert all(p.head_digest(LONG_REPO, tag) == image.digest for tag, image in odd.items())


@pytest.fixture
def stub(httpserver):
    registry = StubRegistry(httpserver)
    registry.good()
    return registry


def synced_from(stub, tmp_path):
    db = tmp_path / "inv.db"
    result = run("-reg", stub.url, "--db", db, "sync")
    assert result.exit_code == 0, result.output
    return db


def set_catalog(value):
    return lambda stub: setattr(stub, "catalog", json.dumps(value).encode())


def set_tags(value):
    return lambda stub: stub.tags.__setitem__("lib", json.dumps(value).encode())


def new_image(**kwargs):
    return lambda stub: stub.image("lib", "2.1", **kwargs)


def new_index(entries):
    return lambda stub: stub.manifest("lib", "2.1", canonical_json(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}), OCI_INDEX)


def new_manifest(body: bytes):
    return lambda stub: stub.manifest("lib", "2.1", body, DOCKER_MANIFEST)


@pytest.mark.parametrize("change, message", [
    pytest.param(set_catalog([]), "GET /v2/_catalog?n=1000: the registry's answer is not a JSON object",
                 id="catalog-is-a-list"),
    pytest.param(set_catalog({"repositories": "app"}), "GET /v2/_catalog?n=1000: 'repositories' is not a list "
                 "of names", id="catalog-is-a-string"),
    pytest.param(set_catalog({"repositories": [1, {"name": "app"}]}), "GET /v2/_catalog?n=1000: 'repositories' "
                 "is not a list of names", id="repositories-are-not-strings"),
    pytest.param(set_tags({"name": "lib", "tags": [1, 2.5, None]}), "GET /v2/lib/tags/list: 'tags' is not a "
                 "list of names", id="tags-are-numbers"),
    pytest.param(set_tags({"name": "lib", "tags": {"2.0": "sha256:x"}}), "GET /v2/lib/tags/list: 'tags' is "
                 "not a list of names", id="tags-are-an-object"),
    pytest.param(set_tags("2.0"), "GET /v2/lib/tags/list: the registry's answer is not a JSON object",
                 id="tags-answer-is-a-string"),
    pytest.param(new_image(descriptor_size="123"), "has a descriptor with an invalid size",
                 id="size-is-a-string"),
    pytest.param(new_image(descriptor_size=-1), "has a descriptor with an invalid size", id="size-is-negative"),
    pytest.param(new_image(descriptor_size=True), "has a descriptor with an invalid size", id="size-is-a-bool"),
    pytest.param(new_image(manifest_extra={"layers": [{"digest": 7, "size": 1}]}),
                 "has a descriptor without a valid digest", id="layer-digest-is-a-number"),
    pytest.param(new_index([1, 2]), "has a descriptor that is not an object", id="index-entries-are-numbers"),
    pytest.param(new_index("none"), "has no 'manifests' list", id="index-manifests-is-a-string"),
    pytest.param(new_manifest(b"[1, 2, 3]"), "is not a JSON object", id="manifest-is-a-list"),
    pytest.param(new_manifest(b"\xff\xfe not json"), "is not JSON", id="manifest-is-not-json"),
])
def test_json_of_unexpected_types_fails_with_one_line_and_keeps_the_snapshot(stub, tmp_path, change, message):
    db = synced_from(stub, tmp_path)
    before = snapshot(db)
    change(stub)
    result = run("-reg", stub.url, "--db", db, "sync")
    line = error_line(result)
    assert message in line, line
    assert snapshot(db) == before
    assert syncs(db)[-1] == ("failed", line)
    assert integrity(db) == "ok"


def test_config_fields_of_the_wrong_type_are_recorded_as_null(stub, tmp_path):
    db = synced_from(stub, tmp_path)
    digest = stub.image("lib", "2.1", config={"architecture": ["arm64"], "os": None, "created": 1714557600},
                        manifest_extra={"mediaType": 42, "annotations": "none", "subject": "sha256:x"})
    result = run("-reg", stub.url, "--db", db, "sync")
    assert result.exit_code == 0, result.output
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute(
            "SELECT repo, tag, media_type, created, architecture, os FROM images WHERE digest = ?", (digest,)
        ).fetchall() == [("lib", "2.1", DOCKER_MANIFEST, None, None, None)]
        assert conn.execute("SELECT subject_digest FROM digests WHERE digest = ?", (digest,)).fetchone() == (None,)


def test_names_no_registry_would_serve_are_reported_once_and_skipped(stub, tmp_path):
    # A hostile catalog: quotes, SQL, percent signs, spaces, non-ASCII, a path climbing out of /v2/. None of
    # them is in the OCI grammar: each is named once (escaped), never asked for, never stored; the rest syncs.
    names = ["x'; DROP TABLE tags; --", "100% sure/with space", "ünï/cødé", 'quote"d', "../../etc"]
    stub.catalog = json.dumps({"repositories": ["app", *names, "lib"]}).encode()
    for name in names:
        stub.image(name, "1.0")
    stub.image("lib", "1'0")  # a tag outside the grammar in a valid repository: skipped, the repository marked
    db = tmp_path / "inv.db"
    result = run("-reg", stub.url, "--db", db, "sync")
    assert result.exit_code == 0, result.output
    for name in names:
        assert result.stderr.count(f"skipping repository {name!r}: not a valid repository name") == 1
    assert result.stderr.count("lib: tag \"1'0\" is not a valid tag; skipped") == 1
    with closing(sqlite3.connect(db)) as conn:
        assert set(conn.execute("SELECT repo, tag FROM images")) == {("app", "1.0"), ("lib", "2.0")}
        assert dict(conn.execute("SELECT name, incomplete FROM repos")) == {
            "app": None, "lib": "tag \"1'0\" is not a valid tag"}
    asked = {request.path for request, _ in stub.server.log}
    assert not any("etc" in path or "DROP" in path or "%" in path for path in asked), asked
    assert integrity(db) == "ok"
