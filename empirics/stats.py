"""The statistics behind verdicts: Student-t bands over seeds, the one-sided test of a bound,
paired tests between settings, and slopes with their uncertainty.

All functions are plain numpy/scipy on arrays of per-seed measurements (seeds on axis 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ORDER_RULE",
    "Verdict",
    "bound_test",
    "excess_p",
    "fit_log_slope",
    "loglog_slope",
    "mean_band",
    "mean_ci",
    "OrderTest",
    "order_test",
    "paired_p",
    "spearman_exact",
    "weighted_loglog_slope",
]


def mean_ci(x: np.ndarray, level: float = 0.05, axis: int = 0
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mean, standard error, lower, upper) of the mean along ``axis``: the two-sided
    (1 − level) Student-t interval mean ± t_{1−level/2, n−1}·s/√n. With n < 2 the standard
    error is 0 and the interval is the mean itself."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    n = x.shape[axis]
    mean = x.mean(axis)
    if n < 2:
        return mean, np.zeros_like(mean), mean.copy(), mean.copy()
    se = x.std(axis, ddof=1) / math.sqrt(n)
    q = stats.t.ppf(1 - level / 2, n - 1)
    return mean, se, mean - q * se, mean + q * se


def mean_band(x: np.ndarray, level: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, lower, upper) over axis 0 (see :func:`mean_ci`)."""
    mean, _, lo, hi = mean_ci(x, level, 0)
    return mean, lo, hi


def paired_p(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(mean of a − b, one-sided p for E a > E b, one-sided p for E a < E b), seeds paired
    (Student t on the differences; identical differences give p ∈ {0, 1})."""
    from scipy import stats

    d = np.asarray(a, float) - np.asarray(b, float)
    n, md = len(d), float(d.mean())
    sd = float(d.std(ddof=1)) if n > 1 else 0.0
    if n < 2 or sd == 0.0:
        return md, float(md <= 0), float(md >= 0)
    t = md / (sd / math.sqrt(n))
    return md, float(stats.t.sf(t, n - 1)), float(stats.t.cdf(t, n - 1))


def spearman_exact(values: Sequence[float], key: Sequence[float]) -> tuple[float, float]:
    """(ρ, p): Spearman's rank correlation of ``values`` with ``key`` (average ranks for ties)
    and its exact one-sided permutation p-value P(ρ_π ≥ ρ) over all n! orderings of
    ``values`` (n ≤ 8; the null hypothesis: the values are in random order with respect to the
    key). n = 5 distinct keys: p = 1/120 at ρ = 1, 5/120 at ρ = 0.9 (one adjacent swap)."""
    import itertools

    from scipy import stats

    v, k = np.asarray(values, float), np.asarray(key, float)
    n = len(v)
    if n != len(k) or not 2 <= n <= 8:
        raise ValueError(f"spearman_exact needs 2 to 8 values and as many keys (got {len(v)} "
                         f"values, {len(k)} keys)")
    rv, rk = stats.rankdata(v), stats.rankdata(k)

    def rho(r: np.ndarray) -> float:
        a, b = r - r.mean(), rk - rk.mean()
        den = math.sqrt(float((a * a).sum() * (b * b).sum()))
        return float((a * b).sum() / den) if den > 0 else 0.0

    r0 = rho(rv)
    perms = [rho(np.asarray(p)) for p in itertools.permutations(rv)]
    p = sum(1 for r in perms if r >= r0 - 1e-12) / len(perms)
    return r0, float(p)


@dataclass
class OrderTest:
    """What :func:`order_test` found: the ``verdict`` ("agrees", "disagrees", "inconclusive"),
    the ``rule`` in words, Spearman's ``rho`` of the means with the key and its exact ``p_rho``
    (None for fewer than 4 settings), the pairs ``confirmed`` (significantly ordered as
    predicted) and ``reversed`` (significantly the other way), as (lower-key index,
    higher-key index), every pair's tests in ``pairs`` (i, j, mean x_j − x_i, p up, p down),
    the ``extreme`` pair and the per-pair level ``alpha``."""

    verdict: str
    rule: str
    means: list[float]
    rho: float | None
    p_rho: float | None
    confirmed: list[tuple[int, int]]
    reversed: list[tuple[int, int]]
    pairs: list[tuple[int, int, float, float, float]]
    extreme: tuple[int, int]
    alpha: float


ORDER_RULE = ("every pair of settings with different predicted keys gets a one-sided paired "
              "t-test over seeds (Bonferroni over the pairs); disagrees if a pair is "
              "significantly reversed; agrees if none is, the settings with the smallest and "
              "largest key differ significantly in the predicted direction and (with ≥ 4 "
              "settings) Spearman's ρ of the means with the key has exact permutation p < "
              "level; inconclusive otherwise")


def order_test(x: np.ndarray, key: Sequence[float], level: float = 0.05) -> OrderTest:
    """Do the settings order as ``key`` predicts (a larger key ⇒ a larger expected value)?

    ``x``: seeds × settings, seeds paired across settings (the same seed's batches); ``key``:
    the predicted ordering value of each setting. The rule (:data:`ORDER_RULE`): every pair
    (i, j) with key_i < key_j gets :func:`paired_p` at level/P (Bonferroni over the P pairs);

    * **disagrees** if some pair is significantly reversed (x_j < x_i);
    * **agrees** if no pair is reversed, the pair (smallest key, largest key) is significantly
      ordered as predicted, and — with n ≥ 4 settings — Spearman's ρ of the seed means with the
      key has exact one-sided permutation p < level (:func:`spearman_exact`; n = 5 needs
      ρ ≥ 0.9, i.e. the means in the predicted order up to one adjacent swap of pairs the tests
      could not separate);
    * **inconclusive** otherwise."""
    x = np.asarray(x, float)
    k = np.asarray(key, float)
    if x.ndim != 2 or x.shape[1] != len(k) or len(k) < 2:
        raise ValueError(f"x must be seeds × settings with one key per setting (x has shape "
                         f"{x.shape}, {len(k)} keys)")
    n = len(k)
    pairs = [(i, j) for i in range(n) for j in range(n) if k[i] < k[j]]
    if not pairs:
        raise ValueError("order_test needs at least two different keys")
    alpha = level / len(pairs)
    rows, confirmed, rev = [], [], []
    for i, j in pairs:
        md, p_up, p_down = paired_p(x[:, j], x[:, i])
        rows.append((i, j, md, p_up, p_down))
        if p_up < alpha:
            confirmed.append((i, j))
        if p_down < alpha:
            rev.append((i, j))
    means = x.mean(0)
    rho = p_rho = None
    if n >= 4:
        rho, p_rho = spearman_exact(means, k)
    ext = (int(np.argmin(k)), int(np.argmax(k)))
    if rev:
        verdict = "disagrees"
    elif ext in confirmed and (p_rho is None or p_rho < level):
        verdict = "agrees"
    else:
        verdict = "inconclusive"
    return OrderTest(verdict, ORDER_RULE, means.tolist(), rho, p_rho, confirmed, rev, rows,
                     ext, alpha)


def loglog_slope(xs: Sequence[float], samples: Sequence[np.ndarray], seed: int = 0,
                 n_boot: int = 2000, level: float = 0.05) -> tuple[float, float, float]:
    """(slope, lower, upper): least-squares slope of ln(mean of ``samples[i]``) against
    ln ``xs[i]``, with a (1 − level) percentile bootstrap interval (each sample resampled
    independently)."""
    x = np.log(np.asarray(xs, dtype=float))
    y = np.log([float(np.mean(f)) for f in samples])
    slope = float(np.polyfit(x, y, 1)[0])
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        yb = [math.log(float(np.mean(rng.choice(f, size=len(f), replace=True))))
              for f in samples]
        boots.append(np.polyfit(x, yb, 1)[0])
    lo, hi = np.percentile(boots, [100 * level / 2, 100 * (1 - level / 2)])
    return slope, float(lo), float(hi)


def weighted_loglog_slope(xs: Sequence[float], mean: np.ndarray, rse: np.ndarray
                          ) -> tuple[float, float]:
    """Weighted least-squares slope of ln(mean) on ln x (weights 1/rse², rse the relative
    standard errors) and its standard error."""
    x, y = np.log(np.asarray(xs, float)), np.log(mean)
    w = 1 / np.maximum(rse, 1e-12) ** 2
    xb = (w * x).sum() / w.sum()
    sxx = (w * (x - xb) ** 2).sum()
    sl = float((w * (x - xb) * (y - (w * y).sum() / w.sum())).sum() / sxx)
    return sl, float(math.sqrt(1 / sxx))


def fit_log_slope(dist: np.ndarray, floor: float) -> tuple[float, float, int]:
    """(slope, R², number of points) of the least-squares line through (k, ln dist_k) for k up
    to the first step with dist_k ≤ ``floor`` (round-off): the rate of geometric convergence."""
    dist = np.asarray(dist, dtype=float)
    below = np.nonzero(dist <= floor)[0]
    end = int(below[0]) if below.size else dist.size
    if end < 3:
        return math.nan, math.nan, end
    k = np.arange(end, dtype=float)
    y = np.log(dist[:end])
    slope, icpt = np.polyfit(k, y, 1)
    ss_res = float(((y - (slope * k + icpt)) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan
    return float(slope), float(r2), end


def excess_p(x: np.ndarray, bound: np.ndarray | float) -> tuple[float, int, float]:
    """(Bonferroni-corrected p, worst column, its t) of the one-sided t-tests of
    H0: E[x_j] ≤ bound_j over the columns j of ``x`` (seeds × columns, n ≥ 2 seeds): the
    smallest per-column p-value times the number of columns, capped at 1. A column with zero
    spread has t = ±∞."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    n, R = x.shape
    mean = x.mean(0)
    se = x.std(0, ddof=1) / math.sqrt(n)
    b = np.broadcast_to(np.asarray(bound, dtype=float), mean.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, (mean - b) / se, np.where(mean > b, np.inf, -np.inf))
    p = stats.t.sf(t, n - 1)
    j = int(np.argmin(p))
    return min(1.0, float(p[j]) * R), j, float(t[j])


@dataclass
class Verdict:
    """``status``: "holds", "violated" (a one-sided test over ≥ 2 seeds), "inconclusive" (the
    test's outcome, but a hypothesis of the theorem is not known: :func:`empirics.match.
    unverifiable`), "untested" (one seed: the measurement is shown, no verdict), "diverged" (a
    seed diverged: a bound says nothing), "not applicable" (a hypothesis fails; ``failed``
    names it) or "no bound"; ``message`` says why.
    ``p_value`` (Bonferroni-corrected over recorded steps), ``statistic`` (t at the worst step),
    ``step`` (the worst step), ``failed`` (conditions/assumptions that fail)."""

    status: str
    message: str
    n_seeds: int = 0
    level: float = 0.05
    p_value: float | None = None
    statistic: float | None = None
    step: int | None = None
    failed: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.status}: {self.message}"


def bound_test(x: np.ndarray, steps: np.ndarray, bound_c: np.ndarray, bound_o: np.ndarray,
               level: float) -> Verdict:
    """Does the metric stay below the bound at every recorded step?

    ``x``: seeds × steps measurements; ``bound_c``/``bound_o``: the conservative/optimistic
    bound per step. Each step with a finite bound gets a one-sided t-test of
    H0: E[x_k] ≤ bound_c[k]; "violated" iff the smallest p-value, Bonferroni-corrected over the
    steps, is below ``level``; otherwise "holds"."""
    n = x.shape[0]
    ok = np.isfinite(bound_c) & np.all(np.isfinite(x), axis=0) & (steps > 0)
    if not ok.any():
        return Verdict("not applicable", "no recorded step with a finite bound and measurement",
                       n, level)
    xs, bc, bo, ks = x[:, ok], bound_c[ok], bound_o[ok], steps[ok]
    mean = xs.mean(axis=0)
    R = len(ks)
    if n < 2:
        worst = int(np.argmax(mean - bc))
        viol = bool(mean[worst] > bc[worst])
        msg = (f"1 seed, so no test: the single measurement {mean[worst]:.4g} is "
               f"{'above' if viol else 'below'} the conservative bound {bc[worst]:.4g} at step "
               f"{int(ks[worst])} (a verdict needs a test over >= 2 seeds)")
        return Verdict("untested", msg, n, level, None, None, int(ks[worst]))
    p_adj, worst, t_w = excess_p(xs, bc)
    k = int(ks[worst])
    if p_adj < level:
        msg = (f"mean {mean[worst]:.4g} exceeds the conservative bound {bc[worst]:.4g} at step "
               f"{k} (one-sided t = {t_w:.3g}, {n} seeds, p = {p_adj:.2g} after "
               f"Bonferroni over {R} steps < {level})")
        return Verdict("violated", msg, n, level, p_adj, t_w, k)
    above_opt = int(np.sum(mean > bo))
    tail = ("" if above_opt == 0 else
            f"; the mean exceeds the optimistic bound at {above_opt} of {R} steps")
    tight = float(np.nanmin(bc / np.where(mean > 0, mean, np.nan))) if np.any(mean > 0) \
        else math.nan
    msg = (f"no significant excess over the conservative bound at any of {R} recorded steps "
           f"({n} seeds, one-sided t-test, Bonferroni, level {level}); smallest bound/mean = "
           f"{tight:.3g}{tail}")
    return Verdict("holds", msg, n, level, p_adj, t_w, k)
