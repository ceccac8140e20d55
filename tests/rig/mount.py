"""Real file systems for file-fault tests: a small tmpfs, read-only or full (root ignores permission bits,
so ``chmod 0555`` would prove nothing; the suite runs as root, like CI)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


class Mount:
    """A tmpfs mounted on a directory for one test; unmounted (lazily if busy) at the end."""

    def __init__(self, where: Path, options: str):
        self.path = where
        where.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"cannot mount a tmpfs on {where} ({done.stderr.strip()}): the file-system fault tests "
                        "need root (CI runs as root)", pytrace=False)

    def remount(self, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True, capture_output=True)

    def unmount(self) -> None:
        if subprocess.run(["umount", str(self.path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
