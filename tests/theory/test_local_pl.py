"""Haddadpour et al.: assumptions, PL bound, derived τ choice, rate table."""

import math

import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.bound import Status
from theory.bounds import local_pl as pl
from theory.symbols import B, F_gap, L, T, mu, p, sigma2, tau

VALS = dict(F_gap=2.0, L=4.0, mu=0.5, sigma2=1.5, p=4, B=32, T=5469, tau=91, alpha_pl=1.0)


def reference(F_gap, L, mu, sigma2, p, B, T, tau, alpha_pl):
    """The recalled PL formula (Haddadpour et al., main PL theorem) typed in with floats."""
    a = alpha_pl * tau + 4
    k = L / mu
    return (a**3 / (T + a) ** 3 * F_gap
            + 4 * k * sigma2 * T * (T + 2 * a) / (mu * p * B * (T + a) ** 3)
            + 256 * k**2 * sigma2 * T * (tau - 1) / (mu * B * (T + a) ** 3))


def test_assumptions_are_quoted_data():
    names = [a.name for a in pl.ASSUMPTIONS]
    assert names == ["unbiased", "bounded variance", "L-smooth", "mu-PL"]
    assert all(a.source.status is Status.QUOTED for a in pl.ASSUMPTIONS)
    var = pl.ASSUMPTIONS[1]
    assert "C₁‖g_j‖² + σ²/B" in var.statement and set(var.constants) >= {sigma2, B}
    assert "μ" in str(pl.ASSUMPTIONS[3])


def test_pl_bound_value_and_status():
    b = pl.pl_bound()
    assert b.source.status is Status.RECALLED and b.source.confidence == "low"
    assert "low-confidence" in b.source.note and "not known and not encoded" in b.source.note
    assert set(b.terms) == {"initial", "variance", "local"}
    assert math.isclose(b.evaluate(**VALS), reference(**VALS), rel_tol=1e-12)
    assert b.subs(tau=1).terms["local"] == 0


def test_pl_bound_rejects_bad_values():
    with pytest.raises(ValueError, match="sigma2 must be"):
        pl.pl_bound().evaluate(**{**VALS, "sigma2": -1.0})
    with pytest.raises(ValueError, match="missing values for alpha_pl"):
        pl.pl_bound().evaluate(**{k: v for k, v in VALS.items() if k != "alpha_pl"})


def test_tau_choice_scaling_is_derived_not_typed():
    tc = pl.tau_choice()
    assert tc.binding == "initial"
    expected = T ** sp.Rational(2, 3) / (p * F_gap) ** sp.Rational(1, 3)
    assert sp.simplify(tc.scaling_tau - expected) == 0
    assert sp.simplify(tc.scaling_rounds - (p * T * F_gap) ** sp.Rational(1, 3)) == 0
    # c defaults to the coefficient of the speed-up term 4κσ²/(μpBT)
    assert sp.simplify(tc.c - 4 * L * sigma2 / (mu**2 * B)) == 0
    # the crossover with the local-steps limit grows like p²
    assert sp.degree(tc.regime, p) == 2 and T not in tc.regime.free_symbols
    f = sp.lambdify((T, p), tc.tau.subs({F_gap: 2, L: 1, mu: 1, sigma2: 1, B: 1, pl.alpha_pl: 1}))
    assert math.isclose(f(8000.0, 4) / f(1000.0, 4), 4.0)   # T^{2/3}
    assert math.isclose(f(1000.0, 32) / f(1000.0, 4), 0.5)  # p^{-1/3}


def test_tau_choice_custom_c():
    c = sp.Symbol("c", positive=True)
    tc = pl.tau_choice(c)
    assert sp.simplify(tc.tau - (c / F_gap) ** sp.Rational(1, 3) * T ** sp.Rational(2, 3)
                       / (pl.alpha_pl * p ** sp.Rational(1, 3))) == 0


@settings(max_examples=25, deadline=None)
@given(p_=st.integers(1, 64), F=st.floats(0.1, 100), s2=st.floats(0.01, 10))
def test_tau_choice_makes_initial_term_equal_speedup_term_for_large_T(p_, F, s2):
    tc = pl.tau_choice()
    vals = {p: p_, F_gap: F, sigma2: s2, L: 2.0, mu: 1.0, B: 8, pl.alpha_pl: 1.0}
    T_ = 1e18  # the terms agree up to O(a/T) = O(T^{-1/3}) corrections
    t_ = float(tc.tau.subs(vals).subs(T, T_))
    init = float(pl.pl_bound().terms["initial"].subs(vals).subs({T: T_, tau: t_}))
    target = float((tc.c / (p * T)).subs(vals).subs(T, T_))
    assert math.isclose(init, target, rel_tol=1e-3)


def test_rate_table_and_compare():
    assert [r.strategy for r in pl.RATE_TABLE][-1] == "Haddadpour et al. (2019)"
    assert all(r.source.status is Status.QUOTED for r in pl.RATE_TABLE)
    rows = pl.compare_rates(4, 5469)
    assert rows[0]["strategy"] == "Haddadpour et al. (2019)"
    assert math.isclose(rows[0]["rounds"], (4 * 5469) ** (1 / 3))
    by = {r["strategy"]: r for r in rows}
    assert math.isclose(by["Wang & Joshi (2018)"]["rounds"], 4**1.5 * 5469**0.5)
    assert math.isclose(by["Stich (2019)"]["rate"], 1 / (4 * 5469))
    with pytest.raises(ValueError, match="p must be an integer >= 1"):
        pl.compare_rates(0, 100)


def test_pl_bound_intervals():
    b = pl.pl_bound_intervals([5, 10, 15])
    assert b.source.status is Status.DERIVED
    vals = {k: v for k, v in VALS.items() if k not in ("T", "tau")}
    a = vals["alpha_pl"] * 15 + 4
    k = vals["L"] / vals["mu"]
    S = 5 * 4 + 10 * 9 + 15 * 14
    local = 256 * k**2 * vals["sigma2"] * S / (vals["mu"] * vals["B"] * (30 + a) ** 3)
    assert math.isclose(b.evaluate_terms(**vals)["local"], local, rel_tol=1e-12)
    with pytest.raises(ValueError, match=r"periods\[1\] must be an integer >= 1 \(got 0\)"):
        pl.pl_bound_intervals([3, 0])


def test_docs_page_snippets_run():
    import doctest
    from pathlib import Path

    page = Path(__file__).resolve().parents[2] / "docs" / "local_sgd_pl.md"
    r = doctest.testfile(str(page), module_relative=False, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert r.attempted > 10 and r.failed == 0
