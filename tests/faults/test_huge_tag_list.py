"""100,000 tags in one repository: the sync completes, records every tag, and its memory stays bounded.

No real registry is needed to list 100,000 tags, and pushing them would take minutes; a stub that speaks just
enough of the registry API (``/v2/``, ``tags/list``, HEAD and GET of one manifest, its config blob) answers
them. It is a few lines over a raw socket rather than pytest-httpserver: a sync of 100,000 tags makes
100,000 requests (one per tag), and the stub must not be what the test measures. The sync runs as a separate process,
so its peak resident memory is its own (it reports its ``VmHWM``), not pytest's.
"""

from __future__ import annotations

import hashlib
import json
import socket
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing

import pytest

from tests.rig.media import DOCKER_MANIFEST, canonical_json

TAGS = 100_000
PEAK_RSS_LIMIT = 300 * 1024 * 1024

# The sync process reports its own peak (VmHWM: the high-water mark of its own address space) as it exits.
# wait4's ru_maxrss is no measure here: Linux carries into it the resident size of the address space the child
# was forked from, so it grew with pytest's own memory late in the suite (330 MiB, for a sync of 107).
PEAK_LINE = "peak-rss-kb "
REPORTS_ITS_PEAK = f"""
import atexit, sys

def report():
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    sys.stdout.write("{PEAK_LINE}" + peak + "\\n")
    sys.stdout.flush()

atexit.register(report)
from regdb.cli.app import main
main()
"""


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class HugeTagList:
    """One repository ``big`` with ``count`` tags, all on one image. Keep-alive, one thread per connection."""

    def __init__(self, count: int):
        self.config = canonical_json({"architecture": "amd64", "os": "linux", "created": "2024-05-01T10:00:00Z"})
        self.manifest = canonical_json({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "layers": [],
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(self.config),
                       "digest": sha256(self.config)},
        })
        self.digest = sha256(self.manifest)
        self.tags = json.dumps({"name": "big", "tags": [f"1.{n}.{n % 7}" for n in range(count)]}).encode()
        self.resolved = 0  # requests for a manifest by tag (HEAD, or GET on a first sync)
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._stop = threading.Event()
        self._connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _answer(self, method: str, path: str) -> bytes:
        def reply(status: str, content_type: str, body: bytes, extra: str = "") -> bytes:
            head = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                    f"Docker-Distribution-API-Version: registry/2.0\r\n{extra}\r\n").encode()
            return head + (b"" if method == "HEAD" else body)

        if path == "/v2/":
            return reply("200 OK", "application/json", b"{}")
        if path.startswith("/v2/big/tags/list"):
            return reply("200 OK", "application/json", self.tags)
        if path.startswith("/v2/big/manifests/"):
            if not path.startswith("/v2/big/manifests/sha256:"):
                with self._lock:
                    self.resolved += 1
            return reply("200 OK", DOCKER_MANIFEST, self.manifest, f"Docker-Content-Digest: {self.digest}\r\n")
        if path == f"/v2/big/blobs/{sha256(self.config)}":
            return reply("200 OK", "application/octet-stream", self.config)
        return reply("404 Not Found", "application/json", b'{"errors":[{"code":"NAME_UNKNOWN"}]}')

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as requests:
            while not self._stop.is_set():
                line = requests.readline(65536)
                if not line:
                    return
                method, path, _ = line.decode("latin-1").split(" ", 2)
                while requests.readline(65536) not in (b"\r\n", b"\n", b""):
                    pass  # headers: nothing in them changes the answer
                try:
                    conn.sendall(self._answer(method, path))
                except OSError:
                    return

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        for conn in self._connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def huge():
    stub = HugeTagList(TAGS)
    yield stub
    stub.stop()


def test_a_hundred_thousand_tags_in_one_repository_sync_in_bounded_memory(huge, tmp_path):
    db = tmp_path / "inv.db"
    command = [sys.executable, "-c", REPORTS_ITS_PEAK, "-reg", huge.url, "--db", str(db), "sync", "big"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = process.stdout.read().decode()
    process.wait()
    assert process.returncode == 0, output
    assert f"1 repository, {TAGS} tags, 1 new manifest," in output
    assert huge.resolved == TAGS  # every tag resolved, once

    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT tag), min(digest), max(digest) FROM images").fetchone() \
            == (TAGS, TAGS, huge.digest, huge.digest)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    peak = int(output.split(PEAK_LINE, 1)[1].split()[0]) * 1024  # kB
    print(f"peak RSS of a 100,000-tag sync: {peak / 2**20:.0f} MiB")
    assert peak < PEAK_RSS_LIMIT, f"peak RSS {peak / 2**20:.0f} MiB"
