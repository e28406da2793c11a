"""Obligations for Cooperative SGD (theory.bounds.cooperative, Wang & Joshi, JMLR 22(213), 2021)
and the runtime bounds: the special cases, the learning-rate conditions' reductions (eq. 145 →
Corollaries 2 and 3, eq. 16 ⇒ eq. 145, Corollary 1's K-condition ⇒ eq. 16), Theorem 4's α,
Theorem 3 against the substitution, eq. 30."""

from __future__ import annotations

import numpy as np
import sympy as sp

from proofs.core import checked, obligation, proved, require
from theory.bounds import cooperative as coop
from theory.bounds import runtime as rt
from theory.mixing import easgd_matrix, generalized_easgd_matrix, metropolis_hastings, ring
from theory.mixing import random_geometric_graph as rgg
from theory.spectral import zeta as zeta_num
from theory.symbols import D, F_gap, K, L, T_wall, Y, beta, eta, m, sigma2, tau, v, zeta


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
    """Special cases of Theorem 1 (substitutions) equal the paper's own forms: Corollary 2
    (eq. 24), Corollary 3 (eq. 27), fully synchronous SGD, EASGD at α* (Lemma 1)."""
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
    return proved("sync, PASGD (eq. 24), D-PSGD (eq. 27) (general bound substituted and "
                  "special-case functions) and EASGD at α* equal the JMLR forms")


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
    require(abs(val - 19.22) < 0.01, f"ring(16) τ_eq = {val}, expected 19.22")
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


# --- learning-rate conditions (JMLR Appendix D, Corollaries 1–3) -------------------------------
def _lhs(c) -> sp.Expr:
    """a·η + b·η² of a condition ``… ≤ 1``."""
    require(c.relation.rhs == 1, f"{c.name}: right side is not 1")
    return c.relation.lhs


@obligation(coop.lr_condition, "theory.bounds.cooperative.PASGD_LR",
            "theory.bounds.cooperative.DPSGD_LR", coop.pasgd_bound, coop.dpsgd_bound,
            coop.synchronous_bound)
def lr_condition_reductions() -> object:
    """Eq. 145 at ζ = 0, v = 0 is Corollary 2's condition; at τ = 1, v = 0 Corollary 3's; at
    τ = 1, ζ = 0, v = 0 ηL ≤ 1; eq. 143 at β = 0 is eq. 145."""
    e145 = _lhs(coop.LR_EQ145)
    require(_zero(e145.subs({zeta: 0, v: 0}) - _lhs(coop.PASGD_LR)),
            "eq. 145 at ζ = 0, v = 0 ≠ Corollary 2's condition")
    require(_zero(e145.subs({tau: 1, v: 0}) - _lhs(coop.DPSGD_LR)),
            "eq. 145 at τ = 1, v = 0 ≠ Corollary 3's condition")
    require(_zero(e145.subs({tau: 1, zeta: 0, v: 0}) - eta * L), "eq. 145 at A(1, J, 0)")
    require(_zero(_lhs(coop.LR_EQ143).subs(beta, 0) - e145), "eq. 143 at β = 0 ≠ eq. 145")
    (c,) = coop.synchronous_bound().conditions
    require(_zero(_lhs(c) - eta * L), "synchronous_bound's condition is not ηL ≤ 1")
    return proved("eq. 145|ζ=0,v=0 − Cor. 2, eq. 145|τ=1,v=0 − Cor. 3, eq. 143|β=0 − eq. 145 "
                  "expand to 0")


@obligation(coop.lr_condition)
def eq16_implies_eq145() -> object:
    """Eq. 16 is sufficient for eq. 145 (JMLR eqs. 146–148): their difference is
    η²L²τ²/(1−ζ)²·[5 − 2ζ²(1−ζ)/(1+ζ) − 2ζ − (τ−1)(1−ζ)/τ] and each of the three subtracted
    parts is at most 2, 2, 1 for 0 ≤ ζ < 1, τ ≥ 1."""
    e145, e16 = _lhs(coop.LR_EQ145), _lhs(coop.LR_EQ16)
    part = (2 * zeta**2 * (1 - zeta) / (1 + zeta), 2 * zeta, (tau - 1) * (1 - zeta) / tau)
    diff = eta**2 * L**2 * tau**2 / (1 - zeta) ** 2 * (5 - sum(part))
    require(_zero(e16 - e145 - diff), "eq. 16 − eq. 145 is not the eq. 146–148 form")
    s_, t_ = sp.Symbol("s", nonnegative=True), sp.Symbol("t", nonnegative=True)
    z_ = s_ / (1 + s_)  # 0 ≤ ζ < 1 ⟺ s ≥ 0
    for cap, p_ in zip((2, 2, 1), part, strict=True):
        gap = sp.factor(sp.together(cap - p_.subs({zeta: z_, tau: 1 + t_})))
        require(gap.is_nonnegative, f"{cap} − {p_} not shown ≥ 0 (got {gap})")
    return proved("eq. 16 − eq. 145 = η²L²τ²/(1−ζ)²·(5 − Σ parts), each part ≤ its cap "
                  "(factored with ζ = s/(1+s), τ = 1 + t, s, t ≥ 0)")


@obligation(coop.largest_eta, coop.lr_condition, "theory.bound.Condition.largest")
def largest_eta_is_the_root() -> object:
    """The closed form 2/(a + √(a² + 4b)) of ``Condition.largest`` solves a·η + b·η² = 1 for
    every a, b > 0 (symbolic); eq. 143's coefficients a, b are ≥ 0 (so its left side increases
    with η and every smaller η is admissible); on random settings eq. 143 at largest_eta equals 1
    to 1e-12."""
    A, Bq = sp.symbols("A B", positive=True)
    e = 2 / (A + sp.sqrt(A**2 + 4 * Bq))
    require(_zero(sp.radsimp(A * e + Bq * e**2 - 1)), "a·η* + b·η*² ≠ 1")
    lhs = _lhs(coop.LR_EQ143)
    s_, t_ = sp.Symbol("s", nonnegative=True), sp.Symbol("t", nonnegative=True)
    poly = sp.Poly(sp.expand(lhs), eta)
    require(poly.degree() == 2 and poly.coeff_monomial(1) == 0, "eq. 143 is not a·η + b·η²")
    for cf in poly.all_coeffs()[:-1]:
        pos = cf.subs({zeta: s_ / (1 + s_), tau: 1 + t_})
        require(sp.factor(sp.together(pos)).is_nonnegative, f"coefficient {cf} not ≥ 0")
    rng = np.random.default_rng(7)
    f = sp.lambdify((eta, L, m, v, tau, zeta, beta), lhs)
    n = 0
    for _ in range(40):
        args = (float(rng.uniform(0.1, 10)), int(rng.integers(1, 64)), int(rng.integers(0, 3)),
                int(rng.integers(1, 64)), float(rng.uniform(0, 0.99)), float(rng.uniform(0, 4)))
        e_ = float(coop.largest_eta(args[0], args[1], args[3], args[4], args[2], args[5]))
        require(abs(f(e_, *args) - 1) < 1e-12, f"eq. 143 at largest_eta = {f(e_, *args)}")
        n += 1
    return checked(n, "root identity proved for all a, b > 0; eq. 143's a, b ≥ 0 proved; eq. 143 "
                      "at largest_eta = 1 on 40 random settings")


@obligation(coop.corollary1_bound, coop.corollary1_eta, "theory.bounds.cooperative.COROLLARY1_K")
def corollary1_is_theorem1_at_its_eta() -> object:
    """Theorem 1 at η = ((m+v)/(Lm))√(m/K) is eq. 18; there eq. 16 reads √(m/K) + 5(m/K)X²
    (X = (1 + v/m)τ/(1−ζ)), which the K-condition K ≥ 10mX² keeps ≤ 1/√10 + 1/2 < 1."""
    ec = coop.corollary1_eta()
    require(_zero(coop.cooperative_bound().expr.subs(eta, ec) - coop.corollary1_bound().expr),
            "Theorem 1 at Corollary 1's η ≠ eq. 18")
    X = (1 + v / m) * tau / (1 - zeta)
    e16 = _lhs(coop.LR_EQ16).subs(eta, ec)
    require(_zero(sp.simplify(e16 - (sp.sqrt(m / K) + 5 * m / K * X**2))),
            "eq. 16 at Corollary 1's η is not √(m/K) + 5(m/K)X²")
    # with K = 10 m X² c, c ≥ 1 and X ≥ 1: √(m/K) = 1/(X√(10c)) ≤ 1/√10, 5mX²/K = 1/(2c) ≤ 1/2
    c_, x_ = sp.Symbol("c", positive=True), sp.Symbol("x", positive=True)
    sub = (sp.sqrt(m / K) + 5 * m / K * x_**2).subs(K, 10 * m * x_**2 * c_)
    require(_zero(sp.simplify(sub - (1 / (x_ * sp.sqrt(10 * c_)) + 1 / (2 * c_)))),
            "the K-condition substitution")
    require(1 / sp.sqrt(10) + sp.Rational(1, 2) < 1, "1/√10 + 1/2 ≥ 1")
    return proved("eq. 18 = Theorem 1 at η_Cor1; eq. 16 there = 1/(X√(10c)) + 1/(2c) ≤ "
                  "1/√10 + 1/2 < 1 for c = K/(10mX²) ≥ 1, X ≥ 1")


@obligation(coop.largest_tau)
def largest_tau_noniid_solves_c_half() -> object:
    """The non-IID largest τ of :func:`largest_tau` makes C (eq. 21) at Corollary 1's η equal
    to 1/2 (the continuous τ), at exact sample points evaluated to 60 digits."""
    n = 0
    for m_, z_, K_, v_ in [(4, sp.Rational(1, 3), 10**5, 0), (16, sp.Rational(9, 10), 10**7, 1),
                           (8, 0, 10**4, 0)]:
        z_ = sp.sympify(z_)
        A = 2 * z_**2 / (1 + z_) + 2 * z_ / (1 - z_)
        Q = (1 - z_) * K_ / (12 * m_ * (1 + sp.Rational(v_, m_)) ** 2)
        t_star = (1 + sp.sqrt(1 + 4 * (A + 1) * Q)) / (2 * (A + 1))
        e = coop.corollary1_eta().subs({m: m_, v: v_, K: K_})
        C = coop.C_NONIID.subs({eta: e, zeta: z_, tau: t_star})
        require(not C.free_symbols and abs(sp.N(C - sp.Rational(1, 2), 60)) < 1e-50,
                f"C ≠ 1/2 at {m_, z_}")
        require(coop.largest_tau(m_, z_, K_, v_, iid=False) == int(sp.floor(t_star)),
                "largest_tau does not floor the root")
        n += 1
    return checked(n, "C(τ*) = 1/2 (to 1e-50, exact inputs) at Corollary 1's η, 3 settings")


@obligation(coop.generalized_easgd_optimal_alpha, coop.generalized_easgd_zeta)
def theorem4_alpha_minimises() -> object:
    """Theorem 4: at α* = (1+ζ)/(m+1+ζ) both branches of ζ′ = max{(1−α)ζ, |1−(m+1)α|} equal
    mζ/(m+1+ζ); (1−α)ζ − ζ′* = ζ(α* − α) and (m+1)α − 1 − ζ′* = (m+1)(α − α*), so ζ′(α) ≥ ζ′*
    on either side of α*."""
    a = sp.Symbol("a", nonnegative=True)
    a_s, z_s = coop.generalized_easgd_optimal_alpha(zeta, m)
    require(_zero(a_s - (1 + zeta) / (m + 1 + zeta)) and _zero(z_s - m * zeta / (m + 1 + zeta)),
            f"(α*, ζ′*) = ({a_s}, {z_s})")
    require(_zero((1 - a_s) * zeta - z_s) and _zero((m + 1) * a_s - 1 - z_s),
            "the two branches differ at α*")
    require(_zero((1 - a) * zeta - z_s - zeta * (a_s - a)), "left branch identity")
    require(_zero((m + 1) * a - 1 - z_s - (m + 1) * (a - a_s)), "right branch identity")
    # and the code's ζ′ is the quoted max{(1−α)ζ, |1−(m+1)α|}
    require(coop.generalized_easgd_zeta(zeta, m, a) == sp.Max((1 - a) * zeta,
                                                              sp.Abs(1 - (m + 1) * a)),
            "generalized_easgd_zeta is not eq. 33")
    return proved("both branches = mζ/(m+1+ζ) at α*; ζ′ − ζ′* ≥ ζ(α*−α) ≥ 0 left of α*, "
                  "≥ (m+1)(α−α*) ≥ 0 right of it")


@obligation(generalized_easgd_matrix, coop.generalized_easgd_zeta)
def generalized_easgd_spectrum() -> object:
    """W′ = [[(1−α)W, α1], [α1ᵀ, 1−mα]] has eigenvalues (1−α)λ_2..(1−α)λ_m, 1, 1−(m+1)α
    (JMLR Appendix H), so ζ(W′) = max{(1−α)ζ, |1−(m+1)α|}: random graphs and α."""
    rng = np.random.default_rng(4)
    n = 0
    for i in range(30):
        m_ = int(rng.integers(3, 25))
        W = metropolis_hastings(rgg(m_, avg_degree=3, seed=i))
        a = float(rng.uniform(0.005, 1.0))
        lam = np.sort(np.linalg.eigvalsh(np.asarray(generalized_easgd_matrix(W, a))))
        lw = np.sort(np.linalg.eigvalsh(np.asarray(W)))[:-1]  # drop λ₁ = 1
        exp = np.sort([*((1 - a) * lw), 1.0, 1 - (m_ + 1) * a])
        require(np.allclose(lam, exp, atol=1e-10), f"spectrum of W′ wrong at m={m_}, α={a}")
        z = float(coop.generalized_easgd_zeta(W.zeta, m_, a))
        require(abs(z - zeta_num(generalized_easgd_matrix(W, a))) < 1e-10, "ζ′ wrong")
        n += 1
    return checked(n, "spectrum of W′ and ζ′ on 30 random geometric graphs and α ∈ (0, 1)")


@obligation(coop.easgd_paper_bound, coop.easgd_bound)
def theorem3_against_substitution() -> object:
    """Theorem 3 (eq. 23) and Theorem 1 at v = 1, ζ* = m/(m+2) share the first two terms; their
    network terms are ½η_eff²L²σ²(m+1)/m² · [m² + c(τ−1)] with c = 3m²+4m+2 (Theorem 3) and
    c = m²+2m+2 (substitution): equal at τ = 1, ratio → (3m²+4m+2)/(m²+2m+2) as τ → ∞."""
    p3, p1 = coop.easgd_paper_bound(), coop.easgd_bound("optimal")
    for k in ("optimization", "variance"):
        require(_zero(p3.terms[k] - p1.terms[k]), f"{k} terms differ")
    ee = m * eta / (m + 1)
    base = sp.Rational(1, 2) * ee**2 * L**2 * sigma2 * (m + 1) / m**2
    require(_zero(p3.terms["network"] - base * (m**2 + (3 * m**2 + 4 * m + 2) * (tau - 1))),
            "Theorem 3 network term")
    require(_zero(p1.terms["network"] - base * (m**2 + (m**2 + 2 * m + 2) * (tau - 1))),
            "substituted network term")
    lim = sp.limit(p3.terms["network"] / p1.terms["network"], tau, sp.oo)
    require(_zero(lim - (3 * m**2 + 4 * m + 2) / (m**2 + 2 * m + 2)), f"limit ratio {lim}")
    return proved("network terms ½η_eff²L²σ²(m+1)/m²·[m² + c(τ−1)], c = 3m²+4m+2 vs m²+2m+2")


@obligation(coop.dpsgd_zeta_threshold, coop.pasgd_dpsgd_crossover)
def eq30_threshold_is_the_crossover() -> object:
    """Eq. 30: ζ_τ = √(1 − 2/(τ+1)) solves (1+ζ²)/(1−ζ²) = τ, i.e. the crossover τ_eq."""
    zt = coop.dpsgd_zeta_threshold(tau)
    require(_zero(coop.pasgd_dpsgd_crossover(zt) - tau), "τ_eq(ζ_τ) ≠ τ")
    require(_zero(2 * zt**2 / (1 - zt**2) - (tau - 1)), "2ζ_τ²/(1−ζ_τ²) ≠ τ − 1")
    return proved("τ_eq(ζ_τ) = τ and 2ζ_τ²/(1−ζ_τ²) = τ − 1")
