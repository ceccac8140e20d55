"""Random and mutated registry answers through the whole sync: never a traceback, never a raw escape.

A stub registry (pytest-httpserver) serves a small good registry; each example replaces some of its answers
(the catalog, a tag list, a manifest, a config blob, the Docker-Content-Digest and Link headers) with JSON of
the wrong shape, a good document with one field replaced, random bytes, huge numbers, or strings full of
control characters. The sync must either complete (exit 0) or fail with one ``Error:`` line (exit 1), print
no control character raw, and leave an intact inventory. The default run is bounded (seconds); a long run
goes behind ``REGDB_LONG=1`` (``REGDB_FUZZ_EXAMPLES``, default 3000).
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.rig.cli import run
from tests.rig.hostile import StubRegistry, sha256
from tests.rig.media import canonical_json

LONG = os.environ.get("REGDB_LONG") == "1"
EXAMPLES = int(os.environ.get("REGDB_FUZZ_EXAMPLES", "3000")) if LONG else 40

CONTROL = st.sampled_from(["\x1b[2J", "\x1b]0;title\x07", "\n", "\r", "\x00", "\x7f", "\x9b31m", "\u2028", "\t"])
TEXT = st.one_of(
    st.text(max_size=20),
    st.builds(lambda a, c, b: a + c + b, st.text(max_size=8), CONTROL, st.text(max_size=8)),
    st.sampled_from(["../../etc", "sha256:../../../../v2/_catalog?", "md5:" + "0" * 32, "shake_128:" + "0" * 64,
                     "sha256:" + "0" * 64, "sha512:" + "f" * 128, "http://[::1", "file:///etc/passwd", "", "lib"]),
)
NUMBER = st.one_of(st.integers(), st.integers(min_value=2**62), st.integers(max_value=-(2**62)),
                   st.floats(allow_nan=True, allow_infinity=True), st.just(10**300))
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, TEXT)
JSON = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                    st.dictionaries(TEXT, inner, max_size=4)), max_leaves=12)


def paths(doc, prefix=()):
    """Every path into a JSON document (keys and indexes), the document itself first."""
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from paths(value, prefix + (key,))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from paths(value, prefix + (index,))


def replaced(doc, path, value):
    if not path:
        return value
    copy = list(doc) if isinstance(doc, list) else dict(doc)
    copy[path[0]] = replaced(doc[path[0]], path[1:], value)
    return copy


@st.composite
def answer(draw, good: bytes) -> bytes:
    """A hostile version of the answer ``good``: random bytes, random JSON, or ``good`` with one part replaced."""
    kind = draw(st.sampled_from(["bytes", "json", "mutate", "mutate", "mutate", "nested", "good"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return json.dumps(draw(JSON)).encode()
    if kind == "nested":
        return b"[" * draw(st.integers(min_value=1000, max_value=200_000))  # past Python's recursion limit
    if kind == "good":
        return good
    doc = json.loads(good)
    path = draw(st.sampled_from(list(paths(doc))))
    return json.dumps(replaced(doc, path, draw(JSON)), allow_nan=True).encode()


class Fuzzed(StubRegistry):
    """The stub, plus headers to force on manifest answers."""

    headers: dict = {}

    def __call__(self, request):
        response = super().__call__(request)
        for name, value in self.headers.items():
            if "/manifests/" in request.path or (name == "Link" and request.path == "/v2/_catalog"):
                response.headers[name] = value
        return response


def reset(stub: Fuzzed) -> dict[str, bytes]:
    """The good registry again; returns the answers an example may replace."""
    stub.catalog, stub.tags, stub.manifests, stub.blobs, stub.headers = b"", {}, {}, {}, {}
    stub.good()
    index = canonical_json({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                            "manifests": [{"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                                           "digest": stub.manifests["2.0"][0] and sha256(stub.manifests["2.0"][0]),
                                           "size": len(stub.manifests["2.0"][0]),
                                           "platform": {"architecture": "arm64", "os": "linux"}}]})
    stub.manifest("lib", "multi", index, "application/vnd.oci.image.index.v1+json")
    config = next(iter(stub.blobs))
    return {"catalog": stub.catalog, "tags": stub.tags["lib"], "manifest": stub.manifests["2.0"][0],
            "index": index, "config": stub.blobs[config], "config_digest": config.encode()}


@pytest.fixture
def fuzzed(httpserver):
    return Fuzzed(httpserver)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not LONG, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_no_registry_answer_makes_a_traceback(fuzzed, short_timeouts, tmp_path, data):
    good = reset(fuzzed)
    targets = data.draw(st.sets(st.sampled_from(["catalog", "tags", "manifest", "index", "config", "digest",
                                                 "link"]), min_size=1, max_size=3))
    if "catalog" in targets:
        fuzzed.catalog = data.draw(answer(good["catalog"]))
    if "tags" in targets:
        fuzzed.tags["lib"] = data.draw(answer(good["tags"]))
    if "manifest" in targets:  # served for the tag and its digest alike, with the digest of what is served
        body = data.draw(answer(good["manifest"]))
        fuzzed.manifests["2.0"] = fuzzed.manifests[sha256(good["manifest"])] = (body, fuzzed.manifests["2.0"][1])
        fuzzed.manifests[sha256(body)] = (body, fuzzed.manifests["2.0"][1])
    if "index" in targets:
        body = data.draw(answer(good["index"]))
        fuzzed.manifests["multi"] = (body, "application/vnd.oci.image.index.v1+json")
    if "config" in targets:
        fuzzed.blobs[good["config_digest"].decode()] = data.draw(answer(good["config"]))
    if "digest" in targets:
        fuzzed.headers["Docker-Content-Digest"] = data.draw(TEXT).encode("utf-8", "replace").decode("latin-1")
    if "link" in targets:
        fuzzed.headers["Link"] = "<" + data.draw(TEXT).encode("utf-8", "replace").decode("latin-1") + '>; rel="next"'
    db = tmp_path / "fuzz.db"
    result = run("-reg", fuzzed.url, "--db", db, "sync")
    everything = result.output + (result.stderr or "")
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in everything
    assert not any(c in everything for c in "\x1b\x07\x00\x7f\x9b\u2028"), repr(everything[:300])
    if result.exit_code == 1:
        lines = [line for line in result.output.splitlines() if not line.startswith("WARNING ")]
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    else:
        assert result.exit_code == 0, result.output
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
