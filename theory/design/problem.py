"""The design problem as data: edge variables, constraints, feasibility, and the result type.

:func:`design_problem` turns a graph and the practitioner constraints into a
:class:`DesignProblem` on nodes 0..n−1 whose free edges are the variables w (eq. (1) of
:mod:`theory.design`); :class:`DesignResult` is what every solver returns, built by
:func:`make_result` after the weights pass :meth:`DesignProblem.repair`'s checks. Progress of a
long solve is reported as :class:`Progress` events to a callback (:func:`progress_reporter`).

Nothing here solves anything: the solvers (:mod:`~theory.design.sdp`,
:mod:`~theory.design.first_order`) and the certificate (:mod:`~theory.design.certificate`)
import this module, never the other way round.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sps

from theory import checks
from theory.mixing import MixingMatrix, node_order, validate_graph

#: constraints are verified to this absolute tolerance before a W is returned
FEAS_TOL = 1e-9

Edge = tuple[Hashable, Hashable]


# =============================================================================================
# progress
# =============================================================================================
@dataclass(frozen=True)
class Progress:
    """One progress event of a design solve (passed to the ``progress`` callback).

    ``phase``: ``"setup"``, ``"symmetry"``, ``"sdp"``, ``"certificate"``, ``"first_order"`` or
    ``"done"``; ``message``: one line for a person; the numbers are set where they exist."""

    phase: str
    message: str
    iteration: int | None = None
    zeta: float | None = None
    lower_bound: float | None = None
    relative_gap: float | None = None
    elapsed: float = 0.0


ProgressFn = Callable[[Progress], None]


class _ProgressLine:
    """The default reporter: one status line on stderr, rewritten in place (tqdm)."""

    def __init__(self, file: Any = None) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=None, file=file or sys.stderr, bar_format="{desc}", leave=True,
                         dynamic_ncols=True)

    def __call__(self, ev: Progress) -> None:
        self._bar.set_description_str(f"[{ev.elapsed:7.1f} s] {ev.phase}: {ev.message}")

    def close(self) -> None:
        self._bar.close()


def progress_reporter(progress: bool | ProgressFn | None) -> tuple[ProgressFn | None,
                                                                     Callable[[], None]]:
    """(callback or None, close) for a ``progress`` argument: ``True`` gives a status line on
    stderr, a callable is used as is, ``None``/``False`` reports nothing."""
    if progress is None or progress is False:
        return None, lambda: None
    if progress is True:
        line = _ProgressLine()
        return line, line.close
    if not callable(progress):
        raise checks.refuse("progress", "True, False, None or a callable", progress)
    return progress, lambda: None


# =============================================================================================
# the problem
# =============================================================================================
@dataclass
class DesignProblem:
    """A normalised design problem on nodes 0..n−1; the free edges are the variables.

    Attributes:
        kind: ``"fmmc"`` (W ≥ 0) or ``"fdla"`` (signed weights).
        n: number of nodes; graph: the simple graph on 0..n−1; labels: caller's label of node i.
        edges: (m, 2) free edges (i < j); fixed_edges, fixed_w: edges held at given weights.
        lo, hi: (m,) bounds on the free weights (may be ±inf).
        node_lo, node_hi: (n,) bounds on Σ_{free e ∋ i} w_e (may be ±inf).
        costs, budget: ℓ1 budget Σ_e c_e |w_e| ≤ budget on the free edges (None: no budget).
        orbits: (m,) orbit id per free edge when the symmetry reduction is used, else None.
    """

    kind: str
    n: int
    graph: nx.Graph
    labels: list[Hashable]
    edges: np.ndarray
    fixed_edges: np.ndarray
    fixed_w: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    node_lo: np.ndarray
    node_hi: np.ndarray
    costs: np.ndarray | None = None
    budget: float | None = None
    orbits: np.ndarray | None = None
    _inc: sps.csr_matrix | None = field(default=None, repr=False)

    @property
    def m(self) -> int:
        """Number of free edges (variables)."""
        return len(self.edges)

    @property
    def inc(self) -> sps.csr_matrix:
        """Unsigned incidence matrix (n × m): (inc @ w)_i = Σ_{free e ∋ i} w_e."""
        if self._inc is None:
            m = self.m
            rows = np.concatenate([self.edges[:, 0], self.edges[:, 1]])
            cols = np.concatenate([np.arange(m), np.arange(m)])
            self._inc = sps.csr_matrix((np.ones(2 * m), (rows, cols)), shape=(self.n, m))
        return self._inc

    @property
    def fixed_sum(self) -> np.ndarray:
        """Σ of the fixed edge weights at each node."""
        s = np.zeros(self.n)
        np.add.at(s, self.fixed_edges[:, 0], self.fixed_w)
        np.add.at(s, self.fixed_edges[:, 1], self.fixed_w)
        return s

    def laplacian(self, w: np.ndarray, *, fixed: bool = True) -> sps.csr_matrix:
        """Weighted Laplacian L = Σ_e w_e a_e a_eᵀ (sparse), including fixed edges if asked."""
        e, x = self.edges, np.asarray(w, float)
        if fixed and len(self.fixed_edges):
            e = np.vstack([e, self.fixed_edges])
            x = np.concatenate([x, self.fixed_w])
        n = self.n
        i, j = e[:, 0], e[:, 1]
        deg = np.zeros(n)
        np.add.at(deg, i, x)
        np.add.at(deg, j, x)
        rows = np.concatenate([i, j, np.arange(n)])
        cols = np.concatenate([j, i, np.arange(n)])
        vals = np.concatenate([-x, -x, deg])
        return sps.csr_matrix((vals, (rows, cols)), shape=(n, n))

    def W(self, w: np.ndarray) -> np.ndarray:
        """Dense W(w) = I − L(w) (fixed edges included), eq. (1)."""
        A = -self.laplacian(w).toarray()
        A[np.diag_indices(self.n)] += 1.0
        return A

    def W0(self) -> sps.csr_matrix:
        """The constant part W₀ = I − L(fixed edges) (sparse)."""
        return sps.identity(self.n, format="csr") - self.laplacian(np.zeros(self.m))

    def implicit_bounds(self, rho: float) -> tuple[np.ndarray, np.ndarray, float]:
        """(node_lo, node_hi, |w| cap) valid for every w with ζ(W(w)) ≤ rho (module doc of
        :mod:`theory.design`)."""
        f = 1.0 - 1.0 / self.n
        r = (1.0 + rho) * f * (1 + 1e-12) + 1e-15
        fs = self.fixed_sum
        nlo = (1.0 - rho) * f * (1 - 1e-12) - 1e-15 - fs
        nhi = r - fs
        return nlo, nhi, r

    def edge_dict(self, w: np.ndarray) -> dict[Edge, float]:
        """{(u, v): w_uv} in the caller's labels, fixed edges included."""
        lab = self.labels
        out = {(lab[i], lab[j]): float(x) for (i, j), x in zip(self.edges, w, strict=True)}
        for (i, j), x in zip(self.fixed_edges, self.fixed_w, strict=True):
            out[(lab[i], lab[j])] = float(x)
        return out

    def lp_rows(self, rho: float | None) -> tuple:
        """Linear description of the feasible set C (∩ the implicit box for ζ ≤ rho when rho is
        given) in variables x = (w, t).

        Returns (A_ub (csr), b_ub, lower, upper, n_x); t (|w| ≤ t, for an FDLA budget) only when
        needed."""
        m = self.m
        lo, hi = self.lo.copy(), self.hi.copy()
        nlo, nhi = self.node_lo.copy(), self.node_hi.copy()
        if rho is not None:
            ilo, ihi, r = self.implicit_bounds(rho)
            nlo = np.maximum(nlo, ilo)
            if self.kind == "fdla":  # for the FMMC these are implied by w ≥ 0, W_ii ≥ 0
                lo, hi = np.maximum(lo, -r), np.minimum(hi, r)
                nhi = np.minimum(nhi, ihi)
            else:  # implied by w ≥ 0 and the node sums: keeps the LP box finite
                cap = np.minimum(nhi[self.edges[:, 0]], nhi[self.edges[:, 1]])
                hi = np.minimum(hi, np.maximum(cap, lo))
        use_t = self.costs is not None and self.kind == "fdla"
        nx_ = m + (m if use_t else 0)
        blocks, rhs = [], []
        fin = np.isfinite(nhi)
        if fin.any():
            blocks.append(self.inc[fin])
            rhs.append(nhi[fin])
        fin = np.isfinite(nlo)
        if fin.any():
            blocks.append(-self.inc[fin])
            rhs.append(-nlo[fin])
        A = sps.vstack(blocks, format="csr") if blocks else sps.csr_matrix((0, m))
        if use_t:
            A = sps.hstack([A, sps.csr_matrix((A.shape[0], m))], format="csr")
            I = sps.identity(m, format="csr")
            A = sps.vstack([A, sps.hstack([I, -I]), sps.hstack([-I, -I]),
                            sps.csr_matrix(np.concatenate([np.zeros(m), self.costs])[None, :])],
                           format="csr")
            rhs += [np.zeros(2 * m), [self.budget]]
            tl = np.zeros(m)
            th = np.where(np.isfinite(lo) & np.isfinite(hi), np.maximum(np.abs(lo), np.abs(hi)),
                          np.inf)
            lo, hi = np.concatenate([lo, tl]), np.concatenate([hi, th])
        elif self.costs is not None:  # FMMC: w ≥ 0 so |w| = w
            A = sps.vstack([A, sps.csr_matrix(self.costs[None, :])], format="csr")
            rhs.append([self.budget])
        b = np.concatenate([np.asarray(r, float) for r in rhs]) if rhs else np.zeros(0)
        return A, b, lo, hi, nx_

    # --- feasibility --------------------------------------------------------------------------
    def repair(self, w: np.ndarray) -> np.ndarray:
        """w moved exactly inside the user box and (for the FMMC) onto W_ii ≥ 0 where it is off
        by rounding only, then :meth:`verify`-ed; a RuntimeError names a real violation."""
        w = np.clip(np.asarray(w, float), self.lo, self.hi)
        if self.kind == "fmmc":
            w = np.maximum(w, 0.0)
            for _ in range(3):
                s = self.inc @ w
                over = s > self.node_hi
                if not over.any():
                    break
                excess = s - self.node_hi
                if excess.max() > 1e-6:
                    break
                # scale incident weights of over-full nodes down (only lowers sums; stays ≥ 0)
                f = np.ones(self.n)
                f[over] = self.node_hi[over] / s[over]
                w = w * np.minimum(f[self.edges[:, 0]], f[self.edges[:, 1]])
        if self.costs is not None:
            cost = float(self.costs @ np.abs(w))
            if cost > self.budget and cost - self.budget <= 1e-6 and cost > 0:
                w = w * (max(self.budget, 0.0) / cost)
        self.verify(w)
        return w

    def verify(self, w: np.ndarray) -> None:
        """Raise RuntimeError naming every constraint w violates beyond :data:`FEAS_TOL`."""
        bad = []
        if (w < self.lo - FEAS_TOL).any() or (w > self.hi + FEAS_TOL).any():
            bad.append("edge bounds (W ≥ 0 / edge_weight_max)")
        s = self.inc @ w
        if (s > self.node_hi + FEAS_TOL).any():
            k = int(np.argmax(s - self.node_hi))
            bad.append(f"self-weight W_ii ≥ 0 at node {self.labels[k]!r} (W_ii = "
                       f"{self.node_hi[k] - s[k]:.3g})")
        if (s < self.node_lo - FEAS_TOL).any():
            k = int(np.argmax(self.node_lo - s))
            bad.append(f"self_weight_max at node {self.labels[k]!r}")
        if self.costs is not None and self.costs @ np.abs(w) > self.budget + FEAS_TOL:
            bad.append(f"cost_budget (uses {self.costs @ np.abs(w):.6g} of {self.budget:.6g} "
                       "free)")
        if not np.all(np.isfinite(w)):
            bad.append("finite weights")
        if bad:
            raise RuntimeError("the solver's weights violate " + "; ".join(bad) +
                               f" beyond {FEAS_TOL:g}: refusing to return them")

    def check_feasible(self) -> None:
        """Raise a clear ValueError if the feasible set C is empty (LP feasibility, HiGHS)."""
        from scipy.optimize import linprog

        A, b, lo, hi, nx_ = self.lp_rows(None)
        res = linprog(np.zeros(nx_), A_ub=A if A.shape[0] else None,
                      b_ub=b if A.shape[0] else None, bounds=list(zip(lo, hi, strict=True)),
                      method="highs")
        if res.status == 2:
            raise ValueError("the constraint set is infeasible: no edge weights satisfy the given "
                             "self_weight_max / edge_weight_max / fixed_edges / cost_budget "
                             f"together{' with W ≥ 0' if self.kind == 'fmmc' else ''} "
                             f"(HiGHS: {res.message})")


# =============================================================================================
# building a problem from a graph and constraints
# =============================================================================================
KINDS = ("fmmc", "fdla")


def check_simple_graph(G: Any) -> None:
    """Refuse graphs whose edges are not one symmetric weight each: directed graphs and
    multigraphs (ValueError naming the graph type); then :func:`theory.mixing.validate_graph`."""
    if isinstance(G, nx.Graph) and (G.is_directed() or G.is_multigraph()):
        kind = type(G).__name__
        fix = "G.to_undirected()" if G.is_directed() else "nx.Graph(G)"
        why = ("a symmetric W has one weight per undirected edge" if G.is_directed() else
               "parallel edges would have to share one weight")
        raise ValueError(f"G must be a simple undirected networkx.Graph, not a {kind}: {why}; "
                         f"convert it with {fix} if that is what you mean")
    validate_graph(G)  # type, n ≥ 2, self-loop-only nodes, connectivity: clear errors


def _per_edge(name: str, value: Any, keyset: dict[tuple[int, int], int], idx: dict
              ) -> dict[tuple[int, int], float]:
    """Map a scalar or {edge: value} argument onto normalised edges (i < j)."""
    out: dict[tuple[int, int], float] = {}
    if value is None:
        return out
    if isinstance(value, Mapping):
        for key, x in value.items():
            e = _norm_edge(name, key, idx, keyset)
            out[e] = checks.finite(f"{name}[{key!r}]", x)
        return out
    x = checks.finite(name, value)
    return dict.fromkeys(keyset, x)


def _norm_edge(name: str, key: Any, idx: dict, keyset: Mapping) -> tuple[int, int]:
    try:
        u, v = key
    except (TypeError, ValueError):
        raise ValueError(f"{name}: edges must be pairs (u, v); got {key!r}") from None
    if u not in idx or v not in idx:
        raise ValueError(f"{name}: ({u!r}, {v!r}) has a node that is not in the graph")
    i, j = sorted((idx[u], idx[v]))
    if (i, j) not in keyset:
        raise ValueError(f"{name}: ({u!r}, {v!r}) is not an edge of the graph")
    return (i, j)


def design_problem(G: nx.Graph, kind: str, *, self_weight_max: Any = None,
                   edge_weight_max: Any = None, fixed_edges: Mapping | None = None,
                   zero_edges: Iterable | None = None, edge_costs: Any = None,
                   cost_budget: float | None = None) -> DesignProblem:
    """The :class:`DesignProblem` of G with the constraints of :func:`theory.design.
    fastest_mixing` (validated: clear ValueErrors for bad graphs, edges, values and infeasible
    combinations, the last by an LP feasibility check)."""
    checks.one_of("kind", kind, KINDS)
    check_simple_graph(G)
    nodes = node_order(G.nodes)
    idx = {u: k for k, u in enumerate(nodes)}
    n = len(nodes)
    H = nx.Graph()
    H.add_nodes_from(range(n))
    H.add_edges_from((idx[u], idx[v]) for u, v in G.edges if u != v)
    all_edges = sorted(tuple(sorted(e)) for e in H.edges)
    keyset = {e: k for k, e in enumerate(all_edges)}

    zero = set()
    for key in zero_edges or ():
        zero.add(_norm_edge("zero_edges", key, idx, keyset))
    fixed = _per_edge("fixed_edges", fixed_edges, keyset, idx) if fixed_edges else {}
    both = zero & set(fixed)
    if both:
        raise ValueError(f"edge {next(iter(both))} is both in zero_edges and fixed_edges")
    if kind == "fmmc":
        neg = [e for e, x in fixed.items() if x < 0]
        if neg:
            raise ValueError(f"fixed_edges: weight {fixed[neg[0]]} on {neg[0]} is negative, "
                             "which the fastest-mixing Markov chain (W ≥ 0) forbids")
    support = nx.Graph()
    support.add_nodes_from(range(n))
    support.add_edges_from(e for e in all_edges if e not in zero
                           and not (e in fixed and fixed[e] == 0.0))
    if not nx.is_connected(support):
        raise ValueError("zero_edges / fixed_edges (with weight 0) disconnect the graph: every "
                         "W on the remaining edges has ζ = 1 (infeasible design)")

    free = [e for e in all_edges if e not in zero and e not in fixed]
    if not free:
        raise ValueError("no free edge left to design (all edges are fixed or zero)")
    fe = np.array(sorted(fixed), dtype=int).reshape(-1, 2)
    fw = np.array([fixed[tuple(e)] for e in fe], dtype=float)
    E = np.array(free, dtype=int).reshape(-1, 2)
    m = len(E)

    lo = np.full(m, 0.0 if kind == "fmmc" else -np.inf)
    hi = np.full(m, np.inf)
    caps = _per_edge("edge_weight_max", edge_weight_max, keyset, idx)
    for e, c in caps.items():
        if e in fixed and fixed[e] > c + FEAS_TOL:
            raise ValueError(f"fixed_edges: weight {fixed[e]} on {e} exceeds edge_weight_max "
                             f"{c} (infeasible constraints)")
    free_pos = {e: k for k, e in enumerate(free)}
    for e, c in caps.items():
        if e in free_pos:
            hi[free_pos[e]] = c
    if (hi < lo).any():
        k = int(np.argmax(hi < lo))
        raise ValueError(f"edge_weight_max {hi[k]} on edge {tuple(E[k])} is below the lower "
                         f"bound {lo[k]} (weights must be ≥ 0 for the FMMC): infeasible")

    prob = DesignProblem(kind=kind, n=n, graph=H, labels=nodes, edges=E, fixed_edges=fe,
                         fixed_w=fw, lo=lo, hi=hi, node_lo=np.full(n, -np.inf),
                         node_hi=np.full(n, np.inf))
    fs = prob.fixed_sum
    if kind == "fmmc":
        prob.node_hi = 1.0 - fs  # W_ii ≥ 0
    if self_weight_max is not None:
        if isinstance(self_weight_max, Mapping):
            cap = np.full(n, np.inf)
            for u, c in self_weight_max.items():
                if u not in idx:
                    raise ValueError(f"self_weight_max: node {u!r} is not in the graph")
                cap[idx[u]] = checks.finite(f"self_weight_max[{u!r}]", c)
        else:
            cap = np.full(n, checks.finite("self_weight_max", self_weight_max))
        if kind == "fmmc" and (cap < 0).any():
            raise ValueError(f"self_weight_max must be ≥ 0 for the FMMC (W_ii ≥ 0); got "
                             f"{cap.min()}: infeasible")
        prob.node_lo = 1.0 - cap - fs  # W_ii = 1 − Σ_j w_ij ≤ cap
    if (edge_costs is None) != (cost_budget is None):
        raise ValueError("give both edge_costs and cost_budget (or neither)")
    if edge_costs is not None:
        costs = _per_edge("edge_costs", edge_costs, keyset, idx)
        if any(c < 0 for c in costs.values()):
            raise ValueError("edge_costs must be ≥ 0")
        B = checks.nonneg("cost_budget", cost_budget)
        used = sum(costs.get(tuple(e), 0.0) * abs(x) for e, x in zip(fe, fw, strict=True))
        prob.costs = np.array([costs.get(tuple(e), 0.0) for e in E])
        prob.budget = B - used
        if prob.budget < -FEAS_TOL:
            raise ValueError(f"fixed_edges already cost {used:.6g} > cost_budget {B:.6g}: "
                             "infeasible")
    prob.check_feasible()
    return prob


# =============================================================================================
# result type
# =============================================================================================
@dataclass(frozen=True, eq=False)
class DesignResult:
    """A designed mixing matrix with its optimality certificate.

    Attributes:
        W: n × n numpy array (rows/cols in the order of ``labels``).
        mixing: the same W as a validated :class:`~theory.mixing.MixingMatrix`.
        zeta: ζ(W) = ‖W − J‖₂; spectral_gap: 1 − ζ.
        lower_bound: a proven lower bound on the optimal ζ* of the (relaxed) design problem.
        relative_gap: (ζ − lower_bound)/(1 − ζ): how much spectral gap could still be gained,
            relative to the gap we have (0 = certified optimal).
        kind: "fmmc" or "fdla"; method: "sdp", "symmetric", "first_order", ...
        solver, status, solve_time (s, wall), iterations (first-order; None for SDP).
        weights: {(u, v): w_uv} in the caller's node labels; labels: node order of W.
    """

    W: np.ndarray
    mixing: MixingMatrix
    zeta: float
    spectral_gap: float
    lower_bound: float
    relative_gap: float
    kind: str
    method: str
    solver: str
    status: str
    solve_time: float
    iterations: int | None = None
    weights: dict = field(default_factory=dict, repr=False)
    labels: list = field(default_factory=list, repr=False)
    info: dict = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        it = f", {self.iterations} it" if self.iterations is not None else ""
        return (f"DesignResult({self.kind.upper()} on n={self.W.shape[0]} via {self.method}/"
                f"{self.solver}: ζ={self.zeta:.8g} (gap {self.spectral_gap:.4g}), lower bound "
                f"{self.lower_bound:.8g}, relative gap {self.relative_gap:.2e}, "
                f"status {self.status!r}, {self.solve_time:.3g} s{it})")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-friendly except W, which is a nested list)."""
        return {"kind": self.kind, "method": self.method, "solver": self.solver,
                "status": self.status, "zeta": self.zeta, "spectral_gap": self.spectral_gap,
                "lower_bound": self.lower_bound, "relative_gap": self.relative_gap,
                "solve_time": self.solve_time, "iterations": self.iterations,
                "labels": list(self.labels), "W": self.W.tolist()}


def relative_gap(zeta: float, lower_bound: float) -> float:
    """(ζ − lower bound)/(1 − ζ): the share of the spectral gap a perfect solver could add."""
    return (zeta - lower_bound) / (1 - zeta) if zeta < 1 else math.inf


def make_result(prob: DesignProblem, w: np.ndarray, lb: float, *, method: str, solver: str,
                status: str, t0: float, iterations: int | None = None,
                info: dict | None = None) -> DesignResult:
    """The :class:`DesignResult` of weights w (repaired and verified) with lower bound lb."""
    w = prob.repair(w)
    A = prob.W(w)
    A = (A + A.T) / 2
    if prob.kind == "fmmc":
        A[np.diag_indices(prob.n)] = np.maximum(A.diagonal(), 0.0)
    mix = MixingMatrix(A, graph=prob.graph, rule=prob.kind, labels=tuple(prob.labels),
                       name=f"{prob.kind.upper()} ({method})",
                       nonnegative_required=prob.kind == "fmmc")
    z = mix.zeta
    lb = min(float(lb), z)
    return DesignResult(W=np.array(mix.matrix), mixing=mix, zeta=z, spectral_gap=1 - z,
                        lower_bound=lb, relative_gap=max(relative_gap(z, lb), 0.0),
                        kind=prob.kind, method=method, solver=solver, status=status,
                        solve_time=time.perf_counter() - t0, iterations=iterations,
                        weights=prob.edge_dict(w), labels=list(prob.labels), info=info or {})


__all__ = [
    "FEAS_TOL", "KINDS", "DesignProblem", "DesignResult", "Edge", "Progress", "ProgressFn",
    "check_simple_graph", "design_problem", "make_result", "progress_reporter", "relative_gap",
]
