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
from .inventory import Inventory, default_db_path

__version__ = "0.1.0"


def __getattr__(name: str):
    # RegistryClient pulls in requests; importing it lazily keeps inventory-only commands fast to start.
    if name == "RegistryClient":
        from .client import RegistryClient

        return RegistryClient
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
