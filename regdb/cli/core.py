"""The ``regdb`` group, its settings and error boundary, and the option bundles its commands share.

The command modules (``app`` and the families) import from here; this module imports none of them. The
library raises named errors; the group turns them into one line on stderr and exit status 1 (a failure) or 2
(a usage mistake). No tracebacks. (docker-registry-util's users have ``dregutil``: regdb/cli/dregutil.py.)
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import click

from regdb import __version__
from regdb.registry.reference import RegistryRef
from regdb.errors import RegdbError, SelectorError

if TYPE_CHECKING:  # imported where used: --version and --help load neither SQLAlchemy nor requests
    from regdb.registry.client import RegistryClient
    from regdb.api import Inventory

from regdb.text import escape_controls

# regdb.inventory.db.MEMORY, spelled out: naming it must not import SQLAlchemy (tests/test_startup.py holds them equal).
MEMORY = ":memory:"

log = logging.getLogger("regdb")

LOG_LEVELS = ["debug", "info", "warning", "error", "critical"]


class GreedyOption(click.Option):
    """A multi-value option with argparse's arities, as docker-registry-util had them: ``-t '<1.4' one``.

    ``nargs='*'`` by default (``-t``, ``-re``, ``-x``, ``-xre``): zero or more values, gathered up to the next
    option, so ``-x -xre lat`` is an empty ``-x`` and an exclusion ``lat`` (a tag never begins with ``-`` in the
    OCI grammar, so nothing is lost). ``at_least_one=True`` is ``nargs='+'`` (``-r``): ``-r`` with no value is a
    usage error, never "all repositories". ``-t x -t y`` works too.
    """

    def __init__(self, *args, at_least_one: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.at_least_one = at_least_one
        # click's hint for "the value may be omitted": it then hands process() a sentinel instead of taking
        # the next option (or failing at the end of the line) as this option's value.
        self._flag_needs_value = True

    def add_to_parser(self, parser, ctx):
        result = super().add_to_parser(parser, ctx)
        wrapped = set()
        for name in self.opts:
            option = parser._long_opt.get(name) or parser._short_opt.get(name)
            if option is None or id(option) in wrapped:
                continue  # one parser option answers to all of -r and --repo: wrap it once
            wrapped.add(id(option))
            take_one = option.process

            def process(value, state, take_one=take_one, name=self.opts[0], option=option):
                values = [value] if isinstance(value, str) else []  # not a str: no value given
                while state.rargs and not _looks_like_option(state.rargs[0]):
                    values.append(state.rargs.pop(0))
                if not values and self.at_least_one:
                    raise click.BadOptionUsage(name, f"Option '{name}' requires at least one value.", ctx)
                if not values:
                    state.opts.setdefault(option.dest, [])  # given, empty: as argparse's []
                    state.order.append(option.obj)
                for each in values:
                    take_one(each, state)

            option.process = process
        return result

    def process_value(self, ctx, value):
        value = super().process_value(ctx, value)
        if value and len(value) > MAX_OPTION_VALUES:
            # One statement binds each value: past SQLite's 32,766 variables it failed with the whole SQL text.
            raise click.BadParameter(f"{len(value):,} values; at most {MAX_OPTION_VALUES:,} are accepted (use a "
                                     "selector or -re REGEX for more)", ctx=ctx, param=self)
        return value


# Values of one option (-r, -t, -x, ...): several such lists go into one SQL statement, and together they must
# stay under SQLite's bound-parameter limit (32,766); 10,000 names is more than anyone types or pastes.
MAX_OPTION_VALUES = 10_000


def _looks_like_option(arg: str) -> bool:
    return len(arg) > 1 and arg.startswith("-")


@dataclass
class Settings:
    """The global options, shared by every command through ``ctx.obj``."""

    registry: str | None = None
    user: str | None = None
    password: str | None = None
    digest_auth: bool = False
    client_cert: str | None = None
    client_key: str | None = None
    verify: str | None = None
    db: str | None = None
    refresh: bool = False
    count: bool = False
    jobs: int = 16
    rate: float | None = None
    use_get_manifest: bool = False
    raise_intersecting_repo: bool = True
    password_source: "Callable[[], str] | None" = field(default=None, repr=False)  # a profile's, read when needed
    _client: "RegistryClient | None" = field(default=None, repr=False)
    _inventories: dict = field(default_factory=dict, repr=False)

    # --- the registry -------------------------------------------------------------------------------------

    def registry_ref(self) -> RegistryRef:
        """The registry named by -reg (or the profile, or REGISTRY), resolved once for the whole command."""
        if not self.registry:
            raise click.UsageError("no registry given: use -reg/--registry or set REGISTRY")
        return RegistryRef.parse(self.registry)

    def registry_url(self) -> str:
        return self.registry_ref().url

    def client(self) -> "RegistryClient":
        """The registry client, built once by ``regdb.connect`` as every library user builds it."""
        from regdb.registry.connect import connect

        if self._client is None:
            if self.verify == "None":
                log.warning("TLS certificate verification is disabled (-v None)")
            self._client = connect(
                self.registry_url(),
                user=self.user,
                password=self.password if self.password is not None else self.password_source,
                digest_auth=self.digest_auth,
                verify=True if self.verify is None else False if self.verify == "None" else self.verify,
                client_cert=self.client_cert,
                client_key=self.client_key,
                jobs=self.jobs,
                rate=self.rate,
                use_get_manifest=self.use_get_manifest,
                quiet_insecure=True,
            )
        return self._client

    # --- the inventory ------------------------------------------------------------------------------------

    def db_target(self) -> str:
        if self.db in ("None", MEMORY):
            return MEMORY
        if self.db:
            return self.db
        from regdb.inventory.location import default_db_path

        target = default_db_path(self.registry_url())
        if Path(target).is_symlink():
            # The default name is found in the current directory: a link planted there would have the sync
            # overwrite whatever it points at. Named explicitly (--db), a link is the user's choice.
            raise click.ClickException(
                f"the default inventory {target} is a symbolic link; refusing to write through it (name it "
                "with --db to use it anyway)"
            )
        return target

    def inventory(self, *, readonly: bool = False) -> Inventory:
        target = self.db_target()
        if target == MEMORY:
            readonly = False  # one throwaway inventory for the whole run
        key = (target, readonly)
        if key not in self._inventories:
            from regdb.api import Inventory

            self._inventories[key] = Inventory(target, readonly=readonly)
        return self._inventories[key]

    def synced_inventory(self) -> Inventory:
        """The inventory for commands that read it: synced first on --refresh or if never synced."""
        self.reach_before_creating()
        inventory = self.inventory()
        if self.refresh or inventory.last_synced(self.registry_ref()) is None:
            run_sync(self, inventory, None)
        return inventory

    def reader(self):
        """The inventory for the read-only listings (list-repo-names, list-tag-names, query-repos, query-tags):
        an SQLite file already synced from this registry is read with the standard library's sqlite3, without
        importing SQLAlchemy (regdb.selection.sqlite_reader, issue 17); anything else, or --refresh, is
        ``synced_inventory()``, which the reader also hands what it does not answer itself. With ``-l debug``
        too: that logs the statements regdb.selection.selectors runs, with their values inlined to paste into
        sqlite3."""
        target = self.db_target()
        if not self.refresh and target != MEMORY and "://" not in target and not log.isEnabledFor(logging.DEBUG):
            from regdb.selection.sqlite_reader import open_reader

            key = (target, "sqlite3")
            if key not in self._inventories:
                found = open_reader(target, self.registry_ref(), fallback=self.synced_inventory)
                if found is None:
                    return self.synced_inventory()
                self._inventories[key] = found
            return self._inventories[key]
        return self.synced_inventory()

    def reach_before_creating(self) -> None:
        """A new inventory file is created only once the registry has answered: a mistyped -reg or a
        registry that is down must leave nothing behind."""
        target = self.db_target()
        if target != MEMORY and "://" not in target and not Path(target).exists():
            if not Path(target).parent.exists():
                self.inventory()  # says which directory is missing
            self.client().ping()

    def close(self) -> None:
        for inventory in self._inventories.values():
            inventory.close()
        if self._client is not None:
            self._client.close()


# The library names the settings in its messages by field (regdb.errors.RegdbError); the command line words
# them with its flags.
FLAGS = {
    "repos": "-r", "tags": "-t", "regex": "-re", "exclude": "-x", "exclude_regex": "-xre",
    "keep_latest": "--keep-latest", "order_by": "--order-by", "untagged": "--untagged",
    "older_than": "--older-than", "newer_than": "--newer-than", "not_pulled_for": "--not-pulled-for",
    "keep_pulled_within": "--keep-pulled-within", "max_inventory_age": "--max-inventory-age",
    "registry": "-reg/--registry", "user": "-u/--user", "password": "-p/--password",
    "digest_auth": "--digest-auth", "client_cert": "-cert/--client-cert", "client_key": "-key/--client-key",
    "verify": "-v/--verify", "jobs": "-j/--jobs", "rate": "--rate",
}


def worded(error: RegdbError) -> str:
    """The error's one line, its settings named by this command line's flags."""
    return error.worded(FLAGS)


class RegdbCommand(click.Command):
    """A subcommand: a selector or usage mistake the library reports (SelectorError) prints this command's
    usage line, as click's own usage errors of its options do, not the top-level one."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SelectorError as error:
            raise click.UsageError(worded(error), ctx) from None


class RegdbGroup(click.Group):
    """Turns the library's named errors into one line and an exit status, at the one place they surface."""

    command_class = RegdbCommand

    def make_context(self, info_name, args, parent=None, **extra):
        # A Ctrl-C while the options are parsed: click alone would print "Aborted!" and exit 1.
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except KeyboardInterrupt:
            from regdb.cli.interrupt import interrupted

            raise click.exceptions.Exit(interrupted(info_name or "regdb")) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SelectorError as error:
            raise click.UsageError(worded(error), ctx) from None
        except RegdbError as error:
            raise click.ClickException(plain_http_hint(ctx.obj, error) or worded(error)) from None
        except Exception as error:  # noqa: BLE001 - the database's own failures, on input we do not control
            from regdb.errors import database_error

            mapped = database_error(error)
            if mapped is None:
                raise
            raise click.ClickException(str(mapped)) from None
        except KeyboardInterrupt:
            from regdb.cli.interrupt import interrupted

            ctx.exit(interrupted(ctx.find_root().info_name or "regdb",
                                 "interrupted; the inventory keeps its last complete snapshot"))
        finally:
            if isinstance(ctx.obj, Settings):
                ctx.obj.close()


# OpenSSL's reasons when what answers a TLS ClientHello is plain HTTP ("HTTP/1.1 400 ..." read as a TLS record):
# 1.1 and 3.0/3.1 say "wrong version number", 3.2+ "record layer failure" or "packet length too long".
PLAIN_HTTP_TLS_REASONS = ("wrong version number", "record layer failure", "packet length too long",
                          "unknown protocol")


def plain_http_hint(settings, error) -> str | None:
    """For a registry given without a scheme (https assumed) that answered the TLS handshake with plain HTTP:
    the one line that says to name it http://HOST:PORT. regdb never falls back to http by itself: that would
    send the credentials, in clear, to another origin than the one named (docs/registry-behaviour.md)."""
    from regdb.errors import RegistryUnreachable

    registry = getattr(settings, "registry", None)
    if not isinstance(error, RegistryUnreachable) or not registry or "://" in registry:
        return None
    # The client words TLS failures "TLS error talking to URL: REASON" with OpenSSL's reason.
    if not str(error).startswith("TLS error") or not any(r in str(error) for r in PLAIN_HTTP_TLS_REASONS):
        return None
    host = RegistryRef.parse(registry).name
    return (f"{error}: {escape_controls(registry)} answers plain HTTP, not HTTPS; if that is meant, use "
            f"-reg http://{host}")


@click.group(cls=RegdbGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-reg", "--registry", envvar="REGISTRY", help="Registry: a host (https is assumed) or a URL.")
@click.option("-u", "--user", envvar="REGISTRY_USER", help="User for basic / token authentication.")
@click.option("-p", "--password", envvar="REGISTRY_PASSWORD", help="Password for that user.")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from standard input (first line), as docker login does: not in ps.")
@click.option("--digest-auth", is_flag=True, envvar="REGISTRY_USE_DIGEST_AUTH",
              help="Use HTTP Digest authentication instead of basic.")
@click.option("-cert", "--client-cert", envvar="REGISTRY_CLIENT_CERT", help="Client certificate (and key) file.")
@click.option("-key", "--client-key", envvar="REGISTRY_CLIENT_KEY", help="Key of the client certificate.")
@click.option("-v", "--verify", envvar="REQUESTS_CA_BUNDLE",
              help="CA bundle to verify the registry with; 'None' turns verification off.")
@click.option("--db", "-c", "--cache", "db", envvar="REGDB_DATABASE", metavar="PATH|URL",
              help="Inventory file or SQLAlchemy URL [default: named after the registry, e.g. "
                   "registry_example_com.db]; 'None' for a throwaway in-memory inventory.")
@click.option("--refresh", is_flag=True, help="Sync the inventory with the registry before the command.")
@click.option("--count", is_flag=True,
              help="Print the number of rows instead of the rows (a removal's plan rows with --dry-run); a usage "
                   "error on a command that prints no rows.")
@click.option("--no-raise-intersecting-repo", is_flag=True,
              help="Drop digests also used by a repository outside the selection instead of failing.")
@click.option("-j", "--jobs", type=click.IntRange(1, 256), default=16, show_default=True,
              help="Concurrent requests to the registry.")
@click.option("--rate", type=click.FloatRange(min=0.1), help="At most this many requests per second.")
@click.option("--use-get-manifest", is_flag=True,
              help="Resolve tags with GET instead of HEAD (for registries whose HEAD is broken).")
@click.option("-l", "--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default="warning",
              show_default=True, help="Log level on stderr; debug shows requests (secrets redacted) and SQL.")
@click.option("--profile", envvar="REGDB_PROFILE", metavar="NAME",
              help="Profile of the config file ($XDG_CONFIG_HOME/regdb/config.toml) to take settings from.")
@click.version_option(__version__, "--version", prog_name="regdb")
@click.pass_context
def main(ctx, registry, user, password, password_stdin, digest_auth, client_cert, client_key, verify, db, refresh,
         count, no_raise_intersecting_repo, jobs, rate, use_get_manifest, log_level, profile):
    """Mirror a Docker Registry v2 / OCI registry into an SQLite inventory, query it, clean it up safely.

    \b
      regdb -reg registry.example.com sync
      regdb -reg registry.example.com query-tags -r app -t '<1.4'
      regdb -reg registry.example.com remove-tags -r app -t '<1.4' --dry-run
      regdb --db registry_example_com.db sql "SELECT repo, count(*) FROM images GROUP BY repo"
    """
    setup_logging(log_level)
    if count:
        check_count_applies(ctx.invoked_subcommand)
    if password_stdin:
        password = _password_from_stdin(user, password)
    ctx.obj = Settings(
        registry=registry, user=user, password=password, digest_auth=digest_auth, client_cert=client_cert,
        client_key=client_key, verify=verify, db=db, refresh=refresh, count=count, jobs=jobs, rate=rate,
        use_get_manifest=use_get_manifest, raise_intersecting_repo=not no_raise_intersecting_repo,
    )
    apply_profile(ctx, ctx.obj, profile)
    if password_stdin:  # a flag: it wins over a profile's password, as every flag does
        ctx.obj.password, ctx.obj.password_source = password, None


# The commands --count counts the output rows of; the removals count their plan, and only with --dry-run.
COUNTED_COMMANDS = ("list-repo-names", "list-tag-names", "query-repos", "query-tags", "du", "sql", "history",
                    "changes", "status")
COUNTED_PLANS = ("remove-tags", "remove-repos", "apply", "untag")


def check_count_applies(command: str | None) -> None:
    """--count on a command that prints no rows is a usage error, never silently ignored (issue 17)."""
    if command is None or command in COUNTED_COMMANDS or command in COUNTED_PLANS:
        return
    raise click.UsageError(f"--count does not apply to {command}: it counts the rows of "
                           f"{', '.join(COUNTED_COMMANDS)}, and the plan of {', '.join(COUNTED_PLANS)} with --dry-run")


def count_plan(settings: Settings, rows, dry_run: bool, command: str | None) -> bool:
    """--count on a removal: print the number of planned rows and stop (True), which only a dry run may do."""
    if not settings.count:
        return False
    if not dry_run:
        raise click.UsageError(f"--count with {command} counts its plan: add --dry-run (nothing is deleted then)")
    click.echo(len(rows))
    return True


def apply_profile(ctx, settings: Settings, named: str | None) -> None:
    """Fill in what the flags left open from the config file's profiles (regdb/cli/profiles.py has the order)."""
    from regdb.cli.profiles import SETTINGS, load_config, resolve

    config = load_config()
    if config is None and not named:
        return
    sources = {click.core.ParameterSource.COMMANDLINE: "command line",
               click.core.ParameterSource.ENVIRONMENT: "environment"}
    resolved = resolve(ctx.params, lambda name: sources.get(ctx.get_parameter_source(name), "default"), named,
                       config)
    for name in SETTINGS:
        if name != "log_level" and resolved.values.get(name) != ctx.params.get(name):
            setattr(settings, name, resolved.values[name])
    settings.password_source = resolved.password
    if resolved.values["log_level"] != ctx.params["log_level"]:
        setup_logging(resolved.values["log_level"])


def _password_from_stdin(user, password) -> str:
    """--password-stdin: the first line of standard input, without its line ending (docker login's rule)."""
    if password:
        raise click.UsageError("--password and --password-stdin are exclusive")
    if not user:
        raise click.UsageError("--password-stdin needs -u/--user")
    line = sys.stdin.readline(MAX_PASSWORD_LENGTH + 1).rstrip("\r\n")
    if len(line) > MAX_PASSWORD_LENGTH:
        raise click.UsageError(f"--password-stdin: the password is over {MAX_PASSWORD_LENGTH:,} characters")
    if not line:
        raise click.UsageError("--password-stdin: standard input holds no password")
    return line


# A password or token read from standard input (a registry token is a few KiB at most).
MAX_PASSWORD_LENGTH = 64 * 1024


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record, not the stream of the first call
    (click's test runner, or an embedding program, may swap it between invocations)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def setup_logging(level: str) -> None:
    handler = StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    try:
        from regdb.redact import RedactingFilter

        handler.addFilter(RedactingFilter())
    except ImportError:  # pragma: no cover - redact ships with regdb
        pass
    # Only regdb's own loggers (and urllib3's requests at debug): the root logger belongs to whoever embeds us.
    for name, wanted in (("regdb", level.upper()), ("urllib3", "DEBUG" if level.lower() == "debug" else "ERROR")):
        # urllib3 logs each retry as a WARNING with the whole exception chain; regdb reports the outcome in
        # one line instead. -l debug shows everything, secrets redacted.
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(wanted)


def run_sync(settings: Settings, inventory: Inventory, repos, *, quiet: bool | str = True):
    """Sync with a progress bar on a terminal (stderr: tags done of the total, rate, ETA), nothing extra when
    piped or at -l debug. ``quiet``: True prints nothing, False the summary line, "json" the result document."""
    started = time.monotonic()
    # A bar only for a person watching: not in a pipe, and not over -l debug's log lines.
    watch = None
    if sys.stderr.isatty() and not log.isEnabledFor(logging.DEBUG):
        from regdb.cli.progress import SyncProgress

        watch = SyncProgress(settings.client().name, sys.stderr)
    try:
        result = inventory.sync(settings.client(), repos or None, jobs=settings.jobs, watch=watch)
    finally:
        if watch is not None:
            watch.close()
    for name in result.missing_repos:
        click.echo(f"warning: repository {escape_controls(name)} not found in {result.registry}", err=True)
    if quiet == "json":
        from regdb.cli.output import document

        click.echo(document({
            "registry": result.registry, "sync_id": result.sync_id, "repos": result.repos, "tags": result.tags,
            "new_manifests": result.digests_fetched, "requests": result.requests, "started_at": result.started_at,
            "finished_at": result.finished_at, "seconds": round(time.monotonic() - started, 3),
            "missing_repos": result.missing_repos, "skipped_repos": result.skipped_repos,
            "incomplete": result.incomplete, "broken_indexes": result.broken_indexes,
        }), nl=False)
    elif not quiet:
        from regdb.cli.output import plural

        click.echo(
            f"synced {result.registry}: {plural(result.repos, 'repository')}, {plural(result.tags, 'tag')}, "
            f"{plural(result.digests_fetched, 'new manifest')}, {plural(result.requests, 'request')} in "
            f"{time.monotonic() - started:.1f} s"
        )
    return result


def repo_option(func):
    """``-r REPO...``: the repositories a query or removal works on (required, argparse-style greedy)."""
    return click.option("-r", "--repo", "repos", cls=GreedyOption, at_least_one=True, multiple=True,
                        required=True, metavar="REPO...",
                        help="Repositories (one or more): names, or globs ('team/*', * also crosses /) as in a "
                             "policy file.")(func)


def selector_options(func):
    """The tag selectors of ``query-tags`` and ``remove-tags``, defined once (docker-registry-util's flags)."""
    options = [
        click.option("-t", "--tags", "--tag", "tags", cls=GreedyOption, multiple=True, metavar="TAG|SELECTOR...",
                     help="Tags to select: exact names, globs ('pr-*', 'rc?', '[0-9]*'), or a version after ==, <, >, "
                          "<=, >= ('<1.4')."),
        click.option("-re", "--regex", "regex", cls=GreedyOption, multiple=True, metavar="REGEX...",
                     help="Tags to select by Python regular expression, matched from the start of the tag."),
        click.option("-x", "--exclude", "exclude", cls=GreedyOption, multiple=True, metavar="TAG|SELECTOR...",
                     help="Tags whose digests are never selected (names, globs or version selectors)."),
        click.option("-xre", "--exclude-regex", "exclude_regex", cls=GreedyOption, multiple=True,
                     metavar="REGEX...", help="Tags whose digests are never selected, by regular expression."),
        click.option("--no-match-all-tags", is_flag=True,
                     help="Select a digest even if another tag of it in the repository is not selected."),
        click.option("--raise-intersecting-tag", is_flag=True,
                     help="Fail, naming the tags, when a selected digest has tags outside the selection."),
        # Retention (docs/retention.md): ANDed with the selectors above, which they make optional.
        click.option("--keep-latest", type=int, metavar="N",
                     help="Per repository, keep the newest N images; select the older ones."),
        click.option("--order-by", type=click.Choice(["version", "created"]),
                     help="How --keep-latest ranks: by version (default) or by build time."),
        click.option("--older-than", metavar="AGE", help="Images built before AGE ago (12h, 90d, 4w) or a date."),
        click.option("--newer-than", metavar="AGE", help="Images built after AGE ago (12h, 90d, 4w) or a date."),
        click.option("--untagged", is_flag=True,
                     help="Select the manifests no tag and no index holds, instead of tags."),
        # Retention by use (issue 15): from the pulls `regdb listen` records.
        click.option("--not-pulled-for", metavar="AGE",
                     help="Images nobody pulled for AGE (30d); needs `regdb listen`."),
        click.option("--keep-pulled-within", metavar="AGE", help="Never select an image pulled within AGE (7d)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def omit_digest_tags_option(func):
    return click.option("--omit-digest-tags", is_flag=True,
                        help="Hide sha256-* tags (cosign signatures, attestations, SBOMs; OCI referrers).")(func)


def format_option(func):
    from regdb.cli.output import FORMATS

    return click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
                        help="text (docker-registry-util's columns), table, json, ndjson, csv or tsv.")(func)


def echo_listing(settings: Settings, rows, columns, fmt: str, *, text_columns=None) -> None:
    """Every list and query command prints through here: the one renderer, or the count with --count."""
    from regdb.cli import output

    if settings.count:
        click.echo(len(rows))
        return
    for chunk in output.render(rows, columns, fmt, text_columns=text_columns):
        click.echo(chunk, nl=False)


def warn_missing_repos(names) -> None:
    for name in names:
        click.echo(f"warning: repository {escape_controls(name)} not found", err=True)


def as_usage_error(call, *args, **kwargs):
    """Run ``call``; a SelectorError becomes a usage error of this command (its usage line, exit 2)."""
    try:
        return call(*args, **kwargs)
    except SelectorError as error:
        raise click.UsageError(worded(error), click.get_current_context()) from None


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            text = f"{count} bytes" if unit == "bytes" else f"{value:.1f} {unit} ({count} bytes)"
            return text
        value /= 1024
    return f"{count} bytes"
