"""The inventory in real BI tools (issue 18): Datasette started for real on a generated inventory with the metadata
`regdb datasette-metadata` writes, and the HTML report opened in headless Chromium with the network off."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests
from sqlalchemy import text

from regdb.inventory.db import create_inventory_engine, upgrade, write_transaction
from regdb.inventory.examples import EXAMPLES
from regdb.inventory.rawsql import describe_schema
from regdb.inventory.views import VIEWS
from tests.rig.dataset import documented_examples
from tests.rig.loopback import free_port
from tests.rig.summaries import Generated, rows

BIN = Path(sys.executable).parent
CHROMIUM = "/usr/bin/chromium"
# Datasette's own default time limit for a query (sql_time_limit_ms): a page over it answers 400.
DATASETTE_TIME_LIMIT_S = 1.0
STARTUP_TIMEOUT_S = 60  # Datasette imports a lot; a loaded CI machine is slow
CHROMIUM_TIMEOUT_S = 120
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  # No network at all: every request would go to a proxy nobody listens on.
                  "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]


def regdb(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "regdb"), *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def inventory(tmp_path_factory) -> Path:
    """Two registries, shared layers, an index, an untagged leftover and one deleted manifest (reclaimable)."""
    db = tmp_path_factory.mktemp("bi-tools") / "inventory.db"
    engine = create_inventory_engine(str(db))
    upgrade(engine)
    layers = [[0, 1], [0, 2], [3], [3, 4], [5], [1, 5], [0], [1]]
    first = Generated(engine, "http://registry-a.example:5000", layers)
    first.write({
        "team/app": {"tags": {"1.0": 0, "1.1": 1, "latest": 1}, "untagged": [4]},
        "team/mirror": {"tags": {"a": 0}, "untagged": []},
        "team/multi": {"tags": {"v1": 7}, "untagged": []},
        "tool": {"tags": {"2.0": 5, "old": 2}, "untagged": []},
    })
    first.forget("tool", 5)
    with write_transaction(engine) as conn:
        conn.execute(text("INSERT INTO deletions (run_id, at, registry, repo, digest, outcome) "
                          "VALUES ('r1', '2026-11-30 10:00:00', :url, 'tool', :digest, 'deleted')"),
                     {"url": first.url, "digest": first.images[5].digest})
    Generated(engine, "http://registry-b.example", layers, seed="b").write(
        {"library/base": {"tags": {"3": 3}, "untagged": []}})
    engine.dispose()
    return db


# --- Datasette ---------------------------------------------------------------------------------------------------


def test_datasette_metadata_describes_everything_regdb_schema_does(inventory, tmp_path):
    out = tmp_path / "metadata.json"
    result = regdb("--db", inventory, "datasette-metadata", "-o", out)
    assert result.returncode == 0, result.stderr
    metadata = json.loads(out.read_text())
    tables = metadata["databases"]["inventory"]["tables"]
    for each in describe_schema():
        assert tables[each.name]["columns"] == {c.column: c.meaning for c in each.columns}
    assert set(metadata["databases"]["inventory"]["queries"]) == {e.name for e in EXAMPLES}
    assert "registry" in tables["images"]["facets"]


def test_datasette_metadata_leaves_facets_off_where_they_would_only_time_out():
    # Each facet counts every tag (about a second per million on the bench, Datasette gives it 200 ms): past
    # FACETS_UP_TO_TAGS the images page would carry four time-outs on every load.
    from regdb.cli.bi import FACETS_UP_TO_TAGS, datasette_metadata

    small = datasette_metadata("inventory", FACETS_UP_TO_TAGS)["databases"]["inventory"]["tables"]["images"]
    large = datasette_metadata("inventory", FACETS_UP_TO_TAGS + 1)["databases"]["inventory"]["tables"]["images"]
    assert small["facets"] == ["registry", "architecture", "os", "media_type"]
    assert "facets" not in large and "?_facet=registry" in large["description"]
    assert large["columns"] == small["columns"]


def test_datasette_metadata_refuses_a_missing_directory_in_one_line(inventory, tmp_path):
    result = regdb("--db", inventory, "datasette-metadata", "-o", tmp_path / "nowhere" / "m.json")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"Error: cannot write {tmp_path / 'nowhere' / 'm.json'}: "
                                                  f"directory {tmp_path / 'nowhere'} does not exist"]


def test_the_shipped_examples_are_the_documented_ones():
    assert [(e.name, e.backend, e.sql.strip()) for e in EXAMPLES] == [
        (e.name, e.backend, e.sql.strip()) for e in documented_examples()]


@pytest.fixture(scope="module")
def datasette(inventory, tmp_path_factory):
    metadata = tmp_path_factory.mktemp("datasette") / "metadata.json"
    assert regdb("--db", inventory, "datasette-metadata", "-o", metadata).returncode == 0
    port = free_port()
    log = metadata.with_name("datasette.log").open("w")
    process = subprocess.Popen([str(BIN / "datasette"), "serve", str(inventory), "--metadata", str(metadata),
                                "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        assert process.poll() is None, metadata.with_name("datasette.log").read_text()
        try:
            if requests.get(f"{url}/-/versions.json", timeout=5).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, "Datasette did not answer"
        time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=30)
    log.close()


@pytest.mark.parametrize("view", [v for v in VIEWS], ids=lambda v: v.name)
def test_every_view_page_loads_within_datasette_s_limit_with_its_descriptions(datasette, view):
    started = time.monotonic()
    page = requests.get(f"{datasette}/inventory/{view.name}", timeout=30)
    assert page.status_code == 200, page.text[:500]
    assert time.monotonic() - started < DATASETTE_TIME_LIMIT_S * 5  # the page, not one query; generous for CI
    assert view.doc.split(":")[0].replace("'", "&#39;") in page.text  # the view's description
    assert "interrupted" not in page.text.lower()
    answer = requests.get(f"{datasette}/inventory/{view.name}.json?_shape=array", timeout=30)
    assert answer.status_code == 200
    assert answer.json() == [] or list(answer.json()[0]) == list(view.columns)


def test_canned_queries_run_in_datasette(datasette):
    for example in EXAMPLES:
        if example.backend == "postgresql":
            continue
        params = {"cutoff": "2024-01-05"} if ":cutoff" in example.sql else {}
        params |= {"repo": "team/app"} if ":repo" in example.sql else {}
        answer = requests.get(f"{datasette}/inventory/{example.name}.json", params={**params, "_shape": "array"},
                              timeout=30)
        assert answer.status_code == 200, (example.name, answer.text[:300])


# --- the HTML report in a real browser ---------------------------------------------------------------------------


class Cells(HTMLParser):
    """section id -> rows of data-value numbers of its table, from the page as the browser built it."""

    def __init__(self):
        super().__init__()
        self.section, self.numbers, self.svgs = None, {}, set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.section = attrs.get("id")
            self.numbers[self.section] = []
        elif tag == "tr" and self.section:
            self.numbers[self.section].append([])
        elif tag == "td" and "data-value" in attrs:
            self.numbers[self.section][-1].append(int(attrs["data-value"]))
        elif tag == "svg" and self.section:
            self.svgs.add(self.section)


def chromium(*args) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, *map(str, args)], capture_output=True, text=True,
                          timeout=CHROMIUM_TIMEOUT_S)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (make system-deps)")
def test_report_renders_offline_in_chromium_with_the_views_numbers(inventory, tmp_path):
    page = tmp_path / "report.html"
    result = regdb("--db", inventory, "report", "--html", page, "--format", "json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    source = page.read_text()
    # Nothing to fetch: no script, stylesheet, image or font by URL (url(#id) is the SVG's own clip path).
    assert not re.search(r"<script|<link|<img|<iframe|url\((?!#)|@import|src=|href=\"http", source)

    shot = tmp_path / "report.png"
    ran = chromium(f"--user-data-dir={tmp_path / 'profile-1'}", f"--screenshot={shot}", "--window-size=1280,2000",
                   page.as_uri())
    assert shot.exists() and shot.stat().st_size > 20_000, ran.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dom = chromium(f"--user-data-dir={tmp_path / 'profile-2'}", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    cells = Cells()
    cells.feed(dom.stdout)
    assert {"repo-space", "reclaimable", "tags-by-age", "untagged", "largest-images"} <= cells.svgs

    engine = create_inventory_engine(str(inventory), readonly=True)
    with engine.connect() as conn:
        stats = rows(conn, "SELECT tags, total_bytes, unique_bytes, total_bytes - unique_bytes FROM repo_stats "
                           "ORDER BY total_bytes DESC, registry, repo")
        reclaimable = rows(conn, "SELECT kind, SUM(size) FROM reclaimable GROUP BY kind ORDER BY kind")
        tags = rows(conn, "SELECT COUNT(*) FROM images")[0][0]
        largest = rows(conn, "SELECT tags, size FROM digest_usage WHERE tags > 0 ORDER BY size DESC, digest")
    engine.dispose()
    assert [list(r) for r in stats] == [r for r in cells.numbers["repo-space"] if r]
    assert [[size] for _, size in reclaimable] == [r for r in cells.numbers["reclaimable"] if r]
    assert figures["reclaimable_bytes"] == sum(size for _, size in reclaimable) > 0
    assert sum(r[0] for r in cells.numbers["tags-by-age"] if r) == tags == figures["tags"]
    assert [list(r) for r in largest] == [r for r in cells.numbers["largest-images"] if r]
    assert figures["untagged_manifests"] == 1  # team/app's leftover image 4; index children apart
    assert figures["index_children"] == 1  # image 3, only in team/multi's index (image 2 is tagged in tool)
    assert figures["growth"] is None or isinstance(figures["growth"], list)


def test_report_json_without_html_needs_no_browser_nor_matplotlib_import(inventory):
    result = subprocess.run([sys.executable, "-c", (
        "import sys, json; from click.testing import CliRunner; from regdb.cli.app import main; "
        f"r = CliRunner().invoke(main, ['--db', {str(inventory)!r}, 'report', '--format', 'json']); "
        "assert r.exit_code == 0, r.output; json.loads(r.output); print('matplotlib' in sys.modules)")],
        capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr


def test_growth_follows_tag_history_when_the_inventory_has_one(tmp_path):
    from datetime import datetime

    from regdb.inventory import report

    engine = create_inventory_engine(str(tmp_path / "history.db"))
    upgrade(engine)
    with write_transaction(engine) as conn:
        assert report.collect(conn).growth in (None, [])  # no history (yet): no chart
        # The columns of the tag_history another migration adds (issue 15); created here when it is not there.
        conn.exec_driver_sql(
            "CREATE TABLE IF NOT EXISTS tag_history (id INTEGER PRIMARY KEY, registry_id INTEGER NOT NULL, "
            "repo VARCHAR NOT NULL, tag VARCHAR NOT NULL, digest VARCHAR NOT NULL, valid_from DATETIME NOT NULL, "
            "valid_to DATETIME, source VARCHAR NOT NULL, ended_by VARCHAR)")
        conn.exec_driver_sql("INSERT INTO registries (id, url, name) VALUES (1, 'http://r.example', 'r.example')")
        stretches = [("2026-01-01 10:00:00", None), ("2026-01-01 11:00:00", "2026-03-01 00:00:00"),
                     ("2026-02-01 09:00:00", None), ("2026-04-01 09:00:00", None)]
        for n, (start, end) in enumerate(stretches):
            conn.execute(text("INSERT INTO tag_history (registry_id, repo, tag, digest, valid_from, valid_to, source) "
                              "VALUES (1, 'app', :tag, 'sha256:x', :start, :end, 'sync')"),
                         {"tag": f"t{n}", "start": start, "end": end})
        growth = dict(report.collect(conn, now=datetime(2026, 5, 1)).growth)
    engine.dispose()
    alive = lambda day: growth[max(point for point in growth if point <= day)]  # noqa: E731 - the last point by then
    assert alive("2026-01-15") == 2 and alive("2026-02-15") == 3 and alive("2026-03-15") == 2
    assert list(growth.values())[-1] == 3
