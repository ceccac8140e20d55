"""The registry client: Docker Registry v2 / OCI distribution HTTP API, with auth, TLS, retries and rate limits.

One ``requests.Session`` with one keep-alive connection pool serves every worker thread of a run.
Everything here speaks the registry's own words: catalog, tags, manifests (resolved by HEAD, fetched by
GET and verified against their digest), blobs, referrers, and DELETE of a manifest by digest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import quote, urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .address import normalize_url, registry_name
from .errors import (
    AuthenticationFailed,
    DeleteDisabled,
    DigestMismatch,
    NotARegistry,
    RegistryError,
    RegistryUnreachable,
    RepositoryNotFound,
    ScopeRefused,
)

log = logging.getLogger(__name__)

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
# All four in one Accept header: with only the Docker schema-2 type, a registry answers a manifest-list tag
# with its linux/amd64 child (the wrong digest to delete) and an OCI manifest with 404 (REGISTRY-FACTS.md).
MANIFEST_ACCEPT = ", ".join([DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX])
INDEX_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})

DEFAULT_TIMEOUT = (10.0, 60.0)  # connect, read: a stalled server must not hang a run forever
USER_AGENT = "regdb"


def digest_of(body: bytes, algorithm: str = "sha256") -> str:
    try:
        return f"{algorithm}:{hashlib.new(algorithm, body).hexdigest()}"
    except ValueError:
        raise DigestMismatch(f"unsupported digest algorithm {algorithm!r}") from None


@dataclass(frozen=True)
class ManifestRef:
    """What a tag (or digest) resolves to."""

    digest: str
    media_type: str | None
    size: int | None


class BoundedRetry(Retry):
    """urllib3's Retry, with ``Retry-After`` capped so a hostile or confused server cannot park us for hours."""

    max_retry_after = 60.0

    def get_retry_after(self, response):
        value = super().get_retry_after(response)
        if value is None:
            return None
        return min(value, self.max_retry_after)


class RateLimiter:
    """At most ``rate`` requests per second across all threads (``--rate`` for hosted registries)."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate
        self.lock = threading.Lock()
        self.next_at = time.monotonic()

    def wait(self) -> None:
        with self.lock:
            now = time.monotonic()
            at = max(now, self.next_at)
            self.next_at = at + self.interval
        if at > now:
            time.sleep(at - now)


_LINK_NEXT = re.compile(r'<([^>]+)>\s*;[^,]*rel="?next"?')


class RegistryClient:
    """A connection to one registry. Thread-safe: worker threads share its session and pool."""

    def __init__(
        self,
        registry: str,
        *,
        auth: requests.auth.AuthBase | tuple[str, str] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        jobs: int = 16,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        retries: int = 6,
        backoff: float = 0.5,
        rate: float | None = None,
        use_get_manifest: bool = False,
        page_size: int = 1000,
    ):
        self.url = normalize_url(registry)
        self.name = registry_name(self.url)
        self.timeout = timeout
        # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override Session.verify (REGISTRY-FACTS.md), so
        # verify and cert are passed on every request instead: a -v flag always wins over the environment.
        self.verify = verify
        self.cert = cert
        self.use_get_manifest = use_get_manifest
        # 1000 is distribution's maximum by default (more is 400 PAGINATION_NUMBER_INVALID); registries that
        # ignore `n` or cap it lower still work, since every page's Link is followed.
        self.page_size = page_size
        self.rate = RateLimiter(rate) if rate else None
        self.stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()
        self.session = requests.Session()
        self.session.trust_env = False  # no proxies or netrc credentials picked up behind the user's back
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.auth = auth
        retry = BoundedRetry(
            total=retries,
            # A refused connection is retried twice (a registry restarting), not six times with backoff: a
            # wrong port or a dead registry should fail in about a second.
            connect=min(retries, 2),
            read=retries,
            status=retries,
            backoff_factor=backoff,
            backoff_max=30.0,
            backoff_jitter=backoff,
            status_forcelist=(429, 502, 503, 504),
            # DELETE of a manifest is idempotent: a retried DELETE that finds 404 means it was done.
            allowed_methods=frozenset({"GET", "HEAD", "DELETE", "PUT"}),
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(jobs, 1), max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    # --- plumbing -----------------------------------------------------------------------------------------

    def close(self) -> None:
        close_auth = getattr(self.session.auth, "close", None)
        if close_auth:
            close_auth()  # the token cache's private session
        self.session.close()

    def _count(self, kind: str) -> None:
        with self._stats_lock:
            self.stats[kind] += 1

    def request(self, method: str, path_or_url: str, *, kind: str, **kwargs) -> requests.Response:
        """One HTTP request; network failures become ``RegistryUnreachable`` with a one-line reason."""
        url = path_or_url if "://" in path_or_url else self.url + path_or_url
        if self.rate:
            self.rate.wait()
        self._count(kind)
        kwargs.setdefault("timeout", self.timeout)
        kwargs.setdefault("allow_redirects", method in ("GET", "HEAD") and kind == "blob")
        try:
            response = self.session.request(method, url, verify=self.verify, cert=self.cert, **kwargs)
        except requests.exceptions.SSLError as error:
            raise RegistryUnreachable(f"TLS error talking to {self.url}: {_reason(error)}") from None
        except requests.exceptions.Timeout:
            raise RegistryUnreachable(
                f"registry {self.url} did not answer within {self.timeout[1]:g} s ({method} {_path(url)})"
            ) from None
        except requests.exceptions.RetryError as error:
            raise RegistryUnreachable(f"registry {self.url} kept failing: {_reason(error)}") from None
        except requests.exceptions.ConnectionError as error:
            raise RegistryUnreachable(f"cannot reach registry {self.url}: {_reason(error)}") from None
        except requests.exceptions.InvalidHeader as error:
            raise RegistryError(f"invalid request to {self.url}: {error}") from None
        if response.status_code == 401:
            raise AuthenticationFailed(
                f"registry {self.url} refused the credentials for {method} {_path(url)} (401"
                f"{_error_code(response, ' ')})",
                status=401,
            )
        return response

    def _fail(self, response: requests.Response, what: str) -> RegistryError:
        code = _error_code(response)
        message = f"{what}: registry answered {response.status_code}{' ' + code if code else ''}"
        return RegistryError(message, status=response.status_code, code=code or None)

    # --- API ----------------------------------------------------------------------------------------------

    def ping(self) -> None:
        """``GET /v2/``: the registry is there and speaks the v2 API (and our credentials work)."""
        response = self.request("GET", "/v2/", kind="ping")
        api = response.headers.get("Docker-Distribution-API-Version", "")
        content_type = response.headers.get("Content-Type", "")
        if response.status_code == 200 and (api.startswith("registry/2") or "json" in content_type):
            return
        if response.status_code == 403:
            raise AuthenticationFailed(f"registry {self.url} denied access (403)", status=403)
        raise NotARegistry(
            f"{self.url} is not a Docker Registry v2 / OCI registry (GET /v2/ answered {response.status_code}"
            f"{', ' + content_type.split(';')[0] if content_type else ''})",
            status=response.status_code,
        )

    def _paged(self, path: str, key: str, *, kind: str) -> Iterator[list[str]]:
        """Pages of a listing, following ``Link: <...>; rel="next"`` exactly as given (REGISTRY-FACTS.md)."""
        url = self.url + path
        seen: set[str] = set()
        while True:
            response = self.request("GET", url, kind=kind)
            if response.status_code == 404 and kind == "tags":
                raise RepositoryNotFound(f"repository not found: {path}", status=404, code=_error_code(response))
            if response.status_code != 200:
                raise self._fail(response, f"GET {_path(url)}")
            body = _json(response, f"GET {_path(url)}")
            items = body.get(key) if isinstance(body, dict) else None
            if items is None:
                items = []  # a repository whose tags were all deleted answers {"tags": null}
            if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
                raise RegistryError(f"GET {_path(url)}: '{key}' is not a list of names")
            yield items
            link = _LINK_NEXT.search(response.headers.get("Link", ""))
            if not link:
                return
            # Relative per the spec: join it to the URL we fetched and follow it with whatever it carries.
            url = urljoin(url, link.group(1))
            if url in seen:
                raise RegistryError(f"GET {_path(url)}: the registry's Link header loops back to a page it gave")
            seen.add(url)

    def catalog(self) -> Iterator[str]:
        """Every repository name, page after page (``_catalog`` with ``n=page_size``)."""
        for page in self._paged(f"/v2/_catalog?n={self.page_size}", "repositories", kind="catalog"):
            yield from page

    def tags(self, repo: str) -> list[str]:
        """Every tag of a repository; a repository with no tags left answers an empty list."""
        names: list[str] = []
        for page in self._paged(f"/v2/{_repo(repo)}/tags/list", "tags", kind="tags"):
            names.extend(page)
        return names

    def resolve(self, repo: str, reference: str) -> ManifestRef | None:
        """Tag or digest -> the manifest it names (the index itself for a multi-arch tag). None if absent."""
        path = f"/v2/{_repo(repo)}/manifests/{quote(reference, safe=':')}"
        if not self.use_get_manifest:
            response = self.request("HEAD", path, kind="head", headers={"Accept": MANIFEST_ACCEPT})
            if response.status_code == 200:
                digest = response.headers.get("Docker-Content-Digest")
                if digest:
                    return ManifestRef(
                        digest, _media_type(response), _int(response.headers.get("Content-Length"))
                    )
                # The header is optional in the OCI spec (ECR, some proxies): hash the body instead.
            elif response.status_code not in (404, 405):
                raise self._fail(response, f"HEAD {path}")
        response = self.request("GET", path, kind="manifest", headers={"Accept": MANIFEST_ACCEPT})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail(response, f"GET {path}")
        if not self.use_get_manifest:
            # HEAD said 404/405 but GET works (Nexus): use GET for the rest of the run.
            log.warning("registry %s answers HEAD badly; resolving tags with GET from now on", self.url)
            self.use_get_manifest = True
        return self._verified_ref(response, reference, path)

    def _verified_ref(self, response: requests.Response, reference: str, path: str) -> ManifestRef:
        body = response.content
        announced = response.headers.get("Docker-Content-Digest")
        expected = reference if ":" in reference else announced
        algorithm = expected.split(":", 1)[0] if expected else "sha256"
        digest = digest_of(body, algorithm)
        if expected and digest != expected:
            raise DigestMismatch(f"GET {path}: body hashes to {digest}, not {expected}")
        return ManifestRef(digest, _media_type(response) or _body_media_type(body), len(body))

    def manifest(self, repo: str, digest: str) -> tuple[bytes, str | None]:
        """The raw bytes of a manifest, verified against its digest, and its media type."""
        path = f"/v2/{_repo(repo)}/manifests/{digest}"
        response = self.request("GET", path, kind="manifest", headers={"Accept": MANIFEST_ACCEPT})
        if response.status_code != 200:
            raise self._fail(response, f"GET {path}")
        body = response.content
        actual = digest_of(body, digest.split(":", 1)[0])
        if actual != digest:
            raise DigestMismatch(f"GET {path}: body hashes to {actual}, not {digest}")
        return body, _media_type(response) or _body_media_type(body)

    def blob(self, repo: str, digest: str) -> bytes:
        """A blob (an image config), following redirects to storage without our Authorization header."""
        path = f"/v2/{_repo(repo)}/blobs/{digest}"
        response = self.request("GET", path, kind="blob")
        if response.status_code != 200:
            raise self._fail(response, f"GET {path}")
        body = response.content
        if digest_of(body, digest.split(":", 1)[0]) != digest:
            raise DigestMismatch(f"GET {path}: blob does not hash to {digest}")
        return body

    def manifest_exists(self, repo: str, digest: str) -> bool:
        path = f"/v2/{_repo(repo)}/manifests/{digest}"
        method = "GET" if self.use_get_manifest else "HEAD"
        response = self.request(method, path, kind="head", headers={"Accept": MANIFEST_ACCEPT})
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise self._fail(response, f"{method} {path}")

    def referrers(self, repo: str, digest: str) -> list[dict] | None:
        """OCI 1.1 referrers of a manifest, or None where the registry has no referrers API (2.8: 404)."""
        path = f"/v2/{_repo(repo)}/referrers/{digest}"
        response = self.request("GET", path, kind="referrers", headers={"Accept": OCI_INDEX})
        if response.status_code != 200:
            return None
        body = _json(response, f"GET {path}")
        manifests = body.get("manifests") if isinstance(body, dict) else None
        return [m for m in manifests if isinstance(m, dict)] if isinstance(manifests, list) else None

    def delete_manifest(self, repo: str, digest: str) -> int:
        """``DELETE /v2/<repo>/manifests/<digest>``; 202 deleted, 404 already gone. Other answers raise."""
        path = f"/v2/{_repo(repo)}/manifests/{digest}"
        response = self.request("DELETE", path, kind="delete")
        if response.status_code in (200, 202, 404):
            return response.status_code
        code = _error_code(response)
        if response.status_code == 405:
            raise DeleteDisabled(
                f"registry {self.url} has deletion disabled (405{' ' + code if code else ''}): enable it with "
                "'storage.delete.enabled: true' in its config, or REGISTRY_STORAGE_DELETE_ENABLED=true for the "
                "container",
                status=405,
                code=code or None,
            )
        if response.status_code == 403:
            scope = f"repository:{repo}:delete"
            raise ScopeRefused(f"registry {self.url} refused scope {scope} (403)", scope=scope, status=403)
        raise self._fail(response, f"DELETE {path}")

    def put_manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> str:
        path = f"/v2/{_repo(repo)}/manifests/{quote(reference, safe=':')}"
        response = self.request(
            "PUT", path, kind="put", data=body, headers={"Content-Type": media_type}
        )
        if response.status_code not in (200, 201):
            raise self._fail(response, f"PUT {path}")
        return response.headers.get("Docker-Content-Digest") or digest_of(body)

    def delete_tag(self, repo: str, tag: str) -> int:
        """DELETE by tag: OCI 1.1 allows it; distribution 2.8 answers 400 DIGEST_INVALID (REGISTRY-FACTS.md)."""
        path = f"/v2/{_repo(repo)}/manifests/{quote(tag)}"
        return self.request("DELETE", path, kind="delete").status_code


# --- small pure helpers --------------------------------------------------------------------------------------


def _repo(name: str) -> str:
    return quote(name, safe="/")


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _media_type(response: requests.Response) -> str | None:
    value = response.headers.get("Content-Type")
    return value.split(";")[0].strip() if value else None


def _body_media_type(body: bytes) -> str | None:
    try:
        value = json.loads(body).get("mediaType")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _json(response: requests.Response, what: str):
    try:
        return response.json()
    except ValueError:
        raise RegistryError(f"{what}: the registry's answer is not JSON") from None


def _error_code(response: requests.Response, prefix: str = "") -> str:
    """The first OCI error code of an error body (``MANIFEST_UNKNOWN``), or ''."""
    try:
        errors = response.json().get("errors") or []
        code = errors[0].get("code") if errors else None
    except (ValueError, AttributeError, IndexError, TypeError):
        code = None
    return f"{prefix}{code}" if isinstance(code, str) else ""


def _reason(error: Exception) -> str:
    """The innermost, most specific line of a requests/urllib3 exception chain."""
    text = str(error)
    for needle, reason in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "unknown host"),
        ("nodename nor servname", "unknown host"),
        ("Temporary failure in name resolution", "unknown host"),
        ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed (use -v CA_BUNDLE, or -v None to skip)"),
        ("certificate required", "the registry requires a client certificate (-cert/-key)"),
        ("Connection reset", "connection reset"),
        ("RemoteDisconnected", "connection closed by the registry"),
        ("too many 5", "too many error responses"),
        ("too many 429", "too many 429 Too Many Requests responses"),
    ):
        if needle in text:
            return reason
    match = re.search(r"\(Caused by ([^(]+)\(", text)
    return match.group(1) if match else text.splitlines()[0][:200]
