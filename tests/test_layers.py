"""The import rule of the architecture: one way only, no circle.

theory never imports torch or empirics; inside empirics every module imports only from its own
layer or below (records → problems/compressors → configs → spec → algorithm → driver →
engine/distributed → experiment → reproductions → report → verify → cli). Imports inside
functions count too (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent

#: empirics module (dotted, without the "empirics." prefix) → layer; prefixes end with "."
LAYERS: list[tuple[str, int]] = [
    ("records", 0), ("stats", 0), ("plots", 0), ("data", 0), ("devices", 0),
    ("problems.", 1), ("problems", 1), ("compressors", 1), ("fastgrads", 1), ("testing", 1),
    ("configs", 2),
    ("spec", 3),
    ("mixers", 4), ("algorithm", 4),
    ("driver", 5),
    ("engine", 6), ("collectives", 6), ("liveness", 6), ("launch", 6), ("distributed", 6),
    ("moments", 7), ("laws", 7), ("recursion", 7), ("predict", 7),
    ("match", 8),
    ("experiment", 9), ("falsify", 9),
    ("reproductions.", 10), ("reproductions", 10),
    ("report", 11),
    ("verify", 12),
    ("cli", 13),
]


def _layer(mod: str) -> int:
    name = mod.removeprefix("empirics.")
    for prefix, layer in LAYERS:
        if name == prefix or (prefix.endswith(".") and name.startswith(prefix)):
            return layer
    raise AssertionError(f"empirics module {mod} has no layer in tests/test_layers.py: add it")


def _modules(package: str) -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, mod: str) -> set[str]:
    """Every module imported anywhere in the file (absolute names; relative ones resolved)."""
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def _known(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


ALL = {**_modules("theory"), **_modules("empirics")}


@pytest.mark.parametrize("mod", sorted(m for m in ALL if m.startswith("theory")))
def test_theory_never_imports_torch_or_empirics(mod):
    bad = sorted(i for i in _imports(ALL[mod], mod)
                 if i.split(".")[0] in ("torch", "empirics"))
    assert not bad, f"{mod} imports {bad}"


@pytest.mark.parametrize("mod", sorted(m for m in ALL if m.startswith("empirics.")))
def test_empirics_imports_only_its_layer_or_below(mod):
    mine = _layer(mod)
    up = []
    for i in _imports(ALL[mod], mod):
        target = _known(i, ALL)
        if target is None or not target.startswith("empirics.") or target == mod:
            continue
        if _layer(target) > mine:
            up.append(f"{target} (layer {_layer(target)})")
    assert not up, f"{mod} (layer {mine}) imports from higher layers: {sorted(set(up))}"


def test_no_import_circle():
    """Among the modules of theory and empirics (package __init__ files, which only re-export,
    excluded), the import graph is acyclic."""
    g = nx.DiGraph()
    for mod, path in ALL.items():
        if path.name == "__init__.py":
            continue
        for i in _imports(path, mod):
            target = _known(i, ALL)
            if target and target != mod and ALL[target].name != "__init__.py":
                g.add_edge(mod, target)
    cycles = list(nx.simple_cycles(g))
    assert not cycles, f"import circles: {cycles[:5]}"
