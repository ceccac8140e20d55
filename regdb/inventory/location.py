"""Where an inventory lives when ``--db`` names none: a file in the current directory named after the registry.

Plain Python (no SQLAlchemy): the read-only listings find their inventory with it before deciding whether the
standard library's sqlite3 can answer them (regdb.selection.sqlite_reader, issue 17).
"""

from __future__ import annotations

import re

from regdb.registry.reference import normalize_url


def default_db_path(registry: str) -> str:
    """The inventory file named after the registry, as docker-registry-util named its cache:
    ``registry.example.com`` -> ``registry_example_com.db``."""
    url = normalize_url(registry)
    host = url.split("://", 1)[1]
    return re.sub(r"[^A-Za-z0-9]+", "_", host).strip("_") + ".db"
