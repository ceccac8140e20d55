"""The ``regdb`` command line, complete: the group (``regdb.cli.core``) with every command registered on it.

The listing, query, removal, sql and policy commands are here; the families with modules of their own
(``removal``: restore; ``live``: listen, history, changes, status; ``du``; ``bi``: datasette-metadata, report)
register themselves when imported at the bottom. A thin layer: parse options, call the library, render.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import click

from regdb.cli.core import (
    MEMORY,
    GreedyOption,
    Settings,
    as_usage_error,
    count_plan,
    echo_listing,
    format_option,
    human_bytes,
    main,
    omit_digest_tags_option,
    repo_option,
    run_sync,
    selector_options,
    warn_missing_repos,
)
from regdb.errors import RemovalIncomplete, RemovalInterrupted
from regdb.text import escape_controls

if TYPE_CHECKING:
    from regdb.selection.common import Selection


@main.command()
@click.argument("repos", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: one summary line; json: the result as one document (counts, times, what was missing).")
@click.pass_obj
def sync(settings: Settings, repos, fmt):
    """Mirror the registry into the inventory, as one snapshot.

    With REPO names, only those repositories are synced (for registries without a catalog, such as
    Docker Hub or GHCR). A re-sync only lists and resolves tags: manifests are fetched once, ever.

    \b
      regdb -reg registry.example.com sync
      regdb -reg ghcr.io -u me -p "$TOKEN" sync me/app me/tool
    """
    settings.reach_before_creating()
    run_sync(settings, settings.inventory(), list(repos), quiet="json" if fmt == "json" else False)


# --- listing and query commands (selectors) ------------------------------------------------------------------

# The columns of a query row in every format; the seed's text shows only "repo  digest".
QUERY_COLUMNS = ("repo", "digest", "tags", "media_type", "size")
QUERY_TEXT_COLUMNS = ("repo", "digest")


def listing_source(settings: Settings, repos, *, full: bool = False):
    """(what answers a read-only listing, the -r values with their globs matched): the sqlite3 reader of the
    inventory file (no SQLAlchemy to import), or the full inventory where a glob must be matched (or with
    ``full``: retention's queries)."""
    from regdb.cli.globs import expand_repos, is_glob

    repos = list(repos)
    if not full and not any(is_glob(name) for name in repos):
        return settings.reader(), repos
    inventory = settings.synced_inventory()
    return inventory, expand_repos(inventory, settings.registry_ref(), repos)


@main.command("list-repo-names")
@format_option
@click.pass_obj
def list_repo_names(settings: Settings, fmt):
    """List the repositories that have at least one tag, sorted.

    \b
      regdb -reg registry.example.com list-repo-names
      regdb -reg registry.example.com list-repo-names --format json
    """
    names = settings.reader().list_repos(settings.registry_ref())
    echo_listing(settings, [(name,) for name in names], ("repo",), fmt)


@main.command("list-tag-names")
@click.argument("repos", nargs=-1, metavar="[REPO]...")
@click.option("--reverse-sort", is_flag=True,
              help="Reverse each repository's tag order: the tags that are no version first (reverse name order), "
                   "then versions highest first. Version order, not push time.")
@click.option("--image-names", is_flag=True, help="Print <registry>/<repo>:<tag> image names.")
@omit_digest_tags_option
@format_option
@click.pass_obj
def list_tag_names(settings: Settings, repos, reverse_sort, image_names, omit_digest_tags, fmt):
    """List the tags of every repository, or of the REPOs named.

    Repositories by name; in each, tags in version order ('1.2' before '1.10'), then the tags that are no
    version ('latest') by name.

    \b
      regdb -reg registry.example.com list-tag-names
      regdb -reg registry.example.com list-tag-names app --reverse-sort
      regdb -reg registry.example.com list-tag-names app --image-names | xargs -n1 docker pull
    """
    ref = settings.registry_ref()
    inventory, repos = listing_source(settings, repos)
    rows = inventory.list_tags(ref, list(repos) or None, reverse=reverse_sort)
    warn_missing_repos(rows.missing_repos)
    if omit_digest_tags:
        rows = rows.without_digest_tags()
    if image_names:
        host = ref.name
        images = [(f"{host}/{row.repo}:{row.tag}", row.repo, row.tag, row.digest) for row in rows]
        echo_listing(settings, images, ("image", "repo", "tag", "digest"), fmt, text_columns=("image",))
    else:
        echo_listing(settings, rows, ("repo", "tag", "digest"), fmt, text_columns=("repo", "tag"))


@main.command("query-repos")
@repo_option
@format_option
@click.pass_obj
def query_repos(settings: Settings, repos, fmt):
    """List the digests the repositories' tags point at: one row per (repository, digest).

    A digest also present in a repository not named with -r is an error naming that repository, unless
    --no-raise-intersecting-repo (a global option), which leaves it out.

    \b
      regdb -reg registry.example.com query-repos -r app tool
      regdb -reg registry.example.com --no-raise-intersecting-repo query-repos -r app --format json
    """
    inventory, repos = listing_source(settings, repos)
    selection = inventory.query_repos(
        settings.registry_ref(), list(repos), raise_intersecting_repo=settings.raise_intersecting_repo,
    )
    warn_missing_repos(selection.missing_repos)
    echo_left_out(selection.skipped, fmt)
    echo_listing(settings, selection, QUERY_COLUMNS, fmt, text_columns=QUERY_TEXT_COLUMNS)


def echo_left_out(skipped, fmt: str) -> None:
    """What a query's rules left out, on stderr: a line each, or for json / ndjson one JSON line
    ``{"skipped": [...]}`` (stdout stays the list of rows docker-registry-util's users parse)."""
    import json

    if fmt in ("json", "ndjson"):
        if skipped:
            click.echo(json.dumps({"skipped": [item.as_dict() for item in skipped]}), err=True)
        return
    echo_skipped(skipped)


@main.command("query-tags")
@repo_option
@selector_options
@omit_digest_tags_option
@format_option
@click.pass_obj
def query_tags(settings: Settings, repos, tags, regex, exclude, exclude_regex, no_match_all_tags,
               raise_intersecting_tag, keep_latest, order_by, older_than, newer_than, untagged, not_pulled_for,
               keep_pulled_within, omit_digest_tags, fmt):
    """List the digests that the selected tags point at: one row per (repository, digest).

    -t takes exact tag names or version comparisons (==, <, >, <=, >= and a version, 'v' allowed;
    '1.2.3-alpine' compares as 1.2.3); -re takes Python regular expressions matched from the start of the tag.
    A digest is selected only if every tag of it in that repository is selected (--no-match-all-tags turns
    that off) and none is excluded with -x / -xre. Quote < and > for the shell.

    \b
      regdb -reg registry.example.com query-tags -r app -t '<1.4'
      regdb -reg registry.example.com query-tags -r app -t '<1.4' one -x 1.2.7
      regdb -reg registry.example.com query-tags -r app tool -re 'pr-\\d+' -xre '.*-keep$' --format json
    """
    from regdb.cli.globs import tag_selectors
    from regdb.selection.query import parse_query

    tags, regex, exclude, exclude_regex = tag_selectors(tags, regex, exclude, exclude_regex)
    # Bad selectors are reported before anything is synced or read.
    retention = as_usage_error(retention_of, keep_latest, order_by, older_than, newer_than, untagged,
                               not_pulled_for, keep_pulled_within)
    if retention is None:
        as_usage_error(parse_query, tags, regex, exclude, exclude_regex)
    inventory, repos = listing_source(settings, repos, full=retention is not None)
    query: Callable[..., Selection] = inventory.query_tags
    more = {}
    if retention is not None:
        query, more = inventory.query_retention, {"retention": retention}
    selection = as_usage_error(
        query, settings.registry_ref(), list(repos), tags, regex, exclude,
        exclude_regex, match_all_tags=not no_match_all_tags, raise_intersecting_tag=raise_intersecting_tag,
        raise_intersecting_repo=settings.raise_intersecting_repo, **more,
    )
    warn_missing_repos(selection.missing_repos)
    echo_left_out(selection.skipped, fmt)
    if omit_digest_tags:
        selection = selection.without_digest_tags()
    echo_listing(settings, selection, QUERY_COLUMNS, fmt, text_columns=QUERY_TEXT_COLUMNS)


# --- removal commands ----------------------------------------------------------------------------------------


def removal_options(func):
    options = [
        click.option("--dry-run", is_flag=True, help="Print the plan and stop: delete nothing."),
        click.option("--yes", "-y", is_flag=True,
                     help="Delete without asking; needed when stdin is not a terminal (a script, cron)."),
        click.option("--max-delete", type=click.IntRange(min=0), metavar="N",
                     help="Refuse, before deleting anything, a plan of more than N manifests (tags for untag)."),
        click.option("--no-refresh", is_flag=True,
                     help="Plan on the inventory as it is, without re-reading the repositories first."),
        click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
                     help="Output of the plan and of the result."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def whole_registry_options(func):
    """How a removal sees the repositories outside the selection (the cross-repository rule)."""
    options = [
        click.option("--max-inventory-age", metavar="AGE", default="24h", show_default=True,
                     help="Sync the whole registry first when its last complete sync is older (12h, 7d)."),
        click.option("--only-named-repos", is_flag=True,
                     help="A registry without _catalog: check only the repositories in the inventory for shared "
                          "digests (a risk: see docs/removal.md)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@main.command("remove-tags")
@repo_option
@selector_options
@removal_options
@whole_registry_options
@click.pass_obj
def remove_tags(settings: Settings, repos, tags, regex, exclude, exclude_regex, no_match_all_tags,
                raise_intersecting_tag, keep_latest, order_by, older_than, newer_than, untagged, not_pulled_for,
                keep_pulled_within, dry_run, yes, max_delete, no_refresh, fmt, max_inventory_age, only_named_repos):
    """Delete the digests that the selected tags point at (the selection of query-tags).

    First the selected repositories are re-read from the registry and the selection is made on that state
    (--no-refresh: on the inventory as it is). The plan lists every manifest to delete, with its tags and the
    bytes a garbage collection would then free; an index's now unreferenced children and cosign signatures
    (sha256-<hex>.sig/.att/.sbom) of a removed digest go with it. On a terminal regdb asks before deleting
    (--yes does not); from a script it refuses without --yes. Right before each repository's DELETEs, a digest
    whose tags changed is skipped and reported. Every DELETE is journaled; 'regdb restore RUN_ID' undoes a run.

    \b
      regdb -reg registry.example.com remove-tags -r app -t '<1.4' --dry-run
      regdb -reg registry.example.com remove-tags -r app -t '<1.4' one -x 1.2.1 --yes
      regdb -reg registry.example.com remove-tags -r app -re 'pr-' --format json
    """
    from regdb.cleanup.policy import RetentionQuery
    from regdb.cli.globs import tag_selectors

    tags, regex, exclude, exclude_regex = tag_selectors(tags, regex, exclude, exclude_regex)
    query = RetentionQuery(
        repos, tags, regex, exclude, exclude_regex, match_all_tags=not no_match_all_tags,
        raise_intersecting_tag=raise_intersecting_tag, raise_intersecting_repo=settings.raise_intersecting_repo,
        retention=retention_of(keep_latest, order_by, older_than, newer_than, untagged, not_pulled_for,
                               keep_pulled_within),
    )
    run_removal(settings, query, dry_run=dry_run, yes=yes, no_refresh=no_refresh, fmt=fmt, max_delete=max_delete,
                max_inventory_age=max_inventory_age, only_named_repos=only_named_repos)


@main.command("remove-repos")
@repo_option
@removal_options
@whole_registry_options
@click.pass_obj
def remove_repos(settings: Settings, repos, dry_run, yes, max_delete, no_refresh, fmt, max_inventory_age,
                 only_named_repos):
    """Delete every manifest of the repositories: tagged, untagged, index children and signatures.

    A digest also present in a repository not named fails the command (--no-raise-intersecting-repo leaves
    it, and what belongs to it, in place). The registry keeps listing an emptied repository in its catalog
    with no tags: the registry API cannot delete a repository itself. Otherwise as remove-tags.

    \b
      regdb -reg registry.example.com remove-repos -r old/app old/tool --dry-run
    """
    from regdb.cleanup.plan import RepoQuery

    query = RepoQuery(repos, raise_intersecting_repo=settings.raise_intersecting_repo)
    run_removal(settings, query, dry_run=dry_run, yes=yes, no_refresh=no_refresh, fmt=fmt, max_delete=max_delete,
                max_inventory_age=max_inventory_age, only_named_repos=only_named_repos)


PLAN_COLUMNS = ["repo", "digest", "tags", "media_type", "reason", "bytes"]


def settle_in_flight(inventory, client, *, dry_run: bool) -> None:
    from regdb.cli.removal import settle_in_flight as settle

    if not dry_run:
        settle(inventory, client)


def asks_for_confirmation(yes: bool) -> bool:
    """Whether to ask before deleting; without --yes and a terminal, exits 2 (see cli_removal)."""
    from regdb.cli.removal import confirm_or_refuse

    return confirm_or_refuse(yes)


def _plan_summary(plan) -> str:
    """The plan's last line: how many manifests in how many repositories, and what a garbage collection frees."""
    repos = len(plan.repos)
    return (f"{len(plan.rows)} manifest{'s' if len(plan.rows) != 1 else ''} in {repos} "
            f"repositor{'ies' if repos != 1 else 'y'}; a garbage collection would then free "
            f"{human_bytes(plan.bytes_freed)}")


def run_removal(settings: Settings, query, *, dry_run: bool, yes: bool, no_refresh: bool, fmt: str,
                max_delete: int | None = None, max_inventory_age: str = "24h",
                only_named_repos: bool = False) -> None:
    from regdb.cli.output import document
    from regdb.selection.retention import parse_duration

    max_age = as_usage_error(parse_duration, max_inventory_age)
    if no_refresh or settings.refresh:
        # --refresh already re-read the whole registry; --no-refresh plans on the inventory as it is.
        inventory, refresh = settings.synced_inventory(), False
    else:
        inventory, refresh = settings.inventory(), True
    client = settings.client()
    query = with_repos_expanded(settings, inventory, query)
    settle_in_flight(inventory, client, dry_run=dry_run)
    plan = inventory.plan_removal(client, query, refresh=refresh, jobs=settings.jobs, max_inventory_age=max_age,
                                  only_named_repos=only_named_repos, announce=lambda line: click.echo(line, err=True))
    for name in plan.missing_repos:
        click.echo(f"warning: repository {escape_controls(name)} not found in {plan.registry_name}", err=True)
    if count_plan(settings, plan.rows, dry_run, click.get_current_context().info_name):
        return
    if fmt != "json":
        echo_skipped(plan.skipped)
    if dry_run:
        if fmt == "json":
            click.echo(document(plan.as_dict()), nl=False)
        else:
            echo_plan(plan)
            if plan.rows:
                click.echo("dry run: nothing deleted")
        return
    if not plan.rows:
        if fmt == "json":
            echo_result(inventory.remove(client, plan), fmt)  # an empty result: same shape as any run's
        else:
            echo_plan(plan)
        return
    confirm = asks_for_confirmation(yes)
    if fmt == "text":
        echo_plan(plan)
    elif confirm:
        echo_plan(plan, err=True)  # the person must see what they confirm; stdout stays one JSON document
    confirm_and_remove(settings, inventory, client, plan, fmt=fmt, confirm=confirm, max_delete=max_delete)


def with_repos_expanded(settings: Settings, inventory, query):
    """The removal query with the globs of its -r values replaced by the repositories they match in the
    inventory (synced first if this registry never was: a glob needs names to match)."""
    import dataclasses

    from regdb.cli.globs import expand_repos, is_glob

    if not any(is_glob(name) for name in query.repos):
        return query
    if inventory.last_synced(settings.registry_url()) is None:
        run_sync(settings, inventory, None)
    return dataclasses.replace(query, repos=tuple(expand_repos(inventory, settings.registry_url(), query.repos)))


def confirm_and_remove(settings: Settings, inventory, client, plan, *, fmt: str, confirm: bool,
                       max_delete: int | None = None) -> None:
    """Ask (when regdb must), delete the plan, print the result; a partial failure prints it, then fails."""
    from regdb.cli.removal import interrupted
    from regdb.cleanup.execute import check_max_delete

    check_max_delete(plan, max_delete)  # before the question: a plan that will be refused is not asked about
    if confirm:
        from regdb.cli.output import plural

        click.confirm(f"Delete the {plural(len(plan.rows), 'manifest')} above from {plan.registry_name}?", abort=True,
                      err=True)
    try:
        result = inventory.remove(client, plan, jobs=settings.jobs, max_delete=max_delete)
    except RemovalInterrupted as error:
        echo_result(error.result, fmt)
        interrupted(error)
    except RemovalIncomplete as error:
        echo_result(error.result, fmt, left_out=plan.skipped)
        raise
    echo_result(result, fmt, left_out=plan.skipped)


def echo_skipped(skipped) -> None:
    """Each digest the rules left out, and why: one line each on stderr."""
    for item in skipped:
        click.echo(f"kept {item.repo}@{item.digest}: {item.why}", err=True)


def echo_plan(plan, *, err: bool = False) -> None:
    from regdb.cli import output

    if not plan.rows:
        click.echo("nothing to remove", err=err)
        return
    shown = [dict(row.as_dict(), reason=row.why) for row in plan.rows]
    for chunk in output.render(shown, PLAN_COLUMNS, "table"):
        click.echo(chunk, nl=False, err=err)
    click.echo(_plan_summary(plan), err=err)


def echo_result(result, fmt: str, *, left_out=()) -> None:
    echo_outcomes(
        result, fmt, "digest", left_out=left_out, summary=
        f"deleted {len(result.deleted)}, skipped {len(result.skipped)}, failed {len(result.failed)} "
        f"(run {result.run_id}); this run's deletions let a garbage collection free {human_bytes(result.bytes_freed)} "
        "(the reclaimable view and du count all that is still to free)",
    )


def echo_outcomes(result, fmt: str, what: str, summary: str, *, left_out=()) -> None:
    """A removal's or untag's result: one JSON document, or the rows that were not done and a summary line.

    ``left_out``: what the selection rules and the plan kept (``Plan.skipped``), in JSON as ``left_out``
    (``skipped`` there are the planned deletions skipped at the last check); text prints it with the plan."""
    from regdb.cli import output

    if fmt == "json":
        document = result.as_dict()
        if left_out:
            document["left_out"] = [item.as_dict() for item in left_out]
        click.echo(output.document(document), nl=False)
        return
    problems = [o.as_dict() for o in result.skipped + result.failed]
    if problems:
        for chunk in output.render(problems, ["outcome", "repo", what, "error"], "text"):
            click.echo(chunk, nl=False)
    click.echo(summary)


# --- the inventory as a data source: sql, schema -------------------------------------------------------------


def _sql_params(_ctx, _param, values) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}")
        params[name] = value
    return params


@main.command("sql")
@click.argument("statement")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "tsv", "json", "ndjson", "text"]),
              default="table", show_default=True,
              help="table: aligned with a header; json: an array of objects; ndjson: one object per line; "
                   "text: aligned, no header.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", callback=_sql_params,
              help="Bind :NAME in the statement to VALUE (as text). Repeatable.")
@click.option("--timeout", type=click.FloatRange(0, 86_400), default=30, show_default=True, metavar="SECONDS",
              help="Interrupt the statement after this long (0: no limit).")
@click.pass_obj
def sql_command(settings: Settings, statement, fmt, params, timeout):
    """Run one read-only SQL statement on the inventory and print its rows.

    Reads the inventory as it is (--db, or the file named after --registry) and never contacts the registry,
    unless the global --refresh syncs it first. Statements that would write, ATTACH a database or change a
    pragma are refused. The views images, digest_usage, repo_stats and blob_usage are the stable interface;
    'regdb schema' lists them. Timestamps print in ISO 8601 UTC (2026-12-01T12:00:00Z). With -c None the
    inventory is in memory, so it is synced first with --refresh, and refused without.

    \b
      regdb --db registry.db sql "SELECT repo, total_bytes FROM repo_stats ORDER BY total_bytes DESC LIMIT 5"
      regdb --db registry.db sql --format csv "SELECT * FROM images WHERE repo = :repo" --param repo=app
    """
    from regdb.cli import output

    if settings.db_target() == MEMORY and not settings.refresh:
        raise click.UsageError("-c None is a new, empty in-memory inventory, so sql would answer from nothing: "
                               "name the inventory with --db PATH, or add --refresh to sync into memory first")
    if settings.refresh:
        settings.reach_before_creating()
        run_sync(settings, settings.inventory(), None)
    inventory = settings.inventory(readonly=True)
    with inventory.sql(statement, params, timeout=timeout) as result:
        if settings.count:
            click.echo(sum(1 for _ in result))
            return
        if not result.columns:  # a statement that answers nothing (a pragma without output)
            return
        for chunk in output.render(output.with_iso_timestamps(result), result.columns, fmt):
            click.echo(chunk, nl=False)


@main.command()
@click.option("--format", "fmt", type=click.Choice(["text", "table", "csv", "tsv", "json", "ndjson"]),
              default="text", show_default=True,
              help="text: grouped by view and table; the others: one row per column (object, kind, column, "
                   "meaning).")
def schema(fmt):
    """Print the inventory's views and tables, with what each column means.

    The views (images, digest_usage, repo_stats, blob_usage) are the stable interface for SQL and BI tools;
    the tables behind them may change between regdb versions. Needs no inventory and no registry.

    \b
      regdb schema
      regdb schema --format csv > regdb-columns.csv
    """
    from regdb.cli import output
    from regdb.inventory.rawsql import describe_schema

    objects = describe_schema()
    if fmt != "text":
        rows = [column for each in objects for column in each.columns]
        for chunk in output.render(rows, ["object", "kind", "column", "meaning"], fmt):
            click.echo(chunk, nl=False)
        return
    for index, each in enumerate(objects):
        if index:
            click.echo()
        click.echo(f"{each.kind} {each.name}" + (f": {each.doc}" if each.doc else ""))
        width = max(len(column.column) for column in each.columns)
        for column in each.columns:
            click.echo(f"  {column.column.ljust(width)}  {column.meaning}".rstrip())


# --- retention: apply, untag ---------------------------------------------------------------------------------


def retention_of(keep_latest, order_by, older_than, newer_than, untagged, not_pulled_for=None,
                 keep_pulled_within=None):
    """The ``Retention`` of the command-line options, or None when none is given."""
    if keep_latest is None and order_by is None and older_than is None and newer_than is None and not untagged \
            and not_pulled_for is None and keep_pulled_within is None:
        return None
    from regdb.selection.retention import Retention

    return Retention(keep_latest=keep_latest, order_by=order_by, older_than=older_than, newer_than=newer_than,
                     untagged=untagged, not_pulled_for=not_pulled_for, keep_pulled_within=keep_pulled_within)


@main.command()
@click.argument("policy_file", metavar="POLICY.toml")
@removal_options
@click.pass_obj
def apply(settings: Settings, policy_file, dry_run, yes, max_delete, no_refresh, fmt):
    """Apply a retention policy: remove what its rules select, keep what any rule keeps.

    POLICY.toml holds rules per repository pattern (glob or re:REGEX), each combining tags, keep_latest,
    order_by, older_than, newer_than, untagged and keep, and a file-wide protect list. The file is checked
    first (errors name the line). All rules make one plan across the registry, printed rule by rule with what
    each removes and what it keeps and why; the removal is then that of remove-tags (fresh facts, verify,
    signatures and index children go along, every outcome recorded). See docs/retention.md.

    \b
      regdb -reg registry.example.com apply retention.toml --dry-run
      regdb -reg registry.example.com apply retention.toml --yes --format json
    """
    from regdb.cleanup.policy import load_policy
    from regdb.cli.output import document

    policy = load_policy(policy_file)  # a mistake in the file is reported before the registry is contacted
    inventory = settings.inventory()
    client = settings.client()
    settle_in_flight(inventory, client, dry_run=dry_run)
    if settings.refresh:
        run_sync(settings, inventory, None)  # a full sync: no need to re-read the matched repositories again
    planned = inventory.plan_policy(client, policy, refresh=not (no_refresh or settings.refresh),
                                    jobs=settings.jobs, raise_intersecting_repo=settings.raise_intersecting_repo,
                                    announce=lambda line: click.echo(line, err=True))
    plan = planned.plan
    if count_plan(settings, plan.rows, dry_run, "apply"):
        return
    if fmt != "json":
        echo_skipped(plan.skipped)  # what the plan itself keeps (an index lists it); the rules' keeps follow
    if dry_run or not plan.rows:
        if fmt == "json":
            click.echo(document(planned.as_dict()), nl=False)
        else:
            echo_policy_plan(planned)
            if dry_run and plan.rows:
                click.echo("dry run: nothing deleted")
        return
    confirm = asks_for_confirmation(yes)
    if fmt == "text":
        echo_policy_plan(planned)
    elif confirm:
        echo_policy_plan(planned, err=True)
    limits = [n for n in (max_delete, policy.max_delete) if n is not None]
    confirm_and_remove(settings, inventory, client, plan, fmt=fmt, confirm=confirm,
                       max_delete=min(limits) if limits else None)


def echo_policy_plan(planned, *, err: bool = False, shown: int = 8) -> None:
    """Rule by rule: the manifests it removes, then the tags it keeps, grouped by repository and reason."""
    from regdb.cli import output

    owner = planned.rule_of()
    for report in planned.reports:
        rule = report.rule
        count = len(report.repos)
        click.echo(f"{rule.label}: {rule.describe()} ({count} repositor{'ies' if count != 1 else 'y'})", err=err)
        rows = [dict(row.as_dict(), reason=row.why) for row in planned.plan.rows
                if owner.get((row.repo, row.digest)) == rule.index]
        if rows:
            for line in "".join(output.render(rows, PLAN_COLUMNS, "table")).splitlines():
                click.echo("  " + line, err=err)
        else:
            click.echo("  removes nothing", err=err)
        grouped: dict[tuple[str, str], list[str]] = {}
        for kept in report.kept:
            grouped.setdefault((kept.repo, kept.reason), []).append(kept.tag)
        for (repo, reason), tags in grouped.items():
            more = f" and {len(tags) - shown} more" if len(tags) > shown else ""
            click.echo(f"  keeps {repo}: {', '.join(tags[:shown])}{more} ({reason})", err=err)
        click.echo(err=err)
    plan = planned.plan
    if not plan.rows:
        click.echo("nothing to remove", err=err)
        return
    click.echo(_plan_summary(plan), err=err)


@main.command()
@click.option("-r", "--repo", "repo", required=True, metavar="REPO",
              help="The repository (a glob must match exactly one).")
@click.option("-t", "--tag", "tags", cls=GreedyOption, multiple=True, required=True, metavar="TAG...",
              help="Tags to remove: names or globs ('rc*'), matched on the repository as the registry has it.")
@click.option("--method", type=click.Choice(["auto", "delete-tag", "placeholder"]), default="auto",
              show_default=True,
              help="delete-tag: DELETE by tag (OCI 1.1); placeholder: move the tag to a placeholder manifest and "
                   "delete that; auto: DELETE by tag, then the placeholder if the registry refuses.")
@removal_options
@click.pass_obj
def untag(settings: Settings, repo, tags, method, dry_run, yes, max_delete, no_refresh, fmt):
    """Remove tags while keeping their digests and the other tags on them.

    Deleting a digest takes every tag on it; untag removes just the tags named. On a registry that allows
    DELETE by tag (OCI 1.1) that is used; distribution 2.x refuses it, so the tag is moved to a tiny unique
    placeholder manifest, which is then deleted by digest. That needs push and delete rights
    (repository:REPO:pull,push,delete). The plan says which method will be used. A digest left with no tag
    stays in the repository (remove-tags --untagged selects such manifests).

    \b
      regdb -reg registry.example.com untag -r app -t stable --dry-run
      regdb -reg registry.example.com untag -r app -t rc1 rc2 --yes
    """
    from regdb.cli import output
    from regdb.errors import RemovalIncomplete

    if no_refresh or settings.refresh:
        inventory, refresh = settings.synced_inventory(), False
    else:
        inventory, refresh = settings.inventory(), True
    client = settings.client()
    repo, tags, refresh = untag_globs(settings, inventory, repo, tags, refresh)
    settle_in_flight(inventory, client, dry_run=dry_run)
    plan = inventory.plan_untag(client, repo, tags, method=method, refresh=refresh, jobs=settings.jobs)
    if count_plan(settings, plan.rows, dry_run, "untag"):
        return

    def show(err: bool = False) -> None:
        for chunk in output.render([row.as_dict() for row in plan.rows], ["repo", "tag", "digest", "other_tags"],
                                   "table"):
            click.echo(chunk, nl=False, err=err)
        click.echo(f"method: {plan.method} ({plan.why})", err=err)

    if dry_run:
        if fmt == "json":
            click.echo(output.document(plan.as_dict()), nl=False)
        else:
            show()
            click.echo("dry run: nothing untagged")
        return
    confirm = asks_for_confirmation(yes)
    if max_delete is not None and len(plan.rows) > max_delete:
        raise click.ClickException(f"the plan untags {output.plural(len(plan.rows), 'tag')}, more than the limit "
                                   f"of {max_delete} "
                                   "(--max-delete): nothing untagged")
    if fmt == "text" or confirm:
        show(err=fmt != "text")
    if confirm:
        click.confirm(f"Remove the {output.plural(len(plan.rows), 'tag')} above from {repo}?", abort=True, err=True)
    try:
        result = inventory.untag(client, plan)
    except RemovalIncomplete as error:
        echo_untag_result(error.result, fmt)
        raise
    echo_untag_result(result, fmt)


def untag_globs(settings: Settings, inventory, repo: str, tags, refresh: bool):
    """(repo, tags, refresh) with globs matched: -r must match one repository; -t globs are matched against
    the repository as the registry has it now (synced first), so a tag pushed since the last sync is seen."""
    from regdb.cli.globs import expand_repos, expand_tags, is_glob

    if not is_glob(repo) and not any(is_glob(tag) for tag in tags):
        return repo, tags, refresh
    url = settings.registry_url()
    if is_glob(repo):
        if inventory.last_synced(url) is None:
            run_sync(settings, inventory, None)
        matched = [name for name in expand_repos(inventory, url, [repo]) if name != repo]
        if len(matched) != 1:
            found = f"matches {len(matched)}: {', '.join(matched[:5])}" if matched else "matches no repository"
            raise click.UsageError(f"untag works on one repository; -r {escape_controls(repo)} {found}")
        repo = matched[0]
    if not any(is_glob(tag) for tag in tags):
        return repo, tags, refresh
    if refresh:
        run_sync(settings, inventory, [repo])
    names, unmatched = expand_tags(inventory, url, repo, tags)
    if unmatched:
        raise click.UsageError(f"tag{'s' if len(unmatched) > 1 else ''} {', '.join(map(escape_controls, unmatched))} "
                               f"not found in repository {escape_controls(repo)}")
    return repo, names, False


def echo_untag_result(result, fmt: str) -> None:
    echo_outcomes(
        result, fmt, "tag",
        f"untagged {len(result.untagged)}, skipped {len(result.skipped)}, failed {len(result.failed)} "
        f"(run {result.run_id})",
    )


from regdb.cli import removal as cli_removal  # noqa: E402,F401 - registers restore (removal safety, issue #12)
from regdb.cli import live as cli_live  # noqa: E402,F401 - registers listen, history, changes and status (issue 15)
from regdb.cli import du as cli_du  # noqa: E402,F401 - regdb du (registers itself on main)
from regdb.cli import bi as cli_bi  # noqa: E402,F401 - regdb datasette-metadata, regdb report (issue 18)
