"""Helpers for the removal tests: the registry's and the inventory's state side by side, and a forwarding proxy
in front of a real registry that fails chosen DELETEs (a real registry cannot be made to answer 500 or 403 to
one manifest and 202 to the next)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import requests
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from regdb import Inventory, RegistryClient
from tests.rig import ACCEPT_ALL, Pusher


def registry_tags(pusher: Pusher, repos) -> set[tuple[str, str, str]]:
    """(repo, tag, digest) for every tag of ``repos``, straight from the registry."""
    return {(repo, tag, pusher.head_digest(repo, tag)) for repo in repos for tag in pusher.tags(repo) or []}


def manifest_present(pusher: Pusher, repo: str, digest: str) -> bool:
    r = pusher.session.head(f"{pusher.base_url}/v2/{repo}/manifests/{digest}", headers={"Accept": ACCEPT_ALL})
    assert r.status_code in (200, 404), r.status_code
    return r.status_code == 200


def inventory_tags(db: Path) -> set[tuple[str, str, str]]:
    with sqlite3.connect(db) as conn:
        return set(conn.execute("SELECT repo, tag, digest FROM images"))


def inventory_manifests(db: Path) -> set[tuple[str, str]]:
    """(repo, digest) of every manifest the inventory holds in a repository, tagged or not."""
    with sqlite3.connect(db) as conn:
        return set(conn.execute(
            "SELECT r.name, d.digest FROM repo_digests rd JOIN repos r ON r.id = rd.repo_id "
            "JOIN digests d ON d.id = rd.digest_id"
        ))


def deletions(db: Path) -> list[dict]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM deletions ORDER BY id")]


def assert_inventory_equals_registry(db: Path, registry_url: str, pusher: Pusher, scratch: Path, *,
                                     repos=None) -> None:
    """The inventory after a removal is what a fresh sync into a second inventory finds, and every manifest it
    still lists is still in the registry (a fresh sync cannot see untagged manifests it never knew).
    ``repos``: compare only those repositories (the others may be stale on purpose)."""
    second = scratch / "second.db"  # may be an empty inventory made beforehand (creating one takes 0.2 s)
    with Inventory(second) as inventory:
        inventory.sync(RegistryClient(registry_url))
    mine, fresh = inventory_tags(db), inventory_tags(second)
    kept, found = inventory_manifests(db), inventory_manifests(second)
    if repos is not None:
        mine, fresh = {t for t in mine if t[0] in repos}, {t for t in fresh if t[0] in repos}
        kept, found = {m for m in kept if m[0] in repos}, {m for m in found if m[0] in repos}
    assert mine == fresh
    assert found <= kept
    gone = [(repo, digest) for repo, digest in kept if not manifest_present(pusher, repo, digest)]
    assert gone == [], "deleted manifests left in the inventory"


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
