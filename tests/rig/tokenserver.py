"""A small Docker Registry v2 token server for tests, issuing the JWTs CNCF distribution 2.8's ``auth.token``
accepts.

What distribution 2.8 (registry/auth/token) checks, and so what this server produces:

- JOSE header: ``typ`` "JWT", ``alg`` ES256 or RS256, and ``x5c``: the signing certificate, base64 (standard
  alphabet, not URL-safe) DER, whose chain must verify against a root in ``auth.token.rootcertbundle``
  (checked with ExtKeyUsageAny, so the signing certificate needs no EKU).
- ES256 signatures are JOSE-style raw ``r || s`` (32 bytes each), not the DER that ``cryptography`` returns.
- Claims: ``iss`` equal to ``auth.token.issuer``, ``aud`` equal to ``auth.token.service`` as a single string,
  ``exp``/``nbf`` (60 s leeway in 2.8), ``access``: ``[{"type", "name", "actions"}]``.

And what the token spec (docs/spec/auth/token.md) asks of the server's HTTP side:

- ``GET realm?service=...&scope=...&scope=...``, Basic credentials or none (anonymous). Wrong credentials:
  401. A scope the user may not have is *not* an error: the token simply grants the intersection (possibly
  nothing), and the registry then answers 401 ``error="insufficient_scope"``. Some servers refuse with 403
  instead (or even 401); ``refuse_denied=True`` makes this one behave that way, with ``deny_status``.
- The answer: ``{"token", "access_token", "expires_in", "issued_at"}``.
- OAuth2 (docs/spec/auth/oauth.md): ``POST realm`` with a form ``grant_type=refresh_token`` (an identity
  token from ``docker login``) or ``grant_type=password``; space-separated ``scope``.

Every request is recorded (``requests``), so a test can count token fetches and see the scopes asked for.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from tests.rig.pki import Issued, make_ca, make_signing_cert

# grants: who may do what. A grant is (type, name pattern (fnmatch), actions); "*" in actions means all.
Grant = tuple[str, str, tuple[str, ...]]

ALL_REPOSITORIES: list[Grant] = [("repository", "*", ("pull", "push", "delete")), ("registry", "catalog", ("*",))]
PULL_ONLY: list[Grant] = [("repository", "*", ("pull",))]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_scope(scope: str) -> tuple[str, str, list[str]] | None:
    """``repository:team/app:pull,push`` -> (type, name, actions). The name may itself hold colons
    (``repository:host:5000/app:pull``): the type ends at the first colon, the actions start after the last."""
    if scope.count(":") < 2:
        return None
    kind, rest = scope.split(":", 1)
    name, actions = rest.rsplit(":", 1)
    return kind, name, [a for a in actions.split(",") if a]


@dataclass
class TokenRequest:
    method: str
    user: str | None  # None: anonymous; "<refresh>" + user for a refresh-token grant
    service: str | None
    scopes: list[str]
    status: int


class TokenServer:
    """A threading HTTP token server on 127.0.0.1 (a free port). Use as a context manager or start()/stop().

    ``users``: name -> password. ``grants``: name (None for anonymous) -> list of Grant. ``expires_in``:
    seconds announced (None leaves the field out, for the spec's default of 60). ``token_field``: "token",
    "access_token" or "both". ``refresh_tokens``: identity token -> user, for the OAuth2 POST flow.
    """

    def __init__(
        self,
        directory: Path,
        *,
        users: dict[str, str] | None = None,
        grants: dict[str | None, list[Grant]] | None = None,
        service: str = "regdb-test-registry",
        issuer: str = "regdb-test-issuer",
        alg: str = "ES256",
        expires_in: int | None = 300,
        token_field: str = "token",
        refuse_denied: bool = False,
        deny_status: int = 403,
        allow_anonymous: bool = True,
        refresh_tokens: dict[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ):
        if alg not in ("ES256", "RS256"):
            raise ValueError("alg must be ES256 or RS256 (what distribution 2.8 verifies)")
        if token_field not in ("token", "access_token", "both"):
            raise ValueError("token_field must be token, access_token or both")
        self.directory = Path(directory)
        self.users = dict(users or {})
        self.grants = dict(grants or {})
        self.service = service
        self.issuer = issuer
        self.alg = alg
        self.expires_in = expires_in
        self.token_field = token_field
        self.refuse_denied = refuse_denied
        self.deny_status = deny_status
        self.allow_anonymous = allow_anonymous
        self.refresh_tokens = dict(refresh_tokens or {})
        self.ssl_context = ssl_context
        self.status_override: int | None = None  # answer every request with this status (a broken server)
        self.requests: list[TokenRequest] = []
        self._lock = threading.Lock()
        self.ca: Issued = make_ca(self.directory, "regdb test token CA")
        self.signer: Issued = make_signing_cert(self.ca, self.directory, key_type="ec" if alg == "ES256" else "rsa")
        # The bundle distribution reads (auth.token.rootcertbundle): the CA only; the signing cert rides in x5c.
        self.rootcertbundle = self.ca.cert_path
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    # --- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> "TokenServer":
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        if self.ssl_context is not None:
            server.socket = self.ssl_context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self.port = server.server_address[1]
        # A short poll interval: shutdown() waits for the loop to notice, 0.5 s per server by default.
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="tokenserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "TokenServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def realm(self) -> str:
        return self.url + "/token"

    def registry_config(self) -> dict:
        """The dict to deep-merge into a distribution config (tests/rig/registry.py ``start_registry(extra=...)``)."""
        return {
            "auth": {
                "token": {
                    "realm": self.realm,
                    "service": self.service,
                    "issuer": self.issuer,
                    "rootcertbundle": str(self.rootcertbundle),
                }
            }
        }

    def challenge(self, scope: str | None = None, error: str | None = None) -> str:
        """A ``WWW-Authenticate`` value as distribution 2.8 writes it, for fake registries in unit tests."""
        value = f'Bearer realm="{self.realm}",service="{self.service}"'
        if scope:
            value += f',scope="{scope}"'
        if error:
            value += f',error="{error}"'
        return value

    # --- counting -----------------------------------------------------------------------------------------

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()

    def _record(self, entry: TokenRequest) -> None:
        with self._lock:
            self.requests.append(entry)

    # --- tokens -------------------------------------------------------------------------------------------

    def granted(self, user: str | None, scopes: list[str]) -> list[dict]:
        """The ``access`` claim for ``user`` asking for ``scopes``: requested actions intersected with grants."""
        rules = self.grants.get(user, [])
        access: dict[tuple[str, str], list[str]] = {}
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            kind, name, wanted = parsed
            allowed: set[str] = set()
            for rule_kind, pattern, actions in rules:
                if rule_kind == kind and fnmatch.fnmatchcase(name, pattern):
                    allowed.update(wanted if "*" in actions else actions)
            got = access.setdefault((kind, name), [])
            got.extend(a for a in wanted if a in allowed and a not in got)
        return [{"type": k, "name": n, "actions": a} for (k, n), a in access.items()]

    def issue(self, user: str | None, access: list[dict], *, lifetime: int | None = None) -> str:
        """A signed JWT for ``user`` with ``access``; valid for ``lifetime`` s (the announced expires_in)."""
        now = int(time.time())
        lifetime = lifetime if lifetime is not None else (self.expires_in or 60)
        header = {
            "typ": "JWT",
            "alg": self.alg,
            # Standard base64, as RFC 7515 4.1.6 says for x5c (not the URL-safe alphabet of the JWS parts).
            "x5c": [base64.b64encode(self.signer.der).decode()],
        }
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,  # a single string: distribution 2.8's ClaimSet.Audience is a string
            "exp": now + lifetime,
            "nbf": now - 1,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}".encode()
        if self.alg == "ES256":
            der = self.signer.key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
            r, s = decode_dss_signature(der)
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")  # JOSE raw r||s, not DER
        else:
            signature = self.signer.key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input.decode()}.{b64url(signature)}"

    def verify(self, token: str) -> dict:
        """Claims of a token this server issued (signature, issuer, audience, expiry checked); ValueError if not.
        Fake registries in unit tests use it the way distribution does."""
        try:
            head, body, sig = token.split(".")
            header = json.loads(b64url_decode(head))
            claims = json.loads(b64url_decode(body))
            signature = b64url_decode(sig)
        except ValueError as error:
            raise ValueError(f"malformed token: {error}") from None
        signing_input = f"{head}.{body}".encode()
        public = self.signer.cert.public_key()
        try:
            if header.get("alg") == "ES256":
                r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
                public.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))
            elif header.get("alg") == "RS256":
                public.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
            else:
                raise ValueError(f"unsupported alg {header.get('alg')!r}")
        except (InvalidSignature, TypeError, AttributeError):
            raise ValueError("bad signature") from None
        if claims.get("iss") != self.issuer or claims.get("aud") != self.service:
            raise ValueError("wrong issuer or audience")
        if claims.get("exp", 0) < time.time():
            raise ValueError("expired")
        return claims

    # --- HTTP ---------------------------------------------------------------------------------------------

    def _answer(self, method: str, path: str, query: dict, form: dict, authorization: str | None):
        """(status, headers, body dict) for one request to the realm."""
        if urlsplit(path).path != "/token":
            return 404, {}, {"details": "not found"}
        if method == "POST":
            service = _first(form.get("service"))
            scopes = " ".join(form.get("scope", [])).split()
            grant = _first(form.get("grant_type"))
            if grant == "refresh_token":
                user = self.refresh_tokens.get(_first(form.get("refresh_token")) or "")
                label = f"<refresh>{user}" if user else "<refresh>?"
                if user is None:
                    return self._deny(method, label, service, scopes, 401, "invalid refresh token")
            elif grant == "password":
                user = _first(form.get("username"))
                label = user
                if self.users.get(user) != _first(form.get("password")):
                    return self._deny(method, label, service, scopes, 401, "incorrect username or password")
            else:
                return self._deny(method, None, service, scopes, 400, "unsupported grant_type")
        else:
            service = _first(query.get("service"))
            scopes = [s for value in query.get("scope", []) for s in value.split()]
            user = None
            if authorization:
                scheme, _, value = authorization.partition(" ")
                if scheme.lower() != "basic":
                    return self._deny(method, None, service, scopes, 401, "basic credentials expected")
                try:
                    user, _, password = base64.b64decode(value).decode().partition(":")
                except ValueError:
                    return self._deny(method, None, service, scopes, 401, "malformed credentials")
                if user not in self.users or self.users[user] != password:
                    return self._deny(method, user, service, scopes, 401, "incorrect username or password")
            elif not self.allow_anonymous:
                return self._deny(method, None, service, scopes, 401, "authentication required")
            label = user
        if self.status_override is not None:
            return self._deny(method, label, service, scopes, self.status_override, "configured failure")
        if service != self.service:
            return self._deny(method, label, service, scopes, 400, f"unknown service {service!r}")
        access = self.granted(user, scopes)
        if self.refuse_denied:
            granted = {(a["type"], a["name"]): set(a["actions"]) for a in access}
            for scope in scopes:
                parsed = parse_scope(scope)
                if parsed and not set(parsed[2]) <= granted.get((parsed[0], parsed[1]), set()):
                    return self._deny(method, label, service, scopes, self.deny_status, f"access to {scope} denied")
        lifetime = self.expires_in or 60
        token = self.issue(user, access, lifetime=lifetime)
        body: dict = {"issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if self.token_field in ("token", "both"):
            body["token"] = token
        if self.token_field in ("access_token", "both") or method == "POST":
            body["access_token"] = token
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        if method == "POST":
            body["scope"] = " ".join(scopes)
        self._record(TokenRequest(method, label, service, scopes, 200))
        return 200, {}, body

    def _deny(self, method, user, service, scopes, status, details):
        self._record(TokenRequest(method, user, service, scopes, status))
        headers = {"WWW-Authenticate": 'Basic realm="regdb test token server"'} if status == 401 else {}
        return status, headers, {"details": details}


class RecordingTokenServer(TokenServer):
    """A TokenServer that keeps every token it hands out, so a test can look for them where they must not be."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.issued: list[str] = []

    def issue(self, user, access, *, lifetime=None) -> str:
        token = super().issue(user, access, lifetime=lifetime)
        self.issued.append(token)
        return token


def _first(values):
    return values[0] if values else None


def _handler_for(server: TokenServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real token servers do

        def _respond(self, method: str, form: dict) -> None:
            parts = urlsplit(self.path)
            status, headers, body = server._answer(
                method, parts.path, parse_qs(parts.query), form, self.headers.get("Authorization")
            )
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._respond("GET", {})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode()) if length else {}
            self._respond("POST", form)

        def log_message(self, format, *args) -> None:  # noqa: A002 - the stdlib's signature
            pass  # the test output stays readable; `requests` holds what a test needs

    return Handler
