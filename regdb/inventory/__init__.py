"""The inventory: the database that mirrors a registry.

``db`` (engines, pragmas, schema upgrades), ``models`` (the tables), ``views`` and ``summaries`` (what readers
and BI tools query), ``rawsql`` (read-only SQL), ``manifests`` (what a manifest says), ``sync`` (registry ->
inventory), ``history`` and ``use`` (tag history and pulls), ``examples`` and ``report`` (the inventory as a
data source). It reads registries through ``regdb.registry`` and knows nothing of selection or cleanup.
"""
