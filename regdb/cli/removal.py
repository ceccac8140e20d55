"""Removal safety on the command line: when to ask before deleting, Ctrl-C during a removal, ``restore``.

The confirmation rule is one function, ``confirmation_required``, for every command that deletes and for every
program name regdb is installed under: ``regdb`` refuses to delete without ``--yes`` when stdin is not a
terminal (a script that forgot --yes must not delete), while ``dregutil`` keeps docker-registry-util's
behaviour and never asks, since scripts written for it have no --yes to pass.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from regdb.cli.core import MEMORY, Settings, main

PROCEED = "proceed"
ASK = "ask"
REFUSE = "refuse"

# Console scripts that behave as docker-registry-util did: delete without asking.
NO_PROMPT_PROGRAMS = frozenset({"dregutil"})
# What Ctrl-C exits with (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130


def confirmation_required(program_name: str, yes: bool, stdin_is_tty: bool) -> str:
    """``PROCEED``, ``ASK`` or ``REFUSE``: what a command about to delete does, given the program it was run
    as, whether --yes was passed, and whether stdin is a terminal."""
    if Path(program_name).name in NO_PROMPT_PROGRAMS or yes:
        return PROCEED
    return ASK if stdin_is_tty else REFUSE


def stdin_is_tty() -> bool:
    return sys.stdin.isatty()


def confirm_or_refuse(yes: bool) -> bool:
    """True when the person at the terminal is to be asked; exits 2 with one line when regdb must refuse."""
    ctx = click.get_current_context()
    decision = confirmation_required(ctx.find_root().info_name or Path(sys.argv[0]).name, yes, stdin_is_tty())
    if decision == REFUSE:
        click.echo("Error: stdin is not a terminal, so regdb cannot ask: pass --yes to delete", err=True)
        ctx.exit(2)
    return decision == ASK


def settle_in_flight(inventory, client) -> None:
    """Before planning: the DELETEs an interrupted run left in-flight, asked of the registry and recorded, so the
    plan starts from what the registry did. One line each on stderr."""
    from regdb.cleanup.execute import new_run_id
    from regdb.cleanup.journal import resolve_in_flight

    for row in resolve_in_flight(inventory.engine, client, run_id=new_run_id()):
        click.echo(f"settled: {row.repo}@{row.digest} of interrupted run {row.run_id}: {row.outcome}", err=True)


def interrupted(error) -> None:
    """Ctrl-C during the DELETEs: say which run it was and what was and was not deleted, exit 130."""
    ctx = click.get_current_context()
    click.echo(f"{ctx.find_root().info_name or 'regdb'}: {error}", err=True)
    ctx.exit(EXIT_INTERRUPTED)


@main.command()
@click.argument("run_id")
@click.option("--dry-run", is_flag=True, help="Check and print what would be pushed back: push nothing.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_obj
def restore(settings: Settings, run_id, dry_run, fmt):
    """Undo a removal run: push back every manifest it deleted, then its tags.

    The deletion journal (the deletions table) keeps each deleted manifest's bytes, media type and tags. The
    blobs stay in the registry until its garbage collection, so until then the manifests come back under the
    same digests: index children before their index, then every tag re-pointed. Everything is checked first;
    if a blob is gone (collected) or a tag now names another manifest, nothing is pushed and the manifests or
    tags are named. The run id is printed by every removal. Needs push rights.

    \b
      regdb -reg registry.example.com restore 20261201T120000Z-1a2b3c4d --dry-run
      regdb -reg registry.example.com restore 20261201T120000Z-1a2b3c4d
    """
    from regdb.cleanup.restore import plan_restore, restore as restore_run
    from regdb.cli.output import document, plural

    target = settings.db_target()
    if "://" not in target and target != MEMORY and not Path(target).exists():
        # The journal lives in the inventory: without one there is nothing to restore, and none is created.
        raise click.ClickException(f"no inventory {target}: restore reads the removal's journal from it")
    inventory = settings.inventory()
    client = settings.client()
    plan = plan_restore(inventory.engine, client, run_id)
    if dry_run or not plan.items:
        if fmt == "json":
            click.echo(document(plan.as_dict()), nl=False)
        else:
            for item in plan.items:
                click.echo(f"{item.repo}@{item.digest} {','.join(item.tags) or '(untagged)'}")
            click.echo(f"{plural(len(plan.items), 'manifest')} to push back"
                       + ("; dry run: nothing pushed" if dry_run else ""))
        return
    result = restore_run(inventory.engine, client, plan)
    if fmt == "json":
        click.echo(document(result.as_dict()), nl=False)
    else:
        click.echo(f"restored {plural(len(result.pushed), 'manifest')} and {plural(len(result.tags), 'tag')} of run "
                   f"{run_id} (restore run {result.run_id})")
