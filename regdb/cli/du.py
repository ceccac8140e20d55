"""``regdb du``: the space each repository takes, from the inventory alone (never the registry, unless --refresh).

Three figures per repository, each blob (manifest, config, layer) counted once within it:

* ``total_bytes``: every blob its manifests use (``repo_stats.total_bytes``);
* ``unique_bytes``: the part no other repository of the registry uses (``repo_stats.unique_bytes``): what removing
  the repository adds to what a garbage collection frees;
* ``reclaimable_bytes``: what a garbage collection would free for this repository if it were removed now:
  ``unique_bytes`` plus what regdb already deleted there and no collection has freed yet (the ``reclaimable``
  view's blobs released by deletions in this repository).

The query is one read-only statement over the stable views (``DU_SQL``), so ``regdb sql`` can run it too.
"""

from __future__ import annotations

import click

from regdb.cli.core import GreedyOption, Settings, echo_listing, format_option, human_bytes, main, warn_missing_repos

DU_COLUMNS = ("repo", "tags", "digests", "total_bytes", "unique_bytes", "reclaimable_bytes")

# :registry is the registry's host[:port], as the views name it.
DU_SQL = """
WITH released AS (
    SELECT DISTINCT deletions.repo AS repo, reclaimable.blob_digest AS blob_digest, reclaimable.size AS size
    FROM reclaimable
    JOIN registries ON registries.name = reclaimable.registry
    JOIN deletions ON deletions.registry = registries.url AND deletions.outcome = 'deleted'
    JOIN digests ON digests.digest = deletions.digest
    WHERE reclaimable.registry = :registry
      AND (reclaimable.blob_digest = digests.digest
           OR EXISTS (SELECT 1 FROM digest_blobs
                      WHERE digest_blobs.digest_id = digests.id
                        AND digest_blobs.blob_digest = reclaimable.blob_digest))
),
pending AS (
    SELECT repo, SUM(size) AS bytes FROM released GROUP BY repo
)
SELECT repo_stats.repo AS repo, repo_stats.tags AS tags, repo_stats.digests AS digests,
       repo_stats.total_bytes AS total_bytes, repo_stats.unique_bytes AS unique_bytes,
       CAST(repo_stats.unique_bytes + COALESCE(pending.bytes, 0) AS BIGINT) AS reclaimable_bytes
FROM repo_stats
LEFT JOIN pending ON pending.repo = repo_stats.repo
WHERE repo_stats.registry = :registry
ORDER BY reclaimable_bytes DESC, total_bytes DESC, repo
"""


def space_by_repo(inventory, registry_url: str, repos=()) -> tuple[list[dict], list[str]]:
    """(rows of DU_COLUMNS, most reclaimable first; the names in ``repos`` the inventory does not hold)."""
    from regdb.registry.reference import registry_name

    with inventory.sql(DU_SQL, {"registry": registry_name(registry_url)}) as result:
        rows = [dict(zip(DU_COLUMNS, values, strict=True)) for values in result]
    if not repos:
        return rows, []
    wanted = set(repos)
    known = {row["repo"] for row in rows}
    return [row for row in rows if row["repo"] in wanted], [name for name in repos if name not in known]


@main.command("du")
@click.option("-r", "--repo", "repos", cls=GreedyOption, multiple=True, metavar="REPO...",
              help="Only these repositories, by name or glob ('team/*') [default: every repository].")
@format_option
@click.pass_obj
def du(settings: Settings, repos, fmt):
    """Print the space each repository takes: total, unique to it, and reclaimable if it were removed.

    Sorted by reclaimable bytes, largest first. total_bytes counts every blob its manifests use (manifests,
    configs, layers, each once); unique_bytes the part no other repository uses; reclaimable_bytes what a
    garbage collection would free once the repository is removed: unique_bytes plus what regdb already deleted
    there and no collection has freed yet. text and table show sizes in KiB/MiB/GiB; the other formats in bytes.

    \b
      regdb -reg registry.example.com du
      regdb -reg registry.example.com du -r app tool --format json
    """
    inventory = settings.synced_inventory()
    from regdb.cli.globs import expand_repos

    rows, missing = space_by_repo(inventory, settings.registry_url(),
                                  expand_repos(inventory, settings.registry_url(), repos))
    warn_missing_repos(missing)
    if fmt in ("text", "table") and not settings.count:
        rows = [{**row, **{name: _short_bytes(row[name]) for name in DU_COLUMNS[3:]}} for row in rows]
    echo_listing(settings, rows, DU_COLUMNS, fmt)


def _short_bytes(count: int) -> str:
    """``human_bytes`` without the exact count in parentheses: a column, not a sentence."""
    return human_bytes(count or 0).split(" (", 1)[0]
