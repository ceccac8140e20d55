"""The command line: ``regdb`` (docker-registry-util's users have ``dregutil``, in regdb/dregutil.py).

A thin layer: parse options, call the library, render. The library raises named errors; this module turns
them into one line on stderr and exit status 1 (a failure) or 2 (a usage mistake). No tracebacks.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import click

from . import __version__
from .address import normalize_url
from .errors import RegdbError, RemovalIncomplete, RemovalInterrupted, SelectorError

if TYPE_CHECKING:  # imported where used: --version and --help load neither SQLAlchemy nor requests
    from .client import RegistryClient
    from .inventory import Inventory

# regdb.db.MEMORY, spelled out: naming it must not import SQLAlchemy (tests/test_startup.py holds them equal).
MEMORY = ":memory:"
from .output import escape_controls

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

    def registry_url(self) -> str:
        if not self.registry:
            raise click.UsageError("no registry given: use -reg/--registry or set REGISTRY")
        return normalize_url(self.registry)

    def client(self) -> "RegistryClient":
        from .client import RegistryClient

        if self._client is None:
            url = self.registry_url()
            self._client = RegistryClient(
                url,
                auth=self._auth(url),
                verify=self._verify(),
                cert=self._cert(),
                jobs=self.jobs,
                rate=self.rate,
                use_get_manifest=self.use_get_manifest,
            )
        return self._client

    def _auth(self, url: str):
        from .auth import build_auth
        from .credentials import DockerConfigUnreadable, docker_credentials

        user, password = self.user, self.password
        if password is None and self.password_source is not None:
            password = self.password_source()
        if not user:
            try:
                found = docker_credentials(url)
            except DockerConfigUnreadable as error:
                # Most registries regdb talks to need no credentials: only when one asks for them does the
                # unreadable file matter, and its 401 then follows this warning.
                log.warning("%s; going on without its credentials", error)
                found = None
            if found:
                user, password = found
        return build_auth(user, password, digest=self.digest_auth)

    def _verify(self):
        if self.verify is None:
            return True
        if self.verify == "None":
            log.warning("TLS certificate verification is disabled (-v None)")
            return False
        return self.verify

    def _cert(self):
        if self.client_key and not self.client_cert:
            raise click.UsageError("-key/--client-key needs -cert/--client-cert")
        if self.client_cert and self.client_key:
            return (self.client_cert, self.client_key)
        return self.client_cert

    # --- the inventory ------------------------------------------------------------------------------------

    def db_target(self) -> str:
        if self.db in ("None", MEMORY):
            return MEMORY
        if self.db:
            return self.db
        from .inventory import default_db_path

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
            from .inventory import Inventory

            self._inventories[key] = Inventory(target, readonly=readonly)
        return self._inventories[key]

    def synced_inventory(self) -> Inventory:
        """The inventory for commands that read it: synced first on --refresh or if never synced."""
        self.reach_before_creating()
        inventory = self.inventory()
        url = self.registry_url()
        if self.refresh or inventory.last_synced(url) is None:
            run_sync(self, inventory, None)
        return inventory

    def reader(self):
        """The inventory for the read-only listings (list-repo-names, list-tag-names, query-repos, query-tags):
        an SQLite file already synced from this registry is read with the standard library's sqlite3, without
        importing SQLAlchemy (regdb.selection.sqlite_reader, issue 17); anything else, or --refresh, is
        ``synced_inventory()``, which the reader also hands what it does not answer itself. With ``-l debug``
        too: that logs the statements regdb.selectors runs, with their values inlined to paste into sqlite3."""
        target = self.db_target()
        if not self.refresh and target != MEMORY and "://" not in target and not log.isEnabledFor(logging.DEBUG):
            from .selection.sqlite_reader import open_reader

            key = (target, "sqlite3")
            if key not in self._inventories:
                found = open_reader(target, self.registry_url(), fallback=self.synced_inventory)
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


class RegdbGroup(click.Group):
    """Turns the library's named errors into one line and an exit status, at the one place they surface."""

    def make_context(self, info_name, args, parent=None, **extra):
        # A Ctrl-C while the options are parsed: click alone would print "Aborted!" and exit 1.
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except KeyboardInterrupt:
            from .entry import interrupted

            raise click.exceptions.Exit(interrupted(info_name or "regdb")) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SelectorError as error:
            raise click.UsageError(str(error), ctx) from None
        except RegdbError as error:
            raise click.ClickException(str(error)) from None
        except Exception as error:  # noqa: BLE001 - the database's own failures, on input we do not control
            from .errors import database_error

            mapped = database_error(error)
            if mapped is None:
                raise
            raise click.ClickException(str(mapped)) from None
        except KeyboardInterrupt:
            from .entry import interrupted

            ctx.exit(interrupted(ctx.find_root().info_name or "regdb",
                                 "interrupted; the inventory keeps its last complete snapshot"))
        finally:
            if isinstance(ctx.obj, Settings):
                ctx.obj.close()


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
@click.option("--count", is_flag=True, help="Print the number of results instead of the results.")
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


def apply_profile(ctx, settings: Settings, named: str | None) -> None:
    """Fill in what the flags left open from the config file's profiles (regdb/profiles.py has the order)."""
    from .profiles import SETTINGS, load_config, resolve

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
        from .redact import RedactingFilter

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


def run_sync(settings: Settings, inventory: Inventory, repos, *, quiet: bool = True):
    """Sync with a progress bar on a terminal (stderr: tags done of the total, rate, ETA), nothing extra when
    piped or at -l debug."""
    started = time.monotonic()
    # A bar only for a person watching: not in a pipe, and not over -l debug's log lines.
    watch = None
    if sys.stderr.isatty() and not log.isEnabledFor(logging.DEBUG):
        from .progress import SyncProgress

        watch = SyncProgress(settings.client().name, sys.stderr)
    try:
        result = inventory.sync(settings.client(), repos or None, jobs=settings.jobs, watch=watch)
    finally:
        if watch is not None:
            watch.close()
    for name in result.missing_repos:
        click.echo(f"warning: repository {escape_controls(name)} not found in {result.registry}", err=True)
    if not quiet:
        click.echo(
            f"synced {result.registry}: {result.repos} repositories, {result.tags} tags, "
            f"{result.digests_fetched} new manifests, {result.requests} requests in "
            f"{time.monotonic() - started:.1f} s"
        )
    return result


@main.command()
@click.argument("repos", nargs=-1)
@click.pass_obj
def sync(settings: Settings, repos):
    """Mirror the registry into the inventory, as one snapshot.

    With REPO names, only those repositories are synced (for registries without a catalog, such as
    Docker Hub or GHCR). A re-sync only lists and resolves tags: manifests are fetched once, ever.

    \b
      regdb -reg registry.example.com sync
      regdb -reg ghcr.io -u me -p "$TOKEN" sync me/app me/tool
    """
    settings.reach_before_creating()
    run_sync(settings, settings.inventory(), list(repos), quiet=False)


# --- listing and query commands (selectors) ------------------------------------------------------------------

# The columns of a query row in every format; the seed's text shows only "repo  digest".
QUERY_COLUMNS = ("repo", "digest", "tags", "media_type", "size")
QUERY_TEXT_COLUMNS = ("repo", "digest")


def repo_option(func):
    """``-r REPO...``: the repositories a query or removal works on (required, argparse-style greedy)."""
    return click.option("-r", "--repo", "repos", cls=GreedyOption, at_least_one=True, multiple=True,
                        required=True, metavar="REPO...", help="Repositories (one or more).")(func)


def selector_options(func):
    """The tag selectors of ``query-tags`` and ``remove-tags``, defined once (docker-registry-util's flags)."""
    options = [
        click.option("-t", "--tags", "--tag", "tags", cls=GreedyOption, multiple=True, metavar="TAG|SELECTOR...",
                     help="Tags to select: exact names, or a version after ==, <, >, <=, >= ('<1.4')."),
        click.option("-re", "--regex", "regex", cls=GreedyOption, multiple=True, metavar="REGEX...",
                     help="Tags to select by Python regular expression, matched from the start of the tag."),
        click.option("-x", "--exclude", "exclude", cls=GreedyOption, multiple=True, metavar="TAG|SELECTOR...",
                     help="Tags whose digests are never selected (names or version selectors)."),
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
        click.option("--not-pulled-for", metavar="AGE", help="Images nobody pulled for AGE (30d); needs `regdb listen`."),
        click.option("--keep-pulled-within", metavar="AGE", help="Never select an image pulled within AGE (7d)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def omit_digest_tags_option(func):
    return click.option("--omit-digest-tags", is_flag=True,
                        help="Hide sha256-* tags (cosign signatures, attestations, SBOMs; OCI referrers).")(func)


def format_option(func):
    from .output import FORMATS

    return click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
                        help="text (docker-registry-util's columns), table, json, ndjson, csv or tsv.")(func)


def echo_listing(settings: Settings, rows, columns, fmt: str, *, text_columns=None) -> None:
    """Every list and query command prints through here: the one renderer, or the count with --count."""
    from . import output

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
        raise click.UsageError(str(error), click.get_current_context()) from None


@main.command("list-repo-names")
@format_option
@click.pass_obj
def list_repo_names(settings: Settings, fmt):
    """List the repositories that have at least one tag, sorted.

    \b
      regdb -reg registry.example.com list-repo-names
      regdb -reg registry.example.com list-repo-names --format json
    """
    names = settings.reader().list_repos(settings.registry_url())
    echo_listing(settings, [(name,) for name in names], ("repo",), fmt)


@main.command("list-tag-names")
@click.argument("repos", nargs=-1, metavar="[REPO]...")
@click.option("--reverse-sort", is_flag=True, help="Reverse the order of each repository's tags (newest first).")
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
    from urllib.parse import urlsplit

    url = settings.registry_url()
    rows = settings.reader().list_tags(url, list(repos) or None, reverse=reverse_sort)
    warn_missing_repos(rows.missing_repos)
    if omit_digest_tags:
        rows = without_digest_tags(rows)
    if image_names:
        host = urlsplit(url).netloc
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
    selection = settings.reader().query_repos(
        settings.registry_url(), list(repos), raise_intersecting_repo=settings.raise_intersecting_repo
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
    from .selection.query import parse_query

    # Bad selectors are reported before anything is synced or read.
    retention = as_usage_error(retention_of, keep_latest, order_by, older_than, newer_than, untagged,
                               not_pulled_for, keep_pulled_within)
    if retention is None:
        as_usage_error(parse_query, tags, regex, exclude, exclude_regex)
    inventory = settings.reader() if retention is None else settings.synced_inventory()
    query, more = inventory.query_tags, {}
    if retention is not None:
        query, more = inventory.query_retention, {"retention": retention}
    selection = as_usage_error(
        query, settings.registry_url(), list(repos), tags, regex, exclude,
        exclude_regex, match_all_tags=not no_match_all_tags, raise_intersecting_tag=raise_intersecting_tag,
        raise_intersecting_repo=settings.raise_intersecting_repo, **more,
    )
    warn_missing_repos(selection.missing_repos)
    echo_left_out(selection.skipped, fmt)
    if omit_digest_tags:
        selection = without_digest_tags(selection)
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
    from .policy import RetentionQuery

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
    from .removal import RepoQuery

    query = RepoQuery(repos, raise_intersecting_repo=settings.raise_intersecting_repo)
    run_removal(settings, query, dry_run=dry_run, yes=yes, no_refresh=no_refresh, fmt=fmt, max_delete=max_delete,
                max_inventory_age=max_inventory_age, only_named_repos=only_named_repos)


PLAN_COLUMNS = ["repo", "digest", "tags", "media_type", "reason", "bytes"]


def settle_in_flight(inventory, client, *, dry_run: bool) -> None:
    from .cli_removal import settle_in_flight as settle

    if not dry_run:
        settle(inventory, client)


def asks_for_confirmation(yes: bool) -> bool:
    """Whether to ask before deleting; without --yes and a terminal, exits 2 (see cli_removal)."""
    from .cli_removal import confirm_or_refuse

    return confirm_or_refuse(yes)


def run_removal(settings: Settings, query, *, dry_run: bool, yes: bool, no_refresh: bool, fmt: str,
                max_delete: int | None = None, max_inventory_age: str = "24h",
                only_named_repos: bool = False) -> None:
    import json

    from .retention import parse_duration

    max_age = as_usage_error(parse_duration, max_inventory_age)
    if no_refresh or settings.refresh:
        # --refresh already re-read the whole registry; --no-refresh plans on the inventory as it is.
        inventory, refresh = settings.synced_inventory(), False
    else:
        inventory, refresh = settings.inventory(), True
    client = settings.client()
    settle_in_flight(inventory, client, dry_run=dry_run)
    plan = inventory.plan_removal(client, query, refresh=refresh, jobs=settings.jobs, max_inventory_age=max_age,
                                  only_named_repos=only_named_repos, announce=lambda line: click.echo(line, err=True))
    for name in plan.missing_repos:
        click.echo(f"warning: repository {escape_controls(name)} not found in {plan.registry_name}", err=True)
    if fmt != "json":
        echo_skipped(plan.skipped)
    if dry_run:
        if fmt == "json":
            click.echo(json.dumps(plan.as_dict(), indent=2))
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


def confirm_and_remove(settings: Settings, inventory, client, plan, *, fmt: str, confirm: bool,
                       max_delete: int | None = None) -> None:
    """Ask (when regdb must), delete the plan, print the result; a partial failure prints it, then fails."""
    from .cli_removal import interrupted
    from .cleanup.execute import check_max_delete

    check_max_delete(plan, max_delete)  # before the question: a plan that will be refused is not asked about
    if confirm:
        click.confirm(
            f"Delete these {len(plan.rows)} manifests from {plan.registry_name}?", abort=True, err=True
        )
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
    from . import output

    if not plan.rows:
        click.echo("nothing to remove", err=err)
        return
    shown = [dict(row.as_dict(), reason=row.why) for row in plan.rows]
    for chunk in output.render(shown, PLAN_COLUMNS, "table"):
        click.echo(chunk, nl=False, err=err)
    repos = len(plan.repos)
    click.echo(
        f"{len(plan.rows)} manifest{'s' if len(plan.rows) != 1 else ''} in {repos} "
        f"repositor{'ies' if repos != 1 else 'y'}; a garbage collection would then free "
        f"{human_bytes(plan.bytes_freed)}",
        err=err,
    )


def echo_result(result, fmt: str, *, left_out=()) -> None:
    echo_outcomes(
        result, fmt, "digest", left_out=left_out, summary=
        f"deleted {len(result.deleted)}, skipped {len(result.skipped)}, failed {len(result.failed)} "
        f"(run {result.run_id}); a garbage collection would now free {human_bytes(result.bytes_freed)}",
    )


def echo_outcomes(result, fmt: str, what: str, summary: str, *, left_out=()) -> None:
    """A removal's or untag's result: one JSON document, or the rows that were not done and a summary line.

    ``left_out``: what the selection rules and the plan kept (``Plan.skipped``), in JSON as ``left_out``
    (``skipped`` there are the planned deletions skipped at the last check); text prints it with the plan."""
    import json

    from . import output

    if fmt == "json":
        document = result.as_dict()
        if left_out:
            document["left_out"] = [item.as_dict() for item in left_out]
        click.echo(json.dumps(document, indent=2))
        return
    problems = [o.as_dict() for o in result.skipped + result.failed]
    if problems:
        for chunk in output.render(problems, ["outcome", "repo", what, "error"], "text"):
            click.echo(chunk, nl=False)
    click.echo(summary)


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            text = f"{count} bytes" if unit == "bytes" else f"{value:.1f} {unit} ({count} bytes)"
            return text
        value /= 1024
    return f"{count} bytes"


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

    Reads the inventory as it is (--db, or the file named after --registry): never contacts the registry,
    never syncs. Statements that would write, ATTACH a database or change a pragma are refused. The views
    images, digest_usage, repo_stats and blob_usage are the stable interface; 'regdb schema' lists them.

    \b
      regdb --db registry.db sql "SELECT repo, total_bytes FROM repo_stats ORDER BY total_bytes DESC LIMIT 5"
      regdb --db registry.db sql --format csv "SELECT * FROM images WHERE repo = :repo" --param repo=app
    """
    from . import output

    inventory = settings.inventory(readonly=True)
    with inventory.sql(statement, params, timeout=timeout) as result:
        if settings.count:
            click.echo(sum(1 for _ in result))
            return
        if not result.columns:  # a statement that answers nothing (a pragma without output)
            return
        for chunk in output.render(result, result.columns, fmt):
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
    from . import output
    from .rawsql import describe_schema

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
    from .retention import Retention

    return Retention(keep_latest=keep_latest, order_by=order_by, older_than=older_than, newer_than=newer_than,
                     untagged=untagged, not_pulled_for=not_pulled_for, keep_pulled_within=keep_pulled_within)


def without_digest_tags(rows):
    """--omit-digest-tags: listing rows without ``sha256-*`` tags (query rows: such tags dropped from a row,
    and a row left with none dropped, unless it had no tag to begin with)."""
    import dataclasses

    from .retention import is_digest_tag

    kept = []
    for row in rows:
        if hasattr(row, "tags"):
            tags = tuple(tag for tag in row.tags if not is_digest_tag(tag))
            if tags or not row.tags:
                kept.append(dataclasses.replace(row, tags=tags))
        elif not is_digest_tag(row.tag):
            kept.append(row)
    result = type(rows)(kept)
    result.missing_repos = list(getattr(rows, "missing_repos", []))
    return result


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
    import json

    from .policy import load_policy

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
    if fmt != "json":
        echo_skipped(plan.skipped)  # what the plan itself keeps (an index lists it); the rules' keeps follow
    if dry_run or not plan.rows:
        if fmt == "json":
            click.echo(json.dumps(planned.as_dict(), indent=2))
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
    from . import output

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
    repos = len(plan.repos)
    click.echo(
        f"{len(plan.rows)} manifest{'s' if len(plan.rows) != 1 else ''} in {repos} "
        f"repositor{'ies' if repos != 1 else 'y'}; a garbage collection would then free "
        f"{human_bytes(plan.bytes_freed)}",
        err=err,
    )


@main.command()
@click.option("-r", "--repo", "repo", required=True, metavar="REPO", help="The repository.")
@click.option("-t", "--tag", "tags", cls=GreedyOption, multiple=True, required=True, metavar="TAG...",
              help="Tags to remove (exact names).")
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
    import json

    from . import output
    from .errors import RemovalIncomplete

    if no_refresh or settings.refresh:
        inventory, refresh = settings.synced_inventory(), False
    else:
        inventory, refresh = settings.inventory(), True
    client = settings.client()
    settle_in_flight(inventory, client, dry_run=dry_run)
    plan = inventory.plan_untag(client, repo, tags, method=method, refresh=refresh, jobs=settings.jobs)

    def show(err: bool = False) -> None:
        for chunk in output.render([row.as_dict() for row in plan.rows], ["repo", "tag", "digest", "other_tags"],
                                   "table"):
            click.echo(chunk, nl=False, err=err)
        click.echo(f"method: {plan.method} ({plan.why})", err=err)

    if dry_run:
        if fmt == "json":
            click.echo(json.dumps(plan.as_dict(), indent=2))
        else:
            show()
            click.echo("dry run: nothing untagged")
        return
    confirm = asks_for_confirmation(yes)
    if max_delete is not None and len(plan.rows) > max_delete:
        raise click.ClickException(f"the plan untags {len(plan.rows)} tags, more than the limit of {max_delete} "
                                   "(--max-delete): nothing untagged")
    if fmt == "text" or confirm:
        show(err=fmt != "text")
    if confirm:
        click.confirm(f"Remove these {len(plan.rows)} tags from {repo}?", abort=True, err=True)
    try:
        result = inventory.untag(client, plan)
    except RemovalIncomplete as error:
        echo_untag_result(error.result, fmt)
        raise
    echo_untag_result(result, fmt)


def echo_untag_result(result, fmt: str) -> None:
    echo_outcomes(
        result, fmt, "tag",
        f"untagged {len(result.untagged)}, skipped {len(result.skipped)}, failed {len(result.failed)} "
        f"(run {result.run_id})",
    )


from . import cli_removal  # noqa: E402,F401 - registers restore (removal safety, issue #12)
from . import cli_live  # noqa: E402,F401 - registers listen, history, changes and status (issue 15)
from . import cli_du  # noqa: E402,F401 - regdb du (registers itself on main)
from . import cli_bi  # noqa: E402,F401 - regdb datasette-metadata, regdb report (issue 18)
