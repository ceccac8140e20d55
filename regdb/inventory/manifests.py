"""Reading manifests and image configs: what the inventory records about a digest.

Pure functions over bytes; the sync fetches, these parse. A manifest that is not the JSON the Docker /
OCI specs describe raises ``RegistryError`` with the digest, never a KeyError deep in the sync.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from regdb.registry.reference import is_digest, printable
from regdb.registry.media import DOCKER_MANIFEST_LIST, INDEX_TYPES, OCI_INDEX
from regdb.registry.transport import MAX_CONFIG_BYTES
from regdb.errors import RegistryError

IMAGE_CONFIG_TYPES = frozenset(
    {"application/vnd.docker.container.image.v1+json", "application/vnd.oci.image.config.v1+json"}
)
# Image configs are a few KiB; an artifact's "config" may be anything. Never pull a large blob to read it
# (MAX_CONFIG_BYTES, from the client, which also refuses a larger body).
# A descriptor's size: no blob is a petabyte. Past this a sum over a manifest's layers could overflow the
# inventory's 64-bit integers (sqlite3 raises OverflowError), so a larger one is refused.
MAX_DESCRIPTOR_SIZE = 2**50


@dataclass(frozen=True)
class Child:
    digest: str
    architecture: str | None
    os: str | None
    variant: str | None


@dataclass
class ManifestInfo:
    """Everything regdb keeps about one manifest digest."""

    digest: str
    media_type: str
    kind: str  # "image" or "index"
    size: int
    config_digest: str | None = None
    config_size: int | None = None
    config_media_type: str | None = None
    layers: list[tuple[str, int]] = field(default_factory=list)
    children: list[Child] = field(default_factory=list)
    subject_digest: str | None = None
    artifact_type: str | None = None
    created: datetime | None = None
    architecture: str | None = None
    os: str | None = None
    # Descriptors left out because their digest is outside the OCI grammar: one line each, for the warning
    # and for the repository's `incomplete` column.
    problems: list[str] = field(default_factory=list)
    missing_children: set[str] = field(default_factory=set)  # children the registry no longer has (404)

    @property
    def wants_config(self) -> bool:
        return (
            self.kind == "image"
            and self.config_digest is not None
            and self.config_media_type in IMAGE_CONFIG_TYPES
            and (self.config_size or 0) <= MAX_CONFIG_BYTES
        )


def parse_manifest(digest: str, body: bytes, media_type: str | None) -> ManifestInfo:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise RegistryError(f"manifest {digest} is not JSON") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"manifest {digest} is not a JSON object")
    declared = doc.get("mediaType")
    media_type = (declared if isinstance(declared, str) else None) or media_type or ""
    is_index = media_type in INDEX_TYPES or ("manifests" in doc and "layers" not in doc)
    info = ManifestInfo(
        digest=digest,
        media_type=media_type or (OCI_INDEX if is_index else "application/octet-stream"),
        kind="index" if is_index else "image",
        size=len(body),
    )
    subject = doc.get("subject")
    if isinstance(subject, dict) and is_digest(subject.get("digest")):
        info.subject_digest = subject["digest"]
    artifact_type = doc.get("artifactType")
    if isinstance(artifact_type, str):
        info.artifact_type = artifact_type
    if is_index:
        manifests = doc.get("manifests")
        if not isinstance(manifests, list):
            raise RegistryError(f"index {digest} has no 'manifests' list")
        for entry in manifests:
            child_digest = _descriptor(entry, digest)[0]
            if not is_digest(child_digest):
                info.problems.append(f"index {digest} names an invalid child digest {printable(child_digest)}")
                continue
            platform = entry.get("platform") if isinstance(entry.get("platform"), dict) else {}
            info.children.append(
                Child(child_digest, _str(platform.get("architecture")), _str(platform.get("os")),
                      _str(platform.get("variant")))
            )
        if media_type == "" and "manifests" in doc:
            info.media_type = DOCKER_MANIFEST_LIST if doc.get("schemaVersion") == 2 and not declared else OCI_INDEX
        return info
    config = doc.get("config")
    if isinstance(config, dict):
        info.config_digest, info.config_size = _descriptor(config, digest)
        if not is_digest(info.config_digest):
            info.problems.append(f"manifest {digest} names an invalid config digest {printable(info.config_digest)}")
            info.config_digest, info.config_size = None, None
        info.config_media_type = _str(config.get("mediaType"))
        if info.config_media_type not in IMAGE_CONFIG_TYPES and info.artifact_type is None:
            info.artifact_type = info.config_media_type
    layers = doc.get("layers")
    if isinstance(layers, list):
        for layer_digest, size in (_descriptor(layer, digest) for layer in layers):
            if is_digest(layer_digest):
                info.layers.append((layer_digest, size))
            else:
                info.problems.append(f"manifest {digest} names an invalid layer digest {printable(layer_digest)}")
    return info


def apply_config(info: ManifestInfo, body: bytes) -> None:
    """Take ``created``, ``architecture`` and ``os`` from an image config blob (all optional)."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise RegistryError(f"config {info.config_digest} of {info.digest} is not JSON") from None
    if not isinstance(doc, dict):
        return
    info.created = parse_timestamp(doc.get("created"))
    info.architecture = _str(doc.get("architecture")) or None
    info.os = _str(doc.get("os")) or None


def total_size(info: ManifestInfo) -> int:
    """Manifest + config + layers, compressed bytes as stored (an index's total is summed by the caller)."""
    return info.size + (info.config_size or 0) + sum(size for _, size in info.layers)


_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$", re.IGNORECASE
)


def parse_timestamp(value) -> datetime | None:
    """RFC 3339 as Go writes it (nanoseconds, Z or offset) -> naive UTC datetime; None if absent or odd."""
    if not isinstance(value, str):
        return None
    match = _TIMESTAMP.match(value.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        stamp = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro)
    except ValueError:
        return None
    if zone and zone.upper() != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 60 + int(digits[2:]))
        if abs(offset) > 24 * 60:  # no zone is a day away from UTC
            return None
        try:
            stamp = stamp - timedelta(minutes=offset)
        except OverflowError:  # 0001-01-01T00:00:00+01:00 is before the first representable date
            return None
    return stamp


def _descriptor(entry, owner: str) -> tuple[str, int]:
    if not isinstance(entry, dict):
        raise RegistryError(f"manifest {owner} has a descriptor that is not an object")
    digest, size = entry.get("digest"), entry.get("size")
    if not isinstance(digest, str) or ":" not in digest:
        raise RegistryError(f"manifest {owner} has a descriptor without a valid digest")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_DESCRIPTOR_SIZE:
        raise RegistryError(f"manifest {owner} has a descriptor with an invalid size")
    return digest, size


def _str(value) -> str | None:
    return value if isinstance(value, str) else None
