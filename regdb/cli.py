"""The command line: ``regdb`` and, for docker-registry-util's users, ``dregutil``.

A thin layer: parse options, call the library, render. The library raises named errors; this module turns
them into one line on stderr and exit status 1 (a failure) or 2 (a usage mistake). No tracebacks.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field

import click

from . import __version__
from .client import RegistryClient, normalize_url
from .db import MEMORY
from .errors import RegdbError, SelectorError
from .inventory import Inventory, default_db_path

log = logging.getLogger("regdb")

LOG_LEVELS = ["debug", "info", "warning", "error", "critical"]


class GreedyOption(click.Option):
    """An option that takes one or more values, as argparse's ``nargs='+'``: ``-t '<1.4' one``.

    docker-registry-util was built on argparse, and its users type ``-r a b -t x y``; click alone would
    need ``-t x -t y``. Both spellings work: values are gathered up to the next option.
    """

    def add_to_parser(self, parser, ctx):
        result = super().add_to_parser(parser, ctx)
        for name in self.opts:
            option = parser._long_opt.get(name) or parser._short_opt.get(name)
            if option is None:
                continue
            take_one = option.process

            def process(value, state, take_one=take_one):
                values = [value]
                while state.rargs and not _looks_like_option(state.rargs[0]):
                    values.append(state.rargs.pop(0))
                for each in values:
                    take_one(each, state)

            option.process = process
        return result


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
    _client: RegistryClient | None = field(default=None, repr=False)
    _inventories: dict = field(default_factory=dict, repr=False)

    # --- the registry -------------------------------------------------------------------------------------

    def registry_url(self) -> str:
        if not self.registry:
            raise click.UsageError("no registry given: use -reg/--registry or set REGISTRY")
        return normalize_url(self.registry)

    def client(self) -> RegistryClient:
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
        from .credentials import docker_credentials

        user, password = self.user, self.password
        if not user:
            found = docker_credentials(url)
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
        if self.client_cert and self.client_key:
            return (self.client_cert, self.client_key)
        return self.client_cert

    # --- the inventory ------------------------------------------------------------------------------------

    def db_target(self) -> str:
        if self.db in ("None", MEMORY):
            return MEMORY
        if self.db:
            return self.db
        return default_db_path(self.registry_url())

    def inventory(self, *, readonly: bool = False) -> Inventory:
        target = self.db_target()
        if target == MEMORY:
            readonly = False  # one throwaway inventory for the whole run
        key = (target, readonly)
        if key not in self._inventories:
            self._inventories[key] = Inventory(target, readonly=readonly)
        return self._inventories[key]

    def synced_inventory(self) -> Inventory:
        """The inventory for commands that read it: synced first on --refresh or if never synced."""
        inventory = self.inventory()
        url = self.registry_url()
        if self.refresh or inventory.last_synced(url) is None:
            run_sync(self, inventory, None)
        return inventory

    def close(self) -> None:
        for inventory in self._inventories.values():
            inventory.close()
        if self._client is not None:
            self._client.close()


class RegdbGroup(click.Group):
    """Turns the library's named errors into one line and an exit status, at the one place they surface."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SelectorError as error:
            raise click.UsageError(str(error), ctx) from None
        except RegdbError as error:
            raise click.ClickException(str(error)) from None
        except KeyboardInterrupt:
            click.echo("regdb: interrupted; the inventory keeps its last complete snapshot", err=True)
            ctx.exit(130)
        finally:
            if isinstance(ctx.obj, Settings):
                ctx.obj.close()


@click.group(cls=RegdbGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-reg", "--registry", envvar="REGISTRY", help="Registry: a host (https is assumed) or a URL.")
@click.option("-u", "--user", envvar="REGISTRY_USER", help="User for basic / token authentication.")
@click.option("-p", "--password", envvar="REGISTRY_PASSWORD", help="Password for that user.")
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
@click.version_option(__version__, "--version", prog_name="regdb")
@click.pass_context
def main(ctx, registry, user, password, digest_auth, client_cert, client_key, verify, db, refresh, count,
         no_raise_intersecting_repo, jobs, rate, use_get_manifest, log_level):
    """Mirror a Docker Registry v2 / OCI registry into an SQLite inventory, query it, clean it up safely.

    \b
      regdb -reg registry.example.com sync
      regdb -reg registry.example.com query-tags -r app -t '<1.4'
      regdb -reg registry.example.com remove-tags -r app -t '<1.4' --dry-run
      regdb --db registry_example_com.db sql "SELECT repo, count(*) FROM images GROUP BY repo"
    """
    setup_logging(log_level)
    ctx.obj = Settings(
        registry=registry, user=user, password=password, digest_auth=digest_auth, client_cert=client_cert,
        client_key=client_key, verify=verify, db=db, refresh=refresh, count=count, jobs=jobs, rate=rate,
        use_get_manifest=use_get_manifest, raise_intersecting_repo=not no_raise_intersecting_repo,
    )


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    try:
        from .redact import RedactingFilter

        handler.addFilter(RedactingFilter())
    except ImportError:  # pragma: no cover - redact ships with regdb
        pass
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))
    if level.lower() != "debug":
        logging.getLogger("urllib3").setLevel(logging.WARNING)


def run_sync(settings: Settings, inventory: Inventory, repos, *, quiet: bool = True):
    """Sync with a progress line on a terminal (stderr), nothing extra when piped."""
    started = time.monotonic()
    show = sys.stderr.isatty()

    def progress(repos_done: int, tags_seen: int) -> None:
        click.echo(f"\rsyncing {settings.client().name}: {repos_done} repositories, {tags_seen} tags",
                   err=True, nl=False)

    result = inventory.sync(settings.client(), repos or None, jobs=settings.jobs,
                            progress=progress if show else None)
    if show:
        click.echo("\r\033[K", err=True, nl=False)
    for name in result.missing_repos:
        click.echo(f"warning: repository {name} not found in {result.registry}", err=True)
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
    run_sync(settings, settings.inventory(), list(repos), quiet=False)


# --- listing and query commands (selectors) ------------------------------------------------------------------


# --- removal commands ----------------------------------------------------------------------------------------


# --- the inventory as a data source: sql, schema -------------------------------------------------------------


# --- retention: apply, untag ---------------------------------------------------------------------------------
