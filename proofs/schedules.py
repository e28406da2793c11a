"""Obligations for the schedules (theory.schedule_library, theory.schedules)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import sympy as sp

from proofs.core import checked, obligation, proved, require
from theory import schedule_library as lib
from theory import symbols as sym
from theory.bounds import one_shot as os_
from theory.mixing import average
from theory.schedules import Schedule


@obligation(lib.spiridonoff, lib.spiridonoff_comm_times)
def spiridonoff_sums_to_T() -> object:
    """Σ_{i=1}^{R} a·i = T for a = 2T/(R(R+1)); the schedule has R = N rounds for every T."""
    i, R, T = sp.symbols("i R T", positive=True, integer=True)
    a = 2 * T / (R * (R + 1))
    require(sp.simplify(sp.summation(a * i, (i, 1, R)) - T) == 0, "Σ a·i ≠ T")
    ref = [0, 4, 14, 28, 47, 71, 100]
    got = lib.spiridonoff_comm_times(1000, 20)
    require(got[:7] == ref and got[-2:] == [904, 1000], f"T=1000, N=20 gives {got}")
    rng = np.random.default_rng(3)
    n = 0
    for _ in range(60):
        N = int(rng.integers(2, 40))  # N = 1: W = I, no communication
        Tn = int(rng.integers(N * (N + 1) // 2, 200_000))
        s = lib.spiridonoff(average(N), Tn)
        per = s.periods(Tn)
        require(int(per.sum()) == Tn, f"periods sum to {per.sum()} ≠ T = {Tn}")
        require(s.n_rounds(Tn) == N, f"R = {s.n_rounds(Tn)} ≠ N = {N} at T = {Tn}")
        times = lib.spiridonoff_comm_times(Tn, N)
        exact = [Fraction(2 * Tn, N * (N + 1)) * r * (r + 1) / 2 for r in range(N + 1)]
        require(times == [math.floor(x) for x in exact], "comm times ≠ ⌊a r(r+1)/2⌋")
        n += 1
    return proved(f"Σ a·i = T symbolically; code: T=1000, N=20 reference times, and on {n} random "
                  "(N, T): Σ τ_i = T, R = N rounds, times = ⌊a r(r+1)/2⌋ exactly")


@obligation(lib.linear_growth_alpha, lib.linear_growth_periods)
def linear_growth_alpha_formula() -> object:
    """α solves Σ_{i=0}^{E} iατ₀ = T (LUPA main.py): α = 2T/(E(E+1)τ₀); poster example 1.0927."""
    i, E, T, t0, al = sp.symbols("i E T tau0 alpha", positive=True)
    sol = sp.solve(sp.Eq(sp.summation(i * al * t0, (i, 0, E)), T), al)
    require(len(sol) == 1, f"solutions {sol}")
    rng = np.random.default_rng(4)
    n = 0
    for _ in range(50):
        Ei, Ti = int(rng.integers(1, 30)), int(rng.integers(1, 10**6))
        ti = int(rng.integers(1, 500))
        code = lib.linear_growth_alpha(Ti, Ei, ti)
        expected = sol[0].subs({E: Ei, T: Ti, t0: ti})
        require(sp.Rational(code.numerator, code.denominator) == expected, f"α({Ti}, {Ei}, {ti})")
        per = lib.linear_growth_periods(Ti, Ei, ti)
        exact = [ti * (1 + k * code) for k in range(Ei + 1)]
        require(all(abs(p - x) <= Fraction(1, 2) for p, x in zip(per, exact, strict=True)),
                "periods are not the nearest integers to (1 + iα)τ₀")
        n += 1
    require(abs(float(lib.linear_growth_alpha(5469, 10, 91)) - 1.0927) < 5e-5, "poster example")
    return proved(f"α = {sp.sstr(sol[0])} solved by sympy; code agrees exactly on {n} random "
                  "(T, E, τ₀); periods within ½ of (1 + iα)τ₀; poster (10, 5469, 91) → 1.0927")


def _sum_H_over_t_float(periods: list[int]) -> float:
    """Independent evaluation: H(t) as an array, then Σ H(t)/t with numpy (float64)."""
    H = np.repeat(np.asarray(periods, dtype=float), periods)
    t = np.arange(1, H.size + 1, dtype=float)
    return float(np.sum(H / t))


@obligation(lib.sum_H_over_t, os_.sum_H_over_t_approx)
def sum_H_over_t_exact() -> object:
    """sum_H_over_t is exact: harmonic number for τ = 1, T·H_T for one-shot, numpy elsewhere."""
    n = 0
    for T in (1, 7, 100, 1000):
        W = average(4)
        require(lib.sum_H_over_t(lib.synchronous(W), T) == Fraction(str(sp.harmonic(T))),
                f"synchronous: Σ 1/t ≠ H_{T}")
        require(lib.sum_H_over_t(lib.one_shot(W), T) == T * Fraction(str(sp.harmonic(T))),
                f"one-shot: Σ T/t ≠ T·H_{T}")
        n += 2
    T, N = 1000, 20
    for name, s in lib.spiridonoff_comparison(T, N).items():
        per = [int(x) for x in s.periods(T)]
        exact = float(lib.sum_H_over_t(s, T))
        require(math.isclose(exact, _sum_H_over_t_float(per), rel_tol=1e-12), f"{name}: mismatch")
        n += 1
    # constant vs growing intervals (Spiridonoff et al.), against one_shot.sum_H_over_t_approx
    for T, R in ((1000, 20), (20_000, 20), (5000, 50)):
        lin = float(lib.sum_H_over_t(lib.spiridonoff(average(R), T), T))
        con = float(lib.sum_H_over_t(lib.periodic(average(R), T // R), T))
        a_lin = float(os_.sum_H_over_t_approx("linear").subs({sym.T: T, sym.R: R}))
        a_con = float(os_.sum_H_over_t_approx("constant").subs({sym.T: T, sym.R: R}))
        require(abs(lin / a_lin - 1) < 0.02, f"growing H: exact {lin} vs approx {a_lin}")
        require(abs(con / a_con - 1) < 0.001, f"constant H: exact {con} vs approx {a_con}")
        n += 2
    return checked(n, "exact rationals = harmonic numbers (sync, one-shot), = numpy sums "
                      "(comparison set); within 2% of one_shot.sum_H_over_t_approx")


@obligation(Schedule.sum_tau_tau_minus_1, lib.haddadpour_conditions)
def haddadpour_conditions_consistent() -> object:
    """Σ τ_i = T after truncation, Σ τ_i(τ_i−1) agrees with Schedule, (max τ)³ exact."""
    W = average(4)
    n = 0
    rng = np.random.default_rng(5)
    for _ in range(30):
        T = int(rng.integers(50, 20000))
        E = int(rng.integers(1, 15))
        t0 = int(rng.integers(1, max(2, T // (E + 1))))
        s = lib.linear_growth(W, T, E, t0)
        rep = lib.haddadpour_conditions(s, T, p=4, B=32)
        per = [int(x) for x in s.periods(T)]
        require(rep.sum_tau == T and rep.sum_tau_equals_T, "(i) fails after truncation")
        require(rep.sum_tau_tau_minus_1 == s.sum_tau_tau_minus_1(T) ==
                sum(x * (x - 1) for x in per), "(ii) disagrees with Schedule.sum_tau_tau_minus_1")
        require(rep.max_tau_cubed == max(per) ** 3, "(iii)")
        n += 1
    raw = lib.haddadpour_conditions(lib.linear_growth_periods(5469, 10, 91), 5469)
    require(not raw.sum_tau_equals_T and raw.sum_tau == 6469, "poster schedule overshoot")
    return checked(n, "linear-growth schedules on random (T, E, τ₀); the poster's untruncated "
                      "list overshoots T (6469 > 5469)")
