"""Finding a registry in the inventory: one rule and one error, for every command and library call.

The rule: a registry is found by its URL (``https://registry.example.com``, ``http://127.0.0.1:5000``). A
reference given without a scheme (``localhost:5000``) also finds the one registry of that host[:port] when
its URL has the other scheme: a registry synced over plain http is still named by its host. Two registries of
the same host with different schemes make a bare host ambiguous; the error says so and asks for the URL.
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from regdb.errors import InventoryError
from regdb.inventory import models
from regdb.registry.reference import RegistryRef

_registries = models.Registry.__table__


class RegistryNotInInventory(InventoryError):
    """The inventory holds no registry by that reference: it was never synced into it."""

    def __init__(self, ref: RegistryRef, target: str | None = None):
        where = f"inventory {target}" if target else "the inventory"
        super().__init__(f"registry {ref.display} is not in {where}; run 'regdb sync' first")
        self.ref = ref


def find_registry(conn: Connection, ref: RegistryRef | str) -> int | None:
    """The id of the registry ``ref`` names, or None when the inventory does not hold it."""
    ref = RegistryRef.parse(ref) if isinstance(ref, str) else ref
    found = conn.execute(select(_registries.c.id).where(_registries.c.url == ref.url)).scalar()
    if found is not None or ref.explicit_scheme:
        return found
    ids = conn.execute(select(_registries.c.id).where(_registries.c.name == ref.name).order_by(_registries.c.id)).all()
    if len(ids) > 1:
        raise InventoryError(
            f"registry {ref.display} names {len(ids)} registries of this inventory (http and https): "
            "give its URL with the scheme"
        )
    return ids[0][0] if ids else None


def require_registry(conn: Connection, ref: RegistryRef | str, *, target: str | None = None) -> int:
    """As ``find_registry``, raising ``RegistryNotInInventory`` instead of returning None."""
    ref = RegistryRef.parse(ref) if isinstance(ref, str) else ref
    found = find_registry(conn, ref)
    if found is None:
        raise RegistryNotInInventory(ref, target)
    return found
