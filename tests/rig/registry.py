"""A real registry for tests, benchmarks and demos: Debian's ``docker-registry`` (CNCF distribution 2.8) on
loopback, its config written from Python, its storage under a test's directory. Importable without pytest."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import requests

from tests.rig.loopback import free_port

REGISTRY_BINARY = os.environ.get("REGDB_TEST_REGISTRY", "docker-registry")


class RigError(RuntimeError):
    """The test registry or a push did not behave; the message carries the HTTP answer or the log tail."""


def deep_merge(base: dict, extra: dict) -> dict:
    """Merge ``extra`` into ``base`` in place; a ``None`` value in ``extra`` removes that key."""
    for key, value in extra.items():
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = value
    return base


class RegistryProcess:
    """One ``docker-registry serve`` on 127.0.0.1, its config and storage under ``root``."""

    def __init__(self, root: Path, config: dict, port: int, env: dict | None = None):
        self.root = Path(root)
        self.port = port
        self.config = config
        self.config_path = self.root / "config.yml"
        self.storage_path = Path(config["storage"]["filesystem"]["rootdirectory"])
        self.log_path = self.root / "registry.log"
        self.host = f"127.0.0.1:{port}"
        scheme = "https" if "tls" in config.get("http", {}) else "http"
        self.url = f"{scheme}://{self.host}"
        self._env = env or {}
        self._proc: subprocess.Popen | None = None
        self._log = None
        self.write_config()

    def write_config(self) -> None:
        # JSON is valid YAML, and the registry's YAML parser reads it: no pyyaml needed.
        self.config_path.write_text(json.dumps(self.config, indent=2))

    def _environment(self) -> dict:
        # REGISTRY_* variables override the config file in distribution; a stray one in the caller's
        # environment must not change what the test set up. Callers pass their own through `env`.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        env.update(self._env)
        return env

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def start(self, timeout: float = 15.0) -> None:
        """Start (or restart after stop/kill) on the same port; return once ``GET /v2/`` answers."""
        if self.alive():
            return
        self.write_config()
        # A file, not a pipe: nobody reads a pipe during a test, and a full pipe blocks the registry.
        self._log = open(self.log_path, "ab")
        self._proc = subprocess.Popen(
            [REGISTRY_BINARY, "serve", str(self.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self._environment(),
            start_new_session=True,  # a Ctrl-C in the terminal goes to pytest, which then stops us in order
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._close_log()
                raise RigError(f"docker-registry exited with {code} during start:\n{self.log_tail()}")
            try:
                # Any HTTP answer means it listens: 200 open, 401 with auth configured.
                requests.get(self.url + "/v2/", timeout=1, verify=False)
                return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RigError(f"docker-registry did not answer on {self.url} in {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout)
        self._close_log()

    def reset(self) -> None:
        """Empty storage, same port and config: a fresh registry in about 0.1 s (stop, wipe, start), for tests
        that run many small examples against one process."""
        self.stop()
        shutil.rmtree(self.storage_path, ignore_errors=True)
        self.start()

    def kill(self) -> None:
        """SIGKILL, no chance to clean up: for tests of a registry that vanishes mid-operation."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def garbage_collect(self, *, delete_untagged: bool = False, dry_run: bool = False) -> str:
        """Run ``docker-registry garbage-collect`` on the storage; returns its output.

        The registry must be stopped: GC against a live, writable registry can delete blobs of an upload in
        flight (distribution's own docs say run it stopped or read-only).
        """
        if self.alive():
            raise RigError("garbage_collect needs the registry stopped (call stop() first)")
        cmd = [REGISTRY_BINARY, "garbage-collect"]
        if dry_run:
            cmd.append("--dry-run")
        if delete_untagged:
            cmd.append("--delete-untagged")
        cmd.append(str(self.config_path))
        result = subprocess.run(cmd, capture_output=True, text=True, env=self._environment(), timeout=120)
        output = result.stdout + result.stderr
        if result.returncode != 0:
            raise RigError(f"{' '.join(cmd)} exited with {result.returncode}:\n{output}")
        return output

    def blob_store_bytes(self) -> int:
        """Bytes held in the registry-wide blob store (what garbage-collect frees)."""
        blobs = self.storage_path / "docker" / "registry" / "v2" / "blobs"
        total = 0
        for dirpath, _dirs, files in os.walk(blobs):
            for name in files:
                total += os.path.getsize(os.path.join(dirpath, name))
        return total

    def __repr__(self) -> str:
        return f"<RegistryProcess {self.url} root={self.root} alive={self.alive()}>"


def registry_config(root: Path, port: int, *, delete_enabled: bool = True, extra: dict | None = None) -> dict:
    config = {
        "version": "0.1",
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(Path(root) / "storage")},
            "delete": {"enabled": delete_enabled},
            # Upload purging runs in the background and would remove half-finished uploads that a fault
            # test left behind on purpose; no test wants it.
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        # A fixed secret silences the "No HTTP secret provided" warning on every start.
        "http": {"addr": f"127.0.0.1:{port}", "secret": "regdb-test-rig"},
    }
    if extra:
        deep_merge(config, json.loads(json.dumps(extra)))  # copy: the caller's dict stays untouched
    return config


def notifications_config(url: str, *, token: str | None = None, name: str = "regdb",
                         timeout: str = "2s", threshold: int = 1, backoff: str = "200ms") -> dict:
    """``extra`` for ``start_registry`` that makes the registry send its notifications to ``url``.

    ``threshold``/``backoff``: after ``threshold`` failed tries the registry waits ``backoff`` between tries
    (distribution 2.8 re-sends the same event forever); small values keep redelivery tests quick."""
    endpoint: dict = {"name": name, "url": url, "timeout": timeout, "threshold": threshold, "backoff": backoff}
    if token is not None:
        endpoint["headers"] = {"Authorization": [f"Bearer {token}"]}
    return {"notifications": {"endpoints": [endpoint]}}


def start_registry(
    root: Path,
    *,
    delete_enabled: bool = True,
    extra: dict | None = None,
    port: int | None = None,
    env: dict | None = None,
) -> RegistryProcess:
    """Write a config under ``root`` and start a registry; ``extra`` is deep-merged into the config
    (``{"auth": {"htpasswd": ...}}``, ``{"http": {"tls": ...}}``; a ``None`` value deletes a key)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    attempts = 1 if port is not None else 3
    for attempt in range(attempts):
        chosen = port if port is not None else free_port()
        reg = RegistryProcess(root, registry_config(root, chosen, delete_enabled=delete_enabled, extra=extra),
                              chosen, env=env)
        try:
            reg.start()
            return reg
        except RigError as e:
            # free_port() closes its socket before the registry binds: another process can take the port
            # in between. Pick another one rather than fail the session.
            if "address already in use" in str(e) and attempt + 1 < attempts:
                continue
            raise
    raise AssertionError("unreachable")




def have_binary(name: str) -> bool:
    return shutil.which(name) is not None
