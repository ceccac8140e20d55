"""Forwarding HTTP proxies (pytest-httpserver) in front of a real registry, for answers a real registry
cannot be made to give: a 500 or 403 to one manifest's DELETE and 202 to the next, or an OCI 1.1 registry's
referrers API and DELETE by tag."""

from __future__ import annotations

import json
import re

import requests
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.rig.media import OCI_INDEX
from tests.rig.pusher import Pusher


class FaultyProxy:
    """Forwards every request to ``upstream``, except DELETEs of the digests in ``fail`` (digest -> status)."""

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.fail: dict[str, int] = {}
        self.deletes: list[str] = []
        self.server = HTTPServer(host="127.0.0.1", port=0)
        self.server.expect_request(re.compile(".*")).respond_with_handler(self._forward)
        self.server.start()
        self.url = self.server.url_for("").rstrip("/")

    def _forward(self, request: Request) -> Response:
        if request.method == "DELETE":
            digest = request.path.rsplit("/", 1)[-1]
            self.deletes.append(digest)
            if digest in self.fail:
                status = self.fail[digest]
                code = {403: "DENIED", 401: "UNAUTHORIZED"}.get(status, "UNKNOWN")
                return Response(f'{{"errors":[{{"code":"{code}","message":"injected"}}]}}', status=status,
                                content_type="application/json")
        url = self.upstream + request.full_path.rstrip("?")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        answer = requests.request(request.method, url, headers=headers, data=request.get_data(),
                                  allow_redirects=False, timeout=30)
        response = Response(answer.content, status=answer.status_code)
        for name in ("Content-Type", "Docker-Content-Digest", "Docker-Distribution-API-Version", "Link",
                     "Location", "Etag"):
            if name in answer.headers:
                response.headers[name] = answer.headers[name]
        if response.headers.get("Location", "").startswith(self.upstream):
            # The registry names its own address in an upload Location; as a proxy, name ours (regdb refuses to
            # send credentials to another origin than the registry's).
            response.headers["Location"] = self.url + response.headers["Location"][len(self.upstream):]
        if request.method == "HEAD" and "Content-Length" in answer.headers:
            response.headers["Content-Length"] = answer.headers["Content-Length"]
            response.automatically_set_content_length = False
        return response

    def stop(self) -> None:
        self.server.clear()
        if self.server.is_running():
            self.server.stop()


class RegistryProxy(FaultyProxy):
    """A real registry behind a proxy that can fail the next ``fail_deletes`` DELETEs of manifests the registry
    holds (500), and with ``oci=True`` answers like an OCI 1.1 registry: the referrers API (an empty index) and
    DELETE by tag, carried out by the proxy with a placeholder image of its own. ``deletes_manifest=True``
    makes that DELETE by tag delete the manifest itself, with every tag on it, as some registries do."""

    def __init__(self, upstream: str, *, oci: bool = False, deletes_manifest: bool = False):
        super().__init__(upstream)
        self.oci = oci
        self.deletes_manifest = deletes_manifest
        self.fail_deletes = 0
        self.tag_deletes: list[str] = []
        self.pusher = Pusher(upstream)

    def _forward(self, request: Request) -> Response:
        path = request.path
        if self.oci and request.method == "GET" and "/referrers/" in path:
            return Response(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}),
                            status=200, content_type=OCI_INDEX)
        found = re.match(r"^/v2/(?P<repo>.+)/manifests/(?P<ref>[^/]+)$", path)
        if request.method == "DELETE" and found:
            repo, ref = found.group("repo"), found.group("ref")
            if ":" not in ref and self.oci:
                self.tag_deletes.append(ref)
                digest = self.pusher.head_digest(repo, ref)
                if digest is None:
                    return Response('{"errors":[{"code":"MANIFEST_UNKNOWN"}]}', status=404)
                if self.deletes_manifest:
                    self.pusher.delete(repo, digest)
                else:
                    self.pusher.delete(repo, self.pusher.push_image(repo, ref).digest)
                return Response(status=202)
            if self.fail_deletes and ":" in ref and self.pusher.head_digest(repo, ref) is not None:
                # Only manifests the registry holds: the rights check deletes a digest that exists nowhere.
                self.fail_deletes -= 1
                return Response('{"errors":[{"code":"UNKNOWN","message":"injected"}]}', status=500,
                                content_type="application/json")
        return super()._forward(request)
