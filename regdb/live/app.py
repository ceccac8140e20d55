"""``regdb listen``: a WSGI app for the registry's notifications, served by waitress, and its applier.

The answer a registry gets decides what it does next (distribution 2.8, pinned in tests/test_live.py): on any
non-2xx it re-sends the same event forever and every later event waits behind it. So:

- 401 for a missing or wrong shared secret (compared in constant time): that is a configuration to fix;
- 413 for a body over ``MAX_ENVELOPE_BYTES`` and 400 for one that is not JSON: a registry never sends either;
- 200 for every authenticated, parseable envelope, once its events are committed to the journal (see
  ``store``), including events regdb cannot apply: those land in ``rejected_events`` with the reason and are
  counted in ``/metrics``, and never wedge the registry's queue.

The applier (one thread) moves journaled events into the inventory in batches of up to ``APPLY_BATCH``,
whenever the inventory's write lock is free; while a sync holds it, events wait in the journal and the
listener keeps answering.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from datetime import datetime, timezone

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import Engine

from regdb.registry.client import RegistryClient
from regdb.errors import InventoryBusy, RegdbError, RegistryUnreachable
from regdb.live.apply import EventShapeError, apply_batch, event_id_of, parse_event, reject_batch
from regdb.live.store import EventStore

log = logging.getLogger(__name__)

# distribution 2.8 sends one event (about 1 KiB) per POST; other senders may batch. A megabyte is a thousand
# events, far beyond any real envelope, and bounds what one request can make the listener hold in memory.
MAX_ENVELOPE_BYTES = 1024 * 1024
MAX_EVENTS_PER_ENVELOPE = 1000
# Events per inventory commit: a batch holds the write lock for milliseconds, and one commit per event was the
# cost that bounded the rate (bench/bench.py, listener figure).
APPLY_BATCH = 500
# How long the applier waits before trying again when a sync holds the lock or the registry does not answer.
RETRY_DELAY = 0.5
# How long the applier sleeps when nothing woke it (a notification wakes it at once).
IDLE_WAIT = 1.0
ENVELOPE_MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"


def _now_text() -> str:
    return datetime.now(timezone.utc).replace(tzinfo=None).isoformat()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.received = Counter("regdb_events_received", "Events accepted into the journal.",
                                registry=self.registry)
        self.duplicates = Counter("regdb_events_duplicate", "Events received again (the registry re-sent them).",
                                  registry=self.registry)
        self.applied = Counter("regdb_events_applied", "Events applied to the inventory.", registry=self.registry)
        self.rejected = Counter("regdb_events_rejected", "Events recorded in rejected_events.",
                                registry=self.registry)
        self.refused = Counter("regdb_requests_refused", "Requests answered 400, 401 or 413.", ["status"],
                               registry=self.registry)
        self.last_event = Gauge("regdb_last_event_timestamp_seconds", "Time of the newest applied event.",
                                registry=self.registry)
        self.pending = Gauge("regdb_events_pending", "Events journaled and not yet applied.",
                             registry=self.registry)
        self.busy = Counter("regdb_inventory_busy", "Apply attempts that found the write lock taken (a sync).",
                            registry=self.registry)
        self.lag = Histogram("regdb_apply_lag_seconds", "From the event's timestamp to its commit.",
                             buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
                             registry=self.registry)


class Listener:
    """The WSGI application (``listener.app``) and the applier thread behind it."""

    def __init__(self, engine: Engine, client: RegistryClient, store: EventStore, *, token: str | None):
        self.engine = engine
        self.client = client
        self.store = store
        self.token = token.encode() if token is not None else None
        self.metrics = Metrics()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        # Until the first batch after this start is applied: the listener was down before it, and whatever a
        # registry gave up re-sending meanwhile would be missing, so the observed window ends there. (2.8 re-sends
        # forever, but other registries may not, and "nobody pulled it" must never rest on a guess.)
        self._gap: str | None = "the listener was not running between these events"

    # --- the HTTP side ----------------------------------------------------------------------------------------

    def app(self, environ, start_response):
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/")
        if path == "/healthz" and method in ("GET", "HEAD"):
            body = {"status": "ok", "pending": self.store.count(), "applier": self._applier_state()}
            return self._answer(start_response, 200, body)
        if path == "/metrics" and method == "GET":
            self.metrics.pending.set(self.store.count())
            output = generate_latest(self.metrics.registry)
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(output)))])
            return [output]
        if path != "/events":
            return self._answer(start_response, 404, {"error": "not found"})
        if method != "POST":
            return self._answer(start_response, 405, {"error": "POST events here"})
        if not self._authenticated(environ):
            self.metrics.refused.labels("401").inc()
            return self._answer(start_response, 401, {"error": "missing or wrong secret"})
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length > MAX_ENVELOPE_BYTES:
            self.metrics.refused.labels("413").inc()
            return self._answer(start_response, 413, {"error": f"body over {MAX_ENVELOPE_BYTES} bytes"})
        body = environ["wsgi.input"].read(length if length >= 0 else MAX_ENVELOPE_BYTES + 1)
        if len(body) > MAX_ENVELOPE_BYTES:
            self.metrics.refused.labels("413").inc()
            return self._answer(start_response, 413, {"error": f"body over {MAX_ENVELOPE_BYTES} bytes"})
        try:
            envelope = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            self.metrics.refused.labels("400").inc()
            return self._answer(start_response, 400, {"error": "body is not JSON"})
        rows = self._journal_rows(envelope, body)
        new = self.store.append(rows, _now_text())
        self.metrics.received.inc(new)
        self.metrics.duplicates.inc(len(rows) - new)
        self._wake.set()
        return self._answer(start_response, 200, {"accepted": len(rows)})

    def _authenticated(self, environ) -> bool:
        if self.token is None:
            return True
        given = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, secret = given.partition(" ")
        if scheme.lower() != "bearer":
            secret = ""
        return hmac.compare_digest(secret.strip().encode(), self.token)

    @staticmethod
    def _journal_rows(envelope, body: bytes) -> list[tuple[str | None, str, str | None]]:
        """(event id, JSON, problem) per event; an envelope of the wrong shape is one rejected row."""
        events = envelope.get("events") if isinstance(envelope, dict) else None
        if not isinstance(events, list):
            return [(None, body[:8192].decode(errors="replace"), "envelope has no 'events' list")]
        if len(events) > MAX_EVENTS_PER_ENVELOPE:
            return [(None, body[:8192].decode(errors="replace"),
                     f"envelope has {len(events)} events, over {MAX_EVENTS_PER_ENVELOPE}")]
        rows = []
        for event in events:
            problem = None
            try:
                parse_event(event)
            except EventShapeError as error:
                problem = str(error)
            rows.append((event_id_of(event), json.dumps(event, separators=(",", ":")), problem))
        return rows

    @staticmethod
    def _answer(start_response, status: int, body: dict):
        reasons = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
                   405: "Method Not Allowed", 413: "Payload Too Large"}
        data = json.dumps(body).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        if status == 401:
            headers.append(("WWW-Authenticate", 'Bearer realm="regdb listen"'))
        start_response(f"{status} {reasons[status]}", headers)
        return [data]

    # --- the applier --------------------------------------------------------------------------------------------

    def _applier_state(self) -> str:
        if self._thread is None or not self._thread.is_alive():
            return "stopped"
        return self.last_error or "running"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="regdb-applier", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def drain_once(self, limit: int = APPLY_BATCH) -> int:
        """Apply up to ``limit`` journaled events in one commit; returns how many were taken from the journal."""
        batch = self.store.pending(limit)
        if not batch:
            return 0
        result = apply_batch(self.engine, self.client, batch, gap=self._gap)
        if result.applied:
            self._gap = None
        self.store.done(batch[-1].seq)
        self.metrics.applied.inc(result.applied)
        self.metrics.rejected.inc(result.rejected)
        self.metrics.duplicates.inc(result.duplicates)
        for lag in result.lags or ():
            self.metrics.lag.observe(max(lag, 0.0))
        if result.last_event_at is not None:
            self.metrics.last_event.set(result.last_event_at.replace(tzinfo=timezone.utc).timestamp())
        return len(batch)

    def _skip_poison(self) -> None:
        """A batch failed unexpectedly twice: apply its first event alone, and if that fails too, record it as
        rejected and go on. The registry has its 200 already; what must not happen is every later event
        waiting behind one that can never be applied."""
        try:
            self.drain_once(limit=1)
        except (InventoryBusy, RegistryUnreachable):
            raise
        except Exception as error:  # noqa: BLE001 - see the docstring
            log.exception("event cannot be applied; recording it as rejected")
            batch = self.store.pending(1)
            if batch:
                reject_batch(self.engine, self.client, batch, f"internal error applying it: {type(error).__name__}")
                self.store.done(batch[-1].seq)
                self.metrics.rejected.inc()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                taken = self._skip_poison() if failures >= 2 else self.drain_once()
                taken = 1 if taken is None else taken
                failures = 0
                self.last_error = None
            except InventoryBusy:
                self.metrics.busy.inc()
                self.last_error = "waiting for the inventory's write lock (a sync is running)"
                self._stop.wait(RETRY_DELAY)
                continue
            except RegistryUnreachable as error:
                self.last_error = f"registry unreachable: {error}"
                log.warning("cannot fetch from the registry, will retry: %s", error)
                self._stop.wait(RETRY_DELAY)
                continue
            except RegdbError as error:
                self.last_error = str(error)
                log.error("cannot apply events, will retry: %s", error)
                self._stop.wait(RETRY_DELAY)
                continue
            except Exception:  # noqa: BLE001 - a bug must not stop the listener answering; it logs and retries
                failures += 1
                self.last_error = "internal error (see the log)"
                log.exception("applying events failed")
                self._stop.wait(RETRY_DELAY)
                continue
            if taken == 0:
                self._wake.wait(IDLE_WAIT)
                self._wake.clear()


def serve(listener: Listener, host: str, port: int, *, threads: int = 8, ready=None) -> None:
    """Serve until interrupted (KeyboardInterrupt or SIGTERM turned into one by the caller)."""
    from waitress.server import create_server

    server = create_server(listener.app, host=host, port=port, threads=threads,
                           max_request_body_size=MAX_ENVELOPE_BYTES + 1, ident="regdb")
    listener.start()
    if ready is not None:
        ready(f"http://{host}:{server.effective_port}")
    try:
        server.run()
    finally:
        server.close()
        # Nothing is lost on a stop: what is journaled and not applied is applied on the next start.
        listener.stop()
