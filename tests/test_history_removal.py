"""regdb's own removals and untags end the history of the tags they take away, in the transaction that
journals them (issue 15: tag_history's source 'removal')."""

from __future__ import annotations

import sqlite3

from click.testing import CliRunner

from regdb.cli.app import main


def regdb(url, db, *args):
    result = CliRunner().invoke(main, ["-reg", url, "--db", str(db), *args])
    assert result.exit_code == 0, result.output
    return result


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
    regdb(fresh_registry.url, db, "sync")

    regdb(fresh_registry.url, db, "remove-tags", "-r", "app", "-t", "1.0", "stable", "--yes")
    regdb(fresh_registry.url, db, "untag", "-r", "app", "-t", "latest", "--yes")

    assert history(db) == [
        ("app", "1.0", old.digest, 1, "sync", "removal"),
        ("app", "2.0", kept.digest, 0, "sync", None),
        ("app", "latest", kept.digest, 1, "sync", "removal"),
        ("app", "stable", old.digest, 1, "sync", "removal"),
    ]
    assert p.tags("app") == ["2.0"]
    # A sync afterwards finds nothing to add: the history already says what the registry says.
    regdb(fresh_registry.url, db, "sync")
    assert len(history(db)) == 4
