"""Globs in ``regdb``'s ``-r`` and ``-t`` / ``-x``: ``*``, ``?`` and ``[...]`` as in a policy file.

The matcher is the policy's (``regdb.selection.patterns.glob_regex`` for tags,
``regdb.selection.selectors.repo_clause`` for repositories), so ``-t 'pr-*'`` on the command line selects what
``tags = ["pr-*"]`` selects in a policy: the whole tag matches, ``*`` also crosses ``/``. Neither ``*`` nor
``?`` nor ``[`` can occur in a repository or tag name (the distribution grammar), so a name without them keeps
its exact meaning and a glob is never mistaken for one. A glob that matches nothing is passed on as it was
written, so it is reported exactly as a name that is not there ("warning: repository NAME not found", no rows).

Only ``regdb``: the ``dregutil`` command line keeps docker-registry-util's meaning (``-t 'pr-*'`` is a name).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from regdb.selection.patterns import VERSION_SELECTOR_START, glob_regex, is_glob

if TYPE_CHECKING:
    from regdb.registry.reference import RegistryRef


def split_tag_globs(values) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``-t`` (or ``-x``) values as (names and version selectors, regular expressions of the globs among them):
    the globs then go along with the ``-re`` (or ``-xre``) values, exactly as a policy's tag patterns do."""
    values = tuple(values)
    if not any(is_glob(value) for value in values):
        return values, ()

    names: list[str] = []
    regex: list[str] = []
    for value in values:
        if value[:1] not in VERSION_SELECTOR_START and is_glob(value):
            regex.append(glob_regex(value))
        else:
            names.append(value)
    return tuple(names), tuple(regex)


def tag_selectors(tags, regex, exclude, exclude_regex):
    """(tags, regex, exclude, exclude_regex) with the globs of ``tags`` and ``exclude`` moved to the regexes.
    Empty option values stay empty tuples (docker-registry-util's "given, empty" arity is kept)."""
    tags, tag_regex = split_tag_globs(tags or ())
    exclude, exclude_globs = split_tag_globs(exclude or ())
    return tags, tuple(regex or ()) + tag_regex, exclude, tuple(exclude_regex or ()) + exclude_globs


def expand_repos(inventory, registry: "str | RegistryRef", patterns) -> list[str]:
    """``-r`` values with each glob replaced by the registry's repositories it matches in ``inventory``
    (sorted; a repository named twice is kept once, where it first appears). A glob matching none stays as
    written, so the command reports it as any name that is not found."""
    patterns = list(patterns)
    if not any(is_glob(p) for p in patterns):
        return patterns
    from sqlalchemy import select

    from regdb.inventory.models import Repo
    from regdb.selection.common import ensure_sql_functions
    from regdb.selection.selectors import repo_clause

    registry_id = inventory.registry_id(registry)
    expanded: list[str] = []
    with inventory.engine.connect() as conn:
        ensure_sql_functions(conn)  # regdb_match, the policy's glob matching on SQLite
        table = Repo.__table__
        for pattern in patterns:
            names: list[str] = []
            if is_glob(pattern) and registry_id is not None:
                names = list(conn.execute(
                    select(table.c.name)
                    .where(table.c.registry_id == registry_id, repo_clause([pattern], table.c.name, conn.dialect.name))
                    .order_by(table.c.name)
                ).scalars())
            expanded.extend(names or [pattern])
    return list(dict.fromkeys(expanded))


def expand_tags(inventory, registry: "str | RegistryRef", repo: str, patterns) -> tuple[list[str], list[str]]:
    """(tag names of ``repo`` in ``inventory`` with each glob of ``patterns`` replaced by the tags it matches,
    the globs that match none)."""
    from regdb.versions import regex_matches

    patterns = list(patterns)
    if not any(is_glob(p) for p in patterns):
        return patterns, []
    present = [row.tag for row in inventory.list_tags(registry, [repo])]
    names: list[str] = []
    unmatched: list[str] = []
    for pattern in patterns:
        if not is_glob(pattern):
            names.append(pattern)
            continue
        matched = [tag for tag in present if regex_matches(glob_regex(pattern), tag)]
        names.extend(matched)
        if not matched:
            unmatched.append(pattern)
    return list(dict.fromkeys(names)), unmatched
