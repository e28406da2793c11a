"""Bound ↔ run matching, driven by the :class:`~theory.bound.Setting` a bound carries.

A bound speaks about a run through its setting: the measured quantity that is its left side
(``metric``), the symbol that is the run's length (``horizon``), the hypotheses the run must
satisfy (``assumptions``, see :data:`theory.bound.ASSUMPTIONS`), the step size it prescribes
and the configurations it describes. This module

* chooses the registered bound that describes a run (:func:`choose_bound`), or takes the user's
  own :class:`~theory.bound.Bound`;
* gives every symbol a value from the run and the problem (:func:`run_values`: m, v, τ, ζ(W),
  η, b, K/T, L, σ², F(x₀) − F*, μ, κ², β, …; a symbol nothing defines is named with what is
  available, and ``values=`` supplies the rest);
* names every hypothesis the setting breaks (:func:`hypotheses`): "holds" may only be said
  inside all of them, and a bound's own conditions (its learning-rate condition) are checked
  at the run's values; a hypothesis the setting declares *not known* (``Setting.unknown``)
  can never be checked, so a test against such a bound is inconclusive
  (:func:`unverifiable`);
* evaluates the bound along the recorded steps (:func:`evaluate`): nominal, conservative and
  optimistic (every uncertain constant moved by ± its stated uncertainty). Steps where the
  theorem says nothing (τ ∤ K) get no value.

Left sides: ``grad_norm2_running`` = (1/K) Σ_{k<K} ‖∇F(u_k)‖² with u_0 = x₀ (Cooperative SGD,
JMLR Theorem 1, eq. 17); ``suboptimality`` = F(u_T) − F* (Haddadpour et al. 2019);
``grad_norm2`` = ‖∇F(u_K)‖².
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from theory.bound import METRICS, Bound
from theory.bounds import registry

__all__ = ["METRICS", "Match", "choose_bound", "evaluate", "hypotheses", "lemma2",
           "metric_of", "run_values", "truth", "unverifiable"]

#: relative tolerance for "κ² = 0", "α = α*" and similar exact hypotheses
_TOL = 1e-9


@dataclass
class Match:
    """A bound matched with a run: ``key`` (registry name, ``"user"`` or ``"none"``), the bound,
    the values of its symbols, the failed hypotheses and conditions (each a message naming what
    fails and its value)."""

    key: str
    bound: Bound | None
    values: dict[str, float] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


def _lr_kind(lr: Any) -> str:
    """``"constant"``, ``"pl"`` (the PL theorem's η_t) or ``"schedule"`` for a built step size."""
    from theory.stepsizes import Constant, PLStepsize

    return ("constant" if isinstance(lr, Constant) else "pl" if isinstance(lr, PLStepsize)
            else "schedule")


def _periods(cfg: Any, T: int) -> np.ndarray | None:
    if getattr(cfg.schedule, "adaptive", False):
        return None
    return np.asarray(cfg.schedule.periods(T), dtype=np.int64)


def _constant_tau(cfg: Any, T: int) -> int | None:
    """The one period τ of the run (a last, truncated round still has period τ), or None."""
    from theory.schedules import Periodic

    if isinstance(cfg.schedule, Periodic):
        return int(cfg.schedule.tau)
    p = _periods(cfg, T)
    if p is not None and len(p) and np.all(p == p[0]):
        return int(p[0])
    return None


def _single_W(cfg: Any) -> Any:
    return getattr(cfg.schedule, "W", None)


def run_values(spec: Any, cfg: Any, problem: Any, lr: Any) -> dict[str, float]:
    """Every value a bound may need, by symbol keyword, from the run and the problem.

    σ² is given twice: ``sigma2_sample`` (one sample's gradient variance) and ``sigma2_batch``
    (a worker's mini-batch of b samples: σ²/b); :func:`evaluate` uses the one the bound's
    setting names."""
    from theory.stepsizes import Constant

    c = problem.constants
    T = spec.steps
    vals: dict[str, float] = {
        "m": cfg.m, "v": cfg.v, "p": cfg.m, "N": cfg.m, "K": T, "T": T, "B": spec.batch_size,
        "L": c.L.value, "sigma2_sample": c.sigma2.value,
        "sigma2_batch": c.sigma2.value / spec.batch_size, "F_gap": c.initial_gap,
        "beta": c.beta.value if c.beta is not None else 0.0,
    }
    if isinstance(lr, Constant):
        vals["eta"] = lr.eta
    if c.mu is not None:
        vals["mu"] = c.mu.value
    kappa2 = getattr(c, "kappa2", None)
    if kappa2 is not None:
        vals["kappa2"] = kappa2.value
    tau = _constant_tau(cfg, T)
    if tau is not None:
        vals["tau"] = tau
    W = _single_W(cfg)
    if W is not None:
        vals["zeta"] = float(W.zeta)
    if cfg.name == "easgd":
        vals["alpha"] = float(cfg.params["alpha"])
    if _lr_kind(lr) == "pl":
        vals["alpha_pl"] = float(lr.alpha_pl)
    return vals


def choose_bound(spec: Any, cfg: Any, problem: Any, lr: Any) -> tuple[str, Bound | None]:
    """(key, bound) for the spec: its ``bound`` (a registered name, or a Bound object), or with
    ``"auto"`` the first registered bound whose setting describes the configuration and whose
    step size is the run's (preferring one that needs no constant period when the period
    varies); ``("none", None)`` when none does."""
    chosen = spec.bound
    if isinstance(chosen, Bound):
        return "user", chosen
    if chosen == "none":
        return "none", None
    if chosen != "auto":
        key = registry.resolve(chosen)
        return key, registry.build(key, **_from_run(registry.get(key), spec, cfg))
    lr_kind = _lr_kind(lr)
    constant = _constant_tau(cfg, spec.steps) is not None
    ranked: list[tuple[int, int, Any]] = []  # (preference, registry order, entry)
    for i, e in enumerate(registry.entries()):
        s = _setting_of(e)
        if s is None or cfg.name not in s.describes:
            continue
        fits_lr = s.stepsize in (lr_kind, "any")
        fits_period = constant or "constant_period" not in s.assumptions
        ranked.append((0 if fits_lr and fits_period else 1 if fits_lr else 2, i, e))
    if not ranked:
        return "none", None
    # the best fit; a bound whose step size differs still answers, with "not applicable"
    e = min(ranked, key=lambda t: t[:2])[2]
    return e.name, e.build(**_from_run(e, spec, cfg))


def _setting_of(entry: Any) -> Any:
    """The setting of a registered bound (one built from a run: read from a small instance)."""
    try:
        b = entry.build(**{k: [1] for k in entry.from_run})
    except (TypeError, ValueError):
        return None
    return getattr(b, "setting", None)


def _from_run(entry: Any, spec: Any, cfg: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in entry.from_run:
        if k == "periods":
            p = _periods(cfg, spec.steps)
            if p is None:
                raise ValueError(f"bound {entry.name!r} needs the run's periods, which an "
                                 f"adaptive schedule does not fix in advance")
            out[k] = [int(x) for x in p]
    return out


def hypotheses(b: Bound, spec: Any, cfg: Any, problem: Any, lr: Any) -> list[str]:
    """The hypotheses of ``b``'s setting the run breaks, each a message naming it and the value
    that breaks it (empty: every hypothesis holds). Bounds without a setting fail with a
    message saying they cannot be matched with a run."""

    s = b.setting
    if s is None:
        return [f"bound {b.name!r} declares no setting (metric, horizon, hypotheses), so it "
                f"cannot be matched with a run: give it one with Bound.with_setting(...)"]
    c = problem.constants
    out: list[str] = []
    if s.describes and cfg.name not in s.describes:
        out.append(f"bound {b.name!r} describes {list(s.describes)}, not {cfg.name!r}")
    if s.stepsize == "constant" and _lr_kind(lr) != "constant":
        out.append("the theorem is for a constant learning rate η (lr is a schedule)")
    if s.stepsize == "pl" and _lr_kind(lr) != "pl":
        out.append("the PL theorem's step size is η_t = 4/(μ(t + a)) (use lr = {kind = 'pl'})")
    T = spec.steps
    params = {str(x) for x in b.parameters}
    for a in s.assumptions:
        msg = _broken(a, b, spec, cfg, problem, c, T, params)
        if msg:
            out.append(f"{msg} [hypothesis {a}]")
    return out


def unverifiable(b: Bound, verdict: Any) -> Any:
    """``verdict`` (a :class:`~empirics.stats.Verdict`) unless it is "holds" or "violated" and
    ``b``'s setting declares hypotheses that are not known (``Setting.unknown``): then an
    "inconclusive" verdict that keeps the test's numbers, says where the measurement lies and
    names those hypotheses — a run cannot be shown inside a hypothesis nobody can state, so
    neither "holds" nor "violated" may be said."""
    unknown = b.setting.unknown if b.setting is not None else ()
    if not unknown or verdict.status not in ("holds", "violated"):
        return verdict
    where = "below" if verdict.status == "holds" else "above"
    msg = (f"the measurement is {where} the bound ({verdict.message}), but a verdict needs "
           f"every hypothesis of the theorem and {'; '.join(unknown)} "
           f"{'is' if len(unknown) == 1 else 'are'} not known, so the run cannot be shown "
           f"inside {'it' if len(unknown) == 1 else 'them'}: inconclusive [hypothesis not "
           f"known]")
    return replace(verdict, status="inconclusive", message=msg)


def _broken(a: str, b: Bound, spec: Any, cfg: Any, problem: Any, c: Any, T: int,
            params: set[str]) -> str | None:
    """Why the run breaks hypothesis ``a`` (None if it holds)."""
    if a == "iid":
        k2 = getattr(c, "kappa2", None)
        het = k2.value if k2 is not None else (c.zeta2_x0.value if c.zeta2_x0 else 0.0)
        if het > _TOL * max(1.0, c.sigma2.value):
            return (f"the theorem assumes i.i.d. data, every worker's gradient unbiased for ∇F; "
                    f"this split is heterogeneous (κ² = {het:.3g})")
    elif a == "plain_sgd":
        what = ("momentum" if cfg.momentum else "a compressor" if cfg.compressor is not None
                else "compressed gossip" if cfg.gossip is not None else None)
        if what:
            return f"the bound is for plain SGD local steps (this configuration has {what})"
    elif a == "additive_noise":
        if c.beta is not None and c.beta.value > 0 and "beta" not in params:
            return (f"the bound assumes additive noise (β = 0); this problem's noise grows with "
                    f"‖∇F‖² (β = {c.beta.value:.3g}): use the general-β form (eq. 143)")
    elif a == "symmetric_W":
        for W in _mixing_matrices(cfg, T):
            z = float(W.zeta)
            if not z < 1:
                return (f"Assumption 5 needs ζ(W) < 1; a W of this schedule has ζ = {z:.6g} "
                        f"(disconnected or block-diagonal mixing)")
    elif a == "constant_period":
        if _constant_tau(cfg, T) is None:
            return "the bound needs one period τ for the whole run (this schedule varies it)"
    elif a == "tau_divides_K":
        tau = _constant_tau(cfg, T)
        if tau is not None and tau > T:
            return (f"τ = {tau} > K = {T}: no averaging inside the horizon, so τ | K never "
                    f"holds")
    elif a == "full_averaging":
        if any(not W.is_average for W in _mixing_matrices(cfg, T)):
            return "the bound is for local SGD with full averaging (every W = J)"
    elif a == "pl":
        if c.mu is None:
            return "the bound needs a PL constant μ (this problem has none)"
    elif a == "alpha_optimal":
        alpha = cfg.params.get("alpha") if cfg.name == "easgd" else None
        star = 2 / (cfg.m + 2)
        if alpha is None or abs(alpha - star) > _TOL:
            return f"the bound is at α* = 2/(m+2) = {star:.6g} (the run has α = {alpha})"
    return None


def _mixing_matrices(cfg: Any, T: int) -> list[Any]:
    """The distinct W ≠ I a (static) schedule applies within T steps."""
    W = _single_W(cfg)
    if W is not None:
        return [] if W.is_identity else [W]
    if getattr(cfg.schedule, "adaptive", False):
        return []
    seen: dict[int, Any] = {}
    for r in cfg.schedule.rounds(T):
        if r.W is not None and not r.W.is_identity:
            seen.setdefault(id(r.W), r.W)
    return list(seen.values())


def _corners(problem: Any, vals: dict[str, float], need: set[str], sigma2_key: str
             ) -> list[dict[str, float]]:
    """The values with each uncertain constant at value ± uncertainty (all combinations)."""
    c = problem.constants
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


def evaluate(b: Bound, vals: dict[str, float], steps: np.ndarray, problem: Any, *,
             scale: float = 1.0, per_step: dict[str, np.ndarray] | None = None,
             tau_divides: int | None = None) -> tuple[dict[str, Any], list[str]]:
    """(arrays + info, failures) of bound ``b`` along the recorded ``steps``.

    ``vals``: scalar values by keyword (:func:`run_values`, plus the user's); ``per_step``:
    values that change with the step (e.g. ``consensus_avg``, measured), arrays over ``steps``;
    ``tau_divides``: evaluate only where τ divides the step (the theorem says nothing
    elsewhere). Failures: a symbol with no value (naming what is available) or a condition that
    fails at the run's values (with its largest admissible η where it has one)."""
    import sympy as sp

    from theory.symbols import keyword

    s = b.setting
    horizon = s.horizon if s is not None else None
    sigma2_key = "sigma2_sample" if (s is not None and s.sigma2 == "sample") else "sigma2_batch"
    vals = {**vals, "sigma2": vals[sigma2_key]} if sigma2_key in vals else dict(vals)
    per_step = per_step or {}
    need = {keyword(x): x for x in b.parameters}
    info: dict[str, Any] = {
        "name": b.name, "source": str(b.source), "status": str(b.source.status),
        "lhs": b.lhs, "expr": str(b.expr),
        "values": {k: vals[k] for k in sorted(need) if k in vals}}
    missing = sorted(k for k in need if k not in vals and k not in per_step
                     and k != horizon)
    if missing:
        avail = sorted(k for k in vals if k not in ("sigma2_sample", "sigma2_batch"))
        return info, [f"the bound needs {', '.join(missing)}, which this run does not define "
                      f"(it defines {', '.join(avail)}; give the rest in bound_values)"]
    final = {need[k]: (per_step[k][-1] if k in per_step else vals[k]) for k in need
             if k != horizon or k in vals}
    if horizon in need:
        final[need[horizon]] = float(steps[-1])
    failed = b.check(final)
    if failed:
        return info, failed
    ok = steps > 0
    if tau_divides:
        ok &= steps % tau_divides == 0
        info["steps_evaluated"] = f"the {int(ok.sum())} recorded steps K with τ = " \
                                  f"{tau_divides} | K (the theorem's K is a multiple of τ)"
    if not ok.any():
        return info, [f"no recorded step K is a multiple of τ = {tau_divides} (τ | K)"]
    args = [need[k] for k in sorted(need) if k == horizon or k in per_step]

    def along(v: dict[str, float]) -> np.ndarray:
        fixed = {need[k]: v[k] for k in need if k != horizon and k not in per_step}
        expr = b.expr.subs(fixed)
        out = np.full(len(steps), np.nan)
        if not args:  # the horizon is built in: the last step only
            out[-1] = scale * float(expr)
            return out
        f = sp.lambdify(args, expr, "numpy")
        cols = [steps[ok].astype(float) if str(a) == str(need.get(horizon)) else
                np.asarray(per_step[keyword(a)], dtype=float)[ok] for a in args]
        with np.errstate(all="ignore"):
            out[ok] = scale * np.broadcast_to(np.asarray(f(*cols), dtype=float), (ok.sum(),))
        return out

    nominal = along(vals)
    corner_vals = [along(v) for v in _corners(problem, vals, set(need), sigma2_key)]
    info["terms"] = {k: float(t.subs(final)) for k, t in b.terms.items()}
    info["scale"] = scale
    info["conditions"] = [c.name for c in b.conditions]
    return {"info": info, "bound": nominal, "conservative": np.fmax.reduce(corner_vals),
            "optimistic": np.fmin.reduce(corner_vals)}, []


def lemma2(vals: dict[str, float], steps: np.ndarray, consensus_running: np.ndarray,
           problem: Any, tau_divides: int | None = None) -> tuple[np.ndarray | None, list[str]]:
    """Lemma 2 (JMLR eq. 38) per seed along ``steps``: the descent-lemma bound with the
    *measured* average consensus distance Ξ_K = (1/K)Σ_{k<K}‖X_k(I − J)‖²_F/m
    (``consensus_running`` is seeds × steps, before the division by m). Returns (seeds × steps
    nominal values or None, failures)."""
    import theory

    b = theory.lemma2_bound(beta=None if vals.get("beta", 0.0) > 0 else 0)
    rows = []
    for cr in np.atleast_2d(consensus_running):
        ev, failed = evaluate(b, vals, steps, problem,
                              per_step={"consensus_avg": np.asarray(cr) / vals["m"]},
                              tau_divides=tau_divides)
        if failed:
            return None, failed
        rows.append(ev["bound"])
    return np.asarray(rows), []


def metric_of(res: Any, metric: str, F_star: float) -> np.ndarray:
    """The measured left side along the records of one run."""
    if metric == "grad_norm2_running":
        return np.asarray(res.grad_norm2_running, dtype=float)
    if metric == "suboptimality":
        return np.asarray(res.loss, dtype=float) - F_star
    if metric == "grad_norm2":
        return np.asarray(res.grad_norm2, dtype=float)
    raise ValueError(f"metric must be one of {sorted(METRICS)} (got {metric!r})")


def truth(spec: Any, problem: Any, cfg: Any, lr: Any, metric: str) -> np.ndarray | None:
    """The exact expectation of the metric where the problem admits one (the noisy quadratic
    under plain SGD: :mod:`empirics.recursion`), else None."""
    from empirics.problems import NoisyQuadratic

    if type(problem) is not NoisyQuadratic or cfg.momentum or cfg.compressor is not None \
            or getattr(cfg.schedule, "adaptive", False) or cfg.gossip is not None:
        return None
    from empirics.recursion import exact_moments
    from empirics.spec import default_strides

    every = default_strides(problem, cfg.m, spec.batch_size, spec.steps, spec.record_every,
                            spec.grad_every)[0]
    mom = exact_moments(problem, cfg, lr, spec.steps, batch_size=spec.batch_size,
                        record_every=every)
    out = getattr(mom, metric, None)
    return None if out is None else np.asarray(out, dtype=float)

