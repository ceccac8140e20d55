"""regdb as people install it: a plain (non-editable) wheel, migrations shipped inside, both console scripts."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import regdb
from regdb.inventory import db

ROOT = Path(__file__).resolve().parent.parent


def test_schema_head_constant_is_alembics_head():
    # db.SCHEMA_HEAD lets an up-to-date inventory open without importing Alembic; it must never lag.
    assert db.SCHEMA_HEAD == db.head_revision()


def test_wheel_installs_and_syncs_from_a_fresh_venv(tmp_path, fresh_registry, fresh_pusher):
    fresh_pusher.push_index("app", "1.0", oci=True)
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        check=True, capture_output=True,
    )
    (wheel,) = dist.glob("regdb-*.whl")
    # One version source: pyproject reads regdb.__version__. py.typed (PEP 561): users' type checkers read
    # regdb's annotations.
    assert wheel.name.startswith(f"regdb-{regdb.__version__}-"), wheel.name
    with zipfile.ZipFile(wheel) as archive:
        assert "regdb/py.typed" in archive.namelist()
    env_dir = tmp_path / "venv"
    # System site-packages only to reuse what the base interpreter already has; regdb itself must come
    # from the wheel, which the import check below proves.
    venv.EnvBuilder(with_pip=True, system_site_packages=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True, capture_output=True)

    clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    # Every subpackage of the source tree must be in the wheel: pyproject lists them by hand.
    packages = sorted(
        ".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "regdb").rglob("__init__.py")
    )
    where = subprocess.run(
        [str(python), "-c", "import importlib, sys; print(*(importlib.import_module(name).__file__ for name in "
                            "sys.argv[1:]), sep='\\n')", "regdb.migrations", *packages],
        check=True, capture_output=True, text=True, cwd=tmp_path, env=clean_env,
    ).stdout.split()
    assert all(path.startswith(str(env_dir)) for path in where), where

    inventory = tmp_path / "inv.db"
    result = subprocess.run(
        [str(env_dir / "bin" / "regdb"), "-reg", fresh_registry.url, "--db", str(inventory), "sync"],
        capture_output=True, text=True, cwd=tmp_path, env=clean_env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"synced {fresh_registry.url}: 1 repository, 1 tag,")
    # dregutil is docker-registry-util's command line (no sync command; -c names the inventory).
    result = subprocess.run(
        [str(env_dir / "bin" / "dregutil"), "-reg", fresh_registry.url, "-c", str(inventory), "list-repo-names"],
        capture_output=True, text=True, cwd=tmp_path, env=clean_env,
    )
    assert (result.returncode, result.stdout) == (0, "app\n"), result.stderr
    with sqlite3.connect(inventory) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (db.SCHEMA_HEAD,)
        assert conn.execute("SELECT repo, tag FROM images").fetchall() == [("app", "1.0")]
