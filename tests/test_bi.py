"""The inventory as a BI source (issue 18): the summary-backed views and the documented example queries give what
the views computed on the fly gave, on generated inventories (SQLite and PostgreSQL) and after a real sync, a
removal and a failed sync; the summaries always equal a recomputation from nothing."""

from __future__ import annotations

import hashlib
import uuid
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from werkzeug import Request, Response

from regdb import Inventory, RegistryClient
from regdb.cleanup.plan import TagQuery
from regdb.errors import RegdbError
from regdb.inventory import summaries
from regdb.inventory.db import create_inventory_engine, upgrade
from tests.rig.dataset import documented_examples
from tests.rig.http_proxy import FaultyProxy
from tests.rig.summaries import (
    SUMMARY_TABLES,
    Generated,
    assert_summaries_equal_recomputation,
    assert_views_match_on_the_fly,
    images_layers,
    on_the_fly,
    registry_states,
    rows,
)

EXAMPLE_PARAMS = {"cutoff": "2024-01-05", "repo": "b", "tag": "latest", "at": "2024-01-05 00:00:00"}


def examples_for(dialect: str):
    return [e for e in documented_examples() if e.backend in (None, dialect)]


def assert_examples_match_on_the_fly(engine) -> None:
    with engine.connect() as conn:
        for example in examples_for(engine.dialect.name):
            params = {k: v for k, v in EXAMPLE_PARAMS.items() if f":{k}" in example.sql}
            assert rows(conn, example.sql, params) == rows(conn, on_the_fly(example.sql), params), example.name


# One inventory per test, emptied before each example (a fresh one each time would cost a migration): an
# example's registries are the only ones there, so the examples' ORDER BY has no ties across examples.
operations = st.lists(
    st.one_of(registry_states.map(lambda s: ("sync", s)),
              st.tuples(st.just("forget"), st.sampled_from("abcd"), st.integers(0, 7))),
    min_size=1, max_size=4,
)


def empty(engine) -> None:
    with engine.begin() as conn:
        for table in ("registries", "digest_children", "digest_blobs", "digests", "summary_dirty", *SUMMARY_TABLES):
            conn.exec_driver_sql(f"DELETE FROM {table}")  # registries: their repos, tags, manifests go along


def run_operations(engine, layers, ops) -> None:
    empty(engine)
    generated = Generated(engine, f"http://reg-{uuid.uuid4().hex[:8]}.example", layers)
    for op in ops:
        if op[0] == "sync":
            generated.write(op[1])
        else:
            generated.forget(op[1], op[2])
        with engine.connect() as conn:
            assert_views_match_on_the_fly(conn)
        assert_summaries_equal_recomputation(engine)
    assert_examples_match_on_the_fly(engine)
    # A second registry holding the same manifests: counted apart, and writing it leaves the first one's alone.
    bystander = Generated(engine, f"http://other-{uuid.uuid4().hex[:8]}.example", layers)
    bystander.write({"other/x": {"tags": {"1.0": 0, "2.0": 6}, "untagged": [1]}})
    with engine.connect() as conn:
        assert_views_match_on_the_fly(conn)
    assert_summaries_equal_recomputation(engine)


@pytest.fixture(scope="module")
def sqlite_engine(tmp_path_factory):
    engine = create_inventory_engine(str(tmp_path_factory.mktemp("bi") / "generated.db"))
    upgrade(engine)
    yield engine
    engine.dispose()


# Both ways of refreshing: repository by repository following their blobs (share 2: never whole), and the
# whole registry at once when most of it changed (share 0.5, the default).
WAYS = pytest.mark.parametrize("share", [2.0, 0.5], ids=["by-repository", "whole-registry"])


@WAYS
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layers=images_layers, ops=operations)
def test_summaries_follow_every_write_on_sqlite(sqlite_engine, monkeypatch, share, layers, ops):
    monkeypatch.setattr(summaries, "WHOLE_REGISTRY_SHARE", share)
    run_operations(sqlite_engine, layers, ops)


@pytest.fixture(scope="module")
def pg_engine(postgres_server):
    name = postgres_server.create_database()
    engine = create_inventory_engine(postgres_server.url(name))
    upgrade(engine)
    yield engine
    engine.dispose()
    postgres_server.drop_database(name)


@WAYS
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layers=images_layers, ops=operations)
def test_summaries_follow_every_write_on_postgresql(pg_engine, monkeypatch, share, layers, ops):
    monkeypatch.setattr(summaries, "WHOLE_REGISTRY_SHARE", share)
    run_operations(pg_engine, layers, ops)


def test_a_hand_written_change_is_caught_by_the_triggers(sqlite_engine):
    # A writer that knows nothing of the summaries (a statement typed into sqlite3) still marks its repository,
    # so the next writer's refresh puts the summaries right.
    generated = Generated(sqlite_engine, f"http://reg-{uuid.uuid4().hex[:8]}.example", [[0], [1], [2], [3], [4], [5],
                                                                                          [0], [1]])
    generated.write({"a": {"tags": {"1.0": 0, "1.1": 1}, "untagged": []}, "b": {"tags": {"x": 0}, "untagged": []}})
    with sqlite_engine.begin() as conn:
        conn.exec_driver_sql(f"DELETE FROM tags WHERE name = '1.1' AND repo_id IN (SELECT repos.id FROM repos "
                             f"JOIN registries ON registries.id = repos.registry_id WHERE url = '{generated.url}')")
        assert rows(conn, "SELECT repos.name FROM summary_dirty JOIN repos ON repos.id = summary_dirty.repo_id") \
            == [("a",)]
    generated.write({"a": {"tags": {"1.0": 0}, "untagged": [1]}, "b": {"tags": {"x": 0}, "untagged": []}})
    assert_summaries_equal_recomputation(sqlite_engine)


# --- real writers against a real registry -------------------------------------------------------------------------


def test_sync_removal_and_failed_sync_leave_summaries_equal_to_a_recomputation(fresh_registry, fresh_pusher,
                                                                               tmp_path):
    base = b"shared base layer"
    a = fresh_pusher.push_image("team/app", "1.0", layers=[base, b"app one"])
    b = fresh_pusher.push_image("team/app", "1.1", layers=[base, b"app two"])
    fresh_pusher.copy("team/app", a.digest, "team/mirror", "a")
    fresh_pusher.push_image("team/tool", "2.0", layers=[b"tool only", b"app two"])  # shares a layer with app 1.1
    db = tmp_path / "inventory.db"
    with Inventory(db) as inventory, closing(RegistryClient(fresh_registry.url)) as client:
        inventory.sync(client)
        with inventory.engine.connect() as conn:
            assert_views_match_on_the_fly(conn)
            # The mirror shares app 1.0 whole: app holds the base layer with it, so neither has it alone.
            stats = {repo: (total, unique) for repo, total, unique in rows(
                conn, "SELECT repo, total_bytes, unique_bytes FROM repo_stats")}
            assert stats["team/mirror"][1] == 0 and 0 < stats["team/tool"][1] < stats["team/tool"][0]
        assert_summaries_equal_recomputation(inventory.engine)

        result = inventory.remove(client, TagQuery(["team/app"], tags=["1.1"]))
        assert [outcome.row.digest for outcome in result.deleted] == [b.digest]
        with inventory.engine.connect() as conn:
            assert_views_match_on_the_fly(conn)
            # app 1.1 left: the layer it shared with tool is tool's alone now (a blob from two holders to one
            # changes the other repository's figure), and app holds nothing the mirror does not.
            stats = {repo: (total, unique) for repo, total, unique in rows(
                conn, "SELECT repo, total_bytes, unique_bytes FROM repo_stats")}
            assert stats["team/tool"][1] == stats["team/tool"][0]
            assert stats["team/app"][1] == 0
        assert_summaries_equal_recomputation(inventory.engine)
        before = rows_of(inventory)

    # A sync that fails half-way (after writing some repositories) rolls its summaries back with its rows.
    fresh_pusher.push_image("team/zzz", "1.0", layers=[b"never seen"])
    fresh_pusher.push_image("team/app", "1.2", layers=[base, b"app three"])
    proxy = FailingProxy(fresh_registry.url, "/v2/team/zzz/")
    try:
        with Inventory(db) as inventory, closing(RegistryClient(proxy.url)) as client:
            with pytest.raises(RegdbError):
                inventory.sync(client)
            assert proxy.failed
            assert rows_of(inventory) == before
            assert_summaries_equal_recomputation(inventory.engine)
    finally:
        proxy.stop()


class FailingProxy(FaultyProxy):
    """Answers 403 (no retry) to every request whose path contains ``part``; forwards the rest."""

    def __init__(self, upstream: str, part: str):
        super().__init__(upstream)
        self.part, self.failed = part, 0

    def _forward(self, request: Request) -> Response:
        if self.part in request.path:
            self.failed += 1
            return Response('{"errors":[{"code":"DENIED","message":"injected"}]}', status=403,
                            content_type="application/json")
        return super()._forward(request)


def rows_of(inventory: Inventory) -> dict[str, list[tuple]]:
    with inventory.engine.connect() as conn:
        return {view: sorted(rows(conn, f"SELECT * FROM {view}"), key=repr)
                for view in ("repo_stats", "digest_usage", "blob_usage")}


# --- images.artifact_type (issue 17) -----------------------------------------------------------------------------

ARTIFACT_CONFIG = "application/vnd.example.regdb-test.config.v1+json"
ARTIFACT_TYPE = "application/vnd.example.regdb-test.sbom.v1"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"


def test_images_artifact_type_is_the_manifest_s_or_its_config_s_for_real_artifacts(pusher, registry, repo_name,
                                                                                  tmp_path, monkeypatch):
    """oras pushes an artifact whose config media type names it (OCI 1.1: the artifact's type when the manifest
    has no artifactType); a second one, with the empty config, names it in artifactType; a plain image has none."""
    oras_client = pytest.importorskip("oras.client")
    import oras.oci

    host = registry.url.split("//", 1)[1]
    monkeypatch.chdir(tmp_path)  # oras reads the files it pushes relative to the working directory
    Path("payload.txt").write_text("an artifact, not an image\n")
    Path("config.json").write_text('{"kind": "test artifact"}')
    client = oras_client.OrasClient(hostname=host, insecure=True)
    client.push(target=f"{host}/{repo_name}/artifact:config", files=["payload.txt:text/plain"],
                manifest_config=f"config.json:{ARTIFACT_CONFIG}", disable_path_validation=True, quiet=True)

    # artifactType with the empty config (what `oras push --artifact-type` writes), uploaded through oras too.
    container = client.get_container(f"{host}/{repo_name}/artifact:typed")
    layer = oras.oci.NewLayer("payload.txt", media_type="text/plain")
    client.upload_blob("payload.txt", container, layer)
    Path("empty.json").write_bytes(b"{}")
    empty = {"mediaType": EMPTY_CONFIG, "size": 2, "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest()}
    client.upload_blob("empty.json", container, dict(empty))
    manifest = {**oras.oci.NewManifest(), "artifactType": ARTIFACT_TYPE, "config": empty, "layers": [layer]}
    client.upload_manifest(manifest, container)
    image = pusher.push_image(f"{repo_name}/artifact", "image", layers=[b"a plain image"])

    with Inventory(tmp_path / "inventory.db") as inventory, closing(RegistryClient(registry.url)) as registry_client:
        inventory.sync(registry_client, repos=[f"{repo_name}/artifact"])
        with inventory.engine.connect() as conn:
            found = dict(rows(conn, "SELECT tag, artifact_type FROM images WHERE repo = :repo",
                              {"repo": f"{repo_name}/artifact"}))
            columns = list(conn.execute(text("SELECT * FROM images LIMIT 0")).keys())
    assert found == {"config": ARTIFACT_CONFIG, "typed": ARTIFACT_TYPE, "image": None}
    assert columns[-1] == "artifact_type" and image.digest


# --- reclaimable counts what an untag leaves (issue 17) -----------------------------------------------------------


def test_reclaimable_counts_an_untag_s_placeholder_and_garbage_collection_frees_exactly_that(fresh_registry,
                                                                                             fresh_pusher, tmp_path):
    """distribution 2.8 has no DELETE by tag: untag pushes a placeholder manifest under the tag and deletes it.
    Its manifest blob and the empty blob `{}` it names stay in storage until a garbage collection; reclaimable
    lists both, and a real garbage-collect frees exactly their bytes (nothing else was deleted)."""
    from click.testing import CliRunner

    from regdb.cli.app import main
    from regdb.inventory.views import EMPTY_DIGEST
    from tests.rig.state import deletions

    image = fresh_pusher.push_image("app", "1.0", layers=[b"kept layer"])
    fresh_pusher.tag("app", "stable", image.digest)
    db = tmp_path / "inventory.db"
    result = CliRunner().invoke(main, ["-reg", fresh_registry.url, "--db", str(db), "untag", "--yes", "-r", "app",
                                       "-t", "stable", "--method", "placeholder"])
    assert result.exit_code == 0, result.output
    [record] = deletions(db)
    assert record["outcome"] == "untagged" and record["placeholder_digest"].startswith("sha256:")
    with Inventory(db, readonly=True) as inventory, inventory.engine.connect() as conn:
        freed = rows(conn, "SELECT blob_digest, kind, size FROM reclaimable ORDER BY kind")
    assert freed == [(EMPTY_DIGEST, "config", 2),
                     (record["placeholder_digest"], "manifest", record["placeholder_size"])]
    assert record["placeholder_size"] > 100

    fresh_registry.stop()
    before = fresh_registry.blob_store_bytes()
    fresh_registry.garbage_collect()
    assert before - fresh_registry.blob_store_bytes() == sum(size for _, _, size in freed)


def test_reclaimable_on_postgresql_leaves_out_the_empty_blob_while_an_artifact_uses_it(fresh_registry, fresh_pusher,
                                                                                      pg_url):
    """The same untag on a PostgreSQL inventory, with an OCI artifact elsewhere in the registry whose config is
    the empty blob: only the placeholder manifest is reclaimable, and the garbage collection frees just that."""
    from click.testing import CliRunner
    from sqlalchemy import create_engine

    from regdb.cli.app import main
    from tests.rig.media import OCI_MANIFEST, canonical_json

    image = fresh_pusher.push_image("app", "1.0", layers=[b"kept layer"])
    fresh_pusher.tag("app", "stable", image.digest)
    empty = {"mediaType": EMPTY_CONFIG, "size": 2, "digest": fresh_pusher.push_blob("sbom", b"{}")}
    layer = b"an sbom"
    fresh_pusher.put_manifest("sbom", "v1", canonical_json({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": ARTIFACT_TYPE, "config": empty,
        "layers": [{"mediaType": "text/plain", "size": len(layer), "digest": fresh_pusher.push_blob("sbom", layer)}],
    }), OCI_MANIFEST)
    assert CliRunner().invoke(main, ["-reg", fresh_registry.url, "--db", pg_url, "sync"]).exit_code == 0
    result = CliRunner().invoke(main, ["-reg", fresh_registry.url, "--db", pg_url, "untag", "--yes", "-r", "app",
                                       "-t", "stable", "--method", "placeholder"])
    assert result.exit_code == 0, result.output
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            [(placeholder, size)] = rows(conn, "SELECT placeholder_digest, placeholder_size FROM deletions")
            freed = rows(conn, "SELECT blob_digest, kind, size FROM reclaimable")
    finally:
        engine.dispose()
    assert freed == [(placeholder, "manifest", size)]

    fresh_registry.stop()
    before = fresh_registry.blob_store_bytes()
    fresh_registry.garbage_collect()
    assert before - fresh_registry.blob_store_bytes() == size


def test_the_live_listener_stores_artifact_type_as_the_sync_does(registry_binary, tmp_path):
    from tests.rig.live import start_live, wait_for
    from tests.rig.media import OCI_MANIFEST, canonical_json
    from tests.rig.pusher import Pusher

    live = start_live(tmp_path / "live")
    try:
        pusher = Pusher(live.registry.url)
        empty = {"mediaType": EMPTY_CONFIG, "size": 2, "digest": pusher.push_blob("app", b"{}")}
        layer = b"an sbom"
        manifest = canonical_json({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": ARTIFACT_TYPE, "config": empty,
            "layers": [{"mediaType": "text/plain", "size": len(layer), "digest": pusher.push_blob("app", layer)}],
        })
        digest = pusher.put_manifest("app", "sbom", manifest, OCI_MANIFEST)
        wait_for(lambda: live.query("SELECT digest, artifact_type FROM images WHERE repo = 'app' AND tag = 'sbom'")
                 == [(digest, ARTIFACT_TYPE)], "the pushed artifact in the inventory with its type")
    finally:
        live.stop()
