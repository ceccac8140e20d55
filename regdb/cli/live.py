"""Commands of the live inventory (issue 15): ``listen``, ``history``, ``changes``, ``status``.

Registered on ``regdb.cli.app.main`` from the bottom of cli.py; the library behind them is ``regdb.live``.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from regdb.cli.core import MEMORY, Settings, echo_listing, format_option, main
from regdb.errors import RegdbError

# A shared secret is a line of text; a file much larger than this is the wrong file.
MAX_TOKEN_FILE_BYTES = 4096


def _bind(_ctx, _param, value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"{value!r} is not HOST:PORT (127.0.0.1:5055)")
    return host.strip("[]"), int(port)


def _read_token(path: str) -> str:
    file = Path(path)
    try:
        if file.stat().st_size > MAX_TOKEN_FILE_BYTES:
            raise click.UsageError(f"--token-file {path} is over {MAX_TOKEN_FILE_BYTES} bytes: not a secret")
        token = file.read_text().strip()
    except OSError as error:
        raise click.UsageError(f"cannot read --token-file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise click.UsageError(f"--token-file {path} is not text") from None
    if not token or "\n" in token:
        raise click.UsageError(f"--token-file {path} must hold the secret on one line")
    return token


def _journal_path(settings: Settings, journal: str | None) -> str:
    if journal:
        return journal
    target = settings.db_target()
    if target == MEMORY or "://" in target:
        raise click.UsageError("give --journal PATH: the inventory is not a file to put the journal beside")
    return f"{target}.events"


@main.command()
@click.option("--bind", default="127.0.0.1:5055", show_default=True, callback=_bind, metavar="HOST:PORT",
              help="Address to listen on.")
@click.option("--token-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="File holding the shared secret the registry sends as 'Authorization: Bearer SECRET'.")
@click.option("--insecure-no-auth", is_flag=True, help="Accept notifications without a secret.")
@click.option("--journal", metavar="PATH", help="The listener's journal of accepted events "
                                                "[default: the inventory file + '.events'].")
@click.option("--journal-sync", type=click.Choice(["full", "normal"]), default="full", show_default=True,
              help="full: an accepted event survives a power cut; normal: it survives the listener crashing "
                   "(faster where fsync is slow).")
@click.option("--threads", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Threads answering requests.")
@click.pass_obj
def listen(settings: Settings, bind, token_file, insecure_no_auth, journal, journal_sync, threads):
    """Receive the registry's notifications and keep the inventory current as they arrive.

    Point the registry's notifications.endpoints at http://HOST:PORT/events with the header
    'Authorization: Bearer SECRET'. Pushes set and move tags, deletes remove manifests, pulls count
    toward pulls and last_pulled_at; tag_history keeps every move. GET /healthz and /metrics too.

    \b
      regdb -reg registry.example.com listen --token-file /etc/regdb/secret
      regdb -reg http://127.0.0.1:5000 --db reg.db listen --bind 0.0.0.0:5055 --token-file secret
    """
    from regdb.live.app import Listener, serve
    from regdb.live.store import EventStore

    if token_file is None and not insecure_no_auth:
        raise click.UsageError("no --token-file: give the shared secret, or --insecure-no-auth to accept anyone")
    token = _read_token(token_file) if token_file else None
    journal_path = _journal_path(settings, journal)
    settings.reach_before_creating()
    inventory = settings.inventory()
    client = settings.client()
    try:
        store = EventStore(journal_path, synchronous=journal_sync)
    except Exception as error:  # sqlite3.Error and OSError: one line, no traceback
        raise click.ClickException(f"cannot open journal {journal_path}: {error}") from None
    listener = Listener(inventory.engine, client, store, token=token)

    def on_term(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)

    def ready(url: str) -> None:
        click.echo(f"regdb listen: listening on {url}/events for {client.url}", err=True)
        sys.stderr.flush()

    try:
        serve(listener, bind[0], bind[1], threads=threads, ready=ready)
    except KeyboardInterrupt:
        click.echo("regdb listen: stopped; events not yet applied stay in the journal", err=True)
    except OSError as error:
        raise click.ClickException(f"cannot listen on {bind[0]}:{bind[1]}: {error.strerror or error}") from None
    finally:
        store.close()


def _registry_id(settings: Settings, conn) -> int:
    from regdb.inventory.registries import require_registry

    return require_registry(conn, settings.registry_ref())


HISTORY_COLUMNS = ("repo", "tag", "digest", "valid_from", "valid_to", "source", "ended_by")


@main.command()
@click.option("-r", "--repo", required=True, metavar="REPO", help="The repository (or a glob: 'team/*').")
@click.option("-t", "--tag", metavar="TAG", help="Only this tag (or the tags a glob matches: 'rc*').")
@format_option
@click.pass_obj
def history(settings: Settings, repo, tag, fmt):
    """Where the repository's tags pointed over time (from events, syncs and regdb's removals).

    \b
      regdb -reg registry.example.com history -r team/app -t latest
      regdb -reg registry.example.com history -r 'team/*' -t 'rc*'
    """
    from regdb.cli.globs import expand_repos, is_glob
    from regdb.inventory.history import tag_history

    inventory = settings.inventory(readonly=True)
    repos = expand_repos(inventory, settings.registry_url(), [repo])
    with inventory.engine.connect() as conn:
        registry_id = _registry_id(settings, conn)
        rows = [row for name in repos for row in tag_history(conn, registry_id, name, None if tag and is_glob(tag)
                                                             else tag)]
    if tag and is_glob(tag):
        from regdb.selection.patterns import glob_regex
        from regdb.versions import regex_matches

        rows = [row for row in rows if regex_matches(glob_regex(tag), row.tag)]
    echo_listing(settings, rows, HISTORY_COLUMNS, fmt)


CHANGES_COLUMNS = ("at", "change", "repo", "tag", "old", "new", "source")


@main.command()
@click.option("--since", metavar="TIME", help="A duration back from now (12h, 7d) or an ISO time.")
@click.option("--since-sync", type=int, metavar="N", help="Since sync N finished (the id in the syncs table).")
@format_option
@click.pass_obj
def changes(settings: Settings, since, since_sync, fmt):
    """Tags added, moved and removed since a time or a sync [default: since the last complete sync].

    \b
      regdb -reg registry.example.com changes --since 24h
      regdb -reg registry.example.com changes --since-sync 41 --format json
    """
    from sqlalchemy import select

    from regdb.inventory import models
    from regdb.inventory.history import changes_since
    from regdb.selection.retention import parse_age

    if since and since_sync is not None:
        raise click.UsageError("give --since or --since-sync, not both")
    inventory = settings.inventory(readonly=True)
    with inventory.engine.connect() as conn:
        registry_id = _registry_id(settings, conn)
        syncs = models.Sync.__table__
        if since:
            try:
                cutoff = parse_age(since)
            except RegdbError as error:
                raise click.UsageError(str(error)) from None
        else:
            query = select(syncs.c.finished_at).where(syncs.c.registry_id == registry_id, syncs.c.status == "ok")
            if since_sync is not None:
                query = query.where(syncs.c.id == since_sync)
            finished = conn.execute(query.order_by(syncs.c.id.desc()).limit(1)).scalar()
            if finished is None:
                what = f"sync {since_sync}" if since_sync is not None else "a complete sync"
                raise click.ClickException(f"the inventory has no record of {what} of this registry; use --since")
            cutoff = finished
        rows = changes_since(conn, registry_id, cutoff)
    echo_listing(settings, rows, CHANGES_COLUMNS, fmt)


@main.command()
@click.option("--format", "fmt", type=click.Choice(["text", "table", "json", "ndjson", "csv", "tsv"]),
              default="text", show_default=True,
              help="text: a few lines per registry; the others: one row per registry, every figure a column.")
@click.pass_obj
def status(settings: Settings, fmt):
    """Per registry: the last complete sync, the last event, the observed window of pulls, counts.

    \b
      regdb --db registry_example_com.db status --format json
    """
    from regdb.cli.output import plural
    from regdb.live.status import registry_status

    inventory = settings.inventory(readonly=True)
    with inventory.engine.connect() as conn:
        rows = registry_status(conn)
    if fmt != "text" or settings.count:
        records = [row.as_dict() for row in rows]
        columns = list(records[0]) if records else ["registry", "url"]
        echo_listing(settings, records, columns, fmt)
        return
    for row in rows:
        click.echo(f"{row.registry} ({row.url})")
        click.echo(f"  last complete sync: {_iso(row.last_complete_sync) if row.last_complete_sync else 'never'}")
        click.echo(f"  last event:         {_iso(row.last_event) if row.last_event else 'none'}")
        if row.observed_since is None:
            click.echo("  observed window:    none (no notifications received)")
        else:
            end = _iso(row.observed_until) if row.observed_until else "now"
            click.echo(f"  observed window:    {_iso(row.observed_since)} to {end}"
                       + (f" ({row.window_end_reason})" if row.window_end_reason else ""))
        click.echo(f"  {plural(row.repositories, 'repository')}, {plural(row.tags, 'tag')}, "
                   f"{plural(row.manifests, 'manifest')}, {row.pulled_manifests} pulled, "
                   f"{plural(row.rejected_events, 'rejected event')}, {plural(row.tag_history_rows, 'history row')}")


def _iso(value):
    return value.isoformat() + "Z" if hasattr(value, "isoformat") else str(value)
