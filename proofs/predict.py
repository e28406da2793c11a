"""Obligations for the predictor (empirics.moments, empirics.laws; derivation in
docs/predict.md): the random-k second-moment law, the local step as a linear map of the slots,
the second-order correction as the leading term of the Gaussian closure, the exactness of the
closure on least squares, Stein's lemma for the Jacobian, the piecewise quadratic's Gaussian
moments, and the stationary floor as the fixed point of the round map. These import empirics
(torch) inside the obligations that protect it."""

from __future__ import annotations

import numpy as np
import sympy as sp

from proofs.core import checked, obligation, proved, require

z, y, q, s_ = sp.symbols("z y q s", real=True)
zeta_ = sp.Symbol("zeta", real=True)


def _gauss_moment(k: int) -> sp.Integer:
    """E ζ^k for ζ ~ N(0, 1)."""
    return sp.Integer(0) if k % 2 else sp.factorial2(k - 1) if k else sp.Integer(1)


def _gauss_expect(expr: sp.Expr, order: int) -> sp.Expr:
    """E over ζ ~ N(0, 1) of ``expr`` (a function of s·ζ), as a series in s to ``order``."""
    ser = sp.series(expr, s_, 0, order + 1).removeO()
    poly = sp.Poly(sp.expand(ser), zeta_)
    return sp.expand(sum(c * _gauss_moment(m[0]) for m, c in zip(poly.monoms(), poly.coeffs(),
                                                                  strict=True)))


@obligation("empirics.moments.compression_law")
def randk_second_moment_law() -> object:
    """Random-k: E[C(u)C(u)ᵀ] = r_off uuᵀ + (r_diag − r_off) diag(uuᵀ) with the inclusion
    probabilities k/d and k(k−1)/(d(d−1)); the code's (q, r_diag, r_off)."""
    from empirics.compressors import RandomK
    from empirics.moments import compression_law

    k, d, sc = sp.symbols("k d c", positive=True)
    p1, p2 = k / d, k * (k - 1) / (d * (d - 1))
    u1, u2 = sp.symbols("u1 u2", real=True)
    # C(u)_a = c·1[a∈S]·u_a: entries of E[C Cᵀ] for a = b and a ≠ b
    diag = sp.simplify(sc**2 * p1 * u1**2)
    off = sp.simplify(sc**2 * p2 * u1 * u2)
    q_, rd, ro = sc * p1, sc**2 * p1, sc**2 * p2
    require(sp.simplify(diag - (ro * u1**2 + (rd - ro) * u1**2)) == 0, "diagonal entry")
    require(sp.simplify(off - ro * u1 * u2) == 0, "off-diagonal entry")
    # E C = q u; unbiased scaling c = d/k gives q = 1 and r_diag − q² = d/k − 1 = ω
    require(sp.simplify(q_.subs(sc, d / k) - 1) == 0, "unbiased q")
    require(sp.simplify(rd.subs(sc, d / k) - 1 - (d / k - 1)) == 0, "unbiased ω = d/k − 1")
    n = 0
    for kk, dd in ((1, 4), (2, 5), (3, 3), (5, 50)):
        for unb in (False, True):
            law = compression_law(RandomK(kk, unbiased=unb), dd)
            c = dd / kk if unb else 1.0
            want = [float(e.subs({k: kk, d: dd, sc: c})) for e in (q_, rd, ro)]
            require(np.allclose([law.q, law.r_diag, law.r_off], want, rtol=1e-14),
                    f"randk(k={kk}, d={dd}, unbiased={unb}): {law} ≠ {want}")
            n += 1
    return proved(f"entries of E[CCᵀ] from the inclusion probabilities (symbolic in k, d, "
                  f"scale); the code's law equals them on {n} (k, d, bias) instances")


@obligation("empirics.moments.StepRule.coefficients")
def local_step_is_the_linear_map_of_the_slots() -> object:
    """The local step (momentum → step → error feedback / compression) is z' = A z + b_ε ε
    + b_ν ν with the coefficients the engine propagates: replayed symbolically (d = 1)."""
    from empirics.moments import CompressionLaw, StepRule

    x, b, e, h, c, eps, nu, eta, beta = sp.symbols("x b e h c eps nu eta beta", real=True)
    qq = sp.Symbol("q", positive=True)
    cases = 0
    for mom, nest in ((0, False), (beta, False), (beta, True)):
        for comp, ef in ((None, False), ("c", True), ("c", False)):
            g = h * x + c + eps  # gradient: Jacobian h, offset c, noise ε
            bb = mom * b + g if mom else None
            p = (g + mom * bb) if nest else (bb if mom else g)
            if comp is None:
                new = {"x": x - eta * p}
            else:
                u = (e if ef else 0) + eta * p
                delta = qq * u + nu  # C(u) = q u + ν
                new = {"x": x - delta}
                if ef:
                    new["e"] = u - delta
            if mom:
                new["b"] = bb
            # the code's coefficients at numeric η, β, q (sympy-exact rationals)
            vals = {eta: sp.Rational(3, 10), beta: sp.Rational(1, 2), qq: sp.Rational(1, 4)}
            rule = StepRule(float(vals[beta]) if mom else 0.0, nest,
                            CompressionLaw(0.25, 0.5, 0.1) if comp else None, ef)
            co = rule.coefficients(float(vals[eta]))
            state = {"x": x, "b": b, "e": e}
            for slot, expr in new.items():
                lin = sum(co["AH"].get((slot, t), 0.0) * h * state[t] for t in rule.slots) \
                    + sum(co["AI"].get((slot, t), 0.0) * state[t] for t in rule.slots) \
                    + co["be"].get(slot, 0.0) * (c + eps) \
                    + co["bn"].get(slot, 0.0) * nu
                diff = sp.expand(expr.subs(vals) - lin)
                coeffs = sp.Poly(diff, x, b, e, h, c, eps, nu).coeffs() if diff != 0 else []
                require(all(abs(float(cf)) < 1e-12 for cf in coeffs),
                        f"slot {slot} (momentum {mom}, nesterov {nest}, comp {comp}, EF {ef}):"
                        f" {diff}")
            cases += 1
    return proved(f"{cases} variants (none / heavy ball / Nesterov × none / EF / no EF): the "
                  "code's coefficients reproduce the algorithm's step symbolically")


@obligation("empirics.laws.GLMLaw._second", "empirics.laws.GLMLaw._gauss")
def second_order_correction_is_the_gaussian_closure_leading_term() -> object:
    """For Z ~ N(z, q): E ℓ'(Z) = ℓ'(z) + (q/2) ℓ'''(z) + O(q²) and
    E ℓ'(Z)² = ℓ'(z)² + q(ℓ''(z)² + ℓ'(z)ℓ'''(z)) + O(q²): the Taylor closure's drift and noise
    are the leading terms of the Gaussian closure (checked on the code's logistic law)."""
    d1, d2, d3, d4, d5 = sp.symbols("l1:6", real=True)  # ℓ', ℓ'', … at z
    t = s_ * zeta_
    lp = d1 + d2 * t + d3 * t**2 / 2 + d4 * t**3 / 6 + d5 * t**4 / 24  # ℓ'(z + sζ), Taylor
    e1 = _gauss_expect(lp, 3)
    require(sp.simplify(e1 - (d1 + s_**2 / 2 * d3)) == 0, f"E ℓ'(Z) = {e1}")
    e11 = _gauss_expect(lp**2, 3)
    require(sp.simplify(e11 - (d1**2 + s_**2 * (d2**2 + d1 * d3))) == 0, f"E ℓ'² = {e11}")
    # the code: Gauss–Hermite closure vs the second-order (Taylor) closure on a small spread
    import torch

    from empirics.laws import law_for
    from empirics.problems import LogisticRegression

    p = LogisticRegression(n_samples=300, d=4, m=2, seed=1, sampling="shared")
    law_g, law_t = law_for(p, closure="gauss"), law_for(p, closure="taylor")
    rng = np.random.default_rng(0)
    mu = law_g.x_star + 0.2 * rng.standard_normal(4)
    worst = []
    for scale in (1e-2, 3e-3, 1e-3):
        C = scale * np.eye(4)
        rg, rt = law_g._second(0, mu, C), law_t._second(0, mu, C)
        worst.append(float(np.abs(rg["corr"] - rt["corr"]).max()
                           / max(np.abs(rt["corr"]).max(), 1e-300)))
    require(worst[-1] < 0.02 and worst[0] > worst[-1], f"gauss vs taylor relative gaps {worst}")
    _ = torch
    return proved("series in the spread √q with the N(0, 1) moments: drift ½qℓ''' and noise "
                  f"q(ℓ''² + ℓ'ℓ''') (symbolic); the code's closures agree to leading order "
                  f"(relative gap {worst[0]:.2g} → {worst[-1]:.2g} as q shrinks 10×)")


@obligation("empirics.laws.AutogradLaw._third",
            "empirics.laws.AutogradLaw._second")
def autograd_drift_is_the_third_derivative_contraction() -> object:
    """For a cubic F on ℝ² and ξ = Lζ (ζ ~ N(0, I), C = LLᵀ): E∇F(μ + ξ) = ∇F(μ) + ½∇³F(μ)[C]
    exactly (symbolic Gaussian moments; a cubic has no higher term), so the drift is the
    closure's only correction on a cubic. The code's contraction (nested forward-mode
    derivatives of a torch loss, then its gradient) equals sympy's Σ_bc ∂³F/∂a∂b∂c C_bc on a
    quartic in 3 variables to 1e-12 (every eigen-direction: d ≤ 2·rank)."""
    x1, x2, m1, m2, z1, z2 = sp.symbols("x1 x2 m1 m2 z1 z2", real=True)
    l11, l21, l22 = sp.symbols("l11 l21 l22", real=True)
    cs = sp.symbols("c0:10", real=True)
    mons = [x1**3, x1**2 * x2, x1 * x2**2, x2**3, x1**2, x1 * x2, x2**2, x1, x2]
    F = sum(c * mo for c, mo in zip(cs, mons, strict=False))
    X = [x1, x2]
    grad = [sp.diff(F, v) for v in X]
    shift = {x1: m1 + l11 * z1, x2: m2 + l21 * z1 + l22 * z2}
    C = sp.Matrix([[l11**2, l11 * l21], [l11 * l21, l21**2 + l22**2]])
    at_mu = {x1: m1, x2: m2}
    for a in range(2):
        e = sp.Poly(sp.expand(grad[a].subs(shift, simultaneous=True)), z1, z2)
        Eg = sum(cf * _gauss_moment(mo[0]) * _gauss_moment(mo[1])
                 for mo, cf in zip(e.monoms(), e.coeffs(), strict=True))
        third = sum(sp.diff(F, X[a], X[b], X[c]).subs(at_mu) * C[b, c]
                    for b in range(2) for c in range(2))
        require(sp.expand(Eg - grad[a].subs(at_mu) - third / 2) == 0,
                f"E ∂F/∂x{a + 1}(μ + ξ) ≠ ∂F/∂x{a + 1}(μ) + ½∇³F[C]")
    # the code on a quartic in 3 variables
    import torch

    from empirics.laws import AutogradLaw

    v = sp.symbols("v0:3", real=True)
    rng = np.random.default_rng(0)
    Q = sum(float(rng.standard_normal()) * v[i] * v[j] * v[k] * v[h]
            for i in range(3) for j in range(i, 3) for k in range(j, 3) for h in range(k, 3))
    Q += sum(float(rng.standard_normal()) * v[i] * v[j] * v[k]
             for i in range(3) for j in range(i, 3) for k in range(j, 3))
    fQ = sp.lambdify([v], Q, "math")

    def loss(theta: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return fQ(theta) + 0.0 * xb.sum()

    law = AutogradLaw(loss, [(torch.zeros(1, 1), torch.zeros(1))], [0], np.zeros(3),
                      np.zeros(3), 0.0)
    mu = rng.standard_normal(3)
    A = rng.standard_normal((3, 3))
    Cn = A @ A.T
    got = law._third(0, mu, Cn)
    sub = dict(zip(v, mu, strict=True))
    want = np.array([float(sum(sp.diff(Q, v[a], v[b], v[c]).subs(sub) * Cn[b, c]
                               for b in range(3) for c in range(3))) for a in range(3)])
    err = float(np.abs(got - want).max() / np.abs(want).max())
    require(err < 1e-12, f"the code's ∇³F[C] differs from the symbolic one by {err:.2g}")
    return proved("E∇F(μ+Lζ) = ∇F(μ) + ½∇³F(μ)[LLᵀ] for a general cubic on ℝ² (symbolic); "
                  f"the code's nested-jvp contraction equals the symbolic one on a quartic "
                  f"(relative {err:.1g})")


@obligation("empirics.laws.GLMLaw._gauss", "empirics.laws.law_for")
def least_squares_closure_is_exact() -> object:
    """ℓ(z) = ½(z − y)²: E ℓ'(Z) = z − y and E ℓ'(Z)² = (z − y)² + q exactly (no higher terms),
    so the predictor is exact on least squares; the code's Gauss–Hermite moments equal them."""
    ell = (z + s_ * zeta_ - y) ** 2 / 2
    lp = sp.diff(ell, z)
    require(sp.simplify(_gauss_expect(lp, 6) - (z - y)) == 0, "E ℓ'")
    require(sp.simplify(_gauss_expect(lp**2, 6) - ((z - y) ** 2 + s_**2)) == 0, "E ℓ'²")
    from empirics.laws import GLMLaw

    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 3))
    law = GLMLaw(X, np.ones(20), rng.standard_normal(20), [np.arange(20)], 0.0,
                 "least_squares", np.zeros(3), np.zeros(3), 0.0)
    zz, yy, qq = rng.standard_normal(20), law.y, rng.random(20)
    E1, E2, E11 = law._gauss(zz, qq, yy)
    require(np.allclose(E1, zz - yy, rtol=1e-12) and np.allclose(E2, 1.0)
            and np.allclose(E11, (zz - yy) ** 2 + qq, rtol=1e-12), "Gauss–Hermite moments")
    return proved("the expansion stops at second order (symbolic); Gauss–Hermite reproduces "
                  "it to rounding on 20 samples")


@obligation("empirics.laws.GLMLaw._second", "empirics.laws.PiecewiseLaw.moments")
def stein_lemma_gives_the_jacobian() -> object:
    """For x ~ N(m, v): Cov(g(x), x) = v·E g'(x) (Stein's lemma), so the expected Hessian is
    the exact Jacobian of the covariance update under Gaussian fluctuations."""
    x = sp.Symbol("x", real=True)
    m = sp.Symbol("m", real=True)
    v = sp.Symbol("v", positive=True)
    a = sp.Symbol("a", real=True)
    dens = sp.exp(-(x - m) ** 2 / (2 * v)) / sp.sqrt(2 * sp.pi * v)
    for g in (x**3, sp.exp(a * x), x**2 * sp.exp(a * x)):
        E = lambda f: sp.integrate(f * dens, (x, -sp.oo, sp.oo))  # noqa: E731
        lhs = sp.simplify(E(g * x) - E(g) * E(x))
        rhs = sp.simplify(v * E(sp.diff(g, x)))
        require(sp.simplify(lhs - rhs) == 0, f"g = {g}: {lhs} ≠ {rhs}")
    return proved("Cov(g(x), x) = v E g'(x) for g = x³, e^{ax}, x²e^{ax} (symbolic Gaussian "
                  "integrals)")


@obligation("empirics.laws.PiecewiseLaw._moments")
def piecewise_quadratic_gaussian_moments() -> object:
    """f = μx² (x ≥ 0), ½μx² (x < 0), x ~ N(m, v): the closed forms of E f', E f'', E f, E f'²
    of :class:`empirics.laws.PiecewiseLaw` (integrals over the two half-lines)."""
    from empirics.laws import PiecewiseLaw

    x = sp.Symbol("x", real=True)
    mu_ = sp.Symbol("mu", positive=True)
    law = PiecewiseLaw(1, 1.3, 0.0, 0.0)
    n = 0
    for mm, vv in ((0.3, 0.5), (-0.7, 0.2), (0.0, 1.0), (1.5, 0.01)):
        m, v = sp.Rational(mm).limit_denominator(100), sp.Rational(vv).limit_denominator(100)
        dens = sp.exp(-(x - m) ** 2 / (2 * v)) / sp.sqrt(2 * sp.pi * v)

        def E(f_pos: sp.Expr, f_neg: sp.Expr, dens: sp.Expr = dens) -> float:
            val = sp.integrate(f_pos * dens, (x, 0, sp.oo)) + sp.integrate(f_neg * dens,
                                                                           (x, -sp.oo, 0))
            return float(val.subs(mu_, sp.Rational(13, 10)).evalf(30))

        want = (E(2 * mu_ * x, mu_ * x), E(2 * mu_, mu_), E(mu_ * x**2, mu_ * x**2 / 2),
                E((2 * mu_ * x) ** 2, (mu_ * x) ** 2))
        got = law._moments(np.array([float(m)]), np.array([float(v)]))
        require(np.allclose([float(g[0]) for g in got], want, rtol=1e-10),
                f"(m, v) = ({mm}, {vv}): code {[float(g[0]) for g in got]} ≠ {want}")
        n += 1
    return checked(n, "E f', E f'', E f, E f'² of the code equal the symbolic half-line "
                      "integrals at (m, v) ∈ {(0.3, 0.5), (−0.7, 0.2), (0, 1), (1.5, 0.01)}")


@obligation("empirics.moments.stationary")
def floor_is_the_fixed_point_of_the_round_map() -> object:
    """The Stein solve of the stationary cycle equals the limit of the propagation (exact laws:
    quadratics with heterogeneous optima, multiplicative noise, EF)."""
    from empirics.compressors import RandomK
    from empirics.configs import configuration, mdsgd, pasgd
    from empirics.laws import law_for
    from empirics.moments import propagate, stationary
    from empirics.problems import NoisyQuadratic
    from empirics.problems.quadratic import Quadratic
    from theory.mixing import ring
    from theory.schedules import Periodic

    cases = [
        (Quadratic.random(d=3, m=4, seed=0, x0=0.5), configuration(Periodic(ring(4), 3))),
        (NoisyQuadratic(d=3, m=4, c=0.5, sigma=0.5), pasgd(4, 2)),
        (Quadratic.random(d=3, m=4, seed=1), mdsgd(4, RandomK(2), W=ring(4), tau=2)),
    ]
    worst = 0.0
    for p, cfg in cases:
        tau = cfg.schedule.tau
        T = 4000 - 4000 % tau
        long = propagate(law_for(p), cfg, 0.1, T + tau)
        fl, _ = stationary(propagate(law_for(p), cfg, 0.1, 10), cfg, 0.1, 1)
        want = float(np.mean(long.columns["grad_norm2"][T:T + tau]))
        rel = abs(fl["grad_norm2"] - want) / want
        worst = max(worst, rel)
        require(rel < 1e-8, f"{cfg.name}: floor {fl['grad_norm2']} vs long run {want}")
    return checked(len(cases), f"Stein/Newton fixed point = long-run cycle average "
                               f"(worst relative gap {worst:.1e}) from a 10-step start")
