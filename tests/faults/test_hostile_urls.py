"""Which URLs regdb follows: one place (``address.follow_url``) for Link, Location, redirects and token realms.

Anything that carries our credentials stays on the registry's own origin; everything must be a well-formed
http(s) URL; the rest is refused with one line naming it. The credential leak (an upload ``Location`` on
another host getting the user's Basic password) is shown through the fault proxy in front of the real
registry; answers a real registry never gives (a blob redirect to ``file://``, a malformed IPv6 host, a port
past 65535, a redirect loop, an endless chain of Link pages) come from a stub.
"""

from __future__ import annotations

import json
import re

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from regdb.errors import UnsafeURL
from regdb.registry.reference import follow_url
from tests.rig.cli import error_line, run
from tests.rig.fault_proxy import FaultProxy, RequireBasic, SetHeader
from tests.rig.hostile import StubRegistry
from tests.rig.pusher import Pusher
from tests.rig.state import snapshot, syncs

USER, SECRET = "ursula", "Secret-Pw-93kQ"


class Hostile(StubRegistry):
    """The stub registry, with ``intercept(request)`` answering first when it returns a response."""

    intercept = None

    def __call__(self, request: Request) -> Response:
        answer = self.intercept(request) if self.intercept else None
        return answer if answer is not None else super().__call__(request)


@pytest.fixture
def hostile(httpserver):
    stub = Hostile(httpserver)
    stub.good()
    return stub


class RawResponse(Response):
    """Headers exactly as given: werkzeug would otherwise parse a Location (and fail on a malformed one)."""

    def get_wsgi_headers(self, environ):
        headers = self.headers.copy()
        headers["Content-Length"] = "0"
        return headers


def redirect_blobs(stub: Hostile, location) -> None:
    def intercept(request: Request):
        if "/blobs/" in request.path:
            return RawResponse(status=307, headers={"Location": location(request)})
        return None

    stub.intercept = intercept


@pytest.mark.parametrize("location, message", [
    ("file:///etc/passwd", "the registry's redirect to 'file:///etc/passwd' is not an http(s) URL; not following it"),
    ("http://[::1/storage", "the registry's redirect to 'http://[::1/storage' is not a valid URL; not following it"),
    ("http://127.0.0.1:99999/storage", "the registry's redirect to 'http://127.0.0.1:99999/storage' is not a valid "
                                       "URL; not following it"),
    ("gopher://127.0.0.1:70/x", "is not an http(s) URL; not following it"),
])
def test_a_blob_redirect_that_is_no_http_url_is_refused(hostile, tmp_path, short_timeouts, location, message):
    redirect_blobs(hostile, lambda request: location)
    db = tmp_path / "inv.db"
    line = error_line(run("-reg", hostile.url, "--db", db, "sync"))
    assert line.startswith("GET /v2/") and message in line, line
    assert snapshot(db)["images"] == []
    assert syncs(db)[-1] == ("failed", line)


def test_a_redirect_loop_stops_after_the_bound(hostile, tmp_path, short_timeouts):
    redirect_blobs(hostile, lambda request: request.path)  # to itself, forever
    line = error_line(run("-reg", hostile.url, "--db", tmp_path / "inv.db", "sync"))
    assert re.fullmatch(r"GET /v2/\w+/blobs/sha256:[0-9a-f]{64}: the registry redirected more than 5 times; "
                        r"not following it", line), line
    blob_requests = [r for r, _ in hostile.server.log if "/blobs/" in r.path]
    assert len(blob_requests) <= 2 * 6  # two images, each the request and its five redirects


def test_an_endless_chain_of_link_pages_stops_at_the_page_bound(hostile, tmp_path, monkeypatch):
    monkeypatch.setattr("regdb.registry.client.MAX_PAGES", 25)  # the real bound is 100,000 pages: the same code path

    def intercept(request: Request):
        if request.path == "/v2/_catalog":
            page = int(request.args.get("page", "0"))
            return Response(json.dumps({"repositories": [f"r{page}"]}), content_type="application/json",
                            headers={"Link": f'</v2/_catalog?page={page + 1}>; rel="next"'})
        return None

    hostile.intercept = intercept
    line = error_line(run("-reg", hostile.url, "--db", tmp_path / "inv.db", "sync"))
    assert line == "GET /v2/_catalog?n=1000: the registry's listing goes on past 25 pages; refusing it"
    assert len([r for r, _ in hostile.server.log if r.path == "/v2/_catalog"]) == 25


def test_a_link_with_credentials_to_another_host_or_scheme_is_refused(hostile, tmp_path):
    hostile.intercept = lambda request: Response(
        json.dumps({"repositories": ["app"]}), content_type="application/json",
        headers={"Link": '<javascript:alert(1)>; rel="next"'}) if request.path == "/v2/_catalog" else None
    line = error_line(run("-reg", hostile.url, "--db", tmp_path / "inv.db", "sync"))
    assert line == ("GET /v2/_catalog?n=1000: the registry's Link header 'javascript:alert(1)' is not an http(s) "
                    "URL; not following it")


@pytest.mark.parametrize("realm, shown", [
    ("http://[::1/token", "http://[::1/token"),
    ("http://127.0.0.1:99999/token", "http://127.0.0.1:99999/token"),
    ("file:///etc/shadow", "file:///etc/shadow"),
])
def test_a_token_realm_that_is_no_usable_url_is_one_line(httpserver, tmp_path, realm, shown):
    challenge = {"WWW-Authenticate": f'Bearer realm="{realm}",service="registry"',
                 "Docker-Distribution-API-Version": "registry/2.0"}
    httpserver.expect_request(re.compile("^/v2/")).respond_with_data(
        '{"errors":[{"code":"UNAUTHORIZED"}]}', status=401, headers=challenge, content_type="application/json")
    url = httpserver.url_for("").rstrip("/")
    line = error_line(run("-reg", url, "-u", USER, "-p", SECRET, "--db", tmp_path / "inv.db", "sync"))
    assert line.startswith("the registry named an unusable token realm: the registry's token realm "
                           f"{shown!r}"), line
    assert SECRET not in line


def test_follow_url_is_the_one_rule():
    base = "https://registry.example.com/v2/_catalog"
    assert follow_url(base, "/v2/_catalog?last=a", what="Link", same_origin=True) == \
        "https://registry.example.com/v2/_catalog?last=a"
    # Default ports are the same origin; another port, scheme or host is not.
    assert follow_url(base, "https://registry.example.com:443/x", what="Link", same_origin=True)
    for other in ("http://registry.example.com/x", "https://registry.example.com:5000/x", "https://evil.example/x"):
        with pytest.raises(UnsafeURL, match="points to another host"):
            follow_url(base, other, what="Link", same_origin=True)
        assert follow_url(base, other, what="redirect", same_origin=False) == other  # storage: no credentials
    for bad in ("file:///etc/passwd", "data:,x", "http://[::1", "http://h:99999/", "http:///nohost",
                "http://h/a b", "http://h/\x1b[2J"):
        with pytest.raises(UnsafeURL) as caught:
            follow_url(base, bad, what="redirect", same_origin=False)
        assert "\x1b" not in str(caught.value) and "\n" not in str(caught.value)


# --- the leak, against the real registry ------------------------------------------------------------------------


def test_an_upload_location_on_another_host_never_gets_the_password(module_registry, tmp_path):
    """untag's placeholder path PUTs the empty blob to the upload Location the registry returns. A Location on
    another origin is refused, and the other host never sees a request, let alone ``Authorization``."""
    p = Pusher(module_registry.url)
    image = p.push_image("leak/app", "1.0")
    p.tag("leak/app", "stable", image.digest)
    foreign = HTTPServer(host="127.0.0.1", port=0)
    seen: list[dict] = []
    foreign.expect_request(re.compile(".*")).respond_with_handler(
        lambda request: seen.append(dict(request.headers)) or Response(status=201))
    foreign.start()
    try:
        with FaultProxy(module_registry.url) as proxy:
            proxy.add(RequireBasic(user=USER, password=SECRET))
            moved = proxy.add(SetHeader(method="POST", path="/blobs/uploads/", header="Location",
                                        value=lambda value: foreign.url_for("/upload?state=x")))
            db = tmp_path / "inv.db"
            result = run("-reg", proxy.url, "-u", USER, "-p", SECRET, "--db", db, "untag", "--yes", "-r", "leak/app",
                         "-t", "stable", "--method", "placeholder")
            assert moved.acted == 1, result.output
    finally:
        foreign.stop()
    assert result.exit_code == 1, result.output
    assert f"the registry's upload Location points to another host (http://127.0.0.1:{foreign.port}); not " \
           "following it" in result.output
    assert "Traceback" not in result.output and SECRET not in result.output
    assert seen == []  # not one request reached the other host
    assert p.head_digest("leak/app", "stable") == image.digest  # and the tag is where it was
