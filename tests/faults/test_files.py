"""The inventory file in trouble: a read-only volume, a corrupt or truncated file, a file from a newer regdb,
a full disk. Each ends in one clean line and exit 1, with no half-made file left and nothing deleted from the
registry by a removal that could not record what it did.

Read-only and full file systems are real ones: small tmpfs mounts (the suite runs as root, like CI; root
ignores permission bits, so ``chmod 0555`` would prove nothing).
"""

from __future__ import annotations

import errno
import os
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from tests.rig.cli import error_line, run
from tests.rig.mount import Mount
from tests.rig.pusher import Pusher
from tests.rig.state import integrity, snapshot, syncs


@pytest.fixture
def mount(tmp_path):
    mounted: list[Mount] = []

    def make(name: str, options: str) -> Mount:
        mounted.append(Mount(tmp_path / name, options))
        return mounted[-1]

    yield make
    for each in reversed(mounted):
        each.unmount()


@pytest.fixture(scope="module")
def origin(module_registry):
    p = Pusher(module_registry.url)
    for minor in range(6):
        p.push_image("app", f"1.{minor}")
    return module_registry


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


# --- read-only ---------------------------------------------------------------------------------------------------


def test_a_new_inventory_on_a_read_only_volume_is_one_line_and_no_file(origin, mount):
    volume = mount("ro", "ro,size=1m")
    db = volume.path / "inv.db"
    result = run("-reg", origin.url, "--db", db, "sync")
    assert error_line(result) == f"cannot write inventory {db}: unable to open database file"
    assert listing(volume.path) == []


def test_an_inventory_on_a_read_only_volume_can_be_read_but_not_written(origin, mount, tmp_path):
    volume = mount("vol", "size=4m")
    db = volume.path / "inv.db"
    assert run("-reg", origin.url, "--db", db, "sync").exit_code == 0
    before, files = snapshot(db), listing(volume.path)
    volume.remount("ro")  # a BI container's read-only mount of the inventory

    result = run("--db", db, "sql", "SELECT count(*) AS n FROM images", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["n", "6"]
    # SQLite's own reason follows ("attempt to write a readonly database" or "unable to open database file",
    # depending on whether it gets as far as opening the file for writing).
    result = run("-reg", origin.url, "--db", db, "sync")
    assert error_line(result).startswith(f"cannot write inventory {db}: ")
    result = run("-reg", origin.url, "--db", db, "remove-tags", "--yes", "-r", "app", "-t", "1.0")
    assert error_line(result).startswith(f"cannot write inventory {db}: ")
    assert Pusher(origin.url).tags("app") == [f"1.{minor}" for minor in range(6)]  # nothing deleted
    assert snapshot(db) == before and listing(volume.path) == files


# --- corrupt and foreign files -------------------------------------------------------------------------------


def scribble_over_pages(db: Path) -> None:
    """Overwrite the middle of every page after the first two: what a bad disk or a bad copy leaves."""
    data = bytearray(db.read_bytes())
    for offset in range(2 * 4096, len(data), 4096):
        data[offset + 8 : offset + 120] = b"\xa5" * 112  # from the cell pointers on: whatever the layout
    db.write_bytes(bytes(data))


def cut_in_half(db: Path) -> None:
    """An interrupted copy: the second half of the file is missing."""
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage", [scribble_over_pages, cut_in_half], ids=["scribbled", "truncated"])
def test_a_corrupt_inventory_is_one_line_and_left_as_it_is(origin, tmp_path, damage):
    db = tmp_path / "inv.db"
    assert run("-reg", origin.url, "--db", db, "sync").exit_code == 0
    Pusher(origin.url).push_image("app", "2.0")  # the next sync has pages to write
    damage(db)
    damaged = db.read_bytes()

    result = run("-reg", origin.url, "--db", db, "sync")
    assert error_line(result) == f"inventory {db}: database disk image is malformed"
    result = run("-reg", origin.url, "--db", db, "remove-tags", "--yes", "-r", "app", "-t", "1.0")
    assert error_line(result) == f"inventory {db}: database disk image is malformed"
    assert "1.0" in Pusher(origin.url).tags("app")  # a removal that cannot record is not attempted
    assert db.read_bytes() == damaged  # never "repaired" behind the user's back
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0


@pytest.mark.parametrize("command", [
    pytest.param(["sync"], id="sync"),
    pytest.param(["sql", "SELECT 1"], id="sql"),
    pytest.param(["remove-tags", "-r", "app", "-t", "1.0"], id="remove-tags"),
])
def test_an_inventory_from_a_newer_regdb_is_refused_untouched(origin, tmp_path, command):
    db = tmp_path / "inv.db"
    assert run("-reg", origin.url, "--db", db, "sync").exit_code == 0
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_future'")
    before = db.read_bytes()
    result = run("-reg", origin.url, "--db", db, *command)
    assert error_line(result) == (
        f"inventory {db} was written by a newer regdb (schema revision 9999_future); upgrade regdb to use it"
    )
    assert db.read_bytes() == before
    assert "1.0" in Pusher(origin.url).tags("app")


# --- a full disk --------------------------------------------------------------------------------------------------


def fill(directory: Path, leave: int) -> None:
    """Fill the file system, then give back ``leave`` bytes."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb") as out:
        try:
            for _ in range(100_000):  # bounded: 6 GB at most, far more than any tmpfs here
                out.write(chunk)
                out.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC
    os.truncate(filler, max(filler.stat().st_size - leave, 0))


def test_a_new_inventory_on_a_full_disk_leaves_no_file(origin, mount):
    disk = mount("tiny", "size=64k")  # too small for the schema itself
    db = disk.path / "inv.db"
    result = run("-reg", origin.url, "--db", db, "sync")
    assert error_line(result) == f"inventory {db}: database or disk is full"
    assert listing(disk.path) == []


def test_a_sync_that_fills_the_disk_keeps_the_old_snapshot(origin, mount):
    disk = mount("small", "size=2m")
    db = disk.path / "inv.db"
    assert run("-reg", origin.url, "--db", db, "sync").exit_code == 0
    before = snapshot(db)
    p = Pusher(origin.url)
    image = p.push_image("big", "0.0")
    for minor in range(1, 120):  # new rows in several tables: far more WAL pages than 8 KiB holds
        p.tag("big", f"0.{minor}", image.digest)
    fill(disk.path, leave=8 * 1024)
    result = run("-reg", origin.url, "--db", db, "sync")
    assert error_line(result) == f"inventory {db}: database or disk is full"
    (disk.path / "filler").unlink()
    assert snapshot(db) == before
    assert integrity(db) == "ok"
    assert [status for status, _ in syncs(db)] in (["ok"], ["ok", "failed"])
    # With room again, the next sync completes.
    result = run("-reg", origin.url, "--db", db, "sync")
    assert result.exit_code == 0, result.output
    assert len(snapshot(db)["images"]) == len(before["images"]) + 120


def test_an_existing_empty_file_is_never_removed(origin, mount):
    # The clean-up of a half-made inventory only ever removes a file regdb itself created in that run.
    disk = mount("tiny", "size=64k")
    db = disk.path / "mine.db"
    db.touch()
    result = run("-reg", origin.url, "--db", db, "sync")
    assert error_line(result) == f"inventory {db}: database or disk is full"
    assert listing(disk.path) == ["mine.db"]
