"""OCI image layouts on disk, copied into a registry with skopeo (a second, independent pusher)."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import tarfile
import tempfile
import uuid
from pathlib import Path

from tests.rig.media import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, canonical_json, sha256_digest
from tests.rig.pusher import DEFAULT_CREATED
from tests.rig.registry import RigError


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

