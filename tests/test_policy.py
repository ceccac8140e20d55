"""Retention policies: validation with errors that name the line, one plan across the registry printed rule by
rule, applied for real with the registry's state checked afterwards."""

from __future__ import annotations

import json
import textwrap

import pytest

from regdb import RegistryClient
from regdb.cleanup.policy import parse_policy, plan_policy
from regdb.selection.patterns import glob_regex
from regdb.errors import PolicyError
from regdb.versions import regex_matches
from tests.rig.cli import run
from tests.rig.retention import ago, synced
from tests.rig.state import assert_inventory_equals_registry, deletions, manifest_present, registry_tags

UNREACHABLE = "http://127.0.0.1:9"  # nothing listens: a policy mistake must be reported before any request


def write(tmp_path, text: str, name: str = "policy.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


# --- validation -------------------------------------------------------------------------------------------------

GOOD_START = """
protect = ["latest", "prod-*"]

[[rule]]
name = "releases"
repos = ["team/*"]
keep_latest = 10
"""

BAD = {
    "toml syntax": (
        """
        [[rule]]
        repos = ["team/*"
        keep_latest = 3
        """,
        "line 3, column 1: Unclosed array",
    ),
    "duplicate key": (
        """
        [[rule]]
        repos = ["a"]
        repos = ["b"]
        """,
        "line 3, column 14: Cannot overwrite a value",
    ),
    "unknown top-level key": (
        """
        protected = ["latest"]
        [[rule]]
        repos = ["a"]
        """,
        "line 1: unknown key 'protected' at the top of a policy; did you mean 'protect'?",
    ),
    "unknown rule key": (
        GOOD_START + """
        [[rule]]
        name = "pull requests"
        repos = ["team/*"]
        keep_lastest = 3
        """,
        "line 11: rule 2 (pull requests): unknown key 'keep_lastest' in a rule; did you mean 'keep_latest'?",
    ),
    "bad duration": (
        GOOD_START + """
        [[rule]]
        repos = ["ci/*"]
        older_than = "14x"
        """,
        "line 10: rule 2: older_than: bad age '14x': give a duration (12h, 90d, 4w) or an ISO date (2024-01-31)",
    ),
    "bad regex in a long list": (
        """
        [[rule]]
        repos = ["a"]
        tags = [
            "pr-*",
            "re:^feature-(",
        ]
        """,
        "line 5: rule 1: tags: invalid regex '^feature-(': missing ), unterminated subpattern at position 9",
    ),
    "bad version": (
        """
        [[rule]]
        repos = ["a"]
        keep = ["<1.x"]
        """,
        "line 3: rule 1: keep: invalid version in selector '<1.x': '1.x'",
    ),
    "bad repository regex": (
        """
        [[rule]]
        repos = ["team/*", "re:[a-"]
        tags = ["x"]
        """,
        "line 2: rule 1: repos: invalid regex '[a-': unterminated character set at position 0",
    ),
    "keep_latest zero": (
        """
        [[rule]]
        repos = ["a"]
        keep_latest = 0
        """,
        "line 3: rule 1: keep_latest must be a whole number from 1 to 1,000,000, not 0",
    ),
    "order_by alone": (
        """
        [[rule]]
        repos = ["a"]
        order_by = "created"
        """,
        "line 3: rule 1: order_by only orders keep_latest: give keep_latest too",
    ),
    "order_by unknown": (
        """
        [[rule]]
        repos = ["a"]
        keep_latest = 2
        order_by = "date"
        """,
        "line 4: rule 1: order_by must be one of 'version', 'created', not 'date'",
    ),
    "repos missing": (
        GOOD_START + """
        [[rule]]
        name = "leftovers"
        untagged = true
        """,
        "line 8: rule 2 (leftovers): repos is required: the repositories the rule applies to (glob or re:REGEX)",
    ),
    "untagged with tags": (
        """
        [[rule]]
        repos = ["a"]
        untagged = true
        tags = ["x"]
        """,
        "line 4: rule 1: tags does not apply to untagged = true (untagged manifests have no tags): put it in a "
        "rule of its own",
    ),
    "flag not a boolean": (
        """
        [[rule]]
        repos = ["a"]
        untagged = "yes"
        """,
        "line 3: rule 1: untagged must be true or false, not 'yes'",
    ),
    "no rules": (
        """
        protect = ["latest"]
        """,
        "line 1: no rules: add at least one [[rule]] table with repos = [...]",
    ),
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_policy_file_is_named_with_its_line(tmp_path, name):
    text, message = BAD[name]
    path = write(tmp_path, text)
    result = run("-reg", UNREACHABLE, "--db", tmp_path / "inv.db", "apply", str(path), "--dry-run")
    assert result.exit_code == 1, result.output
    assert result.output == f"Error: {path}, {message}\n"
    assert not (tmp_path / "inv.db").exists()


def test_a_missing_policy_file(tmp_path):
    result = run("-reg", UNREACHABLE, "--db", tmp_path / "inv.db", "apply", str(tmp_path / "nope.toml"))
    assert result.exit_code == 1
    assert result.output == f"Error: cannot read policy file {tmp_path / 'nope.toml'}: No such file or directory\n"


def test_a_good_policy_parses_with_toml_dates_and_single_strings():
    policy = parse_policy(textwrap.dedent("""
        protect = "latest"
        [[rule]]
        repos = "team/app"
        older_than = 2024-01-31
        [[rule]]
        repos = ["*"]
        keep = ["pinned"]
    """))
    assert policy.protect == ("latest",)
    first, second = policy.rules
    assert (first.repos, first.older_than, first.removes) == (("team/app",), "2024-01-31", True)
    assert (second.keep, second.removes) == (("pinned",), False)
    with pytest.raises(PolicyError):
        parse_policy("[[rule]]\nrepos = []\n")


@pytest.mark.parametrize("glob, name, matches", [
    ("team/*", "team/app", True),
    ("team/*", "team/sub/app", True),  # * crosses / (documented)
    ("team/*", "teamx/app", False),
    ("pr-?", "pr-1", True),
    ("pr-?", "pr-12", False),
    ("v[0-9].*", "v1.2", True),
    ("v[!0-9]*", "v1.2", False),
    ("a.b", "axb", False),
    ("1.0", "1.0-alpine", False),  # a glob matches the whole name
])
def test_glob_patterns(glob, name, matches):
    assert regex_matches(glob_regex(glob), name) is matches


# --- one plan across the registry --------------------------------------------------------------------------------

POLICY = """
# never touched, in any repository
protect = ["latest", "prod-*"]

[[rule]]
name = "releases"
repos = ["team/*"]
keep_latest = 2

[[rule]]
name = "pull requests"
repos = ["team/*"]
tags = ["pr-*"]
older_than = "14d"

[[rule]]
name = "leftovers"
repos = ["re:^ci/"]
untagged = true
"""


@pytest.fixture
def estate(fresh_registry, fresh_pusher, tmp_path):
    p = fresh_pusher
    app = {t: p.push_image("team/app", t) for t in ["1.0", "1.1", "1.2", "2.0"]}
    p.tag("team/app", "latest", app["2.0"].digest)
    p.tag("team/app", "prod-1", app["1.0"].digest)  # protected: keeps 1.0 although it is not among the newest
    prs = {"pr-1": p.push_image("team/app", "pr-1", created=ago(30)),
           "pr-2": p.push_image("team/app", "pr-2", created=ago(2))}
    tool = {t: p.push_image("team/tool", t) for t in ["0.1", "0.2", "0.3"]}
    signature = p.push_cosign_signature("team/tool", tool["0.1"].digest)
    moved = p.push_image("ci/build", "main")
    other = {t: p.push_image("other/app", t) for t in ["1.0", "2.0"]}
    db = tmp_path / "inv.db"
    synced(fresh_registry.url, db).close()
    current = p.push_image("ci/build", "main")  # `main` moves on after the sync: its old image is a leftover
    return fresh_registry, p, db, dict(app=app, prs=prs, tool=tool, signature=signature, moved=moved,
                                       current=current, other=other)


def test_apply_dry_run_then_for_real(estate, tmp_path):
    registry, p, db, x = estate
    policy = write(tmp_path, POLICY)
    repos = ["team/app", "team/tool", "ci/build", "other/app"]
    before = registry_tags(p, repos)

    dry = run("-reg", registry.url, "--db", db, "apply", str(policy), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert registry_tags(p, repos) == before
    out = dry.output
    assert "rule 1 (releases): repos team/*; newest 2 by version kept (2 repositories)\n" in out
    assert f"  team/app   {x['app']['1.1'].digest}  1.1" in out  # the plan's rows, under the rule removing them
    assert "  keeps team/app: 2.0, latest (protected: latest matches 'latest')\n" in out
    assert "  keeps team/app: 1.2 (rule 1 (releases): newest 2 by version)\n" in out
    assert "  keeps team/app: 1.0, prod-1 (protected: prod-1 matches 'prod-*')\n" in out
    assert "  keeps team/app: pr-2 (not a version: keep_latest ranks versions)\n" in out  # pr-1: rule 2 takes it
    assert "  keeps team/tool: 0.3, 0.2 (rule 1 (releases): newest 2 by version)\n" in out
    assert "rule 2 (pull requests): repos team/*; tags pr-*; older than 14d (2 repositories)\n" in out
    assert "  keeps team/app: pr-2 (not older than 14d)\n" in out
    assert "rule 3 (leftovers): repos re:^ci/; untagged manifests (1 repository)\n" in out
    assert "  keeps ci/build: main (tagged (the rule removes untagged manifests))\n" in out
    assert out.endswith("dry run: nothing deleted\n")

    as_json = json.loads(run("-reg", registry.url, "--db", db, "apply", str(policy), "--dry-run", "--format",
                             "json").output)
    removed = {(rule["index"], row["repo"], row["digest"], row["reason"], row["parent"])
               for rule in as_json["rules"] for row in rule["remove"]}
    assert removed == {
        (1, "team/app", x["app"]["1.1"].digest, "selected", None),
        (1, "team/tool", x["tool"]["0.1"].digest, "selected", None),
        (1, "team/tool", x["signature"], "signature", x["tool"]["0.1"].digest),
        (2, "team/app", x["prs"]["pr-1"].digest, "selected", None),
        (3, "ci/build", x["moved"].digest, "selected", None),
    }
    assert as_json["plan"]["bytes_freed"] > 0

    result = run("-reg", registry.url, "--db", db, "apply", str(policy), "--yes")
    assert result.exit_code == 0, result.output
    assert "deleted 5, skipped 0, failed 0" in result.output
    gone = {x["app"]["1.1"].digest, x["tool"]["0.1"].digest, x["signature"], x["prs"]["pr-1"].digest}
    assert registry_tags(p, repos) == {row for row in before if row[2] not in gone}
    assert not manifest_present(p, "ci/build", x["moved"].digest)
    assert manifest_present(p, "ci/build", x["current"].digest)
    assert_inventory_equals_registry(db, registry.url, p, tmp_path)
    assert {(r["repo"], r["outcome"]) for r in deletions(db)} == {
        ("team/app", "deleted"), ("team/tool", "deleted"), ("ci/build", "deleted")}

    again = run("-reg", registry.url, "--db", db, "apply", str(policy), "--yes")
    assert again.exit_code == 0, again.output
    assert again.output.endswith("nothing to remove\n")


def test_keeping_wins_across_rules(estate):
    registry, p, db, x = estate
    policy = parse_policy(textwrap.dedent("""
        [[rule]]
        name = "newest"
        repos = ["team/app"]
        keep_latest = 3
        [[rule]]
        name = "everything old"
        repos = ["*"]
        older_than = "7d"
        [[rule]]
        name = "hands off"
        repos = ["other/*"]
        keep = ["*"]
    """))
    from regdb import Inventory

    with Inventory(db) as inventory:
        planned = plan_policy(inventory.engine, RegistryClient(registry.url), policy, refresh=False)
    chosen = {(row.repo, row.digest) for row in planned.plan.rows if row.reason == "selected"}
    # Rule 2 alone would take every image built more than a week ago (the rig's images are from 2024):
    # rule 1 keeps team/app's newest three versions, rule 3 all of other/app, protect nothing else.
    assert ("team/app", x["app"]["1.0"].digest) in chosen
    for kept in ("2.0", "1.2", "1.1"):
        assert ("team/app", x["app"][kept].digest) not in chosen
    assert not any(repo == "other/app" for repo, _ in chosen)
    assert ("team/app", x["prs"]["pr-1"].digest) in chosen and ("team/app", x["prs"]["pr-2"].digest) not in chosen
    report = {r.rule.index: r for r in planned.reports}
    reasons = {(k.repo, k.tag): k.reason for k in report[2].kept}
    assert reasons[("team/app", "1.2")] == "rule 1 (newest): newest 3 by version"
    assert reasons[("other/app", "1.0")] == "rule 3 (hands off): keep, 1.0 matches '*'"
