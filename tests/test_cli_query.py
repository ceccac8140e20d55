"""The list and query commands against a real registry: docker-registry-util's commands and flags, every output
format with its exact text, and the errors a user can make."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

from regdb.cli import output
from regdb.versions import version_key
from tests.rig.cli import run
from tests.rig.media import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST
from tests.rig.pusher import Pusher


def total_size(pushed) -> int:
    """What the inventory reports as an image's size: manifest, config and layers, as pushed."""
    return pushed.size + pushed.config_size + sum(size for _, size in pushed.layers)


@dataclass
class Images:
    url: str
    host: str
    db: object
    app: str
    web: str
    bare: str
    old: object  # app:1.0
    oci: object  # app:1.1, an OCI manifest
    alpine: object  # app:1.2.3-alpine
    shared: object  # app:1.3 and web:prod, one digest in two repositories
    current: object  # app:1.4 and app:latest
    multi: object  # app:2.0, a manifest list


@pytest.fixture(scope="module")
def images(registry, tmp_path_factory) -> Images:
    """One set of repositories for the module, synced once into an inventory the tests only read."""
    assert registry.alive(), registry.log_tail()
    pusher = Pusher(registry.url)
    prefix = f"cliq-{uuid.uuid4().hex[:8]}"
    app, web, bare = f"{prefix}/app", f"{prefix}/web", f"{prefix}/bare"
    old = pusher.push_image(app, "1.0")
    oci = pusher.push_image(app, "1.1", oci=True)
    alpine = pusher.push_image(app, "1.2.3-alpine")
    shared = pusher.push_image(app, "1.3")
    pusher.copy(app, shared.digest, web, "prod")
    current = pusher.push_image(app, "1.4")
    pusher.tag(app, "latest", current.digest)
    multi = pusher.push_index(app, "2.0")
    # A repository whose tags were all deleted: the registry still lists it, with "tags": null.
    gone = pusher.push_image(bare, "gone")
    assert pusher.delete(bare, gone.digest) == 202
    db = tmp_path_factory.mktemp("cli-query") / "inventory.db"
    result = run("-reg", registry.url, "--db", db, "sync", app, web, bare)
    assert result.exit_code == 0, result.output
    return Images(registry.url, registry.host, db, app, web, bare, old, oci, alpine, shared, current, multi)


def query(images: Images, *args: str):
    return run("-reg", images.url, "--db", images.db, *args)


# --- list-repo-names, list-tag-names --------------------------------------------------------------------------


def test_list_repo_names_skips_repositories_without_tags(images):
    result = query(images, "list-repo-names")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{images.app}\n{images.web}\n"
    # bare is in the inventory (no "not found" warning), it just has no tags.
    assert (query(images, "list-tag-names", images.bare).output, query(images, "list-repo-names").stderr) == ("", "")


def test_list_tag_names_in_version_order(images):
    result = query(images, "list-tag-names", images.app, images.web)
    assert result.exit_code == 0, result.output
    app, web = images.app, images.web
    pad = " " * (len(app) - len(web))
    assert result.stdout == (
        f"{app}  1.0\n{app}  1.1\n{app}  1.2.3-alpine\n{app}  1.3\n{app}  1.4\n{app}  2.0\n{app}  latest\n"
        f"{web}{pad}  prod\n"
    )


def test_list_tag_names_reverse_sort_and_image_names(images):
    result = query(images, "list-tag-names", images.app, "--reverse-sort", "--image-names")
    assert result.exit_code == 0, result.output
    tags = ["latest", "2.0", "1.4", "1.3", "1.2.3-alpine", "1.1", "1.0"]
    assert result.stdout == "".join(f"{images.host}/{images.app}:{tag}\n" for tag in tags)


def test_list_tag_names_json_has_the_digests(images):
    result = query(images, "list-tag-names", images.web, "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"repo": images.web, "tag": "prod", "digest": images.shared.digest}]


# --- query-tags: what a selection is ------------------------------------------------------------------------------


def test_a_multi_arch_tag_selects_its_index_digest(images):
    result = query(images, "query-tags", "-r", images.app, "-t", "2.0", "--format", "json")
    assert result.exit_code == 0, result.output
    children = sum(total_size(child) for child in images.multi.children.values())
    assert json.loads(result.stdout) == [{
        "repo": images.app, "digest": images.multi.digest, "tags": ["2.0"], "media_type": DOCKER_MANIFEST_LIST,
        "size": children,
    }]


def test_an_oci_image_is_selected_like_any_other(images):
    result = query(images, "query-tags", "-r", images.app, "-re", r"1\.1", "--format", "ndjson")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "repo": images.app, "digest": images.oci.digest, "tags": ["1.1"], "media_type": OCI_MANIFEST,
        "size": total_size(images.oci),
    }


def expected_listing(images: Images, fmt: str) -> str:
    """``query-tags -r APP -t '<1.3'``: 1.0, 1.1 (OCI) and 1.2.3-alpine, which compares as 1.2.3."""
    rows = [(images.app, images.old, "1.0", DOCKER_MANIFEST), (images.app, images.oci, "1.1", OCI_MANIFEST),
            (images.app, images.alpine, "1.2.3-alpine", DOCKER_MANIFEST)]
    if fmt == "text":
        return "".join(f"{repo}  {p.digest}\n" for repo, p, _, _ in rows)
    if fmt in ("json", "ndjson"):
        objects = [
            json.dumps({"repo": repo, "digest": p.digest, "tags": [tag], "media_type": media_type,
                        "size": total_size(p)})
            for repo, p, tag, media_type in rows
        ]
        return "[\n  " + ",\n  ".join(objects) + "\n]\n" if fmt == "json" else "".join(o + "\n" for o in objects)
    if fmt in ("csv", "tsv"):
        sep = "," if fmt == "csv" else "\t"
        lines = [sep.join(["repo", "digest", "tags", "media_type", "size"])]
        lines += [sep.join([repo, p.digest, tag, media_type, str(total_size(p))]) for repo, p, tag, media_type in rows]
        return "\n".join(lines) + "\n"
    assert fmt == "table"
    header = ["repo", "digest", "tags", "media_type", "size"]
    cells = [[repo, p.digest, tag, media_type, str(total_size(p))] for repo, p, tag, media_type in rows]
    widths = [max(len(row[i]) for row in [header, *cells]) for i in range(5)]

    def line(row):
        return "  ".join([*(row[i].ljust(widths[i]) for i in range(4)), row[4].rjust(widths[4])]) + "\n"

    return line(header) + line(["-" * len(name) for name in header]) + "".join(line(row) for row in cells)


@pytest.mark.parametrize("fmt", output.FORMATS)
def test_every_format(images, fmt):
    result = query(images, "query-tags", "-r", images.app, "-t", "<1.3", "--format", fmt)
    assert result.exit_code == 0, result.output
    assert result.stdout == expected_listing(images, fmt)
    assert result.stderr == ""


def test_text_pads_the_repository_column_to_the_widest(images):
    result = query(images, "query-tags", "-r", images.app, images.web, "-t", "1.3", "prod")
    assert result.exit_code == 0, result.output
    pad = " " * (len(images.app) - len(images.web))
    assert result.stdout == f"{images.app}  {images.shared.digest}\n{images.web}{pad}  {images.shared.digest}\n"


# --- the safety rules -------------------------------------------------------------------------------------------


def test_a_digest_in_a_repository_outside_the_selection_is_an_error_naming_it(images):
    result = query(images, "query-tags", "-r", images.app, "-t", "1.3")
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr == (
        f"Error: {images.app}@{images.shared.digest} is also in repository {images.web}, which the selection "
        "does not include; name it with -r too, or use --no-raise-intersecting-repo to leave such digests out\n"
    )
    dropped = run("-reg", images.url, "--db", images.db, "--no-raise-intersecting-repo", "query-tags", "-r", images.app,
                  "-t", "<1.4")
    assert dropped.exit_code == 0, dropped.output
    assert dropped.stdout == expected_listing(images, "text")  # 1.3 is left out, the rest stays


def test_query_repos_lists_each_repository_and_checks_the_others(images):
    both = query(images, "query-repos", "-r", images.app, images.web, "--format", "csv")
    assert both.exit_code == 0, both.output
    lines = both.stdout.splitlines()
    assert lines[0] == "repo,digest,tags,media_type,size"
    assert [line.split(",")[0:2] for line in lines[1:]] == [
        [images.app, p.digest] for p in [images.old, images.oci, images.alpine, images.shared]
    ] + [[images.app, images.current.digest], [images.app, images.multi.digest], [images.web, images.shared.digest]]
    assert f'{images.app},{images.current.digest},"1.4,latest",' in both.stdout

    one = query(images, "query-repos", "-r", images.app)
    assert one.exit_code == 1, one.output
    assert f"is also in repository {images.web}," in one.stderr

    dropped = run("-reg", images.url, "--db", images.db, "--no-raise-intersecting-repo", "--count", "query-repos", "-r",
                  images.app)
    assert dropped.exit_code == 0, dropped.output
    assert dropped.stdout == "5\n"  # every tagged digest of app but the shared one


def test_match_all_tags_and_its_options(images):
    digest = images.current.digest
    # 1.4 shares its digest with latest: left out unless latest is selected too (greedy -t, as argparse).
    assert query(images, "query-tags", "-r", images.app, "-t", "1.4").stdout == ""
    both = query(images, "query-tags", "-r", images.app, "-t", "1.4", "latest")
    assert both.stdout == f"{images.app}  {digest}\n"
    loose = query(images, "query-tags", "-r", images.app, "-t", "1.4", "--no-match-all-tags", "--format", "json")
    assert json.loads(loose.stdout)[0]["tags"] == ["1.4", "latest"]
    raised = query(images, "query-tags", "-r", images.app, "-t", ">=1.4", "--raise-intersecting-tag")
    assert raised.exit_code == 1, raised.output
    assert raised.stderr == (
        f"Error: {images.app}@{digest} is also tagged latest in {images.app}, which the selection does not "
        "include (--raise-intersecting-tag); select those tags too, or leave the option out to skip such digests\n"
    )


def test_exclusions_protect_digests(images):
    result = query(images, "query-tags", "-r", images.app, "-t", "<1.3", "-x", "1.1", "-xre", ".*-alpine")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{images.app}  {images.old.digest}\n"
    # An excluded tag protects its digest even with the reverse check off.
    protected = query(images, "query-tags", "-r", images.app, "-t", "1.4", "-x", "latest", "--no-match-all-tags")
    assert (protected.exit_code, protected.stdout) == (0, "")


# --- mistakes -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no tags selected: give at least one -t TAG|SELECTOR or -re REGEX"),
        (["-t", "<1.x"], "invalid version in selector '<1.x': '1.x'"),
        (["-t", "1.0", "-x", "~=1.0"], "unsupported operator in selector '~=1.0': use ==, <, >, <=, >= or an exact "
                                       "tag name"),
        (["-re", "v(1"], "invalid regex 'v(1': missing ), unterminated subpattern at position 1"),
    ],
)
def test_selector_mistakes_are_usage_errors(tmp_path, args, message):
    # No registry answers on this port: a usage error must come before any sync or request.
    result = run("-reg", "http://127.0.0.1:9", "--db", tmp_path / "none.db", "query-tags", "-r", "app", *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.endswith(f"\nError: {message}\n")
    assert "Usage: main query-tags [OPTIONS]" in result.stderr
    assert not (tmp_path / "none.db").exists()


def test_query_tags_needs_a_repository(tmp_path):
    result = run("-reg", "http://127.0.0.1:9", "--db", tmp_path / "none.db", "query-tags", "-t", "1.0")
    assert result.exit_code == 2, result.output
    assert "Error: Missing option '-r' / '--repo'." in result.stderr


def test_an_unknown_repository_is_a_warning_and_no_rows(images):
    result = query(images, "query-tags", "-r", "no/such-repo", "-t", "1.0")
    assert result.exit_code == 0, result.output
    assert (result.stdout, result.stderr) == ("", "warning: repository no/such-repo not found\n")
    listed = query(images, "list-tag-names", "no/such-repo", images.web)
    assert listed.stdout == f"{images.web}  prod\n"
    assert listed.stderr == "warning: repository no/such-repo not found\n"


def test_count(images):
    result = run("-reg", images.url, "--db", images.db, "--count", "list-tag-names", images.app)
    assert (result.exit_code, result.stdout) == (0, "7\n")


def test_debug_log_shows_the_sql(images):
    result = run("-reg", images.url, "--db", images.db, "-l", "debug", "query-tags", "-r", images.app, "-t", "<1.3",
                 "-x", "1.1")
    assert result.exit_code == 0, result.output
    assert "DEBUG regdb.selection.selectors: selected digests and their tags:\nSELECT repos.name" in result.stderr
    # With the values in place, so the statement can be pasted into sqlite3 and explained.
    assert f"repos.name IN ('{images.app}')" in result.stderr
    # The operand's key without its precision field "#NN" (regdb.versions), then the precision check.
    assert f"selected_tag.version_key < '{version_key('1.3')[:-3]}'" in result.stderr
    assert "excluded_tag.name IN ('1.1')" in result.stderr
    assert result.stdout == f"{images.app}  {images.old.digest}\n{images.app}  {images.alpine.digest}\n"


# --- the inventory is synced when it has to be ----------------------------------------------------------------------


def test_first_query_syncs_and_refresh_resyncs(fresh_registry, fresh_pusher, tmp_path):
    db = tmp_path / "inventory.db"
    first = fresh_pusher.push_image("app", "1.0")
    result = run("-reg", fresh_registry.url, "--db", db, "query-tags", "-r", "app", "-t",
                 "1.0")  # never synced: syncs first
    assert (result.exit_code, result.stdout) == (0, f"app  {first.digest}\n"), result.output
    second = fresh_pusher.push_image("app", "1.1")
    stale = run("-reg", fresh_registry.url, "--db", db, "query-tags", "-r", "app", "-t", "1.1")
    assert (stale.exit_code, stale.stdout) == (0, "")  # the inventory answers, as the seed's cache did
    fresh = run("-reg", fresh_registry.url, "--db", db, "--refresh", "query-tags", "-r", "app", "-t", "1.1")
    assert (fresh.exit_code, fresh.stdout) == (0, f"app  {second.digest}\n"), fresh.output


def test_dregutil_answers_as_regdb_does(images):
    # dregutil is docker-registry-util's command line (tests/test_dregutil_*.py); here: the same inventory.
    dregutil = Path(sys.executable).parent / "dregutil"
    run = subprocess.run([str(dregutil), "-reg", images.url, "-c", str(images.db), "-l", "warning", "query-tags",
                          "-r", images.app, "-t", "1.0"], capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stdout, run.stderr) == (0, f"{images.app}  {images.old.digest}\n", "")


# --- the renderer on its own ------------------------------------------------------------------------------------------


def test_renderer_values_and_row_shapes():
    stamp = datetime(2024, 5, 1, 12, 30)
    rows = [{"name": "a", "when": stamp, "n": None, "tags": ("x", "y")},
            ("bb", datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc), 3, [])]
    columns = ["name", "when", "n", "tags"]
    assert output.to_string(rows, columns, "text") == (
        "a   2024-05-01T12:30:00Z          x,y\n"  # the empty n column is padded too
        "bb  2024-05-01T12:30:00+00:00  3\n"
    )
    assert output.to_string(rows, columns, "json") == (
        '[\n  {"name": "a", "when": "2024-05-01T12:30:00Z", "n": null, "tags": ["x", "y"]},\n'
        '  {"name": "bb", "when": "2024-05-01T12:30:00+00:00", "n": 3, "tags": []}\n]\n'
    )
    assert output.to_string(rows, columns, "csv") == (
        "name,when,n,tags\na,2024-05-01T12:30:00Z,,\"x,y\"\nbb,2024-05-01T12:30:00+00:00,3,\n"
    )
    assert output.to_string([], columns, "json") == "[]\n"
    assert output.to_string([], columns, "text") == ""
    assert output.to_string([], columns, "tsv") == "name\twhen\tn\ttags\n"
    assert output.to_string([("a\tb", 'say "hi"')], ["x", "y"], "tsv") == 'x\ty\n"a\tb"\t"say ""hi"""\n'
    with pytest.raises(ValueError, match="row has 1 values for 2 columns"):
        output.to_string([("a",)], ["x", "y"], "csv")
