"""Pin the registry behaviour regdb relies on (docs/registry-behaviour.md) against a real distribution 2.8 process.

If one of these fails after a registry upgrade, the fact changed: fix docs/registry-behaviour.md and the code that
relies on it, not just the test.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import requests

from tests.rig.layout import make_oci_layout, skopeo_copy
from tests.rig.media import ACCEPT_ALL, DOCKER_MANIFEST, OCI_MANIFEST, sha256_digest
from tests.rig.pusher import Pusher, error_codes
from tests.rig.registry import have_binary, start_registry


def manifest_url(reg, repo, ref):
    return f"{reg.url}/v2/{repo}/manifests/{ref}"


# --- listing -----------------------------------------------------------------------------------------------


def test_catalog_pages_at_100_with_a_relative_link(fresh_registry, fresh_pusher):
    # 101 repositories of one image (same `unique`): the blobs are uploaded once and mounted after.
    names = [f"r{i:03d}" for i in range(101)]
    for name in names:
        fresh_pusher.push_image(name, "v1", unique="catalog")

    first = requests.get(f"{fresh_registry.url}/v2/_catalog")
    assert first.status_code == 200
    assert first.json()["repositories"] == names[:100]
    # Relative, and n=100 spelled out: a client must join it to the base URL, not expect an absolute URL.
    assert first.headers["Link"] == '</v2/_catalog?last=r099&n=100>; rel="next"'

    second = requests.get(fresh_registry.url + first.links["next"]["url"])
    assert second.status_code == 200
    assert second.json()["repositories"] == ["r100"]
    assert "Link" not in second.headers

    assert fresh_pusher.catalog() == names


def test_catalog_link_escapes_the_last_repository_name(registry, pusher, repo_name):
    # `last` is URL-encoded (a/b -> a%2Fb): follow the Link as given rather than rebuilding it from names.
    pusher.push_image(f"{repo_name}/a", "v1", unique="escape")
    pusher.push_image(f"{repo_name}/b", "v1", unique="escape")
    # The shared registry holds other tests' repositories; `last` starts the page just before ours.
    r = requests.get(f"{registry.url}/v2/_catalog", params={"n": 1, "last": repo_name})
    assert r.status_code == 200
    assert r.json()["repositories"] == [f"{repo_name}/a"]
    assert r.headers["Link"] == f'</v2/_catalog?last={repo_name}%2Fa&n=1>; rel="next"'


def test_catalog_has_no_link_when_the_page_is_exactly_full(fresh_registry, fresh_pusher):
    # No empty last page: with exactly n repositories left, 2.8 already omits the Link.
    fresh_pusher.push_image("only", "v1")
    r = requests.get(f"{fresh_registry.url}/v2/_catalog", params={"n": 1})
    assert r.json()["repositories"] == ["only"]
    assert "Link" not in r.headers


def test_catalog_n_above_1000_is_refused(registry):
    assert requests.get(f"{registry.url}/v2/_catalog", params={"n": 1000}).status_code == 200
    r = requests.get(f"{registry.url}/v2/_catalog", params={"n": 1001})
    assert r.status_code == 400
    assert error_codes(r) == ["PAGINATION_NUMBER_INVALID"]


def test_repository_with_all_tags_deleted_stays_in_catalog_with_null_tags(registry, pusher, repo_name):
    image = pusher.push_image(repo_name, "v1")
    assert pusher.delete(repo_name, image.digest) == 202

    r = requests.get(f"{registry.url}/v2/{repo_name}/tags/list")
    assert r.status_code == 200
    assert r.json() == {"name": repo_name, "tags": None}  # null, not []
    assert repo_name in pusher.catalog()


def test_unknown_repository_tags_list_is_404_name_unknown(registry, repo_name):
    r = requests.get(f"{registry.url}/v2/{repo_name}/tags/list")
    assert r.status_code == 404
    assert error_codes(r) == ["NAME_UNKNOWN"]


# --- resolving a tag ---------------------------------------------------------------------------------------


def test_schema2_only_accept_turns_a_manifest_list_into_its_amd64_child(registry, pusher, repo_name):
    index = pusher.push_index(repo_name, "multi")
    amd64 = index.children[("amd64", "linux", None)]

    r = requests.head(manifest_url(registry, repo_name, "multi"), headers={"Accept": DOCKER_MANIFEST})
    assert r.status_code == 200
    # The child's digest, not the list's: a client that deletes this digest deletes one platform only.
    assert r.headers["Docker-Content-Digest"] == amd64.digest != index.digest
    assert r.headers["Content-Type"] == DOCKER_MANIFEST

    assert pusher.head_digest(repo_name, "multi") == index.digest


@pytest.mark.parametrize("oci_index", [False, True], ids=["oci-manifest", "oci-index"])
def test_schema2_only_accept_on_oci_is_404(registry, pusher, repo_name, oci_index):
    if oci_index:
        pusher.push_index(repo_name, "v1", oci=True)
    else:
        pusher.push_image(repo_name, "v1", oci=True)
    r = requests.get(manifest_url(registry, repo_name, "v1"), headers={"Accept": DOCKER_MANIFEST})
    assert r.status_code == 404
    # MANIFEST_UNKNOWN although it exists: the message is the only hint that the Accept header is at fault.
    assert error_codes(r) == ["MANIFEST_UNKNOWN"]
    assert "accept header does not support OCI" in r.json()["errors"][0]["message"]


def test_no_accept_header_gets_a_schema1_rewrite_with_another_digest(registry, pusher, repo_name):
    # requests sends "Accept: */*" by default; 2.8 answers with a schema-1 conversion whose digest exists
    # nowhere in the registry (deleting it -> 404). Every manifest read must send ACCEPT_ALL.
    image = pusher.push_image(repo_name, "v1")
    r = requests.get(manifest_url(registry, repo_name, "v1"))
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/vnd.docker.distribution.manifest.v1+prettyjws"
    assert r.headers["Docker-Content-Digest"] != image.digest
    # ...while an OCI image without Accept is simply 404.
    pusher.push_image(repo_name, "oci", oci=True)
    assert requests.get(manifest_url(registry, repo_name, "oci")).status_code == 404


@pytest.mark.parametrize("kind", ["docker-manifest", "docker-list", "oci-manifest", "oci-index"])
def test_head_with_all_four_types_matches_get_body(registry, pusher, repo_name, kind):
    if kind.endswith("manifest"):
        pushed = pusher.push_image(repo_name, "v1", oci=kind.startswith("oci"))
    else:
        pushed = pusher.push_index(repo_name, "v1", oci=kind.startswith("oci"))

    head = requests.head(manifest_url(registry, repo_name, "v1"), headers={"Accept": ACCEPT_ALL})
    get = requests.get(manifest_url(registry, repo_name, "v1"), headers={"Accept": ACCEPT_ALL})
    assert head.status_code == get.status_code == 200
    assert get.content == pushed.manifest  # byte for byte what was pushed
    assert head.headers["Docker-Content-Digest"] == "sha256:" + hashlib.sha256(get.content).hexdigest()
    assert head.headers["Docker-Content-Digest"] == pushed.digest
    assert head.headers["Content-Type"] == pushed.media_type
    assert int(head.headers["Content-Length"]) == len(get.content)
    assert head.headers["Etag"] == f'"{pushed.digest}"'


# --- deleting ----------------------------------------------------------------------------------------------


def test_delete_by_digest_takes_every_tag_of_that_repository_only(registry, pusher, repo_name):
    app, other = f"{repo_name}/app", f"{repo_name}/other"
    image = pusher.push_image(app, "v1")
    pusher.tag(app, "latest", image.digest)
    keep = pusher.push_image(app, "v2")
    pusher.copy(app, image.digest, other, "v1")
    assert pusher.tags(app) == ["latest", "v1", "v2"]

    assert pusher.delete(app, image.digest) == 202

    assert pusher.tags(app) == ["v2"]
    assert pusher.head_digest(app, image.digest) is None
    assert pusher.head_digest(app, "v2") == keep.digest
    # Same digest, other repository: untouched. Deletion is per (repository, digest).
    assert pusher.head_digest(other, "v1") == image.digest
    assert pusher.tags(other) == ["v1"]


def test_delete_by_tag_is_400_digest_invalid(registry, pusher, repo_name):
    image = pusher.push_image(repo_name, "v1")
    r = requests.delete(manifest_url(registry, repo_name, "v1"))
    assert r.status_code == 400
    # 2.8's message is misleading ("provided digest did not match uploaded content"): the code is what to match.
    assert error_codes(r) == ["DIGEST_INVALID"]
    assert pusher.head_digest(repo_name, "v1") == image.digest


def test_delete_disabled_is_405_unsupported(registry_binary, tmp_path):
    reg = start_registry(tmp_path / "nodelete", delete_enabled=False)
    try:
        pusher = Pusher(reg.url)
        image = pusher.push_image("app", "v1")
        r = requests.delete(manifest_url(reg, "app", image.digest))
        assert r.status_code == 405
        assert error_codes(r) == ["UNSUPPORTED"]
        assert pusher.head_digest("app", "v1") == image.digest
    finally:
        reg.stop()


def test_delete_of_a_deleted_or_unknown_digest_is_404_manifest_unknown(registry, pusher, repo_name):
    image = pusher.push_image(repo_name, "v1")
    assert pusher.delete(repo_name, image.digest) == 202
    again = requests.delete(manifest_url(registry, repo_name, image.digest))
    assert again.status_code == 404
    assert error_codes(again) == ["MANIFEST_UNKNOWN"]
    never = requests.delete(manifest_url(registry, repo_name, sha256_digest(b"never pushed")))
    assert never.status_code == 404
    assert error_codes(never) == ["MANIFEST_UNKNOWN"]


@pytest.mark.parametrize("oci", [False, True], ids=["docker-list", "oci-index"])
def test_deleting_an_index_leaves_its_children(registry, pusher, repo_name, oci):
    index = pusher.push_index(repo_name, "multi", oci=oci)
    assert pusher.delete(repo_name, index.digest) == 202

    assert pusher.head_digest(repo_name, "multi") is None
    assert pusher.tags(repo_name) == []
    for child in index.children.values():
        assert pusher.head_digest(repo_name, child.digest) == child.digest


def test_garbage_collect_frees_blobs_of_deleted_manifests(fresh_registry, fresh_pusher):
    big = b"x" * 300_000  # one large layer, so the drop is unmistakably this image's blobs
    doomed = fresh_pusher.push_image("app", "old", layers=[big])
    kept = fresh_pusher.push_image("app", "new")
    assert fresh_pusher.delete("app", doomed.digest) == 202

    # Deleting a manifest frees nothing: blobs are registry-wide and only garbage-collect removes them.
    fresh_registry.stop()
    before = fresh_registry.blob_store_bytes()
    assert before > len(big)
    dry = fresh_registry.garbage_collect(dry_run=True)
    assert doomed.layers[0][0] in dry
    assert fresh_registry.blob_store_bytes() == before

    fresh_registry.garbage_collect()
    after = fresh_registry.blob_store_bytes()
    # The layer, the config and the manifest blob of the deleted image are gone...
    assert before - after == len(big) + doomed.config_size + doomed.size

    # ...and the kept image still reads after a restart on the same port.
    fresh_registry.start()
    assert fresh_pusher.head_digest("app", "new") == kept.digest
    assert fresh_pusher.get_blob("app", kept.layers[0][0])


# --- referrers and signatures ------------------------------------------------------------------------------


def test_no_referrers_api_in_2_8(registry, pusher, repo_name):
    image = pusher.push_image(repo_name, "v1", oci=True)
    r = requests.get(f"{registry.url}/v2/{repo_name}/referrers/{image.digest}")
    # Plain-text router 404, not a JSON registry error: a client must not parse it as one.
    assert r.status_code == 404
    assert error_codes(r) == []


def test_cosign_tags_and_subject_are_stored_as_pushed(registry, pusher, repo_name):
    image = pusher.push_image(repo_name, "v1", oci=True)
    sig = pusher.push_cosign_signature(repo_name, image.digest)
    att = pusher.push_cosign_signature(repo_name, image.digest, kind="att")
    hexpart = image.digest.split(":", 1)[1]
    assert pusher.tags(repo_name) == sorted(["v1", f"sha256-{hexpart}.sig", f"sha256-{hexpart}.att"])
    assert pusher.head_digest(repo_name, f"sha256-{hexpart}.sig") == sig
    assert pusher.head_digest(repo_name, f"sha256-{hexpart}.att") == att

    # An OCI 1.1 `subject` is kept byte for byte by 2.8 (it just does not index it).
    subject = {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": image.size}
    sbom = pusher.push_image(repo_name, None, oci=True, subject=subject)
    body, _ = pusher.get_manifest(repo_name, sbom.digest)
    assert json.loads(body)["subject"] == subject


# --- the rig itself ----------------------------------------------------------------------------------------


def test_unique_key_reproduces_a_digest_and_default_does_not(registry, pusher, repo_name):
    a = pusher.push_image(f"{repo_name}/a", unique="same")
    b = pusher.push_image(f"{repo_name}/b", unique="same")
    c = pusher.push_image(f"{repo_name}/a")
    assert a.digest == b.digest != c.digest
    config = json.loads(pusher.get_blob(f"{repo_name}/a", a.config_digest))
    assert (config["architecture"], config["os"]) == ("amd64", "linux")


def test_skopeo_copies_an_oci_layout_keeping_its_digest(registry, pusher, repo_name, tmp_path):
    if not have_binary("skopeo"):
        pytest.fail("skopeo not found on PATH: `apt-get install skopeo` (.ci/run does)", pytrace=False)
    layout = make_oci_layout(tmp_path / "layout", "latest", labels={"org.example": "yes"})
    index = json.loads((layout / "index.json").read_text())
    written = index["manifests"][0]["digest"]

    digest = skopeo_copy(layout, "latest", registry.host, repo_name, "v1")

    assert digest == written
    assert pusher.head_digest(repo_name, "v1") == written
    r = requests.head(manifest_url(registry, repo_name, "v1"), headers={"Accept": ACCEPT_ALL})
    assert r.headers["Content-Type"] == OCI_MANIFEST
