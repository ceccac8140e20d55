"""Tag versions, their sortable keys, and the -t / -re selectors (regdb.versions)."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from packaging.version import Version

from regdb.errors import SelectorError
from regdb.versions import (
    TagSelector,
    base_key,
    compile_regex,
    key_of,
    parse_tag_selector,
    parse_tag_version,
    regex_matches,
    version_key,
)

# --- which version a tag compares by ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("1.2", "1.2"),
        ("v1.2", "1.2"),
        ("V1.2", "1.2"),
        ("20240101", "20240101"),
        # A PEP 440 version as a whole compares as that version, "-" and all.
        ("1.0-rc1", "1.0rc1"),
        ("1.0-1", "1.0.post1"),
        ("1.0.dev3", "1.0.dev3"),
        ("2!1.0", "2!1.0"),
        ("1.0-alpha", "1.0a0"),
        # Otherwise the version before a "-suffix" that is not a pre/post/dev part.
        ("1.2.3-alpine", "1.2.3"),
        ("1.1-keep", "1.1"),
        ("v1.2.3-alpine3.19", "1.2.3"),
        ("1.2.3-", "1.2.3"),
        # The longest leading version wins, so a pre-release keeps its meaning under a variant suffix.
        ("1.0-rc1-alpine", "1.0rc1"),
        ("3.12.0-dev1-slim-bookworm", "3.12.0.dev1"),
    ],
)
def test_parse_tag_version(tag, expected):
    assert parse_tag_version(tag) == Version(expected)
    assert str(parse_tag_version(tag)) == str(Version(expected))  # the same version, not merely equal


@pytest.mark.parametrize(
    "tag",
    [
        "latest",
        "main",
        "sha256-abc.sig",
        "abc1.0",
        "v",
        "vv1.0",
        "-1.0",
        "1.2.3_alpine",  # only "-" introduces a suffix
        "1.2.3alpine",
        " 1.0",  # Version() would forgive the whitespace; a tag cannot have any
        "1.0 ",
        "",
    ],
)
def test_tags_without_a_version(tag):
    assert parse_tag_version(tag) is None
    assert version_key(tag) is None


# --- the key ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "chain",
    [
        ["1.0.dev0", "1.0a1.dev1", "1.0a1", "1.0a2", "1.0b1", "1.0rc1", "1.0", "1.0.post1.dev0", "1.0.post1"],
        ["1.0", "1.0.1", "1.1", "1.2", "1.10", "2", "10", "1!0.1"],
        ["1.0rc1.dev9", "1.0rc1", "1.0rc1.post1.dev0", "1.0rc1.post1", "1.0rc2"],
        ["0.9", "1.0.dev0", "1.0"],
        ["9", "10", "99999999", "100000000", "999999999", "1000000000", "20240101000000"],
        ["1.999999999998", "1.999999999999", "1.1000000000000", "2"],
        ["1!1", "2!0.1", "10!0"],
        ["1.0", "1.0+abc", "1.0+abc.1", "1.0+abc0", "1.0+abd", "1.0+0", "1.0+1", "1.0+1.a", "1.0+1.0"],
    ],
)
def test_key_order_follows_the_chain(chain):
    versions = [Version(v) for v in chain]
    assert versions == sorted(versions)  # the chain itself is in packaging's order
    keys = [key_of(v) for v in versions]
    assert all(a < b for a, b in zip(keys, keys[1:], strict=False)), keys


@pytest.mark.parametrize(
    "tags",
    [
        ["1.4", "1.4.0", "v1.4", "V1.4.0.0", "1.4-alpine", "0!1.4"],
        ["1.0-rc1", "1.0rc1", "1.0.rc.1", "1.0c1", "v1.0-rc1-slim"],
        ["1.0-1", "1.0.post1", "1.0-r1", "1.0rev1"],
        ["0", "0.0", "v0.0.0-scratch"],
    ],
)
def test_equal_versions_have_equal_base_keys(tags):
    # The key without its precision field is the same for every spelling PEP 440 holds equal ...
    assert len({version_key(t)[:-3] for t in tags}) == 1, [version_key(t) for t in tags]
    # ... and the whole key also needs as many release components as written.
    by_precision: dict[int, set[str]] = {}
    for tag in tags:
        by_precision.setdefault(len(parse_tag_version(tag).release), set()).add(version_key(tag))
    assert all(len(keys) == 1 for keys in by_precision.values()), by_precision


@pytest.mark.parametrize(
    ("version", "key"),
    [
        ("1.4", "10!.11.14-~_~#02"),
        ("1.0rc1", "10!.11-c11_~#02"),
        ("1.0.dev0", "10!.11-__d10#02"),
        ("2!1.0.post1.dev2", "12!.11-~p11d12#02"),
        ("0", "10!-~_~#01"),
        ("20240101", "10!.820240101-~_~#01"),
        ("1.999999999999", "10!.11.9212999999999999-~_~#02"),
        ("1.0+Ubuntu.01", "10!.11-~_~+aubuntu,n11#02"),
    ],
)
def test_documented_key_format(version, key):
    # The README documents this format; a change here is a change to every stored inventory.
    assert key_of(Version(version)) == key


def test_key_of_a_very_long_number_still_orders():
    # A digit count of 9 or more is itself length-prefixed, so no size of number breaks the order.
    small, big = Version("1." + "9" * 99), Version("1." + "1" + "0" * 99)
    assert key_of(small) < key_of(big)
    assert key_of(big).isascii()


# --- the property: key order is Version order -----------------------------------------------------------

# Small numbers collide often (1.0 vs 1.0.0, rc1 vs rc1), so equality is exercised, not only order; big ones
# cross the 9-digit boundary where the length prefix changes shape.
numbers = st.one_of(
    st.integers(0, 3),
    st.sampled_from([9, 10, 99999999, 100000000, 999999999, 1000000000, 20240101, 999999999999]),
    st.integers(0, 10**30),
)
local_segments = st.one_of(st.integers(0, 12).map(str), st.sampled_from(["a", "ab", "ab0", "abc", "b", "z9"]))


@st.composite
def versions(draw, local=True):
    text = ""
    if draw(st.booleans()):
        text += f"{draw(numbers)}!"
    text += ".".join(str(draw(numbers)) for _ in range(draw(st.integers(1, 5))))
    if draw(st.booleans()):
        text += f"{draw(st.sampled_from(['a', 'b', 'rc']))}{draw(numbers)}"
    if draw(st.booleans()):
        text += f".post{draw(numbers)}"
    if draw(st.booleans()):
        text += f".dev{draw(numbers)}"
    if local and draw(st.integers(0, 4)) == 0:
        text += "+" + ".".join(draw(st.lists(local_segments, min_size=1, max_size=3)))
    return Version(text)


@settings(max_examples=300, deadline=None)
@given(versions(), versions())
@example(Version("1.0"), Version("1.0.0"))
@example(Version("1.0.dev0"), Version("1.0a0"))
@example(Version("1.0a1.dev1"), Version("1.0a1"))
@example(Version("1.0.post1.dev0"), Version("1.0"))
@example(Version("1.0+ab"), Version("1.0+ab0"))
@example(Version("1.99999999"), Version("1.100000000"))
def test_key_order_is_version_order(a, b):
    ka, kb = key_of(a), key_of(b)
    assert ka.isascii() and kb.isascii()
    # Unequal versions: key order is version order; equal ones are ordered by precision, 1.4 before 1.4.0.
    if a != b:
        assert (ka < kb) == (a < b), (str(a), str(b), ka, kb)
    else:
        assert (ka < kb) == (len(a.release) < len(b.release)), (str(a), str(b), ka, kb)
    assert (ka == kb) == (a == b and len(a.release) == len(b.release)), (str(a), str(b), ka, kb)
    ba, bb = base_key(a), base_key(b)
    assert (ba < bb) == (a < b) and (ba == bb) == (a == b), (str(a), str(b), ba, bb)
    # SQLite's BINARY collation and PostgreSQL's "C" compare bytes, not Python code points; the same for ASCII.
    assert (ka.encode() < kb.encode()) == (ka < kb)


@settings(max_examples=100, deadline=None)
@given(versions(), st.integers(1, 3))
def test_trailing_zeros_do_not_change_the_key(version, zeros):
    release = ".".join(str(r) for r in version.release + (0,) * zeros)
    padded = Version(f"{version.epoch}!{release}" + str(version)[len(version.base_version):])
    assert padded == version
    assert base_key(padded) == base_key(version)
    assert key_of(padded) != key_of(version)  # the precision field tells them apart


# --- selectors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "op", "operand"),
    [
        ("<1.4", "<", "1.4"),
        (">=v2.0", ">=", "2.0"),
        ("==1.0-rc1", "==", "1.0rc1"),
        ("<= 1.4", "<=", "1.4"),
        ("> 2!1.0", ">", "2!1.0"),
        ("==  1.4.0 ", "==", "1.4.0"),
    ],
)
def test_parse_version_selector(text, op, operand):
    selector = parse_tag_selector(text)
    assert selector == TagSelector(
        text=text, op=op, name=None, key=key_of(Version(operand)), version=Version(operand)
    )


@pytest.mark.parametrize("text", ["latest", "1.4", "v1.4", "1.2.3-alpine", "sha256-abc.sig"])
def test_parse_exact_tag_selector(text):
    # Without an operator a version-looking value is still an exact name: "-t 1.4" does not select "1.4.0".
    selector = parse_tag_selector(text)
    assert selector == TagSelector(text=text, op=None, name=text, key=None, version=None)
    assert selector.matches(text)
    assert not selector.matches(text + "0")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty tag selector: give a tag name, or one of ==, <, >, <=, >= and a version"),
        ("  ", "empty tag selector: give a tag name, or one of ==, <, >, <=, >= and a version"),
        ("<1.x", "invalid version in selector '<1.x': '1.x'"),
        (">=latest", "invalid version in selector '>=latest': 'latest'"),
        ("<1.2-alpine", "invalid version in selector '<1.2-alpine': '1.2-alpine'"),
        ("===1.4", "invalid version in selector '===1.4': '=1.4'"),
        ("<", "missing version after '<' in selector '<'"),
        (">= ", "missing version after '>=' in selector '>='"),
        ("!=1.4", "unsupported operator in selector '!=1.4': use ==, <, >, <=, >= or an exact tag name"),
        ("~=1.4", "unsupported operator in selector '~=1.4': use ==, <, >, <=, >= or an exact tag name"),
        ("=1.4", "unsupported operator in selector '=1.4': use ==, <, >, <=, >= or an exact tag name"),
    ],
)
def test_selector_errors(text, message):
    with pytest.raises(SelectorError) as error:
        parse_tag_selector(text)
    assert str(error.value) == message


TAGS = ["1", "1.3", "1.3.9-alpine", "1.4", "1.4.0", "v1.4", "1.4-alpine", "1.4.0-alpine", "1.4.1", "1.4rc1",
        "1.5.dev0", "2!0.1", "latest", "main", "sha256-abc.sig", "abc1.4"]


@pytest.mark.parametrize(
    ("text", "selected", "protected"),
    [
        # What selects: the precision rule. What protects: that rule or plain PEP 440.
        ("<1.4", ["1.3", "1.3.9-alpine", "1.4rc1"], ["1", "1.3", "1.3.9-alpine", "1.4rc1"]),
        ("<=1.4", ["1.3", "1.3.9-alpine", "1.4", "1.4.0", "v1.4", "1.4-alpine", "1.4.0-alpine", "1.4rc1"],
         ["1", "1.3", "1.3.9-alpine", "1.4", "1.4.0", "v1.4", "1.4-alpine", "1.4.0-alpine", "1.4rc1"]),
        ("==1.4", ["1.4", "v1.4", "1.4-alpine"], ["1.4", "1.4.0", "v1.4", "1.4-alpine", "1.4.0-alpine"]),
        ("==1.4.0", ["1.4.0", "1.4.0-alpine"], ["1.4", "1.4.0", "v1.4", "1.4-alpine", "1.4.0-alpine"]),
        ("==v1.4.0.0", [], ["1.4", "1.4.0", "v1.4", "1.4-alpine", "1.4.0-alpine"]),
        ("<1.4.0", ["1.3.9-alpine"], ["1", "1.3", "1.3.9-alpine", "1.4rc1"]),
        ("<2", ["1", "1.3", "1.3.9-alpine", "1.4", "1.4.0", "v1.4", "1.4-alpine", "1.4.0-alpine", "1.4.1",
                "1.4rc1", "1.5.dev0"], None),
        (">1.4", ["1.4.1", "1.5.dev0", "2!0.1"], ["1.4.1", "1.5.dev0", "2!0.1"]),
        (">=1.4.1", ["1.4.1"], ["1.4.1", "1.5.dev0", "2!0.1"]),
        ("==1.0", [], ["1"]),
        ("1.4", ["1.4"], ["1.4"]),
        ("latest", ["latest"], ["latest"]),
    ],
)
def test_selector_matches(text, selected, protected):
    selector = parse_tag_selector(text)
    assert [t for t in TAGS if selector.matches(t)] == selected
    if protected is None:
        protected = selected
    assert [t for t in TAGS if selector.matches(t, protects=True)] == protected
    assert set(selected) <= set(protected)  # no tag protected by the plain rule loses its protection


def test_an_operand_with_more_release_components_than_a_tag_can_hold_is_refused():
    with pytest.raises(SelectorError, match="too many release components"):
        parse_tag_selector("<" + ".".join(["1"] * 100))


# --- regex ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "tag", "matched"),
    [
        ("1\\.4", "1.4", True),
        ("1\\.4", "1.4.1-alpine", True),  # anchored at the start only, like re.match
        ("1\\.4", "v1.4", False),
        ("1\\.4$", "1.4.1", False),
        (".*-alpine", "1.2-alpine", True),
        ("", "anything", True),
        ("Latest", "latest", False),  # case-sensitive, as registries are
    ],
)
def test_regex_matches(pattern, tag, matched):
    assert regex_matches(pattern, tag) is matched
    assert regex_matches(compile_regex(pattern), tag) is matched


@pytest.mark.parametrize("pattern", ["1.(4", "*latest", "[a-"])
def test_invalid_regex(pattern):
    with pytest.raises(SelectorError) as error:
        compile_regex(pattern)
    try:
        re.compile(pattern)
    except re.error as expected:
        reason = str(expected)
    assert str(error.value) == f"invalid regex '{pattern}': {reason}"
    with pytest.raises(SelectorError):
        regex_matches(pattern, "latest")


# --- the precision rule in SQL, held against a plain-Python reference -------------------------------------

from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert, select  # noqa: E402

from regdb.selection.selectors import version_clause  # noqa: E402

_metadata = MetaData()
_keys = Table("keys", _metadata, Column("id", Integer, primary_key=True), Column("version_key", String))


@pytest.fixture(scope="module")
def key_db():
    engine = create_engine("sqlite://")
    _metadata.create_all(engine)
    with engine.connect() as conn:
        yield conn


def reference(tag: str, op: str, operand: Version, *, protects: bool) -> bool:
    """The rule in the issue's words, written apart from regdb.versions: a tag with fewer release components
    than the operand never selects; == also needs as many; everything else is PEP 440. Protection: either."""
    version = parse_tag_version(tag)
    if version is None:
        return False
    plain = {"==": version == operand, "<": version < operand, ">": version > operand,
             "<=": version <= operand, ">=": version >= operand}[op]
    narrow = plain and len(version.release) >= len(operand.release)
    if op == "==":
        narrow = narrow and len(version.release) == len(operand.release)
    return (narrow or plain) if protects else narrow


# Releases of one to four small components, so that 1.4 / 1.4.0 / 1.4.0.0 and equal versions come up often.
small_release = st.lists(st.integers(0, 4), min_size=1, max_size=4).map(lambda r: ".".join(map(str, r)))
version_tags = st.builds(
    lambda v, release, pre, suffix: f"{v}{release}{pre}{suffix}",
    st.sampled_from(["", "v"]), small_release, st.sampled_from(["", "rc1", "-rc2", ".post1", ".dev0", "a1"]),
    st.sampled_from(["", "-alpine", "-slim-1.2"]),
)
any_tags = st.one_of(version_tags, st.sampled_from(["latest", "main", "sha256-abc.sig", "1.0_x"]))


@settings(max_examples=120, deadline=None)
@given(st.lists(any_tags, min_size=1, max_size=12, unique=True), st.sampled_from(["==", "<", ">", "<=", ">="]),
       small_release, st.sampled_from(["", "rc1", ".post1"]))
@example(["1.4", "1.4.0", "1.4.2", "v1.4.2"], "==", "1.4.0", "")
@example(["1", "1.0.0", "1.0.0-alpine"], "==", "1.0", "")
@example(["1.4", "1.3"], "<", "1.4.0", "")
@example(["1", "2"], "<", "2", "")
def test_sql_precision_rule_equals_the_reference(key_db, tags, op, release, pre):
    operand = Version(release + pre)
    selector = parse_tag_selector(f"{op}{release}{pre}")
    key_db.execute(_keys.delete())
    key_db.execute(insert(_keys), [{"id": i, "version_key": version_key(t)} for i, t in enumerate(tags)])
    for protects in (False, True):
        clause = version_clause(_keys.c.version_key, selector, protects=protects)
        rows = key_db.execute(select(_keys.c.id).where(_keys.c.version_key.is_not(None), clause)).scalars()
        by_sql = sorted(tags[i] for i in rows)
        by_reference = sorted(t for t in tags if reference(t, op, operand, protects=protects))
        by_matches = sorted(t for t in tags if selector.matches(t, protects=protects))
        assert by_sql == by_reference == by_matches, (op, str(operand), protects)


def test_keys_from_before_the_precision_field_select_nothing_and_still_protect(key_db):
    # An inventory written by an older regdb holds keys without "#NN" until its next sync re-keys them: the
    # narrow rule must not fall back to plain PEP 440 on them (that reached moving aliases), and exclusions
    # must keep protecting.
    old = {"1.4": "10!.11.14-~_~", "1.3": "10!.11.13-~_~"}
    key_db.execute(_keys.delete())
    key_db.execute(insert(_keys), [{"id": i, "version_key": k} for i, k in enumerate(old.values())])
    names = list(old)
    for text, selected, protected in (("<1.4.0", [], ["1.3"]), ("<=1.4", [], ["1.4", "1.3"]),
                                      (">=1.4", [], ["1.4"]), ("==1.4", [], ["1.4"])):
        selector = parse_tag_selector(text)
        for protects, expected in ((False, selected), (True, protected)):
            rows = key_db.execute(select(_keys.c.id).where(
                version_clause(_keys.c.version_key, selector, protects=protects))).scalars()
            assert sorted(names[i] for i in rows) == sorted(expected), (text, protects)


def test_a_sync_rewrites_keys_from_before_the_precision_field(registry, repo_name, tmp_path):
    from sqlalchemy import update

    from regdb import Inventory
    from regdb.inventory import models
    from tests.rig.pusher import Pusher

    repo = f"{repo_name}/app"
    Pusher(registry.url).push_image(repo, "1.4")
    tags = models.Tag.__table__
    with Inventory(tmp_path / "inv.db") as inventory:
        inventory.sync(registry.url, [repo])
        with inventory.engine.begin() as conn:
            conn.execute(update(tags).values(version_key="10!.11.14-~_~"))  # as regdb wrote it before
        inventory.sync(registry.url, [repo])
        with inventory.engine.connect() as conn:
            assert conn.execute(select(tags.c.version_key)).scalars().all() == [version_key("1.4")]
