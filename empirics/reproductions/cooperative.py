"""Cooperative SGD (Wang & Joshi, JMLR 22(213), 2021, arXiv:1808.07576): Theorem 1, its
corollaries and Theorem 2 against measured runs of PASGD, D-PSGD and EASGD with m = 16 workers,
each bound inside its own hypotheses, and the claims of the paper's experiments (JMLR
Appendix A, Figs. 3–6) on this reproduction's problems.

The paper's experiments (CIFAR-10 with VGG-16 on 8 workers, JMLR Appendix A) are far beyond
this suite's budget, so the setting is **this reproduction's own**:

* problem: ℓ2-regularised logistic regression (n = 2000 rows, d = 20, l2 = 1e-3; non-linear
  gradients, so τ and ζ leave a trace on the averaged model, unlike a quadratic), with
  ``sampling = "shared"``: every worker draws its samples from all rows, so each stochastic
  gradient is unbiased for ∇F — Theorem 1's i.i.d. assumptions (JMLR §4, Assumptions 3–4) hold
  exactly. A heterogeneous split (``heterogeneity = 1``: each worker's shard has its own labels)
  is the non-IID case of Theorem 2, with κ² from the problem (``constants.kappa2``);
* batch 1 per worker, constant η, K a multiple of every τ of a bound claim, seeds paired across
  configurations (worker i's batches come from the same seed stream), so differences between
  configurations are tested with paired t-tests.

**Step sizes (the η rule of every claim).** Every bound claim runs inside its bound's
hypotheses, with η from ``Bound.largest_eta`` of its *own* bound:

* the Theorem-1/2 sweep — PASGD for every τ (Corollary 2), D-PSGD on every graph (Corollary 3)
  and PASGD on the heterogeneous split (Theorem 2, τ ≤ 8) — shares one η_A = ``FRACTION`` ×
  the smallest of their largest admissible η (at default scale the strictest setting is PASGD
  at τ = 32: η_A L = 0.9 × 0.03125), rounded down to 4 significant digits, so that a sweep
  compares settings at one η;
* EASGD at τ = 4 is run for each α at ``FRACTION`` × its own largest η (eq. 145 at v = 1,
  ζ(W_α)): the α of the grid need η L from 0.0025 to 0.02, so one shared η would leave the
  optimisation term alone in every bound but the strictest's;
* the runs of the previous design at one shared η (0.97 × the largest η of Corollary 2 at
  τ = 16, ηL ≈ 0.061: outside Corollary 3 on the ring, outside eq. 145 for EASGD at τ = 4 and
  outside Corollary 2 at τ = 32) are kept as extra curves without bound verdicts; the claims of
  the paper's experiments (Figs. 3–6: "at one learning rate") and the measured comparison of
  α at m = 16 use them. No bound is evaluated on them.

Measured for a bound: E[(1/K) Σ_{k<K} ‖∇F(u_k)‖²] (u_k the average of the m + v rows, every
step, exact), mean and 95% t-band over seeds, against the bound evaluated with the run's own η,
m, v, τ, ζ(W), K and the problem's exact L, σ², F(x₀) − F*, κ² (:mod:`empirics.experiment`),
with its slack split at Lemma 2 (JMLR eq. 38, with the measured consensus distance):
tightness = (Lemma 2 ÷ measured) × (bound ÷ Lemma 2).

Claims of the paper's experiments (JMLR Appendix A, captions paraphrased in our notes of the
JMLR text), measured on the same logistic regression at the shared η:

* Fig. 3 — error floor (mean of F(u_k) − F* over the second half of the run) at (τ, ζ) ∈
  {(1, 0), (1, 0.33), (2, 0), (10, 0), (1, 0.99)}; ζ > 0 by D-PSGD on the complete graph with
  lazy weights W = s·I + (1 − s)J, whose ζ is s exactly. The ordering is tested against the
  network-error factor (1+ζ²)/(1−ζ²)·τ − 1 by :func:`empirics.stats.order_test` (paired
  t-tests over seeds for every pair, Bonferroni; Spearman's ρ with its exact permutation p);
* Fig. 4 — EASGD with m = 8, τ = 4, α ∈ {0.01, 0.9/m, α* = 2/(m+2), 2/(m+1)}: training loss and
  the worker–centre discrepancy Σ_i ‖x_i − u‖² over all m + 1 rows (records' ``consensus``),
  averaged over the second half of the run;
* Figs. 5–6 — wall-clock from the toolkit's runtime model (:mod:`theory.bounds.runtime`):
  a run's wall-clock after k steps is k·Y + rounds(k)·D (Y per local step, D per
  communication round; the inverse of ``iterations_within``), with the stated
  ``RUNTIME_Y`` = ``RUNTIME_D`` = 1 (a round costs as much as a local step: our choice, not a
  measurement and not the paper's hardware). Fig. 5: PASGD at τ ∈ {1, 4, 32}, at the shared η
  and at η_A (two learning rates, as the paper's two), training loss = mean of F(u_k) − F* over
  k ≥ 0.9K. Fig. 6: τ ∈ {1, 10} × ζ ∈ {0, 0.75} at the shared η, runs of 512 steps recorded
  every 4 (the time to a target is read from the records); the target is ``TARGET_FACTOR`` ×
  the highest floor among the four settings, so every setting reaches it. The paper's "about
  4×" depends on its hardware's D/Y: the verdict is on "less wall-clock", and the D/Y that
  would give 4× is reported.

Diagnostic (derived here, not in the paper): under additive noise of variance σ² per worker and
ignoring gradient differences between workers, the time-averaged consensus distance
Σ_i ‖x_i − u‖² is η²σ²(m−1)(τ−1)/2 for PASGD and η²σ² Σ_{j≥2} λ_j²/(1−λ_j²) for D-PSGD, so the
two are equal at τ_spec = 1 + (2/(m−1)) Σ_{j≥2} λ_j²/(1−λ_j²). With every |λ_j| replaced by ζ
this is the bound's τ_eq = (1+ζ²)/(1−ζ²); the bound charges every mode at the slowest rate.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from empirics.reproductions.base import (
    Claim,
    Context,
    Figure,
    Reproduction,
    claim_status,
    effect_verdict,
    predicted_cell,
    result_prediction,
    result_reason,
)
from empirics.stats import ORDER_RULE, mean_band, mean_ci, order_test, paired_p

NAME = "cooperative"
TITLE = ("Cooperative SGD: bounds inside their hypotheses (m = 16), the slack at Lemma 2, and "
         "the paper's Appendix-A claims")
PAPER = ("Wang & Joshi, Cooperative SGD, JMLR 22(213), 2021 (arXiv:1808.07576) — the paper's "
         "CIFAR-10 experiments are not rerun; setting designed here")
FIG_PAPER = ("Wang & Joshi, Cooperative SGD, JMLR 2021, Appendix A, Fig. {n} (caption "
             "paraphrased from the JMLR text: quoted paraphrase)")

M = 16                     #: workers
LEVEL = 0.05               #: test level (one-sided) and 1 − band coverage
TAU_APPLICABLE = 16        #: the shared η: 0.97 × the largest η of Corollary 2 at this τ
FRACTION = 0.9             #: bound runs: this fraction of the largest admissible η
CROSS_TOL = 2.0            #: measured τ_eq "agrees" if bracketed within [τ_eq/2, 2·τ_eq]
TOPOLOGIES = ("complete", "hypercube", "torus", "ring")
RUNTIME_Y = 1.0            #: runtime model: compute time of one local step (the time unit)
RUNTIME_D = 1.0            #: runtime model: time of one communication round (our choice)
TARGET_FACTOR = 1.5        #: Fig. 6 target: this × the highest floor among its settings
FLOOR_FROM = 0.5           #: a floor is the mean over records k ≥ FLOOR_FROM·K
FINAL_FROM = 0.9           #: "after the same number of epochs": mean over records k ≥ 0.9·K
PAPER_SPEEDUP = 4.0        #: Fig. 6's "about 4× less wall-clock time"


@dataclass(frozen=True)
class Setting:
    """Sizes per scale. taus: PASGD periods (i.i.d.); taus_het: heterogeneous split at the
    shared η (extra curve); taus_noniid: heterogeneous split under Theorem 2; topologies:
    D-PSGD graphs; alpha_factors: EASGD α as multiples of α* (values ≥ 2/(m+1) are dropped;
    the sentinel ``"mid"`` is the midpoint of α* and 2/(m+1)); fig3: the (τ, ζ) of JMLR
    Fig. 3; fig4_m: workers of the EASGD experiment (JMLR Fig. 4); fig5_taus: the τ of JMLR
    Fig. 5 (taken from ``taus``); fig6_taus, fig6_zetas: JMLR Fig. 6, run for fig6_steps
    steps recorded every fig6_record_every (the time to a target is read from the records)."""

    n_samples: int
    d: int
    steps: int
    seeds: int
    record_every: int
    taus: tuple[int, ...]
    taus_het: tuple[int, ...]
    taus_noniid: tuple[int, ...]
    topologies: tuple[str, ...]
    alpha_factors: tuple[Any, ...]
    fig5_taus: tuple[int, ...]
    easgd_tau: int = 4
    curve_tau: int = 8
    fig3: tuple[tuple[int, float], ...] = ((1, 0.0), (1, 0.33), (2, 0.0), (10, 0.0), (1, 0.99))
    fig4_m: int = 8
    fig6_taus: tuple[int, ...] = (1, 10)
    fig6_zetas: tuple[float, ...] = (0.0, 0.75)
    fig6_steps: int = 512
    fig6_record_every: int = 4


def setting(scale: str) -> Setting:
    """The sizes of ``scale`` (smoke: ≈ 15 s; default: ≈ 1.5 minutes on 2 cores; full: ≈ 8×
    default). Every τ of a bound claim divides K (Theorem 1 needs a constant period)."""
    if scale == "smoke":
        return Setting(256, 5, 128, 2, 9, (1, 16), (16,), (4,), ("complete", "ring"),
                       (0.25, 1.0), (1, 16), fig6_steps=60, fig6_record_every=2)
    if scale == "default":
        return Setting(2000, 20, 2048, 6, 25, (1, 2, 4, 8, 16, 32), (1, 2, 4, 8, 16),
                       (1, 2, 4, 8), TOPOLOGIES, (0.125, 0.25, 0.5, 1.0, "mid"), (1, 4, 32))
    if scale == "full":
        return Setting(2000, 20, 4096, 12, 51, (1, 2, 4, 8, 16, 32, 64),
                       (1, 2, 4, 8, 16, 32), (1, 2, 4, 8), TOPOLOGIES,
                       (0.125, 0.25, 0.5, 0.75, 1.0, "mid"), (1, 4, 64), fig6_steps=1024)
    raise ValueError(f"scale must be 'smoke', 'default' or 'full' (got {scale!r})")


def pasgd_eta_max(L: float, tau: int) -> float:
    """Largest η with ηL + η²L²τ(τ−1) ≤ 1 (the condition of Corollary 2, JMLR; quoted):
    x = ηL solves τ(τ−1)x² + x − 1 = 0, x = (√(1 + 4τ(τ−1)) − 1)/(2τ(τ−1)); x = 1 at τ = 1."""
    c = tau * (tau - 1)
    x = 1.0 if c == 0 else (math.sqrt(1 + 4 * c) - 1) / (2 * c)
    return x / L


def round_down(x: float, digits: int = 4) -> float:
    """``x`` > 0 rounded down to ``digits`` significant digits (an η below an admissible η stays
    admissible)."""
    e = math.floor(math.log10(x)) - digits + 1
    return float(f"{math.floor(x / 10.0**e) * 10.0**e:.{digits}g}")


def sweep_eta(rows: list[tuple[str, Any, dict[str, float]]], fraction: float = FRACTION
              ) -> tuple[float, str, dict[str, float]]:
    """(η, strictest setting, largest η per setting) for settings ``rows`` = (label, bound,
    values without η): η = ``fraction`` × the smallest ``Bound.largest_eta(values)`` (the
    strictest setting's), rounded down to 4 significant digits — inside every bound's
    learning-rate conditions."""
    table = {label: float(b.largest_eta(vals)) for label, b, vals in rows}
    strictest = min(table, key=table.get)
    return round_down(fraction * table[strictest]), strictest, table


def network_factor(tau: float, zeta: float) -> float:
    """(1+ζ²)/(1−ζ²)·τ − 1: the factor of η²L²σ² in Theorem 1's network-error term (JMLR
    eq. 17)."""
    return (1 + zeta * zeta) / (1 - zeta * zeta) * tau - 1


def wall_clock(steps: Any, rounds: Any, Y: float = RUNTIME_Y, D: float = RUNTIME_D
               ) -> np.ndarray:
    """Wall-clock of k steps with r communication rounds under the runtime model of
    :mod:`theory.bounds.runtime` (Y per local step, D per round): k·Y + r·D. For τ | k,
    r = k/τ and this is k(Y + D/τ), the inverse of ``iterations_within``."""
    return np.asarray(steps, float) * Y + np.asarray(rounds, float) * D


def spectral_crossover(W: Any) -> float:
    """τ_spec = 1 + (2/(m−1)) Σ_{j≥2} λ_j²/(1−λ_j²) (derived here; see the module docstring)."""
    lam = np.sort(np.linalg.eigvalsh(np.asarray(W.W, dtype=float)))[::-1][1:]
    return float(1 + 2 * np.mean(lam**2 / (1 - lam**2)))


def _problem(s: Setting, het: bool = False) -> dict[str, Any]:
    base = {"kind": "logistic_regression", "n_samples": s.n_samples, "d": s.d, "l2": 1e-3,
            "seed": 0}
    return {**base, "heterogeneity": 1.0} if het else {**base, "sampling": "shared"}


def _spec(ctx: Context, s: Setting, name: str, algorithm: dict[str, Any], eta: float,
          het: bool = False, *, m: int = M, bound: Any = "auto", grad_every: int = 1,
          metric: str = "auto", steps: int | None = None, record_every: int | None = None
          ) -> Any:
    from empirics.experiment import ExperimentSpec

    return ExperimentSpec(name=name, problem=_problem(s, het), algorithm={"m": m, **algorithm},
                          lr=eta, steps=steps or s.steps, batch_size=1, seeds=s.seeds,
                          device=ctx.device, dtype="float64",
                          record_every=record_every or s.record_every, grad_every=grad_every,
                          level=LEVEL, bound=bound, metric=metric)


def _run(ctx: Context, spec: Any) -> Any:
    from empirics.experiment import run_experiment

    return run_experiment(spec, progress=ctx.progress, cache=ctx.cache)


@dataclass
class _Runs:
    """The runs of one reproduction, by name: a claim that needs a run another claim made gets
    the same result (and the run cache serves reruns)."""

    ctx: Context
    s: Setting
    done: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str, algorithm: dict[str, Any], eta: float, **kw: Any) -> Any:
        if name not in self.done:
            self.done[name] = _run(self.ctx, _spec(self.ctx, self.s, name, algorithm, eta, **kw))
        return self.done[name]

    def extra(self, name: str, algorithm: dict[str, Any], eta: float, **kw: Any) -> Any:
        """A run without a bound (an extra curve, or a claim about measurements only)."""
        return self.get(name, algorithm, eta, bound="none", metric="grad_norm2_running", **kw)

    def bare(self, name: str, algorithm: dict[str, Any], eta: float, **kw: Any) -> Any:
        """A run without a bound nor the per-step gradient norm (records only: cheaper)."""
        return self.get(name, algorithm, eta, bound="none", grad_every=0, **kw)


def _final(res: Any) -> np.ndarray:
    return np.asarray(res.per_seed[:, -1], dtype=float)


def _consensus(res: Any) -> float:
    """Mean over seeds and recorded steps k > 0 of Σ_i ‖x_i − u_k‖² (all m + v rows)."""
    return float(np.mean([np.mean(np.asarray(r.consensus, float)[np.asarray(r.step) > 0])
                          for r in res.runs]))


def _f_star(res: Any) -> float:
    return float(res.constants["F_star"]["value"])


def tail_mean(res: Any, column: str, start: float = FLOOR_FROM) -> np.ndarray:
    """Per seed: the mean of a record column over the records with k ≥ start·K (``"loss"`` is
    F(u_k) − F*, ``"consensus"`` is Σ_i ‖x_i − u_k‖² over the m + v rows)."""
    out = []
    for r in res.runs:
        k = np.asarray(r.step, float)
        y = np.asarray(getattr(r, column), float)
        if column == "loss":
            y = y - _f_star(res)
        sel = k >= start * res.spec["steps"]
        out.append(float(np.mean(y[sel])) if sel.any() else math.nan)
    return np.asarray(out)


def first_reach(steps: Any, values: Any, target: float) -> int | None:
    """Index of the first record whose value is ≤ ``target`` (None if none)."""
    hit = np.nonzero(np.asarray(values, float) <= target)[0]
    return int(hit[0]) if hit.size else None


def _summary(res: Any) -> dict[str, Any]:
    f = res.final
    return {"name": res.spec["name"], "eta": res.spec["lr"], "measured": f["measured"],
            "lower": f["lower"], "upper": f["upper"], "bound": f["bound"],
            "tightness": f["tightness"], "lemma2": f.get("lemma2"),
            "slack_descent": f.get("slack_descent"), "slack_consensus": f.get("slack_consensus"),
            "verdict": res.verdict.status, "verdict_message": res.verdict.message,
            "p_value": res.verdict.p_value, "consensus": _consensus(res),
            "per_seed_final": _final(res).tolist(),
            "bound_terms": (res.bound_info or {}).get("terms"),
            "predicted": f.get("predicted"), "predicted_ratio": f.get("predicted_ratio")}


def _extra_summary(res: Any) -> dict[str, Any]:
    f = res.final
    return {"name": res.spec["name"], "eta": res.spec["lr"], "measured": f["measured"],
            "lower": f["lower"], "upper": f["upper"], "consensus": _consensus(res),
            "per_seed_final": _final(res).tolist(), "verdict": "no bound (extra curve)",
            "predicted": f.get("predicted")}


def _bound_claim(label: str, res: Any, paper: str, eta_rule: str = "") -> Claim:
    """A bound claim: holds / violated inside the bound's hypotheses (with the slack factors),
    "not applicable" naming the hypothesis that fails and its value."""
    f = res.final
    v = res.verdict
    st = claim_status(v.status)
    b = "—" if f["bound"] is None else f"{f['bound']:.4g}"
    info = res.bound_info or {}
    tested = st in ("holds", "violated")
    pcell, pratio = result_prediction(res)
    return Claim(
        claim=f"{label}: E[(1/K)Σ‖∇F(u_k)‖²] ≤ bound at every recorded K",
        paper=paper,
        measured=(f"{f['measured']:.4g} [{f['lower']:.4g}, {f['upper']:.4g}] at K = {f['step']} "
                  f"({v.n_seeds} seeds)"),
        bound=b, verdict=st, tightness=f["tightness"] if tested else None,
        slack_descent=f.get("slack_descent") if tested else None,
        slack_consensus=f.get("slack_consensus") if tested else None,
        predicted=pcell, predicted_ratio=pratio,
        detail={"message": v.message, "p_value": v.p_value, "eta": res.spec["lr"],
                "eta_rule": eta_rule, "bound_key": info.get("key"),
                "values": info.get("values"), "bound_terms": info.get("terms"),
                "lemma2": f.get("lemma2"), "failed": list(v.failed),
                "prediction_assumptions": (res.prediction or {}).get("assumptions")})


# ---------------------------------------------------------------------------------------------
def reproduce(ctx: Context) -> Reproduction:
    """Run the experiments (bounds vs τ, ζ, α and on a heterogeneous split; the PASGD/D-PSGD
    crossover; the claims of JMLR Figs. 3–6) and return the claims, figures and data. Runs
    single-threaded (restored after)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # d ≤ 20: intra-op threads cost more than they gain
    try:
        return _reproduce(ctx)
    finally:
        torch.set_num_threads(threads)


def _reproduce(ctx: Context) -> Reproduction:
    from empirics.experiment import build_mixing, build_problem
    from theory.bounds.cooperative import (
        cooperative_noniid_bound,
        dpsgd_bound,
        easgd_bound,
        pasgd_bound,
    )
    from theory.symbols import keyword

    t0 = time.perf_counter()
    s = setting(ctx.scale)
    runs = _Runs(ctx, s)
    claims: list[Claim] = []
    data: dict[str, Any] = {"setting": s.__dict__.copy(), "m": M, "level": LEVEL,
                            "fraction": FRACTION}

    # --- constants, the shared η of the previous design, and η_A of the Theorem-1/2 sweep ---
    c = build_problem(_spec(ctx, s, "constants", {"name": "synchronous"}, 0.1)).constants
    L = c.L.value
    eta = math.floor(0.97 * pasgd_eta_max(L, TAU_APPLICABLE) * 1000) / 1000
    data["constants"] = {"L": L, "sigma2": c.sigma2.value, "F_gap": c.initial_gap,
                         "zeta2_x0": None if c.zeta2_x0 is None else c.zeta2_x0.value}
    data["eta"] = eta
    data["eta_shared_rule"] = (f"the largest multiple of 0.001 below 0.97 × the largest η of "
                               f"Corollary 2 at τ = {TAU_APPLICABLE}")
    data["eta_max_tau16"] = pasgd_eta_max(L, TAU_APPLICABLE)
    Ws = {t: build_mixing(M, t) for t in s.topologies}
    zetas = {t: float(Ws[t].zeta) for t in s.topologies}
    rows = [(f"PASGD τ={t} (Corollary 2)", pasgd_bound(), {"L": L, "tau": t}) for t in s.taus]
    rows += [(f"D-PSGD {t}, ζ={zetas[t]:.4f} (Corollary 3)", dpsgd_bound(),
              {"L": L, "zeta": zetas[t]}) for t in s.topologies]
    rows += [(f"heterogeneous PASGD τ={t} (Theorem 2)", cooperative_noniid_bound(),
              {"L": L, "m": M, "v": 0, "tau": t, "zeta": 0.0}) for t in s.taus_noniid]
    eta_a, strictest, eta_table = sweep_eta(rows)
    rule_a = (f"η = η_A = {eta_a:.4g} ({FRACTION:g} × the largest admissible η of the "
              f"sweep's strictest setting, {strictest})")
    data["eta_A"] = eta_a
    data["eta_A_rule"] = rule_a
    data["eta_A_largest_per_setting"] = eta_table

    # --- 1. PASGD vs τ at η_A (bounds), at the shared η (extra curves) -----------------------
    pas = {t: runs.get(f"pasgd_etaA_tau{t}", {"name": "pasgd", "tau": t}, eta_a, bound="pasgd")
           for t in s.taus}
    pas_x = {t: runs.extra(f"pasgd_tau{t}", {"name": "pasgd", "tau": t}, eta) for t in s.taus}
    data["pasgd"] = {str(t): _summary(r) for t, r in pas.items()}
    data["pasgd_shared_eta"] = {str(t): _extra_summary(r) for t, r in pas_x.items()}
    for t, r in pas.items():
        claims.append(_bound_claim(
            f"PASGD A(τ={t}, J, 0), i.i.d., {rule_a}", r,
            "Wang & Joshi, JMLR Corollary 2 (eq. 24) with its condition ηL + η²L²τ(τ−1) ≤ 1 "
            "(quoted)", rule_a))
    claims.append(_slope_claim(s, pas, eta_a))

    # --- 2. heterogeneous split: Theorem 2 at η_A; the shared-η curve as an extra -----------
    het = {t: runs.get(f"pasgd_het_etaA_tau{t}", {"name": "pasgd", "tau": t}, eta_a, het=True,
                       bound="cooperative-noniid") for t in s.taus_noniid}
    het_x = {t: runs.extra(f"pasgd_het_tau{t}", {"name": "pasgd", "tau": t}, eta, het=True)
             for t in s.taus_het}
    data["pasgd_heterogeneous"] = {str(t): _summary(r) for t, r in het.items()}
    data["pasgd_heterogeneous_shared_eta"] = {str(t): _extra_summary(r)
                                              for t, r in het_x.items()}
    for t, r in het.items():
        k2 = (r.bound_info or {}).get("values", {}).get("kappa2")
        claims.append(_bound_claim(
            f"PASGD A(τ={t}, J, 0), heterogeneous split (κ² = "
            f"{'?' if k2 is None else f'{k2:.3g}'}), {rule_a}", r,
            "Wang & Joshi, JMLR Theorem 2 (eqs. 20–21, non-IID) with its conditions "
            "η_eff L ≤ 1 and C ≤ 1/2 (quoted)", rule_a))

    # --- 3. D-PSGD vs ζ at η_A (bounds), at the shared η (extra curves) ----------------------
    dps = {t: runs.get(f"dpsgd_etaA_{t}", {"name": "dpsgd", "topology": t}, eta_a,
                       bound="dpsgd") for t in s.topologies}
    dps_x = {t: runs.extra(f"dpsgd_{t}", {"name": "dpsgd", "topology": t}, eta)
             for t in s.topologies}
    data["dpsgd"] = {t: {**_summary(r), "zeta": zetas[t], "tau_spec": spectral_crossover(Ws[t])}
                     for t, r in dps.items()}
    data["dpsgd_shared_eta"] = {t: {**_extra_summary(r), "zeta": zetas[t]}
                                for t, r in dps_x.items()}
    for t, r in dps.items():
        claims.append(_bound_claim(
            f"D-PSGD A(1, W_{t}, 0), ζ = {zetas[t]:.4f}, {rule_a}", r,
            "Wang & Joshi, JMLR Corollary 3 (eq. 27) with its condition (quoted)", rule_a))
    claims.append(_zeta_claim(s, dps, zetas))

    # --- 4. crossover τ_eq = (1+ζ²)/(1−ζ²) on the ring at η_A --------------------------------
    cross: dict[str, Any] = {}
    if "ring" in dps:
        cross = _crossover_claims(s, pas, dps, Ws, eta_a, claims)
    data["crossover"] = cross

    # --- 4b. the predictor's effects and a practitioner's choices under a budget ------------
    _prediction_claims(s, pas, het, dps, zetas, cross, claims, data)
    _budget_claims(ctx, s, pas, dps, Ws, eta_a, claims, data)

    # --- 5. EASGD vs α: each bound at its own η; the shared-η runs as extra curves ----------
    eas, eas_x, a_star, a_top = _easgd(runs, s, eta, L, claims, data, easgd_bound)

    # --- 6.–9. the claims of the paper's experiments (JMLR Appendix A, Figs. 3–6) -------------
    fig3 = _fig3_claims(runs, s, eta, pas_x, claims, data)
    fig4 = _fig4_claims(runs, s, eta, claims, data)
    fig5 = _fig5_claims(s, {eta: pas_x, eta_a: pas}, claims, data)
    fig6 = _fig6_claims(runs, s, eta, pas_x, claims, data)

    # --- figures -----------------------------------------------------------------------------
    figures = [
        _fig_tau(ctx, s, pas, pas_x, het, het_x, eta, eta_a),
        _fig_zeta(ctx, s, dps, dps_x, zetas, pas, cross, eta, eta_a),
        _fig_alpha(ctx, eas, eas_x, a_star, a_top, s.easgd_tau, eta),
        _fig_curve(ctx, pas[s.curve_tau] if s.curve_tau in pas else pas[s.taus[-1]]),
        _fig_slack(ctx, claims),
        _fig_appendix(ctx, s, fig3, fig4, fig5, fig6),
    ]
    data["bound_symbols"] = sorted(keyword(x) for x in pasgd_bound().free_symbols)
    data["runtime_model"] = {"Y": RUNTIME_Y, "D": RUNTIME_D,
                             "wall_clock": "k·Y + rounds(k)·D (theory.bounds.runtime)"}
    return Reproduction(NAME, TITLE, PAPER, ctx.scale, claims, figures, data,
                        seconds=time.perf_counter() - t0)


# --- the Theorem-1 sweep's qualitative claims ----------------------------------------------------
def _slope_claim(s: Setting, pas: dict, eta_a: float) -> Claim:
    """The PASGD floor is affine and increasing in τ (Corollary 2): per-seed slopes, paired."""
    x = np.asarray(s.taus, float)
    Yv = np.stack([_final(pas[t]) for t in s.taus], axis=1)           # seeds × τ
    seed_slopes = np.asarray([np.polyfit(x, y, 1)[0] for y in Yv])
    _, p_up, p_down = paired_p(seed_slopes, np.zeros_like(seed_slopes))
    means = Yv.mean(0)
    fit = np.polyfit(x, means, 1)
    r2 = float(1 - np.sum((means - np.polyval(fit, x))**2) / np.sum((means - means.mean())**2))
    taus_a = [t for t in s.taus if pas[t].final["bound"] is not None]
    xb = np.asarray(taus_a, float)
    bvals = np.asarray([pas[t].final["bound"] for t in taus_a], float)
    b_slope = float(np.polyfit(xb, bvals, 1)[0]) if len(xb) > 1 else math.nan
    m_slope = float(np.polyfit(xb, [pas[t].final["measured"] for t in taus_a], 1)[0]) \
        if len(xb) > 1 else math.nan
    rise = means[-1] / means[0] - 1
    v = "agrees" if p_up < LEVEL else ("disagrees" if p_down < LEVEL else "inconclusive")
    p_slope = _predicted_slope(pas, taus_a)
    pcell, pratio = predicted_cell(p_slope, m_slope, "local model")
    return Claim(
        claim=f"PASGD error floor ηLσ²/m + η²L²σ²(τ−1) is affine and increasing in τ "
              f"(η_A = {eta_a:.4g}, inside Corollary 2 for every τ)",
        paper="JMLR Corollary 2, eq. 24 (quoted): floor affine in τ",
        measured=(f"slope {float(np.mean(seed_slopes)):.3g} per unit τ (one-sided p = "
                  f"{p_up:.2g}, {len(seed_slopes)} paired seeds); +{100 * rise:.1f}% from τ = "
                  f"{s.taus[0]} to {s.taus[-1]}; linear fit R² = {r2:.3f}"),
        bound=f"slope η²L²σ² = {b_slope:.3g} per unit τ",
        verdict=v,
        tightness=(b_slope / m_slope if m_slope > 0 else None),
        predicted=("slope " + pcell) if p_slope is not None else pcell, predicted_ratio=pratio,
        detail={"seed_slopes": seed_slopes.tolist(), "p_increasing": p_up,
                "p_decreasing": p_down, "r2_linear": r2, "bound_slope": b_slope,
                "measured_slope": m_slope, "taus_with_bound": taus_a, "eta": eta_a,
                "tightness_meaning": "bound slope ÷ measured slope",
                "loglog_slope_measured": float(np.polyfit(np.log(x), np.log(means), 1)[0])})


def _value(row: dict) -> str:
    """A budget table row's predicted value, or why there is none."""
    if row.get("predicted") is None:
        return "out of regime" + (f" ({row['reason']})" if row.get("reason") else "")
    return f"{row['predicted']:.4g}"


def _ratio(row: dict, measured: float) -> float | None:
    """predicted ÷ measured of a budget table row (None out of regime)."""
    v = row.get("predicted")
    return None if v is None or not measured else v / measured


def _predicted_slope(res: dict, taus: list[int]) -> float | None:
    """Least-squares slope of the predicted final metric against τ (None if one is missing)."""
    y = [res[t].final.get("predicted") for t in taus]
    if len(taus) < 2 or any(v is None for v in y):
        return None
    return float(np.polyfit(np.asarray(taus, float), np.asarray(y, float), 1)[0])


def _slope_ci(res: dict, taus: list[int]) -> tuple[float, tuple[float, float]]:
    """Measured slope of the final metric against τ and its 95% t-interval over paired seeds
    (per-seed least-squares slopes)."""
    x = np.asarray(taus, float)
    Y = np.stack([_final(res[t]) for t in taus], axis=1)
    sl = np.asarray([np.polyfit(x, y, 1)[0] for y in Y])
    m, _, lo, hi = mean_ci(sl, LEVEL)  # the mean of the slopes = the slope of the mean
    return float(m), (float(lo), float(hi))


def _prediction_claims(s: Setting, pas: dict, het: dict, dps: dict, zetas: dict,
                       cross: dict, claims: list[Claim], data: dict[str, Any]) -> None:
    """The predictor's effects against the measured ones (issue 19's targets): the τ-slope of
    the PASGD floor (i.i.d., heterogeneous), the D-PSGD floors and their increase across ζ,
    the PASGD/D-PSGD crossover — each "agrees" when the measurement's interval lies within 2×
    of the prediction, "disagrees" when it lies outside, "inconclusive" otherwise
    (:func:`effect_verdict`); the D-PSGD floors by the same rule per topology."""
    rule = ("agrees iff the measured interval lies in [predicted/2, 2·predicted]; disagrees "
            "iff it is disjoint from it; inconclusive otherwise (the measurement cannot tell)")
    pred_paper = ("prediction (this toolkit, derived: empirics.predict, the local model of "
                  "docs/predict.md) against the measurement; target: predicted ÷ measured ∈ "
                  "[0.5, 2]")
    out: dict[str, Any] = {}
    for label, res, taus in (("i.i.d.", pas, list(s.taus)),
                             ("heterogeneous split", het, list(s.taus_noniid))):
        if len(taus) < 2:
            continue
        m, ci = _slope_ci(res, taus)
        p_ = _predicted_slope(res, taus)
        cell, ratio = predicted_cell(p_, m, "local model", fmt=".3g")
        v = effect_verdict(p_, m, ci)
        out[label] = {"measured": m, "ci": ci, "predicted": p_, "ratio": ratio}
        claims.append(Claim(
            claim=f"the predictor gets the τ-slope of the PASGD floor ({label}, η_A, τ ∈ "
                  f"{taus}) within 2×",
            paper=pred_paper,
            measured=f"slope {m:.3g} per unit τ, 95% interval [{ci[0]:.3g}, {ci[1]:.3g}] "
                     f"(per-seed slopes, {len(_final(res[taus[0]]))} paired seeds)",
            predicted=f"slope {cell}", predicted_ratio=ratio, verdict=v,
            detail={"measured_slope": m, "measured_ci": list(ci), "predicted_slope": p_,
                    "predicted_finals": [res[t].final.get("predicted") for t in taus],
                    "measured_finals": [res[t].final["measured"] for t in taus],
                    "rule": rule}))
    order = sorted(dps, key=lambda t: zetas[t])
    ratios = {t: dps[t].final.get("predicted_ratio") for t in order}
    each = [effect_verdict(dps[t].final.get("predicted"), dps[t].final["measured"],
                           (dps[t].final["lower"], dps[t].final["upper"])) for t in order]
    claims.append(Claim(
        claim="the predictor gets the D-PSGD floors across ζ within 2× (η_A)",
        paper=pred_paper,
        measured="; ".join(f"{t} (ζ={zetas[t]:.3f}): {dps[t].final['measured']:.5g}"
                           for t in order),
        predicted="; ".join(
            f"{t}: " + predicted_cell(dps[t].final.get("predicted"), None, None,
                                      result_reason(dps[t]), ".5g")[0] for t in order),
        predicted_ratio=min((r for r in ratios.values() if r is not None), default=None,
                            key=lambda r: -abs(math.log(r))),
        verdict=_combine(each),
        detail={"ratios": ratios, "verdicts": dict(zip(order, each, strict=True)),
                "rule": rule + "; per topology, over the seeds' 95% interval of its floor; "
                               "agrees iff every topology agrees (the ratio column shows the "
                               "worst)"}))
    lo_t, hi_t = order[0], order[-1]
    d_meas = _final(dps[hi_t]) - _final(dps[lo_t])
    pd_ = (None if dps[hi_t].final.get("predicted") is None or
           dps[lo_t].final.get("predicted") is None else
           dps[hi_t].final["predicted"] - dps[lo_t].final["predicted"])
    md, _, d_lo, d_hi = (float(v) for v in mean_ci(d_meas, LEVEL))
    cell, ratio = predicted_cell(pd_, md, "local model", fmt=".3g")
    claims.append(Claim(
        claim=f"the predictor gets the increase of the D-PSGD floor from ζ = "
              f"{zetas[lo_t]:.3g} ({lo_t}) to ζ = {zetas[hi_t]:.3g} ({hi_t}) within 2× (η_A)",
        paper=pred_paper,
        measured=f"{md:.3g}, 95% interval [{d_lo:.3g}, {d_hi:.3g}] ({len(d_meas)} paired "
                 f"seeds)",
        predicted=cell, predicted_ratio=ratio, verdict=effect_verdict(pd_, md, (d_lo, d_hi)),
        detail={"measured": md, "ci": [d_lo, d_hi], "predicted": pd_, "rule": rule}))
    out["zeta_increase"] = {"measured": md, "ci": [d_lo, d_hi], "predicted": pd_}
    if cross:
        rows = cross["rows"]
        taus = np.asarray([r["tau"] for r in rows], float)
        ring_p = dps["ring"].final.get("predicted")
        pdiff = [None if pas[int(t)].final.get("predicted") is None or ring_p is None else
                 pas[int(t)].final["predicted"] - ring_p for t in taus]
        p_cross = None if any(x is None for x in pdiff) else _crossing(taus, np.asarray(pdiff))
        est = cross["estimate"]
        lo, hi = cross["bracket"]
        ci = (lo if lo is not None else 1.0, hi if hi is not None else math.inf)
        cell, ratio = predicted_cell(p_cross, est, "local model", fmt=".3g")
        cross["predicted"] = p_cross
        br = f"({'<1' if lo is None else lo}, {'>' + str(s.taus[-1]) if hi is None else hi})"
        claims.append(Claim(
            claim="the predictor gets the PASGD/D-PSGD (ring) crossover τ within 2× (η_A)",
            paper=pred_paper,
            measured=f"measured errors cross at τ ≈ {_fmt(est)} (significance bracket {br})",
            predicted=("no crossing on the grid (predicted)" if p_cross is None
                       else f"τ ≈ {cell}"),
            predicted_ratio=ratio, bound=f"τ_eq = {cross['tau_eq']:.2f}",
            verdict=effect_verdict(p_cross, est, ci) if est is not None else "inconclusive",
            detail={"predicted_differences": pdiff, "predicted_crossing": p_cross,
                    "measured_crossing": est, "bracket": [lo, hi],
                    "rule": rule.replace("interval", "significance bracket")}))
        out["crossover"] = {"measured": est, "predicted": p_cross, "bound": cross["tau_eq"]}
    data["prediction_effects"] = out


def _budget_claims(ctx: Context, s: Setting, pas: dict, dps: dict, Ws: dict, eta_a: float,
                   claims: list[Claim], data: dict[str, Any]) -> None:
    """What a practitioner asks of the theory: the τ (PASGD) and the topology (D-PSGD) with the
    smallest error under a wall-clock budget (runtime model: Y per step, D per round; a round
    on W costs D·max degree). The predictor's choice (:func:`empirics.predict.best_tau`,
    :func:`~empirics.predict.best_topology`), the bound's (AdaComm's τ*,
    :func:`theory.bounds.runtime.best_topology_and_tau`) and the measured argmin of the sweep
    (the running average at the last record within each budget), at η_A."""
    from empirics.predict import best_tau, best_topology

    Y, D = RUNTIME_Y, RUNTIME_D
    paper = ("the runtime model of theory.bounds.runtime (derived: AdaComm's model, Wang & "
             "Joshi 2019, recalled); the predictor's and the bound's choices against the "
             "measured sweep")

    def at(res: Any, K: int) -> tuple[float, np.ndarray]:
        k = np.asarray(res.steps)
        j = int(np.nonzero(k <= K)[0][-1])
        return float(res.mean[j]), np.asarray(res.per_seed[:, j], float)

    out: dict[str, Any] = {}
    wall = float(s.steps) * (Y + D / max(s.taus))
    spec = _spec(ctx, s, "budget_pasgd", {"name": "pasgd", "tau": s.taus[0]}, eta_a,
                 bound="pasgd")
    tc = best_tau(spec, list(s.taus), wall=wall, Y=Y, D=D)
    meas = {}
    for r in tc.table:
        meas[r["tau"]] = at(pas[r["tau"]], r["steps"])
    m_arg = min(meas, key=lambda t: meas[t][0])
    _, p_worse, _ = paired_p(meas[tc.best][1], meas[m_arg][1]) if tc.best != m_arg else (
        0.0, 1.0, 1.0)
    v = "agrees" if tc.best == m_arg or p_worse >= LEVEL else "disagrees"
    bt = tc.bound_tau
    claims.append(Claim(
        claim=f"the predictor picks the τ with the smallest error within a wall-clock budget "
              f"(T_wall = {wall:g}, Y = {Y:g}, D = {D:g}): the measured argmin, or one not "
              f"significantly worse",
        paper=paper,
        measured="; ".join(f"τ={t}: {meas[t][0]:.4g} at K = {r['steps']}"
                           for t, r in zip(meas, tc.table, strict=True))
        + f" → measured argmin τ = {m_arg}",
        predicted=f"τ = {tc.best} ("
        + "; ".join(f"τ={r['tau']}: {_value(r)}" for r in tc.table) + ")",
        predicted_ratio=_ratio(next(r for r in tc.table if r["tau"] == m_arg), meas[m_arg][0]),
        bound="—" if bt is None else f"AdaComm τ* = {bt:.3g}",
        verdict=v,
        detail={"table": tc.table, "measured": {str(t): m[0] for t, m in meas.items()},
                "measured_argmin": m_arg, "predicted_argmin": tc.best, "bound_tau": bt,
                "bound_note": tc.bound_note, "p_predicted_choice_worse": p_worse}))
    out["tau"] = {"predicted": tc.best, "measured": m_arg, "bound": bt, "wall": wall}
    if len(s.topologies) > 1:
        dspec = _spec(ctx, s, "budget_dpsgd", {"name": "dpsgd", "topology": "ring"}, eta_a,
                      bound="dpsgd")
        from theory.bounds.runtime import topology_delay

        wall_t = float(s.steps) * (Y + min(topology_delay(Ws[t], latency=D)
                                           for t in s.topologies))
        tp = best_topology(dspec, list(s.topologies), wall=wall_t, Y=Y, latency=D)
        meas_t = {r["name"]: at(dps[r["name"]], r["steps"]) for r in tp.table
                  if r["steps"] >= 1}
        mt = min(meas_t, key=lambda t: meas_t[t][0])
        _, pw, _ = paired_p(meas_t[tp.best][1], meas_t[mt][1]) if tp.best != mt else (
            0.0, 1.0, 1.0)
        claims.append(Claim(
            claim=f"the predictor picks the D-PSGD topology with the smallest error within a "
                  f"wall-clock budget (T_wall = {wall_t:g}, Y = {Y:g}, a round costs "
                  f"{D:g} × max degree)",
            paper=paper,
            measured="; ".join(f"{r['name']}: {meas_t[r['name']][0]:.4g} at K = {r['steps']}"
                               for r in tp.table if r["name"] in meas_t)
            + f" → measured argmin {mt}",
            predicted=f"{tp.best} (" + "; ".join(
                f"{r['name']}: {_value(r)}" for r in tp.table) + ")",
            predicted_ratio=_ratio(next(r for r in tp.table if r["name"] == mt),
                                   meas_t[mt][0]),
            bound="—" if tp.bound_best is None else f"bound picks {tp.bound_best} "
                                                     f"({tp.bound_note})",
            verdict="agrees" if tp.best == mt or pw >= LEVEL else "disagrees",
            detail={"table": tp.table, "measured_argmin": mt, "predicted_argmin": tp.best,
                    "bound_choice": tp.bound_best, "p_predicted_choice_worse": pw}))
        out["topology"] = {"predicted": tp.best, "measured": mt, "bound": tp.bound_best,
                           "wall": wall_t}
    data["budget"] = out


def _zeta_claim(s: Setting, dps: dict, zetas: dict) -> Claim:
    """The D-PSGD floor increases with ζ (Corollary 3): paired tests over the graphs."""
    order = sorted(s.topologies, key=lambda t: zetas[t])
    lo_t, hi_t = order[0], order[-1]
    _, p_inc, _ = paired_p(_final(dps[hi_t]), _final(dps[lo_t]))
    n_pairs = sum(1 for i, a in enumerate(order) for b in order[i + 1:]
                  if zetas[b] > zetas[a] + 1e-9)
    reversals = []
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            if zetas[b] > zetas[a] + 1e-9:
                _, _, p_rev = paired_p(_final(dps[b]), _final(dps[a]))
                if p_rev < LEVEL / max(n_pairs, 1):
                    reversals.append((a, b, p_rev))
    v = ("disagrees" if reversals else "agrees" if p_inc < LEVEL else "inconclusive")
    fb = {t: dps[t].final["bound"] for t in order}
    fm = {t: dps[t].final["measured"] for t in order}
    tight = ((fb[hi_t] - fb[lo_t]) / (fm[hi_t] - fm[lo_t])
             if fm[hi_t] > fm[lo_t] and fb[hi_t] is not None and fb[lo_t] is not None else None)
    return Claim(
        claim="D-PSGD error floor (network term 2ζ²/(1−ζ²)) increases with ζ (η_A, inside "
              "Corollary 3 on every graph)",
        paper="JMLR Corollary 3, eq. 27 (quoted): network term 2ζ²/(1−ζ²)",
        measured="; ".join(f"{t} (ζ={zetas[t]:.3f}): {fm[t]:.5g}" for t in order)
        + f"; {hi_t} > {lo_t}: paired p = {p_inc:.2g}",
        bound="; ".join(f"{t}: {_fmt_bound(fb[t])}" for t in order),
        verdict=v, tightness=tight,
        detail={"p_increase": p_inc, "significant_reversals": reversals,
                "tightness_meaning": "bound difference ÷ measured difference, max vs min ζ"})


def _crossover_claims(s: Setting, pas: dict, dps: dict, Ws: dict, eta_a: float,
                      claims: list[Claim]) -> dict[str, Any]:
    """eq. 30: the bounds' crossing τ_eq on the ring (formula), and the measured crossing."""
    import sympy as sp

    from theory.bounds.cooperative import dpsgd_bound, pasgd_bound, pasgd_dpsgd_crossover
    from theory.symbols import keyword, symbol

    z_ring = float(Ws["ring"].zeta)
    tau_eq = float(pasgd_dpsgd_crossover(sp.Float(z_ring)))
    vals = {k: v for k, v in pas[s.taus[0]].bound_info["values"].items() if k != "tau"}
    pb = pasgd_bound().expr.subs({symbol(k): v for k, v in vals.items()})
    dvals = {symbol(k): v for k, v in dps["ring"].bound_info["values"].items()}
    db = dpsgd_bound().expr.subs(dvals)
    tau_sym = symbol("tau")
    gap = sp.expand(pb - db)  # affine in τ (τ may carry integer assumptions: no solve)
    tau_num = float(-gap.subs(tau_sym, 0) / sp.diff(gap, tau_sym))
    lr_ok = not pasgd_bound().check({symbol(k): v for k, v in {**vals, "tau": tau_eq}.items()})
    ring_ok = not dpsgd_bound().check(dvals)
    ring_eta = float(dpsgd_bound().largest_eta({s_: v for s_, v in dvals.items()
                                                if keyword(s_) in ("L", "zeta")}))
    inside = lr_ok and ring_ok
    claims.append(Claim(
        claim="bound crossover: PASGD(τ) and D-PSGD(ζ) have equal bounds at "
              "τ_eq = (1+ζ²)/(1−ζ²); ring(16, weights 1/3) → ≈ 19.2",
        paper="JMLR eq. 30 (quoted; re-derived by sympy from eqs. 24 and 27)",
        measured=(f"bounds evaluated at η_A = {eta_a:.4g} and this run's L, σ², K cross at τ = "
                  f"{tau_num:.4f}; formula {tau_eq:.4f} (ζ_ring = {z_ring:.4f}); Corollary 2's "
                  f"condition at τ_eq {'holds' if lr_ok else 'fails'} and Corollary 3's on the "
                  f"ring {'holds' if ring_ok else 'fails'} (η ≤ {ring_eta:.4g}): "
                  + ("the bounds cross inside their hypotheses" if inside else
                     "the crossing is one of the formulas")),
        bound=f"{tau_eq:.4f}", verdict=("agrees" if abs(tau_num - tau_eq) <= 1e-9 * tau_eq
                                          and abs(tau_eq - 19.2) < 0.05 else "disagrees"),
        detail={"tau_eq_formula": tau_eq, "tau_eq_from_bounds": tau_num,
                "pasgd_lr_condition_at_tau_eq": lr_ok,
                "dpsgd_lr_condition_on_ring": ring_ok, "dpsgd_ring_largest_eta": ring_eta}))

    # measured: paired PASGD(τ) − ring at every τ, Bonferroni over the grid
    ring_f = _final(dps["ring"])
    rows = []
    for tau in s.taus:
        md, p_worse, p_better = paired_p(_final(pas[tau]), ring_f)
        rows.append({"tau": tau, "diff": md, "p_pasgd_worse": p_worse,
                     "p_pasgd_better": p_better, "consensus_pasgd": _consensus(pas[tau])})
    alpha_b = LEVEL / len(rows)
    better = [r["tau"] for r in rows if r["p_pasgd_better"] < alpha_b]
    worse = [r["tau"] for r in rows if r["p_pasgd_worse"] < alpha_b]
    tau_lo = max(better) if better else None
    tau_hi = min(worse) if worse else None
    diffs = np.asarray([r["diff"] for r in rows])
    est = _crossing(np.asarray(s.taus, float), diffs)
    lo_tol, hi_tol = tau_eq / CROSS_TOL, tau_eq * CROSS_TOL
    if (tau_hi is not None and tau_hi < lo_tol) or (tau_lo is not None and tau_lo > hi_tol):
        v = "disagrees"
    elif tau_lo is not None and tau_hi is not None and tau_lo >= lo_tol and tau_hi <= hi_tol:
        v = "agrees"
    else:
        v = "inconclusive"
    cons_ring = _consensus(dps["ring"])
    cons_est = _crossing(np.asarray(s.taus, float),
                         np.asarray([r["consensus_pasgd"] for r in rows]) - cons_ring)
    tau_spec = spectral_crossover(Ws["ring"])
    br = (f"({'<1' if tau_lo is None else tau_lo}, "
          f"{'>' + str(s.taus[-1]) if tau_hi is None else tau_hi})")
    claims.append(Claim(
        claim="measured crossover: PASGD(τ) beats D-PSGD on ring(16) iff τ < τ_eq ≈ 19.2 "
              f"(η_A = {eta_a:.4g})",
        paper="JMLR eq. 30 (quoted: a comparison of worst-case error floors)",
        measured=(f"measured errors cross at τ ≈ {_fmt(est)} (paired tests, Bonferroni "
                  f"over {len(rows)} τ, bracket {br}); consensus distances cross at "
                  f"τ ≈ {_fmt(cons_est)} vs spectral prediction {tau_spec:.2f}"),
        bound=f"τ_eq = {tau_eq:.2f} (tolerance ×{CROSS_TOL:g}: [{lo_tol:.1f}, {hi_tol:.1f}])",
        verdict=v, tightness=(tau_eq / est if est and est > 0 else None),
        detail={"rows": rows, "tau_lo_significant": tau_lo, "tau_hi_significant": tau_hi,
                "crossing_estimate": est, "consensus_ring": cons_ring,
                "consensus_crossing": cons_est, "tau_spectral": tau_spec,
                "tightness_meaning": "predicted τ_eq ÷ measured crossing"}))
    return {"tau_eq": tau_eq, "tau_eq_from_bounds": tau_num, "rows": rows,
            "estimate": est, "bracket": [tau_lo, tau_hi], "consensus_ring": cons_ring,
            "consensus_crossing": cons_est, "tau_spectral": tau_spec}


def _easgd(runs: _Runs, s: Setting, eta: float, L: float, claims: list[Claim],
           data: dict[str, Any], easgd_bound: Any) -> tuple[dict, dict, float, float]:
    """EASGD A(τ, W_α, 1) over α: the bound (Theorem 1 at v = 1, ζ(W_α)) for each α at its own
    η; Lemma 1's α*; the measured comparison of α at the shared η (no bound)."""
    from theory.bounds.cooperative import easgd_optimal_alpha, easgd_zeta

    a_star = round(float(easgd_optimal_alpha(M)[0]), 12)
    a_top = 2 / (M + 1)
    alphas = []
    for f in s.alpha_factors:
        a = (a_star + a_top) / 2 if f == "mid" else float(f) * a_star
        if 0 < a < a_top:
            alphas.append(round(a, 12))
    alphas = sorted(set(alphas))
    b = easgd_bound(None)
    eas, etas = {}, {}
    for a in alphas:
        largest = float(b.largest_eta({"L": L, "m": M, "tau": s.easgd_tau, "alpha": a}))
        etas[a] = round_down(FRACTION * largest)
        rule = (f"η = {etas[a]:.4g} ({FRACTION:g} × its own largest admissible η "
                f"{largest:.4g}: eq. 145 at v = 1, ζ(W_α) = {float(easgd_zeta(M, a)):.4f})")
        eas[a] = runs.get(f"easgd_alpha{a:.5g}_eta{etas[a]:.4g}",
                          {"name": "easgd", "tau": s.easgd_tau, "alpha": a}, etas[a],
                          bound="easgd")
        claims.append(_bound_claim(
            f"EASGD A(τ={s.easgd_tau}, W_α, 1), α = {a:.4g}"
            f"{' = α*' if abs(a - a_star) < 1e-12 else ''}, {rule}", eas[a],
            "EASGD: JMLR Theorem 1 with v = 1, ζ(W_α) of eq. 22 (DERIVED from the quoted "
            "theorem; condition eq. 145)", rule))
    eas_x = {a: runs.extra(f"easgd_alpha{a:.5g}",
                           {"name": "easgd", "tau": s.easgd_tau, "alpha": a}, eta)
             for a in alphas}
    data["easgd"] = {f"{a:.10g}": {**_summary(r), "alpha": a, "eta": etas[a]}
                     for a, r in eas.items()}
    data["easgd_shared_eta"] = {f"{a:.10g}": {**_extra_summary(r), "alpha": a}
                                for a, r in eas_x.items()}
    data["alpha_star"] = a_star
    # the bound's network factor over the grid (theory), and its minimiser
    zeta_a = {a: float(easgd_zeta(M, a)) for a in alphas}
    nf = {a: (1 + z * z) / (1 - z * z) for a, z in zeta_a.items()}
    fine = np.linspace(a_top / 200, a_top * (1 - 1e-6), 2001)
    fine_nf = [(1 + z * z) / (1 - z * z) for z in
               (max(abs(1 - a), abs(1 - (M + 1) * a)) for a in fine)]
    a_fine = float(fine[int(np.argmin(fine_nf))])
    nf_argmin = min(nf, key=nf.get)
    claims.append(Claim(
        claim="α* = 2/(m+2) minimises the bound's network factor (1+ζ²)/(1−ζ²) of EASGD "
              "(ζ* = m/(m+2))",
        paper="JMLR Lemma 1 (quoted): α* = 2/(m+2) minimises ζ(W_α)",
        measured=(f"grid minimiser of the factor over (0, 2/(m+1)): α = {a_fine:.5f}; "
                  f"minimiser over the run grid: α = {nf_argmin:.5g}"),
        bound=f"α* = {a_star:.5f}, ζ* = {M / (M + 2):.4f}",
        verdict=("agrees" if abs(a_fine - a_star) < 2 * (fine[1] - fine[0])
                 and abs(nf_argmin - a_star) < 1e-12 else "disagrees"),
        detail={"network_factor": {f"{a:.6g}": v for a, v in nf.items()}}))
    if a_star in eas_x:
        fs = _final(eas_x[a_star])
        tests = {a: paired_p(_final(r), fs) for a, r in eas_x.items() if a != a_star}
        alpha_b = LEVEL / max(len(tests), 1)
        better = [a for a, (_, _, p_b) in tests.items() if p_b < alpha_b]
        worse = [a for a, (_, p_w, _) in tests.items() if p_w < alpha_b]
        m_argmin = min(eas_x, key=lambda a: eas_x[a].final["measured"])
        v = "disagrees" if better else ("agrees" if worse else "inconclusive")
        claims.append(Claim(
            claim=f"α* also minimises the measured error of EASGD (m = {M}, τ = "
                  f"{s.easgd_tau}, shared η = {eta:g}: a measurement, no bound)",
            paper="question posed here (the paper's Fig. 4 shows α* = 0.2 best on CIFAR-10; its "
                  "claim is about the bound, Lemma 1)",
            measured=("; ".join(f"α={a:.4g}: {r.final['measured']:.5g}"
                                for a, r in eas_x.items())
                      + f"; measured argmin α = {m_argmin:.4g} ("
                      f"{100 * (eas_x[m_argmin].final['measured'] / fs.mean() - 1):+.2f}% vs "
                      f"α*); significantly better than α*: "
                      f"{[round(a, 5) for a in better] or 'none'}; significantly worse: "
                      f"{[round(a, 5) for a in worse] or 'none'} (paired, Bonferroni)"),
            bound=f"network factor argmin α = {nf_argmin:.4g}",
            verdict=v,
            detail={"tests": {f"{a:.6g}": list(t) for a, t in tests.items()},
                    "measured_argmin": m_argmin, "eta": eta}))
    return eas, eas_x, a_star, a_top


# --- the claims of the paper's experiments (JMLR Appendix A) ----------------------------------
def _fig_run(runs: _Runs, s: Setting, eta: float, pas_x: dict, tau: int, zeta: float,
             prefix: str = "", **kw: Any) -> Any:
    """A(τ, W, 0) at the shared η with ζ(W) = ``zeta``: PASGD (W = J) for ζ = 0, else the
    complete graph with lazy weights W = ζ·I + (1 − ζ)J (ζ exact) — D-PSGD at τ = 1,
    decentralized periodic averaging otherwise. PASGD runs of the τ sweep are reused unless
    ``kw`` changes the length or the records (then ``prefix`` names the runs)."""
    if zeta == 0:
        if tau in pas_x and not kw:
            return pas_x[tau]
        return runs.bare(f"{prefix}pasgd_tau{tau}_records", {"name": "pasgd", "tau": tau}, eta,
                         **kw)
    topo = {"name": "complete", "lazy": float(zeta)}
    if tau == 1:
        return runs.bare(f"{prefix}dpsgd_lazy_complete{zeta:g}",
                         {"name": "dpsgd", "topology": topo}, eta, **kw)
    return runs.bare(f"{prefix}decentralized_tau{tau}_lazy_complete{zeta:g}",
                     {"name": "decentralized_periodic", "tau": tau, "topology": topo}, eta,
                     **kw)


def _mean_curve(res: Any, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, seed mean) of a record column (``"loss"``: F(u_k) − F*), over the records every
    seed has."""
    n = min(len(r.step) for r in res.runs)
    y = np.stack([np.asarray(getattr(r, column), float)[:n] for r in res.runs])
    if column == "loss":
        y = y - _f_star(res)
    return np.asarray(res.runs[0].step[:n], float), y.mean(0)


def _ot_text(ot: Any, labels: list[str]) -> str:
    conf = ", ".join(f"{labels[i]} < {labels[j]}" for i, j in ot.confirmed) or "none"
    rev = ", ".join(f"{labels[i]} > {labels[j]}" for i, j in ot.reversed) or "none"
    rho = "" if ot.rho is None else f"; Spearman ρ = {ot.rho:.2f} (exact p = {ot.p_rho:.3g})"
    return (f"significantly ordered as predicted: {conf}; significantly reversed: {rev} "
            f"(paired, Bonferroni over {len(ot.pairs)} pairs){rho}")


def _ot_detail(ot: Any, labels: list[str]) -> dict[str, Any]:
    return {"rule": ot.rule, "means": dict(zip(labels, ot.means, strict=True)), "rho": ot.rho,
            "p_rho": ot.p_rho, "alpha_per_pair": ot.alpha,
            "confirmed": [[labels[i], labels[j]] for i, j in ot.confirmed],
            "reversed": [[labels[i], labels[j]] for i, j in ot.reversed],
            "pairs": [{"lower_key": labels[i], "higher_key": labels[j], "mean_difference": d,
                       "p_predicted": pu, "p_reversed": pd} for i, j, d, pu, pd in ot.pairs]}


def _combine(verdicts: list[str]) -> str:
    if "disagrees" in verdicts:
        return "disagrees"
    return "agrees" if all(v == "agrees" for v in verdicts) else "inconclusive"


def _fig3_claims(runs: _Runs, s: Setting, eta: float, pas_x: dict, claims: list[Claim],
                 data: dict[str, Any]) -> dict[str, Any]:
    """JMLR Fig. 3: the floors at (τ, ζ) ∈ s.fig3 order as the network-error factor."""
    res = {k: _fig_run(runs, s, eta, pas_x, *k) for k in s.fig3}
    labels = [f"(τ={t}, ζ={z:g})" for t, z in s.fig3]
    floors = np.stack([tail_mean(res[k], "loss") for k in s.fig3], axis=1)  # seeds × settings
    key = [network_factor(t, z) for t, z in s.fig3]
    # a larger τ (at ζ = 0) or a larger ζ (at τ = 1) gives a higher floor
    i_tau = [i for i, (_, z) in enumerate(s.fig3) if z == 0]
    i_zeta = [i for i, (t, _) in enumerate(s.fig3) if t == 1]
    ot_tau = order_test(floors[:, i_tau], [s.fig3[i][0] for i in i_tau], LEVEL)
    ot_zeta = order_test(floors[:, i_zeta], [s.fig3[i][1] for i in i_zeta], LEVEL)
    lab_t, lab_z = [labels[i] for i in i_tau], [labels[i] for i in i_zeta]
    mean = floors.mean(0)
    fl = "; ".join(f"{lab}: {x:.4g}" for lab, x in zip(labels, mean, strict=True))
    what = (f"floor = mean of F(u_k) − F* over k ≥ {FLOOR_FROM:g}K, shared η = {eta:g}, "
            f"m = {M}, {s.seeds} paired seeds")
    claims.append(Claim(
        claim="at one learning rate, a larger τ or a larger ζ gives a higher error floor",
        paper=FIG_PAPER.format(n=3),
        measured=(f"{fl} ({what}). Along τ (ζ = 0): {ot_tau.verdict} — "
                  f"{_ot_text(ot_tau, lab_t)}. Along ζ (τ = 1): {ot_zeta.verdict} — "
                  f"{_ot_text(ot_zeta, lab_z)}"),
        bound="—", verdict=_combine([ot_tau.verdict, ot_zeta.verdict]),
        detail={"rule": ORDER_RULE + "; the claim agrees when both axes agree",
                "tau_axis": _ot_detail(ot_tau, lab_t), "zeta_axis": _ot_detail(ot_zeta, lab_z),
                "zeta_construction": "ζ > 0: complete graph with lazy weights ζ·I + (1 − ζ)J "
                                     "(every non-consensus eigenvalue = ζ)"}))
    ot = order_test(floors, key, LEVEL)
    order = [labels[i] for i in np.argsort(key)]
    claims.append(Claim(
        claim="the measured floors order as the network-error term (1+ζ²)/(1−ζ²)·τ − 1 orders "
              "the five settings",
        paper=FIG_PAPER.format(n=3),
        measured=f"{fl} ({what}); {_ot_text(ot, labels)}",
        bound="predicted order: " + " < ".join(
            f"{lab} [{k:.3g}]" for lab, k in sorted(zip(labels, key, strict=True),
                                                     key=lambda p: p[1])),
        verdict=ot.verdict,
        detail={**_ot_detail(ot, labels), "network_factor": dict(zip(labels, key, strict=True)),
                "predicted_order": order}))
    out = {"labels": labels, "key": key, "floors": floors.tolist(),
           "runs": {lab: res[k].spec["name"] for lab, k in zip(labels, s.fig3, strict=True)}}
    data["fig3"] = out
    return {**out, "res": res}


def _window(res: Any, column: str, lo: float, hi: float) -> np.ndarray:
    """Per seed: the mean of a record column over lo·K ≤ k < hi·K (k ≤ K when hi = 1)."""
    out = []
    K = res.spec["steps"]
    for r in res.runs:
        k = np.asarray(r.step, float)
        y = np.asarray(getattr(r, column), float)
        sel = (k >= lo * K) & ((k < hi * K) if hi < 1 else (k <= K))
        out.append(float(np.mean(y[sel])) if sel.any() else math.nan)
    return np.asarray(out)


def _fig4_claims(runs: _Runs, s: Setting, eta: float, claims: list[Claim],
                 data: dict[str, Any]) -> dict[str, Any]:
    """JMLR Fig. 4: EASGD with m = s.fig4_m at α ∈ {0.01, 0.9/m, α*, 2/(m+1)}."""
    m = s.fig4_m
    alphas = {"0.01": 0.01, "0.9/m": 0.9 / m, "α*": 2 / (m + 2), "2/(m+1)": 2 / (m + 1)}
    res = {lab: runs.bare(f"easgd_m{m}_alpha{a:.5g}",
                          {"name": "easgd", "tau": s.easgd_tau, "alpha": a}, eta, m=m)
           for lab, a in alphas.items()}
    div = {lab: r.verdict.status == "diverged" for lab, r in res.items()}
    loss = {lab: tail_mean(r, "loss") for lab, r in res.items()}
    disc = {lab: tail_mean(r, "consensus") for lab, r in res.items()}
    trend = {lab: float(np.mean(_window(r, "consensus", 0.75, 1.0))
                        / np.mean(_window(r, "consensus", 0.25, 0.5))) for lab, r in res.items()}
    what = (f"m = {m}, τ = {s.easgd_tau}, shared η = {eta:g}, {s.seeds} paired seeds; means "
            f"over k ≥ {FLOOR_FROM:g}K of F(u_k) − F* and of the discrepancy Σ_i ‖x_i − u‖² "
            f"over the m + 1 rows")
    fmt_a = "; ".join(f"α = {lab} ({a:.4g}): loss {np.mean(loss[lab]):.4g}, discrepancy "
                      f"{np.mean(disc[lab]):.4g}" + (" (diverged)" if div[lab] else "")
                      for lab, a in alphas.items())
    # α* beats 0.9/m on both measures (paired, Bonferroni over the two)
    a2 = LEVEL / 2
    if div["α*"] or div["0.9/m"]:
        v, tl, td = "inconclusive", (math.nan,) * 3, (math.nan,) * 3
    else:
        tl = paired_p(loss["α*"], loss["0.9/m"])
        td = paired_p(disc["α*"], disc["0.9/m"])
        if tl[1] < a2 or td[1] < a2:
            v = "disagrees"
        elif tl[2] < a2 and td[2] < a2:
            v = "agrees"
        else:
            v = "inconclusive"
    claims.append(Claim(
        claim=f"α* = 2/(m+2) = {alphas['α*']:.4g} beats the usual α = 0.9/m = "
              f"{alphas['0.9/m']:.4g} on training loss and on the worker–auxiliary "
              f"discrepancy (m = {m})",
        paper=FIG_PAPER.format(n=4),
        measured=(f"{fmt_a} ({what}); α* − 0.9/m: loss {tl[0]:+.3g} (one-sided p = "
                  f"{tl[2]:.2g}), discrepancy {td[0]:+.3g} (p = {td[2]:.2g}); Bonferroni over "
                  f"the 2 tests"),
        bound="—", verdict=v,
        detail={"alphas": alphas, "loss": {k: x.tolist() for k, x in loss.items()},
                "discrepancy": {k: x.tolist() for k, x in disc.items()},
                "test_loss": list(tl), "test_discrepancy": list(td), "diverged": div,
                "rule": "agrees iff α* is significantly lower on both measures (one-sided "
                        "paired t, level/2 each); disagrees iff significantly higher on one"}))
    # α = 2/(m+1) (ζ = 1: eigenvalue 1 − (m+1)α = −1) does not converge
    if div["2/(m+1)"]:
        v, tc = "agrees", (math.nan,) * 3
    elif div["α*"]:
        v, tc = "inconclusive", (math.nan,) * 3
    else:
        tc = paired_p(disc["2/(m+1)"], disc["α*"])
        v = "agrees" if tc[1] < LEVEL else ("disagrees" if tc[2] < LEVEL else "inconclusive")
    ratio = float(np.mean(disc["2/(m+1)"]) / np.mean(disc["α*"]))
    tl2 = paired_p(loss["2/(m+1)"], loss["α*"])
    note = ""
    if not div["2/(m+1)"] and trend["2/(m+1)"] < 1.5 and tl2[1] >= LEVEL:
        note = ("; but the discrepancy is stationary (it neither grows nor oscillates away) and "
                "the averaged model's training loss is not higher than α*'s: on this strongly "
                "convex problem the gradients damp the mode that W_α leaves undamped "
                "(eigenvalue −1)")
    claims.append(Claim(
        claim=f"EASGD at α = 2/(m+1) = {alphas['2/(m+1)']:.4g} (ζ(W_α) = 1) does not converge: "
              f"its worker–centre discrepancy does not reach α*'s floor",
        paper=FIG_PAPER.format(n=4),
        measured=(("a seed diverged" if div["2/(m+1)"] else
                   f"discrepancy {np.mean(disc['2/(m+1)']):.4g} vs α*'s "
                   f"{np.mean(disc['α*']):.4g} (×{ratio:.3g}; one-sided paired p = "
                   f"{tc[1]:.2g}); its trend (mean over the last quarter ÷ the second quarter) "
                   f"{trend['2/(m+1)']:.3g} vs α*'s {trend['α*']:.3g}; training loss "
                   f"{np.mean(loss['2/(m+1)']):.4g} vs {np.mean(loss['α*']):.4g} (p = "
                   f"{tl2[1]:.2g})") + f" ({what}){note}"),
        bound="ζ(W_α) = 1: Assumption 5 fails, no bound", verdict=v,
        detail={"test_discrepancy": list(tc), "test_loss": list(tl2), "ratio": ratio,
                "trend": trend, "diverged": div["2/(m+1)"],
                "rule": "agrees iff the discrepancy over k ≥ K/2 is significantly above α*'s "
                        "(one-sided paired t) or a seed diverged; disagrees iff significantly "
                        "below"}))
    curves = {lab: {"steps": _mean_curve(r, "consensus")[0].tolist(),
                    "discrepancy": _mean_curve(r, "consensus")[1].tolist(),
                    "loss": _mean_curve(r, "loss")[1].tolist()} for lab, r in res.items()}
    out = {"m": m, "alphas": alphas, "curves": curves, "trend": trend}
    data["fig4"] = {k: v for k, v in out.items() if k != "curves"}
    return out


def _fig5_claims(s: Setting, by_eta: dict[float, dict], claims: list[Claim],
                 data: dict[str, Any]) -> dict[str, Any]:
    """JMLR Fig. 5: after the same number of steps a larger τ gives a higher training loss but
    costs less wall-clock (runtime model), at two learning rates."""
    parts, verdicts, curves, tests = [], [], {}, {}
    walls: dict[int, float] = {}
    for eta, pas in by_eta.items():
        taus = [t for t in s.fig5_taus if t in pas]
        fin = np.stack([tail_mean(pas[t], "loss", FINAL_FROM) for t in taus], axis=1)
        ot = order_test(fin, taus, LEVEL)
        verdicts.append(ot.verdict)
        labs = [f"τ={t}" for t in taus]
        for t in taus:
            r0 = pas[t].runs[0]
            walls[t] = float(wall_clock(r0.step[-1], r0.rounds[-1]))
            k, y = _mean_curve(pas[t], "loss")
            rr = np.asarray(r0.rounds[:len(k)], float)
            curves[f"{eta:g}|{t}"] = {"wall": wall_clock(k, rr).tolist(), "loss": y.tolist()}
        parts.append(f"η = {eta:.4g}: loss " + ", ".join(
            f"{lab} {x:.4g}" for lab, x in zip(labs, ot.means, strict=True))
            + f" → {ot.verdict} ({_ot_text(ot, labs)})")
        tests[f"{eta:g}"] = _ot_detail(ot, labs)
    ts = sorted(walls)
    dec = all(walls[a] > walls[b] for a, b in zip(ts, ts[1:], strict=False))
    v = _combine([*verdicts, "agrees" if dec else "disagrees"])
    K = s.steps
    claims.append(Claim(
        claim="after the same number of epochs a larger τ gives a higher training loss but "
              "costs much less wall-clock time",
        paper=FIG_PAPER.format(n=5),
        measured=("; ".join(parts) + f" (loss = mean of F(u_k) − F* over k ≥ {FINAL_FROM:g}K, "
                  f"K = {K}, {s.seeds} paired seeds). Wall-clock of K steps (runtime model "
                  f"k·Y + rounds·D, Y = {RUNTIME_Y:g}, D = {RUNTIME_D:g}): "
                  + ", ".join(f"τ={t}: {walls[t]:.4g}" for t in ts)
                  + f" ({walls[ts[-1]] / walls[ts[0]]:.2f}× at τ = {ts[-1]})"),
        bound="—", verdict=v,
        detail={"loss_tests": tests, "wall_clock": {str(t): walls[t] for t in ts},
                "runtime_model": {"Y": RUNTIME_Y, "D": RUNTIME_D},
                "rule": ORDER_RULE + " (per learning rate, key τ); and the model's wall-clock "
                        "strictly decreasing in τ; agrees iff all agree"}))
    data["fig5"] = {"wall_clock": {str(t): walls[t] for t in ts}, "loss_tests": tests}
    return {"curves": curves, "walls": walls}


def _fig6_claims(runs: _Runs, s: Setting, eta: float, pas_x: dict, claims: list[Claim],
                 data: dict[str, Any]) -> dict[str, Any]:
    """JMLR Fig. 6: more local updates reach a target training loss in less wall-clock."""
    keys = [(t, z) for z in s.fig6_zetas for t in s.fig6_taus]
    res = {k: _fig_run(runs, s, eta, pas_x, *k, prefix="fig6_", steps=s.fig6_steps,
                       record_every=s.fig6_record_every) for k in keys}
    floors = {k: float(np.mean(tail_mean(r, "loss"))) for k, r in res.items()}
    target = TARGET_FACTOR * max(floors.values())
    reach: dict[tuple, dict[str, np.ndarray]] = {}
    for k, r in res.items():
        steps, rounds = [], []
        for run in r.runs:
            i = first_reach(run.step, np.asarray(run.loss, float) - _f_star(r), target)
            steps.append(math.inf if i is None else float(run.step[i]))
            rounds.append(math.inf if i is None else float(run.rounds[i]))
        reach[k] = {"steps": np.asarray(steps), "rounds": np.asarray(rounds),
                    "wall": wall_clock(steps, rounds)}
    t_lo, t_hi = min(s.fig6_taus), max(s.fig6_taus)
    a_b = LEVEL / (2 * len(s.fig6_zetas))  # two tests per ζ: floor and wall-clock
    verdicts, parts, per_z = [], [], {}
    for z in s.fig6_zetas:
        lo, hi = reach[(t_lo, z)], reach[(t_hi, z)]
        wl, wh = lo["wall"], hi["wall"]
        fin = np.isfinite(wl) & np.isfinite(wh)
        if not np.isfinite(wh).all() and np.isfinite(wl).all():
            vz, p_f, p_s, ratio = "disagrees", math.nan, math.nan, 0.0
        elif not np.isfinite(wl).all() and np.isfinite(wh).all():
            vz, p_f, p_s, ratio = "agrees", math.nan, math.nan, math.inf
        elif fin.sum() < 2:
            vz, p_f, p_s, ratio = "inconclusive", math.nan, math.nan, math.nan
        else:
            _, p_f, p_s = paired_p(np.log(wl[fin]), np.log(wh[fin]))
            ratio = float(np.exp(np.mean(np.log(wl[fin]) - np.log(wh[fin]))))
            vz = "agrees" if p_f < a_b else ("disagrees" if p_s < a_b else "inconclusive")
        # "more slowly per epoch": the higher floor of τ_hi at the same steps
        fd, fp_up, fp_down = paired_p(tail_mean(res[(t_hi, z)], "loss"),
                                      tail_mean(res[(t_lo, z)], "loss"))
        vf = "agrees" if fp_up < a_b else ("disagrees" if fp_down < a_b else "inconclusive")
        verdicts += [vz, vf]
        k_lo, k_hi, r_lo, r_hi = (float(np.mean(x[fin])) if fin.any() else math.nan
                                  for x in (lo["steps"], hi["steps"], lo["rounds"],
                                            hi["rounds"]))
        # wall ratio at D/Y = x: (k_lo + r_lo·x)/(k_hi + r_hi·x); 4× and 1× (break-even)
        den = r_lo - PAPER_SPEEDUP * r_hi
        dy4 = (PAPER_SPEEDUP * k_hi - k_lo) / den if den > 0 else None
        dy4 = dy4 if dy4 is not None and dy4 >= 0 else None
        be = (k_hi - k_lo) / (r_lo - r_hi) if r_lo > r_hi else None
        per_z[f"{z:g}"] = {"ratio": ratio, "p_faster": p_f, "p_slower": p_s,
                           "steps_lo": k_lo, "steps_hi": k_hi, "rounds_lo": r_lo,
                           "rounds_hi": r_hi, "D_over_Y_for_4x": dy4,
                           "break_even_D_over_Y": be, "verdict_wall": vz,
                           "per_seed": {f"tau{t}": {"steps": reach[(t, z)]["steps"].tolist(),
                                                    "rounds": reach[(t, z)]["rounds"].tolist()}
                                        for t in (t_lo, t_hi)},
                           "floor_difference": fd, "p_floor_higher": fp_up,
                           "verdict_floor": vf}
        parts.append(f"ζ = {z:g}: floor (k ≥ {FLOOR_FROM:g}K) higher at τ = {t_hi} by {fd:.3g} "
                     f"(p = {fp_up:.2g}); to the target τ = {t_lo} needs {k_lo:.0f} steps, "
                     f"τ = {t_hi} {k_hi:.0f} (×{k_hi / k_lo:.2f}); wall-clock τ={t_lo} ÷ "
                     f"τ={t_hi} = {ratio:.2f} (one-sided paired p = {p_f:.2g} on log times)"
                     + (f"; the model gives 4× at D/Y = {dy4:.3g}" if dy4 is not None else
                        "; no D/Y gives 4×")
                     + (f", break-even D/Y = {be:.3g}" if be is not None and be > 0 else ""))
    v = _combine(verdicts)
    claims.append(Claim(
        claim=f"more local updates (τ = {t_hi} vs {t_lo}) converge more slowly per epoch but "
              f"reach the target training loss in about {PAPER_SPEEDUP:g}× less wall-clock "
              f"time (ζ ∈ {{{', '.join(f'{z:g}' for z in s.fig6_zetas)}}})",
        paper=FIG_PAPER.format(n=6),
        measured=(f"target F(u_k) − F* ≤ {target:.4g} (= {TARGET_FACTOR:g} × the highest floor "
                  f"of the four settings), first record reaching it per seed (K = "
                  f"{s.fig6_steps}, records every {s.fig6_record_every} steps, shared η = "
                  f"{eta:g}, {s.seeds} paired seeds), wall-clock k·Y + rounds·D with Y = "
                  f"{RUNTIME_Y:g}, D = {RUNTIME_D:g}; " + "; ".join(parts)),
        bound="—", verdict=v,
        detail={"target": target, "floors": {f"{k}": x for k, x in floors.items()},
                "per_zeta": per_z, "runtime_model": {"Y": RUNTIME_Y, "D": RUNTIME_D},
                "rule": f"per ζ, two one-sided paired t-tests, Bonferroni over the "
                        f"{2 * len(s.fig6_zetas)}: the floor of τ = {t_hi} above τ = {t_lo}'s "
                        "('more slowly per epoch') and its log wall-clock to the target below "
                        "('less wall-clock'); agrees iff all confirm, disagrees iff one is "
                        "significantly reversed; the factor 4 depends on the paper's hardware "
                        "and is reported as the model's D/Y that would give it"}))
    curves = {}
    for k, r in res.items():
        steps, y = _mean_curve(r, "loss")
        rr = np.asarray(r.runs[0].rounds[:len(steps)], float)
        curves[f"τ={k[0]}, ζ={k[1]:g}"] = {"wall": wall_clock(steps, rr).tolist(),
                                          "loss": y.tolist()}
    data["fig6"] = {"target": target, "per_zeta": per_z}
    return {"curves": curves, "target": target}


def _crossing(x: np.ndarray, diff: np.ndarray) -> float | None:
    """First τ where ``diff`` (PASGD − D-PSGD) changes sign from < 0 to ≥ 0, linear in log τ;
    None if there is no sign change on the grid."""
    for i in range(len(x) - 1):
        if diff[i] < 0 <= diff[i + 1]:
            lx0, lx1 = math.log(x[i]), math.log(x[i + 1])
            w = -diff[i] / (diff[i + 1] - diff[i])
            return float(math.exp(lx0 + w * (lx1 - lx0)))
    return None


def _fmt(x: float | None) -> str:
    return "none on the grid" if x is None else f"{x:.2f}"


def _fmt_bound(x: float | None) -> str:
    return "not applicable at this η" if x is None else f"{x:.4g}"


# ---------------------------------------------------------------------------------------------
def _extra_line(ax: Any, x: Any, res: list, label: str, **kw: Any) -> None:
    """The measured mean of extra (shared-η, no verdict) runs: grey, dotted, hollow markers."""
    ax.plot(x, [r.final["measured"] for r in res], ":", color="grey", marker="o",
            markerfacecolor="none", label=label, **kw)


def _predicted_line(ax: Any, x: Any, res: list, label: str = "predicted (local model)",
                    **kw: Any) -> None:
    """The predictor's final values of ``res`` (skipped where it has none)."""
    pts = [(xi, r.final.get("predicted")) for xi, r in zip(x, res, strict=True)
           if r.final.get("predicted") is not None]
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "-.", color="C4", marker="d",
                label=label, **kw)


def _fig_tau(ctx: Context, s: Setting, pas: dict, pas_x: dict, het: dict, het_x: dict,
             eta: float, eta_a: float) -> Figure:
    from empirics.plots import axes, band, new_figure

    fig, (a1, a2) = new_figure(2)
    x = np.asarray(s.taus, float)
    fm = [pas[t].final for t in s.taus]
    band(a1, x, [f["measured"] for f in fm], [f["lower"] for f in fm],
         [f["upper"] for f in fm], label=f"measured at η_A = {eta_a:.4g}, 95% band", marker="o")
    xb = [t for t in s.taus if pas[t].final["bound"] is not None]
    a1.plot(xb, [pas[t].final["bound"] for t in xb], "k--", marker="s",
            label="PASGD bound (Cor. 2) at η_A")
    _predicted_line(a1, x, [pas[t] for t in s.taus])
    _extra_line(a1, x, [pas_x[t] for t in s.taus], f"measured at shared η = {eta:g} (no "
                "verdict)")
    axes(a1, "communication period τ", "(1/K) Σ ‖∇F(u_k)‖²", log="xy", xbase=2, grid=False,
         legend=True, title=f"PASGD, i.i.d., m = {M}, K = {s.steps}")
    xh = np.asarray(s.taus_noniid, float)
    fh = [het[t].final for t in s.taus_noniid]
    band(a2, xh, [f["measured"] for f in fh], [f["lower"] for f in fh],
         [f["upper"] for f in fh], label=f"measured at η_A = {eta_a:.4g}, 95% band", marker="^")
    hb = [t for t in s.taus_noniid if het[t].final["bound"] is not None]
    a2.plot(hb, [het[t].final["bound"] for t in hb], "k--", marker="s",
            label="Theorem 2 bound (non-IID) at η_A")
    _predicted_line(a2, xh, [het[t] for t in s.taus_noniid])
    _extra_line(a2, np.asarray(s.taus_het, float), [het_x[t] for t in s.taus_het],
                f"measured at shared η = {eta:g} (no verdict)")
    axes(a2, "communication period τ", "(1/K) Σ ‖∇F(u_k)‖²", log="xy", xbase=2, grid=False,
         legend=True, title="PASGD on a heterogeneous split")
    return ctx.save_figure(fig, "cooperative_floor_vs_tau",
            "PASGD: measured running average of ‖∇F(u_k)‖² (mean, 95% band over seeds) against "
            "the bound at the same η, m, τ, K — left i.i.d. (JMLR Corollary 2), right a "
            "heterogeneous split (JMLR Theorem 2 with the problem's κ²), both at η_A, inside "
            "every bound's condition; dash-dot diamonds: the predictor (local model, no "
            "sampling); grey: the runs at the previous shared η, without verdict.")


def _fig_zeta(ctx: Context, s: Setting, dps: dict, dps_x: dict, zetas: dict, pas: dict,
              cross: dict, eta: float, eta_a: float) -> Figure:
    from empirics.plots import axes, band, new_figure

    fig, (a0, a1, a2) = new_figure(3, width=4.6)
    order = sorted(dps, key=lambda t: zetas[t])
    seen: dict[float, int] = {}
    for t in order:  # topologies with equal ζ are drawn side by side
        k = seen.get(round(zetas[t], 9), 0)
        seen[round(zetas[t], 9)] = k + 1
        f, fx = dps[t].final, dps_x[t].final
        col = f"C{order.index(t)}"
        for ax in (a0, a1):
            ax.errorbar([zetas[t] + 0.015 * k], [f["measured"]],
                        yerr=[[f["measured"] - f["lower"]], [f["upper"] - f["measured"]]],
                        fmt="o", capsize=3, label=f"{t} at η_A", color=col)
        a1.errorbar([zetas[t] + 0.015 * k], [fx["measured"]],
                    yerr=[[fx["measured"] - fx["lower"]], [fx["upper"] - fx["measured"]]],
                    fmt="o", mfc="none", capsize=3, color=col,
                    label=f"{t} at shared η (no verdict)")
    ob = [t for t in order if dps[t].final["bound"] is not None]
    a0.plot([zetas[t] for t in ob], [dps[t].final["bound"] for t in ob], "k--s",
            label="D-PSGD bound (Cor. 3) at η_A")
    for ax in (a0, a1):
        _predicted_line(ax, [zetas[t] for t in order], [dps[t] for t in order],
                        label="predicted at η_A")
    a0.set_yscale("log")
    a0.set_title(f"D-PSGD on {M} nodes, η_A = {eta_a:.4g}, K = {s.steps}")
    a1.set_title(f"measured only: η_A (filled), η = {eta:g} (hollow)")
    for ax in (a0, a1):
        ax.set_xlabel("ζ = max(|λ₂|, |λ_m|)")
        ax.set_ylabel("(1/K) Σ ‖∇F(u_k)‖²")
        ax.legend(fontsize=6)
    if cross:
        x = np.asarray(s.taus, float)
        fm = [pas[t].final for t in s.taus]
        band(a2, x, [f["measured"] for f in fm], [f["lower"] for f in fm],
             [f["upper"] for f in fm], label="PASGD(τ) measured", marker="o")
        fr = dps["ring"].final
        a2.axhspan(fr["lower"], fr["upper"], color="C1", alpha=0.2)
        a2.axhline(fr["measured"], color="C1", label="D-PSGD ring measured")
        a2.axvline(cross["tau_eq"], color="k", ls="--", label=f"bound τ_eq = "
                   f"{cross['tau_eq']:.1f}")
        a2.axvline(cross["tau_spectral"], color="C2", ls=":",
                   label=f"spectral τ = {cross['tau_spectral']:.2f}")
        if cross["estimate"] is not None:
            a2.axvline(cross["estimate"], color="C3", ls="-.",
                       label=f"measured crossing {cross['estimate']:.2f}")
        _predicted_line(a2, x, [pas[t] for t in s.taus], label="PASGD(τ) predicted")
        if fr.get("predicted") is not None:
            a2.axhline(fr["predicted"], color="C4", ls=":", label="D-PSGD ring predicted")
        if cross.get("predicted") is not None:
            a2.axvline(cross["predicted"], color="C4", ls="--",
                       label=f"predicted crossing {cross['predicted']:.2f}")
        axes(a2, "PASGD period τ", "(1/K) Σ ‖∇F(u_k)‖²", log="x", xbase=2, grid=False,
             legend=True, title="crossover PASGD vs D-PSGD (ring), η_A")
    return ctx.save_figure(fig, "cooperative_floor_vs_zeta",
            "Left: D-PSGD measured error (95% band) and the bound (JMLR Corollary 3) against ζ "
            "at η_A, inside the condition on every graph; middle: the measured errors alone, "
            "at η_A (filled) and at the previous shared η (hollow, no verdict). Right: "
            "PASGD(τ) vs D-PSGD on the ring at η_A: the bound's τ_eq = (1+ζ²)/(1−ζ²), the "
            "spectral (mode-averaged, derived) prediction, the measured crossing and the "
            "predictor's (local model: dash-dot, purple).")


def _fig_alpha(ctx: Context, eas: dict, eas_x: dict, a_star: float, a_top: float, tau: int,
               eta: float) -> Figure:
    from empirics.plots import band, new_figure

    fig, (a0, a1) = new_figure(2)
    a = sorted(eas_x)
    f = [eas_x[x].final for x in a]
    band(a0, a, [g["measured"] for g in f], [g["lower"] for g in f], [g["upper"] for g in f],
         label=f"measured at shared η = {eta:g}, 95% band (no bound)", marker="o")
    a = sorted(eas)
    f = [eas[x].final for x in a]
    band(a1, a, [g["measured"] for g in f], [g["lower"] for g in f], [g["upper"] for g in f],
         label="measured at each α's own η, 95% band", marker="o")
    ab = [x for x in a if eas[x].final["bound"] is not None]
    if ab:
        a1.plot(ab, [eas[x].final["bound"] for x in ab], "k--s",
                label="EASGD bound (Thm 1, W_α) at that η")
    _predicted_line(a1, a, [eas[x] for x in a])
    _predicted_line(a0, sorted(eas_x), [eas_x[x] for x in sorted(eas_x)])
    for x in a:
        a1.annotate(f"η={eas[x].spec['lr']:.3g}", (x, eas[x].final["measured"]),
                    textcoords="offset points", xytext=(0, -12), fontsize=6, ha="center")
    for ax in (a0, a1):
        ax.axvline(a_star, color="C3", ls=":", label=f"α* = 2/(m+2) = {a_star:.4f}")
        ax.axvline(a_top, color="grey", ls="-", lw=0.8, label="2/(m+1) (ζ = 1)")
        ax.set_yscale("log")
        ax.set_xlabel("elasticity α")
        ax.set_ylabel("(1/K) Σ ‖∇F(u_k)‖²")
        ax.legend(fontsize=7)
    a0.set_title(f"EASGD, m = {M}, τ = {tau}, one η")
    a1.set_title(f"EASGD, m = {M}, τ = {tau}: each α inside eq. 145")
    return ctx.save_figure(fig, "cooperative_easgd_alpha",
            "EASGD against α. Left: measured error at one shared η (outside eq. 145: no bound). "
            "Right: each α run at 0.9 × its own largest admissible η (eq. 145 at v = 1, "
            "ζ(W_α)), with the bound; the bound's network factor is smallest at α* = 2/(m+2) "
            "(Lemma 1).")


def _fig_curve(ctx: Context, res: Any) -> Figure:
    from empirics.plots import axes, band, new_figure

    fig, ax = new_figure(1)
    k = np.asarray(res.steps, float)
    pos = k > 0
    band(ax, k[pos], res.mean[pos], res.lower[pos], res.upper[pos],
         label="measured mean, 95% band")
    if res.bound is not None:
        ok = pos & np.isfinite(res.bound)
        ax.plot(k[ok], res.bound[ok], "k--", label="bound (nominal)")
        ax.plot(k[ok], res.bound_conservative[ok], "k:", label="bound (conservative)")
    if res.lemma2 is not None:
        ok = pos & np.isfinite(res.lemma2)
        band(ax, k[ok], res.lemma2[ok], res.lemma2_lower[ok], res.lemma2_upper[ok],
             label="Lemma 2 with the measured consensus distance", color="C2")
    if getattr(res, "predicted", None) is not None:
        ok = pos & np.isfinite(res.predicted)
        ax.plot(k[ok], res.predicted[ok], "-.", color="C4", lw=1.6,
                label="predicted (local model, no sampling)")
    axes(ax, "iteration K", "(1/K) Σ_{k<K} ‖∇F(u_k)‖²", log="xy", grid=False, legend=8,
         title=f"{res.spec['name']} (η = {res.spec['lr']:g}): {res.verdict.status}")
    return ctx.save_figure(fig, "cooperative_error_vs_step",
            f"{res.spec['name']}: running average of ‖∇F(u_k)‖² against K (mean, 95% band over "
            f"seeds), the bound along K (JMLR Corollary 2), between them Lemma 2 (JMLR "
            f"eq. 38) with the measured consensus distance, and the predictor's curve "
            f"(dash-dot).")


def slack_rows(claims: list[Claim]) -> list[tuple[str, float, float]]:
    """(short label, descent factor, consensus factor) of every claim with both slack factors
    (bound claims with a verdict)."""
    out = []
    for c in claims:
        if c.slack_descent is None or c.slack_consensus is None:
            continue
        out.append((c.claim.split(", η = ")[0].split(": E[")[0], float(c.slack_descent),
                    float(c.slack_consensus)))
    return out


def _fig_slack(ctx: Context, claims: list[Claim]) -> Figure:
    from empirics.plots import new_figure

    rows = slack_rows(claims)
    fig, ax = new_figure(1, width=8.0, height=max(3.0, 0.32 * len(rows) + 1.4))
    y = np.arange(len(rows))[::-1]
    d = np.asarray([r[1] for r in rows])
    c = np.asarray([r[2] for r in rows])
    ax.barh(y, d - 1, left=1, color="C0", label="descent step: Lemma 2 ÷ measured")
    ax.barh(y, d * c - d, left=d, color="C3",
            label="consensus bound: bound ÷ Lemma 2")
    for yi, di, ci in zip(y, d, c, strict=True):
        ax.annotate(f"{di:.3g} × {ci:.3g} = {di * ci:.3g}", (max(di * ci, di, 1), yi),
                    textcoords="offset points", xytext=(4, -3), fontsize=6)
    ax.set_yticks(y, [r[0] for r in rows], fontsize=6)
    ax.set_xscale("log")
    if rows:
        ax.set_xlim(min(1.0, float(d.min())) / 1.2, float(np.max(np.maximum(d * c, d))) * 4)
    ax.axvline(1, color="k", lw=0.8)
    ax.set_xlabel("slack factor (log scale; stacked, the bar ends at the tightness)")
    ax.set_title("Where the slack goes: measured → Lemma 2 → bound")
    ax.legend(fontsize=7, loc="upper right")
    return ctx.save_figure(fig, "cooperative_slack",
            "Slack of every bound claim, split at Lemma 2 (JMLR eq. 38) with the measured "
            "consensus distance: Lemma 2 ÷ measured (what the descent-lemma step loses) times "
            "bound ÷ Lemma 2 (what bounding the consensus distance by its worst case loses) "
            "= tightness.")


def _fig_appendix(ctx: Context, s: Setting, fig3: dict, fig4: dict, fig5: dict, fig6: dict
                  ) -> Figure:
    import matplotlib

    from empirics.plots import axes

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ((a3, a4), (a5, a6)) = plt.subplots(2, 2, figsize=(10.4, 7.8))
    fl = np.asarray(fig3["floors"])
    mean, lo, hi = mean_band(fl, LEVEL)
    x = np.asarray(fig3["key"]) + 1
    for i, lab in enumerate(fig3["labels"]):
        a3.errorbar([x[i]], [mean[i]], yerr=[[mean[i] - lo[i]], [hi[i] - mean[i]]], fmt="o",
                    capsize=3, label=lab)
    axes(a3, "network factor + 1 = (1+ζ²)/(1−ζ²)·τ",
         f"floor: mean F(u_k) − F*, k ≥ {FLOOR_FROM:g}K", log="x", grid=False, legend=True,
         title="JMLR Fig. 3: floor vs (τ, ζ), one η")
    for lab, cur in fig4["curves"].items():
        k = np.asarray(cur["steps"])
        ok = k > 0
        a4.plot(k[ok], np.asarray(cur["discrepancy"])[ok],
                label=f"α = {lab} ({fig4['alphas'][lab]:.4g})")
    axes(a4, "step k", "Σ_i ‖x_i − u_k‖² (m + 1 rows)", log="y", grid=False, legend=True,
         title=f"JMLR Fig. 4: EASGD, m = {fig4['m']}, τ = {s.easgd_tau}")
    for i, (key, cur) in enumerate(fig5["curves"].items()):
        e, t = key.split("|")
        w, y = np.asarray(cur["wall"]), np.asarray(cur["loss"])
        ok = w > 0
        a5.plot(w[ok], y[ok], "-" if i < len(fig5["curves"]) / 2 else "--",
                label=f"η = {float(e):.3g}, τ = {t}")
    axes(a5, f"wall-clock (model: Y = {RUNTIME_Y:g}/step, D = {RUNTIME_D:g}/round)",
         "F(u_k) − F* (seed mean)", log="xy", grid=False, legend=True,
         title="JMLR Fig. 5: loss vs wall-clock")
    for lab, cur in fig6["curves"].items():
        w, y = np.asarray(cur["wall"]), np.asarray(cur["loss"])
        ok = w > 0
        a6.plot(w[ok], y[ok], label=lab)
    a6.axhline(fig6["target"], color="k", ls=":", label="target")
    axes(a6, f"wall-clock (model: Y = {RUNTIME_Y:g}/step, D = {RUNTIME_D:g}/round)",
         "F(u_k) − F* (seed mean)", log="xy", grid=False, legend=True,
         title="JMLR Fig. 6: time to a target loss")
    return ctx.save_figure(fig, "cooperative_appendix_a",
            "The paper's experiments (JMLR Appendix A) on this reproduction's logistic "
            "regression: (Fig. 3) floors against the network-error factor at one η; (Fig. 4) "
            "EASGD's worker–centre discrepancy for four α, m = 8; (Figs. 5–6) training loss "
            "against the runtime model's wall-clock k·Y + rounds·D.")
