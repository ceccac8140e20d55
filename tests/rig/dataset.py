"""A known inventory for the data-source tests, on SQLite (tests/test_sql.py) and PostgreSQL
(tests/test_postgres.py): what is pushed, what every view must then answer, and the documented example queries.

Everything expected is computed from what the rig pushed (sizes, digests), never copied from regdb's output.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from regdb.inventory import models
from regdb.inventory.db import alembic_config, head_revision, upgrade, write_transaction
from regdb.inventory.views import VIEWS
from tests.rig.pusher import DEFAULT_CREATED, Pushed, PushedIndex, Pusher

DOCS = Path(__file__).resolve().parents[2] / "docs" / "data-source.md"
OLD = "2024-01-01 00:00:00.000000"  # the rig's default build time, as the inventory shows it
assert DEFAULT_CREATED.startswith("2024-01-01T00:00:00")


def shown(moment: datetime) -> str:
    """A UTC time as `regdb sql` shows it on both databases."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


@dataclass
class Dataset:
    """Four repositories under ``prefix``: app (1.0 -> A, 1.1 and latest -> B; A and B share layer L1),
    mirror (a -> A, copied: one digest in two repositories), tool (2.0 -> C, built days ago), multi (v1 -> a
    two-platform index)."""

    registry: str  # host:port, the views' registry column
    url: str
    prefix: str
    a: Pushed
    b: Pushed
    c: Pushed
    index: PushedIndex
    recent: datetime

    @property
    def repos(self) -> list[str]:
        return [self.repo(name) for name in ("app", "mirror", "tool", "multi")]

    def repo(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    # --- what each view must answer ---------------------------------------------------------------------

    @staticmethod
    def image_bytes(image: Pushed) -> int:
        return image.size + image.config_size + sum(size for _, size in image.layers)

    def index_bytes(self) -> int:
        return sum(self.image_bytes(child) for child in self.index.children.values())

    def images(self) -> set[tuple]:
        r = self.registry
        a, b, c = self.a, self.b, self.c
        rows = {
            (r, self.repo("app"), "1.0", a.digest, a.media_type, OLD, "amd64", "linux", self.image_bytes(a)),
            (r, self.repo("app"), "1.1", b.digest, b.media_type, OLD, "amd64", "linux", self.image_bytes(b)),
            (r, self.repo("app"), "latest", b.digest, b.media_type, OLD, "amd64", "linux", self.image_bytes(b)),
            (r, self.repo("mirror"), "a", a.digest, a.media_type, OLD, "amd64", "linux", self.image_bytes(a)),
            (r, self.repo("tool"), "2.0", c.digest, c.media_type, shown(self.recent), "amd64", "linux",
             self.image_bytes(c)),
            (r, self.repo("multi"), "v1", self.index.digest, self.index.media_type, OLD, None, None,
             self.index_bytes()),
        }
        return {row + (None,) for row in rows}  # artifact_type: plain images and an index, no artifact

    def digest_usage(self) -> set[tuple]:
        r = self.registry
        rows = {
            (r, self.a.digest, self.a.media_type, 2, 2, self.image_bytes(self.a)),
            (r, self.b.digest, self.b.media_type, 1, 2, self.image_bytes(self.b)),
            (r, self.c.digest, self.c.media_type, 1, 1, self.image_bytes(self.c)),
            (r, self.index.digest, self.index.media_type, 1, 1, self.index_bytes()),
        }
        for child in self.index.children.values():
            rows.add((r, child.digest, child.media_type, 1, 0, self.image_bytes(child)))
        return rows

    def _blobs(self, image: Pushed) -> dict[str, int]:
        return {image.digest: image.size, image.config_digest: image.config_size, **dict(image.layers)}

    def _repo_blobs(self) -> dict[str, dict[str, int]]:
        multi = {self.index.digest: self.index.size}
        for child in self.index.children.values():
            multi.update(self._blobs(child))
        return {
            self.repo("app"): {**self._blobs(self.a), **self._blobs(self.b)},
            self.repo("mirror"): self._blobs(self.a),
            self.repo("tool"): self._blobs(self.c),
            self.repo("multi"): multi,
        }

    def repo_stats(self) -> set[tuple]:
        held = self._repo_blobs()
        tags = {self.repo("app"): 3, self.repo("mirror"): 1, self.repo("tool"): 1, self.repo("multi"): 1}
        digests = {self.repo("app"): 2, self.repo("mirror"): 1, self.repo("tool"): 1, self.repo("multi"): 3}
        rows = set()
        for repo, blobs in held.items():
            others = {d for other, theirs in held.items() if other != repo for d in theirs}
            unique = sum(size for digest, size in blobs.items() if digest not in others)
            rows.add((self.registry, repo, tags[repo], digests[repo], sum(blobs.values()), unique))
        return rows

    def blob_usage(self) -> set[tuple]:
        manifests: dict[str, set[str]] = {}
        repos: dict[str, set[str]] = {}
        sizes: dict[str, int] = {}
        images = {self.repo("app"): [self.a, self.b], self.repo("mirror"): [self.a], self.repo("tool"): [self.c],
                  self.repo("multi"): list(self.index.children.values())}
        for repo, held in images.items():
            for image in held:
                for digest, size in [(image.config_digest, image.config_size), *image.layers]:
                    manifests.setdefault(digest, set()).add(image.digest)
                    repos.setdefault(digest, set()).add(repo)
                    sizes[digest] = size
        return {(self.registry, d, sizes[d], len(manifests[d]), len(repos[d])) for d in sizes}

    def expected_views(self) -> dict[str, set[tuple]]:
        # The dataset has no signatures and nothing deleted, so the retention views are empty for it.
        return {"images": self.images(), "digest_usage": self.digest_usage(), "repo_stats": self.repo_stats(),
                "blob_usage": self.blob_usage(), "signatures": set(), "reclaimable": set(),
                "pull_stats": set(),  # no notifications: tests/test_live.py fills pull_stats
                "broken_indexes": set()}  # every index child is there


def push_dataset(pusher: Pusher, registry_host: str, registry_url: str) -> Dataset:
    prefix = f"ds{uuid.uuid4().hex[:10]}"
    layer = lambda name: f"{prefix} {name}".encode()  # noqa: E731 - unique content, so unique blob digests
    a = pusher.push_image(f"{prefix}/app", "1.0", layers=[layer("L1"), layer("LA")])
    b = pusher.push_image(f"{prefix}/app", "1.1", layers=[layer("L1"), layer("LB long layer")])
    pusher.tag(f"{prefix}/app", "latest", b.digest)
    pusher.copy(f"{prefix}/app", a.digest, f"{prefix}/mirror", "a")
    recent = (datetime.now(timezone.utc) - timedelta(days=3)).replace(microsecond=0, tzinfo=None)
    c = pusher.push_image(f"{prefix}/tool", "2.0", layers=[layer("LC")], created=recent.isoformat() + "Z")
    index = pusher.push_index(f"{prefix}/multi", "v1")
    return Dataset(registry_host, registry_url, prefix, a, b, c, index, recent)


# --- output formats: one statement, its exact output in each (the same on SQLite and PostgreSQL) -------

LITERAL = (
    "SELECT 'app' AS repo, '1.0' AS tag, 1024 AS size, NULL AS created "
    "UNION ALL SELECT 'team/a,b', 'say \"hi\"', 5, '2024-01-01 00:00:00.000000' ORDER BY size DESC"
)

# The timestamp-shaped text prints in ISO 8601 UTC, as every timestamp regdb prints (issue 17).
FORMATS = {
    "table": (
        "repo      tag       size  created\n"
        "----      ---       ----  -------\n"
        "app       1.0       1024\n"
        'team/a,b  say "hi"     5  2024-01-01T00:00:00.000000Z\n'
    ),
    "text": (
        "app       1.0       1024\n"
        'team/a,b  say "hi"  5     2024-01-01T00:00:00.000000Z\n'
    ),
    "csv": (
        "repo,tag,size,created\n"
        "app,1.0,1024,\n"
        '"team/a,b","say ""hi""",5,2024-01-01T00:00:00.000000Z\n'
    ),
    "tsv": (
        "repo\ttag\tsize\tcreated\n"
        "app\t1.0\t1024\t\n"
        'team/a,b\t"say ""hi"""\t5\t2024-01-01T00:00:00.000000Z\n'
    ),
    "json": (
        "[\n"
        '  {"repo": "app", "tag": "1.0", "size": 1024, "created": null},\n'
        '  {"repo": "team/a,b", "tag": "say \\"hi\\"", "size": 5, "created": "2024-01-01T00:00:00.000000Z"}\n'
        "]\n"
    ),
    "ndjson": (
        '{"repo": "app", "tag": "1.0", "size": 1024, "created": null}\n'
        '{"repo": "team/a,b", "tag": "say \\"hi\\"", "size": 5, "created": "2024-01-01T00:00:00.000000Z"}\n'
    ),
}


# --- the documented examples -------------------------------------------------------------------------------

_EXAMPLE = re.compile(
    r"<!-- example: (?P<name>[a-z0-9-]+)(?: \((?P<backend>sqlite|postgresql)\))? -->\s*```sql\n(?P<sql>.*?)```",
    re.DOTALL,
)


@dataclass
class Example:
    name: str
    backend: str | None
    sql: str


def documented_examples() -> list[Example]:
    text = DOCS.read_text()
    found = [Example(m["name"], m["backend"], m["sql"].strip()) for m in _EXAMPLE.finditer(text)]
    # Every SQL block must be a checked example: an unmarked one would be a query no test runs.
    assert len(found) == text.count("```sql"), "docs/data-source.md has a ```sql block without an example marker"
    return found


def example_params(example: Example, data: Dataset) -> dict[str, str]:
    return {
        "tags-older-than-a-cutoff": {"cutoff": (datetime.now(timezone.utc) - timedelta(days=90)).date().isoformat()},
        "space-a-repository-holds-alone": {"repo": data.repo("app")},
        "where-a-tag-pointed-at-a-time": {"repo": data.repo("app"), "tag": "latest",
                                          "at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")},
        "repos-not-pulled-since": {"cutoff": (datetime.now(timezone.utc) - timedelta(days=30)).date().isoformat()},
        "tags-not-pulled-since": {"cutoff": (datetime.now(timezone.utc) - timedelta(days=30)).date().isoformat(),
                                  "repo": data.repo("app")},
    }.get(example.name, {})


def example_expected(example: Example, data: Dataset) -> list[tuple]:
    """The exact rows (in order) each documented example must give on the dataset."""
    stats = sorted(data.repo_stats(), key=lambda row: (-row[4], row[1]))
    old_tags = sorted(
        ((r, repo, tag, created) for r, repo, tag, _d, _m, created, _a, _o, _s, _t in data.images() if created == OLD),
        key=lambda row: (row[3], row[1], row[2]),
    )
    blobs = sorted(data.blob_usage(), key=lambda row: (-row[4], -row[3], -row[2], row[1]))
    app = next(row for row in data.repo_stats() if row[1] == data.repo("app"))
    expected = {
        "largest-repositories": [row[:5] for row in stats][:10],
        "tags-older-than-a-cutoff": old_tags,
        "tags-older-than-90-days": old_tags,
        "digests-shared-across-repositories": [
            (data.registry, data.a.digest, 2, 2, data.image_bytes(data.a))
        ],
        "space-a-repository-holds-alone": [(data.registry, app[1], app[5], app[4])],
        "most-shared-blobs": blobs[:10],
        # The dataset was synced, not pushed under a listener: the sync opened each tag's history, nothing
        # was pulled (tests/test_live.py checks both against notifications).
        "where-a-tag-pointed-at-a-time": [(data.registry, data.b.digest)],
        "repos-not-pulled-since": sorted(((r, repo, digests) for r, repo, _tags, digests, *_ in data.repo_stats()),
                                         key=lambda row: (-row[2], row[0], row[1])),
        "tags-not-pulled-since": sorted((r, repo, tag, None) for r, repo, tag, *_ in data.images()
                                        if repo == data.repo("app")),
        "totals-per-registry": [
            (data.registry, 4, sum(row[2] for row in stats), sum(row[4] for row in stats))
        ],
    }
    assert example.name in expected, f"no expected result for documented example {example.name!r}: add one"
    return expected[example.name]


# --- migrations ----------------------------------------------------------------------------------------------


def assert_migrations_round_trip(engine: Engine) -> None:
    """Upgrade to head, no drift between the migrations and the models (``alembic check``), every view
    there with its documented columns, downgrade to base leaves nothing, and upgrade works again."""
    upgrade(engine)
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head_revision()
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, models.Base.metadata) == []
        inspector = inspect(conn)
        assert sorted(inspector.get_view_names()) == sorted(view.name for view in VIEWS)
        for view in VIEWS:
            assert [c["name"] for c in inspector.get_columns(view.name)] == list(view.columns), view.name
        assert set(inspector.get_table_names()) == set(models.Base.metadata.tables) | {"alembic_version"}
    with write_transaction(engine, summarise=False) as conn:  # the summary tables go with the downgrade
        command.downgrade(alembic_config(conn), "base")
    with engine.connect() as conn:
        inspector = inspect(conn)
        assert inspector.get_view_names() == []
        assert inspector.get_table_names() == ["alembic_version"]
        assert MigrationContext.configure(conn).get_current_revision() is None
    upgrade(engine)
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head_revision()
