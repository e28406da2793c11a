"""The design entry points: :func:`fastest_mixing` (FMMC), :func:`fastest_averaging` (FDLA) and
:func:`certify`, and the choice of method (symmetry-reduced SDP, SDP, first-order)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import networkx as nx
import numpy as np

from theory import checks
from theory.design.first_order import eigenvector_bound, spectral_bundle
from theory.design.problem import (
    FEAS_TOL,
    DesignResult,
    Progress,
    ProgressFn,
    design_problem,
    make_result,
    progress_reporter,
)
from theory.design.sdp import FORMS, solve_sdp
from theory.design.symmetry import edge_orbits, orbit_labels, symmetry_applies
from theory.spectral import zeta

#: the ``method`` argument's values
METHODS = ("auto", "sdp", "symmetric", "first_order")


def _design(G: nx.Graph, kind: str, *, solver: str | None, method: str, tol: float,
            time_limit: float | None, verbose: bool, form: str,
            progress: bool | ProgressFn | None, **cons: Any) -> DesignResult:
    checks.one_of("method", method, METHODS)
    checks.one_of("form", form, FORMS)
    t0 = time.perf_counter()
    report, close = progress_reporter(progress)
    try:
        if report is not None:
            report(Progress("setup", f"{kind.upper()} on {G.number_of_nodes()} nodes, "
                            f"{G.number_of_edges()} edges: checking the constraints"))
        prob = design_problem(G, kind, **cons)
        sdp_kw = {"form": form, "time_limit": time_limit, "verbose": verbose,
                  "progress": report}
        if method in ("auto", "symmetric") and symmetry_applies(prob, cons):
            if report is not None:
                report(Progress("symmetry", "looking for edge orbits (automorphisms)",
                                elapsed=time.perf_counter() - t0))
            orbits = edge_orbits(prob.graph, time_limit=5.0) if prob.n <= 128 else None
            if orbits is not None and len(orbits) < prob.m:
                if method == "symmetric" or len(orbits) <= prob.m // 4:
                    prob.orbits = orbit_labels(prob, orbits)
                    if prob.n <= 200:
                        return solve_sdp(prob, solver, "symmetric", t0, **sdp_kw)
            elif method == "symmetric":
                warnings.warn("no non-trivial edge orbits found: solving the full problem",
                              stacklevel=3)
        if method == "sdp" or (method in ("auto", "symmetric") and prob.n <= 40):
            return solve_sdp(prob, solver, "sdp", t0, **sdp_kw)
        w, lb, info = spectral_bundle(prob, tol=tol, time_limit=time_limit, verbose=verbose,
                                      progress=report)
        return make_result(prob, w, lb, method="first_order", solver="bundle+clarabel",
                           status=info["status"], t0=t0, iterations=info["iterations"],
                           info=info)
    finally:
        close()


def fastest_mixing(G: nx.Graph, *, solver: str | None = None, method: str = "auto",
                   self_weight_max: float | Mapping | None = None,
                   edge_weight_max: float | Mapping | None = None,
                   fixed_edges: Mapping | None = None, zero_edges: Iterable | None = None,
                   edge_costs: float | Mapping | None = None, cost_budget: float | None = None,
                   tol: float = 1e-3, time_limit: float | None = None, verbose: bool = False,
                   form: str = "full", progress: bool | ProgressFn | None = None
                   ) -> DesignResult:
    """Fastest-mixing Markov chain on G (FMMC; Boyd, Diaconis & Xiao 2004, recalled).

    Minimise ζ(W) = ‖W − 11ᵀ/n‖₂ over symmetric W ≥ 0 with W1 = 1 supported on G's edges and
    self-loops (eqs. (1)–(3) of the module doc), with optional constraints:

    Args:
        G: connected undirected networkx graph (any hashable node labels; W's rows follow
            ``result.labels``: sorted labels when sortable).
        solver: "CLARABEL" or "SCS" for the SDP (default by size; the other is tried when the
            first fails or is inaccurate).
        method: "auto" (orbit-reduced SDP on symmetric graphs, SDP for n ≤ 40, first-order
            otherwise), "sdp", "symmetric" (edge-orbit reduction), "first_order" (proximal
            probtral bundle, :mod:`theory.design_firstorder`).
        self_weight_max: cap c on W_ii (scalar or {node: c}); W_ii ≤ c ⇔ Σ_j w_ij ≥ 1 − c.
        edge_weight_max: cap on w_e (scalar or {(u, v): cap}).
        fixed_edges: {(u, v): weight} held fixed. zero_edges: edges forced to weight 0.
        edge_costs, cost_budget: ℓ1 budget Σ_e c_e |w_e| ≤ B — the convex relaxation of a
            budget on the total cost of active edges (non-convex); costs default to 0 for
            edges missing from a mapping.
        tol: target relative gap for the first-order method (stops earlier when reached).
        time_limit: seconds (first-order method; passed to the SDP solver otherwise).
        form: SDP form, "full" (±(W − J) ⪯ sI, sparse coefficients; the default: measured
            1.2–1.6× faster with Clarabel on 40-node graphs) or "projected" (LMIs of size n − 1
            on 1⊥ with the dense coefficients Qᵀa_e).
        progress: ``True`` for a status line on stderr, or a callable receiving
            :class:`~theory.design.problem.Progress` events (SDP phases; every first-order
            iteration, with ζ and the certified gap so far).

    Returns:
        :class:`DesignResult` with W, ζ, probtral gap and the certified ``lower_bound``.

    Raises:
        ValueError: disconnected graph, self-loop-only node, n < 2, a directed graph or a
            multigraph, bad or infeasible constraints. RuntimeError: every solver failed (the
            statuses are named).
    """
    return _design(G, "fmmc", solver=solver, method=method, tol=tol, time_limit=time_limit,
                   verbose=verbose, form=form, progress=progress, self_weight_max=self_weight_max,
                   edge_weight_max=edge_weight_max, fixed_edges=fixed_edges,
                   zero_edges=zero_edges, edge_costs=edge_costs, cost_budget=cost_budget)


def fastest_averaging(G: nx.Graph, *, solver: str | None = None, method: str = "auto",
                      self_weight_max: float | Mapping | None = None,
                      edge_weight_max: float | Mapping | None = None,
                      fixed_edges: Mapping | None = None, zero_edges: Iterable | None = None,
                      edge_costs: float | Mapping | None = None,
                      cost_budget: float | None = None, tol: float = 1e-3,
                      time_limit: float | None = None, verbose: bool = False,
                      form: str = "full", progress: bool | ProgressFn | None = None
                      ) -> DesignResult:
    """Symmetric fastest distributed linear averaging (FDLA; Xiao & Boyd 2004, recalled).

    As :func:`fastest_mixing` but without W ≥ 0: any symmetric W with W1 = 1 supported on G
    (edge weights and self-weights may be negative), so ζ_FDLA* ≤ ζ_FMMC*. ``edge_weight_max``
    caps w_e from above only; the budget is on Σ_e c_e |w_e|."""
    return _design(G, "fdla", solver=solver, method=method, tol=tol, time_limit=time_limit,
                   verbose=verbose, form=form, progress=progress, self_weight_max=self_weight_max,
                   edge_weight_max=edge_weight_max, fixed_edges=fixed_edges,
                   zero_edges=zero_edges, edge_costs=edge_costs, cost_budget=cost_budget)


def certify(G: nx.Graph, W: Any, *, kind: str = "fmmc", k: int = 12) -> float:
    """A proven lower bound on the optimal ζ* of the unconstrained FMMC/FDLA design on G, from
    the extreme eigenvectors of a given feasible W (eq. (4))."""
    prob = design_problem(G, kind)
    A = np.asarray(W, float)
    if A.shape != (prob.n, prob.n):
        raise ValueError(f"W must be {prob.n} × {prob.n}; got {A.shape}")
    w = A[prob.edges[:, 0], prob.edges[:, 1]].copy()  # W_ij = w_e off the diagonal
    rest = A.copy()
    rest[prob.edges[:, 0], prob.edges[:, 1]] = 0
    rest[prob.edges[:, 1], prob.edges[:, 0]] = 0
    np.fill_diagonal(rest, 0)
    if np.abs(rest).max() > FEAS_TOL:
        raise ValueError("W has weight outside the graph's edges and self-loops")
    if np.abs(A.sum(axis=1) - 1).max() > FEAS_TOL or np.abs(A - A.T).max() > FEAS_TOL:
        raise ValueError("W must be symmetric with rows summing to 1")
    prob.verify(w)
    return min(eigenvector_bound(prob, w, k=k), zeta(A))


__all__ = ["METHODS", "certify", "fastest_averaging", "fastest_mixing"]
