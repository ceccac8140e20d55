"""A stub registry (pytest-httpserver) that serves whatever a test puts in it: JSON of any shape, names no
real registry would serve, a HEAD digest that matches the bytes it would answer. For what a real one never
serves; the hostile-input fault tests use it."""

from __future__ import annotations

import hashlib
import json
import re

from werkzeug import Request, Response

from tests.rig.media import DOCKER_MANIFEST, canonical_json

V2 = {"Docker-Distribution-API-Version": "registry/2.0"}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class StubRegistry:
    """Serves whatever ``catalog``, ``tags``, ``manifests`` and ``blobs`` hold (raw bytes, any JSON shape).
    HEAD announces the digest of the bytes it would serve, as a registry does."""

    def __init__(self, server):
        self.server = server
        self.catalog: bytes = b""
        self.tags: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[bytes, str]] = {}  # reference (tag or digest) -> body, media type
        self.blobs: dict[str, bytes] = {}
        server.expect_request("/v2/").respond_with_data("{}", headers=V2, content_type="application/json")
        server.expect_request(re.compile(r"^/v2/.+")).respond_with_handler(self)

    @property
    def url(self) -> str:
        return self.server.url_for("").rstrip("/")

    def __call__(self, request: Request) -> Response:
        path = request.path
        if path == "/v2/_catalog":
            return Response(self.catalog, content_type="application/json")
        repo, _, rest = path[len("/v2/"):].rpartition("/tags/")
        if rest == "list" and repo in self.tags:
            return Response(self.tags[repo], content_type="application/json")
        if "/manifests/" in path:
            reference = path.rsplit("/manifests/", 1)[1]
            if reference in self.manifests:
                body, media_type = self.manifests[reference]
                headers = {"Docker-Content-Digest": sha256(body), "Content-Length": str(len(body))}
                response = Response(b"" if request.method == "HEAD" else body, content_type=media_type,
                                    headers=headers)
                response.automatically_set_content_length = False
                return response
        if "/blobs/" in path:
            digest = path.rsplit("/blobs/", 1)[1]
            if digest in self.blobs:
                return Response(self.blobs[digest], content_type="application/octet-stream")
        return Response('{"errors":[{"code":"NAME_UNKNOWN"}]}', status=404, content_type="application/json")

    def image(self, repo: str, tag: str, *, config: dict | None = None, manifest_extra: dict | None = None,
              descriptor_size=None) -> str:
        """One image, tagged; returns its digest. ``descriptor_size`` replaces the config's size field."""
        config_bytes = canonical_json(config if config is not None else
                                      {"architecture": "amd64", "os": "linux", "created": "2024-05-01T10:00:00Z"})
        self.blobs[sha256(config_bytes)] = config_bytes
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "size": len(config_bytes) if descriptor_size is None else descriptor_size,
                       "digest": sha256(config_bytes)},
            "layers": [],
            **(manifest_extra or {}),
        }
        return self.manifest(repo, tag, canonical_json(manifest), DOCKER_MANIFEST)

    def manifest(self, repo: str, tag: str, body: bytes, media_type: str) -> str:
        digest = sha256(body)
        self.manifests[tag] = self.manifests[digest] = (body, media_type)
        listed = json.loads(self.tags.get(repo, b'{"tags": []}'))["tags"] or []
        self.tags[repo] = json.dumps({"name": repo, "tags": sorted(set(listed) | {tag})}).encode()
        return digest

    def good(self) -> None:
        self.catalog = json.dumps({"repositories": ["app", "lib"]}).encode()
        self.image("app", "1.0")
        self.image("lib", "2.0", config={"architecture": "arm64", "os": "linux", "created": "2024-06-01T00:00:00Z"})
