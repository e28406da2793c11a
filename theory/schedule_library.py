"""Named communication schedules of the papers, built on :mod:`theory.schedules`.

Static: :func:`synchronous`, :func:`periodic`, :func:`linear_growth` (Haddadpour et al.),
:func:`spiridonoff` (Spiridonoff et al.), :func:`one_shot`, and the comparison set of Spiridonoff
et al.'s experiment :func:`spiridonoff_comparison`. Adaptive (read the loss of the averaged model
through the ``loss`` callback of ``rounds(T, loss)``): :func:`adaptive_lupa`, :func:`adacomm`.

Quantities: :func:`sum_H_over_t` (exact Σ_t H(t)/t, a :class:`fractions.Fraction`) and
:func:`haddadpour_conditions` (Σ τ_i = T, Σ τ_i(τ_i − 1), (max τ_i)³).

All rounding is exact integer arithmetic (no floating point), so the same arguments always give
the same steps.
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from theory import checks
from theory.mixing import MixingMatrix, as_mixing
from theory.schedules import Intervals, Periodic, Schedule


def synchronous(W: Any) -> Periodic:
    """Mix with W after every step (τ = 1): fully synchronous SGD when W = J."""
    s = Periodic(W, 1)
    s.name = f"synchronous, {s.W.name}"
    return s


def periodic(W: Any, tau: int) -> Periodic:
    """Mix with W every τ steps (PASGD when W = J, decentralized periodic averaging otherwise)."""
    return Periodic(W, tau)


class OneShot(Schedule):
    """One-shot averaging: local steps only, a single mixing with W at the last step T."""

    def __init__(self, W: Any):
        self.W = as_mixing(W)
        self.name = f"one-shot, {self.W.name}"

    @property
    def n(self) -> int:
        return self.W.n

    def _rounds(self, loss):
        yield sys.maxsize, self.W  # truncated by rounds() to end exactly at T


def one_shot(W: Any) -> OneShot:
    """One round of length T, mixing once at the end (Spiridonoff et al.'s OSA)."""
    return OneShot(W)


# --- Haddadpour et al.: linear growth -------------------------------------------------------------
def linear_growth_alpha(T: int, E: int, tau0: int) -> Fraction:
    """α = 2T/(E(E+1)τ₀) of the linear-growth schedule (quoted: LUPA-SGD ``main.py``),
    exact. ``linear_growth_alpha(5469, 10, 91) ≈ 1.0927``."""
    T, E = checks.integer("T", T, lo=1), checks.integer("E", E, lo=1)
    tau0 = checks.integer("tau0", tau0, lo=1)
    return Fraction(2 * T, E * (E + 1) * tau0)


def linear_growth_periods(T: int, E: int, tau0: int) -> list[int]:
    """τ_i = (1 + iα)τ₀, i = 0..E (E + 1 periods, as in LUPA-SGD's ``main.py``), each rounded to
    the nearest integer (halves up): ``τ_i = ⌊τ₀ + 2Ti/(E(E+1)) + ½⌋``.

    The code's α makes the growth part Σ_{i=0}^{E} iατ₀ equal T, so the sum is
    (E+1)τ₀ + T > T before rounding (6469 after rounding for the poster example, against
    T = 5469): the schedule overshoots T and the last round is cut at T by ``Schedule.rounds`` —
    the same thing that happens in LUPA-SGD, where training stops at ``train_steps``.
    """
    a = linear_growth_alpha(T, E, tau0)
    return [math.floor(tau0 * (1 + i * a) + Fraction(1, 2)) for i in range(E + 1)]


def linear_growth(W: Any, T: int, E: int, tau0: int) -> Intervals:
    """Haddadpour et al.'s linear-growth schedule τ_i = (1 + iα)τ₀, α = 2T/(E(E+1)τ₀) (poster
    caption and code [quoted]); see :func:`linear_growth_periods` for rounding and
    the overshoot of T. Poster example: (E, T, τ₀) = (10, 5469, 91) gives α = 1.0927."""
    per = linear_growth_periods(T, E, tau0)
    a = linear_growth_alpha(T, E, tau0)
    return Intervals(W, per, name=f"linear growth τ₀={tau0}, α={float(a):.4g}, E={E}")


# --- Spiridonoff et al.: H_i = a i ---------------------------------------------------------------
def spiridonoff_comm_times(T: int, R: int) -> list[int]:
    """Communication times τ_r = ⌊a r(r+1)/2⌋, r = 0..R, a = 2T/(R(R+1)) (exact integer
    arithmetic: ⌊T r(r+1)/(R(R+1))⌋), so τ_0 = 0 and τ_R = T [quoted: authors' notebook
    ``Local-SGD-re``]. T = 1000, R = 20 gives 0, 4, 14, 28, 47, 71, 100, …, 904, 1000."""
    T, R = checks.integer("T", T, lo=1), checks.integer("R", R, lo=1)
    times = [T * r * (r + 1) // (R * (R + 1)) for r in range(R + 1)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    if min(gaps) < 1:
        raise ValueError(f"T = {T} is too small for R = {R} growing rounds: the first interval "
                         f"⌊2T/(R(R+1))⌋ is 0 (need T ≥ R(R+1)/2 = {R * (R + 1) // 2})")
    return times


def spiridonoff(W: Any, T: int, R: int | None = None) -> Intervals:
    """Linearly growing intervals H_i = a·i, a = 2T/(R(R+1)), communication at ⌊a r(r+1)/2⌋,
    r = 1..R; default R = N = number of workers (``W.n``), the paper's choice for linear speed-up
    with a number of rounds independent of T. Built for horizon T (rounds(T') with T' > T runs
    the remaining steps locally)."""
    Wm = as_mixing(W)
    R = Wm.n if R is None else checks.integer("R", R, lo=1)
    times = spiridonoff_comm_times(T, R)
    per = [b - a for a, b in itertools.pairwise(times)]
    return Intervals(Wm, per, name=f"growing H_i = a·i, R={R}, a={2 * T / (R * (R + 1)):.4g}")


def _icbrt(n: int) -> int:
    """⌊n^{1/3}⌋ for an integer n ≥ 0, exactly."""
    r = round(n ** (1 / 3))
    while r**3 > n:
        r -= 1
    while (r + 1) ** 3 <= n:
        r += 1
    return r


def spiridonoff_comparison(T: int, N: int, W: Any = None) -> dict[str, Schedule]:
    """The communication strategies of Spiridonoff et al.'s §4.1 experiment [quoted: authors'
    notebook ``plot_labels``], by name:

    ``synchronous`` (every step), ``stich`` H = ⌊√(T/N)⌋, ``haddadpour`` H = ⌊(T²/N)^{1/3}⌋,
    ``this_paper`` R = N growing H_i = a·i, ``constant_T_over_N`` H = ⌊T/N⌋ (R = N),
    ``one_shot`` H = T. For (T, N) = (1000, 20): H = 7, 36, growing, 50, 1000.
    ``W`` defaults to exact averaging J over N workers.
    """
    from theory.mixing import average

    T, N = checks.integer("T", T, lo=1), checks.integer("N", N, lo=1)
    Wm = average(N) if W is None else as_mixing(W)
    if Wm.n != N:
        raise ValueError(f"W must be {N}×{N} (N workers); got {Wm.n}×{Wm.n}")
    h_stich = max(1, math.isqrt(T // N))
    h_hkmc = max(1, _icbrt(T * T // N))
    h_const = max(1, T // N)
    out: dict[str, Schedule] = {
        "synchronous": synchronous(Wm),
        "stich": Periodic(Wm, h_stich),
        "haddadpour": Periodic(Wm, h_hkmc),
        "this_paper": spiridonoff(Wm, T, N),
        "constant_T_over_N": Periodic(Wm, h_const),
        "one_shot": one_shot(Wm),
    }
    out["stich"].name = f"[Sti19] H = ⌊√(T/N)⌋ = {h_stich}"
    out["haddadpour"].name = f"[HKMC19] H = ⌊(T²/N)^(1/3)⌋ = {h_hkmc}"
    out["constant_T_over_N"].name = f"constant H = T/N = {h_const}"
    return out


# --- adaptive schedules ------------------------------------------------------------------------
def _positive_loss(loss: Callable[[], float], who: str) -> float:
    f = float(loss())
    if not (math.isfinite(f) and f > 0):
        raise ValueError(f"{who}: the loss callback must return a finite F > 0 (the rule uses "
                         f"F itself, not F − F*); got {f!r}")
    return f


class AdaptiveLUPA(Schedule):
    """τ_i = ⌈(F(x̄⁰)/F(x̄^{(i)}))^{1/3}⌉ τ₀ with F(x̄^{(i)}) the loss of the averaged model at the
    start of round i (Haddadpour et al.'s poster writes x̄^{iτ₀}; here it is the start of round i,
    the only point where the averaged model exists) [quoted rule, NeurIPS 2019 poster]."""

    adaptive = True

    def __init__(self, W: Any, tau0: int):
        self.W = as_mixing(W)
        self.tau0 = checks.integer("tau0", tau0, lo=1)
        self.name = f"adaptive LUPA τ₀={self.tau0}"

    @property
    def n(self) -> int:
        return self.W.n

    @staticmethod
    def period(F0: float, F: float, tau0: int) -> int:
        """⌈(F0/F)^{1/3}⌉ τ₀ (the cube root rounded so that exact cubes are not pushed up)."""
        r = (F0 / F) ** (1 / 3)
        c = math.ceil(r - 1e-12 * max(1.0, r))
        return max(1, c) * tau0

    def _rounds(self, loss) -> Iterator[tuple[int, MixingMatrix]]:
        F0 = _positive_loss(loss, self.name)
        yield self.tau0, self.W
        while True:
            yield self.period(F0, _positive_loss(loss, self.name), self.tau0), self.W


def adaptive_lupa(W: Any, tau0: int) -> AdaptiveLUPA:
    """Haddadpour et al.'s adaptive synchronisation (see :class:`AdaptiveLUPA`)."""
    return AdaptiveLUPA(W, tau0)


class AdaComm(Schedule):
    """AdaComm (Wang & Joshi 2019) in steps: τ_l = ⌈√(F(x_l)/F(x_0)) τ₀⌉, re-chosen at the start
    of the first round beginning after each block of ``every`` steps (the paper re-chooses every
    T₀ seconds; steps stand in for wall-clock here) [recalled from AdaComm, SysML 2019, medium
    confidence]."""

    adaptive = True

    def __init__(self, W: Any, tau0: int, every: int):
        self.W = as_mixing(W)
        self.tau0 = checks.integer("tau0", tau0, lo=1)
        self.every = checks.integer("every", every, lo=1)
        self.name = f"AdaComm τ₀={self.tau0}, every {self.every} steps"

    @property
    def n(self) -> int:
        return self.W.n

    def _rounds(self, loss):
        F0 = _positive_loss(loss, self.name)
        tau_, done, next_update = self.tau0, 0, self.every
        while True:
            yield tau_, self.W
            done += tau_
            if done >= next_update:
                F = _positive_loss(loss, self.name)
                tau_ = max(1, math.ceil(math.sqrt(F / F0) * self.tau0 - 1e-12))
                next_update = done + self.every


def adacomm(W: Any, tau0: int, every: int) -> AdaComm:
    """AdaComm's decreasing-period rule (see :class:`AdaComm`)."""
    return AdaComm(W, tau0, every)


# --- quantities ---------------------------------------------------------------------------------
def sum_H_over_t(schedule: Schedule | Sequence[int], T: int | None = None) -> Fraction:
    """Σ_{t=1}^{T} H(t)/t exactly, H(t) = length of the round containing step t (step k = t − 1),
    for a static schedule (or a list of periods summing to T). The quantity that separates
    constant intervals (≈ (T/R) ln T) from linearly growing ones (≈ 4T/R) [derived by this
    toolkit]. Cost grows with T (exact rationals): T ≤ 10⁵ takes about a second."""
    if isinstance(schedule, Schedule):
        if T is None:
            raise ValueError("T is required with a Schedule")
        periods = [int(x) for x in schedule.periods(T)]
    else:
        periods = [checks.integer(f"periods[{i}]", x, lo=1) for i, x in enumerate(schedule)]
        if T is not None and sum(periods) != T:
            raise ValueError(f"periods must sum to T = {T}; they sum to {sum(periods)}")
    total = Fraction(0)
    start = 0
    for H in periods:
        h = Fraction(0)
        for t in range(start + 1, start + H + 1):
            h += Fraction(1, t)
        total += H * h
        start += H
    return total


@dataclass(frozen=True)
class ConditionsReport:
    """Haddadpour et al.'s conditions for variable periods (NeurIPS 2019 poster [quoted]):
    (i) Σ τ_i = T; (ii) Σ τ_i(τ_i − 1) = O(T²); (iii) (max τ_i)³ = O(T²/(pB)).

    O(·) cannot be checked on one instance: the report gives the ratios ``ratio_ii = Σ τ_i(τ_i−1)/
    T²`` and ``ratio_iii = (max τ_i)³ pB/T²`` whose boundedness (as T grows) is the condition."""

    T: int
    E: int
    sum_tau: int
    sum_tau_equals_T: bool
    sum_tau_tau_minus_1: int
    max_tau: int
    max_tau_cubed: int
    ratio_ii: Fraction
    ratio_iii: Fraction | None

    def __str__(self) -> str:
        r3 = f"{float(self.ratio_iii):.4g}" if self.ratio_iii is not None else "n/a (give p, B)"
        return (f"E = {self.E} rounds, T = {self.T}\n"
                f"  (i)   Σ τ_i = {self.sum_tau} {'=' if self.sum_tau_equals_T else '≠'} T\n"
                f"  (ii)  Σ τ_i(τ_i−1) = {self.sum_tau_tau_minus_1} "
                f"(/T² = {float(self.ratio_ii):.4g})\n"
                f"  (iii) (max τ_i)³ = {self.max_tau_cubed} (· pB/T² = {r3})")


def haddadpour_conditions(schedule: Schedule | Sequence[int], T: int, p: int | None = None,
                          B: int | None = None) -> ConditionsReport:
    """Check Haddadpour et al.'s conditions for a static schedule (its periods truncated at T, so
    (i) holds by construction) or for a raw list of periods (which may not sum to T, e.g. the
    untruncated linear-growth list)."""
    T = checks.integer("T", T, lo=1)
    if isinstance(schedule, Schedule):
        per = [int(x) for x in schedule.periods(T)]
    else:
        per = [checks.integer(f"periods[{i}]", x, lo=1) for i, x in enumerate(schedule)]
        if not per:
            raise ValueError("periods must be non-empty")
    S = sum(t * (t - 1) for t in per)
    mx = max(per)
    r3 = None
    if p is not None or B is not None:
        if p is None or B is None:
            raise ValueError("give both p (workers) and B (batch size) for condition (iii)")
        p, B = checks.integer("p", p, lo=1), checks.integer("B", B, lo=1)
        r3 = Fraction(mx**3 * p * B, T * T)
    return ConditionsReport(T=T, E=len(per), sum_tau=sum(per), sum_tau_equals_T=sum(per) == T,
                            sum_tau_tau_minus_1=S, max_tau=mx, max_tau_cubed=mx**3,
                            ratio_ii=Fraction(S, T * T), ratio_iii=r3)


__all__ = [
    "AdaComm", "AdaptiveLUPA", "ConditionsReport", "OneShot", "adacomm", "adaptive_lupa",
    "haddadpour_conditions", "linear_growth", "linear_growth_alpha", "linear_growth_periods",
    "one_shot", "periodic", "spiridonoff", "spiridonoff_comm_times", "spiridonoff_comparison",
    "sum_H_over_t", "synchronous",
]
