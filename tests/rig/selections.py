"""Hand-built inventories and generated queries for the selector tests (tests/test_selectors.py) and the
sqlite3 reader's equivalence test (tests/test_sqlite_reader.py): a snapshot written with plain inserts, and
hypothesis strategies for registries and queries over them."""

from __future__ import annotations

import hashlib

from hypothesis import strategies as st
from sqlalchemy import insert, select

from regdb.inventory import models
from regdb.inventory.sync import utcnow
from regdb.versions import version_key

URL = "https://registry.test"
NAME = "registry.test"
DOCKER = "application/vnd.docker.distribution.manifest.v2+json"
INDEX = "application/vnd.oci.image.index.v1+json"


def digest(label: str) -> str:
    """A realistic digest per label, so tests read ``digest("old")`` instead of 64 hex digits."""
    return "sha256:" + hashlib.sha256(label.encode()).hexdigest()


def size_of(label: str) -> int:
    return 1000 + len(label)


def populate(conn, repos: dict, *, url: str = URL, name: str = NAME, children: dict | None = None) -> int:
    """Write one registry's snapshot with plain inserts (a few statements, so hypothesis stays fast).

    ``repos``: ``{repo: {tag: label}}`` or ``{repo: ({tag: label}, {untagged labels})}``; ``children``:
    ``{index label: [child labels]}`` (the children are present wherever the index is). Tags get their
    ``version_key`` from ``regdb.versions.version_key``, as the sync writes it.
    """
    children = children or {}
    registry_id = conn.execute(
        insert(models.Registry.__table__).values(url=url, name=name, last_synced_at=utcnow())
    ).inserted_primary_key[0]
    specs = {repo: spec if isinstance(spec, tuple) else (spec, set()) for repo, spec in repos.items()}
    labels = set(children) | {c for cs in children.values() for c in cs}
    for tags, untagged in specs.values():
        labels |= set(tags.values()) | set(untagged)
    digests = models.Digest.__table__
    known = dict(conn.execute(select(digests.c.digest, digests.c.id)).all())
    new = sorted(label for label in labels if digest(label) not in known)
    if new:
        conn.execute(insert(digests), [
            dict(digest=digest(label), media_type=INDEX if label in children else DOCKER,
                 kind="index" if label in children else "image", size=100, total_size=size_of(label),
                 fetched_at=utcnow())
            for label in new
        ])
        known = dict(conn.execute(select(digests.c.digest, digests.c.id)).all())
    tag_rows, present_rows = [], []
    for repo, (tags, untagged) in specs.items():
        repo_id = conn.execute(
            insert(models.Repo.__table__).values(registry_id=registry_id, name=repo)
        ).inserted_primary_key[0]
        tag_rows += [dict(repo_id=repo_id, name=tag, digest_id=known[digest(label)], version_key=version_key(tag))
                     for tag, label in tags.items()]
        present = set(tags.values()) | set(untagged)
        present |= {child for parent in present for child in children.get(parent, ())}
        present_rows += [dict(repo_id=repo_id, digest_id=known[digest(label)]) for label in sorted(present)]
    if tag_rows:
        conn.execute(insert(models.Tag.__table__), tag_rows)
    if present_rows:
        conn.execute(insert(models.RepoDigest.__table__), present_rows)
    return registry_id


# --- generated registries and queries ----------------------------------------------------------------------------

TAG_POOL = ["1.0", "1.0.0", "v1.0", "1.2", "1.2.3-alpine", "1.10", "2.0rc1", "2.0", "v2.0.1", "1.1-keep", "10.0",
            "latest", "main", "dev", "abc1.0", "1.0-rc1-alpine", "20240101", "1.0_x"]
# Boundaries that equal a tag's version (1.0 == 1.0.0 == v1.0, 1.2, 2.0, 1.10) tell < from <=.
SELECTOR_POOL = TAG_POOL[::3] + ["<1.2", ">1.0", "<=2.0", ">=1.2", "==1.0", "==2.0rc1", "<v2", ">=10", "< 1.10",
                                 "<=1.0", ">=v1.0", ">1.2", "<=1.10", ">=2.0", "==1.2.3"]
REGEX_POOL = [r"1\.", "v", "(?i)LATEST", "[0-9]+$", "d", "1", ".*-alpine", "(?i)V2", "m", "", "[0-9v]"]
SHARED_DIGESTS = ["s0"]  # may turn up in any repository; the others belong to one
REPO_POOL = ["a", "b", "team/c"]


@st.composite
def registries(draw):
    """{repo: ({tag: digest label}, {untagged digest labels})}."""
    result = {}
    for name in sorted(draw(st.sets(st.sampled_from(REPO_POOL), min_size=1))):
        labels = st.sampled_from(SHARED_DIGESTS + [f"{name}-{i}" for i in range(3)])
        tags = draw(st.dictionaries(st.sampled_from(TAG_POOL), labels, min_size=1, max_size=6))
        result[name] = (tags, draw(st.sets(labels, max_size=1)))
    return result


@st.composite
def cases(draw):
    """A random registry and a query on it, biased towards repositories and tags that exist (else most
    queries would select nothing and prove little)."""
    registry = draw(registries())
    repos = draw(st.permutations(sorted(registry) + ["missing"]))[:draw(st.integers(1, len(registry) + 1))]
    their_tags = sorted({tag for repo in repos if repo in registry for tag in registry[repo][0]})
    selectors = st.sampled_from(SELECTOR_POOL + their_tags * 2)
    regex = draw(st.lists(st.sampled_from(REGEX_POOL), max_size=2))
    query = draw(st.fixed_dictionaries({
        "tags": st.lists(selectors, min_size=0 if regex else 1, max_size=4),
        "exclude": st.lists(selectors, max_size=1),
        "exclude_regex": st.lists(st.sampled_from(REGEX_POOL[:-2]), max_size=1),  # not "" or "[0-9v]": all
        "match_all_tags": st.booleans(),
        "raise_intersecting_tag": st.booleans(),
        "raise_intersecting_repo": st.booleans(),
    }))
    query["regex"] = regex
    query["repos"] = repos
    return registry, query
