"""A real registry for tests, benchmarks and demos: run Debian's ``docker-registry`` (CNCF distribution 2.8)
on loopback and push images into it over the plain registry HTTP API.

Importable without pytest (the benchmark and demo scripts use it too). Nothing here talks to Docker: images
are built in Python (config blob + layers + manifest) and pushed with ``requests``, so a test can shape exactly
the manifest it needs (OCI or Docker schema 2, index children, a ``subject``, a shared digest in two
repositories) and knows every digest without asking the registry.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import requests

# --- media types -------------------------------------------------------------------------------------------

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX)
# One Accept header naming all four: with fewer, distribution 2.8 rewrites a manifest list to its amd64
# child and answers 404 for OCI manifests (see docs/registry-behaviour.md), so every read in the rig sends this.
ACCEPT_ALL = ", ".join(MANIFEST_TYPES)

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

COSIGN_SIGNATURE_LAYER = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_ATTESTATION_LAYER = "application/vnd.dsse.envelope.v1+json"
COSIGN_SBOM_LAYER = "text/spdx+json"

# A fixed default so that pushes with the same `unique` key give the same digest on every run.
DEFAULT_CREATED = "2024-01-01T00:00:00Z"

REGISTRY_BINARY = os.environ.get("REGDB_TEST_REGISTRY", "docker-registry")


class RigError(RuntimeError):
    """The test registry or a push did not behave; the message carries the HTTP answer or the log tail."""


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj) -> bytes:
    # Compact, sorted: the bytes (and so the digest) depend only on the content, never on dict order.
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


# --- the registry process ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def deep_merge(base: dict, extra: dict) -> dict:
    """Merge ``extra`` into ``base`` in place; a ``None`` value in ``extra`` removes that key."""
    for key, value in extra.items():
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = value
    return base


class RegistryProcess:
    """One ``docker-registry serve`` on 127.0.0.1, its config and storage under ``root``."""

    def __init__(self, root: Path, config: dict, port: int, env: dict | None = None):
        self.root = Path(root)
        self.port = port
        self.config = config
        self.config_path = self.root / "config.yml"
        self.storage_path = Path(config["storage"]["filesystem"]["rootdirectory"])
        self.log_path = self.root / "registry.log"
        self.host = f"127.0.0.1:{port}"
        scheme = "https" if "tls" in config.get("http", {}) else "http"
        self.url = f"{scheme}://{self.host}"
        self._env = env or {}
        self._proc: subprocess.Popen | None = None
        self._log = None
        self.write_config()

    def write_config(self) -> None:
        # JSON is valid YAML, and the registry's YAML parser reads it: no pyyaml needed.
        self.config_path.write_text(json.dumps(self.config, indent=2))

    def _environment(self) -> dict:
        # REGISTRY_* variables override the config file in distribution; a stray one in the caller's
        # environment must not change what the test set up. Callers pass their own through `env`.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        env.update(self._env)
        return env

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def start(self, timeout: float = 15.0) -> None:
        """Start (or restart after stop/kill) on the same port; return once ``GET /v2/`` answers."""
        if self.alive():
            return
        self.write_config()
        # A file, not a pipe: nobody reads a pipe during a test, and a full pipe blocks the registry.
        self._log = open(self.log_path, "ab")
        self._proc = subprocess.Popen(
            [REGISTRY_BINARY, "serve", str(self.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self._environment(),
            start_new_session=True,  # a Ctrl-C in the terminal goes to pytest, which then stops us in order
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._close_log()
                raise RigError(f"docker-registry exited with {code} during start:\n{self.log_tail()}")
            try:
                # Any HTTP answer means it listens: 200 open, 401 with auth configured.
                requests.get(self.url + "/v2/", timeout=1, verify=False)
                return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RigError(f"docker-registry did not answer on {self.url} in {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout)
        self._close_log()

    def reset(self) -> None:
        """Empty storage, same port and config: a fresh registry in about 0.1 s (stop, wipe, start), for tests
        that run many small examples against one process."""
        self.stop()
        shutil.rmtree(self.storage_path, ignore_errors=True)
        self.start()

    def kill(self) -> None:
        """SIGKILL, no chance to clean up: for tests of a registry that vanishes mid-operation."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def garbage_collect(self, *, delete_untagged: bool = False, dry_run: bool = False) -> str:
        """Run ``docker-registry garbage-collect`` on the storage; returns its output.

        The registry must be stopped: GC against a live, writable registry can delete blobs of an upload in
        flight (distribution's own docs say run it stopped or read-only).
        """
        if self.alive():
            raise RigError("garbage_collect needs the registry stopped (call stop() first)")
        cmd = [REGISTRY_BINARY, "garbage-collect"]
        if dry_run:
            cmd.append("--dry-run")
        if delete_untagged:
            cmd.append("--delete-untagged")
        cmd.append(str(self.config_path))
        result = subprocess.run(cmd, capture_output=True, text=True, env=self._environment(), timeout=120)
        output = result.stdout + result.stderr
        if result.returncode != 0:
            raise RigError(f"{' '.join(cmd)} exited with {result.returncode}:\n{output}")
        return output

    def blob_store_bytes(self) -> int:
        """Bytes held in the registry-wide blob store (what garbage-collect frees)."""
        blobs = self.storage_path / "docker" / "registry" / "v2" / "blobs"
        total = 0
        for dirpath, _dirs, files in os.walk(blobs):
            for name in files:
                total += os.path.getsize(os.path.join(dirpath, name))
        return total

    def __repr__(self) -> str:
        return f"<RegistryProcess {self.url} root={self.root} alive={self.alive()}>"


def registry_config(root: Path, port: int, *, delete_enabled: bool = True, extra: dict | None = None) -> dict:
    config = {
        "version": "0.1",
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(Path(root) / "storage")},
            "delete": {"enabled": delete_enabled},
            # Upload purging runs in the background and would remove half-finished uploads that a fault
            # test left behind on purpose; no test wants it.
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        # A fixed secret silences the "No HTTP secret provided" warning on every start.
        "http": {"addr": f"127.0.0.1:{port}", "secret": "regdb-test-rig"},
    }
    if extra:
        deep_merge(config, json.loads(json.dumps(extra)))  # copy: the caller's dict stays untouched
    return config


def notifications_config(url: str, *, token: str | None = None, name: str = "regdb",
                         timeout: str = "2s", threshold: int = 1, backoff: str = "200ms") -> dict:
    """``extra`` for ``start_registry`` that makes the registry send its notifications to ``url``.

    ``threshold``/``backoff``: after ``threshold`` failed tries the registry waits ``backoff`` between tries
    (distribution 2.8 re-sends the same event forever); small values keep redelivery tests quick."""
    endpoint: dict = {"name": name, "url": url, "timeout": timeout, "threshold": threshold, "backoff": backoff}
    if token is not None:
        endpoint["headers"] = {"Authorization": [f"Bearer {token}"]}
    return {"notifications": {"endpoints": [endpoint]}}


def start_registry(
    root: Path,
    *,
    delete_enabled: bool = True,
    extra: dict | None = None,
    port: int | None = None,
    env: dict | None = None,
) -> RegistryProcess:
    """Write a config under ``root`` and start a registry; ``extra`` is deep-merged into the config
    (``{"auth": {"htpasswd": ...}}``, ``{"http": {"tls": ...}}``; a ``None`` value deletes a key)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    attempts = 1 if port is not None else 3
    for attempt in range(attempts):
        chosen = port if port is not None else free_port()
        reg = RegistryProcess(root, registry_config(root, chosen, delete_enabled=delete_enabled, extra=extra),
                              chosen, env=env)
        try:
            reg.start()
            return reg
        except RigError as e:
            # free_port() closes its socket before the registry binds: another process can take the port
            # in between. Pick another one rather than fail the session.
            if "address already in use" in str(e) and attempt + 1 < attempts:
                continue
            raise
    raise AssertionError("unreachable")


# --- pushing -----------------------------------------------------------------------------------------------


@dataclass
class Pushed:
    digest: str
    size: int  # manifest bytes length
    media_type: str
    config_digest: str
    config_size: int
    layers: list[tuple[str, int]]
    manifest: bytes
    config: bytes = b""


@dataclass
class PushedIndex:
    digest: str
    media_type: str
    size: int
    children: dict[tuple[str, str, str | None], Pushed] = field(default_factory=dict)
    manifest: bytes = b""


def error_codes(response: requests.Response) -> list[str]:
    """The ``errors[].code`` list of a registry error body (empty when the body is not one)."""
    try:
        return [e.get("code") for e in response.json().get("errors", [])]
    except (ValueError, AttributeError):
        return []


_nonce = itertools.count()


class Pusher:
    """Push and inspect images over the registry HTTP API. Pass a ``session`` to add auth or TLS settings."""

    def __init__(self, base_url: str, session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        # digest -> a repository known to hold it, so the next push can mount instead of upload.
        self._blob_home: dict[str, str] = {}

    # -- plumbing

    def _url(self, path: str) -> str:
        return self.base_url + path

    @staticmethod
    def _expect(response: requests.Response, *statuses: int) -> requests.Response:
        if response.status_code not in statuses:
            raise RigError(
                f"{response.request.method} {response.url} -> {response.status_code} "
                f"(expected {statuses}): {response.text[:500]}"
            )
        return response

    # -- blobs

    def blob_exists(self, repo: str, digest: str) -> bool:
        r = self.session.head(self._url(f"/v2/{repo}/blobs/{digest}"))
        return r.status_code == 200

    def push_blob(self, repo: str, data: bytes) -> str:
        digest = sha256_digest(data)
        if self.blob_exists(repo, digest):
            return digest
        location = None
        home = self._blob_home.get(digest)
        if home and home != repo:
            # Cross-repository mount: 201 when the registry linked the blob, 202 (an ordinary upload
            # session) when it could not; then we upload as usual.
            r = self.session.post(self._url(f"/v2/{repo}/blobs/uploads/"), params={"mount": digest, "from": home})
            self._expect(r, 201, 202)
            if r.status_code == 201:
                return digest
            location = r.headers["Location"]
        if location is None:
            r = self._expect(self.session.post(self._url(f"/v2/{repo}/blobs/uploads/")), 202)
            location = r.headers["Location"]
        # Monolithic upload: PUT the whole blob to the session URL with ?digest=. requests merges the
        # parameter into the query the Location already carries (_state=...).
        r = self.session.put(
            urljoin(self.base_url + "/", location),
            params={"digest": digest},
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        self._expect(r, 201)
        self._blob_home.setdefault(digest, repo)
        return digest

    def get_blob(self, repo: str, digest: str) -> bytes:
        return self._expect(self.session.get(self._url(f"/v2/{repo}/blobs/{digest}")), 200).content

    # -- manifests

    def put_manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> str:
        r = self.session.put(
            self._url(f"/v2/{repo}/manifests/{reference}"), data=body, headers={"Content-Type": media_type}
        )
        self._expect(r, 201)
        digest = sha256_digest(body)
        answered = r.headers.get("Docker-Content-Digest")
        if answered and answered != digest:
            raise RigError(f"registry stored {answered} for a manifest whose bytes hash to {digest}")
        return digest

    def get_manifest(self, repo: str, reference: str, accept: str = ACCEPT_ALL) -> tuple[bytes, str]:
        """(body, Content-Type) of a manifest."""
        r = self._expect(self.session.get(self._url(f"/v2/{repo}/manifests/{reference}"),
                                          headers={"Accept": accept}), 200)
        return r.content, r.headers.get("Content-Type", "")

    def push_image(
        self,
        repo: str,
        tag: str | None = None,
        *,
        oci: bool = False,
        layers: list[bytes] | None = None,
        architecture: str = "amd64",
        os: str = "linux",
        variant: str | None = None,
        created: str | None = None,
        labels: dict | None = None,
        subject: dict | None = None,
        unique: str | None = None,
    ) -> Pushed:
        """Push one image; tagged with ``tag``, or by digest only when ``tag`` is None.

        Every call makes a new digest (a nonce in the config) unless ``unique`` is given: the same ``unique``
        with the same arguments gives the same digest, for cases that need one digest in two places.
        ``created=None`` uses a fixed date; ``created=""`` leaves the field out (it is optional).
        ``layers`` are raw blob bytes (the registry does not look inside); by default one small layer.
        """
        key = unique if unique is not None else f"{uuid.uuid4().hex}-{next(_nonce)}"
        if layers is None:
            layers = [f"layer of {key}".encode()]
        config_obj: dict = {
            "architecture": architecture,
            "os": os,
            "config": {"Labels": labels or {}},
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer) for layer in layers]},
            # The key lands in the config, so the config digest and the manifest digest follow it.
            "history": [{"created_by": f"regdb test rig {key}"}],
        }
        if variant:
            config_obj["variant"] = variant
        created = DEFAULT_CREATED if created is None else created
        if created:
            config_obj["created"] = created
        config = canonical_json(config_obj)
        config_digest = self.push_blob(repo, config)
        layer_descs = [(self.push_blob(repo, layer), len(layer)) for layer in layers]

        media_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
        manifest_obj: dict = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": OCI_CONFIG if oci else DOCKER_CONFIG, "size": len(config),
                       "digest": config_digest},
            "layers": [{"mediaType": OCI_LAYER if oci else DOCKER_LAYER, "size": s, "digest": d}
                       for d, s in layer_descs],
        }
        if subject is not None:
            manifest_obj["subject"] = subject
        body = canonical_json(manifest_obj)
        digest = sha256_digest(body)
        self.put_manifest(repo, tag or digest, body, media_type)
        return Pushed(digest, len(body), media_type, config_digest, len(config), layer_descs, body, config)

    def push_index(
        self,
        repo: str,
        tag: str | None,
        *,
        oci: bool = False,
        platforms=(("amd64", "linux", None), ("arm64", "linux", "v8")),
        created: str | None = None,
        labels: dict | None = None,
        unique: str | None = None,
    ) -> PushedIndex:
        """Push one untagged child image per (architecture, os, variant), then the manifest list / OCI index."""
        children: dict[tuple[str, str, str | None], Pushed] = {}
        entries = []
        for arch, os_, variant in platforms:
            child = self.push_image(
                repo, None, oci=oci, architecture=arch, os=os_, variant=variant, created=created, labels=labels,
                unique=None if unique is None else f"{unique}/{arch}/{os_}/{variant}",
            )
            children[(arch, os_, variant)] = child
            platform = {"architecture": arch, "os": os_}
            if variant:
                platform["variant"] = variant
            entries.append({"mediaType": child.media_type, "size": child.size, "digest": child.digest,
                            "platform": platform})
        media_type = OCI_INDEX if oci else DOCKER_MANIFEST_LIST
        body = canonical_json({"schemaVersion": 2, "mediaType": media_type, "manifests": entries})
        digest = sha256_digest(body)
        self.put_manifest(repo, tag or digest, body, media_type)
        return PushedIndex(digest, media_type, len(body), children, body)

    def tag(self, repo: str, tag: str, digest: str, *, source_repo: str | None = None) -> None:
        """Point ``tag`` at ``digest``: PUT the exact manifest bytes under the tag (a registry has no other
        way to tag). With ``source_repo``, the manifest and its blobs are copied from there first."""
        if source_repo is not None and source_repo != repo:
            self.copy(source_repo, digest, repo, tag)
            return
        body, content_type = self.get_manifest(repo, digest)
        self.put_manifest(repo, tag, body, content_type)

    def copy(self, src_repo: str, digest: str, dst_repo: str, tag: str | None = None) -> None:
        """Blobs and manifest (children first, for an index) into ``dst_repo``: one digest, two repositories."""
        body, content_type = self.get_manifest(src_repo, digest)
        obj = json.loads(body)
        for child in obj.get("manifests", []):
            self.copy(src_repo, child["digest"], dst_repo)
        blobs = [obj["config"], *obj.get("layers", [])] if "config" in obj else []
        for desc in blobs:
            if not self.blob_exists(dst_repo, desc["digest"]) and not self._mount(dst_repo, desc["digest"], src_repo):
                self.push_blob(dst_repo, self.get_blob(src_repo, desc["digest"]))
        self.put_manifest(dst_repo, tag or digest, body, content_type)

    def _mount(self, repo: str, digest: str, from_repo: str) -> bool:
        r = self.session.post(self._url(f"/v2/{repo}/blobs/uploads/"), params={"mount": digest, "from": from_repo})
        self._expect(r, 201, 202)
        if r.status_code == 202:
            # Mount refused: drop the upload session it opened instead (best effort).
            self.session.delete(urljoin(self.base_url + "/", r.headers["Location"]))
        return r.status_code == 201

    def push_cosign_signature(self, repo: str, subject_digest: str, kind: str = "sig") -> str:
        """An OCI manifest shaped like cosign's, tagged ``sha256-<hex>.<kind>`` (sig, att or sbom)."""
        layer_type = {"sig": COSIGN_SIGNATURE_LAYER, "att": COSIGN_ATTESTATION_LAYER, "sbom": COSIGN_SBOM_LAYER}[kind]
        payload = canonical_json({
            "critical": {
                "identity": {"docker-reference": repo},
                "image": {"docker-manifest-digest": subject_digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        })
        config = canonical_json({"architecture": "", "os": "", "config": {},
                                 "rootfs": {"type": "layers", "diff_ids": [sha256_digest(payload)]}})
        config_digest = self.push_blob(repo, config)
        layer_digest = self.push_blob(repo, payload)
        annotations = {"dev.cosignproject.cosign/signature": "MEUCIQDfakefakefake"} if kind == "sig" else {}
        body = canonical_json({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": config_digest},
            "layers": [{"mediaType": layer_type, "size": len(payload), "digest": layer_digest,
                        "annotations": annotations}],
        })
        algo, hexpart = subject_digest.split(":", 1)
        return self.put_manifest(repo, f"{algo}-{hexpart}.{kind}", body, OCI_MANIFEST)

    def push_referrers_index(self, repo: str, subject_digest: str, referrers: list[Pushed]) -> str:
        """The OCI 1.1 referrers fallback: an OCI index of ``referrers`` (manifests whose ``subject`` is
        ``subject_digest``, already pushed), tagged ``sha256-<hex>`` as registries without the referrers API
        keep it."""
        entries = [{"mediaType": r.media_type, "size": r.size, "digest": r.digest} for r in referrers]
        body = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
        algo, hexpart = subject_digest.split(":", 1)
        return self.put_manifest(repo, f"{algo}-{hexpart}", body, OCI_INDEX)

    # -- reading and deleting

    def delete(self, repo: str, digest: str) -> int:
        return self.session.delete(self._url(f"/v2/{repo}/manifests/{digest}")).status_code

    def tags(self, repo: str) -> list[str] | None:
        """Sorted tags; ``[]`` for a repository whose tags were all deleted (the registry answers
        ``"tags": null``); ``None`` for a repository the registry does not know (404)."""
        r = self.session.get(self._url(f"/v2/{repo}/tags/list"))
        if r.status_code == 404:
            return None
        self._expect(r, 200)
        return sorted(r.json().get("tags") or [])

    def head_digest(self, repo: str, reference: str) -> str | None:
        r = self.session.head(self._url(f"/v2/{repo}/manifests/{reference}"), headers={"Accept": ACCEPT_ALL})
        if r.status_code == 404:
            return None
        self._expect(r, 200)
        return r.headers.get("Docker-Content-Digest")

    def catalog(self) -> list[str]:
        """Every repository, following ``Link: <...>; rel="next"`` (relative to the base URL) to the end."""
        repos: list[str] = []
        url = self._url("/v2/_catalog")
        while url:
            r = self._expect(self.session.get(url), 200)
            repos.extend(r.json().get("repositories") or [])
            nxt = r.links.get("next", {}).get("url")
            url = urljoin(self.base_url + "/", nxt) if nxt else None
        return repos


# --- OCI image layouts and skopeo --------------------------------------------------------------------------


def _gzip_tar_layer(name: str, content: bytes) -> tuple[bytes, bytes]:
    """(gzipped tar, plain tar) with one file; fixed mtimes so the bytes are reproducible."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(content))
    plain = buf.getvalue()
    return gzip.compress(plain, mtime=0), plain


def make_oci_layout(
    dir: Path,
    tag: str,
    *,
    files: dict[str, bytes] | None = None,
    architecture: str = "amd64",
    os: str = "linux",
    created: str | None = None,
    labels: dict | None = None,
    unique: str | None = None,
) -> Path:
    """Write an OCI image layout (oci-layout, index.json, blobs/sha256/...) holding one image under ``tag``.

    Layers are real gzipped tars (one per entry of ``files``): skopeo sniffs layer compression and would
    recompress, and so change the digests of, a layer that is not really gzip.
    """
    dir = Path(dir)
    blobs = dir / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def write_blob(data: bytes) -> str:
        digest = sha256_digest(data)
        (blobs / digest.split(":", 1)[1]).write_bytes(data)
        return digest

    key = unique if unique is not None else uuid.uuid4().hex
    files = files if files is not None else {"hello.txt": f"hello from {key}\n".encode()}
    layer_descs, diff_ids = [], []
    for name, content in files.items():
        compressed, plain = _gzip_tar_layer(name, content)
        layer_descs.append({"mediaType": OCI_LAYER, "size": len(compressed), "digest": write_blob(compressed)})
        diff_ids.append(sha256_digest(plain))
    config_obj = {
        "architecture": architecture,
        "os": os,
        "created": created or DEFAULT_CREATED,
        "config": {"Labels": labels or {}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": f"regdb test rig {key}"}],
    }
    config = canonical_json(config_obj)
    manifest = canonical_json({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": write_blob(config)},
        "layers": layer_descs,
    })
    manifest_digest = write_blob(manifest)
    (dir / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (dir / "index.json").write_text(json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "size": len(manifest), "digest": manifest_digest,
                       "annotations": {"org.opencontainers.image.ref.name": tag}}],
    }))
    return dir


def skopeo_copy(layout_dir: Path, tag: str, registry_host: str, repo: str, dest_tag: str,
                *, extra_args: tuple[str, ...] = ()) -> str:
    """Copy ``oci:<layout_dir>:<tag>`` to ``docker://<host>/<repo>:<dest_tag>`` with skopeo; return the
    digest skopeo reports for the pushed manifest.

    ``--insecure-policy``: no /etc/containers/policy.json is needed. ``--dest-tls-verify=false``: the rig
    registry speaks plain HTTP. ``--preserve-digests`` makes skopeo fail rather than rewrite the manifest, so
    the digest in the registry is the one written in the layout.
    """
    with tempfile.TemporaryDirectory() as tmp:
        digestfile = Path(tmp) / "digest"
        cmd = [
            "skopeo", "copy", "--insecure-policy", "--dest-tls-verify=false", "--preserve-digests",
            "--digestfile", str(digestfile), *extra_args,
            f"oci:{layout_dir}:{tag}", f"docker://{registry_host}/{repo}:{dest_tag}",
        ]
        # skopeo keeps state under $HOME (~/.local/share/containers); a throwaway HOME keeps runs independent.
        env = dict(os.environ, HOME=tmp)
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        if result.returncode != 0:
            raise RigError(f"{' '.join(cmd)} exited with {result.returncode}:\n{result.stdout}{result.stderr}")
        return digestfile.read_text().strip()


def have_binary(name: str) -> bool:
    return shutil.which(name) is not None
