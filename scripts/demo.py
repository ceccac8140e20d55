"""`make demo`: a throwaway registry on 127.0.0.1 with sample images, synced into an inventory and queried.

Everything lives under .demo/ and the registry is stopped at the end. Each regdb command is printed before
it runs, exactly as it runs (in .demo/, with no hidden environment variable), so the output doubles as a tour
of the CLI whose lines can be pasted (tests/test_demo.py re-runs them). Run from the repository root as a
module (`python -m scripts.demo`), so the test rig imports as the package it is.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from tests.rig.pusher import Pusher
from tests.rig.registry import start_registry

ROOT = Path(__file__).resolve().parent.parent

DEMO = ROOT / ".demo"
DB_FILE = "demo.db"  # in DEMO; given with --db on the lines that create and read it
REGDB = Path(sys.executable).parent / "regdb"


# Settings regdb reads from the environment or a profile: the demo's lines must mean the same pasted elsewhere.
HIDDEN = ("REGISTRY", "REGISTRY_USER", "REGISTRY_PASSWORD", "REGDB_DATABASE", "REGDB_PROFILE")


def regdb(*args: str) -> None:
    command = [str(REGDB), *args]
    print(f"\n$ regdb {' '.join(shlex.quote(a) for a in args)}", flush=True)
    env = {name: value for name, value in os.environ.items() if name not in HIDDEN}
    env["XDG_CONFIG_HOME"] = str(DEMO / "config")  # no profile of the person running the demo applies
    subprocess.run(command, check=True, cwd=DEMO, env=env)


def push_samples(pusher: Pusher) -> None:
    for version in ["1.0", "1.1", "1.2", "1.3", "1.4", "1.5"]:
        pushed = pusher.push_image("shop/api", version, created=f"2024-0{int(version[-1]) + 1}-01T12:00:00Z")
    pusher.tag("shop/api", "latest", pushed.digest)
    pusher.push_image("shop/api", "1.5-alpine", layers=[b"alpine flavour"])
    web = pusher.push_index("shop/web", "2.0", oci=True)  # multi-arch: amd64 + arm64/v8
    pusher.tag("shop/web", "stable", web.digest)
    pusher.push_index("shop/web", "2.1")
    signed = pusher.push_image("tools/cli", "0.9", oci=True)
    pusher.push_cosign_signature("tools/cli", signed.digest)
    pusher.copy("shop/api", pushed.digest, "mirror/api", "1.5")  # one digest in two repositories


def main() -> None:
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir()
    registry = start_registry(DEMO / "registry")
    try:
        print(f"registry running at {registry.url} (storage in .demo/registry)")
        push_samples(Pusher(registry.url))
        url = registry.url
        regdb("-reg", url, "--db", DB_FILE, "sync")
        regdb("-reg", url, "--db", DB_FILE, "list-repo-names")
        regdb("-reg", url, "--db", DB_FILE, "list-tag-names", "shop/api", "shop/web")
        regdb("-reg", url, "--db", DB_FILE, "query-tags", "-r", "shop/api", "-t", "<1.4", "-x", "1.0")
        regdb("-reg", url, "--db", DB_FILE, "query-tags", "-r", "shop/web", "-re", "2\\.", "--format", "json")
        regdb("-reg", url, "--db", DB_FILE, "remove-tags", "-r", "shop/api", "-t", "<1.3", "--dry-run")
        regdb("--db", DB_FILE, "sql", "SELECT repo, tag, architecture, os, size FROM images ORDER BY repo, tag")
        regdb("-reg", url, "--db", DB_FILE, "du")
        print(f"\nThe inventory is {DEMO / DB_FILE}: open it with sqlite3 or any BI tool.")
    finally:
        registry.stop()


if __name__ == "__main__":
    main()
