"""Media types the rig pushes and reads, and the canonical bytes (so the digest) of a JSON document."""

from __future__ import annotations

import hashlib
import json

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX)
# One Accept header naming all four: with fewer, distribution 2.8 rewrites a manifest list to its amd64
# child and answers 404 for OCI manifests (see docs/registry-behaviour.md), so every read in the rig sends this.
ACCEPT_ALL = ", ".join(MANIFEST_TYPES)

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

COSIGN_SIGNATURE_LAYER = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_ATTESTATION_LAYER = "application/vnd.dsse.envelope.v1+json"
COSIGN_SBOM_LAYER = "text/spdx+json"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj) -> bytes:
    # Compact, sorted: the bytes (and so the digest) depend only on the content, never on dict order.
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
