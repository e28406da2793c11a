"""The layering of theory/: no import circle, no private names across modules, fast import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[2] / "theory"


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> list[tuple[str, str, list[str]]]:
    """(importer, imported module, names) for every ``from theory... import`` and ``import
    theory...`` anywhere in a theory module (function-level imports included)."""
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        me = _module(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                    and node.module.split(".")[0] == "theory":
                names = [a.name for a in node.names]
                if node.module == "theory":  # `from theory import checks`: a submodule
                    out += [(me, f"theory.{n}", []) for n in names]
                else:
                    out.append((me, node.module, names))
            elif isinstance(node, ast.Import):
                out += [(me, a.name, []) for a in node.names if a.name.startswith("theory.")]
    return out


def test_no_import_circle_between_theory_modules():
    g = nx.DiGraph()
    for me, mod, _ in _imports():
        if me != mod and not mod.startswith(me + ".") and not me.startswith(mod + "."):
            g.add_edge(me, mod)
    # a package's __init__ re-exporting its modules is not a circle; the modules themselves
    # must form a one-way order
    g.remove_nodes_from(["theory"])
    cycles = list(nx.simple_cycles(g))
    assert cycles == [], f"import circles: {cycles}"
    assert not g.has_edge("theory.mixing", "theory.spectral")
    design = [n for n in g if n.startswith("theory.design.")]
    assert {"theory.design.problem", "theory.design.sdp", "theory.design.first_order",
            "theory.design.certificate", "theory.design.symmetry"} <= set(design)
    for n in design:  # the design modules never import the package back
        assert not g.has_edge(n, "theory.design"), n


def test_no_private_names_imported_across_modules():
    bad = [(me, mod, n) for me, mod, names in _imports() for n in names
           if n.startswith("_") and not n.startswith("__") and mod != me]
    assert bad == []


def test_import_theory_stays_light():
    code = ("import sys, theory; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'cvxpy', 'clarabel') or m.startswith('theory.design')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
