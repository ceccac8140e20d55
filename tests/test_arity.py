"""argparse's arities for regdb's multi-value options (issue 12, item 3): -t, -re, -x, -xre take zero or more
values, -r one or more; an option directly followed by another has no values and never swallows it."""

from __future__ import annotations

import pytest

from regdb.cli.app import main
from tests.rig.cli import run
from tests.rig.pusher import Pusher


def parsed(command: str, *args: str) -> dict:
    """The parameters click gives the command for ``args``, without running it."""
    cmd = main.get_command(None, command)
    with cmd.make_context(command, list(args)) as ctx:
        return ctx.params


@pytest.mark.parametrize("command", ["query-tags", "remove-tags"])
@pytest.mark.parametrize(
    ("option", "param"), [("-t", "tags"), ("--tags", "tags"), ("-re", "regex"), ("--regex", "regex"),
                          ("-x", "exclude"), ("--exclude", "exclude"), ("-xre", "exclude_regex"),
                          ("--exclude-regex", "exclude_regex")],
)
def test_zero_or_more_values_never_swallow_the_next_option(command, option, param):
    others = {"tags": "-re", "regex": "-t", "exclude": "-xre", "exclude_regex": "-x"}
    follower = others[param]
    # Followed directly by another option: no values, and the other option keeps its own.
    params = parsed(command, "-r", "app", option, follower, "lat")
    assert params[param] == ()
    follower_param = {"-re": "regex", "-t": "tags", "-xre": "exclude_regex", "-x": "exclude"}[follower]
    assert params[follower_param] == ("lat",)
    # At the end of the line: no values, not "requires an argument".
    assert parsed(command, "-r", "app", option)[param] == ()
    # Several values, up to the next option; and repeated.
    params = parsed(command, "-r", "app", option, "a", "b", "--no-match-all-tags", option, "c")
    assert params[param] == ("a", "b", "c") and params["no_match_all_tags"] is True
    if option.startswith("--"):
        assert parsed(command, "-r", "app", f"{option}=a", "b")[param] == ("a", "b")


@pytest.mark.parametrize("command", ["query-repos", "query-tags", "remove-repos", "remove-tags"])
def test_repo_takes_one_or_more_and_is_required(command):
    assert parsed(command, "-r", "a", "b", "--dry-run" if "remove" in command else "--format=text")["repos"] == (
        "a", "b")
    for args in (["-r"], ["-r", "-t", "x"], ["-t", "x"], ["-r", "--format=text"]):
        result = run("-reg", "http://127.0.0.1:9", "-c", "None", command, *args)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
    result = run("-reg", "http://127.0.0.1:9", "-c", "None", command, "-r", "-t", "x")
    assert "Option '-r' requires at least one value." in result.output


def test_an_empty_exclusion_does_not_eat_the_next_one_on_the_registry(fresh_registry, tmp_path):
    # The case: "-x -xre lat" was read as an exclusion of the tag "-xre", and latest was deleted.
    pusher = Pusher(fresh_registry.url)
    latest = pusher.push_image("app", "latest")
    pusher.push_image("app", "old")
    result = run("-reg", fresh_registry.url, "-c", tmp_path / "inv.db", "remove-tags", "-r", "app", "-re", ".*", "-x",
                 "-xre", "lat", "--yes")
    assert result.exit_code == 0, result.output
    assert pusher.head_digest("app", "latest") == latest.digest  # protected, on the registry itself
    assert pusher.head_digest("app", "old") is None
