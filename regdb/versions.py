"""Tag versions: which version a tag compares by, a sortable text key for it, and the ``-t`` / ``-re`` selectors.

The sync stores ``version_key(tag)`` in ``tags.version_key`` so that a version selector compiles to a plain string
comparison (``version_key < :k``) and ``ORDER BY version_key`` is version order, in SQLite (BINARY collation) and
PostgreSQL (``COLLATE "C"``) alike. The key is therefore plain ASCII and built so that byte-wise order is exactly
``packaging.version.Version`` order, and equal keys are exactly equal versions (``1.4 == 1.4.0 == v1.4``).

Key format, field by field (every field is self-delimiting, so two keys line up until the first field that
differs, and that field decides the order):

* A number ``N(n)`` is its digit count followed by its digits: ``N(0) = "10"``, ``N(42) = "242"``,
  ``N(20240101) = "820240101"``. A digit count of 9 or more is written ``"9" + N(count)``
  (``N(999999999999) = "9212999999999999"``), so any size of number keeps lexical order = numeric order.
* ``N(epoch) "!"``, then each release number, trailing zeros stripped as packaging does, as ``"." N(r)``, then
  ``"-"``. ``"-"`` sorts before ``"."``, so ``1.2`` < ``1.2.1``.
* Pre-release: ``"_"`` for a dev-only version (``1.0.dev0``, before any pre-release, as in packaging), ``"a" N``,
  ``"b" N``, ``"c" N`` (rc), or ``"~"`` for none (a final release sorts after its pre-releases).
* Post-release: ``"_"`` for none, ``"p" N``.
* Dev-release: ``"d" N``, or ``"~"`` for none (``1.0a1.dev1 < 1.0a1``).
* Local version, only if there is one: ``"+"``, then each segment as ``"a" text ","`` (strings, lowercased,
  sort before numbers and compare lexically; ``","`` sorts before any letter or digit, so ``ab < ab0 < abc``) or
  ``"n" N`` (numbers). A key without a local part is a prefix of the same key with one, so it sorts first.

* Precision, always last: ``"#"`` and the number of release components as written, two digits (``1.4`` is
  ``#02``, ``1.4.0`` is ``#03``). Versions equal in PEP 440 differ only here, so it breaks their ties
  (``1.4`` sorts just before ``1.4.0``) and never changes the order of unequal versions. ``#`` sorts below
  every other byte of a key, and ``$`` just above it: ``base + "#"`` .. ``base + "$"`` is the range of every
  precision of one version, so the plain PEP 440 comparisons stay range comparisons.

``1.4`` is ``10!.11.14-~_~#02``, ``1.0rc1`` is ``10!.11-c11_~#02``, ``2!1.0.post1.dev2`` is ``12!.11-~p11d12#02``.

What a version selector matches (docs/versions.md has the table of examples, with LooseVersion's answers):

* **Selecting** (``-t``, ``-re``, a policy's ``tags``) uses the precision rule: a tag whose version has fewer
  release components than the operand never matches (``1.4`` against ``<1.4.0``; registries move such a tag
  to the newest 1.4.x, so a rule about 1.4.0 must not reach it), and ``==`` also needs the same number of
  components (``==1.4.0`` selects ``1.4.0``, ``v1.4.0``, ``1.4.0-alpine``, not ``1.4`` or ``1.4.0.0``).
  Everything else is PEP 440: pre-releases, ``v``, suffixes, ``1.10 > 1.9``.
* **Protecting** (``-x``, ``-xre``, a policy's ``keep`` and ``protect``) matches when either the precision rule
  or plain PEP 440 does, which is plain PEP 440 (the precision rule only ever narrows it): nothing an exclusion
  protected before this rule loses its protection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.version import Version

from regdb.errors import SelectorError

__all__ = [
    "TagSelector",
    "base_key",
    "compare",
    "compile_regex",
    "is_current_key",
    "key_of",
    "parse_tag_selector",
    "parse_tag_version",
    "regex_matches",
    "version_key",
]

OPERATORS = ("==", "<=", ">=", "<", ">")  # two-character operators first, so "<=" is not read as "<" + "=..."

# The precision field is two digits. A tag has at most 128 characters (distribution's tag grammar), so at most
# 64 release components; an operand with more than 99 could match no tag and is refused.
MAX_PRECISION = 99
PRECISION_MARK = "#"  # below every other byte of a key (the others are "!", "+", ",", "-", ".", digits, letters)
ABOVE_PRECISION = "$"  # the next byte: base + "$" is above every key of that version, whatever its precision


def parse_tag_version(tag: str) -> Version | None:
    """The version a tag compares by, or None if it has none.

    A tag that is a PEP 440 version as a whole compares as that version (``1.0-rc1`` is 1.0rc1, ``1.0-1`` is
    1.0.post1). Otherwise the longest part before a ``-`` that is a version wins (``1.2.3-alpine`` is 1.2.3,
    ``1.0-rc1-alpine`` is 1.0rc1). Only ``-`` starts a suffix: ``1.2.3_alpine`` and ``abc1.0`` have no version.
    """
    # Version() forgives surrounding whitespace; a tag cannot contain any, so such a string is not a tag.
    if not tag or any(c.isspace() for c in tag):
        return None
    end = len(tag)
    while end > 0:
        version = _parse(tag[:end])
        if version is not None:
            return version
        end = tag.rfind("-", 0, end)
    return None


def version_key(tag: str) -> str | None:
    """The sortable key of the tag's version (see the module docstring), None if the tag has no version."""
    version = parse_tag_version(tag)
    if version is None or len(version.release) > MAX_PRECISION:
        return None  # more components than a valid tag can hold: a registry's garbage, compared as no version
    return key_of(version)


def is_current_key(key: str) -> bool:
    """Whether a stored key has the precision field (keys written by regdb before it existed do not)."""
    return len(key) > 3 and key[-3] == PRECISION_MARK and key[-2:].isdigit()


def key_of(version: Version) -> str:
    """The sortable key of a parsed version: byte-wise order of keys is ``Version`` order (ties between equal
    versions broken by precision), equal iff equal versions written with as many release components."""
    return base_key(version) + precision_field(len(version.release))


def precision_field(count: int) -> str:
    """``#`` and the number of release components, two digits."""
    if not 0 < count <= MAX_PRECISION:
        raise SelectorError(f"a version has 1 to {MAX_PRECISION} release components, not {count}")
    return f"{PRECISION_MARK}{count:02d}"


def base_key(version: Version) -> str:
    """The key without its precision: equal for all versions that PEP 440 holds equal (``1.4 == 1.4.0``)."""
    # Built from public attributes rather than packaging's private _key, whose shape changed across releases;
    # this mirrors packaging's _cmpkey (epoch, trimmed release, pre, post, dev, local).
    release = list(version.release)
    while release and release[-1] == 0:
        release.pop()  # 1.4 == 1.4.0: packaging strips trailing zeros before comparing
    parts = [_number(version.epoch), "!"]
    parts += ["." + _number(r) for r in release]
    parts.append("-")

    if version.pre is not None:
        letter, n = version.pre
        parts.append({"a": "a", "b": "b", "rc": "c"}[letter] + _number(n))
    elif version.dev is not None and version.post is None:
        parts.append("_")  # dev-only: 1.0.dev0 < 1.0a1, but 1.0.post1.dev0 is still after 1.0
    else:
        parts.append("~")
    parts.append("_" if version.post is None else "p" + _number(version.post))
    parts.append("~" if version.dev is None else "d" + _number(version.dev))

    if version.local is not None:
        # Tag names cannot contain "+", so only a selector such as "==1.0+abc" gets here; it is encoded (not
        # dropped) so that key order still equals Version order for every version the user can type.
        parts.append("+")
        for segment in version.local.split("."):  # packaging normalises the separators to "."
            parts.append("n" + _number(int(segment)) if segment.isdigit() else "a" + segment.lower() + ",")
    return "".join(parts)


def _number(n: int) -> str:
    digits = str(n)
    count = len(digits)
    return (str(count) if count < 9 else "9" + _number(count)) + digits


def _parse(text: str) -> Version | None:
    try:
        return Version(text)
    except ValueError:  # InvalidVersion, or int() refusing a number of more than 4300 digits
        return None


@dataclass(frozen=True)
class TagSelector:
    """A parsed ``-t`` value: an exact tag name, or an operator and a version."""

    text: str  # as the user typed it
    op: str | None  # None for an exact tag name, else one of "==", "<", ">", "<=", ">="
    name: str | None  # exact tag name when op is None
    key: str | None  # version key of the operand when op is set (with its precision)
    version: Version | None

    @property
    def base(self) -> str | None:
        """The operand's key without its precision field (every precision of the operand's version)."""
        return None if self.key is None else self.key[: -len(precision_field(1))]

    @property
    def precision(self) -> int | None:
        """The number of release components of the operand as written (``1.4.0``: 3)."""
        return None if self.version is None else len(self.version.release)

    def matches(self, tag: str, *, protects: bool = False) -> bool:
        """Plain-Python reference semantics, compared with ``Version`` rather than keys on purpose: the SQL
        compares keys, so a test holding one against the other checks the key too.

        ``protects=False`` is the precision rule of what selects; ``protects=True`` is what an exclusion or a
        keep rule protects: the precision rule or plain PEP 440, whichever matches."""
        if self.op is None:
            return tag == self.name
        tag_version = parse_tag_version(tag)
        if tag_version is None:
            return False  # like SQL's NULL < :k, a tag without a version matches no version selector
        assert self.version is not None
        plain = compare(tag_version, self.op, self.version)
        if protects:
            return plain or self._precise(tag_version)
        return self._precise(tag_version)

    def _precise(self, tag_version: Version) -> bool:
        assert self.version is not None and self.op is not None
        written, wanted = len(tag_version.release), len(self.version.release)
        if written < wanted or (self.op == "==" and written != wanted):
            return False  # "1.4" is usually the moving alias of the newest 1.4.x: no rule about 1.4.0 reaches it
        return compare(tag_version, self.op, self.version)


def compare(left: Version, op: str, right: Version) -> bool:
    """``left OP right`` in PEP 440."""
    if op == "==":
        return left == right
    if op == "<":
        return left < right
    if op == ">":
        return left > right
    if op == "<=":
        return left <= right
    return left >= right


def parse_tag_selector(text: str) -> TagSelector:
    """Parse a ``-t`` value: ``<1.4``, ``>= v2.0``, ``==1.0-rc1`` compare versions; anything else is a tag name.

    ``1.4`` without an operator is the exact tag ``1.4``; ``==1.4`` also matches ``v1.4`` and ``1.4-alpine``, and
    not ``1.4.0`` nor ``1`` (the precision rule, in the module docstring). The operand must be a PEP 440 version as a whole: ``<1.2-alpine`` is refused rather than
    silently read as ``<1.2``.
    """
    stripped = text.strip()
    if not stripped:
        raise SelectorError("empty tag selector: give a tag name, or one of ==, <, >, <=, >= and a version")
    op = next((o for o in OPERATORS if stripped.startswith(o)), None)
    if op is None:
        # A tag name cannot start with these, so "!=1.4" or "~=1.4" is a mistyped operator, not a tag name
        # that would silently match nothing.
        if stripped[0] in "=!~":
            raise SelectorError(
                f"unsupported operator in selector '{stripped}': use ==, <, >, <=, >= or an exact tag name"
            )
        return TagSelector(text=text, op=None, name=stripped, key=None, version=None)
    operand = stripped[len(op):].strip()
    if not operand:
        raise SelectorError(f"missing version after '{op}' in selector '{stripped}'")
    version = _parse(operand)
    if version is None:
        raise SelectorError(f"invalid version in selector '{stripped}': '{operand}'")
    if len(version.release) > MAX_PRECISION:
        raise SelectorError(f"too many release components in selector '{stripped}' (at most {MAX_PRECISION})")
    return TagSelector(text=text, op=op, name=None, key=key_of(version), version=version)


def compile_regex(pattern: str) -> re.Pattern:
    """Compile a ``-re`` pattern; an invalid one is a SelectorError naming it and re's reason."""
    try:
        return re.compile(pattern)
    except re.error as error:
        raise SelectorError(f"invalid regex '{pattern}': {error}") from None


def regex_matches(pattern: re.Pattern | str, tag: str) -> bool:
    """Whether ``tag`` matches, with ``re.match`` semantics (anchored at the start, not at the end), as
    docker-registry-util does; the SQL REGEXP function uses this, so both agree by construction."""
    if isinstance(pattern, str):
        pattern = compile_regex(pattern)
    return pattern.match(tag) is not None
