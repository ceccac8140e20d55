"""dregutil's options and environment variables, as docker-registry-util 1.0.3 read them (issue 14)."""

from __future__ import annotations

import json

import pytest

from regdb.cli.dregutil import build_parser, inventory_target, log_level, loose_order, settings_of
from regdb.inventory.db import MEMORY
from tests.rig.cli import run_dregutil
from tests.rig.pusher import Pusher

URL = "http://127.0.0.1:5000"


def parse(*argv, env=None, monkeypatch=None):
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    return build_parser().parse_args(list(argv))


@pytest.mark.parametrize(
    ("argv", "attribute", "value"),
    [
        (["--reg", URL, "list-tag-names", "--rev", "--image"], "reverse_sort", True),
        (["--reg", URL, "list-tag-names", "--rev", "--image"], "image_names", True),
        (["--no-raise", "query-repos", "-r", "a"], "raise_intersecting_repo", False),
        (["--ref", "query-repos", "-r", "a"], "refresh", True),
        (["query-tags", "-r", "a", "--no-match", "-t", "x"], "match_all_tags", False),
        (["query-tags", "-r", "a", "--raise", "-t", "x"], "raise_intersecting_tag", True),
        (["query-tags", "-r", "a", "--exclude-r", "x"], "exclude_regex", ["x"]),
        (["--digest-auth", "1", "list-repo-names"], "digest_auth", "1"),
        (["query-tags", "-r", "a", "-x", "-xre", "lat"], "exclude", []),
        (["query-tags", "-r", "a", "-x", "-xre", "lat"], "exclude_regex", ["lat"]),
    ],
)
def test_the_originals_spellings_arities_and_abbreviations(argv, attribute, value):
    assert getattr(build_parser().parse_args(argv), attribute) == value


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [
        ("REGISTRY", URL, "registry", URL),
        ("REGISTRY_USER", "me", "user", "me"),
        ("REGISTRY_PASSWORD", "pw", "password", "pw"),
        ("REGISTRY_CLIENT_CERT", "/c.pem", "client_cert", "/c.pem"),
        ("REGISTRY_CLIENT_KEY", "/k.pem", "client_key", "/k.pem"),
        ("DOCKER_UTIL_CACHEFILE", "x_cache.json", "cache", "x_cache.json"),
        ("DOCKER_UTIL_GET_MANIFEST", "1", "use_get_manifest", "1"),
        ("REGISTRY_USE_DIGEST_AUTH", "enabled", "digest_auth", "enabled"),
    ],
)
def test_environment_variables(monkeypatch, variable, value, attribute, expected):
    args = parse("list-repo-names", env={variable: value}, monkeypatch=monkeypatch)
    assert getattr(args, attribute) == expected


def test_values_become_regdb_settings(monkeypatch):
    monkeypatch.setenv("REGISTRY_USE_DIGEST_AUTH", "enabled")  # any non-empty value is on
    monkeypatch.setenv("DOCKER_UTIL_GET_MANIFEST", "yes")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/ca.pem")
    settings = settings_of(build_parser().parse_args(["-reg", URL, "list-repo-names"]))
    assert (settings.digest_auth, settings.use_get_manifest, settings.verify) == (True, True, "/ca.pem")
    for off in ("None", "none", "false", "0", "no", "NO"):
        assert settings_of(build_parser().parse_args(["-v", off, "list-repo-names"])).verify == "None"
    assert settings_of(build_parser().parse_args(["-v", "/mine.pem", "list-repo-names"])).verify == "/mine.pem"


@pytest.mark.parametrize(("text", "level"), [("warn", 30), ("WARN", 30), ("fatal", 50), ("Debug", 10),
                                             ("info", 20), ("15", 15), ("critical", 50), ("bogus", None)])
def test_log_levels_as_python_logging_names_them(text, level):
    assert log_level(text) == level


@pytest.mark.parametrize("value", ["None", "none", "false", "FALSE", "0", "no", ""])
def test_every_no_cache_value_is_the_in_memory_inventory(value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["-c", value, "list-repo-names"])
    assert inventory_target(args, URL) == (MEMORY, None)
    assert list(tmp_path.iterdir()) == []  # no file named "none" or "false"


def test_default_and_named_inventories(tmp_path):
    assert inventory_target(build_parser().parse_args(["list-repo-names"]), "https://registry.example.com") == (
        "registry_example_com.db", None)
    db = tmp_path / "mine.db"
    assert inventory_target(build_parser().parse_args(["-c", str(db), "list-repo-names"]), URL) == (str(db), None)


def test_a_json_cache_is_left_untouched_and_the_inventory_kept_beside_it(registry, tmp_path, repo_name):
    pusher = Pusher(registry.url)
    image = pusher.push_image(f"{repo_name}/app", "1.0")
    cache = tmp_path / "registry_cache.json"
    original = json.dumps({f"{repo_name}/app": {"0.9": "sha256:" + "0" * 64}})
    cache.write_text(original)
    run = run_dregutil(["-reg", registry.url, "-c", str(cache), "query-tags", "-r", f"{repo_name}/app", "-t", "1.0"])
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"{repo_name}/app  {image.digest}\n"
    assert cache.read_text() == original  # byte for byte
    assert (tmp_path / "registry_cache.db").is_file()
    notes = [line for line in run.stderr.splitlines() if "left untouched" in line]
    assert notes == [f"dregutil: {cache} is a docker-registry-util cache and is left untouched; "
                     f"the inventory is {tmp_path / 'registry_cache.db'}"]


def test_the_cache_variable_and_a_glob_that_stays_an_exact_name(registry, tmp_path, repo_name, monkeypatch):
    pusher = Pusher(registry.url)
    pusher.push_image(f"{repo_name}/app", "pr-1")
    monkeypatch.setenv("DOCKER_UTIL_CACHEFILE", str(tmp_path / "env_cache.json"))
    run = run_dregutil(["-reg", registry.url, "query-tags", "-r", f"{repo_name}/app", "-t", "pr-*"])
    assert (run.returncode, run.stdout) == (0, "")  # 'pr-*' is a tag name, as in docker-registry-util
    assert (tmp_path / "env_cache.db").is_file() and not (tmp_path / "env_cache.json").exists()


def test_usage_mistakes_are_one_line_and_exit_2(registry):
    for argv, message in (
        (["-reg", registry.url, "-l", "loud", "list-repo-names"], "unknown level 'loud'"),
        (["-reg", registry.url], "No command was set."),
        (["list-repo-names"], "No registry provided"),
        (["-reg", registry.url, "-c", "None", "query-tags", "-r", "a"], "No tags specified."),
        (["-reg", registry.url, "-c", "None", "query-tags", "-r", "-t", "x"], "expected at least one argument"),
        (["-reg", registry.url, "-c", "None", "query-tags", "-r", "a", "-t", "<1.x"], "invalid version"),
    ):
        run = run_dregutil(argv)
        assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr, (argv, run.stderr)


def test_tags_in_looseversion_order():
    tags = ["latest", "1.10", "1.9", "1.0-alpine", "1.0", "v2", "1.0rc1", "10"]
    assert sorted(tags, key=loose_order) == ["1.0", "1.0-alpine", "1.0rc1", "1.9", "1.10", "10", "latest", "v2"]
