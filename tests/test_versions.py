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
    assert all(a < b for a, b in zip(keys, keys[1:])), keys


@pytest.mark.parametrize(
    "tags",
    [
        ["1.4", "1.4.0", "v1.4", "V1.4.0.0", "1.4-alpine", "0!1.4"],
        ["1.0-rc1", "1.0rc1", "1.0.rc.1", "1.0c1", "v1.0-rc1-slim"],
        ["1.0-1", "1.0.post1", "1.0-r1", "1.0rev1"],
        ["0", "0.0", "v0.0.0-scratch"],
    ],
)
def test_equal_versions_have_equal_keys(tags):
    assert len({version_key(t) for t in tags}) == 1, [version_key(t) for t in tags]


@pytest.mark.parametrize(
    ("version", "key"),
    [
        ("1.4", "10!.11.14-~_~"),
        ("1.0rc1", "10!.11-c11_~"),
        ("1.0.dev0", "10!.11-__d10"),
        ("2!1.0.post1.dev2", "12!.11-~p11d12"),
        ("0", "10!-~_~"),
        ("20240101", "10!.820240101-~_~"),
        ("1.999999999999", "10!.11.9212999999999999-~_~"),
        ("1.0+Ubuntu.01", "10!.11-~_~+aubuntu,n11"),
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
    assert (ka < kb) == (a < b), (str(a), str(b), ka, kb)
    assert (ka == kb) == (a == b), (str(a), str(b), ka, kb)
    # SQLite's BINARY collation and PostgreSQL's "C" compare bytes, not Python code points; the same for ASCII.
    assert (ka.encode() < kb.encode()) == (a < b)


@settings(max_examples=100, deadline=None)
@given(versions(), st.integers(1, 3))
def test_trailing_zeros_do_not_change_the_key(version, zeros):
    release = ".".join(str(r) for r in version.release + (0,) * zeros)
    padded = Version(f"{version.epoch}!{release}" + str(version)[len(version.base_version):])
    assert padded == version
    assert key_of(padded) == key_of(version)


# --- selectors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "op", "operand"),
    [
        ("<1.4", "<", "1.4"),
        (">=v2.0", ">=", "2.0"),
        ("==1.0-rc1", "==", "1.0rc1"),
        ("<= 1.4", "<=", "1.4"),
        ("> 2!1.0", ">", "2!1.0"),
        ("==  1.4.0 ", "==", "1.4"),
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


TAGS = ["1.3", "1.3.9-alpine", "1.4", "1.4.0", "v1.4", "1.4-alpine", "1.4.1", "1.4rc1", "1.5.dev0", "2!0.1",
        "latest", "main", "sha256-abc.sig", "abc1.4"]


@pytest.mark.parametrize(
    ("text", "selected"),
    [
        ("<1.4", ["1.3", "1.3.9-alpine", "1.4rc1"]),
        ("<=1.4", ["1.3", "1.3.9-alpine", "1.4", "1.4.0", "v1.4", "1.4-alpine", "1.4rc1"]),
        ("==1.4", ["1.4", "1.4.0", "v1.4", "1.4-alpine"]),
        ("==v1.4.0.0", ["1.4", "1.4.0", "v1.4", "1.4-alpine"]),
        (">1.4", ["1.4.1", "1.5.dev0", "2!0.1"]),
        (">=1.4.1", ["1.4.1", "1.5.dev0", "2!0.1"]),
        ("1.4", ["1.4"]),
        ("latest", ["latest"]),
    ],
)
def test_selector_matches(text, selected):
    selector = parse_tag_selector(text)
    assert [t for t in TAGS if selector.matches(t)] == selected
    if selector.op is not None:
        # What the SQL does: compare stored keys, and a NULL key never matches.
        compare = {"==": str.__eq__, "<": str.__lt__, ">": str.__gt__, "<=": str.__le__, ">=": str.__ge__}
        by_key = [t for t in TAGS if version_key(t) is not None and compare[selector.op](version_key(t), selector.key)]
        assert by_key == selected


tag_names = st.one_of(
    st.from_regex(r"[vV]?[0-9]{1,3}(\.[0-9]{1,3}){0,3}(-?(a|b|rc|alpha|dev|post)?[0-9]?)?(-[a-z]+[0-9.]*)?", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True),
)


@settings(max_examples=200, deadline=None)
@given(tag_names, st.sampled_from(["==", "<", ">", "<=", ">="]), versions(local=False))
def test_selector_matches_agrees_with_key_comparison(tag, op, operand):
    # The SQL compiles "-t <op><version>" to "version_key <op> :key"; matches() is the reference it is held to.
    selector = parse_tag_selector(f"{op}{operand}")
    key = version_key(tag)
    compare = {"==": str.__eq__, "<": str.__lt__, ">": str.__gt__, "<=": str.__le__, ">=": str.__ge__}[op]
    assert selector.matches(tag) == (key is not None and compare(key, selector.key))
    if key is not None:
        assert key == key_of(parse_tag_version(tag))


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
