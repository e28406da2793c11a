"""Local SGD with periodic averaging under PL (Haddadpour, Kamani, Mahdavi, Cadambe, NeurIPS 2019,
"LUPA-SGD", arXiv:1910.13598).

Setting (this reproduction's choices; the paper's own experiment is on *epsilon* with Adam local
steps in the authors' code github.com/mmkamani7/LUPA-SGD, which is not what its theory
analyses):

* problem: ℓ2-regularised logistic regression (μ-strongly convex, hence μ-PL), ``sampling =
  "shared"`` so every worker's stochastic gradient is unbiased for ∇F (the theorem's i.i.d.
  setting; finite shards are never exactly i.i.d.); l2 = 0.1 so κ = L/μ = 3.5;
* step size: the PL theorem's η_t = 4/(μ(t + a)), a = α_PL·τ + 4 (recalled, LOW
  confidence), with α_PL = 4(κ − 1), the smallest α for which η_0 ≤ 1/L at τ = 1 (our choice:
  the paper's condition on α is not known);
* strategies at p workers, T local steps each: synchronous SGD (τ = 1), τ = 5 (the poster's
  "Stich, 2019" curve), τ = T^{2/3}/p^{1/3} (the poster's choice [quoted]; rounded to the
  nearest divisor of T, so every round is full and the constant-period bound applies) and the
  linearly growing schedule τ_i = (1 + iα)τ₀, α = 2T/(E(E+1)τ₀) (poster and code [quoted]) —
  the first set each with its own a, as the theorem prescribes, so each is tested against the
  bound (``pl_bound``; ``pl_bound_intervals`` for the growing schedule) — *inconclusive*, with
  where the measurement lies: the theorem's condition on α_PL is not known, so no run can be
  shown inside its hypotheses (``PL_RUN.unknown``);
* adaptive vs constant at one common step size (a = α_PL τ₀ + 4): constant τ₀ with
  T/τ₀ ≈ 6E rounds, the linear-growth schedule with E rounds (the poster's ≈ 60 vs ≈ 10) and the
  loss-driven rule τ_i = ⌈(F(x̄⁰)/F(x̄))^{1/3}⌉τ₀;
* linear speed-up: the error at fixed T against p ∈ {2, 4, 8, 16} (τ = T^{2/3}/p^{1/3} and
  τ = 1), least-squares slope of ln(mean error) against ln p with a bootstrap interval over seeds.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from empirics import stats
from empirics.reproductions.base import (
    Claim,
    Context,
    Figure,
    Reproduction,
    claim_status,
    interval_verdict,
    predicted_cell,
    result_prediction,
    result_reason,
)

NAME = "local_pl"
TITLE = "Local SGD under PL: (pT)^{1/3} rounds, adaptive periods, linear speed-up, the PL bound"
PAPER = ("Haddadpour, Kamani, Mahdavi, Cadambe, Local SGD with Periodic Averaging: Tighter "
         "Analysis and Adaptive Synchronization, NeurIPS 2019 (arXiv:1910.13598)")

L2 = 0.1             #: ℓ2 weight = μ
D = 20               #: features
N_SAMPLES = 2048     #: rows (divisible by every p used, so F is the same for every p)
ROUNDS_FACTOR = 6    #: constant τ₀ uses ≈ 6E rounds (the poster's ≈ 60 vs ≈ 10)
SLOPE_TOL = 0.25     #: speed-up agrees if the slope's bootstrap interval ⊂ [−1 − tol, −1 + tol]
ROUNDS_TOL = 0.2     #: rounds within 20% of (pT)^{1/3} (τ is rounded to a divisor of T)
ERROR_TOL = 0.25     #: "comparable error": relative excess of the mean error ≤ 25%
LEVEL = 0.05
_BOOT = 2000

PL_PAPER = ("Haddadpour et al. 2019, main theorem for PL objectives: RECALLED, structure medium, "
            "constants 4, 256 and a = ατ + 4 LOW confidence, condition on α not known")


def _settings(ctx: Context) -> dict[str, Any]:
    return ctx.pick(
        # T with many divisors (every period divides T); T/(6E) is a divisor: τ₀ = 8, 36, 91
        smoke={"T": 240, "p": 4, "ps": [2, 4, 8], "seeds": 2, "E": 5, "record": 20},
        default={"T": 2160, "p": 8, "ps": [2, 4, 8, 16], "seeds": 5, "E": 10, "record": 40},
        # near the poster's horizon T = 5469, p = 4, τ₀ = 91, E = 10, α = 1.09 (poster)
        full={"T": 5460, "p": 4, "ps": [2, 4, 8, 16, 32], "seeds": 10, "E": 10, "record": 60},
    )


def problem_spec() -> dict[str, Any]:
    """The logistic-regression problem (i.i.d. workers: every worker samples all rows)."""
    return {"kind": "logistic_regression", "n_samples": N_SAMPLES, "d": D, "l2": L2, "seed": 0,
            "sampling": "shared"}


def nearest_divisor(T: int, x: float) -> int:
    """The divisor of T nearest to x (in ratio; the smaller one on a tie), so that every round
    has the same length τ and T = (rounds)·τ exactly, as the constant-period bound assumes."""
    divs = [q for q in range(1, T + 1) if T % q == 0]
    return min(divs, key=lambda q: (abs(math.log(q / x)), q))


def tau_poster(T: int, p: int) -> int:
    """τ = T^{2/3}/p^{1/3} (poster [quoted], constants 1), rounded to the nearest divisor of T."""
    return nearest_divisor(T, T ** (2 / 3) / p ** (1 / 3))


def alpha_pl(ctx: Context) -> tuple[float, dict[str, float]]:
    """α_PL = 4(κ − 1): η_0 = 4/(μ(α + 4)) = 1/L at τ = 1 (our choice), and the constants."""
    from empirics.experiment import ExperimentSpec, build_problem

    spec = ExperimentSpec(name="constants", problem=problem_spec(),
                          algorithm={"name": "synchronous", "m": 2}, lr=0.1, steps=1,
                          device=ctx.device)
    c = build_problem(spec).constants
    kappa = c.L.value / c.mu.value
    return round(4 * (kappa - 1), 9), {"L": c.L.value, "mu": c.mu.value,
                                       "sigma2": c.sigma2.value, "F_gap": c.initial_gap,
                                       "kappa": kappa}


def _spec(ctx: Context, s: dict[str, Any], name: str, algorithm: dict[str, Any], lr: Any,
          bound: str = "auto") -> Any:
    from empirics.experiment import ExperimentSpec

    return ExperimentSpec(name=name, problem=problem_spec(), algorithm=algorithm, lr=lr,
                          steps=s["T"], batch_size=1, seeds=s["seeds"], device=ctx.device,
                          dtype="float64", record_every=s["record"], grad_every=0, bound=bound,
                          level=LEVEL)


def _run(ctx: Context, spec: Any) -> Any:
    from empirics.experiment import run_experiment

    return run_experiment(spec, progress=ctx.progress, cache=ctx.cache)


def _final_per_seed(res: Any) -> np.ndarray:
    return np.asarray(res.per_seed[:, -1], dtype=float)


def _rounds(res: Any) -> np.ndarray:
    """Mean cumulative rounds over seeds at each recorded step."""
    return np.mean([np.asarray(r.rounds, dtype=float) for r in res.runs], axis=0)


def _summary(res: Any) -> dict[str, Any]:
    f = res.final
    return {"name": res.spec["name"], "final_mean": f["measured"], "final_lower": f["lower"],
            "final_upper": f["upper"], "bound": f["bound"], "tightness": f["tightness"],
            "verdict": res.verdict.status, "verdict_message": res.verdict.message,
            "p_value": res.verdict.p_value, "rounds": float(_rounds(res)[-1]),
            "per_seed_final": _final_per_seed(res).tolist()}


def loglog_slope(ps: list[int], finals: list[np.ndarray], seed: int = 0,
                 n_boot: int = _BOOT) -> tuple[float, float, float]:
    """(slope, lower, upper): least-squares slope of ln(mean final error) against ln p, with a
    95% percentile bootstrap interval (seeds resampled independently at every p)."""
    return stats.loglog_slope(ps, finals, seed=seed, n_boot=n_boot)


def paired_relative_excess(a: np.ndarray, b: np.ndarray, level: float = LEVEL
                           ) -> tuple[float, float, float]:
    """(estimate, lower, upper) of (E a − E b)/E b, seeds paired, by the delta method with a
    Student-t quantile (two-sided 1 − level)."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    n = len(a)
    ma, mb = a.mean(), b.mean()
    r = ma / mb - 1
    if n < 2:
        return float(r), float(r), float(r)
    z = a / mb - ma * b / mb**2  # influence of each seed on ma/mb
    se = z.std(ddof=1) / math.sqrt(n)
    q = stats.t.ppf(1 - level / 2, n - 1)
    return float(r), float(r - q * se), float(r + q * se)


def _bound_slope(ps: list[int], results: dict[int, Any]) -> float | None:
    """Log-log slope of the final bound against p (None if a bound is missing)."""
    b = [results[q].final["bound"] for q in ps]
    if any(x is None for x in b):
        return None
    return float(np.polyfit(np.log(ps), np.log(b), 1)[0])


def reproduce(ctx: Context) -> Reproduction:
    """Run the three experiments (strategies with bounds, adaptive vs constant, speed-up in p)
    and return the claims and figures."""
    from theory.bounds.local_pl import tau_choice
    from theory.schedule_library import linear_growth_alpha, linear_growth_periods

    t0 = time.perf_counter()
    s = _settings(ctx)
    T, p, E = s["T"], s["p"], s["E"]
    alpha, consts = alpha_pl(ctx)
    pl_lr = {"kind": "pl", "alpha_pl": alpha}
    tau_p = tau_poster(T, p)
    tau0 = nearest_divisor(T, T / (ROUNDS_FACTOR * E))
    growth = {"kind": "linear_growth", "E": E, "tau0": tau0}

    # --- 1. strategies at the theorem's own step size (each with a bound) ----------------
    strategies = {
        "synchronous (τ = 1)": {"name": "pasgd", "m": p, "tau": 1},
        "τ = 5 (Stich)": {"name": "pasgd", "m": p, "tau": 5},
        f"τ = T^(2/3)/p^(1/3) = {tau_p}": {"name": "pasgd", "m": p, "tau": tau_p},
        f"linear growth τ₀ = {tau0}, E = {E}": {"name": "local_sgd", "m": p, "schedule": growth},
    }
    strat = {k: _run(ctx, _spec(ctx, s, f"pl_{i}", alg, pl_lr))
             for i, (k, alg) in enumerate(strategies.items())}

    # --- 2. adaptive vs constant τ₀ at one common step size ------------------------------
    a_common = alpha * tau0 + 4
    common_lr = {"kind": "inverse_time", "a": 4.0 / consts["mu"], "beta": a_common}
    adaptive = {
        f"constant τ₀ = {tau0}": _run(ctx, _spec(ctx, s, "ada_const",
                                                 {"name": "pasgd", "m": p, "tau": tau0}, pl_lr)),
        f"linear growth (E = {E})": _run(ctx, _spec(ctx, s, "ada_growth", {
            "name": "local_sgd", "m": p, "schedule": growth}, common_lr, bound="none")),
        "loss-driven ⌈(F⁰/F)^{1/3}⌉τ₀": _run(ctx, _spec(ctx, s, "ada_loss", {
            "name": "local_sgd", "m": p, "schedule": {"kind": "adaptive_lupa", "tau0": tau0}},
            common_lr, bound="none")),
    }

    # --- 3. speed-up in p --------------------------------------------------------------
    speed: dict[str, dict[int, Any]] = {"poster τ": {}, "synchronous": {}}
    for q in s["ps"]:
        speed["poster τ"][q] = _run(ctx, _spec(ctx, s, f"speed_tau_p{q}", {
            "name": "pasgd", "m": q, "tau": tau_poster(T, q)}, pl_lr))
        speed["synchronous"][q] = _run(ctx, _spec(ctx, s, f"speed_sync_p{q}", {
            "name": "pasgd", "m": q, "tau": 1}, pl_lr))

    claims: list[Claim] = []

    # claim 1: (pT)^{1/3} rounds
    rows = []
    for q in s["ps"]:
        tq = tau_poster(T, q)
        measured = float(_rounds(speed["poster τ"][q])[-1])
        target = (q * T) ** (1 / 3)
        rows.append({"p": q, "tau": tq, "rounds": measured, "(pT)^(1/3)": target,
                     "ok": measured == T // tq and abs(measured / target - 1) <= ROUNDS_TOL})
    poster_tau = round(5469 ** (2 / 3) / 4 ** (1 / 3))
    poster_rounds = round(5469 / poster_tau)
    # sympy's derivation takes seconds: skipped at smoke scale (tested in tests/theory)
    sym = "(not derived at smoke scale)" if ctx.scale == "smoke" else str(
        tau_choice().scaling_rounds)
    ok1 = all(r["ok"] for r in rows) and poster_rounds == 28
    claims.append(Claim(
        claim="τ = T^{2/3}/p^{1/3} gives T/τ = (pT)^{1/3} communication rounds "
              "(p = 4, T = 5469: ≈ 28)",
        paper="Haddadpour et al. 2019, poster: τ = O(T^{2/3}/(p^{1/3}ΔF^{1/3})) [quoted]; "
              "arithmetic derived",
        measured=f"rounds counted by the engine at T = {T}: " + ", ".join(
            f"p={r['p']}: {r['rounds']:.0f} vs (pT)^(1/3) = {r['(pT)^(1/3)']:.1f}"
            for r in rows) + f"; poster example τ = {poster_tau} → {poster_rounds} rounds; "
            f"sympy from the bound: rounds ∝ {sym}",
        verdict="agrees" if ok1 else "disagrees",
        detail={"rows": rows, "tolerance": f"engine's rounds = T/τ exactly and within "
                                          f"{ROUNDS_TOL:.0%} of (pT)^(1/3) (τ rounded to a "
                                          f"divisor of T)",
                "poster_tau": poster_tau, "poster_rounds": poster_rounds,
                "sympy_scaling_rounds": sym}))

    # claim 2: adaptive reaches comparable error with fewer rounds
    names = list(adaptive)
    const, grow, loss_rule = (adaptive[n] for n in names)
    r_const, r_grow = float(_rounds(const)[-1]), float(_rounds(grow)[-1])
    r_loss = float(_rounds(loss_rule)[-1])
    est, lo, hi = paired_relative_excess(_final_per_seed(grow), _final_per_seed(const))
    pg, pc_ = grow.final.get("predicted"), const.final.get("predicted")
    p_exc = None if pg is None or pc_ is None else pg / pc_ - 1
    if hi <= ERROR_TOL:
        v2 = "agrees"
    elif lo > ERROR_TOL:
        v2 = "disagrees"
    else:
        v2 = "inconclusive"
    claims.append(Claim(
        claim="The growing (adaptive) schedule reaches an error comparable to constant τ₀ with "
              "about 6× fewer rounds (poster: ≈ 10 vs ≈ 60)",
        paper="Haddadpour et al. 2019, poster figure 'Adaptive Synchronization' [quoted]; "
              "schedule τ_i = (1 + iα)τ₀ [quoted, poster and main.py]",
        measured=f"p = {p}, T = {T}, common η_t = 4/(μ(t + {a_common:.0f})): constant τ₀ = "
                 f"{tau0} error {const.final['measured']:.3g} in {r_const:.0f} rounds; "
                 f"growth (α = {float(linear_growth_alpha(T, E, tau0)):.4g}) error "
                 f"{grow.final['measured']:.3g} in {r_grow:.0f} rounds "
                 f"({r_const / r_grow:.1f}× fewer); relative excess {est:+.1%} "
                 f"[{lo:+.1%}, {hi:+.1%}] (paired, 95%); loss-driven rule: "
                 f"{loss_rule.final['measured']:.3g} in {r_loss:.0f} rounds",
        verdict=v2,
        predicted=(predicted_cell(None, None, None, "; ".join(
            f"{n}: {result_reason(r) or 'no prediction'}"
            for n, r in (("growth", grow), ("constant", const))
            if r.final.get("predicted") is None))[0] if p_exc is None else
                   f"growth {pg:.3g} vs constant {pc_:.3g}: relative excess {p_exc:+.1%} "
                   f"(local model)"),
        predicted_ratio=None if pg is None else pg / grow.final["measured"],
        detail={"predicted_excess": p_exc,
                "tolerance": f"agrees iff the 95% upper limit of the relative excess of the "
                             f"growing schedule's mean error is ≤ {ERROR_TOL:.0%}",
                "rounds_constant": r_const, "rounds_growth": r_grow, "rounds_loss": r_loss,
                "rounds_ratio": r_const / r_grow, "excess": [est, lo, hi],
                "periods": linear_growth_periods(T, E, tau0),
                "alpha_growth": float(linear_growth_alpha(T, E, tau0))}))

    # claim 3: the PL bound, one row per run with a bound
    bounded = {**strat, f"constant τ₀ = {tau0} (common η)": const}
    for label, res in bounded.items():
        f = res.final
        info = res.bound_info or {}
        # inconclusive: the theorem's condition on α_PL is not known (PL_RUN.unknown)
        status = claim_status(res.verdict.status)
        terms = info.get("terms", {})
        pcell, pratio = result_prediction(res)
        claims.append(Claim(
            claim=f"E[F(x̄_T)] − F* ≤ the PL bound ({label}, p = {p}, T = {T})",
            paper=PL_PAPER + ("; variable periods: T(τ−1) → Σ τ_i(τ_i−1), a from max τ_i "
                              "(derived)" if info.get("key") == "pl_intervals" else ""),
            measured=f"F(x̄_T) − F* = {f['measured']:.3g} [{f['lower']:.3g}, {f['upper']:.3g}] "
                     f"over {s['seeds']} seeds; bound terms " + ", ".join(
                         f"{k} {v:.3g}" for k, v in terms.items()),
            bound="—" if f["bound"] is None else f"{f['bound']:.4g}",
            verdict=status, tightness=f["tightness"], predicted=pcell, predicted_ratio=pratio,
            detail={"verdict": res.verdict.message, "p_value": res.verdict.p_value,
                    "values": info.get("values"), "bound_key": info.get("key"),
                    "prediction_assumptions": (res.prediction or {}).get("assumptions")}))

    # claim 4: linear speed-up
    finals = {k: [_final_per_seed(speed[k][q]) for q in s["ps"]] for k in speed}
    slopes = {k: loglog_slope(s["ps"], finals[k]) for k in speed}
    sl, slo, shi = slopes["poster τ"]
    v4 = interval_verdict((slo, shi), (-1 - SLOPE_TOL, -1 + SLOPE_TOL))
    sync = slopes["synchronous"]
    pfin = [speed["poster τ"][q].final.get("predicted") for q in s["ps"]]
    p_sl = (None if any(x is None for x in pfin) else
            float(np.polyfit(np.log(s["ps"]), np.log(pfin), 1)[0]))
    pcell4, pratio4 = predicted_cell(p_sl, sl, "local model", fmt=".3f")
    claims.append(Claim(
        claim="Linear speed-up: with τ = T^{2/3}/p^{1/3} the error at fixed T is O(1/(pT)), "
              "slope −1 of ln error against ln p",
        paper="Haddadpour et al. 2019, poster table: rate O(1/(pT)) [quoted]",
        measured=f"T = {T}, p ∈ {s['ps']}: errors " + ", ".join(
            f"{float(np.mean(f)):.3g}" for f in finals["poster τ"]) +
            f"; slope {sl:.3f} [{slo:.3f}, {shi:.3f}] (bootstrap 95%); synchronous reference "
            f"{sync[0]:.3f} [{sync[1]:.3f}, {sync[2]:.3f}]",
        verdict=v4, predicted=f"slope {pcell4}", predicted_ratio=pratio4,
        detail={"predicted_errors": pfin, "predicted_slope": p_sl,
                "tolerance": f"agrees iff the bootstrap interval ⊂ [−1 − {SLOPE_TOL}, "
                             f"−1 + {SLOPE_TOL}]; disagrees iff disjoint from it",
                "slopes": {k: list(v) for k, v in slopes.items()},
                "bound_slope": _bound_slope(s["ps"], speed["poster τ"]),
                "verdicts": {q: speed["poster τ"][q].verdict.status for q in s["ps"]}}))

    figures = [
        _figure_strategies(ctx, strat, p, T),
        _figure_adaptive(ctx, adaptive, p, T),
        _figure_speedup(ctx, s["ps"], speed, finals, slopes, T),
    ]
    data = {
        "settings": {**s, "alpha_pl": alpha, "tau_poster": tau_p, "tau0": tau0,
                     "a_common": a_common, "problem": problem_spec()},
        "constants": consts,
        "strategies": {k: _summary(v) for k, v in strat.items()},
        "adaptive": {k: _summary(v) for k, v in adaptive.items()},
        "speedup": {k: {str(q): _summary(v) for q, v in d.items()} for k, d in speed.items()},
    }
    return Reproduction(NAME, TITLE, PAPER, ctx.scale, claims, figures, data,
                        seconds=time.perf_counter() - t0)


# --- figures ------------------------------------------------------------------------------------
def _curves(ax_it: Any, ax_rd: Any, results: dict[str, Any], with_bound: bool) -> None:
    from empirics.plots import axes, band

    for label, res in results.items():
        k = np.asarray(res.steps, dtype=float)
        pos = k > 0
        band(ax_it, k[pos], res.mean[pos], res.lower[pos], res.upper[pos], label=label)
        color = ax_it.get_lines()[-1].get_color()
        pr = getattr(res, "predicted", None)
        if pr is not None and np.isfinite(pr[pos]).any():
            ax_it.plot(k[pos], pr[pos], "-.", color=color, linewidth=1, alpha=0.9)
        rd = _rounds(res)
        ok = pos & (rd > 0)
        band(ax_rd, rd[ok], res.mean[ok], res.lower[ok], res.upper[ok], label=label, color=color)
        if with_bound and res.bound is not None:
            b = np.asarray(res.bound, dtype=float)
            fin = pos & np.isfinite(b)
            if fin.sum() > 1:
                ax_it.plot(k[fin], b[fin], "--", color=color, linewidth=1)
            elif fin.any():
                ax_it.plot(k[fin], b[fin], "v", color=color)
    axes(ax_it, "iterations t (local steps per worker)", "F(x̄_t) − F*", log="xy")
    axes(ax_rd, "communication rounds", "F(x̄_t) − F*", log="xy")


def _figure_pair(ctx: Context, results: dict[str, Any], name: str, titles: tuple[str, str],
                 caption: str, with_bound: bool) -> Figure:
    """Error against iterations (left) and against rounds (right) for each run in ``results``."""
    from empirics.plots import new_figure

    fig, (ax1, ax2) = new_figure(2)
    _curves(ax1, ax2, results, with_bound=with_bound)
    ax1.set_title(titles[0], fontsize=9)
    ax2.set_title(titles[1], fontsize=9)
    ax2.legend(fontsize=7)
    return ctx.save_figure(fig, name, caption)


def _figure_strategies(ctx: Context, strat: dict[str, Any], p: int, T: int) -> Figure:
    return _figure_pair(
        ctx, strat, "local_pl_strategies",
        (f"PL step size per strategy, p = {p} (dashed/▼: PL bound)", "same runs against rounds"),
        f"Logistic regression, p = {p}, T = {T}: F(x̄_t) − F* (mean and 95% band over seeds) "
        "against iterations and rounds, each strategy with the PL theorem's "
        "η_t = 4/(μ(t + α_PL τ_max + 4)); dashed: the recalled PL bound (low-confidence "
        "constants), ▼: the variable-period bound at T; dash-dot: the predictor (local "
        "model, no sampling).", with_bound=True)


def _figure_adaptive(ctx: Context, adaptive: dict[str, Any], p: int, T: int) -> Figure:
    return _figure_pair(
        ctx, adaptive, "local_pl_adaptive",
        (f"common step size, p = {p}", "against communication rounds"),
        f"Constant τ₀ against the linearly growing and the loss-driven schedules (p = {p}, "
        f"T = {T}, one common η_t): error against iterations and against rounds (mean, 95% "
        "band over seeds); dash-dot: the predictor (local model; the loss-driven schedule "
        "driven by the predicted loss).", with_bound=False)


def _figure_speedup(ctx: Context, ps: list[int], speed: dict[str, dict[int, Any]],
                    finals: dict[str, list[np.ndarray]],
                    slopes: dict[str, tuple[float, float, float]], T: int) -> Figure:
    from empirics.plots import axes, new_figure

    fig, ax = new_figure(1)
    x = np.asarray(ps, dtype=float)
    for k in speed:
        res = [speed[k][q] for q in ps]
        mean = np.array([r.final["measured"] for r in res])
        lo = np.array([r.final["lower"] for r in res])
        hi = np.array([r.final["upper"] for r in res])
        yerr = np.vstack([mean - np.maximum(lo, mean * 1e-3), hi - mean])
        line = ax.errorbar(x, mean, yerr=yerr, marker="o", capsize=3,
                           label=f"{k}: slope {slopes[k][0]:.2f}")
        if k == "poster τ":
            b = np.array([r.final["bound"] or np.nan for r in res], dtype=float)
            ax.plot(x, b, "--", color=line[0].get_color(), label="PL bound (poster τ)")
        pr = np.array([r.final.get("predicted") or np.nan for r in res], dtype=float)
        if np.isfinite(pr).any():
            ax.plot(x, pr, "-.", marker="d", color=line[0].get_color(), alpha=0.8,
                    label=f"{k}: predicted")
    ref = np.mean(finals["poster τ"][0]) * ps[0] / x
    ax.plot(x, ref, ":", color="gray", label="slope −1 reference")
    axes(ax, "workers p", f"F(x̄_T) − F* at T = {T}", log="xy", legend=True)
    return ctx.save_figure(fig, "local_pl_speedup",
            f"Error at T = {T} against the number of workers (log-log; mean and 95% "
            "interval over seeds), τ = T^{2/3}/p^{1/3} and synchronous SGD, with the "
            "recalled PL bound, the predictor (dash-dot diamonds) and a slope −1 reference.")


__all__ = ["NAME", "PAPER", "TITLE", "alpha_pl", "loglog_slope", "paired_relative_excess",
           "problem_spec", "reproduce", "tau_poster"]
