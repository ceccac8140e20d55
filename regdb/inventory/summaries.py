"""Summary tables behind the BI views: per-repository, per-manifest and per-blob figures kept precomputed.

On a million-tag inventory the views ``repo_stats``, ``digest_usage`` and ``blob_usage`` computed on the fly
take seconds before their first row (every repository's distinct blobs, then how many repositories share
each), which no BI tool waits for (Datasette's limit is one second). So their figures are kept in tables, and
the views read them (regdb/inventory/views.py):

- ``summary_repo_blobs``: every blob a repository's manifests keep in the registry's storage (the manifests
  themselves, configs, layers), once per repository, with its size;
- ``summary_blobs``: per registry and blob, how many repositories hold it (``summary_repo_blobs`` counted);
- ``summary_repos``: per repository, tags, manifests, total bytes and the bytes no other repository holds;
- ``summary_digests``: per registry and manifest, the repositories holding it and the tags on it;
- ``summary_blob_usage``: per registry and config/layer blob, the manifests using it and their repositories.

Every writer of ``tags`` or ``repo_digests`` (sync, removal, untag, the live listener) calls
:func:`refresh_summaries` at the end of its transaction with the repositories it touched, so a reader never
sees a summary disagree with the rows it summarises. Why a function and not triggers: docs/data-source.md,
"How the views stay fast".

The SQL is portable (SQLite and PostgreSQL). Migration 0008 fills the tables of an existing inventory with a
frozen copy of the same statements, scoped to every repository.
"""

from __future__ import annotations

from typing import Iterable

from sqlalchemy import Connection, bindparam, text

# Names per IN list: SQLite's default limit on bound parameters is 32,766 (999 before 3.32); stay well under.
BATCH = 500

# Repositories refreshed at once from which the planner's statistics are refreshed too (ANALYZE: about 1.5 s on
# the bench's million tags, against the minutes such a sync takes).
ANALYZE_AFTER = 1_000

# Scratch tables of one refresh, private to the connection (TEMP) and emptied before and after use.
# On PostgreSQL digests carry the "C" collation (regdb/inventory/models.py): the scratch copy must too, or comparing the two
# has no collation to use.
_SCRATCH = (
    "CREATE TEMP TABLE IF NOT EXISTS regdb_scope_repos (repo_id INTEGER PRIMARY KEY)",
    "CREATE TEMP TABLE IF NOT EXISTS regdb_scope_blobs (blob_digest VARCHAR{collate} PRIMARY KEY, old_repos BIGINT)",
    "CREATE TEMP TABLE IF NOT EXISTS regdb_scope_digests (digest_id INTEGER PRIMARY KEY)",
)
_CLEAR = ("DELETE FROM regdb_scope_repos", "DELETE FROM regdb_scope_blobs", "DELETE FROM regdb_scope_digests")

# Repositories of the registry marked dirty (the trigger of migration 0008), not yet summarised.
_DIRTY = """
INSERT INTO regdb_scope_repos (repo_id)
SELECT summary_dirty.repo_id FROM summary_dirty
JOIN repos ON repos.id = summary_dirty.repo_id
WHERE repos.registry_id = :registry_id
"""

# Repositories of the registry with no summary yet (an empty one: no tag or manifest row marked it).
_UNSUMMARISED = """
INSERT INTO regdb_scope_repos (repo_id)
SELECT repos.id FROM repos
WHERE repos.registry_id = :registry_id
  AND NOT EXISTS (SELECT 1 FROM summary_repos WHERE summary_repos.repo_id = repos.id)
  AND repos.id NOT IN (SELECT repo_id FROM regdb_scope_repos)
"""

# Repositories of the registry whose summary rows outlived them (deleted by a sync or a removal): in scope too,
# so their blobs are counted out.
_ORPHANS = """
INSERT INTO regdb_scope_repos (repo_id)
SELECT summary_repos.repo_id FROM summary_repos
WHERE summary_repos.registry_id = :registry_id
  AND NOT EXISTS (SELECT 1 FROM repos WHERE repos.id = summary_repos.repo_id)
"""

# What the scope's repositories hold now: the manifests themselves (a manifest is a blob in the store), their
# configs and layers. The same rule as repo_stats always had (migration 0002).
_HELD_NOW = """
SELECT repo_digests.repo_id AS repo_id, digests.digest AS blob_digest, digests.size AS size
FROM repo_digests
JOIN digests ON digests.id = repo_digests.digest_id
WHERE repo_digests.repo_id IN (SELECT repo_id FROM regdb_scope_repos)
UNION ALL
SELECT repo_digests.repo_id AS repo_id, digest_blobs.blob_digest AS blob_digest, digest_blobs.size AS size
FROM repo_digests
JOIN digest_blobs ON digest_blobs.digest_id = repo_digests.digest_id
WHERE repo_digests.repo_id IN (SELECT repo_id FROM regdb_scope_repos)
"""

# Blobs whose repository count may change: those the scope held before (the summary) or holds now, with the
# count they had.
_SCOPE_BLOBS = f"""
INSERT INTO regdb_scope_blobs (blob_digest, old_repos)
SELECT touched.blob_digest, summary_blobs.repos
FROM (
    SELECT summary_repo_blobs.blob_digest AS blob_digest FROM summary_repo_blobs
    WHERE summary_repo_blobs.repo_id IN (SELECT repo_id FROM regdb_scope_repos)
    UNION
    SELECT held.blob_digest AS blob_digest FROM ({_HELD_NOW}) AS held
) AS touched
LEFT JOIN summary_blobs ON summary_blobs.registry_id = :registry_id
                       AND summary_blobs.blob_digest = touched.blob_digest
"""

_REPO_BLOBS = (
    "DELETE FROM summary_repo_blobs WHERE repo_id IN (SELECT repo_id FROM regdb_scope_repos)",
    f"""
INSERT INTO summary_repo_blobs (repo_id, registry_id, blob_digest, size)
SELECT held.repo_id, repos.registry_id, held.blob_digest, MAX(held.size)
FROM ({_HELD_NOW}) AS held
JOIN repos ON repos.id = held.repo_id
GROUP BY held.repo_id, repos.registry_id, held.blob_digest
""",
)

_BLOBS = (
    """
DELETE FROM summary_blobs
WHERE registry_id = :registry_id AND blob_digest IN (SELECT blob_digest FROM regdb_scope_blobs)
""",
    """
INSERT INTO summary_blobs (registry_id, blob_digest, repos)
SELECT registry_id, blob_digest, COUNT(*)
FROM summary_repo_blobs
WHERE registry_id = :registry_id AND blob_digest IN (SELECT blob_digest FROM regdb_scope_blobs)
GROUP BY registry_id, blob_digest
""",
)

# A repository's unique_bytes changes when one of its blobs goes from one holder to several or back: those
# holders join the scope of the per-repository figures.
_FLIPPED_HOLDERS = """
INSERT INTO regdb_scope_repos (repo_id)
SELECT DISTINCT summary_repo_blobs.repo_id
FROM regdb_scope_blobs
LEFT JOIN summary_blobs ON summary_blobs.registry_id = :registry_id
                       AND summary_blobs.blob_digest = regdb_scope_blobs.blob_digest
JOIN summary_repo_blobs ON summary_repo_blobs.registry_id = :registry_id
                       AND summary_repo_blobs.blob_digest = regdb_scope_blobs.blob_digest
WHERE (COALESCE(regdb_scope_blobs.old_repos, 0) = 1) <> (COALESCE(summary_blobs.repos, 0) = 1)
  AND summary_repo_blobs.repo_id NOT IN (SELECT repo_id FROM regdb_scope_repos)
"""

_REPOS = (
    "DELETE FROM summary_repos WHERE repo_id IN (SELECT repo_id FROM regdb_scope_repos)",
    """
INSERT INTO summary_repos (repo_id, registry_id, tags, digests, total_bytes, unique_bytes)
SELECT repos.id, repos.registry_id,
       (SELECT COUNT(*) FROM tags WHERE tags.repo_id = repos.id),
       (SELECT COUNT(*) FROM repo_digests WHERE repo_digests.repo_id = repos.id),
       COALESCE((SELECT SUM(summary_repo_blobs.size) FROM summary_repo_blobs
                 WHERE summary_repo_blobs.repo_id = repos.id), 0),
       COALESCE((SELECT SUM(summary_repo_blobs.size) FROM summary_repo_blobs
                 JOIN summary_blobs ON summary_blobs.registry_id = summary_repo_blobs.registry_id
                                   AND summary_blobs.blob_digest = summary_repo_blobs.blob_digest
                 WHERE summary_repo_blobs.repo_id = repos.id AND summary_blobs.repos = 1), 0)
FROM repos
WHERE repos.id IN (SELECT repo_id FROM regdb_scope_repos)
""",
)

# Manifests the scope held before or holds now: every manifest digest is among the scope's blobs.
_DIGESTS = (
    """
INSERT INTO regdb_scope_digests (digest_id)
SELECT digests.id FROM regdb_scope_blobs JOIN digests ON digests.digest = regdb_scope_blobs.blob_digest
""",
    """
DELETE FROM summary_digests
WHERE registry_id = :registry_id AND digest_id IN (SELECT digest_id FROM regdb_scope_digests)
""",
    """
INSERT INTO summary_digests (registry_id, digest_id, repos, tags)
SELECT repos.registry_id, repo_digests.digest_id, COUNT(DISTINCT repo_digests.repo_id), COUNT(tags.id)
FROM repo_digests
JOIN repos ON repos.id = repo_digests.repo_id
LEFT JOIN tags ON tags.repo_id = repo_digests.repo_id AND tags.digest_id = repo_digests.digest_id
WHERE repos.registry_id = :registry_id
  AND repo_digests.digest_id IN (SELECT digest_id FROM regdb_scope_digests)
GROUP BY repos.registry_id, repo_digests.digest_id
""",
)

_BLOB_USAGE = (
    """
DELETE FROM summary_blob_usage
WHERE registry_id = :registry_id AND blob_digest IN (SELECT blob_digest FROM regdb_scope_blobs)
""",
    """
INSERT INTO summary_blob_usage (registry_id, blob_digest, size, manifests, repos)
SELECT repos.registry_id, digest_blobs.blob_digest, MAX(digest_blobs.size),
       COUNT(DISTINCT digest_blobs.digest_id), COUNT(DISTINCT repo_digests.repo_id)
FROM digest_blobs
JOIN repo_digests ON repo_digests.digest_id = digest_blobs.digest_id
JOIN repos ON repos.id = repo_digests.repo_id
WHERE repos.registry_id = :registry_id
  AND digest_blobs.blob_digest IN (SELECT blob_digest FROM regdb_scope_blobs)
GROUP BY repos.registry_id, digest_blobs.blob_digest
""",
)


# The share of a registry's repositories changed at once from which its summaries are recomputed whole.
WHOLE_REGISTRY_SHARE = 0.5

_REGISTRY_HELD = """
SELECT repo_digests.repo_id AS repo_id, digests.digest AS blob_digest, digests.size AS size
FROM repo_digests
JOIN repos ON repos.id = repo_digests.repo_id
JOIN digests ON digests.id = repo_digests.digest_id
WHERE repos.registry_id = :registry_id
UNION ALL
SELECT repo_digests.repo_id AS repo_id, digest_blobs.blob_digest AS blob_digest, digest_blobs.size AS size
FROM repo_digests
JOIN repos ON repos.id = repo_digests.repo_id
JOIN digest_blobs ON digest_blobs.digest_id = repo_digests.digest_id
WHERE repos.registry_id = :registry_id
"""

# The same rules over every repository of the registry (orphans included, through the deletes).
_WHOLE_REGISTRY = (
    "DELETE FROM summary_repo_blobs WHERE registry_id = :registry_id",
    "DELETE FROM summary_blobs WHERE registry_id = :registry_id",
    "DELETE FROM summary_repos WHERE registry_id = :registry_id "
    "OR repo_id IN (SELECT repo_id FROM regdb_scope_repos)",
    "DELETE FROM summary_digests WHERE registry_id = :registry_id",
    "DELETE FROM summary_blob_usage WHERE registry_id = :registry_id",
    f"""
INSERT INTO summary_repo_blobs (repo_id, registry_id, blob_digest, size)
SELECT held.repo_id, :registry_id, held.blob_digest, MAX(held.size)
FROM ({_REGISTRY_HELD}) AS held
GROUP BY held.repo_id, held.blob_digest
""",
    """
INSERT INTO summary_blobs (registry_id, blob_digest, repos)
SELECT registry_id, blob_digest, COUNT(*) FROM summary_repo_blobs WHERE registry_id = :registry_id
GROUP BY registry_id, blob_digest
""",
    """
INSERT INTO summary_repos (repo_id, registry_id, tags, digests, total_bytes, unique_bytes)
SELECT repos.id, repos.registry_id,
       (SELECT COUNT(*) FROM tags WHERE tags.repo_id = repos.id),
       (SELECT COUNT(*) FROM repo_digests WHERE repo_digests.repo_id = repos.id),
       COALESCE((SELECT SUM(summary_repo_blobs.size) FROM summary_repo_blobs
                 WHERE summary_repo_blobs.repo_id = repos.id), 0),
       COALESCE((SELECT SUM(summary_repo_blobs.size) FROM summary_repo_blobs
                 JOIN summary_blobs ON summary_blobs.registry_id = summary_repo_blobs.registry_id
                                   AND summary_blobs.blob_digest = summary_repo_blobs.blob_digest
                 WHERE summary_repo_blobs.repo_id = repos.id AND summary_blobs.repos = 1), 0)
FROM repos
WHERE repos.registry_id = :registry_id
""",
    """
INSERT INTO summary_digests (registry_id, digest_id, repos, tags)
SELECT repos.registry_id, repo_digests.digest_id, COUNT(DISTINCT repo_digests.repo_id), COUNT(tags.id)
FROM repo_digests
JOIN repos ON repos.id = repo_digests.repo_id
LEFT JOIN tags ON tags.repo_id = repo_digests.repo_id AND tags.digest_id = repo_digests.digest_id
WHERE repos.registry_id = :registry_id
GROUP BY repos.registry_id, repo_digests.digest_id
""",
    """
INSERT INTO summary_blob_usage (registry_id, blob_digest, size, manifests, repos)
SELECT repos.registry_id, digest_blobs.blob_digest, MAX(digest_blobs.size),
       COUNT(DISTINCT digest_blobs.digest_id), COUNT(DISTINCT repo_digests.repo_id)
FROM digest_blobs
JOIN repo_digests ON repo_digests.digest_id = digest_blobs.digest_id
JOIN repos ON repos.id = repo_digests.repo_id
WHERE repos.registry_id = :registry_id
GROUP BY repos.registry_id, digest_blobs.blob_digest
""",
)


def refresh_summaries(conn: Connection, registry_id: int, repos: Iterable[str] | None = None) -> None:
    """Make the registry's summaries equal to the rows they summarise, inside the caller's open transaction.

    Call it after writing ``tags`` or ``repo_digests``, before committing. The repositories recomputed are those
    the triggers of migration 0008 marked dirty (every insert, update or delete of their tags or manifests,
    whoever made it), those whose summary outlived them, and the ``repos`` named (by name; to force them). Rows
    of other repositories that the change affects (one sharing a blob whose holders went from one to several)
    are recomputed too. Nothing changed, nothing to do: a re-sync that finds the registry as it was costs two
    small queries."""
    collate = ' COLLATE "C"' if conn.dialect.name == "postgresql" else ""
    for statement in _SCRATCH:
        conn.exec_driver_sql(statement.format(collate=collate))
    for statement in _CLEAR:
        conn.exec_driver_sql(statement)
    params = {"registry_id": registry_id}
    conn.execute(text(_DIRTY), params)
    if repos is not None:
        names = sorted(set(repos))
        pick = text("INSERT INTO regdb_scope_repos (repo_id) SELECT id FROM repos "
                    "WHERE registry_id = :registry_id AND name IN :names "
                    "AND id NOT IN (SELECT repo_id FROM regdb_scope_repos)").bindparams(
                        bindparam("names", expanding=True))
        for start in range(0, len(names), BATCH):
            conn.execute(pick, {**params, "names": names[start:start + BATCH]})
    conn.execute(text(_UNSUMMARISED), params)
    conn.execute(text(_ORPHANS), params)
    scope = conn.execute(text("SELECT COUNT(*) FROM regdb_scope_repos")).scalar()
    if scope == 0:
        return
    registry_repos = conn.execute(text("SELECT COUNT(*) FROM repos WHERE registry_id = :registry_id"), params).scalar()
    if scope >= WHOLE_REGISTRY_SHARE * registry_repos:
        # Most of the registry changed (a first sync): recomputing all of it at once is several times faster
        # than following each blob of so many repositories.
        for statement in _WHOLE_REGISTRY:
            conn.execute(text(statement), params)
    else:
        for statement in (_SCOPE_BLOBS, *_REPO_BLOBS, *_BLOBS, _FLIPPED_HOLDERS, *_REPOS, *_DIGESTS, *_BLOB_USAGE):
            conn.execute(text(statement), params)
    conn.exec_driver_sql("DELETE FROM summary_dirty WHERE repo_id IN (SELECT repo_id FROM regdb_scope_repos)")
    # Marks of repositories deleted before they were ever summarised have nothing left to count out.
    conn.exec_driver_sql("DELETE FROM summary_dirty WHERE NOT EXISTS "
                         "(SELECT 1 FROM repos WHERE repos.id = summary_dirty.repo_id)")
    if scope >= ANALYZE_AFTER:
        # A large change (a first sync): the planner's statistics would describe another inventory, and
        # without them SQLite reads the age and signature queries by scanning every tag (migration 0008).
        conn.exec_driver_sql("ANALYZE")
    for statement in _CLEAR:
        conn.exec_driver_sql(statement)


# Registries with repositories marked dirty: live ones through repos, deleted ones through their summary row.
_DIRTY_REGISTRIES = """
SELECT registry_id FROM repos WHERE id IN (SELECT repo_id FROM summary_dirty)
UNION
SELECT registry_id FROM summary_repos WHERE repo_id IN (SELECT repo_id FROM summary_dirty)
"""


def refresh_dirty(conn: Connection) -> None:
    """``refresh_summaries`` for every registry the open transaction marked dirty; nothing marked, one small
    query. ``regdb.inventory.db.write_transaction`` calls it before every commit."""
    for registry_id in conn.execute(text(_DIRTY_REGISTRIES)).scalars().all():
        refresh_summaries(conn, registry_id)
