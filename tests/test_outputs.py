"""regdb's outputs are consistent to script (issue 17): --format wherever a command prints rows or a result, one
JSON layout, ISO 8601 timestamps with Z, --count that counts or is a usage error, plural forms, help that says
what the code does, a subcommand's own usage on its errors, sql's --refresh and -c None, and the one-line hint
for a plain-http registry named without a scheme. Against the suite's real registries."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from regdb.cli.app import main
from regdb.cli.core import COUNTED_COMMANDS, COUNTED_PLANS
from tests.rig.cli import run
from tests.rig.pusher import Pusher

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")


def regdb(url, db, *args, status=0, input=None):
    result = run("-reg", url, "--db", str(db), *args, input=input, prog_name="regdb")
    assert result.exit_code == status, result.output
    return result


def assert_json_layout(text: str):
    """The one JSON layout: a single document; a list one item a line, an object one member a line."""
    document = json.loads(text)
    lines = text.rstrip("\n").split("\n")
    if isinstance(document, (list, dict)) and document:
        assert (lines[0], lines[-1]) == (("[", "]") if isinstance(document, list) else ("{", "}")), text
        members = [line[2:].rstrip(",") for line in lines[1:-1]]
        assert all(line.startswith("  ") and not line.startswith("   ") for line in lines[1:-1]), text
        if isinstance(document, list):
            assert [json.loads(member) for member in members] == document
        else:
            assert {k: v for member in members for k, v in json.loads("{" + member + "}").items()} == document
    return document


@dataclass
class App:
    url: str
    db: Path
    repo: str
    pusher: Pusher


@pytest.fixture(scope="module")
def app(registry, tmp_path_factory) -> App:
    """PREFIX/app with 1.0 (also rc1), 1.10, 2.0 and latest on the session registry; synced once by name."""
    pusher = Pusher(registry.url)
    repo = f"out-{uuid.uuid4().hex[:8]}/app"
    first = pusher.push_image(repo, "1.0")
    pusher.tag(repo, "rc1", first.digest)
    pusher.push_image(repo, "1.10")
    second = pusher.push_image(repo, "2.0")
    pusher.tag(repo, "latest", second.digest)
    db = tmp_path_factory.mktemp("outputs") / "inv.db"
    synced = regdb(registry.url, db, "sync", repo)
    assert synced.output.startswith(f"synced {registry.url}: 1 repository, 5 tags, 3 new manifests, ")
    return App(registry.url, db, repo, pusher)


# --- a plain-http registry named without a scheme ------------------------------------------------------------


def test_a_plain_http_registry_named_without_a_scheme_gets_one_line_naming_the_http_url(registry, tmp_path):
    hostport = registry.url.split("://", 1)[1]
    db = tmp_path / "inv.db"
    result = run("-reg", hostport, "--db", str(db), "list-repo-names")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"Error: TLS error talking to https://{hostport}: ")
    assert result.stderr.endswith(f"answers plain HTTP, not HTTPS; if that is meant, use -reg http://{hostport}\n")
    assert not db.exists()  # no fallback: nothing was synced over plain http, no inventory created
    # Named with https:// explicitly, the scheme is the user's: the error stays as it is, without the hint.
    explicit = run("-reg", f"https://{hostport}", "--db", str(db), "list-repo-names")
    assert explicit.exit_code == 1 and "use -reg http://" not in explicit.output


# --- --format everywhere, one JSON layout, ISO timestamps --------------------------------------------------------


def test_every_command_that_prints_rows_or_a_result_takes_format():
    without = {name for name, command in main.commands.items()
               if not any(param.name == "fmt" for param in command.params)}
    # listen is a server (it prints its address and runs); datasette-metadata writes Datasette's own file format.
    assert without == {"listen", "datasette-metadata"}


def test_sync_takes_format_and_prints_one_document_with_iso_times(app):
    result = regdb(app.url, app.db, "sync", app.repo, "--format", "json")
    document = assert_json_layout(result.output)
    assert (document["repos"], document["tags"], document["new_manifests"]) == (1, 5, 0)
    assert ISO_Z.match(document["started_at"]) and ISO_Z.match(document["finished_at"])
    assert document["missing_repos"] == []


def test_status_takes_every_format_and_counts(app):
    listing = assert_json_layout(regdb(app.url, app.db, "status", "--format", "json").output)
    assert [row["registry"] for row in listing] == [app.url.split("://", 1)[1]]
    assert ISO_Z.match(listing[0]["last_complete_sync"])
    ndjson = regdb(app.url, app.db, "status", "--format", "ndjson").output.splitlines()
    assert [json.loads(line) for line in ndjson] == listing
    csv_lines = regdb(app.url, app.db, "status", "--format", "csv").output.splitlines()
    assert csv_lines[0].startswith("registry,url,last_complete_sync,") and len(csv_lines) == 2
    assert regdb(app.url, app.db, "--count", "status").output == "1\n"
    text = regdb(app.url, app.db, "status").output
    assert "1 repository, 5 tags, 3 manifests" in text


def test_listings_and_plans_share_the_json_layout(app):
    rows = assert_json_layout(regdb(app.url, app.db, "query-tags", "-r", app.repo, "-t", "1.10",
                                    "--format", "json").output)
    assert [row["tags"] for row in rows] == [["1.10"]]
    plan = assert_json_layout(regdb(app.url, app.db, "untag", "-r", app.repo, "-t", "rc1", "--dry-run",
                                    "--format", "json").output)
    assert [row["tag"] for row in plan["rows"]] == ["rc1"]


def test_sql_timestamps_are_iso_8601_with_z_in_every_format(app):
    statement = "SELECT tag, created FROM images WHERE repo = :repo ORDER BY tag"
    rows = json.loads(regdb(app.url, app.db, "sql", "--format", "json", statement, "--param",
                            f"repo={app.repo}").output)
    assert rows and all(ISO_Z.match(row["created"]) for row in rows), rows
    for fmt in ("ndjson", "csv", "tsv", "table"):
        text = regdb(app.url, app.db, "sql", "--format", fmt, "SELECT started_at, finished_at FROM syncs").output
        stamps = re.findall(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?Z?", text)
        assert stamps and all(ISO_Z.match(stamp) for stamp in stamps), (fmt, text)
    history = json.loads(regdb(app.url, app.db, "history", "-r", app.repo, "--format", "json").output)
    assert history and all(ISO_Z.match(row["valid_from"]) for row in history), history
    report = json.loads(regdb(app.url, app.db, "report", "--format", "json").output)
    assert ISO_Z.match(report["generated_at"]), report["generated_at"]


# --- --count: counts or is a usage error --------------------------------------------------------------------------


def test_count_counts_a_dry_run_plan_and_refuses_where_it_cannot(fresh_registry, fresh_pusher, tmp_path):
    p = fresh_pusher
    for tag in ("1.0", "1.1", "2.0"):
        p.push_image("app", tag)
    db = tmp_path / "inv.db"
    regdb(fresh_registry.url, db, "sync")
    plan = json.loads(regdb(fresh_registry.url, db, "remove-tags", "-r", "app", "-t", "<2", "--dry-run",
                            "--format", "json").output)
    assert len(plan["rows"]) == 2
    assert regdb(fresh_registry.url, db, "--count", "remove-tags", "-r", "app", "-t", "<2", "--dry-run").output == "2\n"
    assert regdb(fresh_registry.url, db, "--count", "remove-repos", "-r", "app", "--dry-run").output == "3\n"
    assert regdb(fresh_registry.url, db, "--count", "untag", "-r", "app", "-t", "1.0", "1.1",
                 "--dry-run").output == "2\n"
    done = regdb(fresh_registry.url, db, "remove-tags", "-r", "app", "-t", "1.0", "--yes").output
    assert "this run's deletions let a garbage collection free " in done  # not all that is reclaimable
    assert "(the reclaimable view and du count all that is still to free)" in done
    refused = regdb(fresh_registry.url, db, "--count", "remove-tags", "-r", "app", "-t", "1.1", "--yes", status=2)
    assert "Usage: regdb remove-tags" in refused.output and "add --dry-run" in refused.output
    assert p.tags("app") == ["1.1", "2.0"]  # refused before anything more was deleted
    schema = regdb(fresh_registry.url, db, "--count", "schema", status=2)
    assert "--count does not apply to schema" in schema.output
    for name in main.commands:  # every command either counts or says so
        if name not in COUNTED_COMMANDS + COUNTED_PLANS:
            result = run("--count", name, "--help")
            assert result.exit_code == 2 and "--count does not apply" in result.output, name


# --- help, usage, plurals -------------------------------------------------------------------------------------------


def test_reverse_sort_is_described_as_the_order_it_gives(app):
    help_text = " ".join(run("list-tag-names", "--help").output.split())
    assert "newest first" not in help_text
    assert "the tags that are no version first (reverse name order), then versions highest first" in help_text
    forward = regdb(app.url, app.db, "list-tag-names", app.repo).output.splitlines()
    backward = regdb(app.url, app.db, "list-tag-names", app.repo, "--reverse-sort").output.splitlines()
    assert [line.split()[1] for line in backward] == ["rc1", "latest", "2.0", "1.10", "1.0"]
    assert backward == forward[::-1]


def test_a_subcommands_errors_print_that_subcommands_usage(app):
    missing = regdb(app.url, app.db, "untag", "-r", app.repo, "-t", "nope", "--dry-run", status=2)
    assert missing.output.startswith("Usage: regdb untag [OPTIONS]\n"), missing.output
    assert "tag nope not found in repository" in missing.output
    bad = regdb(app.url, app.db, "untag", "-r", app.repo, "-t", "1.0", "--method", "auto", "--dry-run",
                "-t", "bad tag!", status=2)
    assert bad.output.startswith("Usage: regdb untag [OPTIONS]\n"), bad.output


def test_plural_forms_in_summaries(fresh_registry, fresh_pusher, tmp_path):
    fresh_pusher.push_image("app", "1.0")
    result = regdb(fresh_registry.url, tmp_path / "inv.db", "sync")
    assert re.match(rf"synced {re.escape(fresh_registry.url)}: 1 repository, 1 tag, 1 new manifest, \d+ requests in ",
                    result.output), result.output


# --- sql: --refresh and -c None ---------------------------------------------------------------------------------------


def test_sql_refresh_syncs_first_and_c_none_says_what_it_would_answer_from(fresh_registry, fresh_pusher, tmp_path):
    p = fresh_pusher
    p.push_image("app", "1.0")
    db = tmp_path / "inv.db"
    regdb(fresh_registry.url, db, "sync")
    p.push_image("app", "1.1")
    count = "SELECT count(*) AS n FROM tags"
    assert regdb(fresh_registry.url, db, "sql", "--format", "csv", count).output == "n\n1\n"
    assert regdb(fresh_registry.url, db, "--refresh", "sql", "--format", "csv", count).output == "n\n2\n"
    empty = regdb(fresh_registry.url, "None", "sql", count, status=2)
    assert "Usage: regdb sql" in empty.output and "empty in-memory inventory" in empty.output
    assert regdb(fresh_registry.url, "None", "--refresh", "sql", "--format", "csv", count).output == "n\n2\n"


def test_readme_documents_the_output_rules():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("### Output formats", 1)[1].split("\n## ", 1)[0]
    for needle in ("one JSON document", "ndjson", "Z", "--count", "usage error"):
        assert needle in section, needle
