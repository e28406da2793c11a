"""Cooperative SGD bounds: special cases, derived results, monotonicity properties."""

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import theory
from theory.symbols import F_gap, K, L, eta, m, sigma2, tau, v, zeta

# JMLR Theorem 1 (eq. 17 with η_eff²(1+v/m)² = η²) and Corollaries 2–3 (eqs. 24, 27), typed in
# independently of the code
GENERAL = (2 * F_gap / ((m * eta / (m + v)) * K) + (m * eta / (m + v)) * L * sigma2 / m
           + eta**2 * L**2 * sigma2 * ((1 + zeta**2) / (1 - zeta**2) * tau - 1))
PASGD = 2 * F_gap / (eta * K) + eta * L * sigma2 / m + eta**2 * L**2 * sigma2 * (tau - 1)
DPSGD = 2 * F_gap / (eta * K) + eta * L * sigma2 / m + eta**2 * L**2 * sigma2 * 2 * zeta**2 / (
    1 - zeta**2)
SYNC = 2 * F_gap / (eta * K) + eta * L * sigma2 / m


def same(a, b):
    return sp.simplify(a - b) == 0


def test_general_bound_is_theorem_1():
    b = theory.cooperative_bound()
    assert same(b.expr, GENERAL)
    assert set(b.terms) == {"optimization", "variance", "network"}
    assert b.source.status == "quoted" and b.source.confidence is None
    assert "Theorem 1, eqs. 16–17" in b.source.where
    (c,) = b.conditions
    assert "eq. 145" in c.name and c.source.status == "quoted"


@pytest.mark.parametrize("fn,subs,formula", [
    (theory.synchronous_bound, dict(tau=1, zeta=0, v=0), SYNC),
    (theory.pasgd_bound, dict(zeta=0, v=0), PASGD),
    (theory.dpsgd_bound, dict(tau=1, v=0), DPSGD),
    (theory.decentralized_periodic_bound, dict(v=0), GENERAL.subs(v, 0)),
])
def test_special_cases_are_substitutions(fn, subs, formula):
    special = fn()
    general = theory.cooperative_bound().subs(**subs)
    assert same(special.expr, general.expr)
    assert same(special.expr, formula)
    for k in ("optimization", "variance", "network"):
        assert same(special.terms[k], general.terms[k])


def test_easgd_special_case():
    b = theory.easgd_bound()
    a = theory.symbols.alpha
    z = sp.Max(sp.Abs(1 - a), sp.Abs(1 - (m + 1) * a))
    assert same(b.expr, GENERAL.subs({v: 1, zeta: z}))
    opt = theory.easgd_bound("optimal")
    assert same(opt.expr, GENERAL.subs({v: 1, zeta: m / (m + 2)}))
    # numeric W_α agrees with the symbolic ζ(α)
    W = theory.easgd_matrix(6, 0.1)
    assert float(theory.easgd_zeta(6, 0.1)) == pytest.approx(theory.zeta(W))


def test_easgd_bound_refuses_alpha_with_zeta_at_least_one():
    """0 < α < 2/(m+1) ⟺ ζ(W_α) < 1; outside it Theorem 1 does not apply (the network term
    would be negative or unbounded), so evaluate() raises and names the condition."""
    b = theory.easgd_bound()
    vals = dict(m=2, eta=0.01, L=1, sigma2=1, tau=4, K=1000, F_gap=1)
    for a_bad in (0.9, sp.Rational(2, 3)):  # ζ = 1.7 and exactly 1
        with pytest.raises(theory.ConditionError, match=r"0 < α < 2/\(m\+1\)"):
            b.evaluate(alpha=a_bad, **vals)
    with pytest.raises(ValueError, match="alpha must be a real number > 0"):
        b.evaluate(alpha=-0.1, **vals)
    with pytest.raises(theory.ConditionError, match=r"alpha_ = 5 gives ζ\(W_α\) ≥ 1 for every m"):
        theory.easgd_bound(5)
    b2 = theory.easgd_bound(0.5)  # fine for m = 2 (α < 2/3), not for m = 3 (α ≥ 1/2)
    assert b2.evaluate(m=2, **{k: x for k, x in vals.items() if k != "m"}) > 0
    with pytest.raises(theory.ConditionError, match="0 < α < 2/"):
        b2.evaluate(m=3, **{k: x for k, x in vals.items() if k != "m"})
    val = b.evaluate(alpha=0.3, **vals)  # ζ = max(0.7, 0.1) = 0.7
    assert val == pytest.approx(float(GENERAL.subs({v: 1, zeta: 0.7, m: 2, eta: 0.01, L: 1,
                                                    sigma2: 1, tau: 4, K: 1000, F_gap: 1})))


def test_special_case_provenance_follows_the_jmlr_text():
    """Corollary 2 (PASGD, eq. 24) and Corollary 3 (D-PSGD, eq. 27) are the paper's own
    statements: quoted with their numbers; EASGD at any α and decentralized periodic averaging
    are substitutions into Theorem 1 by the code: derived."""
    S = theory.Status
    cases = {theory.pasgd_bound: (S.QUOTED, "Corollary 2, eq. 24"),
             theory.dpsgd_bound: (S.QUOTED, "Corollary 3, eq. 27"),
             theory.synchronous_bound: (S.QUOTED, "Corollary 2, eq. 24 at τ = 1"),
             theory.easgd_bound: (S.DERIVED, "Theorem 1"),
             theory.decentralized_periodic_bound: (S.DERIVED, "Theorem 1")}
    for fn, (status, where) in cases.items():
        src = fn().source
        assert src.status is status and where in src.where, fn.__name__
        assert "digest" not in str(src) and "papers.md" not in str(src)
    # the paper's own conditions, not AdaComm's
    assert theory.pasgd_bound().conditions == (theory.PASGD_LR,)
    assert "Corollary 2" in theory.PASGD_LR.name and "AdaComm" not in str(theory.PASGD_LR.source)
    assert theory.dpsgd_bound().conditions == (theory.DPSGD_LR,)


def test_repl_evaluate():
    W = theory.ring(16)
    val = theory.cooperative_bound().evaluate(eta=0.005, L=1, sigma2=1, m=16, v=0, tau=4,
                                              zeta=theory.zeta(W), K=10_000, F_gap=10)
    z = theory.zeta(W)
    expected = 2 * 10 / (0.005 * 1e4) + 0.005 / 16 + 0.005**2 * ((1 + z**2) / (1 - z**2) * 4 - 1)
    assert val == pytest.approx(expected, rel=1e-12)


def test_crossover_derived():
    t = theory.pasgd_dpsgd_crossover()
    assert same(t, (1 + zeta**2) / (1 - zeta**2))
    # rings with weights 1/3: τ_eq = (1+ζ²)/(1−ζ²) from ζ = 1/3 + (2/3)cos(2π/m)
    for mm, expected in [(4, 1.25), (8, 4.675), (16, 19.22), (32, 77.57)]:
        z = theory.zeta(theory.ring(mm))
        assert float(t.subs(zeta, z)) == pytest.approx(expected, rel=2e-3)
    # the floors really are equal at τ_eq and ordered on either side
    z = 0.8
    vals = dict(eta=0.01, L=1, sigma2=1, m=8, F_gap=1)
    floor_p = theory.error_floor(theory.pasgd_bound())
    floor_d = theory.error_floor(theory.dpsgd_bound())
    s = {theory.symbol(k): x for k, x in vals.items()}
    teq = float(t.subs(zeta, z))
    assert float(floor_p.subs(s).subs(tau, teq)) == pytest.approx(
        float(floor_d.subs(s).subs(zeta, z)))
    assert float(floor_p.subs(s).subs(tau, teq - 1)) < float(floor_d.subs(s).subs(zeta, z))


@pytest.mark.parametrize("mm", [1, 2, 4, 8, 16, 100])
def test_easgd_optimal_alpha(mm):
    a, z = theory.easgd_optimal_alpha(mm)
    if mm == 1:  # spectrum {1, 1 − 2α}: α* = 1/2 averages the worker and the centre exactly
        assert (a, z) == (sp.Rational(1, 2), 0)
    else:
        assert (a, z) == (sp.Rational(2, mm + 2), sp.Rational(mm, mm + 2))
    # independent check: grid search over α of the numeric ζ(W_α)
    grid = np.linspace(0.0005, 1.2, 2400 if mm <= 16 else 600)
    zs = [theory.zeta(theory.easgd_matrix(mm, x)) for x in grid]
    assert min(zs) >= float(z) - 1e-12
    assert theory.zeta(theory.easgd_matrix(mm, float(a))) == pytest.approx(float(z), abs=1e-12)


def test_easgd_optimal_alpha_symbolic_and_factor():
    assert theory.easgd_optimal_alpha() == (2 / (m + 2), m / (m + 2))
    assert theory.easgd_optimal_alpha(8) == (sp.Rational(1, 5), sp.Rational(4, 5))
    assert same(theory.easgd_network_factor(), (m**2 + 2 * m + 2) / (2 * (m + 1)))
    with pytest.raises(ValueError, match="m must be an integer"):
        theory.easgd_optimal_alpha(0)


def test_runtime_tau_star_closed_form():
    ts = theory.optimal_tau_runtime()
    Fd, D_, Tw = F_gap, theory.symbols.D, theory.symbols.T_wall
    assert same(ts, sp.sqrt(2 * Fd * D_ / (eta**3 * L**2 * sigma2 * Tw)))
    assert theory.runtime_bound().source.status == "recalled"


def test_pasgd_lr_condition():
    b = theory.pasgd_bound()
    ok = dict(eta=0.1, L=1, sigma2=1, m=4, K=100, F_gap=1, tau=3)
    b.evaluate(**ok)
    with pytest.raises(theory.ConditionError, match="ηL \\+ η²L²τ\\(τ−1\\) ≤ 1 violated"):
        b.evaluate(**{**ok, "tau": 10})


# --- properties ---------------------------------------------------------------------------------
_f = theory.cooperative_bound().lambdify(
    ["eta", "L", "sigma2", "m", "v", "tau", "zeta", "K", "F_gap"])


@settings(max_examples=300, deadline=None)
@given(eta_=st.floats(1e-5, 1.0), L_=st.floats(1e-3, 1e3), s2=st.floats(0, 1e3),
       m_=st.integers(1, 1024), v_=st.integers(0, 4), t1=st.integers(1, 1000),
       t2=st.integers(1, 1000), z1=st.floats(0, 0.999), z2=st.floats(0, 0.999),
       k1=st.floats(1, 1e7), k2=st.floats(1, 1e7), F=st.floats(0, 1e3))
def test_bound_monotone(eta_, L_, s2, m_, v_, t1, t2, z1, z2, k1, k2, F):
    (t1, t2), (z1, z2), (k1, k2) = sorted((t1, t2)), sorted((z1, z2)), sorted((k1, k2))

    def f(t, z, k):
        return _f(eta_, L_, s2, m_, v_, t, z, k, F)

    base = f(t1, z1, k1)
    tol = 1e-12 * abs(base) + 1e-300
    assert f(t2, z1, k1) >= base - tol  # non-decreasing in τ
    assert f(t1, z2, k1) >= base - tol  # non-decreasing in ζ
    assert f(t1, z1, k2) <= base + tol  # non-increasing in K
