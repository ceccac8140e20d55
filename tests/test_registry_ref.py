"""One registry reference, one lookup rule, one error (issue 16), for every command and library call.

The rule (regdb.inventory.registries): by URL; a reference without a scheme also finds the one registry of
that host[:port] (a registry synced over plain http is still named by its host); two of the same host make
the bare host ambiguous. A client's reference always has its scheme: a removal plans only against the
registry its client talks to.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert

from regdb.api import Inventory
from regdb.errors import InventoryError, RegistryError
from regdb.inventory import models
from regdb.inventory.registries import RegistryNotInInventory, find_registry, require_registry
from regdb.registry.client import RegistryClient
from regdb.registry.reference import RegistryRef

HOSTS = st.sampled_from(["127.0.0.1:5000", "localhost:5000", "registry.example.com", "reg.example.com:8443"])


def inventory_with(urls: list[str], inventory: Inventory | None = None) -> tuple[Inventory, dict[str, int]]:
    inventory = inventory or Inventory(":memory:")
    table = models.Registry.__table__
    ids = {}
    with inventory.engine.begin() as conn:
        conn.execute(delete(table))
        for url in urls:
            ref = RegistryRef.parse(url)
            ids[url] = conn.execute(insert(table).values(url=ref.url, name=ref.name)).inserted_primary_key[0]
    return inventory, ids


def model(urls: list[str], text: str) -> str | None:
    """The rule in plain Python: which of ``urls`` the reference ``text`` names (or 'ambiguous')."""
    scheme, _, rest = text.partition("://") if "://" in text else ("", "", text)
    if scheme:
        return text if text in urls else None
    if "https://" + rest in urls:
        return "https://" + rest
    same_host = [u for u in urls if u.split("://", 1)[1] == rest]
    return "ambiguous" if len(same_host) > 1 else (same_host[0] if same_host else None)


SHARED = Inventory(":memory:")  # one schema for every example: the table is emptied each time


@settings(max_examples=150, deadline=None)
@given(present=st.sets(st.tuples(st.sampled_from(["http", "https"]), HOSTS), max_size=6),
       asked=st.tuples(st.sampled_from(["http://", "https://", ""]), HOSTS))
def test_the_lookup_follows_one_rule(present, asked):
    urls = sorted(f"{scheme}://{host}" for scheme, host in present)
    inventory, ids = inventory_with(urls, SHARED)
    text = asked[0] + asked[1]
    expected = model(urls, text)
    with inventory.engine.connect() as conn:
        if expected == "ambiguous":
            with pytest.raises(InventoryError, match="give its URL with the scheme"):
                find_registry(conn, text)
        else:
            assert find_registry(conn, text) == (ids[expected] if expected else None)
            if expected is None:
                with pytest.raises(RegistryNotInInventory, match="is not in the inventory; run 'regdb sync' first"):
                    require_registry(conn, text)


def test_a_client_finds_only_the_registry_it_talks_to():
    inventory, ids = inventory_with(["http://localhost:5000"])
    client = RegistryClient("localhost:5000")  # https assumed: another origin than the one synced
    try:
        assert client.ref == RegistryRef("https://localhost:5000", "localhost:5000", explicit_scheme=True)
        with inventory.engine.connect() as conn:
            assert find_registry(conn, client.ref) is None
            assert find_registry(conn, "localhost:5000") == ids["http://localhost:5000"]  # a person's reference
    finally:
        client.close()
        inventory.close()


def test_the_library_and_the_inventory_facade_agree():
    inventory, ids = inventory_with(["http://localhost:5000"])
    with inventory:
        assert inventory.registry_id("localhost:5000") == ids["http://localhost:5000"]
        assert inventory.list_repos("localhost:5000") == []
        with pytest.raises(RegistryNotInInventory, match="registry other:1 is not in inventory :memory:"):
            inventory.list_repos("other:1")


@pytest.mark.parametrize("text, message", [
    ("", "no registry given"),
    ("ftp://x", "not a registry URL"),
    ("https://me:secret@reg.example.com", "must not contain credentials"),
])
def test_bad_references_are_refused_where_they_enter(text, message):
    with pytest.raises(RegistryError, match=message) as caught:
        RegistryRef.parse(text)
    assert "secret" not in str(caught.value)
