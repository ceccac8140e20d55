"""Globs in regdb's -r and -t (issue 17): the policy file's meaning, exact names unchanged, a glob that matches
nothing reported as a name that is not there, and a removal by glob that deletes only what the glob selects
(checked on the registry itself). dregutil keeps docker-registry-util's meaning: no globs there."""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from regdb.cli.dregutil import main as dregutil_main
from regdb.selection.patterns import pattern_matches
from tests.rig.cli import run
from tests.rig.pusher import Pusher

TAGS = ["pr-1", "pr-2", "pr-10", "main", "1.0", "prx"]


def regdb(url, db, *args, status=0):
    result = run("-reg", url, "--db", str(db), *args)
    assert result.exit_code == status, result.output
    return result


@dataclass
class Team:
    url: str
    db: Path
    prefix: str
    digests: dict  # (repo, tag) -> digest


@pytest.fixture(scope="module")
def team(registry, tmp_path_factory) -> Team:
    """PREFIX/team/a and PREFIX/team/b with TAGS (one digest per tag), PREFIX/other with pr-1; synced once."""
    pusher = Pusher(registry.url)
    prefix = f"glob-{uuid.uuid4().hex[:8]}"
    digests = {}
    for repo in (f"{prefix}/team/a", f"{prefix}/team/b"):
        for tag in TAGS:
            digests[(repo, tag)] = pusher.push_image(repo, tag).digest
    digests[(f"{prefix}/other", "pr-1")] = pusher.push_image(f"{prefix}/other", "pr-1").digest
    db = tmp_path_factory.mktemp("globs") / "inv.db"
    regdb(registry.url, db, "sync", f"{prefix}/team/a", f"{prefix}/team/b", f"{prefix}/other")
    return Team(registry.url, db, prefix, digests)


def selected(output: str) -> set[tuple[str, str]]:
    return {tuple(line.split()) for line in output.splitlines() if line.strip()}


@pytest.mark.parametrize("glob", ["pr-*", "pr-?", "pr-[12]", "pr-[!1]*", "[0-9]*", "*"])
def test_a_tag_glob_selects_what_the_same_pattern_selects_in_a_policy(team, glob):
    repo = f"{team.prefix}/team/a"
    result = regdb(team.url, team.db, "query-tags", "-r", repo, "-t", glob)
    expected = {(repo, team.digests[(repo, tag)]) for tag in TAGS if pattern_matches(glob, tag)}
    assert expected, glob  # every pattern here matches something, so an empty answer cannot pass
    assert selected(result.output) == expected


def test_exact_names_and_version_selectors_keep_their_meaning_beside_globs(team):
    repo = f"{team.prefix}/team/a"
    result = regdb(team.url, team.db, "query-tags", "-r", repo, "-t", "pr-1", "<2", "-x", "pr-[2-9]*")
    assert selected(result.output) == {(repo, team.digests[(repo, "pr-1")]), (repo, team.digests[(repo, "1.0")])}


def test_an_exclusion_glob_protects_what_it_matches(team):
    repo = f"{team.prefix}/team/a"
    result = regdb(team.url, team.db, "query-tags", "-r", repo, "-t", "pr-*", "-x", "pr-1*")
    assert selected(result.output) == {(repo, team.digests[(repo, "pr-2")])}


def test_a_repository_glob_selects_the_repositories_it_matches(team):
    a, b = f"{team.prefix}/team/a", f"{team.prefix}/team/b"
    result = regdb(team.url, team.db, "query-tags", "-r", f"{team.prefix}/team/*", "-t", "main")
    assert selected(result.output) == {(a, team.digests[(a, "main")]), (b, team.digests[(b, "main")])}
    # * also crosses /, as in a policy file: PREFIX/* holds team/a, team/b and other.
    result = regdb(team.url, team.db, "query-tags", "-r", f"{team.prefix}/*", "-t", "pr-1")
    assert {repo for repo, _ in selected(result.output)} == {a, b, f"{team.prefix}/other"}
    listing = regdb(team.url, team.db, "list-tag-names", f"{team.prefix}/team/?")
    assert {line.split()[0] for line in listing.output.splitlines()} == {a, b}
    du = regdb(team.url, team.db, "du", "-r", f"{team.prefix}/team/[a]", "--format", "csv")
    assert [line.split(",")[0] for line in du.output.splitlines()[1:]] == [a]
    repos = regdb(team.url, team.db, "query-repos", "-r", f"{team.prefix}/team/*")
    assert len(selected(repos.output)) == 2 * len(TAGS)


def test_history_takes_globs_too(team):
    result = regdb(team.url, team.db, "history", "-r", f"{team.prefix}/team/*", "-t", "pr-?", "--format", "csv")
    rows = {tuple(line.split(",")[:2]) for line in result.output.splitlines()[1:]}
    assert rows == {(f"{team.prefix}/team/{x}", f"pr-{n}") for x in "ab" for n in "12"}


def test_a_glob_matching_nothing_is_reported_as_a_name_that_is_not_there(team):
    for missing in (f"{team.prefix}/nothing-*", f"{team.prefix}/nothing"):
        result = run("-reg", team.url, "--db", str(team.db), "query-tags", "-r", missing, "-t", "main")
        assert (result.exit_code, result.stdout, result.stderr) == (
            0, "", f"warning: repository {missing} not found\n")
    for tag in ("nothing-*", "nothing"):
        result = regdb(team.url, team.db, "query-tags", "-r", f"{team.prefix}/team/a", "-t", tag)
        assert result.output == ""


def test_dregutil_takes_a_glob_as_the_exact_name_it_is_there(team, capsys):
    repo = f"{team.prefix}/team/a"
    with pytest.raises(SystemExit) as stop:
        dregutil_main(["-reg", team.url, "-c", str(team.db), "-l", "warning", "query-tags", "-r", repo,
                       "-t", "pr-*"])
    out = capsys.readouterr().out
    assert stop.value.code in (0, None)
    assert team.digests[(repo, "pr-1")] not in out and out.strip() == ""
    with pytest.raises(SystemExit):
        dregutil_main(["-reg", team.url, "-c", str(team.db), "-l", "warning", "query-tags", "-r",
                       f"{team.prefix}/team/*", "-t", "main"])
    assert team.digests[(repo, "main")] not in capsys.readouterr().out


def test_help_and_readme_document_the_globs():
    for command in ("query-tags", "remove-tags", "remove-repos", "untag", "du", "history"):
        text = run(command, "--help").output
        assert "glob" in text, command
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert "### Globs in -r and -t" in readme


# --- removal by glob: only what the glob selects goes, checked on the registry -------------------------------


def test_remove_tags_by_glob_deletes_only_the_selected_tags_of_the_selected_repositories(fresh_registry,
                                                                                        fresh_pusher, tmp_path):
    p = fresh_pusher
    digests = {}
    for repo in ("team/a", "team/b", "teamx", "other"):
        for tag in ("pr-1", "pr-22", "main"):
            digests[(repo, tag)] = p.push_image(repo, tag).digest
    db = tmp_path / "inv.db"
    regdb(fresh_registry.url, db, "sync")
    regdb(fresh_registry.url, db, "remove-tags", "-r", "team/*", "-t", "pr-?", "--yes")
    assert p.tags("team/a") == p.tags("team/b") == ["main", "pr-22"]
    assert p.tags("teamx") == p.tags("other") == ["main", "pr-1", "pr-22"]
    for repo in ("team/a", "team/b"):
        assert p.head_digest(repo, digests[(repo, "pr-1")]) is None  # deleted by digest
        assert p.head_digest(repo, digests[(repo, "pr-22")]) == digests[(repo, "pr-22")]


def test_remove_repos_by_glob_empties_only_the_matched_repositories(fresh_registry, fresh_pusher, tmp_path):
    p = fresh_pusher
    for repo in ("old/a", "old/b", "oldies", "keep"):
        p.push_image(repo, "1.0")
        p.push_image(repo, "2.0")
    db = tmp_path / "inv.db"
    dry = regdb(fresh_registry.url, db, "remove-repos", "-r", "old/*", "--dry-run")
    assert "old/a" in dry.output and "old/b" in dry.output and "oldies" not in dry.output
    regdb(fresh_registry.url, db, "remove-repos", "-r", "old/*", "--yes")
    assert p.tags("old/a") == p.tags("old/b") == []
    assert p.tags("oldies") == p.tags("keep") == ["1.0", "2.0"]


def test_untag_by_glob_removes_only_the_matched_tags_and_keeps_the_digests(fresh_registry, fresh_pusher, tmp_path):
    p = fresh_pusher
    image = p.push_image("app", "1.0")
    for tag in ("rc1", "rc2", "stable"):
        p.tag("app", tag, image.digest)
    db = tmp_path / "inv.db"
    regdb(fresh_registry.url, db, "sync")
    p.tag("app", "rc3", image.digest)  # after the sync: the glob still sees it (the repository is read first)
    regdb(fresh_registry.url, db, "untag", "-r", "a?p", "-t", "rc*", "--yes")
    assert p.tags("app") == ["1.0", "stable"]
    assert p.head_digest("app", image.digest) == image.digest
    nothing = regdb(fresh_registry.url, db, "untag", "-r", "app", "-t", "zz*", "--yes", status=2)
    assert "zz* not found in repository app" in nothing.output
    exact = regdb(fresh_registry.url, db, "untag", "-r", "app", "-t", "zz", "--yes", status=2)
    assert "zz not found in repository app" in exact.output


def test_dregutil_script_removes_nothing_for_a_glob(fresh_registry, fresh_pusher, tmp_path):
    import subprocess

    p = fresh_pusher
    p.push_image("app", "pr-1")
    dregutil = Path(sys.executable).parent / "dregutil"
    run = subprocess.run([str(dregutil), "-reg", fresh_registry.url, "-c", str(tmp_path / "d.db"), "-l", "warning",
                          "remove-tags", "-r", "app", "-t", "pr-*"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert p.tags("app") == ["pr-1"]
