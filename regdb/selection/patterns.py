"""Name patterns of policy files and of ``regdb``'s ``-r`` / ``-t`` / ``-x``, in plain Python.

A pattern is a glob (``*``, ``?``, ``[...]``: neither character can occur in a repository or tag name, so a
name without them keeps its exact meaning), ``re:REGEX``, a version comparison (``<1.4``) or a name. The SQL
side of the same rules (a repository pattern as a WHERE clause) is ``regdb.selection.selectors.repo_clause``.
Nothing here imports SQLAlchemy or an HTTP client: a listing with a glob still starts fast (test_startup).
"""

from __future__ import annotations

import re

from regdb.versions import compile_regex, parse_tag_selector, regex_matches

# The characters that make a pattern a glob.
GLOB_CHARACTERS = "*?["
# What starts a version selector ('<1.4', '==1.0'): such a pattern is never a glob.
VERSION_SELECTOR_START = "<>=!~"


def is_glob(pattern: str) -> bool:
    return any(c in pattern for c in GLOB_CHARACTERS)


def glob_regex(glob: str) -> str:
    """A shell glob as a regular expression for the whole name: ``*`` any run of characters (``/`` too),
    ``?`` one, ``[abc]`` / ``[!abc]`` a class. Plain ``^...$`` syntax, so PostgreSQL reads it as Python does."""
    out = []
    i = 0
    while i < len(glob):
        c = glob[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[" and glob.find("]", i + 2) != -1:
            end = glob.find("]", i + 2)
            body = glob[i + 1:end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out) + "$"


def split_patterns(patterns) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Tag patterns as the selectors take them: (``-t`` values: names and version comparisons, ``-re`` values).

    ``re:REGEX`` is a regular expression matched from the start of the tag (as ``-re``); a pattern starting with
    ``<``, ``>`` or ``=`` compares versions (as ``-t '<1.4'``); one with ``*``, ``?`` or ``[`` is a glob over
    the whole tag; anything else is an exact tag name. Raises SelectorError for a bad regex or version."""
    tags: list[str] = []
    regex: list[str] = []
    for pattern in patterns:
        if pattern.startswith("re:"):
            compile_regex(pattern[3:])
            regex.append(pattern[3:])
        elif pattern[:1] in VERSION_SELECTOR_START:
            parse_tag_selector(pattern)
            tags.append(pattern)
        elif is_glob(pattern):
            regex.append(glob_regex(pattern))
        else:
            tags.append(pattern)
    return tuple(tags), tuple(regex)


def pattern_matches(pattern: str, name: str, *, protects: bool = False) -> bool:
    """Plain-Python meaning of one tag pattern (for the plan's reasons; the selection itself is SQL).
    ``protects``: as a keep or protect pattern, whose versions also match by plain PEP 440 (regdb.versions)."""
    tags, regex = split_patterns([pattern])
    return any(parse_tag_selector(t).matches(name, protects=protects) for t in tags) or \
        any(regex_matches(r, name) for r in regex)
