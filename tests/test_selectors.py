"""Selectors compiled into SQL (regdb.selection.selectors), on small inventories written straight into SQLite.

The last test holds the SQL against a plain-Python reference of issue #3's rules on random inventories.
"""

from __future__ import annotations

import logging
import re

import pytest
from hypothesis import HealthCheck, example, given, settings

from regdb import Inventory
from regdb.errors import IntersectionError, InventoryError, SelectorError
from regdb.selection.selectors import (
    Selected,
    TagRow,
    anchored,
    list_repos,
    list_tags,
    query_repos,
    query_tags,
)
from regdb.versions import compile_regex, parse_tag_selector, regex_matches, version_key
from tests.rig.selections import (
    DOCKER,
    INDEX,
    NAME,
    URL,
    cases,
    digest,
    populate,
    registries,
    size_of,
)

@pytest.fixture(scope="module")
def shared_inventory():
    with Inventory(":memory:") as inv:
        yield inv


@pytest.fixture
def conn(shared_inventory):
    """A connection in a transaction rolled back after the test: each test sees an empty inventory."""
    with shared_inventory.engine.connect() as connection:
        transaction = connection.begin()
        yield connection
        transaction.rollback()


@pytest.fixture
def inventory():
    with Inventory(":memory:") as inv:
        yield inv


def pairs(selection) -> list[tuple[str, str, tuple[str, ...]]]:
    """(repo, digest label, tags) per selected row, with the label recovered for readable assertions."""
    names = {digest(label): label for label in LABELS}
    return [(row.repo, names.get(row.digest, row.digest), row.tags) for row in selection]


LABELS = ["old", "mid", "new", "edge", "latest", "shared", "index", "child-amd64", "child-arm64", "x", "y", "z"]


# --- what a row is ------------------------------------------------------------------------------------------


def test_exact_tag_selects_its_digest_with_every_field(conn):
    registry_id = populate(conn, {"app": {"1.0": "old", "1.1": "new"}})
    result = query_tags(conn, registry_id, ["app"], tags=["1.0"])
    assert list(result) == [Selected(NAME, "app", digest("old"), ("1.0",), DOCKER, size_of("old"))]
    assert result.missing_repos == []


def test_a_multi_arch_tag_selects_the_index_and_never_its_children(conn):
    registry_id = populate(
        conn, {"app": {"1.0": "index", "latest": "index"}}, children={"index": ["child-amd64", "child-arm64"]}
    )
    by_tag = query_tags(conn, registry_id, ["app"], regex=[".*"])
    assert pairs(by_tag) == [("app", "index", ("1.0", "latest"))]
    assert by_tag[0].media_type == INDEX
    assert pairs(query_repos(conn, registry_id, ["app"])) == [("app", "index", ("1.0", "latest"))]


# --- -t: exact names and version comparisons ----------------------------------------------------------------


VERSIONED = {
    "0.9": "x", "1.0": "old", "v1.1": "mid", "1.2.3-alpine": "edge", "1.4.0": "new", "2.0rc1": "y", "latest": "latest",
    "1.1-keep": "z",
}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("<1.2", ["0.9", "1.0", "1.1-keep", "v1.1"]),
        # The precision rule (regdb.versions): fewer release components than the operand never select.
        ("<=1.2.3", ["1.2.3-alpine"]),
        (">1.2.3", ["1.4.0"]),
        (">=1.4", ["1.4.0", "2.0rc1"]),
        ("==1.4.0", ["1.4.0"]),
        ("==1.4", []),  # 1.4 == 1.4.0 in PEP 440, but == also needs as many release components
        ("==v1.1", ["1.1-keep", "v1.1"]),  # a leading v, and a -suffix that is no pre/post/dev part
        ("== 1.2.3", ["1.2.3-alpine"]),
        ("<2", ["0.9", "1.0", "1.1-keep", "v1.1", "1.2.3-alpine", "1.4.0", "2.0rc1"]),  # PEP 440: 2.0rc1 < 2.0
        ("<2.0rc1", ["0.9", "1.0", "1.1-keep", "v1.1", "1.2.3-alpine", "1.4.0"]),
        ("latest", ["latest"]),  # no operator: an exact name
        ("1.4", []),  # ... and exact means exact: the tag is 1.4.0
    ],
)
def test_version_selectors(conn, selector, expected):
    registry_id = populate(conn, {"app": {tag: f"{label}-{tag}" for tag, label in VERSIONED.items()}})
    result = query_tags(conn, registry_id, ["app"], tags=[selector])
    tags_in_version_order = [row.tags[0] for row in result]
    assert tags_in_version_order == expected


def test_tags_without_a_version_never_match_a_version_selector(conn):
    registry_id = populate(conn, {"app": {"latest": "x", "main": "y", "abc1.0": "z", "1.0_x": "old"}})
    for selector in ["<99", ">0", "==0", ">=0", "<=99"]:
        assert list(query_tags(conn, registry_id, ["app"], tags=[selector])) == [], selector


# --- -re: re.match semantics ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"1\.", ["1.0", "1.2-alpine", "1.10"]),
        ("alpine", []),  # anchored at the start, as re.match: "1.2-alpine" does not start with it
        (".*alpine", ["1.2-alpine"]),
        ("1", ["1.0", "1.2-alpine", "1.10", "10.1"]),  # not anchored at the end
        ("(?i)LATEST", ["Latest", "latest"]),  # global flags at the start still work
        (r"v\d", ["v2"]),
    ],
)
def test_regex_matches_from_the_start_of_the_tag(conn, pattern, expected):
    tags = ["1.0", "1.2-alpine", "1.10", "10.1", "latest", "Latest", "v2", "xv2"]
    registry_id = populate(conn, {"app": {tag: f"d-{tag}" for tag in tags}})
    result = query_tags(conn, registry_id, ["app"], regex=[pattern])
    assert sorted(row.tags[0] for row in result) == sorted(expected)


def test_tags_and_regexes_add_up(conn):
    registry_id = populate(conn, {"app": {"1.0": "old", "2.0": "new", "latest": "latest", "dev-1": "x"}})
    result = query_tags(conn, registry_id, ["app"], tags=["<1.5", "latest"], regex=["dev"])
    assert pairs(result) == [("app", "old", ("1.0",)), ("app", "x", ("dev-1",)), ("app", "latest", ("latest",))]


# --- the safety rules ------------------------------------------------------------------------------------------


def test_match_all_tags_leaves_out_a_digest_with_an_unselected_tag(conn):
    registry_id = populate(conn, {"app": {"1.0": "old", "1.1": "mid", "one": "mid", "2.0": "new"}})
    assert pairs(query_tags(conn, registry_id, ["app"], tags=["<1.4"])) == [("app", "old", ("1.0",))]
    # Naming the other tag too selects it, as the seed's README shows with `-t \<1.4 one`.
    assert pairs(query_tags(conn, registry_id, ["app"], tags=["<1.4", "one"])) == [
        ("app", "old", ("1.0",)), ("app", "mid", ("1.1", "one")),
    ]
    # --no-match-all-tags: the reverse check is off; the row still lists every tag of the digest.
    assert pairs(query_tags(conn, registry_id, ["app"], tags=["<1.4"], match_all_tags=False)) == [
        ("app", "old", ("1.0",)), ("app", "mid", ("1.1", "one")),
    ]


def test_raise_intersecting_tag_names_the_digest_and_the_tags(conn):
    registry_id = populate(conn, {"app": {"1.0": "old", "1.1": "mid", "one": "mid", "stable": "mid"}})
    with pytest.raises(IntersectionError) as caught:
        query_tags(conn, registry_id, ["app"], tags=["<1.4"], raise_intersecting_tag=True)
    error = caught.value
    assert (error.repo, error.digest, error.others) == ("app", digest("mid"), ["one", "stable"])
    assert str(error) == (
        f"app@{digest('mid')} is also tagged one, stable in app, which the selection does not include "
        "(--raise-intersecting-tag); select those tags too, or leave the option out to skip such digests"
    )
    # Without match-all-tags there is no reverse check, so nothing to raise.
    result = query_tags(conn, registry_id, ["app"], tags=["<1.4"], raise_intersecting_tag=True, match_all_tags=False)
    assert len(result) == 2


@pytest.mark.parametrize("match_all_tags", [True, False])
@pytest.mark.parametrize("raise_intersecting_tag", [True, False])
def test_an_excluded_tag_protects_its_digest_always(conn, match_all_tags, raise_intersecting_tag):
    registry_id = populate(conn, {"app": {"1.0": "old", "1.1": "mid", "1.1-keep": "mid", "1.2": "new",
                                          "keep-me": "edge", "1.3": "edge"}})
    result = query_tags(
        conn, registry_id, ["app"], tags=["<2"], exclude=["1.1-keep"], exclude_regex=["keep-"],
        match_all_tags=match_all_tags, raise_intersecting_tag=raise_intersecting_tag,
    )
    # mid carries an excluded (and selected) tag; edge carries a tag only -xre names: both protected, silently.
    assert pairs(result) == [("app", "old", ("1.0",)), ("app", "new", ("1.2",))]


def test_exclusion_by_version(conn):
    registry_id = populate(conn, {"app": {"1.0": "old", "1.1": "mid", "1.2": "new"}})
    assert pairs(query_tags(conn, registry_id, ["app"], tags=["<2"], exclude=[">=1.1"])) == [("app", "old", ("1.0",))]


def test_a_digest_in_a_repository_outside_the_selection_raises_naming_it(conn):
    # "shared" is tagged in app, held untagged by tool and tagged in web: both count as present.
    registry_id = populate(conn, {
        "app": {"1.0": "shared", "1.1": "new"},
        "web": {"prod": "shared"},
        "tool": ({}, {"shared"}),
    })
    with pytest.raises(IntersectionError) as caught:
        query_tags(conn, registry_id, ["app"], tags=["<2"])
    error = caught.value
    assert (error.repo, error.digest, error.others) == ("app", digest("shared"), ["tool", "web"])
    assert str(error) == (
        f"app@{digest('shared')} is also in repository tool, web, which the selection does not include; "
        "name it with -r too, or use --no-raise-intersecting-repo to leave such digests out"
    )
    # raise_intersecting_repo=False drops it instead.
    assert pairs(query_tags(conn, registry_id, ["app"], tags=["<2"], raise_intersecting_repo=False)) == [
        ("app", "new", ("1.1",)),
    ]
    # Selecting every repository that holds it is no intersection: one row per repository that selects it.
    result = query_tags(conn, registry_id, ["app", "web", "tool"], tags=["<2", "prod"])
    assert pairs(result) == [("app", "shared", ("1.0",)), ("app", "new", ("1.1",)), ("web", "shared", ("prod",))]


def test_the_error_names_the_first_violation_by_repository_then_digest(conn):
    first, second = sorted(["x", "y"], key=digest)
    registry_id = populate(conn, {
        "b": {"1.0": "z", "stable": "z"},
        "a": {"1.0": second, "1.1": first, "keep": second, "keep-too": first, "2.0": "old"},
        "other": {"prod": first, "also": second},
    })
    with pytest.raises(IntersectionError) as by_tag:
        query_tags(conn, registry_id, ["b", "a", "other"], tags=["<2"], raise_intersecting_tag=True)
    assert (by_tag.value.repo, by_tag.value.digest, by_tag.value.others) == ("a", digest(first), ["keep-too"])
    with pytest.raises(IntersectionError) as by_repo:
        query_tags(conn, registry_id, ["b", "a"], tags=["<2"], match_all_tags=False)
    assert (by_repo.value.repo, by_repo.value.digest, by_repo.value.others) == ("a", digest(first), ["other"])


def test_the_tag_check_comes_before_the_repository_check(conn):
    # 1.0.0 is outside the selection and web holds the digest: the tag check raises before the repository
    # check, which would only have dropped the digest, gets to it.
    registry_id = populate(conn, {"app": {"1.0": "old", "1.0.0": "old"}, "web": {"prod": "old"}})
    with pytest.raises(IntersectionError) as caught:
        query_tags(conn, registry_id, ["app"], tags=["1.0"], raise_intersecting_tag=True, raise_intersecting_repo=False)
    assert caught.value.others == ["1.0.0"]
    assert list(query_tags(conn, registry_id, ["app"], tags=["1.0", "1.0.0"], raise_intersecting_tag=True,
                           raise_intersecting_repo=False)) == []


def test_a_digest_held_as_an_index_child_elsewhere_is_an_intersection(conn):
    registry_id = populate(
        conn, {"app": {"1.0": "child-amd64"}, "multi": {"1.0": "index"}},
        children={"index": ["child-amd64", "child-arm64"]},
    )
    with pytest.raises(IntersectionError) as caught:
        query_tags(conn, registry_id, ["app"], tags=["1.0"])
    assert caught.value.others == ["multi"]


def test_query_repos_checks_other_repositories_too(conn):
    registry_id = populate(conn, {"app": {"1.0": "old", "2.0": "shared"}, "web": {"prod": "shared"}})
    with pytest.raises(IntersectionError):
        query_repos(conn, registry_id, ["app"])
    assert pairs(query_repos(conn, registry_id, ["app"], raise_intersecting_repo=False)) == [("app", "old", ("1.0",))]
    assert pairs(query_repos(conn, registry_id, ["web", "app"])) == [
        ("app", "old", ("1.0",)), ("app", "shared", ("2.0",)), ("web", "shared", ("prod",)),
    ]


def test_another_registry_in_the_same_inventory_is_neither_seen_nor_an_intersection(conn):
    first = populate(conn, {"app": {"1.0": "shared"}})
    second = populate(conn, {"app": {"9.0": "new"}, "web": {"prod": "shared"}},
                      url="https://other.test", name="other.test")
    assert pairs(query_tags(conn, first, ["app"], regex=[".*"])) == [("app", "shared", ("1.0",))]
    assert pairs(query_tags(conn, second, ["app"], regex=[".*"])) == [("app", "new", ("9.0",))]
    assert query_tags(conn, second, ["app"], regex=[".*"])[0].registry == "other.test"


# --- repositories that do not exist; errors ----------------------------------------------------------------------


def test_unknown_repositories_are_reported_not_selected(conn):
    registry_id = populate(conn, {"app": {"1.0": "old"}})
    result = query_tags(conn, registry_id, ["nope", "app", "gone", "nope"], tags=["1.0"])
    assert pairs(result) == [("app", "old", ("1.0",))]
    assert result.missing_repos == ["nope", "gone"]
    only_missing = query_repos(conn, registry_id, ["nope"])
    assert (list(only_missing), only_missing.missing_repos) == ([], ["nope"])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (dict(), "no tags selected: give at least one tags or regex"),
        (dict(tags=["<1.x"]), "invalid version in selector '<1.x': '1.x'"),
        (dict(tags=["1.0"], exclude=[">=abc"]), "invalid version in selector '>=abc': 'abc'"),
        (dict(regex=["(unclosed"]), "invalid regex '(unclosed': missing ), unterminated subpattern at position 0"),
        (dict(tags=["1.0"], exclude_regex=["a(?i)b"]), "invalid regex 'a(?i)b': global flags not at the start of "
                                                     "the expression at position 1"),
    ],
)
def test_invalid_selectors_are_usage_errors_naming_them(conn, arguments, message):
    registry_id = populate(conn, {"app": {"1.0": "old"}})
    with pytest.raises(SelectorError) as caught:
        query_tags(conn, registry_id, ["app"], **arguments)
    assert str(caught.value) == message


# --- order --------------------------------------------------------------------------------------------------------


def test_rows_by_repository_then_version_order_of_the_first_tag(conn):
    registry_id = populate(conn, {
        "b": {"1.10": "new", "1.9": "mid", "v1.2": "old", "latest": "new", "alpha": "x"},
        "a": {"2.0": "y", "10.0": "z"},
    })
    result = query_tags(conn, registry_id, ["b", "a"], regex=[".*"])
    assert pairs(result) == [
        ("a", "y", ("2.0",)), ("a", "z", ("10.0",)),
        ("b", "old", ("v1.2",)), ("b", "mid", ("1.9",)), ("b", "new", ("1.10", "latest")), ("b", "x", ("alpha",)),
    ]


# --- listings -----------------------------------------------------------------------------------------------------


def test_list_repos_only_lists_repositories_with_tags(conn):
    registry_id = populate(conn, {"zeta": {"1": "x"}, "alpha": {"1": "y"}, "empty": ({}, {"z"})})
    populate(conn, {"elsewhere": {"1": "x"}}, url="https://other.test", name="other.test")
    assert list_repos(conn, registry_id) == ["alpha", "zeta"]


def test_list_tags_in_version_order_then_names(conn):
    registry_id = populate(conn, {
        "b": {"1.10": "new", "1.9": "mid", "v1.2": "old", "latest": "new", "alpha": "x", "1.2.3-alpine": "y"},
        "a": {"main": "z"},
    })
    rows = list_tags(conn, registry_id)
    assert [(row.repo, row.tag) for row in rows] == [
        ("a", "main"), ("b", "v1.2"), ("b", "1.2.3-alpine"), ("b", "1.9"), ("b", "1.10"), ("b", "alpha"),
        ("b", "latest"),
    ]
    assert rows[0] == TagRow("a", "main", digest("z"))
    reversed_rows = list_tags(conn, registry_id, ["b", "c"], reverse=True)
    assert [row.tag for row in reversed_rows] == ["latest", "alpha", "1.10", "1.9", "1.2.3-alpine", "v1.2"]
    assert reversed_rows.missing_repos == ["c"]


# --- the Python API and the SQL it runs -------------------------------------------------------------------------


def test_inventory_api_names_the_registry_by_url_or_host(inventory):
    with inventory.engine.begin() as connection:
        populate(connection, {"app": {"1.0": "old", "latest": "new"}}, url="http://localhost:5000",
                 name="localhost:5000")
    for registry in ["http://localhost:5000", "localhost:5000"]:
        assert pairs(inventory.query_tags(registry, ["app"], tags=["<2"])) == [("app", "old", ("1.0",))]
        assert pairs(inventory.query_repos(registry, "app")) == [
            ("app", "old", ("1.0",)), ("app", "new", ("latest",)),
        ]
        assert inventory.list_repos(registry) == ["app"]
        assert [row.tag for row in inventory.list_tags(registry, reverse=True)] == ["latest", "1.0"]
    with pytest.raises(InventoryError, match=r"registry elsewhere\.test is not in inventory :memory:; run "
                                             r"'regdb sync' first"):
        inventory.query_repos("elsewhere.test", ["app"])


def test_regex_function_is_available_to_hand_written_sql(tmp_path):
    from sqlalchemy import text

    with Inventory(tmp_path / "inventory.db") as inventory:
        with inventory.engine.begin() as connection:
            populate(connection, {"app": {"1.0": "old"}})
        assert inventory.list_repos(URL) == ["app"]
        inventory.engine.dispose()  # the next connection is a new one: the connect listener must equip it
        with inventory.engine.connect() as connection:
            found = connection.execute(text(
                "SELECT regdb_match('1\\.', name), regdb_match('0', name), regdb_match('(?i)X|1', name) FROM tags"
            )).one()
    assert found == (1, 0, 1)


def test_debug_log_shows_the_sql_with_its_values(conn, caplog):
    registry_id = populate(conn, {"app": {"1.0": "old"}})
    with caplog.at_level(logging.DEBUG, logger="regdb.selection.selectors"):
        query_tags(conn, registry_id, ["app"], tags=["<1.4"], regex=["v"], exclude=["0.1"])
    logged = "\n".join(record.getMessage() for record in caplog.records if record.name == "regdb.selection.selectors")
    assert "EXISTS (SELECT" in logged and ") AS excluded" in logged
    assert f"version_key < '{parse_tag_selector('<1.4').base}'" in logged
    assert "regdb_match('v', selected_tag.name)" in logged
    assert "repo_digests.repo_id NOT IN (1)" in logged


@pytest.mark.parametrize("pattern", ["1\\.", "(?i)latest", "(?i)(?s)a.b", "a|b", "", "(?x) v \\d"])
@pytest.mark.parametrize("tag", ["1.2", "LATEST", "latest-1", "xa", "b", "a\nb", "v2", "xv2"])
def test_anchoring_for_searching_engines_equals_re_match(pattern, tag):
    # PostgreSQL's ~ searches; anchored() must make a search behave as re.match, flags first.
    assert (re.search(anchored(pattern), tag) is not None) == (re.match(pattern, tag) is not None)


# --- the SQL equals a plain-Python reference of the rules ----------------------------------------------------------



def tag_order(tag: str):
    key = version_key(tag)
    return (key is None, key or "", tag)


def reference(registry: dict, query: dict):
    """Issue #3's rules, spelled out in Python: returns (rows, missing) or raises IntersectionError."""
    named = list(dict.fromkeys(query["repos"]))
    selected_repos = [repo for repo in named if repo in registry]
    missing = [repo for repo in named if repo not in registry]
    include = [parse_tag_selector(t) for t in query["tags"]], [compile_regex(p) for p in query["regex"]]
    exclude = [parse_tag_selector(t) for t in query["exclude"]], [compile_regex(p) for p in query["exclude_regex"]]

    def matches(tag, which):
        selectors, patterns = which
        protects = which is exclude  # an exclusion protects by the precision rule or plain PEP 440
        return any(s.matches(tag, protects=protects) for s in selectors) or any(regex_matches(p, tag) for p in patterns)

    def tags_of(repo, label):
        return sorted((t for t, d in registry[repo][0].items() if d == label), key=tag_order)

    candidates = sorted({
        (repo, label) for repo in selected_repos for tag, label in registry[repo][0].items()
        if matches(tag, include) and not matches(tag, exclude)
    }, key=lambda pair: (pair[0], digest(pair[1])))
    # 1. an excluded tag protects its digest
    candidates = [(r, d) for r, d in candidates if not any(matches(t, exclude) for t in tags_of(r, d))]
    # 2. every tag of the digest in that repository must be selected
    if query["match_all_tags"]:
        outside = {(r, d): [t for t in tags_of(r, d) if not matches(t, include)] for r, d in candidates}
        offending = [pair for pair in candidates if outside[pair]]
        if offending and query["raise_intersecting_tag"]:
            repo, label = offending[0]
            raise IntersectionError("tag", repo=repo, digest=digest(label), others=outside[offending[0]])
        candidates = [pair for pair in candidates if not outside[pair]]
    # 3. no repository outside the selection may hold the digest (tagged or not)
    elsewhere = {
        (r, d): sorted(other for other, (tags, untagged) in registry.items()
                       if other not in selected_repos and (d in tags.values() or d in untagged))
        for r, d in candidates
    }
    offending = [pair for pair in candidates if elsewhere[pair]]
    if offending and query["raise_intersecting_repo"]:
        repo, label = offending[0]
        raise IntersectionError("repo", repo=repo, digest=digest(label), others=elsewhere[offending[0]])
    rows = [(r, digest(d), tuple(tags_of(r, d))) for r, d in candidates if not elsewhere[(r, d)]]
    rows.sort(key=lambda row: (row[0], tag_order(row[2][0])))
    return rows, missing


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=cases(), other_registry=registries())
@example(  # found by the PostgreSQL twin below: the tag check must see pairs the repository check drops
    case=({"a": ({"1.0": "s0"}, set()), "b": ({"1.0": "s0"}, set()), "team/c": ({"1.0": "s0", "1.0.0": "s0"}, set())},
          {"tags": ["1.0"], "regex": [], "exclude": [], "exclude_regex": [], "match_all_tags": True,
           "raise_intersecting_tag": True, "raise_intersecting_repo": False, "repos": ["a", "team/c"]}),
    other_registry={"a": ({"1.0": "s0"}, set())},
)
def test_sql_selection_equals_the_python_reference(shared_inventory, case, other_registry):
    registry, query = case
    result = hold_against_reference(shared_inventory, registry, query, other_registry)
    if result is not None:
        labels = {digest(label): label for tags, untagged in registry.values() for label in [*tags.values(), *untagged]}
        assert all(row.size == size_of(labels[row.digest]) and row.registry == NAME for row in result)


def hold_against_reference(inventory, registry, query, other_registry):
    """Populate both registries in a transaction that is rolled back, and hold query_tags equal to the
    reference (the same rows, or the same IntersectionError). Returns the rows, None after an error."""
    with inventory.engine.connect() as connection:
        transaction = connection.begin()
        try:
            # A second registry sharing digests and repository names must change nothing.
            populate(connection, other_registry, url="https://other.test", name="other.test")
            registry_id = populate(connection, registry)
            try:
                expected = reference(registry, query)
            except IntersectionError as error:
                with pytest.raises(IntersectionError) as caught:
                    query_tags(connection, registry_id, **query)
                assert (caught.value.repo, caught.value.digest, caught.value.others) == (
                    error.repo, error.digest, error.others)
                return None
            result = query_tags(connection, registry_id, **query)
            assert ([(row.repo, row.digest, row.tags) for row in result], result.missing_repos) == expected
            return result
        finally:
            transaction.rollback()



# --- the same on PostgreSQL (its ~ operator instead of regdb_match) -----------------------------------------------


@pytest.fixture
def pg_inventory(pg_url):
    with Inventory(pg_url) as inv:
        yield inv


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=cases(), other_registry=registries())
def test_postgresql_selection_equals_the_python_reference(pg_inventory, case, other_registry):
    registry, query = case
    hold_against_reference(pg_inventory, registry, query, other_registry)
