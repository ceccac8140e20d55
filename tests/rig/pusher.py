"""Push and inspect images over the plain registry HTTP API.

Nothing here talks to Docker: images are built in Python (config blob + layers + manifest) and pushed with
``requests``, so a test can shape exactly the manifest it needs (OCI or Docker schema 2, index children, a
``subject``, a shared digest in two repositories) and knows every digest without asking the registry.
"""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass, field
from urllib.parse import urljoin

import requests

from tests.rig.media import (
    ACCEPT_ALL,
    COSIGN_ATTESTATION_LAYER,
    COSIGN_SBOM_LAYER,
    COSIGN_SIGNATURE_LAYER,
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    canonical_json,
    sha256_digest,
)
from tests.rig.registry import RigError

# A fixed default so that pushes with the same `unique` key give the same digest on every run.
DEFAULT_CREATED = "2024-01-01T00:00:00Z"


@dataclass
class Pushed:
    digest: str
    size: int  # manifest bytes length
    media_type: str
    config_digest: str
    config_size: int
    layers: list[tuple[str, int]]
    manifest: bytes
    config: bytes = b""


@dataclass
class PushedIndex:
    digest: str
    media_type: str
    size: int
    children: dict[tuple[str, str, str | None], Pushed] = field(default_factory=dict)
    manifest: bytes = b""


def error_codes(response: requests.Response) -> list[str]:
    """The ``errors[].code`` list of a registry error body (empty when the body is not one)."""
    try:
        return [e.get("code") for e in response.json().get("errors", [])]
    except (ValueError, AttributeError):
        return []


_nonce = itertools.count()


class Pusher:
    """Push and inspect images over the registry HTTP API. Pass a ``session`` to add auth or TLS settings."""

    def __init__(self, base_url: str, session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        # digest -> a repository known to hold it, so the next push can mount instead of upload.
        self._blob_home: dict[str, str] = {}

    # -- plumbing

    def _url(self, path: str) -> str:
        return self.base_url + path

    @staticmethod
    def _expect(response: requests.Response, *statuses: int) -> requests.Response:
        if response.status_code not in statuses:
            raise RigError(
                f"{response.request.method} {response.url} -> {response.status_code} "
                f"(expected {statuses}): {response.text[:500]}"
            )
        return response

    # -- blobs

    def blob_exists(self, repo: str, digest: str) -> bool:
        r = self.session.head(self._url(f"/v2/{repo}/blobs/{digest}"))
        return r.status_code == 200

    def push_blob(self, repo: str, data: bytes) -> str:
        digest = sha256_digest(data)
        if self.blob_exists(repo, digest):
            return digest
        location = None
        home = self._blob_home.get(digest)
        if home and home != repo:
            # Cross-repository mount: 201 when the registry linked the blob, 202 (an ordinary upload
            # session) when it could not; then we upload as usual.
            r = self.session.post(self._url(f"/v2/{repo}/blobs/uploads/"), params={"mount": digest, "from": home})
            self._expect(r, 201, 202)
            if r.status_code == 201:
                return digest
            location = r.headers["Location"]
        if location is None:
            r = self._expect(self.session.post(self._url(f"/v2/{repo}/blobs/uploads/")), 202)
            location = r.headers["Location"]
        # Monolithic upload: PUT the whole blob to the session URL with ?digest=. requests merges the
        # parameter into the query the Location already carries (_state=...).
        r = self.session.put(
            urljoin(self.base_url + "/", location),
            params={"digest": digest},
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        self._expect(r, 201)
        self._blob_home.setdefault(digest, repo)
        return digest

    def get_blob(self, repo: str, digest: str) -> bytes:
        return self._expect(self.session.get(self._url(f"/v2/{repo}/blobs/{digest}")), 200).content

    # -- manifests

    def put_manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> str:
        r = self.session.put(
            self._url(f"/v2/{repo}/manifests/{reference}"), data=body, headers={"Content-Type": media_type}
        )
        self._expect(r, 201)
        digest = sha256_digest(body)
        answered = r.headers.get("Docker-Content-Digest")
        if answered and answered != digest:
            raise RigError(f"registry stored {answered} for a manifest whose bytes hash to {digest}")
        return digest

    def get_manifest(self, repo: str, reference: str, accept: str = ACCEPT_ALL) -> tuple[bytes, str]:
        """(body, Content-Type) of a manifest."""
        r = self._expect(self.session.get(self._url(f"/v2/{repo}/manifests/{reference}"),
                                          headers={"Accept": accept}), 200)
        return r.content, r.headers.get("Content-Type", "")

    def push_image(
        self,
        repo: str,
        tag: str | None = None,
        *,
        oci: bool = False,
        layers: list[bytes] | None = None,
        architecture: str = "amd64",
        os: str = "linux",
        variant: str | None = None,
        created: str | None = None,
        labels: dict | None = None,
        subject: dict | None = None,
        unique: str | None = None,
    ) -> Pushed:
        """Push one image; tagged with ``tag``, or by digest only when ``tag`` is None.

        Every call makes a new digest (a nonce in the config) unless ``unique`` is given: the same ``unique``
        with the same arguments gives the same digest, for cases that need one digest in two places.
        ``created=None`` uses a fixed date; ``created=""`` leaves the field out (it is optional).
        ``layers`` are raw blob bytes (the registry does not look inside); by default one small layer.
        """
        key = unique if unique is not None else f"{uuid.uuid4().hex}-{next(_nonce)}"
        if layers is None:
            layers = [f"layer of {key}".encode()]
        config_obj: dict = {
            "architecture": architecture,
            "os": os,
            "config": {"Labels": labels or {}},
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer) for layer in layers]},
            # The key lands in the config, so the config digest and the manifest digest follow it.
            "history": [{"created_by": f"regdb test rig {key}"}],
        }
        if variant:
            config_obj["variant"] = variant
        created = DEFAULT_CREATED if created is None else created
        if created:
            config_obj["created"] = created
        config = canonical_json(config_obj)
        config_digest = self.push_blob(repo, config)
        layer_descs = [(self.push_blob(repo, layer), len(layer)) for layer in layers]

        media_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
        manifest_obj: dict = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": OCI_CONFIG if oci else DOCKER_CONFIG, "size": len(config),
                       "digest": config_digest},
            "layers": [{"mediaType": OCI_LAYER if oci else DOCKER_LAYER, "size": s, "digest": d}
                       for d, s in layer_descs],
        }
        if subject is not None:
            manifest_obj["subject"] = subject
        body = canonical_json(manifest_obj)
        digest = sha256_digest(body)
        self.put_manifest(repo, tag or digest, body, media_type)
        return Pushed(digest, len(body), media_type, config_digest, len(config), layer_descs, body, config)

    def push_index(
        self,
        repo: str,
        tag: str | None,
        *,
        oci: bool = False,
        platforms=(("amd64", "linux", None), ("arm64", "linux", "v8")),
        created: str | None = None,
        labels: dict | None = None,
        unique: str | None = None,
    ) -> PushedIndex:
        """Push one untagged child image per (architecture, os, variant), then the manifest list / OCI index."""
        children: dict[tuple[str, str, str | None], Pushed] = {}
        entries = []
        for arch, os_, variant in platforms:
            child = self.push_image(
                repo, None, oci=oci, architecture=arch, os=os_, variant=variant, created=created, labels=labels,
                unique=None if unique is None else f"{unique}/{arch}/{os_}/{variant}",
            )
            children[(arch, os_, variant)] = child
            platform = {"architecture": arch, "os": os_}
            if variant:
                platform["variant"] = variant
            entries.append({"mediaType": child.media_type, "size": child.size, "digest": child.digest,
                            "platform": platform})
        media_type = OCI_INDEX if oci else DOCKER_MANIFEST_LIST
        body = canonical_json({"schemaVersion": 2, "mediaType": media_type, "manifests": entries})
        digest = sha256_digest(body)
        self.put_manifest(repo, tag or digest, body, media_type)
        return PushedIndex(digest, media_type, len(body), children, body)

    def tag(self, repo: str, tag: str, digest: str, *, source_repo: str | None = None) -> None:
        """Point ``tag`` at ``digest``: PUT the exact manifest bytes under the tag (a registry has no other
        way to tag). With ``source_repo``, the manifest and its blobs are copied from there first."""
        if source_repo is not None and source_repo != repo:
            self.copy(source_repo, digest, repo, tag)
            return
        body, content_type = self.get_manifest(repo, digest)
        self.put_manifest(repo, tag, body, content_type)

    def copy(self, src_repo: str, digest: str, dst_repo: str, tag: str | None = None) -> None:
        """Blobs and manifest (children first, for an index) into ``dst_repo``: one digest, two repositories."""
        body, content_type = self.get_manifest(src_repo, digest)
        obj = json.loads(body)
        for child in obj.get("manifests", []):
            self.copy(src_repo, child["digest"], dst_repo)
        blobs = [obj["config"], *obj.get("layers", [])] if "config" in obj else []
        for desc in blobs:
            if not self.blob_exists(dst_repo, desc["digest"]) and not self._mount(dst_repo, desc["digest"], src_repo):
                self.push_blob(dst_repo, self.get_blob(src_repo, desc["digest"]))
        self.put_manifest(dst_repo, tag or digest, body, content_type)

    def _mount(self, repo: str, digest: str, from_repo: str) -> bool:
        r = self.session.post(self._url(f"/v2/{repo}/blobs/uploads/"), params={"mount": digest, "from": from_repo})
        self._expect(r, 201, 202)
        if r.status_code == 202:
            # Mount refused: drop the upload session it opened instead (best effort).
            self.session.delete(urljoin(self.base_url + "/", r.headers["Location"]))
        return r.status_code == 201

    def push_cosign_signature(self, repo: str, subject_digest: str, kind: str = "sig") -> str:
        """An OCI manifest shaped like cosign's, tagged ``sha256-<hex>.<kind>`` (sig, att or sbom)."""
        layer_type = {"sig": COSIGN_SIGNATURE_LAYER, "att": COSIGN_ATTESTATION_LAYER, "sbom": COSIGN_SBOM_LAYER}[kind]
        payload = canonical_json({
            "critical": {
                "identity": {"docker-reference": repo},
                "image": {"docker-manifest-digest": subject_digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        })
        config = canonical_json({"architecture": "", "os": "", "config": {},
                                 "rootfs": {"type": "layers", "diff_ids": [sha256_digest(payload)]}})
        config_digest = self.push_blob(repo, config)
        layer_digest = self.push_blob(repo, payload)
        annotations = {"dev.cosignproject.cosign/signature": "MEUCIQDfakefakefake"} if kind == "sig" else {}
        body = canonical_json({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": config_digest},
            "layers": [{"mediaType": layer_type, "size": len(payload), "digest": layer_digest,
                        "annotations": annotations}],
        })
        algo, hexpart = subject_digest.split(":", 1)
        return self.put_manifest(repo, f"{algo}-{hexpart}.{kind}", body, OCI_MANIFEST)

    def push_referrers_index(self, repo: str, subject_digest: str, referrers: list[Pushed]) -> str:
        """The OCI 1.1 referrers fallback: an OCI index of ``referrers`` (manifests whose ``subject`` is
        ``subject_digest``, already pushed), tagged ``sha256-<hex>`` as registries without the referrers API
        keep it."""
        entries = [{"mediaType": r.media_type, "size": r.size, "digest": r.digest} for r in referrers]
        body = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
        algo, hexpart = subject_digest.split(":", 1)
        return self.put_manifest(repo, f"{algo}-{hexpart}", body, OCI_INDEX)

    # -- reading and deleting

    def delete(self, repo: str, digest: str) -> int:
        return self.session.delete(self._url(f"/v2/{repo}/manifests/{digest}")).status_code

    def tags(self, repo: str) -> list[str] | None:
        """Sorted tags; ``[]`` for a repository whose tags were all deleted (the registry answers
        ``"tags": null``); ``None`` for a repository the registry does not know (404)."""
        r = self.session.get(self._url(f"/v2/{repo}/tags/list"))
        if r.status_code == 404:
            return None
        self._expect(r, 200)
        return sorted(r.json().get("tags") or [])

    def head_digest(self, repo: str, reference: str) -> str | None:
        r = self.session.head(self._url(f"/v2/{repo}/manifests/{reference}"), headers={"Accept": ACCEPT_ALL})
        if r.status_code == 404:
            return None
        self._expect(r, 200)
        return r.headers.get("Docker-Content-Digest")

    def catalog(self) -> list[str]:
        """Every repository, following ``Link: <...>; rel="next"`` (relative to the base URL) to the end."""
        repos: list[str] = []
        url = self._url("/v2/_catalog")
        while url:
            r = self._expect(self.session.get(url), 200)
            repos.extend(r.json().get("repositories") or [])
            nxt = r.links.get("next", {}).get("url")
            url = urljoin(self.base_url + "/", nxt) if nxt else None
        return repos

