"""Registry authentication for ``requests``: Basic, Bearer tokens (the Docker token protocol) and Digest.

The registry client installs one object as ``session.auth`` and shares the session between up to 16 worker
threads, so everything here is thread-safe: shared state (what each registry asks for, the token cache) sits
behind one lock, and each request keeps its own state in the response hook registered for it.

How it works, in the registry's own terms:

- A request goes out. If we already know the registry wants Basic, it carries Basic credentials; if we know
  it wants Bearer tokens, it carries a token for the scope the request needs (derived from method and path,
  fetched now if not cached), so a long run does not pay a 401 per request.
- A 401 comes back with ``WWW-Authenticate``. The response hook answers the challenge the way requests'
  own ``HTTPDigestAuth.handle_401`` does (consume the body, copy the prepared request, set Authorization,
  ``r.connection.send``, keep the 401 in ``history``): Basic with the user's credentials; Bearer by fetching a
  token from the realm for the challenge's scope (the challenge is authoritative) and retrying.
- A request retried with a freshly fetched token that still gets ``error="insufficient_scope"`` raises
  ``ScopeRefused`` naming the scope; credentials refused at the token server or a Basic registry raise
  ``AuthenticationFailed``. Messages never contain a password or token.

Token requests use the TLS settings of the registry request that led to them (the ``verify``/``cert``/
``timeout``/``proxies`` that requests hands to every response hook), so ``-v CA_BUNDLE`` and a client
certificate apply to the token server exactly as to the registry, and ``REQUESTS_CA_BUNDLE`` cannot override
them. They go out through a small private session of ours (keep-alive, a few retries on 429/5xx), not the
client's: the client's pool manager keeps one host pool (``pool_connections=1``), and a token fetch through it
would evict, and so close, every keep-alive connection to the registry at each new repository. A caller can
still pass ``token_session=`` to choose the session.

Credentials never leave the registry's origin on redirects: requests strips Authorization when a redirect
changes host (a blob GET redirected to S3), and the hook refuses to answer a challenge from any origin other
than the one the request was made to, so it cannot put credentials back on the storage host's request.
"""

from __future__ import annotations

import base64
import functools
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import unquote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase, HTTPDigestAuth
from requests.cookies import extract_cookies_to_jar

from regdb.registry.reference import follow_url
from regdb.registry.transport import MAX_OTHER_BYTES, MAX_TOKEN_BYTES, BoundedRetry, read_bounded
from regdb.errors import AuthenticationFailed, RegistryError, RegistryUnreachable, ScopeRefused, UnsafeURL

log = logging.getLogger(__name__)

#: The user name Docker stores with an identity token (``docker login`` to Docker Hub / ACR with OAuth): the
#: secret is then an OAuth2 refresh token, exchanged at the realm by ``POST grant_type=refresh_token``.
IDENTITY_TOKEN_USER = "<token>"

#: The token spec: "expires_in ... If omitted, the client should assume 60 seconds" and servers should not
#: hand out tokens for less; docker treats anything shorter as 60 as well.
MIN_TOKEN_LIFETIME = 60.0
# A token lives at most a day in our cache, whatever a token server says (a huge expires_in must not pin it).
MAX_TOKEN_LIFETIME = 86400.0
#: Fetch a new token this long before the old one expires, so a request never races the expiry.
REFRESH_MARGIN = 10.0
TOKEN_TIMEOUT = (10.0, 30.0)
# Cached tokens past this count get expired ones pruned (a sync of 10,000 repositories holds one per repository).
_PRUNE_AT = 512

Scopes = frozenset  # of normalized scope strings: "repository:team/app:pull,push"


# --- challenges and scopes -----------------------------------------------------------------------------------

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_SCHEME_RE = re.compile(rf"\s*({_TOKEN})")
_PARAM_RE = re.compile(rf'\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*')


def parse_challenges(header: str) -> list[tuple[str, dict[str, str]]]:
    """``WWW-Authenticate`` -> ``[(scheme (lower case), {param: value})]``.

    RFC 7235 allows several challenges in one header, and requests joins repeated headers with ", ", so
    ``Basic realm="x", Bearer realm="y",service="z"`` is two challenges: a new one starts at a token that is
    not followed by ``=``. Quoted values may hold commas (``scope="repository:a:pull,push"``).
    """
    challenges: list[tuple[str, dict[str, str]]] = []
    pos, end = 0, len(header)
    while pos < end:
        while pos < end and header[pos] in " \t,":
            pos += 1
        match = _SCHEME_RE.match(header, pos)
        if not match:
            break
        scheme, pos = match.group(1).lower(), match.end()
        params: dict[str, str] = {}
        while True:
            param = _PARAM_RE.match(header, pos)
            if not param:
                break
            value = param.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[param.group(1).lower()] = value
            pos = param.end()
            if pos < end and header[pos] == ",":
                pos += 1
            else:
                break
        challenges.append((scheme, params))
    return challenges


def normalize_scope(scope: str) -> str:
    """Actions sorted and deduplicated: distribution 2.8 writes ``pull,push`` or ``push,pull`` at random (it
    builds the list from a Go map), and both must find the same cached token."""
    if scope.count(":") < 2:
        return scope
    kind, rest = scope.split(":", 1)
    name, actions = rest.rsplit(":", 1)
    return f"{kind}:{name}:{','.join(sorted(set(a for a in actions.split(',') if a)))}"


def parse_scopes(value: str | None) -> Scopes:
    """A challenge's ``scope`` parameter: several scopes are separated by spaces (distribution joins them so)."""
    return frozenset(normalize_scope(s) for s in (value or "").split())


# Anchored at the end, so a repository whose name contains "manifests" or "tags" still parses: a reference
# (tag or digest) never contains "/", so only one split leaves a valid tail.
_REPOSITORY_PATH = re.compile(
    r"^.*?/v2/(?P<name>.+?)/(?:(?:manifests|blobs|referrers)/[^/]+|blobs/uploads/[^/]*|tags/list)$"
)
_ACTIONS = {"GET": "pull", "HEAD": "pull", "DELETE": "delete", "PUT": "pull,push", "POST": "pull,push",
            "PATCH": "pull,push"}


def required_scopes(method: str | None, url: str | None) -> Scopes | None:
    """The scope a request needs, as distribution's ``appendAccessRecords`` asks for it.

    ``/v2/_catalog`` -> ``registry:catalog:*``; ``/v2/<name>/(manifests|blobs|tags|referrers)/...`` ->
    ``repository:<name>:pull`` (GET/HEAD), ``:delete`` (DELETE), ``:pull,push`` (PUT/POST/PATCH);
    ``/v2/`` -> no scope at all (any valid token passes). None for a path we cannot read: then only the
    registry's challenge can say.
    """
    path = unquote(urlsplit(url or "").path)
    if path.endswith("/v2/_catalog"):
        return frozenset({"registry:catalog:*"})
    if path.endswith("/v2/") or path.endswith("/v2"):
        return frozenset()
    match = _REPOSITORY_PATH.match(path)
    action = _ACTIONS.get((method or "").upper())
    if not match or not action:
        return None
    return frozenset({normalize_scope(f"repository:{match.group('name')}:{action}")})


def origin_of(url: str | None) -> str:
    """``scheme://host:port`` (default ports made explicit), the unit credentials are bound to."""
    parts = urlsplit(url or "")
    scheme = (parts.scheme or "").lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


def _display(url: str) -> str:
    """A URL for a message: no user info, no query (a realm URL may carry either)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


# --- state ---------------------------------------------------------------------------------------------------


@dataclass
class _Token:
    value: str
    scopes: Scopes
    expires_at: float  # on the auth object's clock (monotonic by default: wall-clock jumps do not matter)


@dataclass
class _OriginState:
    """What one registry origin asked for. Learned only from challenges to requests made to that origin."""

    scheme: str  # "basic" or "bearer"
    realm: str | None = None
    service: str | None = None
    # TLS and timeout settings of the last request that met a challenge: a token fetched before sending
    # (no hook kwargs at hand yet) uses these.
    send_kwargs: dict = field(default_factory=dict)
    # scope we derived -> scope the registry's challenge named for it (the challenge is authoritative)
    aliases: dict = field(default_factory=dict)


@dataclass
class _RequestState:
    """Per request (so per thread): what we sent, so a second 401 can be told from a first."""

    origin: str
    body_position: int | None = None
    tokens: dict = field(default_factory=dict)  # token value -> _Token attached to this request
    fetched: set = field(default_factory=set)  # scope sets fetched fresh from the realm for this request


def basic_header(user: str, password: str) -> str:
    """``Basic base64(user:password)`` in UTF-8, as docker sends it (requests' own helper encodes Latin-1 and
    fails on any other character)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class _BasicAuth(AuthBase):
    def __init__(self, user: str, password: str):
        self.header = basic_header(user, password)

    def __call__(self, r):
        r.headers["Authorization"] = self.header
        return r


class _NoAuth(AuthBase):
    """Explicitly no credentials: passing ``auth=None`` would fall back to ``session.auth`` (that is us)."""

    def __call__(self, r):
        return r


# --- Basic and Bearer ----------------------------------------------------------------------------------------


class RegistryAuth(AuthBase):
    """Answers a registry's Basic or Bearer challenges with one user's credentials (or anonymously).

    ``user``/``password`` may be None (anonymous: Bearer tokens are still fetched, without credentials, as
    Docker Hub and GHCR hand out for public repositories). ``user == "<token>"`` marks ``password`` as a Docker
    identity token. ``token_session``: the session token requests go through (default: a private one);
    ``clock`` is for tests.
    """

    def __init__(
        self,
        user: str | None = None,
        password: str | None = None,
        *,
        token_session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.user = user
        self.password = password if password is not None else ("" if user is not None else None)
        self._session = token_session
        self._private_session: requests.Session | None = None
        self._clock = clock
        self._lock = threading.Lock()
        self._origins: dict[str, _OriginState] = {}
        self._tokens: dict[tuple, _Token] = {}
        self._flights: dict[tuple, threading.Lock] = {}
        self._refresh_token = self.password if user == IDENTITY_TOKEN_USER else None

    def __repr__(self) -> str:  # never the password
        return f"<RegistryAuth user={self.user!r}>"

    def attach(self, session: requests.Session) -> "RegistryAuth":
        """Install as ``session.auth`` (the registry client's session); returns self."""
        session.auth = self
        return self

    # --- who we are, for messages

    @property
    def _who(self) -> str:
        if self.user is None:
            return "anonymous access"
        if self.user == IDENTITY_TOKEN_USER:
            return "the Docker identity token"
        return f"user {self.user!r}"

    # --- before sending

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        state = _RequestState(origin=origin_of(r.url))
        tell = getattr(r.body, "tell", None)
        if tell is not None:
            state.body_position = tell()  # a file-like body must be rewound before it is sent again
        with self._lock:
            known = self._origins.get(state.origin)
        if known is not None and known.scheme == "basic" and self.user is not None:
            # The registry told us it wants Basic: send it up front instead of paying a 401 per request.
            r.headers["Authorization"] = basic_header(self.user, self.password)
        elif known is not None and known.scheme == "bearer" and known.realm:
            needed = required_scopes(r.method, r.url)
            if needed is not None:
                scopes = known.aliases.get(needed, needed)
                token, fetched = self._token(known.realm, known.service, scopes, known.send_kwargs, state.origin)
                if fetched:
                    state.fetched.add(scopes)
                state.tokens[token.value] = token
                r.headers["Authorization"] = f"Bearer {token.value}"
        r.register_hook("response", functools.partial(self._handle_response, state))
        return r

    # --- after a response

    def _handle_response(self, state: _RequestState, r: requests.Response, **kwargs) -> requests.Response:
        if r.status_code not in (401, 403):
            return r
        if origin_of(r.request.url) != state.origin:
            # A redirect took this request to another origin (blob storage): requests stripped our
            # Authorization, and a challenge from there must never get our credentials or tokens.
            return r
        response = r
        # At most: a token for the challenge's scope, then one refresh of a token the registry rejected.
        for _ in range(3):
            challenges = parse_challenges(response.headers.get("WWW-Authenticate", ""))
            bearer = next((p for s, p in challenges if s == "bearer" and p.get("realm")), None)
            basic = next((p for s, p in challenges if s == "basic"), None)
            if response.status_code == 403 and not (bearer and bearer.get("error") == "insufficient_scope"):
                return response  # a plain 403 is the registry's final word, not a challenge
            if bearer is not None:
                authorization = self._answer_bearer(state, response, bearer, kwargs)
            elif basic is not None:
                authorization = self._answer_basic(state, response)
            elif any(s == "digest" for s, _ in challenges):
                response.close()
                raise AuthenticationFailed(
                    f"registry {_display(response.url).split('/v2/')[0]} asks for HTTP Digest authentication: "
                    "use --digest-auth",
                    status=response.status_code,
                )
            else:
                return response
            response = self._resend(state, response, authorization, kwargs)
            if response.status_code not in (401, 403):
                return response
        return response

    def _answer_basic(self, state: _RequestState, response: requests.Response) -> str:
        where = _display(response.url).split("/v2/")[0].rstrip("/")
        if self.user is None:
            response.close()
            raise AuthenticationFailed(
                f"registry {where} requires a user name and password ({response.status_code} Basic)",
                status=response.status_code,
            )
        header = basic_header(self.user, self.password)
        if response.request.headers.get("Authorization") == header:
            response.close()
            raise AuthenticationFailed(
                f"authentication failed for {self._who} at {where} ({response.status_code})",
                status=response.status_code,
            )
        with self._lock:
            self._origins[state.origin] = _OriginState("basic")
        return header

    def _answer_bearer(self, state: _RequestState, response: requests.Response, challenge: dict, kwargs) -> str:
        realm, service = challenge["realm"], challenge.get("service")
        request = response.request
        needed = required_scopes(request.method, request.url)
        # The challenge's scope is authoritative; without one, use the scope the request needs (or none).
        wanted = parse_scopes(challenge.get("scope")) if challenge.get("scope") else (needed or frozenset())
        send_kwargs = {k: kwargs[k] for k in ("verify", "cert", "timeout", "proxies") if k in kwargs}
        with self._lock:
            known = self._origins.get(state.origin)
            if known is None or known.scheme != "bearer" or (known.realm, known.service) != (realm, service):
                known = self._origins[state.origin] = _OriginState("bearer", realm, service)
            known.send_kwargs = send_kwargs
            if needed is not None and wanted != needed and challenge.get("scope"):
                known.aliases[needed] = wanted
        sent_header = request.headers.get("Authorization", "")
        sent = state.tokens.get(sent_header[7:]) if sent_header.startswith("Bearer ") else None
        stale = None
        if sent is not None and sent.scopes >= wanted:
            # The registry refused a token that was meant for exactly this: a real refusal if we fetched it
            # for this very request, else possibly a stale cached one (registry restarted, token revoked).
            if wanted in state.fetched:
                response.close()
                self._drop(realm, service, sent)
                error = challenge.get("error")
                scope_text = " ".join(sorted(wanted)) or "(none)"
                if error == "insufficient_scope":
                    raise ScopeRefused(
                        f"registry refused scope {scope_text} for {self._who} "
                        f"({response.status_code} insufficient_scope)",
                        scope=scope_text,
                        status=response.status_code,
                    )
                raise AuthenticationFailed(
                    f"registry {_display(response.url).split('/v2/')[0]} rejected the token from "
                    f"{_display(realm)} ({response.status_code}{' ' + error if error else ''}): check that it "
                    "trusts the token server (auth.token issuer, service, rootcertbundle)",
                    status=response.status_code,
                )
            stale = sent
        token, fetched = self._token(realm, service, wanted, send_kwargs, state.origin, stale=stale)
        if fetched or stale is not None:
            state.fetched.add(wanted)
        state.tokens[token.value] = token
        return f"Bearer {token.value}"

    def _resend(self, state: _RequestState, response: requests.Response, authorization: str, kwargs):
        """The pattern of requests' ``HTTPDigestAuth.handle_401``: same request, new Authorization."""
        # Consume (a bounded part of) the body so the connection can go back to the pool for the retry.
        read_bounded(response, MAX_OTHER_BYTES, "401", truncate=True)
        response.close()
        prep = response.request.copy()
        if prep._cookies is not None:
            extract_cookies_to_jar(prep._cookies, response.request, response.raw)
            prep.prepare_cookies(prep._cookies)
        if state.body_position is not None:
            prep.body.seek(state.body_position)
        prep.headers["Authorization"] = authorization
        retried = response.connection.send(prep, **kwargs)
        retried.history.append(response)
        retried.request = prep
        return retried

    # --- tokens

    def _token(self, realm, service, scopes: Scopes, send_kwargs: dict, origin: str, *, stale=None):
        """(token, fetched) for ``scopes``: from the cache while it has more than REFRESH_MARGIN to live,
        else from the realm. One fetch per scope set at a time: 16 threads meeting the same new repository
        wait for a single token request instead of sending 16."""
        key = (realm, service, scopes)
        with self._lock:
            cached = self._usable(key, stale)
            if cached is not None:
                return cached, False
            flight = self._flights.setdefault(key, threading.Lock())
        with flight:
            with self._lock:
                cached = self._usable(key, stale)
            if cached is not None:
                return cached, True  # another thread fetched it while we waited: as fresh as our own
            token = self._fetch(realm, service, scopes, send_kwargs, origin)
            with self._lock:
                self._tokens[key] = token
                if len(self._tokens) > _PRUNE_AT:
                    now = self._clock()
                    for k in [k for k, t in self._tokens.items() if t.expires_at <= now]:
                        del self._tokens[k]
                        self._flights.pop(k, None)
            return token, True

    def _usable(self, key, stale) -> _Token | None:
        token = self._tokens.get(key)
        if token is None or token is stale or token.expires_at - REFRESH_MARGIN <= self._clock():
            return None
        return token

    def _drop(self, realm, service, token: _Token) -> None:
        with self._lock:
            key = (realm, service, token.scopes)
            if self._tokens.get(key) is token:
                del self._tokens[key]

    def close(self) -> None:
        """Close the private token session's connections (the registry client's ``close()`` should call it)."""
        with self._lock:
            session, self._private_session = self._private_session, None
        if session is not None:
            session.close()

    def _token_session(self) -> requests.Session:
        if self._session is not None:
            return self._session
        with self._lock:
            if self._private_session is None:
                session = requests.Session()
                session.trust_env = False  # no proxies or netrc behind the user's back, as in the client
                # BoundedRetry: a TLS failure at the token server is not retried with backoff (as in the client).
                retry = BoundedRetry(total=3, backoff_factor=0.5, status_forcelist=(429, 502, 503, 504),
                                     allowed_methods=frozenset({"GET", "POST"}), raise_on_status=False)
                adapter = HTTPAdapter(pool_maxsize=16, max_retries=retry)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                self._private_session = session
            return self._private_session

    def _fetch(self, realm: str, service: str | None, scopes: Scopes, send_kwargs: dict, origin: str) -> _Token:
        try:
            # A token server may live on another host (Docker Hub's auth.docker.io): the realm is where the
            # registry's own challenge sends our credentials. It must still be a well-formed http(s) URL.
            realm = follow_url(realm, realm, what="the registry's token realm", same_origin=False)
        except UnsafeURL as error:
            raise AuthenticationFailed(f"the registry named an unusable token realm: {error}") from None
        parts = urlsplit(realm)
        if parts.scheme == "http" and origin.startswith("https://") and self.user is not None:
            # The challenge came over TLS; sending the password in clear to wherever it points would undo that.
            raise AuthenticationFailed(
                f"the registry sends us to a plain-HTTP token server {_display(realm)}: refusing to send "
                f"credentials for {self._who} unencrypted"
            )
        request_kwargs = {
            "timeout": send_kwargs.get("timeout") or TOKEN_TIMEOUT,
            "verify": send_kwargs.get("verify", True),
            "cert": send_kwargs.get("cert"),
            "proxies": send_kwargs.get("proxies") or {},
        }
        scope_text = " ".join(sorted(scopes))
        log.debug("fetching a token from %s for scope %s", _display(realm), scope_text or "(none)")
        session = self._token_session()
        with self._lock:
            refresh_token = self._refresh_token
        try:
            if refresh_token is not None:
                # docs/spec/auth/oauth.md: an identity token is an OAuth2 refresh token, exchanged by POST
                # (that is what docker does with one; there is no Basic fallback there either).
                form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": "regdb"}
                if service:
                    form["service"] = service
                if scope_text:
                    form["scope"] = scope_text
                answer = session.post(realm, data=form, auth=_NoAuth(), stream=True, **request_kwargs)
            else:
                params = ([("service", service)] if service else []) + [("scope", s) for s in sorted(scopes)]
                answer = session.get(realm, params=params, auth=self._basic(), stream=True, **request_kwargs)
            if answer.status_code == 200:
                read_bounded(answer, MAX_TOKEN_BYTES, f"token server {_display(realm)}")
        except requests.exceptions.SSLError:
            raise RegistryUnreachable(
                f"TLS error talking to token server {_display(realm)} (it is checked with the registry's own "
                "-v bundle and client certificate)"
            ) from None
        except requests.exceptions.Timeout:
            raise RegistryUnreachable(f"token server {_display(realm)} did not answer in time") from None
        except requests.RequestException as error:
            reason = "connection refused" if "refused" in str(error).lower() else type(error).__name__
            raise RegistryUnreachable(f"cannot reach token server {_display(realm)}: {reason}") from None
        status = answer.status_code
        if status == 200:
            return self._parse_token(answer, realm, scopes)
        answer.close()
        if status == 403:
            raise ScopeRefused(
                f"token server {_display(realm)} refused scope {scope_text or '(none)'} for {self._who} (403)",
                scope=scope_text,
                status=403,
            )
        if status in (400, 401) and refresh_token is not None:
            raise AuthenticationFailed(
                f"authentication failed for {self._who} at {_display(realm)} ({status}): run docker login again",
                status=status,
            )
        if status == 401:
            if scopes and self._credentials_accepted(session, realm, service, request_kwargs):
                # Some token servers answer 401, not a reduced token, for a scope the user may not have.
                raise ScopeRefused(
                    f"token server {_display(realm)} refused scope {scope_text} for {self._who} (401)",
                    scope=scope_text,
                    status=401,
                )
            if self.user is None:
                raise AuthenticationFailed(
                    f"token server {_display(realm)} requires credentials (401): anonymous access refused",
                    status=401,
                )
            raise AuthenticationFailed(
                f"authentication failed for {self._who} at {_display(realm)} (401)", status=401
            )
        raise RegistryError(f"token server {_display(realm)} answered {status}", status=status)

    def _basic(self) -> AuthBase:
        return _BasicAuth(self.user, self.password) if self.user is not None else _NoAuth()

    def _credentials_accepted(self, session, realm, service, request_kwargs) -> bool:
        """Ask the realm for a token with no scope: 200 means the credentials are good (so the 401 was about
        the scope), anything else means they are not."""
        params = [("service", service)] if service else []
        try:
            probe = session.get(realm, params=params, auth=self._basic(), stream=True, **request_kwargs)
        except requests.RequestException:
            return False
        probe.close()
        return probe.status_code == 200

    def _parse_token(self, answer: requests.Response, realm: str, scopes: Scopes) -> _Token:
        try:
            body = answer.json()
        except (ValueError, RecursionError):
            body = None
        if not isinstance(body, dict):
            raise RegistryError(f"token server {_display(realm)} answered 200 without a JSON object")
        # The spec: "token" and/or "access_token" (the OAuth2 name); when both are present they should be equal,
        # and docker prefers "token".
        value = body.get("token") or body.get("access_token")
        if not isinstance(value, str) or not value:
            raise RegistryError(f"token server {_display(realm)} answered without a token")
        try:
            lifetime = float(body.get("expires_in") or MIN_TOKEN_LIFETIME)
        except (TypeError, ValueError, OverflowError):  # 1e400 as an int overflows float()
            lifetime = MIN_TOKEN_LIFETIME
        if not MIN_TOKEN_LIFETIME <= lifetime <= MAX_TOKEN_LIFETIME:  # NaN, inf, a negative or absurd figure
            lifetime = MIN_TOKEN_LIFETIME if not lifetime > MAX_TOKEN_LIFETIME else MAX_TOKEN_LIFETIME
        refresh = body.get("refresh_token")
        if isinstance(refresh, str) and refresh and self._refresh_token is not None:
            with self._lock:
                self._refresh_token = refresh  # OAuth2 servers may rotate the refresh token
        return _Token(value, scopes, self._clock() + max(lifetime, MIN_TOKEN_LIFETIME))


# --- Digest --------------------------------------------------------------------------------------------------


class DigestAuth(HTTPDigestAuth):
    """requests' ``HTTPDigestAuth`` (thread-safe: its challenge state is thread-local), bound to the origin
    of each request so a redirect elsewhere is never answered, and raising ``AuthenticationFailed`` when the
    registry refuses the digest."""

    def __repr__(self) -> str:
        return f"<DigestAuth user={self.username!r}>"

    def attach(self, session: requests.Session) -> "DigestAuth":
        session.auth = self
        return self

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r = super().__call__(r)
        self._thread_local.origin = origin_of(r.url)
        return r

    def handle_401(self, r: requests.Response, **kwargs) -> requests.Response:
        if origin_of(r.request.url) != getattr(self._thread_local, "origin", None):
            return r  # redirected to another origin: not ours to answer
        sent_digest = r.request.headers.get("Authorization", "").startswith("Digest ")
        response = super().handle_401(r, **kwargs)
        asks_digest = "digest" in response.headers.get("WWW-Authenticate", "").lower()
        if response.status_code == 401 and asks_digest and (response is not r or sent_digest):
            response.close()
            where = _display(response.url).split("/v2/")[0]
            raise AuthenticationFailed(
                f"authentication failed for user {self.username!r} at {where} (401)", status=401
            )
        return response


def build_auth(
    user: str | None,
    password: str | None,
    *,
    digest: bool = False,
    session: requests.Session | None = None,
) -> RegistryAuth | DigestAuth:
    """The ``session.auth`` for a registry: Basic/Bearer as the registry asks (anonymous when ``user`` is
    None), or HTTP Digest with ``digest=True`` (``--digest-auth``). With ``session``, install it there too
    (the same as ``.attach(session)``)."""
    if digest:
        if user is None:
            raise AuthenticationFailed("--digest-auth needs a user name and password")
        auth: RegistryAuth | DigestAuth = DigestAuth(user, password or "")
    else:
        auth = RegistryAuth(user, password)
    if session is not None:
        auth.attach(session)
    return auth
