"""Spectra of mixing matrices: ζ(W), the spectral gap, and closed forms where they exist.

ζ(W) := max(|λ₂(W)|, |λ_n(W)|) = ‖W − J‖₂ for symmetric doubly-stochastic W (J = 11ᵀ/n), the
second-largest eigenvalue magnitude of Cooperative SGD's Assumption 5 (Wang & Joshi, JMLR 2021).
The spectral gap is 1 − ζ. ζ = 1 when W's graph is disconnected (or W has eigenvalue −1, e.g. a
bipartite graph with zero self-weights): no bound with a (1 − ζ²) denominator is finite then.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import sympy as sp

from theory import checks
from theory.mixing import ATOL, as_mixing


def eigenvalues(W: Any) -> np.ndarray:
    """Eigenvalues of symmetric W in decreasing order (``numpy.linalg.eigvalsh``; a
    :class:`~theory.mixing.MixingMatrix` computes them once and keeps them)."""
    return as_mixing(W).eigenvalues


def zeta(W: Any) -> float:
    """ζ(W) = ‖W − 11ᵀ/n‖₂ = max(|λ₂|, |λ_n|) for a symmetric doubly-stochastic W.

    Args:
        W: :class:`~theory.mixing.MixingMatrix` (ζ read from its cached spectrum) or an n × n
            array (validated: symmetric, rows summing to 1).
    """
    return as_mixing(W).zeta


def spectral_gap(W: Any) -> float:
    """1 − ζ(W)."""
    return as_mixing(W).spectral_gap


def is_connected_spectrally(W: Any, tol: float = 1e-10) -> bool:
    """True iff ζ(W) < 1 − tol (consensus is reached by repeated mixing)."""
    return zeta(W) < 1 - tol


def consensus_rounds(W: Any, eps: float) -> int | float:
    """Rounds r so that ζ^r ≤ ε: ⌈log ε / log ζ⌉ (1 if ζ = 0: one mixing is exact averaging;
    ``inf`` if ζ ≥ 1).

    ‖X_r (I − J)‖ ≤ ζ^r ‖X_0 (I − J)‖ for repeated mixing with symmetric doubly-stochastic W."""
    checks.in_range("eps", eps, 0, 1, lo_strict=True, hi_strict=True)
    z = zeta(W)
    if z <= ATOL:
        return 1
    if z >= 1 - 1e-12:
        return math.inf
    return math.ceil(math.log(eps) / math.log(z))


# ---------------------------------------------------------------------------------------------
# closed forms
# ---------------------------------------------------------------------------------------------
def spectrum_exact(topology: str, *args: Any, alpha: Any = None) -> list[tuple[sp.Expr, int]]:
    """Exact spectrum as ``[(eigenvalue, multiplicity), ...]`` (sympy), for the default weights:

    * ``("ring", m)``: uniform 1/3 weights, λ_k = 1/3 + (2/3)cos(2πk/m), k = 0..m−1.
    * ``("path", n)``: Metropolis–Hastings (= I − 𝓛/3), λ_k = 1/3 + (2/3)cos(πk/n).
    * ``("torus", r, c)``: uniform 1/5, λ_{a,b} = (1 + 2cos(2πa/r) + 2cos(2πb/c))/5.
    * ``("hypercube", d)``: uniform 1/(d+1), λ_k = 1 − 2k/(d+1) with multiplicity C(d, k).
    * ``("complete", n)``: W = J, {1, 0 (×(n−1))}.
    * ``("easgd", m, alpha=α)``: W_α, {1, 1−α (×(m−1)), 1−(m+1)α} (JMLR eq. 22 and Appendix G).
    """
    t = topology.lower()
    if t == "ring":
        (m,) = args
        m = checks.integer("m", m, lo=3)
        lam = [sp.Rational(1, 3) + sp.Rational(2, 3) * sp.cos(2 * sp.pi * k / m) for k in range(m)]
        return _count(lam)
    if t == "path":
        (n,) = args
        n = checks.integer("n", n, lo=3)
        lam = [sp.Rational(1, 3) + sp.Rational(2, 3) * sp.cos(sp.pi * k / n) for k in range(n)]
        return _count(lam)
    if t == "torus":
        r, c = (checks.integer("rows", args[0], lo=3), checks.integer("cols", args[1], lo=3))
        lam = [(1 + 2 * sp.cos(2 * sp.pi * a / r) + 2 * sp.cos(2 * sp.pi * b / c)) / 5
               for a in range(r) for b in range(c)]
        return _count(lam)
    if t == "hypercube":
        (d,) = args
        d = checks.integer("dim", d, lo=1)
        return [(1 - sp.Rational(2 * k, d + 1), math.comb(d, k)) for k in range(d + 1)]
    if t == "complete":
        (n,) = args
        n = checks.integer("n", n, lo=1)
        return [(sp.Integer(1), 1)] + ([(sp.Integer(0), n - 1)] if n > 1 else [])
    if t == "easgd":
        (m,) = args
        if alpha is None:
            raise ValueError("easgd spectrum needs alpha=")
        m = sp.sympify(m)
        a = sp.sympify(alpha)
        out = [(sp.Integer(1), 1), (1 - (m + 1) * a, 1)]
        if m != 1:
            out.insert(1, (1 - a, m - 1))
        return out
    raise ValueError(f"no closed-form spectrum for topology {topology!r}; known: ring, path, "
                     "torus, hypercube, complete, easgd")


def _count(lam: list[sp.Expr]) -> list[tuple[sp.Expr, int]]:
    out: dict[sp.Expr, int] = {}
    for x in lam:
        x = sp.nsimplify(x) if x.is_Rational else x
        out[x] = out.get(x, 0) + 1
    return sorted(out.items(), key=lambda t: -float(t[0]))


def zeta_exact(topology: str, *args: Any, alpha: Any = None) -> sp.Expr:
    """Closed-form ζ for the topologies of :func:`spectrum_exact` (sympy).

    ``zeta_exact("ring", 16) == 1/3 + 2/3*cos(pi/8)``; the ring gives 1/3 + (2/3)cos(2π/m) for
    every m ≥ 3; the hypercube (d−1)/(d+1); the complete graph 0; EASGD
    max(|1−α|, |1−(m+1)α|) (symbolic α and m allowed)."""
    t = topology.lower()
    if t == "ring":
        (m,) = args
        m = checks.integer("m", m, lo=3)
        return sp.Rational(1, 3) + sp.Rational(2, 3) * sp.cos(2 * sp.pi / m)
    if t == "path":
        (n,) = args
        n = checks.integer("n", n, lo=3)
        return sp.Rational(1, 3) + sp.Rational(2, 3) * sp.cos(sp.pi / n)
    if t == "hypercube":
        (d,) = args
        d = checks.integer("dim", d, lo=1)
        return sp.Rational(d - 1, d + 1)
    if t == "complete":
        return sp.Integer(0)
    if t == "easgd":
        (m,) = args
        if alpha is None:
            raise ValueError("zeta_exact('easgd', m, alpha=...) needs alpha")
        m, a = sp.sympify(m), sp.sympify(alpha)
        if m == 1:
            return sp.Abs(1 - 2 * a)
        return sp.Max(sp.Abs(1 - a), sp.Abs(1 - (m + 1) * a))
    spec = spectrum_exact(topology, *args, alpha=alpha)
    rest = [lam for lam, k in spec for _ in range(k)]
    rest.remove(next(x for x in rest if sp.simplify(x - 1) == 0))
    return sp.Abs(max(rest, key=lambda x: abs(float(x))))


__all__ = [
    "consensus_rounds", "eigenvalues", "is_connected_spectrally", "spectral_gap",
    "spectrum_exact", "zeta", "zeta_exact",
]
