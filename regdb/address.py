"""Registry addresses: what `-reg` accepts and how a registry is named in the inventory and image names.

Kept apart from the HTTP client so that commands which only read the inventory never import requests.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .errors import RegistryError


def normalize_url(registry: str) -> str:
    """``registry.example.com`` -> ``https://registry.example.com``; a URL keeps its scheme; no trailing slash."""
    registry = registry.strip()
    if not registry:
        raise RegistryError("no registry given: use -reg/--registry or set REGISTRY")
    if "://" not in registry:
        registry = "https://" + registry
    parts = urlsplit(registry)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RegistryError(f"not a registry URL: {registry!r}")
    if "@" in parts.netloc:
        # It would end up in the inventory (registries.url) and in the default file name: refuse, and
        # never echo it back.
        raise RegistryError("the registry URL must not contain credentials: use -u/--user and -p/--password")
    path = parts.path.rstrip("/")
    if path.endswith("/v2"):
        path = path[: -len("/v2")]
    return f"{parts.scheme}://{parts.netloc}{path}"


def registry_name(url: str) -> str:
    """The host[:port] of a registry URL, as it appears in image names."""
    return urlsplit(url).netloc
