"""The project's docs name the tests that pin what they say: every named test must exist.

docs/registry-behaviour.md cites tests as ``test_file.py::test_name`` (or ``::test_name`` for another test of
the file named just before). A renamed or deleted test would leave a fact unpinned without anyone noticing.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CITED = re.compile(r"`((?:[\w/]+\.py)?)::(\w+)`")
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


def cited_tests(text: str) -> list[tuple[str, str]]:
    found, current = [], None
    for path, name in CITED.findall(text):
        current = path or current
        found.append((current, name))
    return found


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_cited_test_exists(doc):
    missing = []
    for path, name in cited_tests(doc.read_text()):
        file = ROOT / "tests" / path.removeprefix("tests/")
        if not file.exists() or name not in defined_tests(file):
            missing.append(f"{path}::{name}")
    assert missing == [], f"{doc.name} cites tests that do not exist"


def test_the_registry_behaviour_page_cites_tests():
    assert len(cited_tests((ROOT / "docs" / "registry-behaviour.md").read_text())) >= 30


def test_the_repository_cites_nothing_outside_itself():
    # What the code relies on is written in the project's own docs; a file that is not in the repository cannot
    # be read by whoever clones it.
    outside = ("REGISTRY-FACTS", "../shared", "CONVENTIONS.md")
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("regdb", "migrations", "tests", "docs", "bench", "scripts")
        for path in (ROOT / folder).rglob("*")
        if path.suffix in (".py", ".md", ".toml") and path.name != "test_docs_references.py"
        and any(word in path.read_text(errors="replace") for word in outside)
    ]
    offenders += [name for name in ("README.md", "Makefile", "pyproject.toml")
                  if any(word in (ROOT / name).read_text() for word in outside)]
    assert offenders == []


def test_every_command_is_in_the_readme_table_and_every_row_is_a_command():
    from regdb.cli.app import main

    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Commands"):readme.index("### Global options")]
    first_cells = re.findall(r"^\| (.+?) \|", table, re.M)
    documented = {code.split()[0] for cell in first_cells for code in re.findall(r"`([^`]+)`", cell)}
    assert documented == set(main.commands)
