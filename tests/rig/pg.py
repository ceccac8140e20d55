"""A real PostgreSQL for tests: Debian's server binaries on 127.0.0.1 and a free port, its data under /tmp.

Its fixtures reach every test through ``pytest_plugins`` in tests/conftest.py:
``postgres_server`` starts one server for the session (initdb + ``postgres``, tuned for throwaway data);
``pg_url`` gives each test a database of its own and drops it afterwards.

initdb and postgres refuse to run as root, and CI runs as root: then both run as the ``postgres`` system user
(``nobody`` if there is none), with the data directory in a directory of its own under /tmp, because pytest's
own tmp tree is mode 0700 and that user could not reach it.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.rig.loopback import free_port

PG_BIN_GLOB = os.environ.get("REGDB_TEST_PG_BIN", "/usr/lib/postgresql/*/bin")
SUPERUSER = "regdb"


class PostgresError(RuntimeError):
    """The test PostgreSQL did not start or stop; the message carries its log tail."""


def find_pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory (it must hold both initdb and postgres)."""
    candidates = [Path(p) for p in glob.glob(PG_BIN_GLOB) if (Path(p) / "initdb").exists()]
    candidates = [p for p in candidates if (p / "postgres").exists()]

    def version(path: Path):
        try:
            return int(path.parent.name)
        except ValueError:
            return 0

    return max(candidates, key=version) if candidates else None


def _server_account() -> pwd.struct_passwd | None:
    """Who the server runs as: None (ourselves) unless we are root, which PostgreSQL refuses."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresError("running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL")


class PostgresServer:
    """One ``postgres`` process with its own data directory; ``url(db)`` is a SQLAlchemy URL for regdb."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.account = _server_account()
        # Not under pytest's tmp tree: that is 0700 root, and the server account must be able to reach it.
        self.root = Path(tempfile.mkdtemp(prefix="regdb-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log_path = self.root / "postgres.log"
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._log = None
        self._names = itertools.count(1)

    # --- running processes as the server account -----------------------------------------------------

    def _as_server(self) -> dict:
        if self.account is None:
            return {}
        return {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}

    def _env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C.UTF-8"
        if self.account is not None:
            env["HOME"] = str(self.root)
        return env

    # --- lifecycle --------------------------------------------------------------------------------------

    def initdb(self) -> None:
        self.socket_dir.mkdir()
        if self.account is not None:
            for path in (self.root, self.socket_dir):
                os.chown(path, self.account.pw_uid, self.account.pw_gid)
        result = subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
             "--locale=C.UTF-8", "--no-sync"],
            capture_output=True, text=True, env=self._env(), timeout=120, **self._as_server(),
        )
        if result.returncode != 0:
            raise PostgresError(f"initdb exited with {result.returncode}:\n{result.stdout}{result.stderr}")

    def start(self, timeout: float = 30.0) -> None:
        for attempt in range(3):
            self.port = free_port()
            try:
                self._start_on_port(timeout)
                return
            except PostgresError as error:
                # free_port() releases its socket before postgres binds: someone may take it in between.
                if "already in use" in str(error) and attempt < 2:
                    continue
                raise

    def _start_on_port(self, timeout: float) -> None:
        import psycopg

        self._log = open(self.log_path, "ab")
        if self.account is not None:
            os.chown(self.log_path, self.account.pw_uid, self.account.pw_gid)
        self._proc = subprocess.Popen(
            [str(self.bin_dir / "postgres"), "-D", str(self.data), "-h", "127.0.0.1", "-p", str(self.port),
             "-k", str(self.socket_dir),
             # Throwaway data: durability off makes CREATE DATABASE and commits fast.
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=60"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self._env(),
            start_new_session=True, **self._as_server(),
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._close_log()
                raise PostgresError(f"postgres exited with {code} during start:\n{self.log_tail()}")
            try:
                psycopg.connect(self.dsn("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise PostgresError(f"postgres did not accept connections in {timeout}s:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self, timeout: float = 20.0) -> None:
        if self._proc is not None and self._proc.poll() is None:
            # SIGINT is PostgreSQL's "fast" shutdown: it disconnects clients instead of waiting for them.
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout)
        self._close_log()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    # --- databases --------------------------------------------------------------------------------------

    def dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={database}"

    def url(self, database: str) -> str:
        """The SQLAlchemy URL regdb takes with ``--db``."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, prefix: str = "t") -> str:
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return name

    def drop_database(self, name: str) -> None:
        # FORCE: a test that failed half-way may have left a connection open.
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_postgres() -> PostgresServer:
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise PostgresError(f"no PostgreSQL server binaries match {PG_BIN_GLOB}")
    server = PostgresServer(bin_dir)
    try:
        server.initdb()
        server.start()
    except BaseException:
        server.cleanup()
        raise
    return server


@pytest.fixture(scope="session")
def postgres_server():
    # Fail, not skip: a suite that skips its PostgreSQL half looks green and proves nothing about it.
    if find_pg_bin() is None:
        pytest.fail(
            f"no PostgreSQL found ({PG_BIN_GLOB}/initdb): these tests run a real server. Install it with "
            "`apt-get install postgresql` (`make test` and .ci/run do), or set REGDB_TEST_PG_BIN.",
            pytrace=False,
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail("psycopg is not installed: pip install 'psycopg[binary]' (the 'postgres' extra)", pytrace=False)
    server = start_postgres()
    yield server
    server.cleanup()


@pytest.fixture
def pg_url(postgres_server):
    """A SQLAlchemy URL to an empty database of this test's own."""
    assert postgres_server.alive(), f"the test PostgreSQL died:\n{postgres_server.log_tail()}"
    name = postgres_server.create_database()
    yield postgres_server.url(name)
    postgres_server.drop_database(name)
