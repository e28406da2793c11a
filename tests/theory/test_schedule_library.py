"""Named schedules: linear growth, Spiridonoff, comparison set, adaptive rules, exact Σ H(t)/t."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory import schedule_library as lib
from theory.mixing import average, ring

W4 = average(4)


def test_linear_growth_poster_example():
    a = lib.linear_growth_alpha(5469, 10, 91)
    assert a == Fraction(2 * 5469, 10 * 11 * 91) and round(float(a), 4) == 1.0927
    per = lib.linear_growth_periods(5469, 10, 91)
    assert len(per) == 11 and per[0] == 91 and per[-1] == 1085
    assert all(abs(p - 91 * (1 + i * a)) <= Fraction(1, 2) for i, p in enumerate(per))
    s = lib.linear_growth(W4, 5469, 10, 91)
    run = s.periods(5469)
    assert run.sum() == 5469 and list(run[:-1]) == per[:-1] and run[-1] == 5469 - sum(per[:-1])
    assert s.n_rounds(5469) == 11


def test_spiridonoff_reference_times():
    t = lib.spiridonoff_comm_times(1000, 20)
    assert t[:7] == [0, 4, 14, 28, 47, 71, 100] and t[-2:] == [904, 1000] and len(t) == 21
    s = lib.spiridonoff(average(20), 1000)
    assert list(s.comm_times(1000)) == t[1:]
    assert s.n_rounds(1000) == 20
    with pytest.raises(ValueError, match="too small for R = 20"):
        lib.spiridonoff_comm_times(100, 20)


@settings(max_examples=40, deadline=None)
@given(N=st.integers(2, 40), extra=st.integers(0, 10**6))
def test_spiridonoff_rounds_independent_of_T(N, extra):
    T = N * (N + 1) // 2 + extra
    s = lib.spiridonoff(average(N), T)
    per = s.periods(T)
    assert per.sum() == T and s.n_rounds(T) == N
    assert np.all(np.diff(per) >= 0)  # growing intervals (up to flooring)
    a = Fraction(2 * T, N * (N + 1))
    assert all(abs(h - a * i) < 1 for i, h in enumerate(per, start=1))


def test_comparison_set_matches_notebook():
    c = lib.spiridonoff_comparison(1000, 20)
    assert list(c) == ["synchronous", "stich", "haddadpour", "this_paper", "constant_T_over_N",
                       "one_shot"]
    rounds = {k: s.n_rounds(1000) for k, s in c.items()}
    assert rounds == {"synchronous": 1000, "stich": 143, "haddadpour": 28, "this_paper": 20,
                      "constant_T_over_N": 20, "one_shot": 1}
    assert c["stich"].tau == 7 and c["haddadpour"].tau == 36 and c["constant_T_over_N"].tau == 50
    with pytest.raises(ValueError, match="W must be 20×20"):
        lib.spiridonoff_comparison(1000, 20, ring(8))


def test_icbrt_exact():
    for n in [0, 1, 7, 8, 26, 27, 10**18, 10**18 - 1, 50000]:
        r = lib._icbrt(n)
        assert r**3 <= n < (r + 1) ** 3


def test_sum_H_over_t_exact_values():
    assert lib.sum_H_over_t(lib.synchronous(W4), 10) == Fraction(7381, 2520)  # H_10
    assert lib.sum_H_over_t(lib.one_shot(W4), 4) == 4 * Fraction(25, 12)
    assert lib.sum_H_over_t([2, 3], 5) == 2 * (1 + Fraction(1, 2)) + 3 * (
        Fraction(1, 3) + Fraction(1, 4) + Fraction(1, 5))
    assert isinstance(lib.sum_H_over_t(lib.periodic(W4, 3), 10), Fraction)
    with pytest.raises(ValueError, match="periods must sum to T = 6"):
        lib.sum_H_over_t([2, 3], 6)
    with pytest.raises(ValueError, match="T is required"):
        lib.sum_H_over_t(lib.periodic(W4, 3))


def test_sum_H_over_t_matches_float_sum():
    s = lib.spiridonoff(average(10), 3000)
    per = s.periods(3000)
    H = np.repeat(per, per).astype(float)
    assert math.isclose(float(lib.sum_H_over_t(s, 3000)),
                        float(np.sum(H / np.arange(1, 3001))), rel_tol=1e-12)


def test_adaptive_lupa_rule():
    losses = iter([1.0, 0.5, 0.125, 0.1, 0.01, 0.01])
    s = lib.adaptive_lupa(W4, 5)
    rounds = list(s.rounds(200, lambda: next(losses, 0.01)))
    assert [r.length for r in rounds[:5]] == [5, 10, 10, 15, 25]  # ⌈(F0/F)^{1/3}⌉·τ₀
    assert sum(r.length for r in rounds) == 200
    assert lib.AdaptiveLUPA.period(1.0, 1 / 27, 4) == 12  # exact cube: not pushed up
    with pytest.raises(ValueError, match="adaptive"):
        s.periods(100)
    with pytest.raises(ValueError, match="finite F > 0"):
        list(s.rounds(100, lambda: 0.0))


def test_adacomm_rule():
    losses = iter([1.0, 0.25, 0.04])
    s = lib.adacomm(W4, 10, every=20)
    rounds = list(s.rounds(100, lambda: next(losses, 0.04)))
    # τ = 10 for the first 20 steps, then ⌈√0.25·10⌉ = 5 for 20 steps, then ⌈√0.04·10⌉ = 2
    assert [r.length for r in rounds[:8]] == [10, 10, 5, 5, 5, 5, 2, 2]


def test_one_shot_and_synchronous():
    assert [(r.start, r.length) for r in lib.one_shot(W4).rounds(37)] == [(0, 37)]
    assert lib.synchronous(W4).n_rounds(9) == 9


def test_haddadpour_conditions_report():
    s = lib.linear_growth(W4, 5469, 10, 91)
    rep = lib.haddadpour_conditions(s, 5469, p=4, B=32)
    per = [int(x) for x in s.periods(5469)]
    assert rep.sum_tau_equals_T and rep.E == 11
    assert rep.sum_tau_tau_minus_1 == sum(t * (t - 1) for t in per)
    assert rep.ratio_iii == Fraction(max(per) ** 3 * 128, 5469**2)
    assert "(iii)" in str(rep)
    raw = lib.haddadpour_conditions(lib.linear_growth_periods(5469, 10, 91), 5469)
    assert not raw.sum_tau_equals_T and raw.ratio_iii is None
    with pytest.raises(ValueError, match="give both p"):
        lib.haddadpour_conditions(s, 5469, p=4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="E must be an integer >= 1"):
        lib.linear_growth_alpha(100, 0, 5)
    with pytest.raises(ValueError, match="tau0 must be an integer >= 1"):
        lib.adaptive_lupa(W4, 0)


def test_pl_bound_with_schedule_periods():
    from theory.bounds.local_pl import pl_bound_intervals

    s = lib.linear_growth(W4, 5469, 10, 91)
    b = pl_bound_intervals(s.periods(5469))
    vals = dict(F_gap=1.0, L=2.0, mu=0.5, sigma2=1.0, p=4, B=32, alpha_pl=1.0)
    S, a = s.sum_tau_tau_minus_1(5469), 1.0 * 986 + 4  # max τ_i of the truncated run is 986
    ref = 256 * 4.0**2 * 1.0 * S / (0.5 * 32 * (5469 + a) ** 3)
    assert math.isclose(b.evaluate_terms(**vals)["local"], ref, rel_tol=1e-12)
