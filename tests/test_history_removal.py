"""regdb's own removals and untags end the history of the tags they take away, in the transaction that
journals them (issue 15: tag_history's source 'removal')."""

from __future__ import annotations

import sqlite3

from tests.rig.cli import run


def history(db) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT repo, tag, digest, valid_to IS NOT NULL, source, ended_by FROM tag_history ORDER BY repo, tag, id"
        ).fetchall()


def test_a_removal_and_an_untag_end_their_tags_history(fresh_registry, fresh_pusher, tmp_path):
    p, db = fresh_pusher, tmp_path / "inv.db"
    old = p.push_image("app", "1.0")
    p.tag("app", "stable", old.digest)
    kept = p.push_image("app", "2.0")
    p.tag("app", "latest", kept.digest)
    run("-reg", fresh_registry.url, "--db", db, "sync", exit_code=0)

    run("-reg", fresh_registry.url, "--db", db, "remove-tags", "-r", "app", "-t", "1.0", "stable", "--yes", exit_code=0)
    run("-reg", fresh_registry.url, "--db", db, "untag", "-r", "app", "-t", "latest", "--yes", exit_code=0)

    assert history(db) == [
        ("app", "1.0", old.digest, 1, "sync", "removal"),
        ("app", "2.0", kept.digest, 0, "sync", None),
        ("app", "latest", kept.digest, 1, "sync", "removal"),
        ("app", "stable", old.digest, 1, "sync", "removal"),
    ]
    assert p.tags("app") == ["2.0"]
    # A sync afterwards finds nothing to add: the history already says what the registry says.
    run("-reg", fresh_registry.url, "--db", db, "sync", exit_code=0)
    assert len(history(db)) == 4
