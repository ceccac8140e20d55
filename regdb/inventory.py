"""``Inventory``: the Python API. Everything the CLI does, a script can do with this class.

    from regdb import Inventory, RegistryClient

    with Inventory("registry.db") as inventory:
        inventory.sync(RegistryClient("registry.example.com", auth=("me", "secret")))
        for row in inventory.query_tags("registry.example.com", ["app"], tags=["<1.4"]):
            print(row.repo, row.digest, row.tags)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Iterable

from sqlalchemy import Engine, select

from . import models
from .client import RegistryClient, normalize_url
from .db import MEMORY, check_revision, create_inventory_engine, upgrade
from .sync import SyncResult, sync_registry


def default_db_path(registry: str) -> str:
    """The inventory file named after the registry, as docker-registry-util named its cache:
    ``registry.example.com`` -> ``registry_example_com.db``."""
    url = normalize_url(registry)
    host = url.split("://", 1)[1]
    return re.sub(r"[^A-Za-z0-9]+", "_", host).strip("_") + ".db"


class Inventory:
    """An inventory of one or more registries in an SQLite file, ``:memory:``, or a SQLAlchemy URL."""

    def __init__(self, db: str | os.PathLike = MEMORY, *, readonly: bool = False):
        self.target = str(db) if not isinstance(db, Path) else str(db)
        self.readonly = readonly
        self.engine: Engine = create_inventory_engine(self.target, readonly=readonly)
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

    def registry_id(self, registry: str) -> int | None:
        """The id of a registry in this inventory (by URL or bare host), or None if never synced."""
        table = models.Registry.__table__
        url = normalize_url(registry)
        with self.engine.connect() as conn:
            return conn.execute(select(table.c.id).where(table.c.url == url)).scalar()

    def last_synced(self, registry: str):
        table = models.Registry.__table__
        with self.engine.connect() as conn:
            return conn.execute(
                select(table.c.last_synced_at).where(table.c.url == normalize_url(registry))
            ).scalar()

    def sync(
        self,
        client: RegistryClient | str,
        repos: Iterable[str] | None = None,
        *,
        jobs: int = 16,
        progress: Callable[[int, int], None] | None = None,
    ) -> SyncResult:
        """Mirror the registry (all of it, or only ``repos``) into this inventory as one snapshot."""
        if isinstance(client, str):
            client = RegistryClient(client, jobs=jobs)
        return sync_registry(self.engine, client, repos=repos, jobs=jobs, progress=progress)

    # --- listing and querying (selectors) -------------------------------------------------------------

    # --- removal --------------------------------------------------------------------------------------

    # --- raw SQL --------------------------------------------------------------------------------------

    # --- retention ------------------------------------------------------------------------------------
