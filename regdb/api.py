"""``Inventory``: the Python API. Everything the CLI does, a script can do with this class.

    from regdb import Inventory, RegistryClient

    with Inventory("registry.db") as inventory:
        inventory.sync(RegistryClient("registry.example.com", auth=("me", "secret")))
        for row in inventory.query_tags("registry.example.com", ["app"], tags=["<1.4"]):
            print(row.repo, row.digest, row.tags)
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

from sqlalchemy import Engine, select

from regdb.inventory import models

from regdb.selection import selectors
from regdb.inventory.registries import find_registry, require_registry
from regdb.registry.reference import RegistryRef
from regdb.inventory.db import MEMORY, check_revision, create_inventory_engine, upgrade
from regdb.inventory.location import default_db_path  # noqa: F401 - part of the API (regdb.default_db_path)

if TYPE_CHECKING:  # the HTTP side (requests) is imported only by commands that talk to a registry
    from regdb.registry.client import RegistryClient
    from regdb.inventory.rawsql import SqlResult
    from regdb.inventory.sync import SyncResult


class Inventory:
    """An inventory of one or more registries in an SQLite file, ``:memory:``, or a SQLAlchemy URL."""

    def __init__(self, db: str | os.PathLike = MEMORY, *, readonly: bool = False):
        self.target = str(db)
        self.readonly = readonly
        self.engine: Engine = create_inventory_engine(self.target, readonly=readonly)
        # Before the first connection, so every connection has regdb_match (selectors and hand-written SQL).
        selectors.install_sql_functions(self.engine)
        try:
            if readonly:
                check_revision(self.engine)
            else:
                upgrade(self.engine)
        except BaseException:
            self.engine.dispose()
            raise

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Inventory":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- registries -----------------------------------------------------------------------------------

    def registry_id(self, registry: str | RegistryRef) -> int | None:
        """The id of a registry in this inventory, or None if never synced (the rule: regdb.inventory.registries)."""
        with self.engine.connect() as conn:
            return find_registry(conn, registry)

    def last_synced(self, registry: str | RegistryRef):
        table = models.Registry.__table__
        with self.engine.connect() as conn:
            found = find_registry(conn, registry)
            if found is None:
                return None
            return conn.execute(select(table.c.last_synced_at).where(table.c.id == found)).scalar()

    def sync(
        self,
        client: RegistryClient | str,
        repos: Iterable[str] | None = None,
        *,
        jobs: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        watch: Callable | None = None,
    ) -> SyncResult:
        """Mirror the registry (all of it, or only ``repos``) into this inventory as one snapshot.

        ``progress(repos_done, tags_seen)`` after each repository; ``watch(sync.SyncCounts)`` after each tag."""
        from regdb.registry.client import RegistryClient
        from regdb.inventory.sync import sync_registry

        if isinstance(client, str):
            client = RegistryClient(client, jobs=jobs or 16)
        return sync_registry(self.engine, client, repos=repos, jobs=jobs or client.jobs, progress=progress, watch=watch)

    # --- listing and querying (selectors) -------------------------------------------------------------

    def query_tags(self, registry: str | RegistryRef, repos, tags=(), regex=(), exclude=(), exclude_regex=(), *,
                   match_all_tags: bool = True, raise_intersecting_tag: bool = False,
                   raise_intersecting_repo: bool = True):
        """Select (repository, digest) pairs by tag, as ``dregutil query-tags`` does; returns a ``Selection``.

        ``tags`` are exact names or version comparisons (``"<1.4"``, ``">=v2.0"``, ``"==1.0"``), ``regex`` are
        patterns matched from the start of the tag; ``exclude`` / ``exclude_regex`` protect the digests of the
        tags they match. A digest is selected only when every tag of it in that repository is selected (unless
        ``match_all_tags=False``); one that another repository also holds raises ``IntersectionError`` (or is
        left out with ``raise_intersecting_repo=False``). ``Selection.missing_repos`` lists the ``repos`` this
        inventory does not hold. Raises ``SelectorError`` for an invalid version or regular expression.

            for row in inventory.query_tags("registry.example.com", ["app"], tags=["<1.4"], exclude=["1.2"]):
                print(row.repo, row.digest, row.tags, row.media_type, row.size)
        """

        with self._connect_for_selecting() as conn:
            registry_id = self._selected_registry(conn, registry)
            return selectors.query_tags(
                conn, registry_id, repos, tags, regex, exclude, exclude_regex, match_all_tags=match_all_tags,
                raise_intersecting_tag=raise_intersecting_tag, raise_intersecting_repo=raise_intersecting_repo,
            )

    def query_repos(self, registry: str | RegistryRef, repos, *, raise_intersecting_repo: bool = True):
        """Every tagged digest of ``repos`` as a ``Selection`` (``dregutil query-repos``), with the repository
        check of ``query_tags``."""

        with self._connect_for_selecting() as conn:
            registry_id = self._selected_registry(conn, registry)
            return selectors.query_repos(conn, registry_id, repos, raise_intersecting_repo=raise_intersecting_repo)

    def list_repos(self, registry: str | RegistryRef) -> list[str]:
        """Names of the repositories with at least one tag, sorted."""

        with self._connect_for_selecting() as conn:
            registry_id = self._selected_registry(conn, registry)
            return selectors.list_repos(conn, registry_id)

    def list_tags(self, registry: str | RegistryRef, repos=None, *, reverse: bool = False):
        """``TagRow(repo, tag, digest)`` for every tag (of ``repos`` when given): repositories by name, tags in
        version order with tags that are no version after them; ``reverse`` reverses each repository's tags.
        The result's ``missing_repos`` lists the ``repos`` this inventory does not hold."""

        with self._connect_for_selecting() as conn:
            registry_id = self._selected_registry(conn, registry)
            return selectors.list_tags(conn, registry_id, repos, reverse=reverse)

    def _connect_for_selecting(self):

        # regdb_match (the regular expressions) on every new connection, for hand-written SQL too.
        selectors.install_sql_functions(self.engine)
        return self.engine.connect()

    def _selected_registry(self, conn, registry: str | RegistryRef) -> int:
        """The id of a registry; ``RegistryNotInInventory`` when it was never synced."""
        return require_registry(conn, registry, target=self.target)

    # --- removal --------------------------------------------------------------------------------------

    def plan_removal(self, client: RegistryClient, selection, *, refresh: bool = True, jobs: int | None = None,
                     max_inventory_age=None, only_named_repos: bool = False, announce=None):
        """The ``removal.Plan`` for deleting ``selection`` from the registry ``client`` talks to.

        ``selection``: a ``removal.TagQuery`` / ``removal.RepoQuery`` (the selection is made again on fresh
        facts; a ``RepoQuery`` also plans the repositories' untagged manifests), or a ``Selection`` from
        ``query_tags`` / ``query_repos`` (kept only where the registry still shows the tags it was selected
        with). ``refresh=False`` plans on the inventory as it is instead of re-reading those repositories.

        The cross-repository rule needs the whole registry: without a complete sync of it at most
        ``max_inventory_age`` old (a ``timedelta``, default a day) the registry is synced whole first (``announce``
        gets one line saying so); a registry without ``_catalog`` raises ``NoCatalog`` unless
        ``only_named_repos=True`` accepts checking only the repositories the inventory holds.
        ``plan.skipped`` says what the rules kept and why.

            from regdb.cleanup.plan import TagQuery
            plan = inventory.plan_removal(client, TagQuery(["app"], tags=["<1.4"]))
            print(len(plan.rows), plan.bytes_freed)
        """
        from regdb.cleanup.plan import plan_fresh

        more = {} if max_inventory_age is None else {"max_inventory_age": max_inventory_age}
        return plan_fresh(self.engine, client, selection, refresh=refresh, jobs=jobs or client.jobs,
                                  only_named_repos=only_named_repos, announce=announce, **more)

    def remove(self, client: RegistryClient, plan_or_selection, *, jobs: int | None = None, refresh: bool = True,
               max_delete: int | None = None):
        """Delete a plan (or plan ``selection`` first, as ``plan_removal``); returns a ``removal.RemovalResult``.

        Right before deleting, the tags of every planned repository are read again and a manifest whose tags
        changed is skipped (``result.skipped``). Every outcome is recorded in the ``deletions`` table together
        with the inventory change. Raises ``DeleteDisabled`` / ``ScopeRefused`` when the registry refuses to
        delete at all, ``RemovalIncomplete`` (``.result``) when some planned deletions failed,
        ``PlanTooLarge`` before anything is deleted when the plan holds more than ``max_delete`` manifests.

            result = inventory.remove(client, plan)
            print(len(result.deleted), result.bytes_freed)
        """
        from regdb.cleanup.execute import remove
        from regdb.cleanup.plan import Plan

        plan = plan_or_selection
        if not isinstance(plan, Plan):
            plan = self.plan_removal(client, plan_or_selection, refresh=refresh, jobs=jobs)
        return remove(self.engine, client, plan, jobs=jobs or client.jobs, max_delete=max_delete)

    # --- raw SQL --------------------------------------------------------------------------------------

    def sql(self, statement: str, params: Mapping[str, str] | None = None, *,
            timeout: float | None = None) -> SqlResult:
        """Run one SQL statement read-only, whatever this inventory was opened for: ``ReadOnlyViolation`` if
        it tries to change anything, ``SqlError`` (the database's message) if it fails. ``:name`` parameters
        are bound from ``params`` as text. Iterate the result for the rows; close it, or use ``with``.

            with inventory.sql("SELECT repo, total_bytes FROM repo_stats WHERE registry = :r",
                               {"r": "registry.example.com"}) as result:
                print(result.columns)
                for row in result:
                    print(row)
        """
        from regdb.inventory.rawsql import run_sql

        # regdb_match(pattern, value) in hand-written SQL on SQLite, as the selectors use it.
        # ``timeout``: seconds, then SqlTimeout (``regdb sql --timeout``); None for no limit.
        return run_sql(self.engine, statement, params, prepare=selectors.ensure_sql_functions, timeout=timeout)

    # --- retention ------------------------------------------------------------------------------------

    def query_retention(self, registry: str | RegistryRef, repos, tags=(), regex=(), exclude=(), exclude_regex=(), *,
                        retention, match_all_tags: bool = True, raise_intersecting_tag: bool = False,
                        raise_intersecting_repo: bool = True):
        """``query_tags`` with retention selectors: ``retention`` is a ``regdb.selection.retention.Retention`` (keep the
        newest N per repository, by age, untagged manifests). ``tags`` / ``regex`` may then be empty (every tag);
        signature tags (``sha256-*``) are never selected by it. Returns a ``Selection``.

            from regdb.selection.retention import Retention
            old = inventory.query_retention("registry.example.com", ["app"], retention=Retention(keep_latest=10))
            leftovers = inventory.query_retention("registry.example.com", ["app"],
                                                  retention=Retention(untagged=True, older_than="30d"))
        """

        with self._connect_for_selecting() as conn:
            registry_id = self._selected_registry(conn, registry)
            return selectors.query_tags(
                conn, registry_id, repos, tags, regex, exclude, exclude_regex, match_all_tags=match_all_tags,
                raise_intersecting_tag=raise_intersecting_tag, raise_intersecting_repo=raise_intersecting_repo,
                retention=retention,
            )

    def signatures(self, registry: str | RegistryRef, pairs) -> dict:
        """(repo, digest) -> the signature tags (``sha256-<hex>.sig`` ...) and OCI referrers of that digest in
        that repository, for the given (repo, digest) pairs (``Selected`` rows work: ``.repo``, ``.digest``)."""
        from regdb.selection.retention import signatures_of

        wanted = [(p.repo, p.digest) if hasattr(p, "digest") else tuple(p) for p in pairs]
        with self._connect_for_selecting() as conn:
            return signatures_of(conn, self._selected_registry(conn, registry), wanted)

    def plan_policy(self, client: RegistryClient, policy, *, refresh: bool = True, jobs: int | None = None,
                    raise_intersecting_repo: bool = True, announce=None):
        """The ``policy.PolicyPlan`` of a retention policy (``regdb.cleanup.policy.load_policy``): one removal plan
        across the registry, with each rule's report of what it removes and what it keeps and why. Delete it
        with ``inventory.remove(client, policy_plan.plan)``.

            from regdb.cleanup.policy import load_policy
            planned = inventory.plan_policy(client, load_policy("retention.toml"))
            result = inventory.remove(client, planned.plan)
        """
        from regdb.cleanup.policy import plan_policy

        if isinstance(policy, (str, os.PathLike)):
            from regdb.cleanup.policy import load_policy

            policy = load_policy(policy)
        self._ensure_synced(client, jobs)
        return plan_policy(self.engine, client, policy, refresh=refresh, jobs=jobs or client.jobs,
                           raise_intersecting_repo=raise_intersecting_repo, announce=announce)

    def plan_untag(self, client: RegistryClient, repo: str, tags, *, method: str = "auto", refresh: bool = True,
                   jobs: int | None = None):
        """The ``untag.UntagPlan`` for removing ``tags`` from ``repo`` while keeping their digests and the other
        tags on them; ``method`` is ``auto`` (DELETE by tag, else a placeholder), ``delete-tag`` or
        ``placeholder``. Carry it out with ``inventory.untag(client, plan)``."""
        from regdb.cleanup.untag import plan_untag

        return plan_untag(self.engine, client, repo, tags, method=method, refresh=refresh, jobs=jobs or client.jobs)

    def untag(self, client: RegistryClient, plan):
        """Remove the planned tags; returns an ``untag.UntagResult``, every outcome recorded in ``deletions``
        (outcome ``untagged``). Raises ``DeleteDisabled`` / ``ScopeRefused`` before touching any tag when the
        registry will not let us push and delete, ``RemovalIncomplete`` when an untag failed."""
        from regdb.cleanup.untag import untag

        return untag(self.engine, client, plan)

    def _ensure_synced(self, client: RegistryClient, jobs: int | None) -> None:
        """A policy matches repositories by pattern, so the inventory must know them all: the registry is synced
        whole first unless it ever was (a sync of named repositories does not count)."""
        syncs = models.Sync.__table__
        registries = models.Registry.__table__
        with self.engine.connect() as conn:
            whole = conn.execute(
                select(syncs.c.id)
                .join(registries, registries.c.id == syncs.c.registry_id)
                .where(registries.c.url == client.url, syncs.c.status == "ok", syncs.c.scope.is_(None))
                .limit(1)
            ).first()
        if whole is None:
            self.sync(client, jobs=jobs)
