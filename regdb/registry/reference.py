"""Registry addresses: what `-reg` accepts and how a registry is named in the inventory and image names.

Kept apart from the HTTP client so that commands which only read the inventory never import requests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from regdb.errors import InvalidName, RegistryError, UnsafeURL


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


@dataclass(frozen=True)
class RegistryRef:
    """A registry, resolved once where it enters (a flag, a profile, a library call) and passed down.

    ``url``: the normalised URL (``https://registry.example.com``), what the inventory stores and requests go
    to; ``name``: the host[:port] of image names; ``explicit_scheme``: whether the person named the scheme
    (``http://...``) or left it to be assumed: only then may a lookup in the inventory also go by the host
    (regdb.inventory.registries). A client's reference always has its scheme: it is what it talks to.
    """

    url: str
    name: str
    explicit_scheme: bool = True

    @classmethod
    def parse(cls, text: str) -> "RegistryRef":
        """Raises RegistryError for an empty reference, another scheme, or credentials in the URL."""
        url = normalize_url(text)
        return cls(url, registry_name(url), explicit_scheme="://" in text)

    @property
    def display(self) -> str:
        """How messages name it: the URL when the scheme was given or is not the assumed https, else the host."""
        return self.url if self.explicit_scheme else self.name

    def __str__(self) -> str:
        return self.url


# --- the OCI distribution grammar -------------------------------------------------------------------------
# Every name that enters the inventory or a URL passes here first: a registry we do not control could list
# "../../etc" as a repository (asked as GET /etc/tags/list) or a child digest "sha256:../../v2/_catalog?".

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
# distribution's reference.NameTotalLengthMax: a longer name is refused by the registry itself.
MAX_REPOSITORY_LENGTH = 255
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
# Only the algorithms the OCI image spec registers; md5, sha1, blake2b, shake_* are not digests of a manifest.
DIGEST_HEX_LENGTHS = {"sha256": 64, "sha512": 128}
_DIGEST = re.compile(r"(sha256|sha512):([a-f0-9]+)")


def is_repository(name) -> bool:
    return isinstance(name, str) and len(name) <= MAX_REPOSITORY_LENGTH and _REPOSITORY.fullmatch(name) is not None


def is_tag(tag) -> bool:
    return isinstance(tag, str) and _TAG.fullmatch(tag) is not None


def is_digest(digest) -> bool:
    match = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    return match is not None and len(match.group(2)) == DIGEST_HEX_LENGTHS[match.group(1)]


def check_repository(name: str) -> str:
    if not is_repository(name):
        raise InvalidName(f"not a valid repository name: {printable(name)}")
    return name


def check_tag(tag: str) -> str:
    if not is_tag(tag):
        raise InvalidName(f"not a valid tag: {printable(tag)}")
    return tag


def check_digest(digest: str) -> str:
    if not is_digest(digest):
        raise InvalidName(f"not a valid digest (sha256 or sha512, lower-case hex of the right length): "
                          f"{printable(digest)}")
    return digest


# A name quoted in a message is cut here: a 10 MB "name" must not become a 10 MB error line.
MAX_QUOTED = 200


def printable(value) -> str:
    """``value`` for one line of a message: control characters escaped, quoted, cut at MAX_QUOTED."""
    text = repr(value) if isinstance(value, str) else f"<{type(value).__name__}>"
    return text if len(text) <= MAX_QUOTED else text[:MAX_QUOTED] + "...'"


# --- which URLs regdb follows -----------------------------------------------------------------------------


def origin(url: str) -> str:
    """``scheme://host:port`` with default ports made explicit; raises UnsafeURL for a malformed URL."""
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
        host = (parts.hostname or "").lower()
    except ValueError:  # "http://[::1", port 99999
        raise UnsafeURL(f"malformed URL {printable(url)}") from None
    return f"{parts.scheme.lower()}://{host}:{port}"


def follow_url(base: str, target: str, *, what: str, same_origin: bool) -> str:
    """The one place deciding whether regdb follows a URL a registry handed it: a ``Link`` page, an upload
    ``Location``, a redirect, a token realm. ``target`` is resolved against ``base``; it must be http(s) and
    well-formed, and when it would carry our credentials (``same_origin``) on the registry's own origin.
    Anything else raises ``UnsafeURL``, one line naming the URL (``what`` says where it came from). Returns
    the absolute URL."""
    try:
        url = urljoin(base, target)
        parts = urlsplit(url)
        if parts.scheme.lower() in ("http", "https"):
            origin(url)  # a bad port or IPv6 literal raises here, not deep in requests
    except (ValueError, UnsafeURL):
        raise UnsafeURL(f"{what} {printable(target)} is not a valid URL; not following it") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise UnsafeURL(f"{what} {printable(url)} is not an http(s) URL; not following it")
    if not parts.hostname or any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise UnsafeURL(f"{what} {printable(url)} is not a valid URL; not following it")
    if same_origin and origin(url) != origin(base):
        raise UnsafeURL(
            f"{what} points to another host ({parts.scheme.lower()}://{parts.netloc.lower()}); not following it"
        )
    return url
