"""Library errors name settings by field; the command line words every such field with its flag (issue 16)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from regdb.cli.core import FLAGS
from regdb.errors import SelectorError, SettingError

ROOT = Path(__file__).resolve().parent.parent / "regdb"


def raised_fields() -> list[tuple[str, int, str, tuple[str, ...]]]:
    """(file, line, message template, fields) of every error raised with ``fields=`` in the library."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg == "fields" and isinstance(keyword.value, ast.Tuple):
                        fields = tuple(e.value for e in keyword.value.elts if isinstance(e, ast.Constant))
                        template = ast.unparse(node.args[0]) if node.args else ""
                        found.append((str(path.relative_to(ROOT.parent)), node.lineno, template, fields))
    return found


def test_there_are_field_named_errors():
    assert len(raised_fields()) >= 10


@pytest.mark.parametrize("where", raised_fields(), ids=lambda w: f"{w[0]}:{w[1]}")
def test_every_field_has_a_flag_and_a_placeholder(where):
    path, line, template, fields = where
    assert set(fields) <= set(FLAGS), f"{path}:{line}: no flag for {set(fields) - set(FLAGS)}"
    for field in fields:
        assert re.search(r"\{\{?" + field + r"(:[^{}]*)?\}", template), f"{path}:{line}: {field} not in the message"
    assert "--" not in re.sub(r"\{[^{}]*\}", "", template), f"{path}:{line}: a flag written into a library message"


def test_the_same_error_in_each_voice():
    error = SelectorError("{order_by} only orders {keep_latest}: give {keep_latest:N} too",
                          fields=("order_by", "keep_latest"))
    assert str(error) == "order_by only orders keep_latest: give keep_latest too"
    assert error.worded(FLAGS) == "--order-by only orders --keep-latest: give --keep-latest N too"
    assert error.worded({"keep_latest": "keep-latest"}) == "order_by only orders keep-latest: give keep-latest N too"
    assert isinstance(SettingError("{rate} too high", fields=("rate",)), SelectorError)


def test_text_from_outside_cannot_pose_as_a_field():
    # A user's regex that happens to look like a placeholder is left as it is, escaped like any message.
    error = SelectorError("invalid regex '{keep_latest}\x1b[2J'")
    assert error.worded(FLAGS) == str(error) == "invalid regex '{keep_latest}\\x1b[2J'"
