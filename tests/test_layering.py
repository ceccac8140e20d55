"""The architecture, held: packages by concept whose imports only go down (issue 16).

    base (errors, text, redact, versions) < registry < inventory < selection < cleanup, live < api < cli < entry

Every import counts, the ones inside functions included (they are how start-up stays fast, not a way around
the layering). Only ``regdb.registry`` speaks HTTP as a client; nothing but the console scripts' entry imports
``regdb.cli``; no module imports itself back through another (no cycles, lazy imports included).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "regdb"

# Rank of each layer; a module may import its own layer's package or a lower rank. Layers of equal rank
# (cleanup and live) are independent of each other.
LAYERS = {
    "regdb.text": 0, "regdb.redact": 1, "regdb.errors": 2, "regdb.versions": 3,  # the base, itself in order
    "regdb.registry": 10,
    "regdb.inventory": 20,
    "regdb.selection": 30,
    "regdb.cleanup": 40, "regdb.live": 40,
    "regdb.api": 50,
    "regdb.cli": 60,
    "regdb.entry": 70, "regdb.__main__": 80,
}
# HTTP client libraries: only the registry package may use them.
HTTP_CLIENTS = ("requests", "urllib3", "http.client", "urllib.request")
# What ``regdb/__init__.py`` resolves lazily (``__getattr__``): importing one of these from ``regdb`` inside the
# package would be an upward import in disguise.
LAZY_ROOT_NAMES = {"Inventory", "default_db_path", "RegistryClient", "connect", "TagQuery", "RepoQuery", "Plan",
                   "plan_removal", "remove", "RemovalResult"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Ids of the import nodes under ``if TYPE_CHECKING:``: annotations only, never run."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            ids |= {id(child) for stmt in node.body for child in ast.walk(stmt)}
    return ids


def _imports(name: str, path: Path, *, runtime_only: bool = False) -> list[tuple[str, int, list[str]]]:
    """(imported module, line, names) for every import statement in the module, relative ones resolved;
    ``runtime_only`` leaves out those under ``if TYPE_CHECKING:``."""
    is_package = path.name == "__init__.py"
    found = []
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_only(tree) if runtime_only else set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            found.append((base, node.lineno, [alias.name for alias in node.names]))
    return found


def _layer(module: str) -> str | None:
    for layer in sorted(LAYERS, key=len, reverse=True):
        if module == layer or module.startswith(layer + "."):
            return layer
    return None


def _targets(module: str, names: list[str], modules: dict[str, Path]) -> list[str]:
    """The regdb modules an import statement loads: ``from regdb.inventory import models`` loads
    regdb.inventory.models."""
    out = [module] if module in modules else []
    out += [f"{module}.{n}" for n in names if f"{module}.{n}" in modules]
    return out


MODULES = _modules()


def test_every_module_belongs_to_a_layer():
    homeless = [m for m in MODULES if m != "regdb" and _layer(m) is None]
    assert homeless == [], f"modules outside every layer (add them to a package or to LAYERS): {homeless}"


@pytest.mark.parametrize("name", sorted(m for m in MODULES if m != "regdb"))
def test_imports_only_go_down(name):
    own = _layer(name)
    wrong = []
    for module, line, names in _imports(name, MODULES[name]):
        if module == "regdb":
            hidden = sorted(set(names) & LAZY_ROOT_NAMES)
            if hidden:
                wrong.append(f"line {line}: from regdb import {', '.join(hidden)} (import it from its own module)")
            continue
        for target in _targets(module, names, MODULES):
            layer = _layer(target)
            if layer is None or layer == own:
                continue
            if LAYERS[layer] >= LAYERS[own]:
                wrong.append(f"line {line}: {target} ({layer}) from {own}")
    assert wrong == [], f"{name} imports upward or sideways:\n" + "\n".join(wrong)


@pytest.mark.parametrize("name", sorted(m for m in MODULES if _layer(m) != "regdb.registry"))
def test_only_the_registry_package_speaks_http(name):
    clients = [(module, line) for module, line, _ in _imports(name, MODULES[name])
               if module.split(".")[0] in {c.split(".")[0] for c in HTTP_CLIENTS} and
               any(module == c or module.startswith(c + ".") for c in HTTP_CLIENTS)]
    assert clients == [], f"{name} uses an HTTP client library: {clients}"


def test_nothing_imports_the_cli_but_the_entry():
    users = sorted({name for name in MODULES for module, _, names in _imports(name, MODULES[name])
                    for target in _targets(module, names, MODULES)
                    if _layer(target) == "regdb.cli" and _layer(name) not in ("regdb.cli", "regdb.entry",
                                                                              "regdb.__main__")})
    assert users == []


def test_no_import_cycles():
    """No cycle among the imports that run (type-only imports are annotations: they may point back)."""
    graph = {name: {t for module, _, names in _imports(name, path, runtime_only=True) for t in _targets(module, names, MODULES)
                    if t != name and not name.startswith(t + ".")}  # a submodule naming its own package
             for name, path in MODULES.items() if name != "regdb"}
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


ARCHITECTURE = ROOT.parent / "docs" / "architecture.md"


def test_the_architecture_page_names_every_module_and_nothing_else():
    text = ARCHITECTURE.read_text()
    named = set(re.findall(r"`(regdb/[\w/]+\.py)`", text))
    actual = {str(path.relative_to(ROOT.parent)) for path in ROOT.rglob("*.py")
              if path.name != "__init__.py" or path.parent == ROOT}
    assert sorted(actual - named) == [], "modules docs/architecture.md does not describe"
    assert sorted(named - actual) == [], "modules docs/architecture.md names that do not exist"
    tests = set(re.findall(r"`(tests/[\w/]+\.py)`", text))
    assert [t for t in sorted(tests) if not (ROOT.parent / t).exists()] == []
