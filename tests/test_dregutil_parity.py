"""Parity: docker-registry-util 1.0.3 (pip-installed into a throwaway venv) and ``dregutil`` on the same Docker
schema-2 corpus of more than 100 repositories, for every command and flag of the original's ``--help``.

Both registries hold byte-identical content (the storage of one, copied before the other starts). For each
command line, dregutil's stdout and exit status equal the original's, or every difference is explained by a
named cause, and each cause is a row of the README's table "differences from docker-registry-util".

Skipped, with the reason, only where the original cannot run: pip cannot install it here (no package index),
or Python 3.12+ without setuptools (its ``distutils`` import). It crashes on OCI content, so the corpus is
Docker schema 2 only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.rig.cli import run_dregutil
from tests.rig.pusher import Pusher
from tests.rig.registry import start_registry

ORIGINAL = "docker-registry-util==1.0.3"
REPOS = 105  # more than the 100 names of the registry's first catalog page, the only page the original reads
FIRST_PAGE = 100
PIP_TIMEOUT = 180  # seconds to install the original from the package index (or its local mirror)
PUSH_WORKERS = 8  # concurrent pushes of the corpus: the registry serves them in parallel
RUN_TIMEOUT = 60  # seconds for one run of the original on this corpus
README = Path(__file__).resolve().parent.parent / "README.md"

# Each cause of a difference, and the first cell of its row in the README table.
CAUSES = {
    "pagination": "catalog pagination",
    "shared-digest": "one row per repository for a shared digest",
    "digest-order": "digest order within a repository",
    "versions": "version selectors",
}


def install_original(home: Path) -> subprocess.Popen:
    """Start pip installing the original into a new venv at ``home`` (this venv's pip with ``--python``: no
    ensurepip, seconds saved). Skips, with the reason, where the original cannot run."""
    if sys.version_info >= (3, 12):
        try:
            import setuptools  # noqa: F401  (the original imports distutils, which setuptools provides)
        except ImportError:
            pytest.skip("docker-registry-util imports distutils: on Python 3.12+ it needs setuptools, absent here")
    venv.EnvBuilder(with_pip=False).create(home)
    return subprocess.Popen([sys.executable, "-m", "pip", "--python", str(home / "bin" / "python"), "install", "-q",
                             "--disable-pip-version-check", ORIGINAL, "setuptools"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def compares_differently(repo: str) -> bool:
    """Whether the corpus gives ``repo`` tags that LooseVersion and PEP 440 compare differently."""
    return repo == "alias" or (repo.startswith("r") and int(repo[1:]) % 7 == 3)


def push_repo(url: str, i: int) -> None:
    pusher = Pusher(url)
    repo = f"r{i:03d}"
    old = pusher.push_image(repo, "1.0.0", unique=f"{repo}-old")
    if i % 7 == 3:  # see compares_differently()
        pusher.tag(repo, "1.0.0-alpine", old.digest)
        pusher.tag(repo, "v1.0.0", old.digest)
    if i < 30:  # a second image where the commands look; the others fill the catalog past its first page
        new = pusher.push_image(repo, "1.1.0", unique=f"{repo}-new")
        pusher.tag(repo, "latest", new.digest)


def push_corpus(url: str) -> None:
    """r000..r104 (1.0.0; 1.1.0 and latest in the first 30); r010 and r011 share a digest; 'alias' has the
    moving alias 1.4 (and v1.4.2) on the newest 1.4.x, as most registries keep it."""
    with ThreadPoolExecutor(PUSH_WORKERS) as pool:
        list(pool.map(lambda i: push_repo(url, i), range(REPOS)))
    pusher = Pusher(url)
    shared = pusher.push_image("r010", "shared", unique="shared")
    pusher.copy("r010", shared.digest, "r011", "shared")
    pusher.push_image("alias", "1.4.0", unique="alias-140")
    current = pusher.push_image("alias", "1.4.2", unique="alias-142")
    pusher.tag("alias", "1.4", current.digest)
    pusher.tag("alias", "v1.4.2", current.digest)


@pytest.fixture(scope="module")
def parity(registry_binary, tmp_path_factory):
    """(the original's script, its registry, dregutil's registry, a work directory). The two registries hold
    the same bytes (the storage of one copied before the other starts): removals change each."""
    root = tmp_path_factory.mktemp("parity")
    pip = install_original(root / "venv")
    first = start_registry(root / "original")
    second = None
    try:
        push_corpus(first.url)
        shutil.copytree(root / "original" / "storage", root / "dregutil" / "storage")
        second = start_registry(root / "dregutil")
        try:
            _, err = pip.communicate(timeout=PIP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.skip(f"pip could not install {ORIGINAL} within {PIP_TIMEOUT} s")
        if pip.returncode != 0:
            pytest.skip(f"pip could not install {ORIGINAL}: {err.strip().splitlines()[-1:]}")
        (root / "work").mkdir()
        original = Original(root / "venv" / "bin" / "python", root / "work")
        try:
            yield original, first, second, root
        finally:
            original.close()
    finally:
        if pip.poll() is None:
            pip.kill()
            pip.wait()
        first.stop()
        if second is not None:
            second.stop()


# Runs the original's unchanged code once per command line in one long-lived process of its venv, as its
# console script would (its module parses sys.argv when imported, so it is re-imported each time): a second of
# interpreter and requests start-up saved per run. Exit statuses as the interpreter gives them: SystemExit's
# code, 1 for an uncaught exception (an IntersectionError is a traceback in the original).
DRIVER = r"""
import contextlib, importlib, io, json, sys, traceback, warnings
warnings.simplefilter("ignore")
for line in sys.stdin:
    sys.argv = ["dregutil", *json.loads(line)]
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            sys.modules.pop("docker_registry_util.cli", None)
            importlib.import_module("docker_registry_util.cli").main()
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
    print(json.dumps({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}), flush=True)
"""


class Original:
    """docker-registry-util in its venv, driven line by line (DRIVER)."""

    def __init__(self, python: Path, cwd: Path):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY", "DOCKER_UTIL", "REQUESTS_CA"))}
        env["HOME"] = str(cwd)  # no ~/.docker/config.json of the machine's
        self.process = subprocess.Popen([str(python), "-c", DRIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, cwd=cwd, env=env)

    def start(self, argv: list[str]) -> None:
        self.process.stdin.write(json.dumps(argv) + "\n")
        self.process.stdin.flush()

    def result(self) -> subprocess.CompletedProcess:
        line = self.process.stdout.readline()  # bounded: the registry is local and every run ends
        assert line, "the docker-registry-util driver died"
        answer = json.loads(line)
        return subprocess.CompletedProcess([], answer["code"], answer["stdout"], answer["stderr"])

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def grouped(stdout: str) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """(repositories in order of appearance, each one's lines sorted, the --count footer lines)."""
    lines = stdout.splitlines()
    footer = lines[-2:] if len(lines) >= 2 and lines[-1].startswith("Number of ") else []
    body = lines[: len(lines) - len(footer)]
    order: list[str] = []
    by_repo: dict[str, list[str]] = {}
    for line in body:
        repo = re.split(r"\s+|:|/", line.strip(), maxsplit=1)[0]
        if repo not in by_repo:
            order.append(repo)
        by_repo.setdefault(repo, []).append(line.rstrip())
    return order, {repo: sorted(lines) for repo, lines in by_repo.items()}, footer


def explain(args: list[str], ours: str, theirs: str) -> set[str]:
    """The causes of every difference between the two stdouts; fails on a difference with no cause."""
    causes: set[str] = set()
    if ours == theirs:
        return causes
    first_page = {f"r{i:03d}" for i in range(REPOS)} | {"alias"}
    first_page = set(sorted(first_page)[:FIRST_PAGE])
    our_order, our_lines, our_footer = grouped(ours)
    their_order, their_lines, their_footer = grouped(theirs)
    if our_lines == their_lines and our_order == their_order:
        causes.add("digest-order")  # the same lines; only their order within a repository differs
    beyond = [repo for repo in our_order if repo not in first_page]
    if beyond:
        causes.add("pagination")
        our_order = [repo for repo in our_order if repo in first_page]
        our_lines = {repo: lines for repo, lines in our_lines.items() if repo in first_page}
    if any(a.startswith(("<", ">", "==")) for a in args):
        # A version selector: where LooseVersion and PEP 440 answer differently, on the repositories whose tags
        # say so (a 'v' prefix or a '-suffix' is a TypeError or a different order for LooseVersion; 'alias' has
        # the moving alias 1.4), the difference is that row's; anywhere else it must not differ.
        differing = [repo for repo in set(our_order) | set(their_order)
                     if our_lines.get(repo) != their_lines.get(repo)]
        if differing:
            assert all(compares_differently(repo) for repo in differing), (args, differing)
            causes.add("versions")
            return causes
    extra = 0
    if args[0] in ("query-repos", "query-tags"):
        seen: set[str] = set()
        for repo in their_order:
            seen.update(line.split()[-1] for line in their_lines[repo])
        for repo in our_order:
            mine, theirs_ = our_lines[repo], their_lines.get(repo, [])
            if mine != theirs_:
                more = [line for line in mine if line not in theirs_]
                assert all(line.split()[-1] in seen for line in more) and all(line in mine for line in theirs_), (
                    args, repo, mine, theirs_)
                causes.add("shared-digest")
                extra += len(more)
        our_order = [repo for repo in our_order if repo in their_lines]
    assert our_order == their_order, (args, our_order, their_order)
    for repo in their_order:
        assert our_lines[repo] == their_lines[repo] or "shared-digest" in causes, (args, repo)
    if our_footer != their_footer:
        number = int(our_footer[1].rsplit(" ", 1)[1]) - int(their_footer[1].rsplit(" ", 1)[1])
        assert causes and (number == extra or "pagination" in causes), (args, our_footer, their_footer)
    assert causes, (args, ours, theirs)
    return causes


READ_COMMANDS = [
    ["list-repo-names"],
    ["list-tag-names"],
    ["list-tag-names", "r003", "r001"],
    ["list-tag-names", "--reverse-sort", "r003"],
    ["list-tag-names", "--image-names", "r002"],
    ["list-tag-names", "--rev", "--image", "r010"],  # argparse prefix abbreviations
    ["query-repos", "-r", "r001", "r000"],
    ["query-repos", "--repo", "r010", "r011"],
    ["query-repos", "-r", "r010"],  # the shared digest: an intersection, exit 1 in both
    ["query-tags", "-r", "r001", "-t", "<1.1.0"],
    ["query-tags", "-r", "r003", "r002", "-t", ">=1.0.0", "-x", "1.1.0"],
    ["query-tags", "-r", "r003", "-t", "==1.0.0"],
    ["query-tags", "-r", "r001", "--tags", "latest", "1.1.0"],
    ["query-tags", "-r", "r001", "-re", ".*", "-xre", "lat"],
    ["query-tags", "-r", "r001", "-re", ".*", "-x", "-xre", "lat"],  # an empty -x
    ["query-tags", "-r", "r001", "--regex", "1\\.1", "--no-match-all-tags"],
    ["query-tags", "-r", "r001", "--reg", "1\\.1", "--no-match"],
    ["query-tags", "-r", "r001", "-t", "1.1.0", "--raise-intersecting-tag"],  # exit 1 in both
    ["query-tags", "-r", "r001", "-t", "1.1.0", "--raise"],
    ["query-tags", "-r", "r010", "r011", "-re", ".*"],
    ["query-tags", "-r", "r001", "-t", "pr-*"],  # an exact name under dregutil, as in the original
    ["query-tags", "-r", "alias", "-t", "<1.4.0"],  # the moving alias 1.4: LooseVersion selects it
    ["query-tags", "-r", "alias", "-t", "==1.4.0"],
]

GLOBAL_VARIANTS = [
    ["--count"],
    ["--refresh"],
    ["-u", "someone", "-p", "secret"],
    ["--user", "someone", "--password", "secret", "--digest-auth", "1"],
    ["-v", "None"],
    ["--use-get-manifest"],
    ["-l", "debug"],
    ["--no-raise-intersecting-repo"],
    ["--no-raise"],
    ["-c", "None"],
]


def compare(parity, args: list[str], causes: set[str], *, globals_=()) -> None:
    original, first, second, root = parity
    work = root / "work"
    cache = ["-c", str(work / "parity_cache.json")] if not any(g in ("-c", "--cache") for g in globals_) else []
    # Both at once (the original in its process, dregutil in this one): each on its own registry.
    original.start(["-reg", first.url, *cache, *globals_, *args])
    ours = run_dregutil(["-reg", second.url, *cache, *globals_, *args])
    theirs = original.result()
    assert "Traceback" not in ours.stderr, ours.stderr
    line = [*globals_, *args]
    assert ours.returncode == theirs.returncode, (line, ours.stderr, theirs.stderr[-500:])
    causes |= explain(args, ours.stdout.replace(second.url, "URL"), theirs.stdout.replace(first.url, "URL"))


def test_parity_with_docker_registry_util(parity, tmp_path):
    _, first, second, root = parity
    causes: set[str] = set()
    for args in READ_COMMANDS:
        compare(parity, args, causes)
    for globals_ in GLOBAL_VARIANTS:
        compare(parity, ["query-repos", "-r", "r005", "r004"], causes, globals_=globals_)
    from tests.rig.pki import make_ca, make_client_cert  # a client certificate: plain http never presents it

    client = make_client_cert(make_ca(tmp_path), tmp_path)
    compare(parity, ["list-tag-names", "r006"], causes,
            globals_=["-cert", str(client.cert_path), "-key", str(client.key_path)])

    # The original's JSON cache is left as the original wrote it; dregutil keeps its inventory beside it.
    cache = root / "work" / "parity_cache.json"
    assert cache.read_text().startswith("{") and (root / "work" / "parity_cache.db").is_file()

    # Removals: quiet on stdout (the --count footer only), no prompt, and the same registry state after.
    removals = [
        ["remove-tags", "-r", "r020", "-t", "<1.1.0"],
        ["--count", "remove-tags", "-r", "r021", "-re", ".*", "-x", "latest"],
        ["remove-tags", "-r", "r022", "--tags", "1.1.0", "--no-match-all-tags"],
        ["remove-repos", "-r", "r023"],
        ["--count", "remove-repos", "--repo", "r024", "r025"],
    ]
    for line in removals:
        globals_ = [a for a in line if a == "--count"]
        compare(parity, [a for a in line if a != "--count"], causes, globals_=globals_)
    a, b = Pusher(first.url), Pusher(second.url)
    for repo in ("r020", "r021", "r022", "r023", "r024", "r025", "r026"):  # r026: untouched
        assert a.tags(repo) == b.tags(repo), repo
    assert b.tags("r021") == ["1.1.0", "latest"] and b.tags("r023") == []

    # Every cause of a difference is a row of the README's table.
    table = readme_difference_rows()
    for cause in causes:
        assert CAUSES[cause] in table, f"README table lacks the row '{CAUSES[cause]}'"
    assert {"pagination", "shared-digest", "versions"} <= causes  # the corpus shows each of them


def readme_difference_rows() -> list[str]:
    """The first cells of the rows of README's "differences from docker-registry-util" table."""
    text = README.read_text()
    start = text.index("## Differences from docker-registry-util")
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("## "):
            break
        if line.startswith("| ") and not line.startswith("| difference") and not line.startswith("|---"):
            rows.append(line.split("|")[1].strip())
    return rows


def test_the_readme_table_names_every_cause_and_the_intended_fixes():
    rows = readme_difference_rows()
    for needed in [*CAUSES.values(), "OCI images and indexes", "index digests for multi-arch tags",
                   "fresh state before deleting"]:
        assert needed in rows, needed
