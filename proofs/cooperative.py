"""Obligations for Cooperative SGD (theory.bounds.cooperative) and the runtime bounds."""

from __future__ import annotations

import numpy as np
import sympy as sp

from proofs.core import checked, obligation, proved, require
from theory.bounds import cooperative as coop
from theory.bounds import runtime as rt
from theory.mixing import easgd_matrix, ring
from theory.spectral import zeta as zeta_num
from theory.symbols import D, F_gap, K, L, T_wall, Y, eta, m, sigma2, tau, v, zeta


def _zero(expr: sp.Expr) -> bool:
    return sp.simplify(sp.expand(expr)) == 0


@obligation("theory.bounds.cooperative.ETA_EFF")
def averaged_model_identity() -> object:
    """u_{k+1} = u_k − η_eff (1/m) Σ_i g_i for every W with W1 = 1 (generic symbolic W)."""
    sizes = [(2, 0), (3, 1), (2, 2), (4, 1)]
    d = 2
    for m_, v_ in sizes:
        n = m_ + v_
        w = sp.Matrix(n, n, lambda i, j: sp.Symbol(f"w_{i}_{j}"))
        for i in range(n):  # impose W 1 = 1 (row sums), nothing else
            w[i, n - 1] = 1 - sum(w[i, j] for j in range(n - 1))
        X = sp.Matrix(d, n, lambda a, j: sp.Symbol(f"x_{a}_{j}"))
        G = sp.Matrix(d, n, lambda a, j, m_=m_: sp.Symbol(f"g_{a}_{j}") if j < m_ else 0)
        one = sp.ones(n, 1)
        u = X * one / n
        u_next = (X - eta * G) * w * one / n
        gbar = G * one / m_
        claim = u - coop.ETA_EFF.subs({m: m_, v: v_}) * gbar
        require(all(_zero(e) for e in u_next - claim),
                f"averaged-model identity fails for m={m_}, v={v_}")
    return proved(f"generic W with W1 = 1, (m, v) ∈ {sizes}, d = {d}: u_(k+1) − u_k + "
                  "η_eff·mean_i g_i expands to 0")


@obligation(coop.cooperative_bound, coop.synchronous_bound, coop.pasgd_bound, coop.dpsgd_bound,
            coop.easgd_bound)
def special_cases_reduce() -> object:
    """Special cases of the general bound (substitutions) equal their textbook forms (§1.7)."""
    gen = coop.cooperative_bound().expr
    opt, var = 2 * F_gap / (eta * K), eta * L * sigma2 / m
    forms = {
        "synchronous A(1,J,0)": ({tau: 1, zeta: 0, v: 0}, opt + var, coop.synchronous_bound()),
        "PASGD A(τ,J,0)": ({zeta: 0, v: 0}, opt + var + eta**2 * L**2 * sigma2 * (tau - 1),
                           coop.pasgd_bound()),
        "D-PSGD A(1,W,0)": ({tau: 1, v: 0},
                            opt + var + eta**2 * L**2 * sigma2 * 2 * zeta**2 / (1 - zeta**2),
                            coop.dpsgd_bound()),
    }
    for name, (sub, expected, special) in forms.items():
        require(_zero(gen.subs(sub) - expected), f"{name}: general bound does not reduce")
        require(_zero(special.expr - expected), f"{name}: special-case function differs")
    # EASGD at α*: v = 1, network factor (m²+2m+2)/(2(m+1))
    e = coop.easgd_bound("optimal").expr
    fac = (m**2 + 2 * m + 2) / (2 * (m + 1))
    exp_e = (2 * F_gap * (m + 1) / (m * eta * K) + eta * L * sigma2 / (m + 1)
             + eta**2 * L**2 * sigma2 * (fac * tau - 1))
    require(_zero(e - exp_e), "EASGD at α* does not reduce to the expected form")
    return proved("sync, PASGD, D-PSGD (general bound substituted and special-case functions) "
                  "and EASGD at α* equal the digest §1.7 forms")


@obligation(coop.pasgd_dpsgd_crossover)
def pasgd_dpsgd_crossover() -> object:
    """τ_eq = (1+ζ²)/(1−ζ²) equalises the error floors; ring(16) gives ≈ 19.22."""
    te = coop.pasgd_dpsgd_crossover()
    require(_zero(te - (1 + zeta**2) / (1 - zeta**2)), f"crossover is {te}")
    fp = sp.limit(coop.pasgd_bound().expr, K, sp.oo)
    fd = sp.limit(coop.dpsgd_bound().expr, K, sp.oo)
    require(_zero(fp.subs(tau, te) - fd), "floors differ at τ_eq")
    # PASGD floor smaller iff τ < τ_eq: the difference is affine in τ with positive slope
    require(sp.simplify(sp.diff(fp - fd, tau)) == eta**2 * L**2 * sigma2,
            "floor difference is not increasing in τ")
    z16 = zeta_num(ring(16))
    val = float(te.subs(zeta, z16))
    require(abs(val - 19.22) < 0.01, f"ring(16) τ_eq = {val}, digest says 19.22")
    return proved(f"floors equal at τ_eq = (1+ζ²)/(1−ζ²), PASGD below iff τ < τ_eq; "
                  f"ring(16): ζ = {z16:.4f}, τ_eq = {val:.2f}")


@obligation(easgd_matrix, coop.easgd_optimal_alpha, coop.easgd_zeta)
def easgd_spectrum_and_alpha_star() -> object:
    """W_α has spectrum {1, 1−α (m−1), 1−(m+1)α}; α* = 2/(m+2), ζ* = m/(m+2)."""
    rng = np.random.default_rng(0)
    n = 0
    for _ in range(40):
        m_ = int(rng.integers(1, 33))
        a = float(rng.uniform(0.01, 2.0 / (m_ + 1)))
        lam = np.sort(np.linalg.eigvalsh(np.asarray(easgd_matrix(m_, a))))
        exp = np.sort([1.0, *([1 - a] * (m_ - 1)), 1 - (m_ + 1) * a])
        require(np.allclose(lam, exp, atol=1e-12), f"spectrum of W_α wrong at m={m_}, α={a}")
        z = float(coop.easgd_zeta(m_, a))
        require(abs(z - zeta_num(easgd_matrix(m_, a))) < 1e-12, f"easgd_zeta wrong at m={m_}")
        n += 1
    a_s, z_s = coop.easgd_optimal_alpha()
    require(_zero(a_s - 2 / (m + 2)) and _zero(z_s - m / (m + 2)), f"α*, ζ* = {a_s}, {z_s}")
    for m_ in (2, 4, 8, 16):  # independent numeric: grid search of ζ(W_α) over α
        grid = np.linspace(1e-3, 2.0 / (m_ + 1), 1001)
        zs = [zeta_num(easgd_matrix(m_, a)) for a in grid]
        a_best = grid[int(np.argmin(zs))]
        require(abs(a_best - 2 / (m_ + 2)) < 2e-3, f"grid α* = {a_best} at m={m_}")
        a_code, _ = coop.easgd_optimal_alpha(m_)
        require(a_code == sp.Rational(2, m_ + 2), f"easgd_optimal_alpha({m_}) = {a_code}")
        n += 1
    return checked(n, "spectrum of W_α on 40 random (m, α); α* = 2/(m+2), ζ* = m/(m+2) "
                      "symbolically and by grid search for m = 2, 4, 8, 16")


@obligation(coop.cooperative_bound)
def geometric_series_network_term() -> object:
    """(1+ζ²)/(1−ζ²) = 1 + 2 Σ_{j≥1} ζ^{2j}: the geometric series of the network-error term."""
    j, n = sp.symbols("j n", integer=True, nonnegative=True)
    z = sp.Symbol("z", positive=True)
    s_inf = sp.summation(z ** (2 * j), (j, 0, sp.oo))
    s_inf = s_inf.args[0][0] if isinstance(s_inf, sp.Piecewise) else s_inf
    require(_zero(s_inf - 1 / (1 - z**2)), f"Σ ζ^(2j) = {s_inf}")
    s_fin = sp.summation(z ** (2 * j), (j, 0, n - 1))
    s_fin = s_fin.args[-1][0] if isinstance(s_fin, sp.Piecewise) else s_fin
    require(_zero(sp.simplify(s_fin - (1 - z ** (2 * n)) / (1 - z**2))), f"partial sum {s_fin}")
    net = coop.cooperative_bound().terms["network"]
    factor = sp.simplify((net / (eta**2 * L**2 * sigma2) + 1) / tau)
    require(_zero(factor.subs(zeta, z) - (2 * s_inf - 1)),
            f"network factor {factor} ≠ 2Σ_(j≥0) ζ^(2j) − 1")
    return proved("Σ_(j≥0) ζ^(2j) = 1/(1−ζ²), Σ_(j<n) = (1−ζ^(2n))/(1−ζ²); the bound's network "
                  "factor is 2Σ − 1 = (1+ζ²)/(1−ζ²)")


@obligation(coop.optimal_tau_runtime, coop.runtime_bound)
def runtime_tau_star() -> object:
    """AdaComm τ* = sqrt(2ΔF D/(η³L²σ²T_wall)) is the minimiser of the runtime bound."""
    b = coop.runtime_bound().expr
    ts = coop.optimal_tau_runtime()
    expected = sp.sqrt(2 * F_gap * D / (eta**3 * L**2 * sigma2 * T_wall))
    require(_zero(ts - expected), f"τ* = {ts}")
    require(_zero(sp.diff(b, tau).subs(tau, expected)), "∂bound/∂τ ≠ 0 at τ*")
    d2 = sp.simplify(sp.diff(b, tau, 2))
    require(_zero(d2 - 4 * F_gap * D / (eta * T_wall * tau**3)), f"∂²bound/∂τ² = {d2}")
    return proved("∂/∂τ vanishes at τ* and ∂²/∂τ² = 4ΔF·D/(ηT_wall τ³) > 0")


@obligation(rt.decentralized_runtime_bound, rt.optimal_tau_decentralized)
def decentralized_runtime_reduces() -> object:
    """The decentralized runtime bound is Theorem 1 with K = T_wall/(Y + D/τ) and reduces to
    AdaComm's bound and τ* at ζ = 0, v = 0."""
    b = rt.decentralized_runtime_bound().expr
    gen = coop.cooperative_bound().expr.subs(K, T_wall / (Y + D / tau))
    require(_zero(b - gen), "decentralized runtime bound ≠ Theorem 1 at K = T_wall/(Y+D/τ)")
    require(_zero(b.subs({zeta: 0, v: 0}) - coop.runtime_bound().expr),
            "does not reduce to AdaComm's bound at ζ = 0, v = 0")
    ts = rt.optimal_tau_decentralized()
    require(_zero(ts.subs({zeta: 0, v: 0}) - coop.optimal_tau_runtime()),
            "τ* does not reduce to AdaComm's")
    require(_zero(sp.diff(b, tau).subs(tau, ts)), "∂bound/∂τ ≠ 0 at the decentralized τ*")
    return proved("equals Theorem 1 at K = T_wall/(Y + D/τ); ζ = v = 0 gives AdaComm's bound and "
                  "τ*; derivative vanishes at τ*")
