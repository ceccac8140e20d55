"""regdb: mirror a Docker Registry v2 / OCI registry into an SQLite inventory, query it, clean it up safely."""

from .errors import (
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


def __getattr__(name: str):
    # Imported on first use: RegistryClient pulls in requests, Inventory SQLAlchemy. ``import regdb`` stays
    # standard-library only, so the console scripts' entry (regdb/entry.py) can catch a Ctrl-C during every
    # later import, and inventory-only commands never import requests.
    if name == "RegistryClient":
        from .client import RegistryClient

        return RegistryClient
    if name in ("Inventory", "default_db_path"):
        from . import inventory

        return getattr(inventory, name)
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
    "RegdbError",
    "RegistryClient",
    "RegistryError",
    "RegistryUnreachable",
    "SchemaTooNew",
    "ScopeRefused",
    "SelectorError",
    "default_db_path",
]
