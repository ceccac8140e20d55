"""The manifest media types regdb reads and asks for (Docker schema 2 and OCI), and which of them are indexes.

No imports: the inventory's manifest parser and the client both name them.
"""

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
# All four in one Accept header: with only the Docker schema-2 type, a registry answers a manifest-list tag
# with its linux/amd64 child (the wrong digest to delete) and an OCI manifest with 404 (docs/registry-behaviour.md).
MANIFEST_ACCEPT = ", ".join([DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX])
INDEX_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
