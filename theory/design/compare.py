"""The comparison table: ζ, spectral gap and consensus rounds of weight rules and designs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import networkx as nx

from theory import checks
from theory.design.problem import ProgressFn, check_simple_graph
from theory.design.solve import fastest_averaging, fastest_mixing
from theory.mixing import best_constant, max_degree, metropolis_hastings, uniform
from theory.spectral import consensus_rounds


@dataclass(frozen=True)
class WeightRow:
    """One row of :func:`compare_weights`: None where the rule does not apply."""

    rule: str
    zeta: float | None
    spectral_gap: float | None
    rounds: int | float | None
    note: str = ""


@dataclass(frozen=True)
class WeightTable:
    rows: list[WeightRow]
    eps: float
    n: int

    def __str__(self) -> str:
        head = f"{'weights':<22}{'ζ':>12}{'1 − ζ':>12}{f'rounds to {self.eps:g}':>18}  note"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            if r.zeta is None:
                lines.append(f"{r.rule:<22}{'n/a':>12}{'n/a':>12}{'n/a':>18}  {r.note}")
            else:
                lines.append(f"{r.rule:<22}{r.zeta:>12.6f}{r.spectral_gap:>12.6f}"
                             f"{r.rounds!s:>18}  {r.note}")
        return "\n".join(lines)

    def as_dicts(self) -> list[dict]:
        return [r.__dict__.copy() for r in self.rows]

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def compare_weights(G: nx.Graph, eps: float = 1e-6, *, method: str = "auto",
                    tol: float = 1e-3, time_limit: float | None = None,
                    progress: bool | ProgressFn | None = None) -> WeightTable:
    """ζ, spectral gap 1 − ζ and consensus rounds ⌈log ε / log ζ⌉ for uniform (regular G only),
    Metropolis–Hastings, max-degree, best-constant, FMMC and FDLA weights on G.

    ``method``, ``tol``, ``time_limit`` and ``progress`` are passed to :func:`fastest_mixing`
    and :func:`fastest_averaging`; each of their rows notes the certified lower bound on ζ*."""
    checks.in_range("eps", eps, 0, 1, lo_strict=True, hi_strict=True)
    check_simple_graph(G)
    rules: list[tuple[str, Callable]] = [
        ("uniform", uniform), ("metropolis_hastings", metropolis_hastings),
        ("max_degree", max_degree), ("best_constant", best_constant)]
    rows = []
    for name, fn in rules:
        try:
            Wm = fn(G)
        except ValueError as e:
            rows.append(WeightRow(name, None, None, None, note=str(e).split(";")[0]))
            continue
        rows.append(WeightRow(name, Wm.zeta, Wm.spectral_gap, consensus_rounds(Wm, eps)))
    for name, fn in (("fmmc", fastest_mixing), ("fdla", fastest_averaging)):
        r = fn(G, method=method, tol=tol, time_limit=time_limit, progress=progress)
        rows.append(WeightRow(name, r.zeta, r.spectral_gap, consensus_rounds(r.mixing, eps),
                              note=f"certified ζ* ≥ {r.lower_bound:.6f} ({r.method})"))
    return WeightTable(rows=rows, eps=eps, n=G.number_of_nodes())


__all__ = ["WeightRow", "WeightTable", "compare_weights"]
