"""Communication-efficient SGD: from local SGD to one-shot averaging (Spiridonoff, Olshevsky,
Paschalidis, NeurIPS 2021, arXiv:2106.04759).

Two experiments, both with the hyper-parameters of the authors' notebooks ([quoted:
github.com/spiridonoff/Local-SGD-re]):

A. §4.1 quadratic: :class:`~empirics.problems.NoisyQuadratic` with d = 3, a = (1, 2, 3), c = 1,
   σ = 0.5, x₀ = 𝟙; N = 20 workers, T = 1000, η_t = 3/(μ(t + 1)) (μ = 1). Six strategies:
   synchronous, H = ⌊√(T/N)⌋ = 7 [Sti19], H = ⌊(T²/N)^{1/3}⌋ = 36 [HKMC19], the paper's growing
   intervals with R = N rounds, constant H = T/N = 50, one-shot averaging (H = T). The growing
   schedule is :func:`theory.schedule_library.spiridonoff`: communication at
   ⌊a r(r+1)/2⌋, a = 2T/(R(R+1)), r = 1..R, i.e. H_r = a·r with 1-based r — the notebook's label
   "H_i = a(i+1)" with 0-based i (authors' code); gaps 4, 10, 14, 19, …, 96 at (T, N) = (1000, 20).
   The truth is the exact expectation of the plain-SGD recursion (:mod:`empirics.recursion`);
   the sample mean of real engine runs is shown beside it with a 95% band.
B. speed-up: :class:`~empirics.problems.PiecewiseQuadratic1D` (μ = 1, σ = 8, x₀ = 2, not twice
   differentiable at x* = 0), η_t = min(2/(μ(t + 1)), 1/L), T = 1000, N ∈ {2, 4, 8, 16, 24, 32};
   strategies R = N growing intervals, one-shot averaging, synchronous, R = ⌈√N⌉ growing
   intervals (the notebook's ``RN^1/2`` mode). Error of a run:
   f(x̄_T) − f* at the last step (our choice; the notebook uses a median over late recorded
   iterations, ``speedup.ipynb``). Speed-up(N) = (mean single-worker error) / (mean error of the
   method), the single-worker error being that of the one-shot workers before averaging (the
   notebook's definition, ``speedup.ipynb``), pooled over all N.

Monte Carlo: R repetitions of an N-worker run are one engine run with R·N workers and the
block-diagonal W = group average over contiguous blocks of N (each block is one independent
repetition; block averaging keeps every block's mean, so the per-repetition averaged model is the
block mean of the trace). One-shot averaging runs as one global average at T (the engine refuses
a single block-diagonal mixing at T); the per-repetition averaged model at T is the block mean of
the state before that mixing. The problems are drawn through :class:`StackedNoisyQuadratic` /
:class:`StackedPiecewiseQuadratic1D`: the same distributions and losses, but all workers' draws
come from one generator per run (one ``randn`` call per step) — now the convention of every
problem, so these are the base classes under their old names.
Strategies share seeds (common random numbers), so their differences are less noisy than their
separate bands suggest.

Claims: (1) rounds 143/28/20/20/1 at (T, N) = (1000, 20) (schedule arithmetic); (2) growing and
one-shot end within 5% of synchronous, ≈3×10⁻⁵ (exact recursion); (3) one-shot has linear
speed-up on this C² quadratic (exact); (4) engine sample mean = exact expectation within a
Bonferroni band at t ≥ T/2 — before that, with η_0·L = 9, the multiplicative noise makes
E F(x̄_t) a mean over rare huge runs and the sample mean of ~10² runs is far below it (reported,
not tested); (5) R = N growing intervals: slope of ln error against ln N in [−1.2, −0.8];
(6) one-shot's speed-up saturates on the non-C² function while R = N growing keeps growing;
(7) R = ⌈√N⌉ growing rounds fail to give linear speed-up ("inconclusive" unless the slope is
significantly flatter than −0.8: the paper shows it at T = 8000, N ≥ 64, beyond this grid).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from empirics.configs import configuration
from empirics.engine import InverseTime, simulate
from empirics.problems import NoisyQuadratic, PiecewiseQuadratic1D
from empirics.recursion import exact_moments
from empirics.reproductions.base import (
    Claim,
    Context,
    Figure,
    Reproduction,
    interval_verdict,
    predicted_cell,
)
from empirics.stats import mean_ci, weighted_loglog_slope
from theory.mixing import average, contiguous_groups, group_average
from theory.schedule_library import one_shot, spiridonoff, spiridonoff_comparison
from theory.schedules import Periodic, Schedule

NAME = "growing_intervals"
TITLE = ("Growing communication intervals and one-shot averaging: rounds, final errors, "
         "speed-up on a non-C² function")
PAPER = ("Spiridonoff, Olshevsky, Paschalidis, Communication-efficient SGD: From Local SGD to "
         "One-Shot Averaging, NeurIPS 2021 (arXiv:2106.04759)")

VERSION = 1          #: bump to invalidate cached units after a change of the computation
LEVEL = 0.05         #: two-sided level of the bands and tests (Bonferroni where several)
CLOSE_TOL = 0.05     #: "close to synchronous": relative excess of the true final error ≤ 5%
REBUTTAL_F = 3e-5    #: authors' rebuttal figure: growing and OSA ≈ 3×10⁻⁵ at t = 1000
SLOPE_RANGE = (-1.2, -0.8)  #: linear speed-up: slope of ln E error against ln N in this range
OSA_REBUTTAL = 5.6   #: authors' rebuttal plot: OSA speed-up ≈ 5.6 at N = 32 (speed-up.png)
INC_REBUTTAL = 14.3  #: … and ≈ 14.3 for R = N growing intervals
MAX_ROWS_A = 1000    #: engine rows per run, part A (trace memory ∝ rows·T·d)
MAX_ROWS_B = 2000    #: part B (d = 1)
SRC_A = "[quoted: authors' notebook Local-SGD-re/quadratic.ipynb]"
SRC_B = "[quoted: authors' notebook Local-SGD-re/speedup.ipynb]"
LABELS = {"synchronous": "synchronous", "stich": "[Sti19] H = 7", "haddadpour": "[HKMC19] H = 36",
          "this_paper": "growing H_i = a·i, R = N", "constant_T_over_N": "constant H = T/N",
          "one_shot": "one-shot (H = T)"}


# ---------------------------------------------------------------------------------------------
# problems with one generator per run (same distributions as the per-worker-generator originals)
# ---------------------------------------------------------------------------------------------
class StackedNoisyQuadratic(NoisyQuadratic):
    """:class:`NoisyQuadratic` (kept as a name: the base class now draws all m workers'
    batches together from the run's one generator ``seed_for(seed, 0)``, z₁ = c·N(0, I) then
    z₂ = σ·N(0, I) of shape (m, b, d) — what this class introduced)."""


class StackedPiecewiseQuadratic1D(PiecewiseQuadratic1D):
    """:class:`PiecewiseQuadratic1D` (kept as a name: the base class now draws all workers'
    noise z ~ N(0, σ²), shape (m, b, 1), from one generator, as this class introduced)."""


# ---------------------------------------------------------------------------------------------
# settings and small helpers
# ---------------------------------------------------------------------------------------------
def _settings(ctx: Context) -> dict[str, Any]:
    return ctx.pick(
        smoke={"T_a": 250, "reps_a": 20, "record": 10, "T_b": 250, "Ns": [2, 16],
               "reps_b": 40},
        default={"T_a": 1000, "reps_a": 50, "record": 10, "T_b": 1000,
                 "Ns": [2, 4, 8, 16, 24, 32], "reps_b": 150},
        # the notebooks: 100 repetitions (§4.1); 50 × {2, 2, 2, 3, 3, 3} (speed-up)
        full={"T_a": 1000, "reps_a": 100, "record": 10, "T_b": 1000,
              "Ns": [2, 4, 8, 16, 24, 32], "reps_b": 300},
    )


def _chunks(reps: int, N: int, max_rows: int) -> list[int]:
    """Split ``reps`` repetitions into engine runs of at most ``max_rows`` = reps·N rows."""
    per = max(1, max_rows // N)
    n = math.ceil(reps / per)
    base, extra = divmod(reps, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


def _replica_mixing(N: int, R: int) -> Any:
    """Block-diagonal group average: rows r·N … r·N + N − 1 form repetition r."""
    return group_average(contiguous_groups(N * R, R))


def _replicated(name: str, N: int, R: int, T: int, H: dict[str, int]) -> Schedule:
    """Strategy ``name`` for R repetitions of N workers (see the module docstring)."""
    if name == "one_shot":
        return one_shot(average(N * R))  # global average at T; blocks read before it
    Wb = _replica_mixing(N, R)
    if name == "this_paper":
        return spiridonoff(Wb, T, N)
    if name == "sqrt_N":
        return spiridonoff(Wb, T, math.ceil(math.sqrt(N)))
    return Periodic(Wb, H[name])


def _block_means(trace: Any, N: int, R: int, steps: Sequence[int], T: int) -> np.ndarray:
    """Per-repetition averaged models at ``steps``, shape (len(steps), R, d); the state at T is
    taken before the last mixing (X_{T−1} − Δ_{T−1}), which every block average preserves."""
    out = []
    for k in steps:
        X = trace.X[k] if k < T else trace.X[T - 1] - trace.delta[T - 1]
        out.append(X.reshape(R, N, -1).mean(1))
    return np.asarray(out)


# ---------------------------------------------------------------------------------------------
# part A: the §4.1 quadratic
# ---------------------------------------------------------------------------------------------
def quadratic_problem(m: int, device: str = "cpu", stacked: bool = False) -> NoisyQuadratic:
    """The §4.1 quadratic: d = 3, a = (1, 2, 3), c = 1, σ = 0.5, x₀ = 𝟙 (quoted from the
    authors' notebook ``quadratic.ipynb``); ``stacked``: one generator for all workers."""
    cls = StackedNoisyQuadratic if stacked else NoisyQuadratic
    return cls(d=3, m=m, a=(1.0, 2.0, 3.0), c=1.0, sigma=0.5, x0=1.0, device=device)


def quadratic_lr() -> InverseTime:
    """η_t = 3/(μ(t + 1)), μ = 1 (quoted from the authors' notebook ``quadratic.ipynb``)."""
    return InverseTime(a=3.0, beta=1.0)


def _quadratic_unit(ctx: Context, name: str, N: int, T: int, R: int, seed: int,
                    steps: list[int], H: dict[str, int]) -> dict[str, Any]:
    """One engine run: R repetitions of strategy ``name``; F(ū_r,k) − F* per repetition."""
    p = quadratic_problem(N * R, ctx.device, stacked=True)
    cfg = configuration(_replicated(name, N, R, T, H), name=name)
    # the notebook's η_0 = 3 > 2/L: the iterates blow up for a few steps and recover as η_t
    # decays (the exact expectation shows it), so only NaN/inf counts as divergence here
    _, tr = simulate(p, cfg, lr=quadratic_lr(), T=T, seed=seed, trace=True, record_every=T,
                     divergence=math.inf,
                     grad_every=0, device=ctx.device)
    u = _block_means(tr, N, R, steps, T)  # (K, R, 3)
    F = 0.5 * (u**2 @ p.a)  # (K, R)
    return {"F": F.T.tolist()}


def _part_a(ctx: Context, s: dict[str, Any]) -> dict[str, Any]:
    N, T = 20, s["T_a"]
    sched = spiridonoff_comparison(T, N)
    H = {k: v.tau for k, v in sched.items() if isinstance(v, Periodic)}
    steps = [*range(0, T, s["record"]), T]
    truth, rounds, mc = {}, {}, {}
    for name, sc in sched.items():
        mo = exact_moments(quadratic_problem(N), configuration(sc, name=name), quadratic_lr(), T,
                           record_every=s["record"])
        truth[name], rounds[name] = mo.suboptimality, mo.rounds
        rows = []
        for i, R in enumerate(_chunks(s["reps_a"], N, MAX_ROWS_A)):
            key = {"repro": NAME, "v": VERSION, "part": "A", "strategy": name, "N": N, "T": T,
                   "R": R, "seed": 1000 + i, "record": s["record"], "device": ctx.device}
            val = ctx.cache.get_or_run(key, lambda R=R, i=i, name=name: _quadratic_unit(
                ctx, name, N, T, R, 1000 + i, steps, H))
            rows.extend(val["F"])
        mc[name] = np.asarray(rows)  # (reps, K)
    # the single-worker truth (speed-up of the averaged strategies on this C² problem)
    single = exact_moments(quadratic_problem(1), configuration(one_shot(average(1))),
                           quadratic_lr(), T, record_every=s["record"]).suboptimality
    static_rounds = {k: sc.n_rounds(1000) for k, sc in spiridonoff_comparison(1000, 20).items()}
    return {"N": N, "T": T, "steps": np.asarray(steps), "truth": truth, "rounds": rounds,
            "mc": mc, "single": single, "H": H, "static_rounds": static_rounds,
            "comm_times": spiridonoff_comparison(1000, 20)["this_paper"].comm_times(1000)}


def _claims_a(a: dict[str, Any], s: dict[str, Any]) -> list[Claim]:
    claims = []
    sr = a["static_rounds"]
    expect = {"stich": 143, "haddadpour": 28, "this_paper": 20, "constant_T_over_N": 20,
              "one_shot": 1}
    ok = all(sr[k] == v for k, v in expect.items())
    ct = a["comm_times"]
    claims.append(Claim(
        claim="At (T, N) = (1000, 20): Stich H = 7 needs ≈143 rounds, HKMC H = 36 ≈28, the "
              "growing schedule 20, constant T/N = 50 20, one-shot 1",
        paper="Spiridonoff et al. §4.1 strategies, " + SRC_A + " (plot_labels); the counts "
              "are derived",
        measured="rounds counted by theory.schedules at T = 1000: " + ", ".join(
            f"{k} {v}" for k, v in sr.items()) + f"; growing communication times "
            f"{', '.join(map(str, ct[:7]))}, …, {ct[-2]}, {ct[-1]}",
        bound="143 / 28 / 20 / 20 / 1", verdict="agrees" if ok else "disagrees",
        detail={"rounds": sr, "comm_times": ct.tolist()}))

    T, N = a["T"], a["N"]
    fin = {k: float(v[-1]) for k, v in a["truth"].items()}
    rel = {k: fin[k] / fin["synchronous"] - 1 for k in fin}
    spread = max(fin.values()) / min(fin.values())
    close = all(abs(rel[k]) <= CLOSE_TOL for k in ("this_paper", "one_shot"))
    near = all(0.5 <= fin[k] / REBUTTAL_F <= 2 for k in ("this_paper", "one_shot"))
    verdict = ("agrees" if close and (near or T != 1000) else "disagrees")
    def vs_sync(t: int) -> tuple[int, dict[str, float]]:
        j = int(np.argmin(np.abs(a["steps"] - t)))
        return int(a["steps"][j]), {k: float(v[j] / a["truth"]["synchronous"][j])
                                    for k, v in a["truth"].items()}

    k_early, early = vs_sync(max(T // 50, int(a["steps"][2])))  # early: ≥ 2 records in
    k_mid, mid = vs_sync(T // 10)
    mc_T = {k: float(np.mean(F[:, -1])) for k, F in a["mc"].items()}
    r_T = {k: fin[k] / mc_T[k] for k in ("this_paper", "one_shot") if mc_T[k] > 0}
    worst = max(r_T.values(), key=lambda r: abs(math.log(r))) if r_T else None
    claims.append(Claim(
        claim="On the §4.1 quadratic the growing-interval schedule (20 rounds) and one-shot "
              "averaging (1 round) end as low as synchronous SGD (1000 rounds): both ≈3×10⁻⁵ at "
              "t = 1000",
        paper="Spiridonoff et al. §4.1 figure; value from the authors' rebuttal figure "
              "iteration_skewed.png [quoted]; 'all end close together' is the "
              "team's note (DESIGN.md)",
        measured=f"exact E F(x̄_T) − F* (recursion) at T = {T}: " + ", ".join(
            f"{k} {fin[k]:.4g} ({100 * rel[k]:+.2f}%)" for k in fin) +
            f"; max/min over the six {spread:.4f}. Intermediate iterations, ratio to "
            f"synchronous: t = {k_early}: growing {early['this_paper']:.3g}, one-shot "
            f"{early['one_shot']:.3g}; t = {k_mid}: growing {mid['this_paper']:.4g}, one-shot "
            f"{mid['one_shot']:.4g}",
        bound=f"within {100 * CLOSE_TOL:.0f}% of synchronous; ≈3×10⁻⁵ (factor 2)",
        verdict=verdict, tightness=None,
        predicted=("exact (the predictor's recursion, the values above); ÷ engine sample mean "
                   "at T: " + ", ".join(f"{k} {r:.3g}" for k, r in r_T.items())),
        predicted_ratio=worst,
        detail={"final_truth": fin, "relative_to_sync": rel, "t_early": k_early,
                "ratio_to_sync_early": early, "t_mid": k_mid, "ratio_to_sync_mid": mid}))

    single_T = float(a["single"][-1])
    sp = single_T / fin["one_shot"]
    claims.append(Claim(
        claim="One-shot averaging attains linear speed-up on a twice-differentiable objective "
              "(asymptotically)",
        paper="Spiridonoff et al. abstract [quoted: 'twice differentiab…'; the word "
              "'asymptotically' is recalled (the readable abstract is cut there)]",
        measured=f"exact E F at T = {T}: single worker {single_T:.4g}, one-shot over N = {N} "
                 f"{fin['one_shot']:.4g}: speed-up {sp:.2f} (linear = {N})",
        bound=f"≥ {0.8 * N:.0f} (80% of linear)",
        verdict="agrees" if sp >= 0.8 * N else "disagrees",
        detail={"single_worker": single_T, "speedup": sp}))

    # sample mean vs truth, Bonferroni over strategies × checkpoints. Checkpoints from T/2 on:
    # early on (η_0·L = 9 ≫ 2) the multiplicative noise makes E F a mean over rare, huge
    # trajectories (heavy, log-normal-like tails), where a sample mean of ~10² runs and its
    # standard error are not usable; the early ratio sample/truth is reported instead.
    steps = a["steps"]
    checks = sorted({int(np.argmin(np.abs(steps - t))) for t in (T // 2, 3 * T // 4, T)})
    early = int(np.argmin(np.abs(steps - max(T // 50, int(steps[2])))))
    n_tests = len(checks) * len(a["mc"])
    z = stats.norm.ppf(1 - LEVEL / (2 * n_tests))
    worst, inside, rows, ratio = 0.0, True, [], {}
    for k, F in a["mc"].items():
        mean, se, _, _ = mean_ci(F)
        ratio[k] = float(mean[early] / a["truth"][k][early])
        for j in checks:
            zz = float((mean[j] - a["truth"][k][j]) / se[j])
            worst = max(worst, abs(zz))
            inside &= abs(zz) <= z
            rows.append({"strategy": k, "t": int(steps[j]), "mean": float(mean[j]),
                         "se": float(se[j]), "truth": float(a["truth"][k][j]), "z": zz})
    reps = next(iter(a["mc"].values())).shape[0]
    rT = {k: float(a["truth"][k][-1] / np.mean(F[:, -1])) for k, F in a["mc"].items()}
    claims.append(Claim(
        claim="The sample mean of the runs estimates the exact expectation E F(x̄_t) − F* "
              "(implementation check: engine against the exact recursion)",
        paper="this toolkit's recursion (derived, empirics.recursion), not a claim of the paper",
        measured=f"{reps} repetitions per strategy; at t ∈ {[int(steps[j]) for j in checks]} "
                 f"the largest |mean − truth|/SE is {worst:.2f} over {n_tests} tests. Early, "
                 f"at t = {int(steps[early])}, sample mean ÷ truth = " + ", ".join(
                     f"{k} {v:.3g}" for k, v in ratio.items()) +
                 " (heavy tails: the expectation is carried by rare runs, so the early sample "
                 "mean is not a usable estimate and is not tested)",
        bound=f"|z| ≤ {z:.2f} (family-wise two-sided {LEVEL:g}, Bonferroni)",
        verdict="agrees" if inside else "disagrees",
        predicted="exact; ÷ sample mean at T: " + ", ".join(f"{k} {r:.3g}"
                                                            for k, r in rT.items()),
        predicted_ratio=max(rT.values(), key=lambda r: abs(math.log(r))),
        detail={"tests": rows, "early_t": int(steps[early]), "early_ratio": ratio}))
    return claims


def _figure_a(ctx: Context, a: dict[str, Any]) -> Figure:
    from empirics.plots import band, new_figure

    fig, (ax1, ax2) = new_figure(2)
    steps = a["steps"]
    floor = 0.5 * min(float(v[1:].min()) for v in a["truth"].values())
    late = steps >= max(1, a["T"] // 20)  # the sample mean from t = T/20 (notebook: every 50)
    for i, (k, tr) in enumerate(a["truth"].items()):
        col = f"C{i}"
        ax1.plot(steps[1:], tr[1:], "-", color=col, label=f"{LABELS[k]} (exact)")
        mean, _, lo, hi = mean_ci(a["mc"][k])
        band(ax1, steps[late], mean[late], np.maximum(lo[late], floor), hi[late],
             label="_nolegend_", color=col, style=":", linewidth=1)
        r = a["rounds"][k]
        keep = r >= 1
        ax2.plot(r[keep], tr[keep], "-o" if keep.sum() < 3 else "-", markersize=3, color=col,
                 label=LABELS[k])
    for ax, xl in ((ax1, "iteration t"), (ax2, "communication rounds")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xl)
        ax.set_ylabel("E F(x̄_t) − F*")
    ax1.set_ylim(bottom=floor)
    ax1.set_title(f"§4.1 quadratic, N = {a['N']}: exact (solid), sample mean ± 95% (dotted)",
                  fontsize=8)
    ax1.legend(fontsize=6)
    ax2.set_title("exact expectation against rounds used", fontsize=8)
    reps = next(iter(a["mc"].values())).shape[0]
    return ctx.save_figure(fig, f"{NAME}_quadratic",
            f"§4.1 quadratic (d = 3, N = {a['N']}, T = {a['T']}, η_t = 3/(t+1)): "
            f"E F(x̄_t) − F* of the six strategies against iterations (exact "
            f"recursion solid; sample mean of {reps} engine repetitions dotted with "
            f"its 95% t band, from t = T/20 on, band clipped at the axis floor where "
            f"it reaches 0) and against communication rounds (exact).")


# ---------------------------------------------------------------------------------------------
# part B: speed-up on the non-C² one-dimensional function
# ---------------------------------------------------------------------------------------------
def speedup_problem(m: int, device: str = "cpu", stacked: bool = False) -> PiecewiseQuadratic1D:
    """f(x) = μx² (x ≥ 0), ½μx² (x < 0), μ = 1, σ = 8, x₀ = 2 (quoted from the
    authors' notebook ``speedup.ipynb``); ``stacked``: one generator for all workers."""
    cls = StackedPiecewiseQuadratic1D if stacked else PiecewiseQuadratic1D
    return cls(m=m, mu=1.0, sigma=8.0, x0=2.0, device=device)


def speedup_lr() -> InverseTime:
    """η_t = min(2/(μ(t + 1)), 1/L), μ = 1, L = 2 (quoted from the notebook ``speedup.ipynb``)."""
    return InverseTime(a=2.0, beta=1.0, max_lr=0.5)


def _f1d(x: np.ndarray) -> np.ndarray:
    return np.where(x >= 0, x**2, 0.5 * x**2)


def _speedup_unit(ctx: Context, name: str, N: int, T: int, R: int, seed: int) -> dict[str, Any]:
    """One engine run: R repetitions; f(x̄_T) per repetition and the mean of the workers'
    own f(x_j,T) before averaging."""
    p = speedup_problem(N * R, ctx.device, stacked=True)
    cfg = configuration(_replicated(name, N, R, T, {"synchronous": 1}), name=name)
    _, tr = simulate(p, cfg, lr=speedup_lr(), T=T, seed=seed, trace=True, record_every=T,
                     grad_every=0, device=ctx.device)
    X = (tr.X[T - 1] - tr.delta[T - 1]).reshape(R, N)  # before the last mixing
    return {"final": _f1d(X.mean(1)).tolist(), "workers": _f1d(X).mean(1).tolist()}


def _part_b(ctx: Context, s: dict[str, Any]) -> dict[str, Any]:
    T = s["T_b"]
    names = ["this_paper", "one_shot", "synchronous", "sqrt_N"]
    err: dict[str, dict[int, np.ndarray]] = {k: {} for k in names}
    single: list[float] = []
    for name in names:
        for N in s["Ns"]:
            vals, work = [], []
            for i, R in enumerate(_chunks(s["reps_b"], N, MAX_ROWS_B)):
                seed = 2000 + 100 * N + i
                key = {"repro": NAME, "v": VERSION, "part": "B", "strategy": name, "N": N,
                       "T": T, "R": R, "seed": seed, "device": ctx.device}
                val = ctx.cache.get_or_run(key, lambda R=R, seed=seed, name=name, N=N:
                                           _speedup_unit(ctx, name, N, T, R, seed))
                vals.extend(val["final"])
                work.extend(val["workers"])
            err[name][N] = np.asarray(vals)
            if name == "one_shot":
                single.extend(work)  # each entry: mean over N independent single workers
    return {"T": T, "Ns": list(s["Ns"]), "err": err, "single": np.asarray(single),
            "predicted": predicted_speedup(list(s["Ns"]), T)}


def predicted_speedup(Ns: Sequence[int], T: int) -> dict[str, Any]:
    """The predictor's errors E f(x̄_T) − f* (Gaussian closure of the non-C² function,
    :class:`empirics.laws.PiecewiseLaw`) for each strategy and N, the single worker's, and the
    speed-ups."""
    from empirics.laws import law_for
    from empirics.moments import propagate

    def err(N: int, sched: Schedule) -> float:
        r = propagate(law_for(speedup_problem(N)), configuration(sched), speedup_lr(), T,
                      record_every=T)
        return float(r.columns["suboptimality"][-1])

    single = err(1, one_shot(average(1)))
    out: dict[str, Any] = {"single": single, "errors": {}, "speedup": {}}
    for name in ("this_paper", "one_shot", "synchronous", "sqrt_N"):
        e = []
        for N in Ns:
            W = average(N)
            if name == "this_paper":
                sched: Schedule = spiridonoff(W, T, N)
            elif name == "one_shot":
                sched = one_shot(W)
            elif name == "synchronous":
                sched = Periodic(W, 1)
            else:
                sched = spiridonoff(W, T, math.ceil(math.sqrt(N)))
            e.append(err(N, sched))
        out["errors"][name] = np.asarray(e)
        out["speedup"][name] = single / np.asarray(e)
    return out


def _speedups(b: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    """Speed-up and its delta-method 95% interval per strategy and N."""
    base = float(b["single"].mean())
    base_rse = float(b["single"].std(ddof=1) / math.sqrt(len(b["single"])) / base)
    z = stats.norm.ppf(1 - LEVEL / 2)
    out = {}
    for k, per in b["err"].items():
        m = np.array([per[N].mean() for N in b["Ns"]])
        rse = np.array([per[N].std(ddof=1) / math.sqrt(len(per[N])) for N in b["Ns"]]) / m
        sp = base / m
        w = np.sqrt(rse**2 + base_rse**2)
        out[k] = {"mean_error": m, "rse": rse, "speedup": sp, "lo": sp * np.exp(-z * w),
                  "hi": sp * np.exp(z * w)}
    return out


def _claims_b(b: dict[str, Any]) -> list[Claim]:
    sp = _speedups(b)
    Ns, T = b["Ns"], b["T"]
    pr = b["predicted"]
    reg = "Gaussian closure"

    def pslope(name: str) -> float:
        return float(np.polyfit(np.log(Ns), np.log(pr["errors"][name]), 1)[0])
    z = stats.norm.ppf(1 - LEVEL / 2)
    claims = []
    inc = sp["this_paper"]
    sl, se = weighted_loglog_slope(Ns, inc["mean_error"], inc["rse"])
    sync = sp["synchronous"]
    sl_sync, se_sync = weighted_loglog_slope(Ns, sync["mean_error"], sync["rse"])
    ntE = np.asarray(Ns) * T * inc["mean_error"]
    lo, hi = sl - z * se, sl + z * se
    v = interval_verdict((lo, hi), SLOPE_RANGE)  # agrees: every slope the data allow is linear
    claims.append(Claim(
        claim="R = N growing intervals give linear speed-up: N·T·(E f(x̄_T) − f*) ≈ constant in "
              "N (error slope −1 against N on log-log axes)",
        paper="Spiridonoff et al. abstract [quoted: Ω(N) communications suffice for error "
              "∝ 1/(NT)]; experiment " + SRC_B,
        measured=f"T = {T}, N ∈ {Ns}: N·T·error " + ", ".join(f"{v_:.3g}" for v_ in ntE) +
                 f" (max/min {ntE.max() / ntE.min():.2f}); slope of ln error on ln N {sl:.3f} "
                 f"[{lo:.3f}, {hi:.3f}] (95%); synchronous {sl_sync:.3f} ± {z * se_sync:.3f}; "
                 f"speed-up at N = {Ns[-1]}: {inc['speedup'][-1]:.1f} [{inc['lo'][-1]:.1f}, "
                 f"{inc['hi'][-1]:.1f}] (rebuttal plot ≈ {INC_REBUTTAL} at N = 32)",
        bound=f"slope in [{SLOPE_RANGE[0]}, {SLOPE_RANGE[1]}]", verdict=v,
        predicted="slope " + predicted_cell(pslope("this_paper"), sl, reg, fmt=".3f")[0],
        predicted_ratio=predicted_cell(pslope("this_paper"), sl, reg)[1],
        detail={"slope": sl, "slope_se": se, "slope_sync": sl_sync, "NT_error": ntE.tolist(),
                "predicted_errors": pr["errors"]["this_paper"].tolist()}))

    osa, j = sp["one_shot"], len(Ns) - 1
    prev = max(range(len(Ns) - 1), key=lambda i: Ns[i])  # the next-largest N
    local = math.log(osa["speedup"][j] / osa["speedup"][prev]) / math.log(Ns[j] / Ns[prev])
    sat = osa["hi"][j] < 0.5 * Ns[j] and local < 0.5
    beats = inc["lo"][j] > osa["hi"][j]
    claims.append(Claim(
        claim="On the non-C² function f = x² (x ≥ 0), ½x² (x < 0) the one-shot speed-up "
              "saturates (≈5–6 at N = 32) while R = N growing intervals keep growing",
        paper="authors' rebuttal plot speed-up.png [quoted: OSA ≈ 5.6, growing ≈ 14.3 at "
              "N = 32]; the link to the twice-differentiability assumption is this toolkit's "
              "reading",
        measured=f"speed-up (single-worker error {b['single'].mean():.4g}, the mean over the "
                 f"workers of {len(b['single'])} one-shot repetitions before averaging, ÷ the "
                 f"method's error) at N = {Ns}: one-shot " + ", ".join(
                     f"{x:.2f}" for x in osa["speedup"]) + "; growing " + ", ".join(
                     f"{x:.2f}" for x in inc["speedup"]) + "; synchronous " + ", ".join(
                     f"{x:.2f}" for x in sp["synchronous"]["speedup"]) +
                 f"; one-shot local log-slope between N = {Ns[prev]} and {Ns[j]}: {local:.2f}",
        bound=f"one-shot at N = {Ns[j]}: upper 95% < N/2 and local slope < 0.5; growing "
              f"significantly above one-shot",
        verdict="agrees" if sat and beats else "disagrees",
        predicted=(f"at N = {Ns[j]}: one-shot "
                   + predicted_cell(float(pr["speedup"]["one_shot"][j]),
                                    float(osa["speedup"][j]), reg, fmt=".3g")[0]
                   + f", growing {pr['speedup']['this_paper'][j]:.3g} (single-worker error "
                     f"{pr['single']:.4g})"),
        predicted_ratio=float(pr["speedup"]["one_shot"][j] / osa["speedup"][j]),
        detail={"predicted_speedup": {k: v.tolist() for k, v in pr["speedup"].items()},
                "osa_speedup": osa["speedup"].tolist(), "osa_lo": osa["lo"].tolist(),
                "osa_hi": osa["hi"].tolist(), "growing_speedup": inc["speedup"].tolist(),
                "growing_lo": inc["lo"].tolist(), "growing_hi": inc["hi"].tolist(),
                "sync_speedup": sp["synchronous"]["speedup"].tolist(), "local_slope": local,
                "rebuttal": {"osa": OSA_REBUTTAL, "growing": INC_REBUTTAL}}))

    sq = sp["sqrt_N"]
    sl_q, se_q = weighted_loglog_slope(Ns, sq["mean_error"], sq["rse"])
    lo_q, hi_q = sl_q - z * se_q, sl_q + z * se_q
    rounds_q = [math.ceil(math.sqrt(N)) for N in Ns]
    claims.append(Claim(
        claim="R = √N rounds (growing intervals) fail to give linear speed-up at large N",
        paper="Spiridonoff et al. abstract [quoted: '√N or N^{3/4} communications fail']; "
              "authors' rebuttal plot speed-up-lower.png (T = 8000, N = 64–256: plateau ≈ "
              "15–16) [quoted]",
        measured=f"T = {T}, R = ⌈√N⌉ = {rounds_q} rounds: speed-up " + ", ".join(
                     f"{x:.2f}" for x in sq["speedup"]) + " (R = N: " + ", ".join(
                     f"{x:.2f}" for x in inc["speedup"]) + f"); slope of ln error on ln N "
                 f"{sl_q:.3f} [{lo_q:.3f}, {hi_q:.3f}] (95%)",
        bound=f"slope above {SLOPE_RANGE[1]} (flatter than linear) — the paper's regime is "
              f"T = 8000, N ≥ 64",
        verdict="agrees" if lo_q > SLOPE_RANGE[1] else "inconclusive",
        predicted="slope " + predicted_cell(pslope("sqrt_N"), sl_q, reg, fmt=".3f")[0],
        predicted_ratio=predicted_cell(pslope("sqrt_N"), sl_q, reg)[1],
        detail={"slope": sl_q, "slope_se": se_q, "speedup": sq["speedup"].tolist(),
                "rounds": rounds_q}))
    return claims


def _figure_b(ctx: Context, b: dict[str, Any]) -> Figure:
    from empirics.plots import band, new_figure

    sp = _speedups(b)
    Ns = np.asarray(b["Ns"], float)
    fig, (ax1, ax2) = new_figure(2)
    names = {"this_paper": "growing H_i = a·i, R = N", "one_shot": "one-shot",
             "synchronous": "synchronous", "sqrt_N": "growing, R = ⌈√N⌉"}
    for i, (k, lab) in enumerate(names.items()):
        band(ax1, Ns, sp[k]["speedup"], sp[k]["lo"], sp[k]["hi"], label=lab, color=f"C{i}",
             style="-o", markersize=3)
        m, rse = sp[k]["mean_error"], sp[k]["rse"]
        band(ax2, Ns, Ns * b["T"] * m, Ns * b["T"] * m * (1 - 1.96 * rse),
             Ns * b["T"] * m * (1 + 1.96 * rse), label=lab, color=f"C{i}", style="-o",
             markersize=3)
    ax1.plot(Ns, Ns, "k--", linewidth=1, label="linear speed-up")
    for i, k in enumerate(names):
        ax1.plot(Ns, b["predicted"]["speedup"][k], "-.", color=f"C{i}", linewidth=1,
                 alpha=0.8, label="predicted (Gaussian closure)" if i == 0 else None)
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xticks(Ns)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("workers N")
        ax.legend(fontsize=7)
    ax1.set_yscale("log")
    ax1.set_ylabel("speed-up (single-worker error / error)")
    ax2.set_ylabel("N·T·(E f(x̄_T) − f*)")
    ax1.set_title(f"non-C² 1-D function, σ = 8, T = {b['T']}", fontsize=8)
    return ctx.save_figure(fig, f"{NAME}_speedup",
            f"Speed-up on f = x² (x ≥ 0), ½x² (x < 0) with N(0, 64) gradient noise, "
            f"T = {b['T']}: single-worker error ÷ error of the averaged model at T, "
            f"95% bands (delta method); dash-dot: the predictor (Gaussian closure, no "
            f"sampling); right: N·T·error (flat = linear speed-up).")


# ---------------------------------------------------------------------------------------------
def reproduce(ctx: Context) -> Reproduction:
    """Run both experiments at ``ctx.scale`` (cached per strategy × N × chunk of repetitions)."""
    t0 = time.perf_counter()
    s = _settings(ctx)
    a = _part_a(ctx, s)
    b = _part_b(ctx, s)
    claims = _claims_a(a, s) + _claims_b(b)
    figures = [_figure_a(ctx, a), _figure_b(ctx, b)]
    sp = _speedups(b)
    data = {
        "settings": s,
        "quadratic": {"steps": a["steps"], "truth": a["truth"], "rounds": a["rounds"],
                      "H": a["H"], "single_truth": a["single"],
                      "sample_mean": {k: v.mean(0) for k, v in a["mc"].items()},
                      "repetitions": {k: v.shape[0] for k, v in a["mc"].items()}},
        "speedup": {"Ns": b["Ns"], "T": b["T"], "single_worker_error": float(b["single"].mean()),
                    **{k: {kk: vv for kk, vv in v.items()} for k, v in sp.items()},
                    "predicted": b["predicted"]},
    }
    return Reproduction(NAME, TITLE, PAPER, ctx.scale, claims, figures, data,
                        seconds=time.perf_counter() - t0)


__all__ = ["NAME", "PAPER", "TITLE", "StackedNoisyQuadratic", "StackedPiecewiseQuadratic1D",
           "predicted_speedup", "quadratic_lr", "quadratic_problem", "reproduce", "speedup_lr",
           "speedup_problem"]
