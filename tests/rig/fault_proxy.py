"""A fault-injecting HTTP proxy on 127.0.0.1, in front of a real registry (``tests/rig/registry.py``).

A real registry answers correctly; the faults regdb must survive happen between it and us: a load balancer
answering 500 or 429, a connection reset, a stalled backend, a truncated body, a caching layer serving the
wrong bytes, a registry that dies in the middle of a run. ``FaultProxy`` forwards every request to the real
registry unless one of its rules claims it. A rule matches by method and a regular expression on the path
(with the query), acts on at most ``times`` requests (every ``every``-th match), and then lets requests through
again; so every fault is bounded in count, and those that wait are bounded in time (and end at ``stop()``).

    proxy = FaultProxy(registry.url).start()
    proxy.add(Answer(500, method="HEAD", every=10))        # 10% of HEADs fail
    proxy.add(Answer(429, headers={"Retry-After": "1"}, times=3))
    proxy.add(Stall(30, path="/tags/list"))                # longer than the client's read timeout
    ...
    proxy.stop()

The proxy keeps a log of what it saw and did (``proxy.seen``) so a test can check, for instance, that a retry
after a 429 came no earlier than its Retry-After.
"""

from __future__ import annotations

import base64
import http.client
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"
# Hop-by-hop headers (RFC 9110 7.6.1) and the ones the proxy computes itself are never copied across.
_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
        "content-length", "host"}
# A stalled request is held at most this long, whatever a test asks: a forgotten stall cannot hang the suite.
MAX_HOLD = 30.0


@dataclass
class Exchange:
    """One request as the proxy saw it, and what it did with it."""

    at: float  # time.monotonic() when the request arrived
    method: str
    path: str
    action: str  # 'forwarded', or the name of the rule that acted ('Answer 500', 'Reset', ...)
    status: int | None = None  # the status the client got, if it got one
    authorization: str | None = None  # the Authorization header the request carried


@dataclass
class Upstream:
    """The real registry's answer to a forwarded request (a rule may change it before it goes out)."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def set_header(self, name: str, value: str) -> None:
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()] + [(name, value)]


# --- rules ----------------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Rule:
    """Which requests a fault applies to (keyword arguments). Subclasses say what the fault is."""

    method: str | None = None  # None: any method
    path: str = ""  # regular expression searched in the path with its query; "" matches everything
    times: int | None = None  # act on at most this many requests (None: no limit)
    every: int = 1  # act on every n-th matching request only
    matched: int = field(default=0, init=False)
    acted: int = field(default=0, init=False)

    def claim(self, method: str, path: str, headers) -> bool:
        """Called under the proxy's lock: does this rule act on this request?"""
        if self.method is not None and method != self.method:
            return False
        if self.path and not re.search(self.path, path):
            return False
        if self.times is not None and self.acted >= self.times:
            return False
        self.matched += 1
        if self.matched % self.every:
            return False
        self.acted += 1
        return True

    @property
    def name(self) -> str:
        return type(self).__name__


@dataclass
class Answer(Rule):
    """Answer without asking the registry: a 500 from a load balancer, a 429 with Retry-After, ..."""

    status: int = 500
    body: bytes = b'{"errors":[{"code":"UNKNOWN","message":"injected by the fault proxy"}]}'
    headers: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"Answer {self.status}"


@dataclass
class AnswerAfterForwarding(Answer):
    """Forward to the registry, which does the request, then answer ``status`` instead of its answer: a proxy
    or load balancer that times out or fails after the backend has acted."""

    @property
    def name(self) -> str:
        return f"Answer {self.status} after forwarding"


@dataclass
class Reset(Rule):
    """Reset the connection (TCP RST) instead of answering."""


@dataclass
class Stall(Rule):
    """Hold the request ``seconds`` (longer than the client's read timeout), then drop the connection."""

    seconds: float = 5.0


@dataclass
class Delay(Rule):
    """Forward the request after ``seconds``: a slow registry that still answers."""

    seconds: float = 0.2


@dataclass
class Truncate(Rule):
    """Forward, then send the headers (with the full Content-Length) and only half the body, and hang up."""


@dataclass
class Rewrite(Rule):
    """Forward, then replace the body with ``change(body)``; every header (Docker-Content-Digest too) stays."""

    change: Callable[[bytes], bytes] = lambda body: b"<html>not json</html>"


@dataclass
class SetHeader(Rule):
    """Forward, then set a response header (``Link`` pointing back to the same page, say)."""

    header: str = "Link"
    value: str | Callable[[str], str] = ""


@dataclass
class Hook(Rule):
    """Run ``action()`` (push a tag, kill the registry, ...) before the request is forwarded."""

    action: Callable[[], None] = lambda: None


@dataclass
class DieAfter(Rule):
    """Let ``count`` matching requests through, then die at the next: stop listening, drop every connection,
    and call ``on_death`` (to kill the real registry too). Requests already forwarded still get their answer.

    ``after_forwarding``: the fatal request reaches the registry first and only its answer is lost, so the
    client cannot know whether it was done."""

    count: int = 1
    on_death: Callable[[], None] | None = None
    after_forwarding: bool = False

    def claim(self, method: str, path: str, headers) -> bool:
        if self.method is not None and method != self.method:
            return False
        if self.path and not re.search(self.path, path):
            return False
        self.matched += 1
        return self.matched > self.count


@dataclass
class RequireBasic(Rule):
    """Answer 401 with a Basic challenge to every request without these credentials, and forward the rest (the
    Authorization header too, which an open registry ignores): Basic auth in a reverse proxy in front of the
    registry, the usual way to protect distribution."""

    user: str = ""
    password: str = ""

    def claim(self, method: str, path: str, headers) -> bool:
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if headers.get("Authorization") == f"Basic {token}":
            return False
        return super().claim(method, path, headers)


@dataclass
class Redirect(Rule):
    """Answer 307 to ``location(path)``: a registry sending blob downloads to its storage (S3, a CDN)."""

    location: Callable[[str], str] = lambda path: path


# --- the proxy ------------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64

    def handle_error(self, request, client_address):
        # A connection the proxy broke on purpose ends in an exception in its thread; printing it would land in
        # the output of the command under test (CliRunner captures sys.stderr).
        pass


class FaultProxy:
    """A threaded HTTP/1.1 proxy on 127.0.0.1 forwarding to ``upstream`` (a registry URL on 127.0.0.1)."""

    def __init__(self, upstream: str, *, port: int = 0):
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname != LOOPBACK:
            raise ValueError(f"the fault proxy forwards to plain http on {LOOPBACK} only, not {upstream}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.port = port
        self.rules: list[Rule] = []
        self.seen: list[Exchange] = []
        self.dead = False
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: dict[socket.socket, bool] = {}  # socket -> busy with a request
        self._local = threading.local()

    # --- life ---------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def host(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self) -> "FaultProxy":
        """Listen (again, on the same port after ``die()``) and forward."""
        if self._server is not None:
            return self
        self.dead = False
        self._stopping.clear()
        handler = type("Handler", (_Handler,), {"proxy": self})
        self._server = _Server((LOOPBACK, self.port), handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fault-proxy-{self.port}", daemon=True)
        self._thread.start()
        return self

    def die(self) -> None:
        """Stop listening and drop every idle connection: to the client, the registry is gone (connection
        refused). A request being forwarded right now still gets its answer, then its connection closes."""
        with self._lock:
            if self.dead:
                return
            self.dead = True
            idle = [sock for sock, busy in self._connections.items() if not busy]
        server, self._server = self._server, None
        if server is not None:
            # shutdown() waits for serve_forever, which runs in its own thread, never in a handler's.
            server.shutdown()
            server.server_close()
        for sock in idle:
            _drop(sock)

    def stop(self) -> None:
        """Die, and release every request still held by a stall."""
        self._stopping.set()
        self.die()
        with self._lock:
            rest = list(self._connections)
        for sock in rest:
            _drop(sock)

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- rules and log --------------------------------------------------------------------------------------

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def log(self, method: str | None = None, path: str = "") -> list[Exchange]:
        with self._lock:
            return [e for e in self.seen
                    if (method is None or e.method == method) and (not path or re.search(path, e.path))]

    def _claim(self, method: str, path: str, headers) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.claim(method, path, headers):
                    return rule
        return None

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self.seen.append(exchange)

    def _busy(self, sock: socket.socket, busy: bool) -> None:
        with self._lock:
            self._connections[sock] = busy

    def _gone(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections.pop(sock, None)

    # --- forwarding ------------------------------------------------------------------------------------------

    def forward(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> Upstream | None:
        """The real registry's answer, or None when it cannot be reached (it was killed)."""
        for attempt in range(2):  # a kept-alive upstream connection may have been closed by the registry
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port,
                                                                     timeout=MAX_HOLD)
            try:
                conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
                conn.putheader("Host", f"{self.upstream_host}:{self.upstream_port}")
                for name, value in headers:
                    conn.putheader(name, value)
                if body or method in ("PUT", "POST", "PATCH"):
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body or None)
                answer = conn.getresponse()
                payload = answer.read()
                kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in _HOP]
                if method == "HEAD" and answer.getheader("Content-Length") is not None:
                    kept.append(("Content-Length", answer.getheader("Content-Length")))
                if answer.will_close:
                    conn.close()
                    self._local.conn = None
                return Upstream(answer.status, answer.reason, kept, payload)
            except (ConnectionError, http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt or self.dead:
                    return None
        return None


def _drop(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _reset(handler: BaseHTTPRequestHandler) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN, as a crashed peer or a firewall would.

    The socket's file objects go first: until they are closed, ``socket.close()`` does not close the descriptor
    (and the server's own ``shutdown(SHUT_WR)`` would then send a polite FIN instead)."""
    try:
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.rfile.close()
        handler.wfile.close()
        handler.connection.close()
    except (OSError, ValueError):
        pass


class _Handler(BaseHTTPRequestHandler):
    proxy: FaultProxy
    protocol_version = "HTTP/1.1"  # keep-alive, like a registry: the client's pool reuses our connections
    timeout = MAX_HOLD  # an idle client connection is closed after this

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # the proxy keeps its own log (proxy.seen); stderr stays quiet

    def setup(self):
        super().setup()
        self.proxy._busy(self.connection, False)

    def finish(self):
        self.proxy._gone(self.connection)
        try:
            super().finish()
        except (OSError, ValueError):
            pass

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (OSError, ValueError):  # ValueError: the file objects of a connection we reset
            self.close_connection = True

    def _answer(self, method: str, path: str) -> None:
        proxy = self.proxy
        if proxy.dead:
            self._hang_up(reset=True)
            return
        proxy._busy(self.connection, True)
        try:
            self._serve(method, path)
        finally:
            proxy._busy(self.connection, False)
            if proxy.dead:
                self.close_connection = True

    def _serve(self, method: str, path: str) -> None:
        proxy = self.proxy
        arrived = time.monotonic()
        credentials = self.headers.get("Authorization")

        def record(action: str, status: int | None = None) -> None:
            proxy._record(Exchange(arrived, method, path, action, status, credentials))

        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        rule = proxy._claim(method, path, self.headers)
        action = rule.name if rule is not None else "forwarded"
        if isinstance(rule, DieAfter):
            if rule.after_forwarding:
                headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _HOP]
                proxy.forward(method, path, headers, body)
            record("DieAfter")
            proxy.die()
            if rule.on_death is not None:
                rule.on_death()
            self._hang_up(reset=True)
            return
        if isinstance(rule, AnswerAfterForwarding):
            proxy.forward(method, path, [(k, v) for k, v in self.headers.items() if k.lower() not in _HOP], body)
        if isinstance(rule, Answer):
            record(action, rule.status)
            self._send(Upstream(rule.status, "", [("Content-Type", "application/json"),
                                                  *rule.headers.items()], rule.body), method)
            return
        if isinstance(rule, RequireBasic):
            record(action, 401)
            self._send(Upstream(401, "", [("Content-Type", "application/json"),
                                          ("WWW-Authenticate", 'Basic realm="registry"')],
                                b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'), method)
            return
        if isinstance(rule, Redirect):
            record(action, 307)
            self._send(Upstream(307, "", [("Location", rule.location(path))], b""), method)
            return
        if isinstance(rule, Reset):
            record(action)
            self._hang_up(reset=True)
            return
        if isinstance(rule, Stall):
            record(action)
            proxy._stopping.wait(min(rule.seconds, MAX_HOLD))
            self._hang_up(reset=False)
            return
        if isinstance(rule, Delay):
            proxy._stopping.wait(min(rule.seconds, MAX_HOLD))
        if isinstance(rule, Hook):
            rule.action()
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _HOP]
        answer = proxy.forward(method, path, headers, body)
        if answer is None:  # the registry is gone: so are we, for this client
            record("upstream unreachable")
            self._hang_up(reset=True)
            return
        if isinstance(rule, Rewrite):
            answer.body = rule.change(answer.body)
        if isinstance(rule, SetHeader):
            value = rule.value(path) if callable(rule.value) else rule.value
            answer.set_header(rule.header, value)
        record(action, answer.status)
        if isinstance(rule, Truncate):
            self._send(answer, method, truncate=True)
            self._hang_up(reset=False)
            return
        self._send(answer, method)

    def _send(self, answer: Upstream, method: str, *, truncate: bool = False) -> None:
        self.send_response_only(answer.status, answer.reason or None)
        for name, value in answer.headers:
            if name.lower() != "content-length":
                self.send_header(name, value)
        if method == "HEAD":
            length = answer.header("Content-Length")
            self.send_header("Content-Length", length if length is not None else "0")
        else:
            self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(answer.body[: len(answer.body) // 2] if truncate else answer.body)
        self.wfile.flush()

    def _hang_up(self, *, reset: bool) -> None:
        self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            pass
        if reset:
            _reset(self)
        else:
            _drop(self.connection)

    def do_GET(self):
        self._answer("GET", self.path)

    def do_HEAD(self):
        self._answer("HEAD", self.path)

    def do_DELETE(self):
        self._answer("DELETE", self.path)

    def do_PUT(self):
        self._answer("PUT", self.path)

    def do_POST(self):
        self._answer("POST", self.path)

    def do_PATCH(self):
        self._answer("PATCH", self.path)
