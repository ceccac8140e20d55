"""The transport under the registry client: bounds on what a registry may send, reading a body within them,
retries (with ``Retry-After``) and the request rate. No registry semantics here.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time

import requests
from urllib3.exceptions import MaxRetryError
from urllib3.exceptions import SSLError as TLSError
from urllib3.util.retry import Retry

from regdb.errors import DigestMismatch, RegistryError, ResponseTooLarge
from regdb.registry.reference import DIGEST_HEX_LENGTHS, printable

log = logging.getLogger("regdb.registry.client")

DEFAULT_TIMEOUT = (10.0, 60.0)  # connect, read: a stalled server must not hang a run forever
USER_AGENT = "regdb"

# --- bounds on what a registry may send ------------------------------------------------------------------
# Every body is read with a limit, in chunks, and refused as soon as it passes it: a 1 GiB (or endless)
# answer must cost at most the limit in memory, never the whole body first.
KiB, MiB = 1024, 1024 * 1024
# docker and containerd refuse a manifest over 4 MiB; a real one is a few KiB (an index of 100 platforms ~30 KiB).
MAX_MANIFEST_BYTES = 4 * MiB
# An image config is a few KiB, with a long history maybe a few hundred; 8 MiB is far above any real one.
MAX_CONFIG_BYTES = 8 * MiB
# One page of _catalog or tags/list: 1000 names of at most 255 characters is ~260 KiB; distribution 2.8 does
# not page tags/list at all, and 1,000,000 tags of 30 characters is ~32 MiB.
MAX_LISTING_BYTES = 48 * MiB
# A token server's answer: a JWT with many scopes is a few KiB.
MAX_TOKEN_BYTES = 1 * MiB
# Anything else (the /v2/ ping, error bodies, answers to DELETE and PUT): only an error code is read from it.
# An error body is cut here, not refused: the status is what counts.
MAX_OTHER_BYTES = 64 * KiB
# Pages of one listing: at the registry's 100 names a page (the smallest real page size) this is 10,000,000
# names, far beyond MAX_REPOSITORIES; a Link chain of ever-new URLs stops here.
MAX_PAGES = 100_000
# Names in one listing, far above any real registry (the largest known have ~100,000 tags in one repository).
MAX_TAGS_PER_REPOSITORY = 1_000_000
MAX_REPOSITORIES = 1_000_000
# Redirects of one request (a blob to storage is one; a loop is refused after this many).
MAX_REDIRECTS = 5
_CHUNK = 64 * KiB
_BODY_LIMITS = {"manifest": MAX_MANIFEST_BYTES, "blob": MAX_CONFIG_BYTES, "catalog": MAX_LISTING_BYTES,
                "tags": MAX_LISTING_BYTES, "referrers": MAX_MANIFEST_BYTES}


def digest_of(body: bytes, algorithm: str = "sha256") -> str:
    """``algorithm:hex`` of ``body``; only sha256 and sha512 (md5, sha1, blake2b, shake_* are refused)."""
    if algorithm not in DIGEST_HEX_LENGTHS:
        raise DigestMismatch(f"unsupported digest algorithm {printable(algorithm)} (sha256 or sha512 only)")
    return f"{algorithm}:{hashlib.new(algorithm, body).hexdigest()}"


def read_bounded(response: requests.Response, limit: int, what: str, *, truncate: bool = False) -> bytes:
    """Read a streamed response's body, at most ``limit`` bytes (decoded), in chunks. Past the limit: the
    connection is closed and ``ResponseTooLarge`` raised, or with ``truncate`` the first ``limit`` bytes kept.
    The body is then also ``response.content``."""
    if response._content_consumed:  # already read (a hook, a retry)
        body = response._content or b""
        if len(body) > limit and not truncate:
            raise ResponseTooLarge(f"{what}: the registry's answer is over {_size(limit)}; refusing it")
        return body[:limit]
    length = header_int(response.headers.get("Content-Length"))
    if length is not None and length > limit and not truncate:
        response.close()
        raise ResponseTooLarge(f"{what}: the registry's answer is {_size(length)}, over {_size(limit)}; refusing it")
    chunks: list[bytes] = []
    total = 0
    try:
        for chunk in response.iter_content(_CHUNK):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                response.close()
                if not truncate:
                    raise ResponseTooLarge(f"{what}: the registry's answer is over {_size(limit)}; refusing it")
                break
    except (requests.exceptions.ContentDecodingError, requests.exceptions.StreamConsumedError):
        response.close()
        raise RegistryError(f"{what}: the registry's answer cannot be decoded") from None
    body = b"".join(chunks)[:limit]
    response._content = body
    response._content_consumed = True
    return body


def _size(n: int) -> str:
    return f"{n / MiB:g} MiB" if n >= MiB else f"{n / KiB:g} KiB" if n >= KiB else f"{n} bytes"


class BoundedRetry(Retry):
    """urllib3's Retry, with ``Retry-After`` capped so a hostile or confused server cannot park us for hours,
    and TLS failures told apart.

    urllib3 counts every TLS error as an "other" error, retried up to ``total`` times with backoff: an untrusted
    CA or a refused client certificate then took over 30 s to report. Those fail the same way every time, so
    they are not retried. A TLS connection closed without close_notify (``SSLEOFError``: a load balancer
    dropping an idle keep-alive connection, or a registry hanging up on a client certificate it does not trust)
    may be either, so it gets the small budget of a refused connection.
    """

    max_retry_after = 60.0

    def get_retry_after(self, response):
        value = super().get_retry_after(response)
        if value is None:
            return None
        return min(value, self.max_retry_after)

    def _is_connection_error(self, err: Exception) -> bool:
        return _is_tls_eof(err) or super()._is_connection_error(err)

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        # A 500 to a read is mostly a load balancer's or storage backend's hiccup: retried like a 502, or one in
        # ten HEADs failing would fail every sync (tests/faults). A DELETE or PUT answering 500 is reported and
        # left to a re-run: the removal records it as failed, a re-run finds it done (404) or does it.
        if status_code == 500 and method.upper() in ("GET", "HEAD"):
            status_code = 502
        return super().is_retry(method, status_code, has_retry_after)

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if isinstance(error, TLSError) and not _is_tls_eof(error):
            raise MaxRetryError(_pool, url, error) from error
        return super().increment(method, url, response, error, _pool, _stacktrace)


def _is_tls_eof(err: Exception) -> bool:
    return isinstance(err, TLSError) and "EOF occurred" in str(err)


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


def header_int(value: str | None) -> int | None:
    """A header's non-negative integer (Content-Length), or None if absent or absurd."""
    try:
        number = int(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and 0 <= number < 2**53 else None
