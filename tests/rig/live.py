"""A real ``regdb listen`` process for tests and the benchmark, and a registry that notifies it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.rig.loopback import free_port
from tests.rig.registry import RegistryProcess, RigError, notifications_config, start_registry

REGDB = Path(sys.executable).parent / "regdb"
# Every wait in these tests is for a condition; this bounds how long a condition may take to come true.
WAIT_SECONDS = 20.0


def wait_for(condition, what: str, timeout: float = WAIT_SECONDS):
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


class ListenerProcess:
    """``regdb -reg URL --db DB listen`` on 127.0.0.1:``port``, its stderr in a file."""

    def __init__(self, root: Path, registry_url: str, db: Path | str, port: int, token: str | None,
                 extra_args: tuple[str, ...] = ()):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.registry_url = registry_url
        self.db = db  # a file, or a PostgreSQL URL
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.token = token
        self.log_path = self.root / "listener.log"
        self.journal = self.root / "listener.events"
        self.proc: subprocess.Popen | None = None
        self.extra_args = extra_args
        if token is not None:
            self.token_file = self.root / "token"
            self.token_file.write_text(token + "\n")

    def command(self) -> list[str]:
        auth = ["--token-file", str(self.token_file)] if self.token is not None else ["--insecure-no-auth"]
        return [str(REGDB), "-reg", self.registry_url, "--db", str(self.db), "-l", "info", "listen", "--bind",
                f"127.0.0.1:{self.port}", "--journal", str(self.journal), *auth, *self.extra_args]

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + WAIT_SECONDS
        while "listening on" not in self.log():
            if self.proc.poll() is not None:
                raise RigError(f"regdb listen exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RigError(f"regdb listen did not start:\n{self.log()}")
            time.sleep(0.02)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def post(self, body, *, token: str | None = "default", **kwargs) -> requests.Response:
        headers = {"Content-Type": "application/vnd.docker.distribution.events.v1+json"}
        token = self.token if token == "default" else token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = body if isinstance(body, (bytes, str)) else __import__("json").dumps(body)
        return requests.post(self.url + "/events", data=data, headers=headers, timeout=10, **kwargs)

    def pending(self) -> int:
        return requests.get(self.url + "/healthz", timeout=5).json()["pending"]


@dataclass
class Live:
    registry: RegistryProcess
    listener: ListenerProcess
    db: Path

    def query(self, sql: str, *params):
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            return conn.execute(sql, params).fetchall()

    def tags(self) -> set[tuple[str, str, str]]:
        return set(self.query("SELECT repo, tag, digest FROM images"))

    def settled(self) -> bool:
        """Nothing journaled waits to be applied."""
        return self.listener.pending() == 0

    def stop(self) -> None:
        self.listener.stop()
        self.registry.stop()


def start_live(root: Path, *, token: str | None = "s3cret-token", backoff: str = "100ms",
               start_listener: bool = True, listener_args: tuple[str, ...] = ()) -> Live:
    """A registry whose notifications go to a ``regdb listen`` of its own, both on loopback."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    registry = start_registry(root / "registry", extra=notifications_config(
        f"http://127.0.0.1:{port}/events", token=token, backoff=backoff))
    listener = ListenerProcess(root, registry.url, root / "inventory.db", port, token, listener_args)
    if start_listener:
        listener.start()
    return Live(registry, listener, root / "inventory.db")


def skopeo_pull(host: str, repo: str, tag: str, dest: Path) -> None:
    """``skopeo copy docker://HOST/REPO:TAG dir:DEST``: a real client pulling (one GET of the manifest)."""
    with tempfile.TemporaryDirectory() as home:
        result = subprocess.run(
            ["skopeo", "copy", "--insecure-policy", "--src-tls-verify=false", f"docker://{host}/{repo}:{tag}",
             f"dir:{dest}"], capture_output=True, text=True, env=dict(os.environ, HOME=home), timeout=120)
    if result.returncode != 0:
        raise RigError(f"skopeo pull of {repo}:{tag} failed:\n{result.stderr}")
