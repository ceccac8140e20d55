"""Bounded: a hostile registry's endless or enormous answers cost regdb at most its named limits in memory.

A real registry never sends a 1 GiB manifest or a 10,000,000-entry tag list, so a few lines over a raw socket
do: they stream the answer chunk by chunk (Transfer-Encoding: chunked, no Content-Length to refuse up front)
for as long as the client reads, up to a ceiling far past regdb's bounds. The sync runs as a child process so
its peak resident memory is its own (``wait4``); before the bounds it reached 2.2 GB on the manifest and
1.2 GB on the tag list. Each run must end with one line, exit 1, and the inventory file unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from regdb.registry.transport import MAX_LISTING_BYTES, MAX_MANIFEST_BYTES
from tests.rig.media import DOCKER_MANIFEST, canonical_json
from tests.rig.state import snapshot, syncs

MiB = 1024 * 1024
# The child's peak RSS: Python, requests and SQLAlchemy take ~60-80 MiB; a bounded read adds its bound (twice,
# while the chunks are joined). Far below what the unbounded reads took.
PEAK_RSS_LIMIT = 250 * MiB
# The server stops streaming here even if the client reads on: a regression fails on RSS, not by hanging.
SERVE_AT_MOST = 1024 * MiB


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


CONFIG = canonical_json({"architecture": "amd64", "os": "linux", "created": "2024-05-01T10:00:00Z"})
MANIFEST = canonical_json({
    "schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "layers": [],
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(CONFIG),
               "digest": sha256(CONFIG)},
})


NEW = "sha256:" + "1" * 64


class Endless:
    """``/v2/``, a catalog of one repository ``big`` with one image tagged 1.0, and once ``what`` is set, one
    endpoint that never ends: 'manifest' (GET /v2/big/manifests/...), 'tags' (tags/list: '{"tags": ["t0",
    "t1", ...') or 'catalog'. ``sent`` counts the bytes of the endless body that went out."""

    def __init__(self, what: str | None = None):
        self.what = what
        self.sent = 0
        self.tags = ["1.0"]
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            while not self.stopped.is_set():
                line = reader.readline(65536)
                if not line:
                    return
                method, path, _ = line.decode("latin-1").split(" ", 2)
                while reader.readline(65536) not in (b"\r\n", b"\n", b""):
                    pass
                try:
                    if not self._answer(conn, method, path):
                        return
                except OSError:
                    return

    def _answer(self, conn: socket.socket, method: str, path: str) -> bool:
        def reply(body: bytes, content_type: str = "application/json", status: str = "200 OK") -> bool:
            conn.sendall(f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                         f"Docker-Distribution-API-Version: registry/2.0\r\n\r\n".encode()
                         + (b"" if method == "HEAD" else body))
            return True

        endless = {"manifest": path == f"/v2/big/manifests/{NEW}", "tags": path.startswith("/v2/big/tags/"),
                   "catalog": path.startswith("/v2/_catalog"), None: False}[self.what]
        if endless:
            if method == "HEAD":
                return reply(b"", status="404 Not Found")
            self._stream(conn)
            return False
        if path == "/v2/":
            return reply(b"{}")
        if path.startswith("/v2/_catalog"):
            return reply(json.dumps({"repositories": ["big"]}).encode())
        if path.startswith("/v2/big/tags/"):
            return reply(json.dumps({"name": "big", "tags": self.tags}).encode())
        if path == "/v2/big/manifests/2.0":  # a new tag: its manifest is fetched by digest, and never ends
            conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: {DOCKER_MANIFEST}\r\nContent-Length: 0\r\n"
                         f"Docker-Content-Digest: {NEW}\r\n\r\n".encode())
            return True
        if path in ("/v2/big/manifests/1.0", f"/v2/big/manifests/{sha256(MANIFEST)}"):
            conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: {DOCKER_MANIFEST}\r\nContent-Length: {len(MANIFEST)}\r\n"
                         f"Docker-Content-Digest: {sha256(MANIFEST)}\r\n\r\n".encode()
                         + (b"" if method == "HEAD" else MANIFEST))
            return True
        if path == f"/v2/big/blobs/{sha256(CONFIG)}":
            return reply(CONFIG, "application/octet-stream")
        return reply(b'{"errors":[{"code":"NAME_UNKNOWN"}]}', status="404 Not Found")

    def _stream(self, conn: socket.socket) -> None:
        content_type = DOCKER_MANIFEST if self.what == "manifest" else "application/json"
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n"
                     "Docker-Distribution-API-Version: registry/2.0\r\n\r\n".encode())
        key = "tags" if self.what != "catalog" else "repositories"
        first = f'{{"{key}": ['.encode() if self.what != "manifest" else b'{"schemaVersion": 2, "layers": ['
        piece = b'"t0000001", ' * (MiB // 12)  # 10,000,000 entries would be ~115 MiB of these
        chunk = first
        while self.sent < SERVE_AT_MOST and not self.stopped.is_set():
            conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.sent += len(chunk)
            chunk = piece

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()


def sync_in_child(url: str, db: Path, *repos: str) -> tuple[int, str, int]:
    """(exit status, output, peak RSS in bytes) of ``regdb sync [REPOS]`` in a child process."""
    command = [sys.executable, "-c", "from regdb.cli.app import main; main()", "-reg", url, "--db", str(db), "-j", "1",
               "sync", *repos]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    return os.waitstatus_to_exitcode(status), output, usage.ru_maxrss * 1024


@pytest.mark.parametrize("what, message, bound", [
    ("manifest", f"GET /v2/big/manifests/{NEW}: the registry's answer is over 4 MiB; refusing it",
     MAX_MANIFEST_BYTES),
    ("tags", "GET /v2/big/tags/list: the registry's answer is over 48 MiB; refusing it", MAX_LISTING_BYTES),
    ("catalog", "GET /v2/_catalog?n=1000: the registry's answer is over 48 MiB; refusing it", MAX_LISTING_BYTES),
])
def test_an_endless_answer_is_cut_at_its_bound_in_bounded_memory(tmp_path, what, message, bound):
    server = Endless()
    previous = tmp_path / "inv.db"
    try:
        status, output, _ = sync_in_child(server.url, previous)
        assert status == 0, output
        before = snapshot(previous)
        assert [row[:2] for row in before["images"]] == [("big", "1.0")]
        server.what = what
        if what == "manifest":  # a re-sync HEADs the tags: a new one makes it GET a new manifest by digest
            server.tags = ["1.0", "2.0"]
        status, output, peak = sync_in_child(server.url, previous)
    finally:
        server.stop()
    assert status == 1, output
    assert output.splitlines() == [f"Error: {message}"]
    assert peak < PEAK_RSS_LIMIT, f"peak RSS {peak / MiB:.0f} MiB"
    # It stopped reading at the bound: the server got to send at most the bound and what the sockets buffer.
    assert server.sent < bound + 16 * MiB
    assert snapshot(previous) == before  # the previous snapshot, exactly
    assert [status for status, _ in syncs(previous)] == ["ok", "failed"]


def test_a_content_length_over_the_bound_is_refused_before_reading(tmp_path):
    # A manifest announced at 5 GiB is refused from its headers: not one byte of it is read.
    body = canonical_json({"schemaVersion": 2})
    listener = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as reader:
                while line := reader.readline(65536):
                    method, path, _ = line.decode("latin-1").split(" ", 2)
                    while reader.readline(65536) not in (b"\r\n", b"\n", b""):
                        pass
                    if path.startswith("/v2/app/manifests/"):
                        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: {DOCKER_MANIFEST}\r\n"
                                     f"Content-Length: {5 * 1024 * MiB}\r\n\r\n".encode() + body)
                        break
                    answer = {"/v2/": b"{}", "/v2/app/tags/list": b'{"tags": ["1.0"]}'}.get(path, b"{}")
                    conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                                 f"{len(answer)}\r\nDocker-Distribution-API-Version: registry/2.0\r\n\r\n".encode()
                                 + answer)

    threading.Thread(target=serve, daemon=True).start()
    try:
        status, output, _ = sync_in_child(url, tmp_path / "inv.db", "app")
    finally:
        listener.close()
    assert status == 1, output
    assert "GET /v2/app/manifests/1.0: the registry's answer is 5120 MiB, over 4 MiB; refusing it" in output
    assert len(output.splitlines()) == 1
