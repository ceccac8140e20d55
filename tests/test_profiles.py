"""Profiles in $XDG_CONFIG_HOME/regdb/config.toml (issue 17): resolution order, refusals, credentials that go
only to their own registry, and click's shell completion."""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.rig.cli import run
from tests.rig.pusher import Pusher
from tests.rig.registry import start_registry
from tests.rig.secure import write_htpasswd

REGDB = str(Path(sys.executable).parent / "regdb")
SEED_ENV = ("REGISTRY", "REGISTRY_USER", "REGISTRY_PASSWORD", "REGDB_DATABASE", "REGDB_PROFILE", "REQUESTS_CA_BUNDLE")


@pytest.fixture
def config(tmp_path, monkeypatch):
    """Write config.toml under a fresh XDG_CONFIG_HOME (mode 0600 unless told); HOME too, so no docker login
    of the machine's user leaks in."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in SEED_ENV:
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "xdg" / "regdb" / "config.toml"
    path.parent.mkdir(parents=True)

    def write(text: str, mode: int = 0o600) -> Path:
        path.write_text(text)
        path.chmod(mode)
        return path

    return write


def inventory_used(*args: str, env: dict | None = None) -> str:
    """The inventory a command resolved to, read from its error about that (missing) file."""
    result = run(*args, "sql", "SELECT 1", env=env)
    assert result.exit_code == 1, result.output
    message = result.stderr.strip()
    found = re.match(r"Error: cannot open inventory (\S+): directory /nowhere does not exist$", message)
    assert found, message
    return found.group(1)


ORDER = """
default = "home"

[profiles.home]
db = "/nowhere/default-profile.db"

[profiles.named]
db = "/nowhere/named-profile.db"
"""


def test_resolution_order_flag_named_profile_environment_default_profile(config):
    config(ORDER)
    env_db = {"REGDB_DATABASE": "/nowhere/environment.db"}
    assert inventory_used() == "/nowhere/default-profile.db"
    assert inventory_used(env=env_db) == "/nowhere/environment.db"  # the environment beats the default profile
    assert inventory_used("--profile", "named", env=env_db) == "/nowhere/named-profile.db"  # a named one beats it
    assert inventory_used(env={**env_db, "REGDB_PROFILE": "named"}) == "/nowhere/named-profile.db"
    assert inventory_used("--profile", "named", "--db", "/nowhere/flag.db", env=env_db) == "/nowhere/flag.db"


def test_no_config_file_changes_nothing(config):
    assert inventory_used("--db", "/nowhere/flag.db") == "/nowhere/flag.db"
    result = run("--profile", "prod", "sql", "SELECT 1")
    assert result.exit_code == 1 and "no profile 'prod'" in result.stderr and "config.toml" in result.stderr


@pytest.mark.parametrize("line, message", [
    ("yes = true", "'yes' cannot be set in a profile"),
    ("no_match_all_tags = true", "'no_match_all_tags' cannot be set in a profile"),
    ("no_raise_intersecting_repo = true", "'no_raise_intersecting_repo' cannot be set in a profile"),
    ("only_named_repos = false", "'only_named_repos' cannot be set in a profile"),
    ('verify = "None"', 'verify = "None" (no TLS verification) cannot be set in a profile'),
    ("jobs = 0", "jobs = 0 is out of range"),
    ("jobs = true", "jobs must be a whole number"),
    ('registyr = "x"', "unknown key 'registyr'; did you mean 'registry'?"),
    ('user = "me"', "credentials need the registry they are for"),
])
def test_a_profile_cannot_weaken_safety_or_be_wrong_silently(config, line, message):
    path = config(f'[profiles.p]\n{line}\n')
    result = run("--profile", "p", "--db", "/nowhere/x.db", "sql", "SELECT 1")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {path}: profile 'p': {message}")
    assert len(result.stderr.strip().splitlines()) == 1  # one line, no traceback


def test_a_password_in_clear_needs_mode_0600(config):
    text = '[profiles.p]\nregistry = "http://127.0.0.1:1"\nuser = "me"\npassword = "s3cret-in-clear"\n'
    config(text, mode=0o644)
    result = run("--profile", "p", "--db", "/nowhere/x.db", "sql", "SELECT 1")
    assert result.exit_code == 1 and "mode 0600, this one is 0644" in result.stderr
    assert "s3cret" not in result.output
    config(text, mode=0o600)
    assert inventory_used("--profile", "p", "--db", "/nowhere/x.db") == "/nowhere/x.db"


def test_broken_toml_names_the_file(config):
    path = config("[profiles.p\n")
    result = run("--db", "/nowhere/x.db", "sql", "SELECT 1")
    assert result.exit_code == 1 and result.stderr.startswith(f"Error: {path}: ") and "Traceback" not in result.output


# --- credentials, on a real registry with htpasswd ---------------------------------------------------------


@pytest.fixture(scope="module")
def locked(registry_binary, tmp_path_factory):
    root = tmp_path_factory.mktemp("locked")
    htpasswd = write_htpasswd(root / "htpasswd", {"alice": "wonderland"})
    registry = start_registry(root / "registry", extra={"auth": {"htpasswd": {"realm": "regdb-test",
                                                                                    "path": str(htpasswd)}}})
    import requests

    pusher = Pusher(registry.url, session=requests.Session())
    pusher.session.auth = ("alice", "wonderland")
    pusher.push_image("locked/app", "1.0")
    yield registry
    registry.stop()


class Recorder(http.server.BaseHTTPRequestHandler):
    """Another host: asks for Basic credentials and keeps whatever Authorization it is sent."""

    seen: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        Recorder.seen.append(self.headers.get("Authorization") or "")
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="other"')
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args):
        pass


@pytest.fixture
def other_host():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    Recorder.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_profile_credentials_reach_their_registry_and_no_other(config, locked, other_host, tmp_path):
    config(f'default = "locked"\n[profiles.locked]\nregistry = "{locked.url}"\nuser = "alice"\n'
           f'password_env = "LOCKED_TOKEN"\ndb = "{tmp_path / "locked.db"}"\n')
    env = {"LOCKED_TOKEN": "wonderland"}
    result = run("sync", env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"synced {locked.url}: ")
    listed = run("list-tag-names", env=env)
    assert listed.exit_code == 0 and "locked/app" in listed.stdout

    # Without the credential the registry refuses: the profile is what got us in.
    result = run("--db", str(tmp_path / "nope.db"), "sync", env={"LOCKED_TOKEN": "wrong"})
    assert result.exit_code == 1 and "wrong" not in result.output

    # Another registry on the command line: the default profile's user, password and inventory stay home.
    result = run("-reg", other_host, "--db", str(tmp_path / "other.db"), "sync", env=env)
    assert result.exit_code == 1
    assert Recorder.seen and not any(Recorder.seen), Recorder.seen
    assert not (tmp_path / "other.db").exists()


def test_shell_completion_is_clicks_own():
    env = {**os.environ, "_REGDB_COMPLETE": "bash_source"}
    result = subprocess.run([REGDB], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "_regdb_completion" in result.stdout
    env = {**os.environ, "_REGDB_COMPLETE": "bash_complete", "COMP_WORDS": "regdb list-r", "COMP_CWORD": "1"}
    result = subprocess.run([REGDB], env=env, capture_output=True, text=True, timeout=30)
    assert "list-repo-names" in result.stdout
