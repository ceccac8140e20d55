"""docker-registry-util's own test suite (test/test_query.py on its test/data.py corpus), rebuilt in regdb's
words and run through the ``dregutil`` console script against a real registry.

The corpus: repository a has two digests (A1: 1.1.0, latest; A2: 1.2.0, testing, extra); b and c share one
digest (BC: 1.0.0 and latest in both); c has one more (C: 1.1.0, testing). Every case of the original is
here with its expectation. The one documented difference (README, "differences from docker-registry-util"):
a digest selected in two repositories is a row for each, where the original listed only the first.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.rig.cli import run_dregutil
from tests.rig.pusher import Pusher
from tests.rig.registry import start_registry

DREGUTIL = Path(sys.executable).parent / "dregutil"
TIMEOUT = 60  # seconds for one dregutil run on a three-repository registry; a hang fails rather than blocks


@pytest.fixture(scope="module")
def corpus(registry_binary, tmp_path_factory):
    root = tmp_path_factory.mktemp("dregutil-suite")
    registry = start_registry(root / "registry")
    try:
        p = Pusher(registry.url)
        a1 = p.push_image("a", "1.1.0")
        p.tag("a", "latest", a1.digest)
        a2 = p.push_image("a", "1.2.0")
        p.tag("a", "testing", a2.digest)
        p.tag("a", "extra", a2.digest)
        bc = p.push_image("b", "1.0.0")
        p.tag("b", "latest", bc.digest)
        p.copy("b", bc.digest, "c", "1.0.0")
        p.tag("c", "latest", bc.digest)
        c = p.push_image("c", "1.1.0")
        p.tag("c", "testing", c.digest)
        yield registry, root / "inventory.db", {"A1": a1.digest, "A2": a2.digest, "BC": bc.digest, "C": c.digest}
    finally:
        registry.stop()


def dregutil(corpus, *args, status=0):
    registry, db, _ = corpus
    run = run_dregutil(["-reg", registry.url, "-c", str(db), "-l", "warning", *args])
    assert run.returncode == status, (args, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr
    return run


def pairs(corpus, *args):
    """The (repo, digest label) rows dregutil prints, in order."""
    labels = {digest: label for label, digest in corpus[2].items()}
    rows = []
    for line in dregutil(corpus, *args).stdout.splitlines():
        repo, digest = line.split()
        rows.append((repo, labels[digest]))
    return rows


def test_independent_repo_selection(corpus):
    assert sorted(pairs(corpus, "query-repos", "-r", "a")) == [("a", "A1"), ("a", "A2")]


def test_intersecting_repo_selection(corpus):
    # The original: [(b, BC), (c, C)]; regdb adds (c, BC), the documented difference.
    assert sorted(pairs(corpus, "query-repos", "-r", "b", "c")) == [("b", "BC"), ("c", "BC"), ("c", "C")]
    assert pairs(corpus, "--no-raise-intersecting-repo", "query-repos", "-r", "b") == []
    assert pairs(corpus, "--no-raise-intersecting-repo", "query-repos", "-r", "c") == [("c", "C")]
    for named, other in (("b", "c"), ("c", "b")):
        failed = dregutil(corpus, "query-repos", "-r", named, status=1)
        assert failed.stdout == ""
        assert corpus[2]["BC"] in failed.stderr and f"repository {other}" in failed.stderr


def test_independent_tag_selection(corpus):
    assert pairs(corpus, "query-tags", "-r", "a", "-t", "<1.2.0", "latest") == [("a", "A1")]
    assert sorted(pairs(corpus, "query-tags", "-r", "a", "-re", ".*")) == [("a", "A1"), ("a", "A2")]
    assert pairs(corpus, "query-tags", "-r", "c", "-t", ">=1.1.0", "testing") == [("c", "C")]


def test_intersecting_tag_selection(corpus):
    assert pairs(corpus, "query-tags", "-r", "a", "-t", "<=1.2.0", "latest") == [("a", "A1")]
    assert sorted(pairs(corpus, "query-tags", "-r", "b", "c", "-re", ".*")) == [("b", "BC"), ("c", "BC"), ("c", "C")]
    assert pairs(corpus, "query-tags", "-r", "b", "c", "-t", "1.0.0", "latest") == [("b", "BC"), ("c", "BC")]
    assert pairs(corpus, "--no-raise-intersecting-repo", "query-tags", "-r", "c", "-re", ".*") == [("c", "C")]
    for named, other in (("b", "c"), ("c", "b")):
        failed = dregutil(corpus, "query-tags", "-r", named, "-re", ".*", status=1)
        assert corpus[2]["BC"] in failed.stderr and f"repository {other}" in failed.stderr
    failed = dregutil(corpus, "query-tags", "-r", "b", "c", "-t", "==1.0.0", "--raise-intersecting-tag", status=1)
    assert corpus[2]["BC"] in failed.stderr and "latest" in failed.stderr


def test_tag_selection_with_exclusion(corpus):
    assert pairs(corpus, "query-tags", "-r", "a", "-re", ".*", "-x", "latest") == [("a", "A2")]
    assert pairs(corpus, "query-tags", "-r", "b", "c", "-re", ".*", "-x", "testing") == [("b", "BC"), ("c", "BC")]


def test_output_is_the_originals(corpus):
    # Padded to the longest -r name, repositories in argument order, the --count footer.
    digests = corpus[2]
    out = dregutil(corpus, "--count", "query-tags", "-r", "c", "a", "-re", ".*", "-x", "latest").stdout
    footer = "Number of selected digests: 2"
    assert out == f"c  {digests['C']}\na  {digests['A2']}\n" + "-" * len(footer) + f"\n{footer}\n"
    # Global options go before the command, as argparse had it: after it they are a usage error.
    late = dregutil(corpus, "query-repos", "-r", "a", "--no-raise-intersecting-repo", status=2)
    assert "unrecognized arguments: --no-raise-intersecting-repo" in late.stderr
    listed = dregutil(corpus, "list-tag-names", "c", "b").stdout.splitlines()
    assert listed == ["c  1.0.0", "c  1.1.0", "c  latest", "c  testing", "b  1.0.0", "b  latest"]


def test_removal_through_dregutil_is_quiet_and_keeps_what_was_not_selected(registry_binary, tmp_path):
    registry = start_registry(tmp_path / "registry")
    try:
        p = Pusher(registry.url)
        a1 = p.push_image("a", "1.1.0")
        p.tag("a", "latest", a1.digest)
        p.push_image("a", "1.2.0")
        run = subprocess.run([str(DREGUTIL), "-reg", registry.url, "-c", str(tmp_path / "inv.db"), "--count",
                              "remove-tags", "-r", "a", "-re", ".*", "-x", "latest"],
                             capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        assert run.returncode == 0, run.stderr
        assert run.stdout == "-" * 28 + "\nNumber of removed digests: 1\n"  # nothing else on stdout, no prompt
        assert p.tags("a") == ["1.1.0", "latest"] or sorted(p.tags("a")) == ["1.1.0", "latest"]
        assert p.head_digest("a", "latest") == a1.digest
    finally:
        registry.stop()
