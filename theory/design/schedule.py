"""Time-varying schedules: one designed factor per graph of a period, and the period's ζ."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from theory import checks
from theory.design.problem import KINDS, DesignResult
from theory.design.solve import fastest_averaging, fastest_mixing
from theory.mixing import MixingMatrix, node_order, validate_graph
from theory.spectral import zeta


@dataclass(frozen=True)
class ScheduleDesign:
    """Per-factor designs for a periodic schedule W_1, …, W_K and the period's contraction.

    ``zeta_product`` = ‖W_K ⋯ W_1 − J‖₂ (exact, computed); ``zeta_bound`` = ∏ ζ(W_k) ≥ it."""

    factors: list[DesignResult | MixingMatrix]
    zeta_product: float
    zeta_bound: float

    @property
    def matrices(self) -> list[np.ndarray]:
        return [np.asarray(f.W if isinstance(f, DesignResult) else f.matrix) for f in self.factors]

    def __repr__(self) -> str:
        return (f"ScheduleDesign({len(self.factors)} factors: ζ(product) = "
                f"{self.zeta_product:.6g} ≤ ∏ζ_k = {self.zeta_bound:.6g})")


def design_schedule(graphs: Sequence[nx.Graph], *, kind: str = "fmmc", **kwargs: Any
                    ) -> ScheduleDesign:
    """Design a time-varying schedule: one factor per graph of the period, each optimal for its
    own graph (the convex part of the problem).

    Minimising ζ(W_K ⋯ W_1) jointly is not convex in the weights (the product is multilinear),
    so we do not attempt it. Each factor minimises its own ζ (FMMC/FDLA on its graph); a factor
    whose graph is disconnected (e.g. a matching) is designed component by component (fastest
    averaging within each component; its own ζ is 1). We report the exact ζ of the product and
    the bound ∏ζ(W_k) (sub-multiplicativity of ‖·‖₂ on 1⊥), which is 1 when a factor is
    disconnected. All graphs must share the node set; their union must be connected."""
    checks.one_of("kind", kind, KINDS)
    graphs = list(graphs)
    if not graphs:
        raise ValueError("graphs must be a non-empty sequence (one graph per step of the period)")
    nodes = set(graphs[0].nodes)
    for k, H in enumerate(graphs):
        if set(H.nodes) != nodes:
            raise ValueError(f"graphs[{k}] has a different node set from graphs[0]")
    U = nx.compose_all(graphs)
    validate_graph(U, name="the union of the graphs")
    order = node_order(graphs[0].nodes)
    idx = {u: k for k, u in enumerate(order)}
    n = len(order)
    fn = fastest_mixing if kind == "fmmc" else fastest_averaging
    factors: list[DesignResult | MixingMatrix] = []
    mats = []
    for H in graphs:
        Hs = nx.Graph(H)
        Hs.remove_edges_from(list(nx.selfloop_edges(Hs)))
        if nx.is_connected(Hs):
            r = fn(Hs, **kwargs)
            P = np.zeros((n, n))
            for a, u in enumerate(r.labels):
                P[idx[u], a] = 1
            A = P @ r.W @ P.T
            factors.append(r)
        else:
            A = np.eye(n)
            for comp in nx.connected_components(Hs):
                if len(comp) < 2:
                    continue
                r = fn(Hs.subgraph(comp).copy(), **kwargs)
                ii = [idx[u] for u in r.labels]
                A[np.ix_(ii, ii)] = r.W
            mm = MixingMatrix(A, graph=nx.relabel_nodes(Hs, idx), rule=kind,
                              labels=tuple(order), name=f"{kind.upper()} per component")
            factors.append(mm)
        mats.append(A)
    Pm = np.eye(n)
    for A in mats:
        Pm = A @ Pm
    zp = float(np.linalg.norm(Pm - 1.0 / n, 2))
    zb = float(np.prod([zeta(A) for A in mats]))
    return ScheduleDesign(factors=factors, zeta_product=zp, zeta_bound=zb)


__all__ = ["ScheduleDesign", "design_schedule"]
