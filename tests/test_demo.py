"""`make demo` prints each regdb line as it runs it: pasted in .demo/, a line works as printed, with no hidden
environment variable (issue 17: its `regdb sql` line needed a hidden REGDB_DATABASE)."""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import subprocess
import sys
from pathlib import Path

REGDB = str(Path(sys.executable).parent / "regdb")


def test_the_demo_lines_run_as_printed(registry_binary, tmp_path, monkeypatch):
    from scripts import demo
    monkeypatch.setattr(demo, "DEMO", tmp_path / "demo")
    monkeypatch.setenv("REGDB_DATABASE", str(tmp_path / "hidden.db"))  # must not be what makes the lines work
    ran: list[tuple[list[str], dict]] = []
    real_run = subprocess.run

    def run(command, **kwargs):
        # The sync and the sql line really run (the one that writes the inventory, the one that failed); the
        # others only record what they would run, to keep the test short.
        ran.append((command, kwargs["env"]))
        if command[1:2] == ["-reg"] and "sync" in command:
            return real_run(command, **kwargs)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(demo.subprocess, "run", run)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        demo.main()
    printed = [line[2:] for line in out.getvalue().splitlines() if line.startswith("$ regdb ")]
    assert len(printed) == len(ran) >= 8
    for line, (command, env) in zip(printed, ran, strict=True):
        assert shlex.split(line)[1:] == command[1:]  # printed exactly as run
        assert not set(env) & set(demo.HIDDEN)
    assert not (tmp_path / "hidden.db").exists()
    sql = next(line for line in printed if " sql " in line)
    env = {k: v for k, v in os.environ.items() if k not in demo.HIDDEN}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "no-config")
    result = real_run([REGDB, *shlex.split(sql)[1:]], cwd=tmp_path / "demo", env=env, capture_output=True,
                      text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "shop/api" in result.stdout and "tools/cli" in result.stdout
