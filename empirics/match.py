"""Bound ↔ run matching: which bound describes a run, the values of its symbols taken from the
run and the problem, the hypotheses the setting breaks, the bound along the recorded steps, and
the measured quantity that is the bound's left side.

* non-convex bounds (Cooperative SGD, Theorem 1, JMLR eq. 17): E[(1/K) Σ_{k<K} ‖∇F(u_k)‖²]
  with u_k the average of the m + v rows and u_0 = x₀ the paper's u_1 — the records' running
  average ``grad_norm2_running`` (exact with ``grad_every = 1``);
* PL bounds (Haddadpour et al. 2019): E[F(x̄_T)] − F* at T = the recorded step.

The bound is evaluated nominally (the constants' values), conservatively and optimistically
(every uncertain constant moved by ± its stated uncertainty: the largest and smallest value).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from empirics.spec import _COOPERATIVE, BOUNDS, ExperimentSpec

__all__ = ["auto_bound", "evaluate_bound", "failed_assumptions", "metric_of", "truth"]


def auto_bound(spec: ExperimentSpec, cfg: Any, problem: Any) -> str:
    name = spec.algorithm["name"]
    pl_lr = isinstance(spec.lr, dict) and spec.lr.get("kind") == "pl"
    if pl_lr:
        from theory.schedules import Periodic

        return "pl" if isinstance(cfg.schedule, Periodic) else "pl_intervals"
    if name in _COOPERATIVE:
        return name
    return "none"


def _values(spec: ExperimentSpec, cfg: Any, problem: Any, lr: Any) -> dict[str, float]:
    """Every value a bound may need, by symbol keyword, from the run and the problem."""
    c = problem.constants
    T = spec.steps
    periods = cfg.schedule.periods(T)
    vals: dict[str, float] = {
        "m": cfg.m, "v": cfg.v, "p": cfg.m, "K": T, "T": T, "B": spec.batch_size,
        "L": c.L.value, "sigma2_sample": c.sigma2.value,
        "F_gap": c.initial_gap,
    }
    from theory.stepsizes import Constant

    if isinstance(lr, Constant):
        vals["eta"] = lr.eta
    if c.mu is not None:
        vals["mu"] = c.mu.value
    from theory.schedules import Periodic

    if isinstance(cfg.schedule, Periodic):  # a last, truncated round still has period τ
        vals["tau"] = int(cfg.schedule.tau)
    elif len(periods) and np.all(periods == periods[0]):
        vals["tau"] = int(periods[0])
    W = getattr(cfg.schedule, "W", None)
    if W is not None:
        vals["zeta"] = float(W.zeta)
    alpha = cfg.params.get("alpha") if cfg.name == "easgd" else None
    if alpha is not None:
        vals["alpha"] = float(alpha)
    if isinstance(spec.lr, dict) and spec.lr.get("kind") == "pl":
        vals["alpha_pl"] = float(spec.lr.get("alpha_pl", 1.0))
    return vals


def failed_assumptions(bname: str, spec: ExperimentSpec, cfg: Any, problem: Any, lr: Any
                 ) -> list[str]:
    """Assumptions of the bound that the setting breaks (each a message)."""
    from theory.stepsizes import Constant

    c = problem.constants
    out = []
    z2 = c.zeta2_x0.value if c.zeta2_x0 is not None else 0.0
    if z2 > 1e-12:
        out.append(f"the theorem assumes i.i.d. data (every worker's gradient unbiased for ∇F); "
                   f"this split is heterogeneous (ζ²(x₀) = {z2:.3g})")
    if cfg.momentum or cfg.compressor is not None:
        out.append("the bound is for plain SGD local steps (this configuration has "
                   f"{'momentum' if cfg.momentum else 'a compressor'})")
    if bname in _COOPERATIVE:
        if not isinstance(lr, Constant):
            out.append("Theorem 1 is for a constant learning rate η (lr is a schedule)")
        if c.beta is not None and c.beta.value > 0:
            out.append(f"the recalled bound has no term for multiplicative noise β‖∇F‖² "
                       f"(β = {c.beta.value:.3g} > 0; its handling is in the unknown "
                       "learning-rate condition [NF])")
        if bname != "cooperative" and bname != cfg.name and not (
                bname == "pasgd" and cfg.name == "synchronous"):
            out.append(f"bound {bname!r} describes a different configuration than {cfg.name!r}")
        if "tau" not in _values(spec, cfg, problem, lr) and bname != "dpsgd":
            out.append("the bound needs a constant period τ (this schedule varies it)")
    else:  # PL family
        if c.mu is None:
            out.append("the PL bound needs a PL constant μ (this problem has none)")
        if not (isinstance(spec.lr, dict) and spec.lr.get("kind") == "pl"):
            out.append("the PL theorem's step size is η_t = 4/(μ(t + a)) (use lr = "
                       "{kind = 'pl'})")
        W = getattr(cfg.schedule, "W", None)
        if W is None or W.zeta > 1e-12:
            out.append("the PL bound is for local SGD with full averaging (W = J)")
        if bname == "pl" and "tau" not in _values(spec, cfg, problem, lr):
            out.append("bound 'pl' needs a constant period (use 'pl_intervals')")
    return out


def _bound_object(bname: str, spec: ExperimentSpec, cfg: Any) -> Any:
    import theory

    fn = getattr(theory, BOUNDS[bname][0])
    if bname == "easgd":
        return fn(cfg.params["alpha"])
    if bname == "pl_intervals":
        return fn([int(x) for x in cfg.schedule.periods(spec.steps)])
    return fn()


def _corners(problem: Any, vals: dict[str, float], b: Any) -> list[dict[str, float]]:
    """The values with each uncertain constant at value ± uncertainty (all combinations)."""
    from theory.symbols import keyword

    c = problem.constants
    need = {keyword(s) for s in b.free_symbols}
    ranges: dict[str, tuple[float, ...]] = {}
    for key, est in (("L", c.L), ("mu", c.mu), ("sigma2", c.sigma2)):
        if est is not None and est.uncertainty > 0 and key in need:
            f = vals[key] / est.value  # σ² enters per batch for some bounds
            lo = max(est.value - est.uncertainty, est.value * 1e-6)
            ranges[key] = (f * lo, f * (est.value + est.uncertainty))
    gap_unc = c.F0.uncertainty + c.F_star.uncertainty
    if gap_unc > 0 and "F_gap" in need:
        ranges["F_gap"] = (max(c.initial_gap - gap_unc, 0.0), c.initial_gap + gap_unc)
    out = []
    for combo in itertools.product(*ranges.values()):
        v = dict(vals)
        v.update(dict(zip(ranges, combo, strict=True)))
        out.append(v)
    return out or [dict(vals)]


def evaluate_bound(bname: str, spec: ExperimentSpec, cfg: Any, problem: Any, lr: Any,
                    steps: np.ndarray) -> tuple[dict[str, Any], list[str]]:
    """(arrays + info, failed conditions) of bound ``bname`` along ``steps``."""
    import sympy as sp

    from theory.symbols import keyword

    b = _bound_object(bname, spec, cfg)
    vals = _values(spec, cfg, problem, lr)
    # σ² in the bound is the variance of one worker's stochastic gradient (batch b) for the
    # Cooperative SGD bound, and the single-sample σ² with B separately for the PL bound
    vals["sigma2"] = vals["sigma2_sample"] / (spec.batch_size if bname in _COOPERATIVE else 1)
    step_key = "K" if bname in _COOPERATIVE else "T"
    need = {keyword(s): s for s in b.free_symbols}
    missing = sorted(k for k in need if k not in vals)
    info = {"name": b.name, "key": bname, "source": str(b.source),
            "status": str(b.source.status), "lhs": b.lhs, "expr": str(b.expr),
            "values": {k: vals[k] for k in sorted(need) if k in vals}}
    if missing:
        return info, [f"the bound needs {', '.join(missing)}, which this setting does not define"]
    final_map = {need[k]: vals[k] for k in need}
    failed = b.check(final_map)
    if failed:
        return info, failed
    scale = float(spec.bound_scale)

    def along(v: dict[str, float]) -> np.ndarray:
        if step_key not in need:  # the horizon is built in (pl_intervals): the last step only
            out = np.full(len(steps), np.nan)
            out[-1] = scale * b.evaluate({need[k]: v[k] for k in need}, check=False)
            return out
        sub = b.expr.subs({need[k]: v[k] for k in need if k != step_key})
        f = sp.lambdify(need[step_key], sub, "numpy")
        out = np.full(len(steps), np.nan)
        pos = steps > 0
        with np.errstate(all="ignore"):
            out[pos] = scale * np.asarray(f(steps[pos].astype(float)), dtype=float)
        return out

    nominal = along(vals)
    corner_vals = [along(v) for v in _corners(problem, vals, b)]
    info["terms"] = {k: float(t.subs(final_map)) for k, t in b.terms.items()}
    info["scale"] = scale
    info["conditions"] = [c.name for c in b.conditions]
    return {"info": info, "bound": nominal, "conservative": np.fmax.reduce(corner_vals),
            "optimistic": np.fmin.reduce(corner_vals)}, []


def metric_of(res: Any, metric: str, F_star: float) -> np.ndarray:
    if metric == "grad_norm2_running":
        return np.asarray(res.grad_norm2_running, dtype=float)
    if metric == "suboptimality":
        return np.asarray(res.loss, dtype=float) - F_star
    return np.asarray(res.grad_norm2, dtype=float)


def truth(spec: ExperimentSpec, problem: Any, cfg: Any, lr: Any, metric: str
           ) -> np.ndarray | None:
    from empirics.problems import NoisyQuadratic

    if type(problem) is not NoisyQuadratic or cfg.momentum or cfg.compressor is not None \
            or getattr(cfg.schedule, "adaptive", False):
        return None
    try:
        from empirics.recursion import exact_moments
    except ImportError:  # pragma: no cover - recursion module not available
        return None
    mom = exact_moments(problem, cfg, lr, spec.steps, batch_size=spec.batch_size,
                        record_every=spec.record_every)
    return np.asarray(getattr(mom, metric), dtype=float)


