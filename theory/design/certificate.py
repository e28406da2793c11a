"""Duality-gap certificates: a proven lower bound on ζ* from any symmetric Y (eq. (4)).

For any symmetric Y and feasible w, ζ(W(w)) ≥ ⟨Y, W − J⟩/‖Y‖_*, and ⟨Y, W(w)⟩ = ⟨Y, W₀⟩ −
Σ_e w_e d_e(Y) with d_e(Y) = Y_ii + Y_jj − 2Y_ij. Minimising over the feasible weights is a linear
programme whose value :func:`support_upper` bounds from above with *any* non-negative LP
multiplier (LP duality), so :func:`lower_bound` is valid however inaccurate the solver that
produced Y or the multipliers (up to floating-point rounding, ~1e−13). See :mod:`theory.design`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from theory.design.problem import DesignProblem


def support_upper(prob: DesignProblem, d: np.ndarray, rho: float) -> float:
    """A rigorous upper bound on max_{w ∈ C_ρ} dᵀw (LP duality with any y ≥ 0)."""
    from scipy.optimize import linprog

    A, b, lo, hi, nx_ = prob.lp_rows(rho)
    c = np.zeros(nx_)
    c[: prob.m] = d
    y = np.zeros(A.shape[0])
    scale = float(np.max(np.abs(c))) if len(c) else 0.0
    if A.shape[0] and scale > 0:
        # HiGHS's tolerances are absolute (1e−7): the costs d_e are often ~1e−6 (eigenvector
        # differences), so solve with costs scaled to max 1 and scale the multipliers back
        res = linprog(-c / scale, A_ub=A, b_ub=b, bounds=list(zip(lo, hi, strict=True)),
                      method="highs")
        if res.status == 0 and res.ineqlin is not None:
            y = np.maximum(0.0, -np.asarray(res.ineqlin.marginals, float)) * scale
    r = c - (A.T @ y if A.shape[0] else 0.0)
    with np.errstate(invalid="ignore"):
        box = np.where(r > 0, r * hi, np.where(r < 0, r * lo, 0.0))
    if not np.all(np.isfinite(box)):
        return math.inf
    return float(b @ y + box.sum())


@dataclass(frozen=True)
class DualStats:
    """What the certificate (and the bundle's aggregate) needs of a dual matrix Y = Σ ± Y_k
    (each Y_k ⪰ 0 and ⊥ 1), without Y itself: all of it is linear in Y.

    Attributes:
        value: ⟨Y, W₀ − J⟩.
        nuclear: Σ_k tr Y_k, an upper bound on ‖Y‖_* (equal to it when Y has one sign).
        d: d_e(Y) = Y_ii + Y_jj − 2Y_ij on the free edges, so ⟨Y, W(w)⟩ = ⟨Y, W₀⟩ − dᵀw.
    """

    value: float
    nuclear: float
    d: np.ndarray

    def __add__(self, other: DualStats) -> DualStats:
        return DualStats(self.value + other.value, self.nuclear + other.nuclear,
                         self.d + other.d)


def dual_stats(prob: DesignProblem, V: np.ndarray, S: np.ndarray, sign: float = 1.0
               ) -> DualStats:
    """The :class:`DualStats` of sign · V S₊ Vᵀ, S₊ the projection of S onto the PSD cone
    (V: n × k with columns ⊥ 1)."""
    if V.shape[1] == 0:
        return DualStats(0.0, 0.0, np.zeros(prob.m))
    S = (S + S.T) / 2
    lam, U = np.linalg.eigh(S)
    lam = np.clip(lam, 0.0, None)
    Rt = V @ (U * np.sqrt(lam))  # n × k: Y_part = Rt Rtᵀ (S = U Λ Uᵀ)
    mean = Rt.sum(axis=0)
    value = float(np.sum(Rt * (prob.W0() @ Rt))) - float(mean @ mean) / prob.n
    D = Rt[prob.edges[:, 0]] - Rt[prob.edges[:, 1]]
    return DualStats(sign * value, float(np.sum(Rt * Rt)), sign * np.sum(D * D, axis=1))


def bound_from_stats(prob: DesignProblem, stats: DualStats, rho: float) -> float:
    """Lower bound (4) on ζ*: (⟨Y, W₀ − J⟩ − max_{w ∈ C_ρ} d(Y)ᵀw)/‖Y‖_* (−inf for Y = 0).
    ``rho``: ζ of a feasible W (≥ ζ*)."""
    if stats.nuclear <= 0:
        return -math.inf
    return (stats.value - support_upper(prob, stats.d, rho)) / stats.nuclear


def lower_bound(prob: DesignProblem, parts: Sequence[tuple[np.ndarray, np.ndarray, float]],
                rho: float) -> float:
    """Lower bound (4) on ζ* from Y = Σ sign · V S Vᵀ (each S projected onto the PSD cone).

    ``parts``: (V (n × k), S (k × k), sign ±1). ``rho``: ζ of a feasible W (≥ ζ*)."""
    stats = DualStats(0.0, 0.0, np.zeros(prob.m))
    for V, S, sign in parts:
        stats = stats + dual_stats(prob, V, S, sign)
    return bound_from_stats(prob, stats, rho)


__all__ = ["DualStats", "bound_from_stats", "dual_stats", "lower_bound", "support_upper"]
