"""Cooperative SGD as the JMLR paper states it: Theorem 1's learning-rate conditions (eqs. 143,
145, 16), Lemma 2, Corollary 1, Theorems 2–4, eq. 30 — each against an independent numpy
evaluation typed in from the paper, and the hypotheses enforced by evaluate()."""

import math

import numpy as np
import pytest
import sympy as sp

import theory
from theory.bounds import cooperative as coop
from theory.symbols import DOMAINS, MEANINGS, SYMBOLS

RNG = np.random.default_rng(20210213)


def _S(z, t):
    """2ζ²/(1+ζ) + 2ζ/(1−ζ) + (τ−1)/τ (JMLR eqs. 143, 145, 21), numpy."""
    return 2 * z**2 / (1 + z) + 2 * z / (1 - z) + (t - 1) / t


def np_eq143_lhs(eta, L, m, v, tau, z, beta=0.0):
    eff = m * eta / (m + v)
    return (eff * L * (beta / m + 1) + 2 * eta**2 * L**2 * beta * tau / (1 - z**2)
            + eta**2 * L**2 * tau**2 / (1 - z) * _S(z, tau))


def np_eq16_lhs(eta, L, m, v, tau, z):
    eff = m * eta / (m + v)
    return eff * L + 5 * eff**2 * L**2 * ((1 + v / m) * tau / (1 - z)) ** 2


def np_largest(f):
    """Largest η with f(η) ≤ 1 for an increasing f, by bisection (independent of any formula)."""
    lo, hi = 0.0, 1.0
    while f(hi) <= 1:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) <= 1 else (lo, mid)
    return lo


def np_theorem1(eta, L, s2, m, v, tau, z, K, F):
    eff = m * eta / (m + v)
    return (2 * F / (eff * K) + eff * L * s2 / m
            + eff**2 * L**2 * s2 * ((1 + z**2) / (1 - z**2) * tau - 1) * (1 + v / m) ** 2)


def _random_setting():
    return dict(L=float(RNG.uniform(0.1, 10)), m=int(RNG.integers(1, 65)),
                v=int(RNG.integers(0, 3)), tau=int(RNG.integers(1, 50)),
                zeta=float(RNG.uniform(0, 0.99)))


# --- Theorem 1's learning-rate conditions --------------------------------------------------------
@pytest.mark.parametrize("i", range(12))
def test_largest_eta_eq145_against_numpy_bisection(i):
    s = _random_setting()
    e = coop.largest_eta(s["L"], s["m"], s["tau"], s["zeta"], s["v"])
    ref = np_largest(lambda x: np_eq143_lhs(x, s["L"], s["m"], s["v"], s["tau"], s["zeta"]))
    assert float(e) == pytest.approx(ref, rel=1e-12)
    b = theory.cooperative_bound()
    assert float(b.largest_eta(**s)) == pytest.approx(ref, rel=1e-12)
    vals = dict(s, sigma2=1.0, K=1e4, F_gap=1.0)
    ok = b.evaluate(eta=float(e) * (1 - 1e-9), **vals)
    assert ok == pytest.approx(np_theorem1(float(e) * (1 - 1e-9), s["L"], 1.0, s["m"], s["v"],
                                           s["tau"], s["zeta"], 1e4, 1.0), rel=1e-10)
    with pytest.raises(theory.ConditionError, match=r"eq\. 145.*largest admissible η = "):
        b.evaluate(eta=float(e) * (1 + 1e-9), **vals)


def test_largest_eta_message_names_eq145_and_the_value():
    b = theory.cooperative_bound()
    z = theory.zeta(theory.ring(16))
    e = float(coop.largest_eta(1, 16, 1, z))
    with pytest.raises(theory.ConditionError) as info:
        b.evaluate(eta=0.05, L=1, m=16, v=0, tau=1, zeta=z, sigma2=1, K=1e4, F_gap=1)
    msg = str(info.value)
    assert "JMLR eq. 145" in msg and f"largest admissible η = {e:.6g}" in msg


def test_largest_eta_is_exact_for_exact_inputs():
    z = sp.Rational(1, 3)
    e = coop.largest_eta(1, 4, 2, z, 0)
    assert e.is_number and not e.has(sp.Float)
    lhs = coop.LR_EQ145.relation.lhs.subs({theory.symbols.eta: e, theory.symbols.L: 1,
                                           theory.symbols.m: 4, theory.symbols.v: 0,
                                           theory.symbols.tau: 2, theory.symbols.zeta: z})
    assert sp.simplify(lhs - 1) == 0  # the root sits exactly on the boundary
    # ζ = 0, v = 0: Corollary 2's ηL + η²L²τ(τ−1) = 1, root 2/(1 + √(1 + 4τ(τ−1)))
    assert sp.simplify(coop.largest_eta(1, 4, 3, 0, 0) - 2 / (1 + sp.sqrt(25))) == 0
    # a MixingMatrix is accepted for ζ
    W = theory.ring(16)
    assert float(coop.largest_eta(1, 16, 1, W)) == pytest.approx(
        float(coop.largest_eta(1, 16, 1, W.zeta)), rel=1e-15)


@pytest.mark.parametrize("i", range(6))
def test_eq143_with_beta_against_numpy(i):
    s = _random_setting()
    beta = float(RNG.uniform(0, 5))
    e = coop.largest_eta(s["L"], s["m"], s["tau"], s["zeta"], s["v"], beta)
    ref = np_largest(lambda x: np_eq143_lhs(x, s["L"], s["m"], s["v"], s["tau"], s["zeta"], beta))
    assert float(e) == pytest.approx(ref, rel=1e-12)
    b = theory.cooperative_bound(beta=None)  # β a free symbol of the condition (eq. 143)
    assert "eq. 143" in b.conditions[0].name
    vals = dict(s, sigma2=1.0, K=1e4, F_gap=1.0)
    b.evaluate(eta=float(e) * (1 - 1e-9), beta=beta, **vals)
    with pytest.raises(theory.ConditionError, match=r"eq\. 143"):
        b.evaluate(eta=float(e) * (1 + 1e-9), beta=beta, **vals)
    with pytest.raises(theory.ConditionError, match="missing values for beta"):
        b.evaluate(eta=float(e) / 2, **vals)
    # β = 0 in eq. 143 is eq. 145
    assert float(coop.largest_eta(s["L"], s["m"], s["tau"], s["zeta"], s["v"], 0)) == \
        pytest.approx(np_largest(lambda x: np_eq143_lhs(x, s["L"], s["m"], s["v"], s["tau"],
                                                        s["zeta"])), rel=1e-12)


@pytest.mark.parametrize("i", range(6))
def test_relaxed_eq16_against_numpy_and_implies_eq145(i):
    s = _random_setting()
    b = theory.cooperative_bound("relaxed")
    assert "eq. 16" in b.conditions[0].name
    e16 = float(b.largest_eta(**s))
    ref = np_largest(lambda x: np_eq16_lhs(x, s["L"], s["m"], s["v"], s["tau"], s["zeta"]))
    assert e16 == pytest.approx(ref, rel=1e-12)
    # eq. 16 is sufficient for eq. 145 (eqs. 146–148): its admissible η is never larger
    assert e16 <= float(coop.largest_eta(s["L"], s["m"], s["tau"], s["zeta"], s["v"])) * (1 + 1e-12)
    with pytest.raises(ValueError, match=r"eq\. 16 is stated for β = 0"):
        theory.cooperative_bound("relaxed", beta=1)
    with pytest.raises(ValueError, match="kind must be 'exact'"):
        theory.cooperative_bound("loose")


@pytest.mark.parametrize("i", range(10))
def test_eq145_reduces_to_corollaries_2_and_3_numerically(i):
    L_, tau_, z = float(RNG.uniform(0.1, 5)), int(RNG.integers(1, 40)), float(RNG.uniform(0, .99))
    eta_ = float(RNG.uniform(1e-4, 0.5))
    cor2 = eta_ * L_ + eta_**2 * L_**2 * tau_ * (tau_ - 1)
    cor3 = eta_ * L_ + eta_**2 * L_**2 * 2 * z / (1 - z) * (z / (1 + z) + 1 / (1 - z))
    assert np_eq143_lhs(eta_, L_, 7, 0, tau_, 0.0) == pytest.approx(cor2, rel=1e-13)
    assert np_eq143_lhs(eta_, L_, 7, 0, 1, z) == pytest.approx(cor3, rel=1e-13)
    vals = {"eta": eta_, "L": L_, "tau": tau_, "zeta": z}
    f2 = float(coop.PASGD_LR.relation.lhs.subs({SYMBOLS[k]: x for k, x in vals.items()}))
    f3 = float(coop.DPSGD_LR.relation.lhs.subs({SYMBOLS[k]: x for k, x in vals.items()}))
    assert f2 == pytest.approx(cor2, rel=1e-13) and f3 == pytest.approx(cor3, rel=1e-13)


def test_dpsgd_ring16_outside_corollary3_is_refused():
    """The issue's example: ring(16), weights 1/3, ζ = 0.9493 allows ηL ≤ 0.0357; at ηL = 0.061
    Corollary 3 says nothing and evaluate() refuses."""
    W = theory.ring(16)
    b = theory.dpsgd_bound()
    e = float(b.largest_eta(L=1, zeta=W))
    z = W.zeta
    assert e == pytest.approx(np_largest(
        lambda x: x + x**2 * 2 * z / (1 - z) * (z / (1 + z) + 1 / (1 - z))), rel=1e-12)
    assert round(e, 4) == 0.0357
    vals = dict(L=1, sigma2=1, m=16, K=1e4, F_gap=1, zeta=W)
    with pytest.raises(theory.ConditionError, match=r"Corollary 3.*largest admissible η = 0\.0357"):
        b.evaluate(eta=0.061, **vals)
    assert b.evaluate(eta=0.035, **vals) > 0


def test_decentralized_periodic_and_easgd_carry_eq145():
    b = theory.decentralized_periodic_bound()
    (c,) = b.conditions
    assert "eq. 145" in c.name
    s = dict(L=2.0, m=8, tau=5, zeta=0.6)
    ref = np_largest(lambda x: np_eq143_lhs(x, 2.0, 8, 0, 5, 0.6))
    assert float(b.largest_eta(**s)) == pytest.approx(ref, rel=1e-12)
    e = theory.easgd_bound(0.1)
    assert [("ζ(W_α) < 1" in c.name, "eq. 145" in c.name) for c in e.conditions] == [
        (True, False), (False, True)]
    z = max(abs(1 - 0.1), abs(1 - 9 * 0.1))
    ref = np_largest(lambda x: np_eq143_lhs(x, 1.0, 8, 1, 4, z))
    assert float(e.largest_eta(L=1, m=8, tau=4)) == pytest.approx(ref, rel=1e-12)


# --- Lemma 2 ------------------------------------------------------------------------------------
def test_lemma2_bound_against_numpy():
    b = theory.lemma2_bound()
    assert b.source.status == "quoted" and "Lemma 2, eq. 38" in b.source.where
    assert theory.symbols.consensus_avg in b.free_symbols
    vals = dict(eta=0.02, L=3.0, sigma2=0.7, m=8, v=1, K=500, F_gap=2.0, consensus_avg=0.013)
    eff = 8 * 0.02 / 9
    ref = 2 * 2.0 / (eff * 500) + eff * 3.0 * 0.7 / 8 + 3.0**2 * 0.013
    assert b.evaluate(**vals) == pytest.approx(ref, rel=1e-13)
    # condition η_eff L (1 + β/m) ≤ 1
    assert float(b.largest_eta(L=3.0, m=8, v=1)) == pytest.approx(9 / (8 * 3.0), rel=1e-14)
    with pytest.raises(theory.ConditionError, match="Lemma 2"):
        b.evaluate(**{**vals, "eta": 0.4})
    bb = theory.lemma2_bound(beta=2)
    assert float(bb.largest_eta(L=3.0, m=8, v=1)) == pytest.approx(
        1 / (8 / 9 * 3.0 * (1 + 2 / 8)), rel=1e-14)


def test_consensus_and_kappa2_symbols_are_registered():
    for key in ("consensus_avg", "kappa2"):
        s = SYMBOLS[key]
        assert key in theory.symbols.__all__
        assert DOMAINS[s].contains(0.0) and not DOMAINS[s].contains(-1e-3)
        assert MEANINGS[s]
    assert "E‖X_k(I − J)‖²_F / m" in MEANINGS[SYMBOLS["consensus_avg"]]
    assert "Theorem 2" in MEANINGS[SYMBOLS["kappa2"]]
    assert SYMBOLS["kappa2"] != SYMBOLS["kappa"]


# --- Corollary 1, Table 1's largest τ ------------------------------------------------------------
def test_corollary1_eta_bound_and_K_condition():
    from theory.symbols import K, L, eta, m, v

    assert sp.simplify(coop.corollary1_eta() - (m + v) / (L * m) * sp.sqrt(m / K)) == 0
    # Theorem 1 at Corollary 1's η is eq. 18 (exactly)
    t1 = theory.cooperative_bound().expr.subs(eta, coop.corollary1_eta())
    assert sp.simplify(t1 - theory.corollary1_bound().expr) == 0
    # eq. 18 against numpy
    vals = dict(L=2.0, F_gap=3.0, sigma2=0.5, m=8, K=1e6, v=1, tau=4, zeta=0.5)
    mm, KK = 8, 1e6
    ref = ((2 * 2.0 * 3.0 + 0.5) / math.sqrt(mm * KK)
           + mm / KK * (1 + 1 / mm) ** 2 * ((1 + .25) / (1 - .25) * 4 - 1) * 0.5)
    b = theory.corollary1_bound()
    assert b.evaluate(**vals) == pytest.approx(ref, rel=1e-13)
    assert b.source.status == "quoted" and "Corollary 1, eq. 18" in b.source.where
    with pytest.raises(theory.ConditionError, match="K-condition of Corollary 1"):
        b.evaluate(**{**vals, "K": 1e3})
    # the K-condition makes η satisfy eq. 16 (hence eq. 145) on random settings
    for _ in range(50):
        s = _random_setting()
        Kmin = 10 * s["m"] * ((1 + s["v"] / s["m"]) * s["tau"] / (1 - s["zeta"])) ** 2
        KK = Kmin * float(RNG.uniform(1, 100))
        e = (s["m"] + s["v"]) / (s["L"] * s["m"]) * math.sqrt(s["m"] / KK)
        assert np_eq16_lhs(e, s["L"], s["m"], s["v"], s["tau"], s["zeta"]) <= 1
        assert np_eq143_lhs(e, s["L"], s["m"], s["v"], s["tau"], s["zeta"]) <= 1


@pytest.mark.parametrize("i", range(8))
def test_largest_tau_against_brute_force(i):
    m_, v_, z = int(RNG.integers(1, 33)), int(RNG.integers(0, 2)), float(RNG.uniform(0, 0.95))
    K_ = float(10 ** RNG.uniform(3, 8))
    taus = np.arange(1, 200_001, dtype=float)
    # IID: Corollary 1's K-condition
    iid_ok = 10 * m_ * ((1 + v_ / m_) * taus / (1 - z)) ** 2 <= K_
    ref_iid = int(taus[iid_ok].max()) if iid_ok.any() else 0
    assert coop.largest_tau(m_, z, K_, v_) == ref_iid
    # non-IID: C ≤ 1/2 (eq. 21) at η = ((m+v)/(Lm))√(m/K), and η_eff L = √(m/K) ≤ 1
    L_ = 1.7  # C does not depend on L at this η
    e = (m_ + v_) / (L_ * m_) * math.sqrt(m_ / K_)
    C = 6 * e**2 * L_**2 * taus**2 / (1 - z) * _S(z, taus)
    ok = (C <= 0.5) & (math.sqrt(m_ / K_) <= 1)
    ref_non = int(taus[ok].max()) if ok.any() else 0
    assert coop.largest_tau(m_, z, K_, v_, iid=False) == ref_non
    assert ref_non <= ref_iid or ref_iid == 0 or True  # no ordering is claimed


def test_largest_tau_symbolic_and_table_1():
    from theory.symbols import K, m

    t = coop.largest_tau(m, 0, K)
    assert sp.simplify(t - sp.sqrt(K / (10 * m))) == 0
    assert coop.largest_tau(16, 0.5, 10.0) == 0  # K too small even for τ = 1
    assert coop.largest_tau(16, 0.5, 8.0, iid=False) == 0  # K < m: η_eff L > 1
    rows = {r.setting: r for r in coop.TABLE_1}
    assert sp.simplify(rows["IID"].tau_order - sp.sqrt(K) / m**sp.Rational(3, 2)) == 0
    assert sp.simplify(rows["non-IID"].tau_order - (K / m**3) ** sp.Rational(1, 4)) == 0
    assert all(r.source.status == "quoted" and "Table 1" in r.source.where
               for r in coop.TABLE_1)


# --- Theorem 2 (non-IID) -------------------------------------------------------------------------
def test_theorem2_against_numpy_and_its_conditions():
    b = theory.cooperative_noniid_bound()
    assert b.source.status == "quoted" and "Theorem 2, eqs. 20–21" in b.source.where
    assert set(b.terms) == {"optimization", "variance", "network", "heterogeneity"}
    vals = dict(eta=0.004, L=2.0, sigma2=0.3, m=8, v=0, tau=4, zeta=0.5, K=2000, F_gap=1.5,
                kappa2=0.8)
    C = 6 * 0.004**2 * 4.0 * 16 / 0.5 * _S(0.5, 4)
    ref = 2 * np_theorem1(0.004, 2.0, 0.3, 8, 0, 4, 0.5, 2000, 1.5) + C * 0.8
    assert b.evaluate(**vals) == pytest.approx(ref, rel=1e-13)
    assert b.evaluate_terms(**vals)["heterogeneity"] == pytest.approx(C * 0.8, rel=1e-13)
    # C ≤ 1/2 binds: largest η = √(1/(2·6L²τ²S/(1−ζ))) (η_eff L ≤ 1 allows 1/L = 0.5)
    e = float(b.largest_eta(L=2.0, m=8, v=0, tau=4, zeta=0.5))
    assert e == pytest.approx(math.sqrt(0.5 / (6 * 4.0 * 16 / 0.5 * _S(0.5, 4))), rel=1e-13)
    with pytest.raises(theory.ConditionError, match=r"C ≤ 1/2 of Theorem 2"):
        b.evaluate(**{**vals, "eta": e * (1 + 1e-9)})
    b.evaluate(**{**vals, "eta": e * (1 - 1e-9)})
    # τ = 1, ζ = 0: C = 0, only η_eff L ≤ 1 binds
    assert float(b.largest_eta(L=2.0, m=8, v=1, tau=1, zeta=0)) == pytest.approx(9 / 16)
    with pytest.raises(theory.ConditionError, match=r"η_eff L ≤ 1"):
        b.evaluate(**{**vals, "tau": 1, "zeta": 0, "eta": 0.6})


# --- Theorem 3 vs the substitution --------------------------------------------------------------
@pytest.mark.parametrize("m_", [2, 4, 8, 16])
def test_theorem3_against_numpy_and_the_substitution(m_):
    b = theory.easgd_paper_bound()
    assert b.source.status == "quoted" and "Theorem 3, eq. 23" in b.source.where
    vals = dict(eta=1e-4, L=1.0, sigma2=2.0, m=m_, tau=6, K=1e5, F_gap=3.0)
    eff = m_ * 1e-4 / (m_ + 1)
    C = 1 + 2 * (1 + 1 / m_) ** 2
    ref = (2 * 3.0 / (eff * 1e5) + eff * 2.0 / m_
           + 0.5 * eff**2 * 2.0 * (m_ + 1) * (1 + C * (6 - 1)))
    assert b.evaluate(**vals) == pytest.approx(ref, rel=1e-13)
    sub = theory.easgd_bound("optimal")
    net3, net1 = b.evaluate_terms(**vals)["network"], sub.evaluate_terms(**vals)["network"]
    assert net3 >= net1  # the substitution is tighter
    ratio = (m_**2 + (3 * m_**2 + 4 * m_ + 2) * 5) / (m_**2 + (m_**2 + 2 * m_ + 2) * 5)
    assert net3 / net1 == pytest.approx(ratio, rel=1e-12)
    at1 = dict(vals, tau=1)
    assert b.evaluate_terms(**at1)["network"] == pytest.approx(
        sub.evaluate_terms(**at1)["network"], rel=1e-12)
    # same first two terms; the condition is eq. 145 at v = 1, ζ = m/(m+2)
    z = m_ / (m_ + 2)
    ref_eta = np_largest(lambda x: np_eq143_lhs(x, 1.0, m_, 1, 6, z))
    assert float(b.largest_eta(L=1.0, m=m_, tau=6)) == pytest.approx(ref_eta, rel=1e-12)


# --- Theorem 4 ----------------------------------------------------------------------------------
@pytest.mark.parametrize("i", range(8))
def test_generalized_easgd_spectrum_against_numpy(i):
    m_ = int(RNG.integers(3, 20))
    G = theory.random_geometric_graph(m_, avg_degree=3, seed=i)
    W = theory.metropolis_hastings(G)
    a = float(RNG.uniform(0.01, 1.0))
    Wp = theory.generalized_easgd_matrix(W, a)
    assert isinstance(Wp, theory.MixingMatrix) and Wp.n == m_ + 1
    A = np.asarray(W)
    ref = np.block([[(1 - a) * A, a * np.ones((m_, 1))], [a * np.ones((1, m_)), 1 - m_ * a]])
    np.testing.assert_array_equal(np.asarray(Wp), ref)
    lam = np.sort(np.linalg.eigvalsh(ref))[::-1]
    zeta_np = max(abs(lam[1]), abs(lam[-1]))
    z = W.zeta
    assert float(theory.generalized_easgd_zeta(z, m_, a)) == pytest.approx(zeta_np, abs=1e-12)
    assert Wp.zeta == pytest.approx(zeta_np, abs=1e-12)


@pytest.mark.parametrize("m_", [2, 5, 16])
def test_generalized_easgd_optimal_alpha_grid_and_exact(m_):
    W = theory.ring(max(m_, 3)) if m_ >= 3 else theory.average(2)
    m_ = W.n
    z = W.zeta
    a_s, zp = theory.generalized_easgd_optimal_alpha(z, m_)
    assert float(a_s) == pytest.approx((1 + z) / (m_ + 1 + z), rel=1e-14)
    assert float(zp) == pytest.approx(m_ * z / (m_ + 1 + z), rel=1e-14)
    grid = np.linspace(1e-4, 1, 20001)
    vals = [max((1 - a) * z, abs(1 - (m_ + 1) * a)) for a in grid]
    assert min(vals) >= float(zp) - 1e-12
    assert theory.generalized_easgd_matrix(W, float(a_s)).zeta == pytest.approx(float(zp),
                                                                                abs=1e-12)
    # exact in, exact out
    a_e, z_e = theory.generalized_easgd_optimal_alpha(sp.Rational(1, 3), 4)
    assert (a_e, z_e) == (sp.Rational(4, 3) / sp.Rational(16, 3), sp.Rational(4, 16))
    assert theory.generalized_easgd_zeta(sp.Rational(1, 3), 4, a_e) == z_e
    # ζ′ < ζ for every connected W (the paper's point)
    assert float(zp) < z or z == 0


def test_generalized_easgd_bad_input_is_named():
    with pytest.raises(ValueError, match="alpha must be in"):
        theory.generalized_easgd_matrix(theory.ring(8), 1.5)
    with pytest.raises(ValueError, match="alpha must be in"):
        theory.generalized_easgd_zeta(0.5, 4, -0.1)
    with pytest.raises(ValueError, match="zeta must be in"):
        theory.generalized_easgd_optimal_alpha(1.5, 4)
    with pytest.raises(ValueError, match="zeta must be finite"):
        theory.generalized_easgd_optimal_alpha(float("nan"), 4)
    # W = I gives EASGD's W_α
    np.testing.assert_allclose(np.asarray(theory.generalized_easgd_matrix(theory.identity(5), .2)),
                               np.asarray(theory.easgd_matrix(5, .2)), atol=0)


# --- eq. 30 --------------------------------------------------------------------------------------
def test_eq30_threshold_is_the_crossover():
    for t in (1, 2, 5, 10, 24):
        zt = float(coop.dpsgd_zeta_threshold(t))
        assert zt == pytest.approx(math.sqrt(1 - 2 / (t + 1)), rel=1e-15)
        if zt > 0:
            assert float(theory.pasgd_dpsgd_crossover(zt)) == pytest.approx(t, rel=1e-12)
