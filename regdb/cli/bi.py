"""The inventory as a BI source (issue 18): ``regdb datasette-metadata`` and ``regdb report``.

Registered from the bottom of regdb/cli/app.py. Both read the inventory as it is (read-only): no registry, no sync.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from regdb.cli.core import Settings, main


# Tags up to which the images page carries facets. Each facet is one GROUP BY over every tag: about a second per
# million tags on the bench machine (bench/bench.py), against Datasette's 200 ms facet limit, so past this many
# they would only add their time-outs to every page load (about 0.8 s on the bench's million). A user facets a
# large inventory on demand (?_facet=registry), or with filters that narrow it first.
FACETS_UP_TO_TAGS = 100_000
IMAGES_FACETS = ["registry", "architecture", "os", "media_type"]


def datasette_metadata(database: str, tags: int | None = None) -> dict:
    """Datasette's metadata for an inventory served under the name ``database``: a title, a description of every
    table, view and column (the meanings ``regdb schema`` prints), the documented example queries as canned
    queries, and facets for ``images`` unless the inventory holds more than FACETS_UP_TO_TAGS ``tags``."""
    from regdb.inventory.examples import examples_for
    from regdb.inventory.rawsql import describe_schema

    tables: dict[str, dict[str, Any]] = {}  # Datasette metadata: a description, columns, facets per table
    for each in describe_schema():
        tables[each.name] = {
            "description": f"{each.kind}: {each.doc}" if each.doc else each.kind,
            "columns": {column.column: column.meaning for column in each.columns},
        }
    # Facets a BI user filters tags by first, with few values each (a facet by repository would show 30 of
    # thousands); each is one GROUP BY over every tag, so only on an inventory small enough for them.
    if tags is None or tags <= FACETS_UP_TO_TAGS:
        tables["images"]["facets"] = list(IMAGES_FACETS)
    else:
        tables["images"]["description"] += (
            f" No facets by default: {tags:,} tags are more than a facet counts within Datasette's limit; add "
            f"?_facet=registry (or architecture, os, media_type) to a filtered page.")
    queries = {
        example.name: {"title": example.title, "sql": example.sql.strip()}
        for example in examples_for("sqlite")
    }
    return {
        "title": "regdb inventory",
        "description": "A Docker / OCI registry mirrored by regdb. The views are the stable interface: "
                       "their columns keep their names and meanings across regdb versions.",
        "databases": {database: {"tables": tables, "queries": queries}},
    }


@main.command("datasette-metadata")
@click.option("-o", "--output", "output", default="metadata.json", show_default=True, metavar="FILE",
              help="Where to write the metadata; '-' for standard output.")
@click.option("--database", metavar="NAME",
              help="The database's name in Datasette [default: the inventory file's name without .db].")
@click.pass_obj
def datasette_metadata_command(settings: Settings, output, database):
    """Write a Datasette metadata file for the inventory: what each table, view and column means, the
    documented example queries as canned queries, facets for images (up to 100,000 tags).

    \b
      regdb --db inventory.db datasette-metadata -o metadata.json
      datasette inventory.db --metadata metadata.json
    """
    target = settings.db_target()
    if database is None:
        database = Path(target).stem if "://" not in target else "inventory"
    tags = None
    if "://" in target or Path(target).exists():
        from sqlalchemy import text as sql

        with settings.inventory(readonly=True).engine.connect() as conn:
            tags = conn.execute(sql("SELECT COUNT(*) FROM tags")).scalar()
    text = json.dumps(datasette_metadata(database, tags), indent=2) + "\n"
    if output == "-":
        click.echo(text, nl=False)
        return
    _write_whole(Path(output), text)
    click.echo(f"wrote {output} (database {database}): datasette {settings.db_target()} --metadata {output}",
               err=True)


@main.command("report")
@click.option("--html", "html_file", metavar="FILE", help="Write the report as one self-contained HTML page.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="What to print: a short text summary, or every figure of the page as JSON.")
@click.pass_obj
def report_command(settings: Settings, html_file, fmt):
    """Where the registry's space goes and what a cleanup would free: space per repository (held alone or
    shared), reclaimable bytes, tags by age, untagged manifests, the largest images, growth over time.

    Reads the inventory as it is (--db, or the file named after --registry); never contacts the registry.

    \b
      regdb --db inventory.db report --html storage.html
      regdb --db inventory.db report --format json > storage.json
    """
    from regdb.inventory import report

    inventory = settings.inventory(readonly=True)
    with inventory.engine.connect() as conn:
        figures = report.collect(conn)
    if html_file:
        _write_whole(Path(html_file), report.to_html(figures))
    if fmt == "json":
        import json

        from regdb.cli.output import document

        click.echo(document(json.loads(report.to_json(figures))), nl=False)  # the one JSON layout, ISO times
        return
    from regdb.cli.output import plural

    click.echo(f"{plural(figures.repos, 'repository')}, {plural(figures.tags, 'tag')}, "
               f"{report.human_bytes(figures.total_bytes)} "
               f"({report.human_bytes(figures.unique_bytes)} held by one repository alone)")
    click.echo(f"reclaimable now: {report.human_bytes(figures.reclaimable_bytes)} in "
               f"{plural(figures.reclaimable_blobs, 'blob')}; untagged manifests: {figures.untagged_manifests} "
               f"({report.human_bytes(figures.untagged_bytes)})")
    if html_file:
        click.echo(f"wrote {html_file}")


def _write_whole(path: Path, text: str) -> None:
    """The file appears whole or not at all: written beside it, then renamed over it."""
    if not path.parent.exists():
        raise click.ClickException(f"cannot write {path}: directory {path.parent} does not exist")
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise click.ClickException(f"cannot write {path}: {error.strerror}") from None
