"""Error at a wall-clock budget for decentralized periodic averaging, and the joint choice of
topology (mixing weights) and communication period τ.

Runtime model (the AdaComm model of Wang & Joshi, SysML 2019, extended to a topology —
**derived**; the JMLR Cooperative SGD paper has no runtime model): each local
step costs ``Y`` seconds; each communication round costs ``D(W)`` seconds, so a round of τ steps
takes ``τY + D(W)`` and a budget ``T_wall`` buys ``K = T_wall/(Y + D(W)/τ)`` iterations.

``D(W)`` (:func:`topology_delay`, our choice): every node sends its model to each of its
neighbours one message after the other, and a round ends when the slowest node is done::

    D(W) = base + max_i Σ_{j ≠ i, W_ij ≠ 0} c_ij        (c_ij = latency, or per-edge costs)

so a ring costs 2·latency, a hypercube of dimension d costs d·latency, and W = J costs
(n − 1)·latency (a naive all-to-all; pass ``delay=`` to model an all-reduce instead).

:func:`decentralized_runtime_bound` substitutes that K into the general Cooperative SGD bound
(:func:`theory.bounds.cooperative.cooperative_bound`, JMLR Theorem 1, quoted) — the composition is
**derived**:

    2ΔF(m+v)/(mη T_wall)·(Y + D/τ) + mηLσ²/(m(m+v)) + η²L²σ²((1+ζ²)/(1−ζ²)τ − 1),

which at ζ = 0, v = 0 is the AdaComm bound (:func:`theory.bounds.cooperative.runtime_bound`), and
its minimiser τ* = sqrt(2ΔF·D(m+v)(1−ζ²)/(m η³L²σ² T_wall (1+ζ²))) reduces to AdaComm's τ*.
Theorem 1's learning-rate condition (JMLR eq. 145) comes along with the bound: it bounds τ for a
given η, and the search for τ respects it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import sympy as sp

from theory import checks
from theory.bound import Bound, ConditionError, Source, Status
from theory.bounds.cooperative import cooperative_bound
from theory.bounds.registry import register
from theory.mixing import ATOL, MixingMatrix, as_mixing
from theory.symbols import D, K, T_wall, Y, keyword, tau


def topology_delay(W: Any, *, latency: float = 1.0, edge_costs: Any = None,
                   base: float = 0.0) -> float:
    """``D(W) = base + max_i Σ_{j≠i, W_ij≠0} c_ij``: per-round communication time of a topology
    (see the module docstring). ``edge_costs`` is an n × n array of per-message costs c_ij (only
    entries on edges of W are used); otherwise every message costs ``latency``. W = I costs
    ``base``."""
    Wm = as_mixing(W)
    latency, base = checks.nonneg("latency", latency), checks.nonneg("base", base)
    A = np.asarray(Wm.matrix)
    edges = np.abs(A) > ATOL
    np.fill_diagonal(edges, False)
    if edge_costs is None:
        c = np.full(A.shape, float(latency))
    else:
        c = np.asarray(edge_costs, dtype=float)
        if c.shape != A.shape:
            raise ValueError(f"edge_costs must be {A.shape[0]}×{A.shape[0]} like W; got shape "
                             f"{c.shape}")
        bad = edges & ~(np.isfinite(c) & (c >= 0))
        if bad.any():
            i, j = map(int, np.argwhere(bad)[0])
            raise ValueError(f"edge_costs must be finite and ≥ 0 on the edges of W "
                             f"(edge ({i}, {j}) costs {float(c[i, j]):g})")
    per_node = np.where(edges, c, 0.0).sum(axis=1)
    return float(base + (per_node.max() if per_node.size else 0.0))


def iterations_within(T_wall_: float, Y_: float, D_: float, tau_: int) -> float:
    """``K = T_wall/(Y + D/τ)``: iterations that fit in the budget (rounds of τY + D seconds)."""
    T_wall_, Y_ = checks.positive("T_wall", T_wall_), checks.positive("Y", Y_)
    D_, tau_ = checks.nonneg("D", D_), checks.integer("tau", tau_, lo=1)
    return T_wall_ / (Y_ + D_ / tau_)


RUNTIME_SOURCE = Source(
    "derived from Wang & Joshi, Cooperative SGD, JMLR 22(213), 2021, with the runtime model of "
    "Wang & Joshi, AdaComm, SysML 2019",
    "Theorem 1 (JMLR eqs. 16–17, condition eq. 145) with K = T_wall/(Y + D(W)/τ)",
    Status.DERIVED, digest="1.0, 1.9",
    note="this toolkit's composition: the JMLR paper has no runtime model; the AdaComm model is "
         "recalled, not checked against the AdaComm text")


@cache
def decentralized_runtime_bound() -> Bound:
    """Error of A(τ, W, v) within wall-clock ``T_wall``: Theorem 1 (JMLR eqs. 16–17, condition
    eq. 145) with K = T_wall/(Y + D(W)/τ) [derived; see the module docstring].
    Symbols: eta, L, sigma2, m, v, tau, zeta, F_gap, Y, D, T_wall."""
    b = cooperative_bound()
    K_wall = T_wall / (Y + D / tau)
    terms = {k: t.subs(K, K_wall) for k, t in b.terms.items()}
    return Bound("A(τ, W, v) error vs wall-clock", sp.Add(*terms.values()), RUNTIME_SOURCE,
                 terms=terms, lhs="E[(1/K) Σ_k ‖∇F(u_k)‖²] within wall-clock T_wall",
                 conditions=b.conditions, definitions={**b.definitions, K: K_wall},
                 lhs_latex=r"\mathbb{E}\Big[\frac{1}{K}\sum_{k=1}^{K}\|\nabla F(u_k)\|^2\Big]"
                           r"\ \text{within wall-clock } T_{\mathrm{wall}}")


@cache
def optimal_tau_decentralized() -> sp.Expr:
    """Closed-form τ* of :func:`decentralized_runtime_bound` (``Bound.minimize`` over τ with the
    other symbols free): sqrt(2ΔF·D(m+v)(1−ζ²)/(m η³L²σ² T_wall (1+ζ²))) [derived]."""
    return sp.simplify(decentralized_runtime_bound().minimize(tau).argmin)


@dataclass(frozen=True)
class TopologyChoice:
    """One row of :func:`best_topology_and_tau`: a candidate W with its ζ, D(W), best integer τ
    and the bound's value there (``inf`` when ζ ≥ 1: no consensus, the bound is infinite)."""

    name: str
    W: MixingMatrix
    v: int
    zeta: float
    D: float
    tau: int | None
    value: float
    tau_continuous: float | None

    def __str__(self) -> str:
        t = "-" if self.tau is None else str(self.tau)
        return (f"{self.name:<28} ζ={self.zeta:<9.6g} D={self.D:<9.4g} τ*={t:<6} "
                f"bound={self.value:.6g}")


@dataclass(frozen=True)
class JointChoice:
    """Result of :func:`best_topology_and_tau`: ``best`` and the full ``table`` (sorted by
    value)."""

    best: TopologyChoice
    table: tuple[TopologyChoice, ...]

    def __str__(self) -> str:
        return "\n".join(["best: " + str(self.best), *("  " + str(r) for r in self.table)])


def best_topology_and_tau(
    candidates: Mapping[str, Any],
    values: Mapping[str, float],
    *,
    delay: Callable[[MixingMatrix], float] | None = None,
    latency: float = 1.0,
    tau_max: int | None = None,
) -> JointChoice:
    """Choose (W, τ) minimising :func:`decentralized_runtime_bound` at a fixed budget.

    Args:
        candidates: name → MixingMatrix (v = 0) or (MixingMatrix, v) for W with v auxiliary
            variables (e.g. EASGD's W_α, v = 1); any W works: ``theory.mixing.ring(16)``, an
            array, or a ``theory.design.fastest_mixing`` result (its ``.mixing`` is used).
        values: eta, L, sigma2, F_gap, Y, T_wall (keyword names); m is taken as W.n − v.
        delay: D(W) in seconds; default :func:`topology_delay` with ``latency``.
        tau_max: largest τ searched (default: the number of steps the budget allows, T_wall/Y).

    For each W: ζ = ``W.zeta``, D = delay(W), then the best integer τ by ``Bound.minimize``
    (closed form rounded to the better of floor/ceil). Returns the best pair and the table.
    Every τ is searched under Theorem 1's learning-rate condition (JMLR eq. 145; for W = J,
    v = 0 it is Corollary 2's ηL + η²L²τ(τ−1) ≤ 1). A W with no admissible τ gets value inf.
    """
    need = {"eta", "L", "sigma2", "F_gap", "Y", "T_wall"}
    given = {keyword(k) if not isinstance(k, str) else k for k in values}
    if missing := need - given:
        raise ValueError(f"values is missing {', '.join(sorted(missing))}")
    if extra := given - need:
        raise ValueError(f"values must not fix {', '.join(sorted(extra))} (they come from each "
                         "candidate W and the search)")
    if not candidates:
        raise ValueError("candidates must contain at least one mixing matrix")
    vals = {k if isinstance(k, str) else keyword(k): float(x) for k, x in values.items()}
    cap = (checks.integer("tau_max", tau_max, lo=1) if tau_max is not None
           else max(1, math.floor(vals["T_wall"] / vals["Y"])))
    b = decentralized_runtime_bound()
    rows = []
    for name, cand in candidates.items():
        W, v_ = (cand if isinstance(cand, tuple) else (cand, 0))
        W = getattr(W, "mixing", W)  # a theory.design.DesignResult carries its MixingMatrix
        W = as_mixing(W, name=f"candidates[{name!r}]")
        v_ = checks.integer(f"candidates[{name!r}]: v", v_, lo=0, hi=W.n, hi_strict=True)
        z = float(W.zeta)
        Dw = float(delay(W)) if delay is not None else topology_delay(W, latency=latency)
        if z >= 1 - 1e-12:
            rows.append(TopologyChoice(name, W, v_, z, Dw, None, math.inf, None))
            continue
        # Theorem 1's condition eq. 145 comes with the bound (Corollary 2's for W = J, v = 0)
        try:
            bw = b.subs(vals, zeta=z, D=Dw, m=W.n - v_, v=v_)
            if cap == 1:
                t_int, t_cont, val = 1, None, bw.evaluate(tau=1)
            else:
                opt = bw.minimize("tau", bounds=(1, cap))
                t_int, val = int(opt.argmin), float(opt.value)
                t_cont = float(opt.closed_form) if opt.closed_form is not None else None
        except ConditionError:  # no admissible τ (e.g. η_eff L > 1)
            rows.append(TopologyChoice(name, W, v_, z, Dw, None, math.inf, None))
            continue
        rows.append(TopologyChoice(name, W, v_, z, Dw, t_int, val, t_cont))
    rows.sort(key=lambda r: r.value)
    if not math.isfinite(rows[0].value):
        raise ValueError("no candidate has a finite bound: ζ = 1 (a disconnected W?) or no τ "
                         "meets the learning-rate condition (JMLR eq. 145; lower eta)")
    return JointChoice(rows[0], tuple(rows))


__all__ = [
    "RUNTIME_SOURCE", "JointChoice", "TopologyChoice", "best_topology_and_tau",
    "decentralized_runtime_bound", "iterations_within", "optimal_tau_decentralized",
    "topology_delay",
]


register("decentralized-runtime", decentralized_runtime_bound,
         description="A(τ, W, v) error within a wall-clock budget")
