"""The sqlite3 reader of the read-only listings (regdb.selection.sqlite_reader) answers exactly as the full
``Inventory`` (SQLAlchemy, regdb.selection.selectors) does:
the same rows, skipped pairs, missing repositories and errors,
held equal on generated inventories and queries; and it hands on what it does not answer itself.
"""

from __future__ import annotations

import shutil

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from regdb import Inventory
from regdb.inventory.db import create_inventory_engine, write_transaction
from regdb.errors import RegdbError
from regdb.selection.sqlite_reader import SCHEMA_HEAD, InventoryReader, open_reader
from tests.rig.selections import NAME, URL, cases, populate, registries


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """An empty inventory at the newest schema, made once: each example copies it (migrating takes a second)."""
    path = tmp_path_factory.mktemp("reader") / "template.db"
    Inventory(path).close()
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("examples")


_counter = iter(range(1_000_000))


def inventory_file(template, workdir, *registries_: tuple[dict, str, str]):
    """A copy of the template holding each (repos, url, name) registry, written with plain inserts."""
    path = workdir / f"inventory-{next(_counter)}.db"
    shutil.copyfile(template, path)
    engine = create_inventory_engine(str(path))
    try:
        with write_transaction(engine) as conn:
            for repos, url, name in registries_:
                populate(conn, repos, url=url, name=name)
    finally:
        engine.dispose()
    return path


def answer(call):
    """("ok", rows, missing, skipped) or ("error", type name, message): what a command would show."""
    try:
        result = call()
    except RegdbError as error:
        return ("error", type(error).__name__, str(error), getattr(error, "others", None))
    return ("ok", list(result), list(getattr(result, "missing_repos", [])), list(getattr(result, "skipped", [])))


def both(path):
    full = Inventory(path, readonly=True)
    reader = open_reader(str(path), URL, fallback=lambda: pytest.fail("the reader handed a query on"))
    assert isinstance(reader, InventoryReader)
    return full, reader


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=cases(), other_registry=registries(), reverse=st.booleans())
@example(  # the tag check must see pairs the repository check drops (test_selectors' PostgreSQL find)
    case=({"a": ({"1.0": "s0"}, set()), "b": ({"1.0": "s0"}, set()), "team/c": ({"1.0": "s0", "1.0.0": "s0"}, set())},
          {"tags": ["1.0"], "regex": [], "exclude": [], "exclude_regex": [], "match_all_tags": True,
           "raise_intersecting_tag": True, "raise_intersecting_repo": False, "repos": ["a", "team/c"]}),
    other_registry={"a": ({"1.0": "s0"}, set())}, reverse=False,
)
def test_the_reader_answers_every_listing_as_the_full_inventory_does(template, workdir, case, other_registry,
                                                                     reverse):
    registry, query = case
    # A second registry sharing digests and repository names must change nothing, on either side.
    path = inventory_file(template, workdir, (other_registry, "https://other.test", "other.test"),
                          (registry, URL, NAME))
    full, reader = both(path)
    try:
        selecting = dict(query)
        repos = selecting.pop("repos")
        tags, regex = selecting.pop("tags"), selecting.pop("regex")
        exclude, exclude_regex = selecting.pop("exclude"), selecting.pop("exclude_regex")
        assert answer(lambda: reader.query_tags(URL, repos, tags, regex, exclude, exclude_regex, **selecting)) == \
            answer(lambda: full.query_tags(URL, repos, tags, regex, exclude, exclude_regex, **selecting))
        for raise_repo in (True, False):
            assert answer(lambda r=raise_repo: reader.query_repos(URL, repos, raise_intersecting_repo=r)) == \
                answer(lambda r=raise_repo: full.query_repos(URL, repos, raise_intersecting_repo=r))
        assert answer(lambda: reader.list_tags(URL, repos, reverse=reverse)) == \
            answer(lambda: full.list_tags(URL, repos, reverse=reverse))
        assert answer(lambda: reader.list_tags(URL, None, reverse=reverse)) == \
            answer(lambda: full.list_tags(URL, None, reverse=reverse))
        assert reader.list_repos(URL) == full.list_repos(URL)
    finally:
        full.close()
        reader.close()


@pytest.mark.parametrize("arguments", [
    dict(tags=[]),  # nothing selected
    dict(tags=["<x.y"]),  # not a version
    dict(tags=["1.0"], regex=["("]),  # not a regular expression
    dict(tags=["1.0"], exclude_regex=["[z-a]"]),
])
def test_bad_selectors_are_the_same_errors(template, workdir, arguments):
    path = inventory_file(template, workdir, ({"a": {"1.0": "s0"}}, URL, NAME))
    full, reader = both(path)
    try:
        assert answer(lambda: reader.query_tags(URL, ["a"], **arguments)) == \
            answer(lambda: full.query_tags(URL, ["a"], **arguments))
        assert answer(lambda: reader.query_tags(URL, ["a"], **arguments))[0] == "error"
        assert answer(lambda: reader.query_tags(URL, [], tags=["1.0"])) == \
            answer(lambda: full.query_tags(URL, [], tags=["1.0"]))
    finally:
        full.close()
        reader.close()


@pytest.mark.parametrize("call", [
    lambda r: r.query_tags(URL, ["a*"], ["1.0"]),
    lambda r: r.query_tags(URL, ["a"], ["1.*"]),
    lambda r: r.query_tags(URL, ["a"], ["1.0"], exclude=["pr-[0-9]"]),
    lambda r: r.query_repos(URL, ["team/?"]),
    lambda r: r.list_tags(URL, ["a", "b*"]),
])
def test_a_glob_is_handed_to_the_full_inventory(template, workdir, call):
    """No repository or tag name holds `*`, `?` or `[`: such a value is a pattern, and the full path owns what
    a pattern means (globs on the command line, issue 17), so the reader never guesses."""
    path = inventory_file(template, workdir, ({"a": {"1.0": "s0"}}, URL, NAME))
    handed = []

    class Full:
        def __getattr__(self, name):
            return lambda *args, **kwargs: handed.append((name, args)) or "full answer"

    reader = open_reader(str(path), URL, fallback=Full)
    try:
        assert call(reader) == "full answer"
        assert len(handed) == 1
    finally:
        reader.close()


def test_the_reader_opens_only_an_inventory_it_can_answer_for(template, workdir, tmp_path):
    synced = inventory_file(template, workdir, ({"a": {"1.0": "s0"}}, URL, NAME))
    never = lambda: pytest.fail("not asked for")  # noqa: E731
    reader = open_reader(str(synced), URL, fallback=never)
    assert reader is not None
    reader.close()
    # Another registry, never synced: the full path syncs it first.
    assert open_reader(str(synced), "https://elsewhere.test", fallback=never) is None
    # No such file, not a database, a database that is no inventory, an older schema.
    assert open_reader(str(tmp_path / "missing.db"), URL, fallback=never) is None
    (tmp_path / "text.db").write_text("not a database at all\n" * 100)
    assert open_reader(str(tmp_path / "text.db"), URL, fallback=never) is None
    import sqlite3

    plain = sqlite3.connect(tmp_path / "plain.db")
    plain.execute("CREATE TABLE t (x)")
    plain.close()
    assert open_reader(str(tmp_path / "plain.db"), URL, fallback=never) is None
    older = inventory_file(template, workdir, ({"a": {"1.0": "s0"}}, URL, NAME))
    conn = sqlite3.connect(older)
    conn.execute("UPDATE alembic_version SET version_num = '0007'")
    conn.commit()
    conn.close()
    assert open_reader(str(older), URL, fallback=never) is None


def test_the_reader_knows_the_schema_head():
    from regdb.inventory import db

    assert SCHEMA_HEAD == db.SCHEMA_HEAD


def test_the_reader_never_writes(template, workdir):
    path = inventory_file(template, workdir, ({"a": {"1.0": "s0"}}, URL, NAME))
    reader = open_reader(str(path), URL, fallback=lambda: None)
    import sqlite3

    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly|read-only"):
            reader.conn.execute("DELETE FROM tags")
    finally:
        reader.close()
