"""Start-up: each command imports only what it uses (issue 17).

`regdb --version` and `--help` load neither SQLAlchemy nor requests; commands that only read the inventory
never load requests. Asserted by listing ``sys.modules`` in a fresh interpreter after the command ran.
"""

from __future__ import annotations

import json
import subprocess
import sys

import sqlite3
from contextlib import closing

import pytest

from regdb import Inventory, RegistryClient

# Runs the CLI in a fresh interpreter, then prints the loaded module names as JSON on the last stderr line.
PROBE = """
import json, sys
from regdb.cli.app import main
try:
    main(sys.argv[1:], prog_name="regdb")
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""

HTTP = ("requests", "urllib3", "regdb.registry.client", "regdb.registry.auth")
DATABASE = ("sqlalchemy", "alembic", "regdb.api", "regdb.inventory.db")


def loaded_after(*args: str, cwd=None) -> tuple[set[str], subprocess.CompletedProcess]:
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60,
                            cwd=cwd)
    modules = set(json.loads(result.stderr.strip().splitlines()[-1]))
    return modules, result


def top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules} | modules


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["query-tags", "--help"], ["sync", "--help"]])
def test_version_and_help_load_no_database_and_no_http(args):
    modules, result = loaded_after(*args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert not top_level(modules) & set(HTTP + DATABASE), sorted(top_level(modules) & set(HTTP + DATABASE))
    assert "tqdm" not in modules  # the progress library loads only for a sync on a terminal


@pytest.fixture(scope="module")
def synced(registry, tmp_path_factory):
    from tests.rig.pusher import Pusher

    pusher = Pusher(registry.url)
    pusher.push_image("startup-probe/app", "1.0")
    path = tmp_path_factory.mktemp("startup") / "inventory.db"
    client = RegistryClient(registry.url, jobs=4)
    with Inventory(path) as inventory:
        inventory.sync(client, ["startup-probe/app"])
    client.close()
    return registry.url, path


@pytest.mark.parametrize("args", [
    ["list-repo-names"],
    ["list-tag-names", "startup-probe/app"],
    ["query-tags", "-r", "startup-probe/app", "-t", "1.0"],
    ["query-repos", "-r", "startup-probe/app"],
    ["sql", "SELECT repo FROM images"],
    ["schema"],
])
def test_inventory_only_commands_never_load_http(synced, args):
    url, path = synced
    modules, result = loaded_after("-reg", url, "--db", str(path), *args)
    assert result.returncode == 0, result.stderr
    if args[0] != "schema":
        assert "startup-probe/app" in result.stdout
    assert not top_level(modules) & set(HTTP), sorted(top_level(modules) & set(HTTP))
    if args[0] in READERS:
        # An SQLite inventory synced from this registry is read with the standard library's sqlite3.
        assert "regdb.selection.sqlite_reader" in modules  # the probe does see imports
        assert not top_level(modules) & set(DATABASE), sorted(top_level(modules) & set(DATABASE))
    elif args[0] != "schema":
        assert "sqlalchemy" in modules  # the probe does see imports: this one is needed


# The read-only listings answered without SQLAlchemy (regdb.selection.sqlite_reader).
READERS = ("list-repo-names", "list-tag-names", "query-tags", "query-repos")


@pytest.mark.parametrize("args", [
    ["--refresh", "list-repo-names"],  # a sync first: the full inventory
    ["query-tags", "-r", "startup-probe/app", "--keep-latest", "1"],  # retention: the full inventory
    ["query-tags", "-r", "startup-probe/*", "-t", "1.*"],  # globs: matched on the full inventory
    ["list-tag-names", "startup-*/app"],
])
def test_listings_that_need_the_full_inventory_still_answer(synced, args):
    url, path = synced
    modules, result = loaded_after("-reg", url, "--db", str(path), *args)
    assert result.returncode == 0, result.stderr
    assert "sqlalchemy" in modules
    if any("*" in arg for arg in args):
        assert "startup-probe/app" in result.stdout
        # The glob matcher is selection's, not the policy module's (which would bring the removal code in).
        assert not top_level(modules) & set(HTTP), sorted(top_level(modules) & set(HTTP))
        assert "regdb.cleanup.policy" not in modules


def test_the_default_inventory_is_found_without_sqlalchemy_too(synced, tmp_path):
    """No --db: the file named after the registry in the current directory (regdb.inventory.location)."""
    import shutil

    from regdb.inventory.location import default_db_path

    url, path = synced
    shutil.copyfile(path, tmp_path / default_db_path(url))
    with closing(sqlite3.connect(tmp_path / default_db_path(url))) as conn:  # what that file holds (the shared
        # registry's other repositories too, once an earlier command in this module synced it whole)
        names = [n for (n,) in conn.execute("SELECT name FROM repos WHERE EXISTS (SELECT 1 FROM tags WHERE "
                                            "tags.repo_id = repos.id) ORDER BY name")]
    assert "startup-probe/app" in names
    modules, result = loaded_after("-reg", url, "list-repo-names", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "".join(f"{n}\n" for n in names)), result.stderr
    assert "regdb.selection.sqlite_reader" in modules
    assert not top_level(modules) & set(HTTP + DATABASE), sorted(top_level(modules) & set(HTTP + DATABASE))


def test_cli_memory_is_the_inventorys():
    from regdb.cli import core as cli
    from regdb.inventory import db

    assert cli.MEMORY == db.MEMORY
