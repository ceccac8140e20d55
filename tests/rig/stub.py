"""A Docker Registry v2 API stub on pytest-httpserver, with switches for what distribution 2.8 never does:
Quay-style Link parameters, a HEAD that answers 405, blobs redirected to another host, a missing
Docker-Content-Digest, and the HTTP Digest (or Basic) auth a proxy in front of a registry may demand."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.rig.media import DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST, canonical_json, sha256_digest

# --- a registry stub -----------------------------------------------------------------------------------------


@dataclass
class Seen:
    """One request as the stub saw it."""

    at: float  # time.monotonic() on arrival
    method: str
    path: str
    query: str
    headers: dict


@dataclass
class StubImage:
    digest: str
    manifest: bytes
    config_digest: str
    config: bytes


_MANIFEST_PATH = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")
_BLOB_PATH = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)$")
_TAGS_PATH = re.compile(r"^/v2/(?P<name>.+)/tags/list$")


def _error(status: int, code: str, message: str = "") -> Response:
    body = json.dumps({"errors": [{"code": code, "message": message or code.lower(), "detail": None}]})
    return Response(body, status=status, content_type="application/json")


@dataclass
class StubRegistry:
    """A Docker Registry v2 API on pytest-httpserver, answering the way distribution 2.8 does unless told not to.

    Switches: ``head_status`` (answer every manifest HEAD with it, e.g. 405 or 404 as Nexus does),
    ``content_digest`` (False: never send Docker-Content-Digest), ``blob_redirect`` (a base URL: blob GETs
    answer 307 to ``<base>/blobs/<digest>``), ``authorize`` (request -> None to let it through, or the
    Response to send instead, e.g. a 401 challenge), ``catalog``/``tags_list`` (request -> Response, to page
    listings in a registry's own style). Every request is appended to ``seen``.
    """

    server: HTTPServer
    head_status: int | None = None
    content_digest: bool = True
    blob_redirect: str | None = None
    authorize: object = None
    catalog: object = None
    tags_list: object = None
    repos: dict = field(default_factory=dict)  # repo -> {tag: digest}
    images: dict = field(default_factory=dict)  # digest -> StubImage
    seen: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        self.server.expect_request(re.compile(r"^/v2/.*")).respond_with_handler(self._handle)

    @property
    def url(self) -> str:
        return self.server.url_for("").rstrip("/")

    # --- content

    def push_image(self, repo: str, tag: str, *, architecture: str = "amd64", os: str = "linux",
                   created: str = "2024-05-06T07:08:09Z", unique: str | None = None) -> StubImage:
        config = canonical_json({
            "architecture": architecture, "os": os, "created": created,
            "config": {"Labels": {"unique": unique or secrets.token_hex(4)}},
            "rootfs": {"type": "layers", "diff_ids": []},
        })
        layer = f"layer of {unique or f'{repo}:{tag}'}".encode()
        manifest = canonical_json({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "size": len(config), "digest": sha256_digest(config)},
            "layers": [{"mediaType": DOCKER_LAYER, "size": len(layer), "digest": sha256_digest(layer)}],
        })
        image = StubImage(sha256_digest(manifest), manifest, sha256_digest(config), config)
        with self.lock:
            self.images[image.digest] = image
            self.repos.setdefault(repo, {})[tag] = image.digest
        return image

    def tag(self, repo: str, tag: str, digest: str) -> None:
        with self.lock:
            self.repos.setdefault(repo, {})[tag] = digest

    # --- what was asked

    def requests_of(self, method: str | None = None, path_prefix: str = "") -> list[Seen]:
        with self.lock:
            return [s for s in self.seen
                    if (method is None or s.method == method) and s.path.startswith(path_prefix)]

    # --- answering

    def _handle(self, request: Request) -> Response:
        with self.lock:
            self.seen.append(Seen(time.monotonic(), request.method, request.path,
                                  request.query_string.decode(), dict(request.headers)))
        if self.authorize is not None:
            refused = self.authorize(request)
            if refused is not None:
                return refused
        path = request.path
        if path == "/v2/":
            return Response("{}", content_type="application/json",
                            headers={"Docker-Distribution-API-Version": "registry/2.0"})
        if path == "/v2/_catalog":
            if self.catalog is not None:
                return self.catalog(request)
            return _json({"repositories": sorted(self.repos)})
        if match := _TAGS_PATH.match(path):
            if match["name"] not in self.repos:
                return _error(404, "NAME_UNKNOWN")
            if self.tags_list is not None:
                return self.tags_list(request)
            return _json({"name": match["name"], "tags": sorted(self.repos[match["name"]])})
        if match := _MANIFEST_PATH.match(path):
            return self._manifest(request, match["name"], match["ref"])
        if match := _BLOB_PATH.match(path):
            return self._blob(match["digest"])
        return _error(404, "NOT_FOUND")  # referrers too, as 2.8: no referrers API

    def _manifest(self, request: Request, repo: str, reference: str) -> Response:
        if request.method == "HEAD" and self.head_status is not None:
            return Response(status=self.head_status)
        digest = reference if reference.startswith("sha256:") else self.repos.get(repo, {}).get(reference)
        # Only tagged manifests are served: an untagged one answers 404 as if deleted (enough for these tests).
        image = self.images.get(digest) if digest and digest in self.repos.get(repo, {}).values() else None
        if image is None:
            return _error(404, "MANIFEST_UNKNOWN")
        headers = {"Content-Length": str(len(image.manifest))}
        if self.content_digest:
            headers["Docker-Content-Digest"] = image.digest
        body = b"" if request.method == "HEAD" else image.manifest
        return Response(body, status=200, content_type=DOCKER_MANIFEST, headers=headers)

    def _blob(self, digest: str) -> Response:
        if self.blob_redirect:
            return Response(status=307, headers={"Location": f"{self.blob_redirect}/blobs/{digest}"})
        for image in self.images.values():
            if image.config_digest == digest:
                return Response(image.config, content_type="application/octet-stream")
        return _error(404, "BLOB_UNKNOWN")


def _json(body, *, headers=None) -> Response:
    return Response(json.dumps(body), content_type="application/json", headers=headers or {})


def serve_blobs(storage: HTTPServer, stub: StubRegistry) -> list[dict]:
    """Make ``storage`` answer ``/blobs/<digest>`` with the stub's config blobs, as S3 behind a redirect would;
    returns the list that collects the headers of every request it gets."""
    headers_seen: list[dict] = []

    def answer(request: Request) -> Response:
        headers_seen.append(dict(request.headers))
        digest = request.path.rsplit("/", 1)[-1]
        for image in stub.images.values():
            if image.config_digest == digest:
                return Response(image.config, content_type="application/octet-stream")
        return Response(status=404)

    storage.expect_request(re.compile(r"^/blobs/.*")).respond_with_handler(answer)
    return headers_seen


def paged(names: list[str], request: Request, *, size: int, link) -> Response:
    """One page of ``names`` after ``last`` (or at an opaque ``next_page``), with ``Link`` from ``link(next)``
    where ``next`` is the last name of the page; no Link on the last page."""
    query = parse_qs(request.query_string.decode())
    start = 0
    marker = (query.get("last") or query.get("next_page") or [None])[0]
    if marker is not None:
        start = names.index(_unwrap(marker)) + 1
    page = names[start:start + size]
    headers = {}
    if start + size < len(names):
        headers["Link"] = f'<{link(page[-1])}>; rel="next"'
    key = "repositories" if request.path.endswith("_catalog") else "tags"
    return _json({key: page}, headers=headers)


def opaque(name: str) -> str:
    """A Quay-style opaque page token (the stub can decode it; the client must not care what it is)."""
    return "pg" + name.encode().hex()


def _unwrap(marker: str) -> str:
    return bytes.fromhex(marker[2:]).decode() if marker.startswith("pg") else marker


# --- HTTP Digest -----------------------------------------------------------------------------------------------


class DigestChecker:
    """Checks RFC 2617 Digest (MD5, qop=auth) as a registry behind an nginx/Apache Digest proxy would.
    Use as ``StubRegistry(authorize=checker)``."""

    realm = "regdb-digest"

    def __init__(self, user: str, password: str):
        self.user = user
        self.password = password
        self.nonces: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, request: Request) -> Response | None:
        header = request.headers.get("Authorization", "")
        if header.startswith("Digest ") and self._valid(request, header[7:]):
            return None
        nonce = secrets.token_hex(16)
        with self.lock:
            self.nonces.add(nonce)
        return Response(
            status=401,
            headers={"WWW-Authenticate": f'Digest realm="{self.realm}", nonce="{nonce}", qop="auth", '
                                         f'algorithm=MD5, opaque="regdb"'},
        )

    def _valid(self, request: Request, value: str) -> bool:
        fields = {key: quoted or bare for key, quoted, bare in re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]*))', value)}
        with self.lock:
            known = fields.get("nonce") in self.nonces
        if not known or fields.get("username") != self.user or fields.get("realm") != self.realm:
            return False
        uri = request.full_path.rstrip("?") if request.query_string else request.path
        if fields.get("uri") not in (uri, request.path):
            return False

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()

        ha1 = md5(f"{self.user}:{self.realm}:{self.password}")
        ha2 = md5(f"{request.method}:{fields['uri']}")
        expected = md5(f"{ha1}:{fields['nonce']}:{fields.get('nc')}:{fields.get('cnonce')}:{fields.get('qop')}:{ha2}")
        return secrets.compare_digest(expected, fields.get("response", ""))


def basic_checker(user: str, password: str):
    """``authorize`` for a Basic-auth stub registry (as distribution's htpasswd answers)."""
    import base64

    wanted = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def check(request: Request) -> Response | None:
        if request.headers.get("Authorization") == wanted:
            return None
        return Response(status=401, headers={"WWW-Authenticate": 'Basic realm="regdb-stub"'})

    return check
