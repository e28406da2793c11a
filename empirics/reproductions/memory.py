"""Memory-based distributed SGD, M-DSGD (Zhao, Gao, Li, arXiv:1905.12960): error feedback with
top-k and random-k, with and without momentum, against uncompressed (momentum) SGD.

Only the paper's abstract is verified; the update below is this toolkit's reconstruction from
the standard error-feedback construction (derived) as run by :func:`empirics.configs.mdsgd`:
worker k sends
C(m_k + η d_k), keeps m_k ← m_k + η d_k − C(·), the server averages what was sent (W = J, τ = 1);
d_k = g_k, or local heavy-ball v_k = β v_k + g_k.

Setting (our choices): ℓ2-regularised logistic regression, d = 50, m = 8 workers sampling all rows
(``sampling = "shared"``), batch 4 per worker, constant η = 0.2 for plain steps and η(1 − β) =
0.02 with β = 0.9 (the same effective step η/(1 − β)), k = d/10 = 5 coordinates sent, float32
values and ⌈log₂ d⌉-bit indices (``Compressor.bits``).

Claims checked:

1. EF with top-k / random-k reaches an error comparable to uncompressed SGD with the same momentum
   at the same number of steps (relative excess of the mean of F(u_t) − F* over the last quarter
   of the steps at most 25%, paired 95% interval) while sending k(32 + ⌈log₂ d⌉)/(32 d) of the
   bits (abstract [quoted]: "each worker communicates a sparse vector"; the "comparable error"
   reading is the EF literature's, not a quoted result of Zhao et al., whose theorems are not
   known here).
2. The memory stays bounded (derived): max_t E[(1/m) Σ_k ‖m_k‖²] against
   :func:`theory.bounds.memory.memory_bound` — the *derived* EF lemma 2(1−δ)(2−δ)η²G²/δ², NOT
   Zhao et al.'s constant (not known). G² ≥ sup E‖d‖² is estimated on the trajectory (see
   :func:`second_moment_estimate`).
3. The transformation equation (virtual sequence = DSGD) is not re-checked here: it is proved
   symbolically in ``tests/theory/test_memory_bound.py`` (``test_transformation_holds_
   symbolically``) and checked on engine traces in ``tests/empirics/test_identities.py``
   (``test_error_feedback_virtual_sequence_is_sgd``).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from empirics.reproductions.base import Claim, Context, Figure, Reproduction, predicted_cell
from empirics.stats import excess_p

NAME = "memory"
TITLE = "Memory-based distributed SGD: error feedback with top-k / random-k, bits and memory"
PAPER = ("Zhao, Gao, Li, On the Convergence of Memory-Based Distributed SGD (arXiv:1905.12960) — "
         "abstract verified, update and claims derived")

M = 8            #: workers
D = 50           #: features
K_FRACTION = 10  #: k = d / K_FRACTION coordinates sent
BATCH = 4
ETA = 0.2        #: plain step; momentum runs use ETA·(1 − BETA)
BETA = 0.9
L2 = 0.02
ERROR_TOL = 0.25  #: "comparable": relative excess of the mean final error ≤ 25%
LEVEL = 0.05
TAIL = 0.25       #: the error compared is the mean over the last 25% of the steps
G2_POINTS = 60    #: trajectory points at which E‖g‖² is evaluated exactly

ZHAO_PAPER = ("Zhao, Gao, Li 2019 (abstract [quoted]; M-DSGD update [derived]; theorems not "
              "known)")


def _settings(ctx: Context) -> dict[str, Any]:
    return ctx.pick(
        smoke={"T": 150, "seeds": 2, "record": 10, "n_samples": 1024},
        default={"T": 1500, "seeds": 5, "record": 10, "n_samples": 4096},
        full={"T": 6000, "seeds": 10, "record": 20, "n_samples": 4096},
    )


def problem_spec(n_samples: int) -> dict[str, Any]:
    return {"kind": "logistic_regression", "n_samples": n_samples, "d": D, "l2": L2, "seed": 0,
            "sampling": "shared"}


def methods() -> dict[str, dict[str, Any]]:
    """label → (algorithm dict, momentum β, compressor name or None)."""
    k = D // K_FRACTION
    out: dict[str, dict[str, Any]] = {}
    for beta in (0.0, BETA):
        tag = f" + momentum β={beta}" if beta else ""
        mom = {"momentum": beta} if beta else {}
        out["SGD" + tag] = {"algorithm": {"name": "synchronous", "m": M, **mom},
                            "beta": beta, "compressor": None}
        for cname, label in (("topk", "top-k"), ("randk", "random-k")):
            out[f"{label} EF{tag}"] = {
                "algorithm": {"name": "mdsgd", "m": M, "compressor": f"{cname}:k={k}", **mom},
                "beta": beta, "compressor": cname}
    return out


def _spec(ctx: Context, s: dict[str, Any], name: str, meth: dict[str, Any]) -> Any:
    from empirics.experiment import ExperimentSpec

    lr = ETA * (1 - meth["beta"])
    return ExperimentSpec(name=name, problem=problem_spec(s["n_samples"]),
                          algorithm=meth["algorithm"], lr=lr, steps=s["T"], batch_size=BATCH,
                          seeds=s["seeds"], device=ctx.device, dtype="float64",
                          record_every=s["record"], grad_every=0, bound="none",
                          metric="suboptimality", level=LEVEL)


def second_moment_estimate(spec: Any, seed: int = 0, points: int = G2_POINTS
                           ) -> dict[str, Any]:
    """Estimate G² ≥ sup_t E‖g_t‖² for one worker's stochastic gradient (batch B) on the run's
    trajectory: rerun seed ``seed`` of ``spec`` with a trace (same numbers as the cached run) and
    evaluate exactly, at ``points`` evenly spaced steps t, the conditional second moment
    E_t‖g‖² = ‖∇F(w_t)‖² + σ²(w_t)/B (every worker samples all rows, so it is the same for every
    worker; σ² from all n per-sample gradients), plus x₀ and x*. The estimate is the maximum.

    Caveat: a maximum over one trajectory's points, not a supremum over all reachable iterates,
    and E_t at the realised w_t stands in for the unconditional E‖g_t‖².
    """
    from empirics.engine import RunSpec, run
    from empirics.experiment import build_config, build_lr, build_problem

    problem = build_problem(spec)
    cfg = build_config(spec)
    lr = build_lr(spec, problem, cfg)
    rs = RunSpec(problem, cfg, lr, spec.steps, batch_size=spec.batch_size, seed=seed,
                 device=spec.device, dtype=spec.dtype, record_every=spec.record_every,
                 grad_every=0)
    _, tr = run(rs, trace=True)
    X = np.asarray(tr.X)  # (K+1, m, d); with W = J and τ = 1 every row is w_t
    idx = np.unique(np.linspace(0, X.shape[0] - 1, points).round().astype(int))
    vals = []
    shapes = problem.param_shapes

    def moment(w: np.ndarray) -> float:
        import torch

        params = {"w": torch.as_tensor(w.reshape(shapes["w"]), dtype=torch.float64)}
        return problem.grad_norm2(params) + problem.sigma2_at(params, spec.batch_size)

    for t in idx:
        vals.append(moment(X[t, 0]))
    x_star = problem.x_star["w"].numpy()
    at_star = moment(x_star)
    realised = np.asarray(tr.grads)
    realised_max = float((realised ** 2).sum(-1).max())
    return {"G2": float(max(max(vals), at_star)), "at_x0": float(vals[0]),
            "at_x_star": float(at_star), "steps": idx.tolist(), "values": vals,
            "realised_max_norm2": realised_max,
            "method": f"max over {len(idx)} evenly spaced steps of seed {seed}'s trajectory "
                      "(and x*) of the exact E_t‖g‖² = ‖∇F(w_t)‖² + σ²(w_t)/B"}


def memory_verdict(per_seed: np.ndarray, bound: float, level: float = LEVEL
                   ) -> tuple[str, float | None, int]:
    """(holds/violated/untested, Bonferroni p-value, worst column): one-sided t-test of
    H0: E[memory_t] ≤ bound at every recorded step t (columns of ``per_seed``); "untested"
    with one seed (a verdict needs a test over ≥ 2 seeds, as :func:`empirics.stats.
    bound_test`)."""
    x = np.asarray(per_seed, dtype=float)
    worst = int(np.argmax(x.mean(0)))
    if x.shape[0] < 2:
        return "untested", None, worst
    p_adj, _, _ = excess_p(x, bound)
    return ("violated" if p_adj < level else "holds"), p_adj, worst


def predicted_column(res: Any, column: str) -> tuple[np.ndarray | None, str, str]:
    """(the predicted record column, regime, why not) of a result's prediction."""
    pr = getattr(res, "prediction", None) or {}
    if pr.get("values") is None:
        return None, "", pr.get("reason", "no prediction")
    col = (pr.get("columns") or {}).get(column)
    if col is None:
        return None, "", f"{column} not predicted"
    return np.asarray([np.nan if x is None else x for x in col], float), pr["regime"], ""


def predicted_tail(res: Any, frac: float = TAIL) -> float | None:
    """The predicted mean of F(u_t) − F* over the same records as :func:`tail_mean`."""
    col, _, _ = predicted_column(res, "suboptimality")
    if col is None:
        return None
    steps = np.asarray(res.steps)
    return float(col[steps >= (1 - frac) * steps[-1]].mean())


def tail_mean(res: Any, frac: float = TAIL) -> np.ndarray:
    """Per seed, the mean of F(u_t) − F* over the recorded steps t ≥ (1 − frac)·T (the constant-η
    noise floor, averaged to reduce the variance of a single record)."""
    steps = np.asarray(res.steps)
    sel = steps >= (1 - frac) * steps[-1]
    return np.asarray(res.per_seed[:, sel], dtype=float).mean(axis=1)


def _paired_excess(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    from empirics.reproductions.local_pl import paired_relative_excess

    return paired_relative_excess(a, b, LEVEL)


def reproduce(ctx: Context) -> Reproduction:
    """Run the six methods, then the claims (error at equal steps, bits, memory bound)."""
    from empirics.compressors import make
    from empirics.experiment import run_experiment
    from theory.bounds.local_pl import G2
    from theory.bounds.memory import memory_bound
    from theory.symbols import delta, eta

    t0 = time.perf_counter()
    s = _settings(ctx)
    meths = methods()
    res = {label: run_experiment(_spec(ctx, s, f"memory_{i}", m), progress=ctx.progress,
                                 cache=ctx.cache)
           for i, (label, m) in enumerate(meths.items())}
    final = {label: tail_mean(r) for label, r in res.items()}
    bits = {label: float(r.runs[0].bits[-1]) for label, r in res.items()}
    k = D // K_FRACTION
    claims: list[Claim] = []

    # claim 1: comparable error, fewer bits
    for label, meth in meths.items():
        if meth["compressor"] is None:
            continue
        base = "SGD" + (f" + momentum β={meth['beta']}" if meth["beta"] else "")
        est, lo, hi = _paired_excess(final[label], final[base])
        verdict = "agrees" if hi <= ERROR_TOL else ("disagrees" if lo > ERROR_TOL
                                                    else "inconclusive")
        comp = make(meth["compressor"], k=k)
        predicted = comp.bits(D) / make("identity").bits(D)
        ratio = bits[label] / bits[base]
        pe, pb = predicted_tail(res[label]), predicted_tail(res[base])
        reg = (res[label].prediction or {}).get("regime", "")
        if pe is None:
            pcell, prat = predicted_cell(None, None, None,
                                         (res[label].prediction or {}).get("reason", ""))
        else:
            pcell, prat = predicted_cell(pe, float(final[label].mean()), reg)
            if pb is not None:
                pcell += f"; relative excess {pe / pb - 1:+.1%}"
        claims.append(Claim(
            claim=f"{label}: error comparable to {base} at the same number of steps, with "
                  f"k/d = 1/{K_FRACTION} of the coordinates sent",
            paper=ZHAO_PAPER + "; 'comparable error' from the EF literature, not quoted",
            measured=f"T = {s['T']}: mean of F(u_t) − F* over t ∈ [{1 - TAIL:g}T, T] = "
                     f"{final[label].mean():.3g} vs "
                     f"{final[base].mean():.3g} (relative excess {est:+.1%} [{lo:+.1%}, "
                     f"{hi:+.1%}], paired 95%, {s['seeds']} seeds); bits {bits[label]:.3g} vs "
                     f"{bits[base]:.3g} = {ratio:.4f}× (predicted k(32 + ⌈log₂d⌉)/(32d) = "
                     f"{predicted:.4f})",
            verdict=verdict if abs(ratio - predicted) < 1e-9 else "disagrees",
            predicted=pcell, predicted_ratio=prat,
            detail={"predicted_tail": pe, "predicted_tail_baseline": pb,
                    "tolerance": f"agrees iff the upper 95% limit of the relative excess ≤ "
                                 f"{ERROR_TOL:.0%}; disagrees iff the lower limit > it",
                    "excess": [est, lo, hi], "bits_ratio": ratio,
                    "bits_ratio_predicted": predicted}))

    # claim 2: the memory is bounded
    bound_expr = memory_bound("contraction").expr
    g2 = {}
    for i, (label, meth) in enumerate(meths.items()):
        if meth["compressor"] is None:
            continue
        spec = _spec(ctx, s, f"memory_{i}", meth)
        key = {"g2": spec.to_dict(), "seed": 0, "points": G2_POINTS, "version": 1}
        est = ctx.cache.get_or_run(key, lambda spec=spec: second_moment_estimate(spec))
        g2[label] = est
        beta = meth["beta"]
        G2_dir = est["G2"] / (1 - beta) ** 2  # E‖v‖² ≤ G²/(1−β)² (Jensen on the β-weights)
        eta_ = ETA * (1 - beta)
        dlt = k / D
        bnd = float(bound_expr.subs({delta: dlt, eta: eta_, G2: G2_dir}))
        mem = np.stack([np.asarray(r.memory_norm2_workers, float) for r in res[label].runs])
        status, p_adj, worst = memory_verdict(mem, bnd)
        peak = float(mem.mean(0)[worst])
        pm, reg, why = predicted_column(res[label], "memory_norm2_workers")
        if pm is None:
            pcell, prat = predicted_cell(None, None, None, why)
        else:
            jp = int(np.nanargmax(pm))
            pcell, prat = predicted_cell(float(pm[jp]), peak, reg)
            pcell += f" at step {int(res[label].steps[jp])}"
        claims.append(Claim(
            claim=f"{label}: the error-feedback memory stays bounded, "
                  "sup_t E‖m_t‖² ≤ 2(1−δ)(2−δ)η²G²/δ²",
            paper="bounded memory [derived]; bound derived (EF lemma, Stich et al. 2018, "
                  "Karimireddy et al. 2019), NOT Zhao et al.'s constant (not known)",
            measured=f"max_t of the seed-mean (1/m)Σ‖m_k‖² = {peak:.3g} (step "
                     f"{int(res[label].steps[worst])}); G² estimate {est['G2']:.3g}"
                     + (f", momentum direction G²/(1−β)² = {G2_dir:.3g}" if beta else "")
                     + f", δ = k/d = {dlt}, η = {eta_:g}",
            bound=f"{bnd:.4g}", verdict=status, tightness=bnd / peak if peak > 0 else None,
            predicted=pcell, predicted_ratio=prat,
            detail={"p_value": p_adj, "G2": est["G2"], "G2_direction": G2_dir,
                    "predicted_memory": None if pm is None else pm.tolist(),
                    "G2_method": est["method"], "G2_at_x0": est["at_x0"],
                    "G2_at_x_star": est["at_x_star"],
                    "realised_max_grad_norm2": est["realised_max_norm2"],
                    "caveat": "G² is an on-trajectory estimate (one seed, finitely many "
                              "points), not a proven supremum; for momentum the direction's "
                              "second moment is bounded by G²/(1−β)² (derived)"}))

    figures = [_figure_bits(ctx, res, s), _figure_memory(ctx, res, meths, claims, s)]
    data = {
        "settings": {**s, "m": M, "d": D, "k": k, "batch": BATCH, "eta": ETA, "beta": BETA,
                     "l2": L2, "problem": problem_spec(s["n_samples"])},
        "constants": {k_: v["value"] for k_, v in next(iter(res.values())).constants.items()
                      if isinstance(v, dict) and "value" in v},
        "final": {label: {"mean": float(v.mean()), "per_seed": v.tolist(), "bits": bits[label]}
                  for label, v in final.items()},
        "g2": g2,
        "references": {"transformation_equation": [
            "tests/theory/test_memory_bound.py::test_transformation_holds_symbolically",
            "tests/empirics/test_identities.py::test_error_feedback_virtual_sequence_is_sgd"]},
    }
    return Reproduction(NAME, TITLE, PAPER, ctx.scale, claims, figures, data,
                        seconds=time.perf_counter() - t0)


# --- figures ------------------------------------------------------------------------------------
def _style(label: str) -> str:
    return "--" if "momentum" in label else "-"


def _figure_bits(ctx: Context, res: dict[str, Any], s: dict[str, Any]) -> Figure:
    from empirics.plots import axes, band, new_figure

    fig, (ax1, ax2) = new_figure(2)
    colors = {"SGD": "C0", "top-k": "C1", "random-k": "C2"}
    for label, r in res.items():
        color = colors[label.split(" ")[0]]
        k = np.asarray(r.steps, dtype=float)
        b = np.asarray(r.runs[0].bits, dtype=float)
        ok = k > 0
        band(ax1, b[ok], r.mean[ok], r.lower[ok], r.upper[ok], label=label, color=color,
             style=_style(label))
        band(ax2, k[ok], r.mean[ok], r.lower[ok], r.upper[ok], label=label, color=color,
             style=_style(label))
    axes(ax1, "bits sent by all workers", "F(u) − F*", log="xy")
    axes(ax2, "steps", "F(u) − F*", log="xy", legend=True)
    return ctx.save_figure(fig, "memory_bits",
            f"Logistic regression, m = {M}, d = {D}, k = {D // K_FRACTION}, "
            f"T = {s['T']}: F(u) − F* against bits sent and against steps (mean and "
            "95% band over seeds); dashed: momentum β = 0.9 at η(1 − β).")


def _figure_memory(ctx: Context, res: dict[str, Any], meths: dict[str, Any],
                   claims: list[Claim], s: dict[str, Any]) -> Figure:
    from empirics.plots import axes, band, new_figure

    fig, ax = new_figure(1)
    bounds = {c.claim.split(":")[0]: float(c.bound) for c in claims if "memory" in c.claim}
    for i, (label, meth) in enumerate(meths.items()):
        if meth["compressor"] is None:
            continue
        r = res[label]
        mem = np.stack([np.asarray(x.memory_norm2_workers, float) for x in r.runs])
        k = np.asarray(r.steps, dtype=float)
        ok = k > 0
        mean = mem.mean(0)
        sd = mem.std(0, ddof=1) if mem.shape[0] > 1 else np.zeros_like(mean)
        half = 1.96 * sd / math.sqrt(mem.shape[0])
        color = f"C{i}"
        band(ax, k[ok], mean[ok], np.maximum(mean - half, 1e-12)[ok], (mean + half)[ok],
             label=label, color=color, style=_style(label))
        ax.axhline(bounds[label], color=color, linestyle=":", linewidth=1)
        pm, _, _ = predicted_column(r, "memory_norm2_workers")
        if pm is not None:
            ax.plot(k[ok], pm[ok], "-.", color=color, linewidth=1.2, alpha=0.8)
    axes(ax, "steps", "(1/m) Σ_k ‖m_k‖²", log="xy", legend=True)
    return ctx.save_figure(fig, "memory_norm",
            f"Error-feedback memory (1/m)Σ‖m_k‖² (mean, 95% band over {s['seeds']} "
            "seeds) against steps; dotted: the derived EF bound "
            "2(1−δ)(2−δ)η²G²/δ² with the on-trajectory G² estimate; dash-dot: the predictor "
            "(random-k only: top-k's second moment is not linear, out of its regime).")


__all__ = ["NAME", "PAPER", "TITLE", "memory_verdict", "methods", "predicted_column",
           "predicted_tail", "problem_spec", "reproduce", "second_moment_estimate"]
