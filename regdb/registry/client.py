"""The registry client: Docker Registry v2 / OCI distribution HTTP API, with auth, TLS, retries and rate limits.

One ``requests.Session`` with one keep-alive connection pool serves every worker thread of a run.
Everything here speaks the registry's own words: catalog, tags, manifests (resolved by HEAD, fetched by
GET and verified against their digest), blobs, referrers, and DELETE of a manifest by digest.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import InsecureRequestWarning
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.timeout import Timeout

from regdb.registry.auth import build_auth
from regdb.registry.media import (
    OCI_INDEX,
    MANIFEST_ACCEPT,
)
from regdb.registry.transport import (
    DEFAULT_TIMEOUT,
    USER_AGENT,
    MAX_OTHER_BYTES,
    MAX_PAGES,
    MAX_TAGS_PER_REPOSITORY,
    MAX_REPOSITORIES,
    MAX_REDIRECTS,
    _BODY_LIMITS,
    _CHUNK,
    digest_of,
    read_bounded,
    BoundedRetry,
    header_int,
    RateLimiter,
)
from regdb.text import escape_controls
from regdb.registry.reference import (
    check_digest,
    check_repository,
    check_tag,
    is_digest,
    follow_url,
    normalize_url,
    origin,
    RegistryRef,
    printable,
    registry_name,
)
from regdb.errors import (
    AuthenticationFailed,
    DeleteDisabled,
    DigestMismatch,
    InvalidName,
    NotARegistry,
    RegistryError,
    RegistryUnreachable,
    RepositoryNotFound,
    ResponseTooLarge,
    ScopeRefused,
    TLSSetupError,
    UnsafeURL,
)

log = logging.getLogger(__name__)

class _NoAuth(requests.auth.AuthBase):
    """No credentials at all (``auth=None`` on a request would fall back to the session's)."""

    def __call__(self, r):
        return r


@dataclass(frozen=True)
class ManifestRef:
    """What a tag (or digest) resolves to."""

    digest: str
    media_type: str | None
    size: int | None


@dataclass(frozen=True)
class _Answer:
    """A 200 answer read past requests (``RegistryClient._get_direct``): what the callers read of a response;
    or a blob's redirect, which ``request`` then follows (``url``: what was asked)."""

    status_code: int
    headers: Mapping[str, str]  # urllib3's HTTPHeaderDict: case-insensitive, as requests' headers
    content: bytes
    url: str = ""

    @property
    def is_redirect(self) -> bool:
        """As requests has it: a redirect status with a Location to follow."""
        return self.status_code in _REDIRECTS and "Location" in self.headers


_REDIRECTS = frozenset({301, 302, 303, 307, 308})


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
        self.ref = RegistryRef(self.url, self.name)  # what it talks to: always with its scheme
        self.timeout = timeout
        # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override Session.verify (docs/registry-behaviour.md), so
        # verify and cert are passed on every request instead: a -v flag always wins over the environment.
        self.verify = verify
        self.cert = cert
        _check_tls_files(verify, cert)
        if verify is False:
            # -v None was asked for, and the CLI says so once; urllib3 would repeat its InsecureRequestWarning
            # on every request ("always" is its filter for security warnings). Silenced for this host only.
            host = re.escape(urlsplit(self.url).hostname or "")
            warnings.filterwarnings("ignore", message=f"Unverified HTTPS request is being made to host '{host}'",
                                    category=InsecureRequestWarning)
        self.use_get_manifest = use_get_manifest
        # 1000 is distribution's maximum by default (more is 400 PAGINATION_NUMBER_INVALID); registries that
        # ignore `n` or cap it lower still work, since every page's Link is followed.
        self.page_size = page_size
        self.jobs = max(jobs, 1)  # its connection pool's size: the parallel requests an operation may make
        self.rate = RateLimiter(rate) if rate else None
        self.stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()
        self.session = requests.Session()
        self.session.trust_env = False  # no proxies or netrc credentials picked up behind the user's back
        self.session.headers["User-Agent"] = USER_AGENT
        if isinstance(auth, tuple):
            # (user, password): Basic or a bearer token, whichever the registry's challenge asks for, as the
            # command line does; requests' own tuple handling would only ever send Basic.
            auth = build_auth(*auth)
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
        self._pool: tuple[HTTPAdapter, HTTPConnectionPool] | None = None  # _direct_pool's
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        self._direct_timeout = Timeout(connect=connect, read=read)
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

    def request(self, method: str, path_or_url: str, *, kind: str, redirected: _Answer | None = None,
                **kwargs) -> requests.Response:
        """One HTTP request; network failures become ``RegistryUnreachable`` with a one-line reason.

        The body is read here, bounded by its kind (``_BODY_LIMITS``). An absolute URL must be on the
        registry's own origin (it carries our credentials); redirects are followed only for blobs, one hop at
        a time through ``follow_url``, and without credentials once they leave the registry's origin.
        ``redirected``: the registry's redirect a direct request (``_get_direct``) was already answered with;
        the request is not sent again, its redirect is followed from there."""
        if "://" in path_or_url:
            url = follow_url(self.url + "/", path_or_url, what=f"the URL of a {method} ({kind})", same_origin=True)
        else:
            url = self.url + path_or_url
        kwargs.setdefault("timeout", self.timeout)
        follow = kwargs.pop("allow_redirects", method in ("GET", "HEAD") and kind == "blob")
        limit = _BODY_LIMITS.get(kind, MAX_OTHER_BYTES)
        response: requests.Response | _Answer
        if redirected is not None:
            response = redirected  # asked and counted by the direct request
        else:
            if self.rate:
                self.rate.wait()
            self._count(kind)
            response = self._send(method, url, limit, kwargs)
        for _ in range(MAX_REDIRECTS):
            if not (follow and response.is_redirect and "Location" in response.headers):
                break
            where = follow_url(response.url, response.headers["Location"],
                               what=f"{method} {_path(url)}: the registry's redirect to", same_origin=False)
            if origin(where) != origin(self.url):
                kwargs["auth"] = _NoAuth()  # storage (S3, a CDN) never gets our credentials
            if response.status_code == 303:
                method = "GET"
            response = self._send(method, where, limit, kwargs)
        else:
            if follow and response.is_redirect:
                raise RegistryError(f"{method} {_path(url)}: the registry redirected more than {MAX_REDIRECTS} "
                                    "times; not following it")
        assert isinstance(response, requests.Response)  # a direct answer here is a redirect, followed above
        if response.status_code == 401:
            raise AuthenticationFailed(
                f"registry {self.url} refused the credentials for {method} {_path(url)} (401"
                f"{_error_code(response, ' ')})",
                status=401,
            )
        return response

    def _send(self, method: str, url: str, limit: int, kwargs: dict) -> requests.Response:
        timeout = kwargs["timeout"]
        what = f"{method} {_path(url)}"
        try:
            try:
                return self._send_once(method, url, limit, what, kwargs)
            except requests.exceptions.ChunkedEncodingError:
                # The body broke off after the headers (a proxy restarting): past urllib3's retries, which end
                # with the headers. A read is asked once more; a second break is reported.
                if method not in ("GET", "HEAD"):
                    raise
                return self._send_once(method, url, limit, what, kwargs)
        except requests.exceptions.SSLError as error:
            raise RegistryUnreachable(f"TLS error talking to {self.url}: {_reason(error)}") from None
        except requests.exceptions.ConnectTimeout:
            raise RegistryUnreachable(
                f"cannot reach registry {self.url}: no connection within "
                f"{timeout[0] if isinstance(timeout, tuple) else timeout:g} s"
            ) from None
        except requests.exceptions.Timeout:
            raise RegistryUnreachable(_no_answer(self.url, timeout, method, url)) from None
        except requests.exceptions.RetryError as error:
            raise RegistryUnreachable(f"registry {self.url} kept failing: {_reason(error)}") from None
        except requests.exceptions.ConnectionError as error:
            if isinstance(getattr(error.args[0] if error.args else None, "reason", None), ReadTimeoutError):
                # Read timeouts that used up the retries come out of requests as a ConnectionError.
                raise RegistryUnreachable(_no_answer(self.url, timeout, method, url)) from None
            raise RegistryUnreachable(f"cannot reach registry {self.url}: {_reason(error)}") from None
        except requests.exceptions.ChunkedEncodingError:
            raise RegistryUnreachable(
                f"registry {self.url} broke off its answer to {what} (the connection closed "
                "before the whole body arrived)"
            ) from None
        except requests.exceptions.InvalidHeader as error:
            raise RegistryError(f"invalid request to {self.url}: {printable(str(error))}") from None
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                requests.exceptions.MissingSchema, ValueError) as error:
            # A URL that follow_url let through but requests or urllib3 still cannot parse.
            raise UnsafeURL(f"{what}: not a usable URL ({type(error).__name__})") from None
        except requests.exceptions.RequestException as error:
            # Anything else requests may raise on an answer we do not control (TooManyRedirects, ...).
            raise RegistryError(f"{what}: {type(error).__name__} talking to {self.url}") from None

    def _send_once(self, method: str, url: str, limit: int, what: str, kwargs: dict) -> requests.Response:
        def check_location(response, **_):
            # Before requests parses it (it does even without following: a malformed one raised ValueError).
            if response.is_redirect:
                follow_url(response.url, response.headers["Location"],
                           what=f"{what}: the registry's redirect to", same_origin=False)
            return response

        response = self.session.request(method, url, verify=self.verify, cert=self.cert, stream=True,
                                        allow_redirects=False, hooks={"response": [check_location]}, **kwargs)
        if method == "HEAD":
            _ = response.content  # no body to read: this hands the connection back to the pool (close() would not)
        elif response.status_code >= 300:
            read_bounded(response, MAX_OTHER_BYTES, what, truncate=True)  # only the error code is wanted
        else:
            read_bounded(response, limit, what)
        return response

    def _head_direct(self, path: str, headers: dict[str, str]):
        """One HEAD through the session's own urllib3 pool, past requests' per-request machinery (settings
        merges, cookie jar, hooks, response building): that machinery was half the client's CPU of a re-sync
        (bench row 1e). The same pool, TLS settings, headers and up-front Authorization as ``request``; one
        attempt, no redirect. The urllib3 response, or None (not sent, or no answer): the caller takes 200, 404
        and 405 from here and leaves everything else (an auth challenge, a status worth a retry, an error to
        word, a broken connection) to ``request``."""
        return self._direct("HEAD", path, headers, "head")

    def _get_direct(self, path: str, headers: dict[str, str], kind: str) -> "_Answer | None":
        """``_head_direct`` for a GET of a manifest or a config blob, its body read here within
        ``_BODY_LIMITS[kind]``: on a first sync every tag and every config is such a GET, and requests' machinery
        was most of the client's CPU per request there too (bench rows 1b, 1e). An ``_Answer`` for a 200 with a
        plain body (no Content-Encoding) within the limit, or for a blob's redirect to storage (its body
        unread: ``request(redirected=...)`` follows it from there, so the registry is not asked twice); None for
        anything else (an auth challenge, a status worth a retry or an error to word, a body too large or
        broken off), which ``request`` then asks again and handles, so nothing is refused or worded here."""
        response = self._direct("GET", path, headers, kind, preload=False)
        if response is None:
            return None
        limit = _BODY_LIMITS[kind]
        length = header_int(response.headers.get("Content-Length"))
        read = []
        try:
            if response.status == 200 and response.headers.get("Content-Encoding", "identity") == "identity" and \
                    (length is None or length <= limit):
                total = 0
                while total <= limit and (chunk := response.read(_CHUNK, decode_content=False)):
                    read.append(chunk)
                    total += len(chunk)
                if total <= limit and (length is None or length == total):
                    response.release_conn()  # read to its end: the connection goes back to the pool
                    return _Answer(200, response.headers, b"".join(read))
            elif kind == "blob" and response.status in _REDIRECTS and "Location" in response.headers:
                redirect = _Answer(response.status, response.headers, b"", self.url + path)
                response.close()  # its body is not wanted: the connection is closed rather than drained
                response.release_conn()
                return redirect
            self._wait_as_asked(response)
        except Exception as error:  # noqa: BLE001 - request() tries again and reports whatever it is
            log.debug("direct GET %s: %s; again through requests", path, type(error).__name__)
        response.close()  # not read to its end (or unwanted): never handed back to the pool half-read
        response.release_conn()
        return None

    def _wait_as_asked(self, response) -> None:
        """Before ``request`` asks again what a direct request was answered 429 or 503 with Retry-After: wait
        as long as the registry asked, as urllib3's retries do between their own attempts (capped by
        BoundedRetry.max_retry_after; tests/faults/test_sync_faults.py holds the wait)."""
        adapter = self.session.get_adapter(self.url)
        assert isinstance(adapter, HTTPAdapter)  # mounted in __init__ for both schemes
        retry = adapter.max_retries
        if retry.respect_retry_after_header and response.status in retry.RETRY_AFTER_STATUS_CODES:
            wait = retry.get_retry_after(response)
            if wait:
                time.sleep(wait)

    def _direct(self, method: str, path: str, headers: dict[str, str], kind: str, *, preload: bool = True):
        auth = self.session.auth
        if isinstance(auth, requests.auth.HTTPDigestAuth):  # its state lives in its response hooks
            return None
        url = self.url + path
        prepared = requests.PreparedRequest()  # just what auth and the adapter read: no URL re-parsing
        prepared.method, prepared.url, prepared.body = method, url, None
        prepared.headers = requests.structures.CaseInsensitiveDict(self.session.headers)  # type: ignore[arg-type]  # all str
        prepared.headers.update(headers)
        if isinstance(auth, requests.auth.AuthBase):  # the constructor turns a (user, password) into one
            prepared = auth(prepared)  # Basic or a cached Bearer token up front, as for any request
        if self.rate:
            self.rate.wait()
        self._count(kind)
        adapter = self.session.get_adapter(url)
        if not isinstance(adapter, HTTPAdapter):  # a test's or a user's own transport
            return None
        try:
            return self._direct_pool(adapter, prepared).urlopen(
                method, path, headers=dict(prepared.headers), retries=False, redirect=False, assert_same_host=False,
                preload_content=preload, decode_content=False, timeout=self._direct_timeout)
        except Exception as error:  # noqa: BLE001 - request() tries again and reports whatever it is
            log.debug("direct %s %s: %s; again through requests", method, path, type(error).__name__)
            return None

    def _direct_pool(self, adapter: HTTPAdapter, prepared: requests.PreparedRequest) -> HTTPConnectionPool:
        """The adapter's connection pool for the registry, as requests would pick it (TLS settings included), looked
        up once and kept while it is open: the lookup parses the URL and selects proxies every time, a tenth of
        the client's CPU of a direct request. A pool the adapter closed (its pool manager keeps one host, and a
        blob redirect to storage takes that place) is looked up again."""
        kept = self._pool
        if kept is not None and kept[0] is adapter and kept[1].pool is not None:
            return kept[1]
        # An HTTP(S)ConnectionPool; urllib3's types name the base class, which has no urlopen.
        pool: HTTPConnectionPool = adapter.get_connection_with_tls_context(  # type: ignore[assignment]
            prepared, self.verify, None, self.cert)
        adapter.cert_verify(pool, prepared.url or self.url, self.verify, self.cert)
        self._pool = (adapter, pool)
        return pool

    def _fail(self, response: requests.Response | _Answer, what: str) -> RegistryError:
        code = _error_code(response) if isinstance(response, requests.Response) else ""  # a direct answer is a 200
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

    def _paged(self, path: str, key: str, *, kind: str, limit: int) -> Iterator[list[str]]:
        """Pages of a listing, following ``Link: <...>; rel="next"`` exactly as given (docs/registry-behaviour.md), at
        most MAX_PAGES pages and ``limit`` names in all."""
        url = self.url + path
        seen = {url}
        names = 0
        for _ in range(MAX_PAGES):
            response = self.request("GET", url, kind=kind)
            if response.status_code == 404 and kind == "tags":
                raise RepositoryNotFound(f"repository not found: {path}", status=404, code=_error_code(response))
            if response.status_code != 200:
                raise self._fail(response, f"GET {_path(url)}")
            body = _json(response, f"GET {_path(url)}")
            if not isinstance(body, dict):
                # Not "no repositories": a sync would take it for an empty registry and forget every repository.
                raise RegistryError(f"GET {_path(url)}: the registry's answer is not a JSON object")
            items = body.get(key)
            if items is None:
                items = []  # a repository whose tags were all deleted answers {"tags": null}
            if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
                raise RegistryError(f"GET {_path(url)}: '{key}' is not a list of names")
            names += len(items)
            if names > limit:
                raise ResponseTooLarge(f"GET {_path(url)}: the registry lists more than {limit:,} {key}; "
                                       "refusing the listing")
            yield items
            link = _LINK_NEXT.search(response.headers.get("Link", ""))
            if not link:
                return
            # Relative per the spec: join it to the URL we fetched and follow it with whatever it carries.
            # Our credentials would follow it (a Basic challenge from there gets the password): same origin only.
            url = follow_url(url, link.group(1), what=f"GET {_path(response.url)}: the registry's Link header",
                             same_origin=True)
            if url in seen:
                raise RegistryError(f"GET {_path(url)}: the registry's Link header loops back to a page it gave")
            seen.add(url)
        raise ResponseTooLarge(f"GET {path}: the registry's listing goes on past {MAX_PAGES:,} pages; refusing it")

    def catalog(self) -> Iterator[str]:
        """Every repository name, page after page (``_catalog`` with ``n=page_size``)."""
        for page in self._paged(f"/v2/_catalog?n={self.page_size}", "repositories", kind="catalog",
                                limit=MAX_REPOSITORIES):
            yield from page

    def tags(self, repo: str) -> list[str]:
        """Every tag of a repository; a repository with no tags left answers an empty list."""
        names: list[str] = []
        for page in self._paged(f"/v2/{_repo(repo)}/tags/list", "tags", kind="tags",
                                limit=MAX_TAGS_PER_REPOSITORY):
            names.extend(page)
        return names

    def resolve(self, repo: str, reference: str) -> ManifestRef | None:
        """Tag or digest -> the manifest it names (the index itself for a multi-arch tag). None if absent."""
        path = f"/v2/{_repo(repo)}/manifests/{_reference(reference)}"
        if not self.use_get_manifest:
            response = self._head_direct(path, {"Accept": MANIFEST_ACCEPT})
            if response is None or response.status not in (200, 404, 405):
                # Not tried, or an answer only request() handles: an auth challenge, a retry, an error to word.
                if response is not None:
                    self._wait_as_asked(response)
                response = self.request("HEAD", path, kind="head", headers={"Accept": MANIFEST_ACCEPT})
            status = getattr(response, "status_code", None) or response.status  # requests' or urllib3's
            if status == 200:
                digest = response.headers.get("Docker-Content-Digest")
                if digest:
                    _check_announced(digest, f"HEAD {path}")
                    return ManifestRef(
                        digest, _media_type(response), header_int(response.headers.get("Content-Length"))
                    )
                # The header is optional in the OCI spec (ECR, some proxies): hash the body instead.
            elif status not in (404, 405):
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

    def fetch_tag(self, repo: str, tag: str) -> tuple[ManifestRef, bytes, str | None] | None:
        """GET a tag's manifest: what it resolves to, plus the verified body (None if the tag is gone)."""
        path = f"/v2/{_repo(repo)}/manifests/{_reference(tag)}"
        response = self._get_direct(path, {"Accept": MANIFEST_ACCEPT}, "manifest") or \
            self.request("GET", path, kind="manifest", headers={"Accept": MANIFEST_ACCEPT})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail(response, f"GET {path}")
        ref = self._verified_ref(response, tag, path)
        return ref, response.content, ref.media_type

    def _verified_ref(self, response: requests.Response | _Answer, reference: str, path: str) -> ManifestRef:
        body = response.content
        announced = response.headers.get("Docker-Content-Digest")
        if announced:
            _check_announced(announced, f"GET {path}")
        expected = reference if ":" in reference else announced
        algorithm = expected.split(":", 1)[0] if expected else "sha256"
        digest = digest_of(body, algorithm)
        if expected and digest != expected:
            raise DigestMismatch(f"GET {path}: body hashes to {digest}, not {expected}")
        return ManifestRef(digest, _media_type(response) or _body_media_type(body), len(body))

    def manifest(self, repo: str, digest: str) -> tuple[bytes, str | None]:
        """The raw bytes of a manifest, verified against its digest, and its media type."""
        path = f"/v2/{_repo(repo)}/manifests/{check_digest(digest)}"
        response = self._get_direct(path, {"Accept": MANIFEST_ACCEPT}, "manifest") or \
            self.request("GET", path, kind="manifest", headers={"Accept": MANIFEST_ACCEPT})
        if response.status_code != 200:
            raise self._fail(response, f"GET {path}")
        body = response.content
        actual = digest_of(body, digest.split(":", 1)[0])
        if actual != digest:
            raise DigestMismatch(f"GET {path}: body hashes to {actual}, not {digest}")
        return body, _media_type(response) or _body_media_type(body)

    def blob(self, repo: str, digest: str) -> bytes:
        """A blob (an image config), following redirects to storage without our Authorization header."""
        path = f"/v2/{_repo(repo)}/blobs/{check_digest(digest)}"
        # Direct first, as a manifest; a redirect to storage it meets is followed by request() from that answer,
        # not asked again (tests/faults/test_hostile_urls.py bounds a redirect loop's requests).
        answer = self._get_direct(path, {}, "blob")
        if answer is not None and answer.status_code == 200:
            response: requests.Response | _Answer = answer
        else:
            response = self.request("GET", path, kind="blob", redirected=answer)
        if response.status_code != 200:
            raise self._fail(response, f"GET {path}")
        body = response.content
        if digest_of(body, digest.split(":", 1)[0]) != digest:
            raise DigestMismatch(f"GET {path}: blob does not hash to {digest}")
        return body

    def manifest_exists(self, repo: str, digest: str) -> bool:
        path = f"/v2/{_repo(repo)}/manifests/{check_digest(digest)}"
        method = "GET" if self.use_get_manifest else "HEAD"
        response = self.request(method, path, kind="head", headers={"Accept": MANIFEST_ACCEPT})
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise self._fail(response, f"{method} {path}")

    def referrers(self, repo: str, digest: str) -> list[dict] | None:
        """OCI 1.1 referrers of a manifest, or None where the registry has no referrers API (2.8: 404)."""
        path = f"/v2/{_repo(repo)}/referrers/{check_digest(digest)}"
        response = self.request("GET", path, kind="referrers", headers={"Accept": OCI_INDEX})
        if response.status_code != 200:
            return None
        body = _json(response, f"GET {path}")
        manifests = body.get("manifests") if isinstance(body, dict) else None
        return [m for m in manifests if isinstance(m, dict)] if isinstance(manifests, list) else None

    def delete_manifest(self, repo: str, digest: str) -> int:
        """``DELETE /v2/<repo>/manifests/<digest>``; 202 deleted, 404 already gone. Other answers raise."""
        path = f"/v2/{_repo(repo)}/manifests/{check_digest(digest)}"
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
        path = f"/v2/{_repo(repo)}/manifests/{_reference(reference)}"
        response = self.request(
            "PUT", path, kind="put", data=body, headers={"Content-Type": media_type}
        )
        if response.status_code not in (200, 201):
            raise self._fail(response, f"PUT {path}")
        return response.headers.get("Docker-Content-Digest") or digest_of(body)

    def delete_tag(self, repo: str, tag: str) -> int:
        """DELETE by tag: OCI 1.1 allows it; distribution 2.8 answers 400 DIGEST_INVALID.

        See docs/registry-behaviour.md.
        """
        path = f"/v2/{_repo(repo)}/manifests/{_reference(tag)}"
        return self.request("DELETE", path, kind="delete").status_code


# --- small pure helpers --------------------------------------------------------------------------------------


def _repo(name: str) -> str:
    """A repository name for a URL path: only names of the OCI grammar ever get there ("../../etc" does not)."""
    return quote(check_repository(name), safe="/")


def _reference(reference: str) -> str:
    """A tag or digest for a URL path, checked against the OCI grammar (neither needs quoting then)."""
    return check_digest(reference) if ":" in reference else check_tag(reference)


def _check_announced(digest: str, what: str) -> None:
    if not is_digest(digest):
        raise InvalidName(f"{what}: the registry announced an invalid digest {printable(digest)}")


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _no_answer(registry: str, timeout, method: str, url: str) -> str:
    read = timeout[1] if isinstance(timeout, tuple) else timeout
    return f"registry {registry} did not answer within {read:g} s ({method} {_path(url)})"


def _media_type(response: requests.Response | _Answer) -> str | None:
    value = response.headers.get("Content-Type")
    return value.split(";")[0].strip() if value else None


def _body_media_type(body: bytes) -> str | None:
    try:
        value = json.loads(body).get("mediaType")
    except (ValueError, AttributeError, RecursionError):
        return None
    return value if isinstance(value, str) else None


def _json(response: requests.Response, what: str):
    try:
        return response.json()
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past Python's stack
        raise RegistryError(f"{what}: the registry's answer is not JSON") from None


def _error_code(response: requests.Response, prefix: str = "") -> str:
    """The first OCI error code of an error body (``MANIFEST_UNKNOWN``), or ''."""
    try:
        errors = response.json().get("errors") or []
        code = errors[0].get("code") if errors else None
    except (ValueError, AttributeError, IndexError, TypeError, KeyError, RecursionError):
        code = None
    if not isinstance(code, str):
        return ""
    return f"{prefix}{escape_controls(code[:MAX_CODE])}"  # the registry's words: escaped, and cut


MAX_CODE = 100  # an OCI error code is a short upper-case word (MANIFEST_UNKNOWN)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _check_tls_files(verify: bool | str, cert: str | tuple[str, str] | None) -> None:
    """requests raises a bare OSError for a missing file, at the first request; say which flag is wrong, now."""
    files = []
    if isinstance(verify, str):
        files.append(("CA bundle", "-v/--verify", verify))
    if isinstance(cert, tuple):
        files += [("client certificate", "-cert/--client-cert", cert[0]),
                  ("client key", "-key/--client-key", cert[1])]
    elif cert:
        files.append(("client certificate", "-cert/--client-cert", cert))
    for what, flag, name in files:
        if not Path(name).exists():
            raise TLSSetupError(f"{what} not found: {name} ({flag})")


_SSL_DETAIL = re.compile(r"\[(?:SSL|X509)(?:: [A-Z0-9_]+)?\] ([^(]+?)\s*\(_ssl\.c")


def _reason(error: Exception) -> str:
    """The innermost, most specific line of a requests/urllib3 exception chain."""
    text = str(error)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        # OpenSSL's own words say which check failed: an unknown CA, an expired certificate, another host name.
        detail = re.search(r"certificate verify failed: ([^(]+?)\s*\(_ssl", text)
        why = f": {detail.group(1).rstrip('. ')}" if detail else ""
        return f"certificate verify failed{why} (use -v CA_BUNDLE, or -v None to skip)"
    for needle, reason in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "unknown host"),
        ("nodename nor servname", "unknown host"),
        ("Temporary failure in name resolution", "unknown host"),
        # A registry with client certificates mandatory (distribution's http.tls.clientcas) alerts "bad
        # certificate" (TLS 1.2, Go) or "certificate required" (TLS 1.3) for a missing or untrusted one.
        ("certificate required", "the registry requires a client certificate (-cert/-key)"),
        ("ALERT_BAD_CERTIFICATE", "the registry requires a client certificate it trusts (-cert/-key)"),
        # Go's TLS 1.2 server hangs up on a client certificate from a CA it does not trust, without an alert.
        ("EOF occurred in violation of protocol",
         "the registry closed the TLS connection abruptly (a client certificate it does not trust? -cert/-key)"),
        ("KEY_VALUES_MISMATCH", "the client key does not match the client certificate (-cert/-key)"),
        ("NO_CERTIFICATE_OR_CRL_FOUND", "the CA bundle holds no certificate (-v)"),
        ("PEM lib", "cannot read the client certificate or key as PEM (-cert/-key)"),
        ("Connection reset", "connection reset"),
        ("RemoteDisconnected", "connection closed by the registry"),
        ("too many 5", "too many error responses"),
        ("too many 429", "too many 429 Too Many Requests responses"),
    ):
        if needle in text:
            return reason
    detail = _SSL_DETAIL.search(text)
    if detail:
        return detail.group(1)  # "sslv3 alert handshake failure", not just "SSLError"
    match = re.search(r"\(Caused by ([^(]+)\(", text)
    return match.group(1) if match else text.splitlines()[0][:200]
