"""`make demo` prints each regdb line as it runs it: pasted in .demo/, every read-only line works as printed,
with no hidden environment variable (issue 17: its `regdb sql` line needed a hidden REGDB_DATABASE)."""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REGDB = str(Path(sys.executable).parent / "regdb")


def test_the_demo_lines_run_as_printed(registry_binary, tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import demo
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    monkeypatch.setattr(demo, "DEMO", tmp_path / "demo")
    monkeypatch.setenv("REGDB_DATABASE", str(tmp_path / "hidden.db"))  # must not be what makes the lines work
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        demo.main()
    lines = [line[2:] for line in out.getvalue().splitlines() if line.startswith("$ regdb ")]
    assert len(lines) >= 8 and not (tmp_path / "hidden.db").exists()
    sql = next(line for line in lines if " sql " in line)
    env = {k: v for k, v in os.environ.items() if k not in demo.HIDDEN}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "no-config")
    result = subprocess.run([REGDB, *shlex.split(sql)[1:]], cwd=tmp_path / "demo", env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "shop/api" in result.stdout and "tools/cli" in result.stdout
