"""``dregutil``: docker-registry-util 1.0.3's command line, on regdb's library.

Scripts and cron jobs written for docker-registry-util run unchanged: the same argparse parser (spellings,
arities, prefix abbreviations such as ``--reverse`` or ``--no-raise``, environment variables), the same
stdout (``repo  digest`` padded to the longest ``-r`` name, repositories in argument order, the ``--count``
footer, nothing on stdout for removals), and no confirmation prompt. What it does underneath is regdb's:
the inventory, the version rule, the safety rules and the removal. Where the output cannot be the same, the
README's table "differences from docker-registry-util" says why (tests/test_dregutil_parity.py holds it).

``regdb`` has its own command line (regdb.cli.app); nothing of its conveniences (globs, output formats) changes
what a ``dregutil`` command line means: ``-t 'pr-*'`` is an exact tag name here, as it was.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from itertools import groupby
from pathlib import Path

from regdb.inventory.db import MEMORY
from regdb.errors import RegdbError, SelectorError

# Every value docker-registry-util's value_or_false() reads as "off", for -c and -v (any case; and empty).
OFF_VALUES = ("false", "0", "no", "none")
JSON_CACHE_SUFFIX = ".json"


def is_off(value) -> bool:
    return not value or str(value).lower() in OFF_VALUES


def build_parser() -> argparse.ArgumentParser:
    """docker-registry-util's parser, option for option (its defaults read the environment when built)."""
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="dregutil", description="Lists or removes tags by selection from a Docker Registry.")
    parser.add_argument("--registry", "-reg", default=env("REGISTRY"),
                        help="Registry name. Can also be set using the environment variable REGISTRY.")
    parser.add_argument("--user", "-u", default=env("REGISTRY_USER"),
                        help="Registry user (or REGISTRY_USER). Without one, ~/.docker/config.json and credential "
                             "helpers are used.")
    parser.add_argument("--password", "-p", default=env("REGISTRY_PASSWORD"),
                        help="Registry password (or REGISTRY_PASSWORD).")
    parser.add_argument("--digest-auth", default=env("REGISTRY_USE_DIGEST_AUTH"),
                        help="Use HTTP Digest Authentication instead of basic (any non-empty value; or "
                             "REGISTRY_USE_DIGEST_AUTH).")
    parser.add_argument("--client-cert", "-cert", default=env("REGISTRY_CLIENT_CERT"),
                        help="Client certificate file (with its key, or see -key); or REGISTRY_CLIENT_CERT.")
    parser.add_argument("--client-key", "-key", default=env("REGISTRY_CLIENT_KEY"),
                        help="Key of the client certificate; or REGISTRY_CLIENT_KEY.")
    parser.add_argument("--verify", "-v",
                        help="CA bundle to verify the registry with (default: REQUESTS_CA_BUNDLE, else the system's); "
                             "'None' turns verification off.")
    parser.add_argument("--cache", "-c", default=env("DOCKER_UTIL_CACHEFILE"),
                        help="The inventory (or DOCKER_UTIL_CACHEFILE). A docker-registry-util *.json cache is left "
                             "untouched and the inventory kept in a .db file beside it; 'None' keeps it in memory.")
    parser.add_argument("--refresh", action="store_true", default=False,
                        help="Sync the whole registry into the inventory first.")
    parser.add_argument("--count", action="store_true", default=False,
                        help="Show the number of selected items, e.g. tags, digests etc.")
    parser.add_argument("--no-raise-intersecting-repo", action="store_false", default=True,
                        dest="raise_intersecting_repo",
                        help="Leave out digests also used by repositories outside the query instead of failing.")
    parser.add_argument("--use-get-manifest", action="store_true", default=env("DOCKER_UTIL_GET_MANIFEST"),
                        dest="use_get_manifest",
                        help="Resolve tags with GET instead of HEAD (or DOCKER_UTIL_GET_MANIFEST).")
    parser.add_argument("--log-level", "-l", default="info",
                        help="Log level on stderr: any name Python's logging knows (debug, info, warn, ...) or a "
                             "number.")
    commands = parser.add_subparsers(title="command", description="Type of operation to perform.")
    command = {}
    for name, func, text in (
        ("list-repo-names", list_repo_names, "Lists the repositories that have at least one tag."),
        ("list-tag-names", list_tag_names, "Lists the tags of each repository, or of the repositories named."),
        ("query-repos", query_repos, "Lists every digest of the repositories."),
        ("query-tags", query_tags, "Lists the digests of the repositories' tags the selection matches."),
        ("remove-repos", remove_repos, "Deletes every digest of the repositories from the registry."),
        ("remove-tags", remove_tags, "Deletes the digests that query-tags selects from the registry."),
    ):
        command[name] = commands.add_parser(name, help=text)
        command[name].set_defaults(func=func)
    for name in ("query-repos", "query-tags", "remove-repos", "remove-tags"):
        command[name].add_argument("--repo", "-r", nargs="+", required=True, help="Repository names.")
    listing = command["list-tag-names"]
    listing.add_argument("repo", nargs="*", help="Optional repository names to filter on.")
    listing.add_argument("--reverse-sort", action="store_true", default=False, dest="reverse_sort",
                         help="Reverse the order of the tags within a repository.")
    listing.add_argument("--image-names", action="store_true", default=False, dest="image_names",
                         help="Print <registry>/<repo>:<tag>, as Docker image references.")
    for name in ("query-tags", "remove-tags"):
        sub = command[name]
        sub.add_argument("--tags", "-t", nargs="*",
                         help="Tag names or version selectors (== <= >= < > and a version, e.g. '>=1.0.0').")
        sub.add_argument("--regex", "-re", nargs="*", help="Regular expressions for tag selection.")
        sub.add_argument("--exclude", "-x", nargs="*", help="Tag names or version selectors to exclude.")
        sub.add_argument("--exclude-regex", "-xre", nargs="*", dest="exclude_regex",
                         help="Regular expressions for excluding tags from the selection.")
        sub.add_argument("--no-match-all-tags", dest="match_all_tags", action="store_false", default=True,
                         help="Select a digest even if another tag of it in the repository is not selected.")
        sub.add_argument("--raise-intersecting-tag", action="store_true", default=False,
                         dest="raise_intersecting_tag",
                         help="Fail when a selected digest has tags outside the selection.")
    return parser


def log_level(text: str) -> int | None:
    """The level of a ``-l`` value as Python's logging reads it (names in any case, numbers), or None."""
    if text.strip().lstrip("-").isdigit():
        return int(text)
    level = logging.getLevelName(text.upper())
    return level if isinstance(level, int) else None


def inventory_target(args, url: str) -> tuple[str, str | None]:
    """(inventory to open, a note for stderr or None) for ``-c`` / ``DOCKER_UTIL_CACHEFILE``."""
    from regdb.api import default_db_path

    if args.cache is None:
        return default_db_path(url), None
    if is_off(args.cache):
        return MEMORY, None
    if "://" in args.cache:
        return args.cache, None  # a database URL, as regdb's --db takes
    path = Path(args.cache)
    if path.suffix.lower() == JSON_CACHE_SUFFIX or (path.is_file() and not _is_sqlite(path)):
        beside = path.with_suffix(".db")
        return str(beside), (f"dregutil: {path} is a docker-registry-util cache and is left untouched; "
                             f"the inventory is {beside}")
    return str(path), None


def _is_sqlite(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


def settings_of(args):
    from regdb.cli.core import Settings

    verify = args.verify
    if verify is not None and is_off(verify):
        verify = "None"  # regdb's spelling of "verification off"
    elif verify is None:
        verify = os.environ.get("REQUESTS_CA_BUNDLE")
    return Settings(
        registry=args.registry, user=args.user, password=args.password, digest_auth=bool(args.digest_auth),
        client_cert=args.client_cert, client_key=args.client_key, verify=verify, refresh=args.refresh,
        count=args.count, use_get_manifest=bool(args.use_get_manifest),
        raise_intersecting_repo=args.raise_intersecting_repo,
    )


# --- output, as docker-registry-util printed it ------------------------------------------------------------


def show_count(args, what: str, count: int) -> None:
    if args.count:
        line = f"Number of {what}: {count}"
        print("-" * len(line))
        print(line)


def in_argument_order(rows, names):
    """Rows grouped by repository in the order the repositories were named (a stable sort)."""
    place = {name: index for index, name in reversed(list(enumerate(names)))}
    return sorted(rows, key=lambda row: place.get(row.repo, len(place)))


def loose_order(tag: str):
    """docker-registry-util's tag order (its SortingVersion, a LooseVersion): the tag split into runs of digits,
    runs of lowercase letters and the other characters between them, dots dropped; numbers before words."""
    parts = []
    for run in _LOOSE_RUNS.findall(tag):
        if run == ".":
            continue
        parts.append((0, int(run), "") if run.isdigit() else (1, 0, run))
    return parts


# LooseVersion's component_re, with the text between its matches kept as runs of their own.
_LOOSE_RUNS = re.compile(r"\d+|[a-z]+|\.|[^\da-z.]+")


# --- the commands ------------------------------------------------------------------------------------------


def list_repo_names(settings, args) -> None:
    names = settings.synced_inventory().list_repos(settings.registry_ref())
    for name in names:
        print(name)
    show_count(args, "repositories", len(names))


def list_tag_names(settings, args) -> None:
    rows = settings.synced_inventory().list_tags(settings.registry_ref(), list(args.repo) or None)
    for name in rows.missing_repos:
        print(f"dregutil: warning: repository {name} not found", file=sys.stderr)
    order = list(dict.fromkeys(args.repo)) if args.repo else sorted({row.repo for row in rows})
    by_repo = {repo: [row.tag for row in group] for repo, group in groupby(rows, key=lambda row: row.repo)}
    result = [(repo, tag) for repo in order
              for tag in sorted(by_repo.get(repo, []), key=loose_order, reverse=args.reverse_sort)]
    if args.image_names:
        for repo, tag in result:
            print(f"{args.registry}/{repo}:{tag}")  # the registry as typed, as the original printed it
    elif result:
        width = max(len(repo) for repo, _ in result)
        for repo, tag in result:
            print(f"{repo:{width}}  {tag}")
    show_count(args, "tags", len(result))


def print_pairs(args, selection) -> None:
    width = max(map(len, args.repo))
    rows = in_argument_order(selection, args.repo)
    for row in rows:
        print(f"{row.repo:{width}}  {row.digest}")
    show_count(args, "selected digests", len(rows))


def query_repos(settings, args) -> None:
    selection = settings.synced_inventory().query_repos(
        settings.registry_ref(), list(args.repo), raise_intersecting_repo=args.raise_intersecting_repo)
    warn_missing(selection)
    print_pairs(args, selection)


def tag_arguments(parser, args) -> dict:
    if not (args.tags or args.regex):
        parser.error("No tags specified.")
    return dict(tags=list(args.tags or ()), regex=list(args.regex or ()), exclude=list(args.exclude or ()),
                exclude_regex=list(args.exclude_regex or ()), match_all_tags=args.match_all_tags,
                raise_intersecting_tag=args.raise_intersecting_tag,
                raise_intersecting_repo=args.raise_intersecting_repo)


def query_tags(settings, args) -> None:
    selected = tag_arguments(args.parser, args)
    inventory = settings.synced_inventory()
    selection = inventory.query_tags(settings.registry_ref(), list(args.repo), **selected)
    warn_missing(selection)
    print_pairs(args, selection)


def warn_missing(selection) -> None:
    for name in getattr(selection, "missing_repos", ()):
        print(f"dregutil: warning: repository {name} not found", file=sys.stderr)


def remove_repos(settings, args) -> None:
    from regdb.cleanup.plan import RepoQuery

    remove(settings, args, RepoQuery(tuple(args.repo), raise_intersecting_repo=args.raise_intersecting_repo))


def remove_tags(settings, args) -> None:
    from regdb.cleanup.policy import RetentionQuery

    selected = tag_arguments(args.parser, args)
    remove(settings, args, RetentionQuery(tuple(args.repo), selected["tags"], selected["regex"],
                                          selected["exclude"], selected["exclude_regex"],
                                          match_all_tags=selected["match_all_tags"],
                                          raise_intersecting_tag=selected["raise_intersecting_tag"],
                                          raise_intersecting_repo=selected["raise_intersecting_repo"]))


def remove(settings, args, query) -> None:
    """Plan with regdb's rules and delete at once: docker-registry-util never asked, and scripts written for
    it have no --yes to pass. Nothing on stdout but the --count footer; each deletion is logged at info."""
    log = logging.getLogger("regdb.cli.dregutil")
    if settings.refresh:
        inventory, refresh = settings.synced_inventory(), False
    else:
        settings.reach_before_creating()
        inventory, refresh = settings.inventory(), True
    client = settings.client()
    plan = inventory.plan_removal(client, query, refresh=refresh, jobs=settings.jobs)
    for name in plan.missing_repos:
        print(f"dregutil: warning: repository {name} not found", file=sys.stderr)
    for row in plan.rows:
        log.info("Removing digest %s from %s.", row.digest, row.repo)
    result = inventory.remove(client, plan, jobs=settings.jobs) if plan.rows else None
    deleted = len(result.deleted) if result is not None else 0
    log.info("Deleted %s digests.", deleted)
    show_count(args, "removed digests", deleted)


def main(argv=None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if "func" not in args:
        parser.error("No command was set.")
    level = log_level(args.log_level)
    if level is None:
        parser.error(f"argument --log-level/-l: unknown level '{args.log_level}'")
    if not args.registry:
        parser.error("No registry provided, neither as a command argument nor through the environment variable "
                     "REGISTRY.")
    args.parser = parser
    from regdb.cli.core import setup_logging, worded

    setup_logging(logging.getLevelName(level) if isinstance(logging.getLevelName(level), str) else "info")
    logging.getLogger("regdb").setLevel(level)
    settings = settings_of(args)
    status = 0
    try:
        settings.db, note = inventory_target(args, settings.registry_url())
        if note:
            print(note, file=sys.stderr)
        args.func(settings, args)
    except SelectorError as error:
        parser.error(worded(error))
    except RegdbError as error:
        print(f"dregutil: {worded(error)}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("dregutil: interrupted", file=sys.stderr)
        status = 130
    except Exception as error:  # noqa: BLE001 - click's UsageError from Settings, and the like
        import click

        if not isinstance(error, click.ClickException):
            raise
        print(f"dregutil: {error.format_message()}", file=sys.stderr)
        status = error.exit_code
    finally:
        settings.close()
    sys.stdout.flush()
    sys.exit(status)
