"""regdb: mirror a Docker Registry v2 / OCI registry into an SQLite inventory, query it, clean it up safely."""

from regdb.errors import (
    AuthenticationFailed,
    DeleteDisabled,
    DigestMismatch,
    IntersectionError,
    InventoryBusy,
    InventoryError,
    NotARegistry,
    RegdbError,
    RegistryError,
    RegistryUnreachable,
    SchemaTooNew,
    ScopeRefused,
    SelectorError,
)

__version__ = "0.1.0"


# The removal API (docs/removal.md): what to select, the plan, carrying it out.
_CLEANUP = ("TagQuery", "RepoQuery", "Plan", "plan_removal", "remove", "RemovalResult")


def __getattr__(name: str):
    # Imported on first use: RegistryClient pulls in requests, Inventory SQLAlchemy. ``import regdb`` stays
    # standard-library only, so the console scripts' entry (regdb/entry.py) can catch a Ctrl-C during every
    # later import, and inventory-only commands never import requests.
    if name == "connect":
        from regdb.registry.connect import connect

        return connect
    if name == "RegistryClient":
        from regdb.registry.client import RegistryClient

        return RegistryClient
    if name in ("Inventory", "default_db_path"):
        from regdb import api

        return getattr(api, name)
    if name in _CLEANUP:
        from regdb.cleanup import execute, plan

        return getattr(plan if hasattr(plan, name) else execute, name)
    raise AttributeError(f"module 'regdb' has no attribute {name!r}")

__all__ = [
    "AuthenticationFailed",
    "DeleteDisabled",
    "DigestMismatch",
    "IntersectionError",
    "Inventory",
    "InventoryBusy",
    "InventoryError",
    "NotARegistry",
    "Plan",
    "RegdbError",
    "RegistryClient",
    "RegistryError",
    "RegistryUnreachable",
    "RemovalResult",
    "RepoQuery",
    "SchemaTooNew",
    "ScopeRefused",
    "SelectorError",
    "TagQuery",
    "connect",
    "default_db_path",
    "plan_removal",
    "remove",
]
