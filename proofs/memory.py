"""Obligations for memory-based distributed SGD (theory.bounds.memory)."""

from __future__ import annotations

import numpy as np
import sympy as sp

from proofs.core import checked, obligation, proved, require
from theory.bounds import memory as mem
from theory.bounds.local_pl import G2
from theory.symbols import delta, eta, omega

SIZES = ((1, 1), (2, 3), (3, 4), (4, 2), (5, 3))


def _transformation(momentum: bool) -> object:
    for p_, n_ in SIZES:
        te = mem.transformation_equation(p_, n_, d=2, momentum=momentum)
        require(te.holds(), f"virtual sequence ≠ DSGD for p={p_}, n={n_}: {te.differences()}")
        # not vacuous: the memory is non-zero and the compressor outputs appear in it
        last = te.memory[-1][0]
        require(any(e.free_symbols & set(te.compressed) for e in last),
                "memory does not depend on the compressor outputs (vacuous check)")
        require(any(e != 0 for e in te.virtual[-1] - te.virtual[0]), "no progress (vacuous)")
    return proved(f"symbolic unrolling with arbitrary C(u) symbols, d = 2, (p, n) ∈ {SIZES}: "
                  "w_t − mean_k m_(t,k) − DSGD iterate expands to 0 at every t")


@obligation(mem.transformation_equation)
def mdsgd_transformation_vanilla() -> object:
    """M-DSGD's virtual sequence w̃_t = w_t − mean_k m_{t,k} is DSGD, any compressor."""
    return _transformation(momentum=False)


@obligation(mem.transformation_equation)
def mdsgd_transformation_momentum() -> object:
    """With local heavy-ball momentum, the virtual sequence is momentum DSGD."""
    return _transformation(momentum=True)


@obligation(mem.memory_bound, mem.ef_step, "theory.bounds.memory.RHO_STAR")
def ef_memory_fixed_point() -> object:
    """The EF memory bound is the fixed point of the one-step recursion, and ≤ 4(1−δ)η²G²/δ²."""
    q, r = mem.ef_step()
    bnd = mem.memory_bound().expr
    qs, rs = q.subs(mem.rho, mem.RHO_STAR), r.subs(mem.rho, mem.RHO_STAR)
    require(sp.simplify(qs - (1 - delta / 2)) == 0, f"q(ρ*) = {qs}, expected 1 − δ/2")
    require(sp.simplify(qs * bnd + rs - bnd) == 0, "bound is not the fixed point q·B + r = B")
    gap = sp.factor(sp.simplify(4 * (1 - delta) * eta**2 * G2 / delta**2 - bnd))
    require(sp.simplify(gap - 2 * (1 - delta) * eta**2 * G2 / delta) == 0, f"4(1−δ)/δ² − B = {gap}")
    # Young: (1+ρ)a² + (1+1/ρ)b² − (a+b)² = (√ρ a − b/√ρ)² ≥ 0
    a_, b_ = sp.symbols("a b", real=True)
    young = (1 + mem.rho) * a_**2 + (1 + 1 / mem.rho) * b_**2 - (a_ + b_) ** 2
    require(sp.simplify(young - (sp.sqrt(mem.rho) * a_ - b_ / sp.sqrt(mem.rho)) ** 2) == 0,
            "Young's inequality step")
    bu = mem.memory_bound("unbiased").expr
    require(sp.simplify(bu - bnd.subs(delta, 1 / (1 + omega))) == 0, "unbiased variant")
    return proved("q(ρ*) = 1 − δ/2, q·B + r = B, 4(1−δ)η²G²/δ² − B = 2(1−δ)η²G²/δ ≥ 0, Young's "
                  "step is a square; unbiased form = δ → 1/(1+ω)")


@obligation(mem.delta_from_omega)
def rescaled_unbiased_contraction() -> object:
    """C/(1+ω) of an unbiased ω-compressor is a δ = 1/(1+ω) contraction."""
    x2, w = sp.symbols("x2 omega", nonnegative=True)
    # E‖x − C/(1+ω)‖² = ‖x‖² − 2‖x‖²/(1+ω) + E‖C‖²/(1+ω)², with E‖C‖² ≤ (1+ω)‖x‖²
    worst = x2 - 2 * x2 / (1 + w) + (1 + w) * x2 / (1 + w) ** 2
    dl = mem.delta_from_omega(w)
    require(sp.simplify(worst - (1 - dl) * x2) == 0, f"(1 − δ)‖x‖² ≠ {worst}")
    return proved("E‖x − C(x)/(1+ω)‖² ≤ (1 − 1/(1+ω))‖x‖² by expanding the square")


@obligation(mem.memory_bound)
def ef_memory_bound_numeric() -> object:
    """Simulated error feedback with top-k never exceeds the memory bound (‖g‖² ≤ G²)."""
    rng = np.random.default_rng(7)
    f = sp.lambdify((delta, eta, G2), mem.memory_bound().expr)
    n = 0
    worst = 0.0
    for _ in range(20):
        d = int(rng.integers(2, 50))
        k = int(rng.integers(1, d + 1))
        e, G = float(rng.uniform(0.01, 1.0)), float(rng.uniform(0.1, 10.0))
        bound = float(f(k / d, e, G**2))
        m_ = np.zeros(d)
        for _t in range(300):
            g = rng.standard_normal(d)
            g *= G * rng.uniform(0, 1) / np.linalg.norm(g)  # ‖g‖ ≤ G
            u = m_ + e * g
            keep = np.argsort(-np.abs(u))[:k]
            c = np.zeros(d)
            c[keep] = u[keep]
            m_ = u - c
            require(m_ @ m_ <= bound * (1 + 1e-12), f"‖m‖² = {m_ @ m_} > bound {bound}")
            worst = max(worst, float(m_ @ m_) / bound if bound > 0 else 0.0)
            n += 1
    return checked(n, f"top-k error feedback, random (d, k, η, G), 300 steps each; max ‖m‖²/bound "
                      f"= {worst:.3f}")
