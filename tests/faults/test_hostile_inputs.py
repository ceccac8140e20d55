"""What users type is bounded and secrets stay secret: integers range-checked, value lists bounded, database
URLs redacted in every message, ``--password-stdin``, a planted symlink as the default inventory refused, an
unreadable Docker config only a warning, and ``regdb sql --timeout``.
"""

from __future__ import annotations

import base64
import os
import re
import time

import pytest

from regdb import Inventory
from regdb.errors import InventoryError
from tests.rig.cli import error_line, run
from tests.rig.hostile import StubRegistry

USER, SECRET = "ursula", "Secret-Pw-93kQ"
HUGE = "99999999999999999999999"


@pytest.fixture
def stub(httpserver):
    registry = StubRegistry(httpserver)
    registry.good()
    return registry


@pytest.fixture
def synced(stub, tmp_path):
    db = tmp_path / "inv.db"
    result = run("-reg", stub.url, "--db", db, "sync")
    assert result.exit_code == 0, result.output
    return db


def usage_line(result) -> str:
    """The error line of a usage error (exit 2), after checking there is no traceback and no SQL dump."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "SELECT" not in result.output, result.output[:500]
    assert len(result.output) < 2000, len(result.output)
    [line] = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    return line


def test_keep_latest_out_of_range_is_one_line(stub, synced):
    line = usage_line(run("-reg", stub.url, "--db", synced, "query-tags", "-r", "app", "--keep-latest", HUGE))
    assert line == f"Error: --keep-latest must be at most 1,000,000, not {HUGE}"


def test_keep_latest_out_of_range_in_a_policy_file_names_the_line(stub, synced, tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[[rule]]\nrepos = ["app"]\nkeep_latest = {HUGE}\n')
    before = synced.read_bytes()
    line = error_line(run("-reg", stub.url, "--db", synced, "apply", policy, "--dry-run"))
    assert line == (f"{policy}, line 3: rule 1: keep_latest must be a whole number from 1 to 1,000,000, not "
                    f"{HUGE}")
    assert synced.read_bytes() == before


def test_a_hundred_thousand_tags_on_the_command_line_are_refused_in_one_line(stub, synced):
    tags = [f"t{i}" for i in range(130_000)]
    started = time.monotonic()
    line = usage_line(run("-reg", stub.url, "--db", synced, "query-tags", "-r", "app", "-t", *tags))
    assert "130,000 values; at most 10,000 are accepted" in line, line
    assert time.monotonic() - started < 30


def test_ten_thousand_tags_still_work(stub, synced):
    result = run("-reg", stub.url, "--db", synced, "query-tags", "-r", "app", "-t", *[f"t{i}" for i in range(9_999)],
                 "1.0")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("app  sha256:")


def test_a_database_url_password_is_redacted_in_every_message(tmp_path):
    url = f"sqlite://admin:{SECRET}@/{tmp_path}/x.db"
    with Inventory(url) as inventory, pytest.raises(InventoryError) as caught:
        inventory.query_tags("registry.example.com", ["app"])
    assert SECRET not in str(caught.value) and "admin:***@" in str(caught.value)
    result = run("--db", url, "sql", "SELECT nosuchcolumn FROM images")
    assert result.exit_code == 1 and SECRET not in result.output, result.output


def test_password_stdin(httpserver, tmp_path):
    stub = StubRegistry(httpserver)
    stub.good()
    expected = "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
    original = stub.__call__
    httpserver.clear_all_handlers()

    def guarded(request):
        if request.headers.get("Authorization") != expected:
            from werkzeug import Response

            return Response("{}", status=401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        if request.path == "/v2/":
            from werkzeug import Response

            return Response("{}", content_type="application/json",
                            headers={"Docker-Distribution-API-Version": "registry/2.0"})
        return original(request)

    httpserver.expect_request(re.compile("^/v2/")).respond_with_handler(guarded)
    db = tmp_path / "inv.db"
    result = run("-reg", stub.url, "-u", USER, "--password-stdin", "--db", db, "sync", input=f"{SECRET}\n")
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    line = usage_line(run("-reg", stub.url, "-u", USER, "-p", "x", "--password-stdin", "sync", input="y\n"))
    assert line == "Error: --password and --password-stdin are exclusive"
    line = usage_line(run("-reg", stub.url, "--password-stdin", "sync", input="y\n"))
    assert line == "Error: --password-stdin needs -u/--user"


def test_a_symlink_as_the_default_inventory_is_refused(stub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "precious.txt"
    target.write_bytes(b"do not overwrite\n")
    default = re.sub(r"[^A-Za-z0-9]+", "_", stub.url.split("://", 1)[1]).strip("_") + ".db"
    os.symlink(target, tmp_path / default)
    line = error_line(run("-reg", stub.url, "sync"))
    assert line == (f"the default inventory {default} is a symbolic link; refusing to write through it (name it "
                    "with --db to use it anyway)")
    assert target.read_bytes() == b"do not overwrite\n"
    # Named explicitly, a link is the user's choice: to an inventory, it works.
    real = tmp_path / "real.db"
    os.remove(tmp_path / default)
    os.symlink(real, tmp_path / default)
    result = run("-reg", stub.url, "--db", default, "sync")
    assert result.exit_code == 0, result.output
    assert real.exists()


def test_an_unreadable_docker_config_is_a_warning_when_no_credentials_are_needed(stub, tmp_path, monkeypatch):
    config = tmp_path / "docker"
    (config / "config.json").mkdir(parents=True)  # unreadable as a file, whoever we run as (root reads 000)
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    result = run("-reg", stub.url, "--db", tmp_path / "inv.db", "sync")
    assert result.exit_code == 0, result.output
    assert f"WARNING regdb: cannot read {config / 'config.json'}: Is a directory; going on without its " \
           "credentials" in result.stderr


@pytest.mark.parametrize("statement, params", [
    ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c", []),
    ("SELECT regdb_match(:p, :v)", ["--param", "p=(a+)+$", "--param", "v=" + "a" * 64 + "!"]),
])
def test_sql_timeout_interrupts_a_runaway_statement(synced, statement, params):
    started = time.monotonic()
    line = error_line(run("--db", synced, "sql", "--timeout", "0.5", statement, *params))
    assert line == "the statement ran past --timeout 0.5 s and was interrupted"
    assert time.monotonic() - started < 10
    result = run("--db", synced, "sql", "--timeout", "5", "SELECT count(*) AS n FROM images")
    assert result.exit_code == 0 and result.output.split() == ["n", "-", "2"], result.output


def test_sql_timeout_on_postgresql_is_statement_timeout(pg_url):
    with Inventory(pg_url):
        pass
    started = time.monotonic()
    line = error_line(run("--db", pg_url, "sql", "--timeout", "0.5", "SELECT pg_sleep(30)"))
    assert line == "the statement ran past --timeout 0.5 s and was interrupted"
    assert time.monotonic() - started < 15
    # The limit was the statement's own (SET LOCAL): the next statement on the pool has none.
    result = run("--db", pg_url, "sql", "--timeout", "0", "SHOW statement_timeout")
    assert result.exit_code == 0 and result.output.split()[-1] == "0", result.output
