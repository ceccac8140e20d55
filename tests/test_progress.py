"""The sync's progress bar (issue 17): drawn on a terminal per tag, with totals, rate and ETA; nothing extra when
stderr is a pipe or at -l debug. The terminal is a real pseudo-terminal: regdb runs in it and the test reads
what it draws."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.rig.pusher import Pusher

REGDB = str(Path(sys.executable).parent / "regdb")
TAGS = 200
RATE = 80  # requests per second: about 2.5 s for the repository's tags, so the bar redraws many times inside it
DEADLINE = 60.0  # seconds a sync in the pty may take before the test gives up


def run_in_pty(args: list[str]) -> tuple[int, str]:
    """Run regdb with stdin, stdout and stderr on a new pseudo-terminal (120 columns); return (status, screen)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen([REGDB, *args], stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + DEADLINE
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal's other end has closed it
                break
            if not data:
                break
            chunks.append(data)
        else:
            pytest.fail(f"regdb {' '.join(args)} still running after {DEADLINE} s")
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
    return process.wait(timeout=10), b"".join(chunks).decode("utf-8", "replace")


@pytest.fixture(scope="module")
def big_repo(registry, tmp_path_factory):
    """One repository with TAGS tags (one image under many names: cheap to push, each tag still one request)."""
    pusher = Pusher(registry.url)
    repo = "progress-probe/big"
    image = pusher.push_image(repo, "0")
    for index in range(1, TAGS):
        pusher.put_manifest(repo, str(index), image.manifest, image.media_type)
    return registry.url, repo, tmp_path_factory.mktemp("progress") / "inventory.db"


def test_a_terminal_sees_totals_and_a_count_moving_within_the_repository(big_repo):
    url, repo, db = big_repo
    status, screen = run_in_pty(["-reg", url, "--db", str(db), "--rate", str(RATE), "sync", repo])
    assert status == 0, screen
    assert f"synced {url}: 1 repositor" in screen
    # Redraws within the one repository: "0/1 repositories" with a tag count out of the known total.
    counts = {int(n) for n in re.findall(rf"0/1 repositories:[^\r\n]*?\| *(\d+)/{TAGS} \[", screen)}
    assert len([n for n in counts if 0 < n < TAGS]) >= 3, screen[-2000:]
    assert re.search(r"tags/s", screen), screen[-2000:]  # the rate
    assert re.search(r"<\d\d:\d\d", screen), screen[-2000:]  # the ETA (tqdm's [elapsed<remaining])


def test_a_pipe_gets_nothing_extra(big_repo):
    url, repo, db = big_repo
    result = subprocess.run([REGDB, "-reg", url, "--db", str(db), "sync", repo], capture_output=True, text=True,
                            timeout=DEADLINE)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith(f"synced {url}: 1 repositor") and "\r" not in result.stdout


def test_debug_logs_get_no_bar_on_a_terminal(big_repo):
    url, repo, db = big_repo
    status, screen = run_in_pty(["-reg", url, "--db", str(db), "-l", "debug", "sync", repo])
    assert status == 0, screen
    assert "DEBUG" in screen
    assert "tags/s" not in screen and "repositories:" not in screen
