"""Matched verification: one experiment spec → the runs, the bound with exactly the spec's
parameters, and a verdict.

:func:`run_experiment` trains the configuration of an :class:`~empirics.spec.ExperimentSpec`
once per seed (:meth:`~empirics.spec.ExperimentSpec.run_spec`), measures what the bound bounds
(:mod:`empirics.match`), evaluates the bound with the run's own m, v, τ, ζ(W), η, b, K and the
problem's constants, and returns an :class:`ExperimentResult`:

* the metric per seed and its mean with a two-sided (1 − level) Student-t band over seeds;
* the bound per recorded step: nominal, conservative and optimistic (every uncertain constant
  moved by ± its stated uncertainty);
* the exact expectation where the engine's problem admits one (quadratic problems:
  :mod:`empirics.recursion`);
* the *prediction* (:func:`empirics.predict.predict`): the expected metric along the run from
  the problem's law without sampling — exact on quadratics, a local model on smooth finite
  sums (logistic regression, the MLP, smooth own models), ``None`` out of the predictor's
  regime — and predicted ÷ measured;
* tightness = bound ÷ measured mean per recorded step, and a :class:`~empirics.stats.Verdict`.

Verdict (:func:`empirics.stats.bound_test`): the bound must hold at every K, so with S ≥ 2 seeds
each recorded step gets a one-sided t-test of H0: E[metric_K] ≤ conservative bound; "violated"
iff the smallest p-value, Bonferroni-corrected over the recorded steps, is below ``level``.
"not applicable" when a condition or an assumption of the bound fails (the message names it);
"no bound" when no bound describes the configuration.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from empirics.match import (
    choose_bound,
    evaluate,
    hypotheses,
    lemma2,
    metric_of,
    run_values,
    truth,
    unverifiable,
)
from empirics.records import RunCache, atomic_write_text, json_ready
from empirics.spec import (
    METRICS,
    PROBLEMS,
    ExperimentSpec,
    build_config,
    build_lr,
    build_mixing,
    build_problem,
    register_problem,
)
from empirics.stats import Verdict, bound_test, mean_band

__all__ = [
    "BACKENDS", "PROBLEMS", "ExperimentResult", "ExperimentSpec", "SweepResult",
    "Verdict", "build_config", "build_lr", "build_mixing", "build_problem", "register_problem",
    "run_experiment", "sweep", "sweep2",
]

# ---------------------------------------------------------------------------------------------
# the spec
# ---------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------
# the result
# ---------------------------------------------------------------------------------------------
_ARRAYS = ("steps", "per_seed", "mean", "lower", "upper", "bound", "bound_conservative",
           "bound_optimistic", "truth", "tightness", "lemma2", "lemma2_lower", "lemma2_upper",
           "predicted")

#: bump when the predictor's numbers change (invalidates cached predictions)
PREDICT_VERSION = 5


@dataclass
class ExperimentResult:
    """Measured metric vs bound for one spec (see the module docstring). Arrays are over the
    recorded steps (``per_seed`` is seeds × steps); bound/truth/tightness may be None.
    ``predicted``: the predicted metric along the steps (None out of the predictor's regime);
    ``prediction``: the whole :class:`~empirics.predict.Prediction` as a dict (regime,
    assumptions, floor, every predicted column, or the reason it is out of regime)."""

    spec: dict[str, Any]
    metric: str
    steps: np.ndarray
    per_seed: np.ndarray
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    bound: np.ndarray | None
    bound_conservative: np.ndarray | None
    bound_optimistic: np.ndarray | None
    truth: np.ndarray | None
    tightness: np.ndarray | None
    verdict: Verdict
    constants: dict[str, Any]
    bound_info: dict[str, Any] | None
    final: dict[str, Any]
    runs: list[Any] = field(default_factory=list, repr=False)
    seconds: float = math.nan
    #: Lemma 2 (JMLR eq. 38) with the measured consensus distance: mean over seeds and band
    lemma2: np.ndarray | None = None
    lemma2_lower: np.ndarray | None = None
    lemma2_upper: np.ndarray | None = None
    predicted: np.ndarray | None = None
    prediction: dict[str, Any] | None = None

    @property
    def slack(self) -> dict[str, float | None]:
        """Where the bound loses its slack at the last evaluated step: ``descent`` = Lemma 2 ÷
        measured (the descent-lemma step), ``consensus`` = bound ÷ Lemma 2 (bounding the
        consensus distance); they multiply to ``total`` = the tightness."""
        f = self.final
        return {"descent": f.get("slack_descent"), "consensus": f.get("slack_consensus"),
                "total": f.get("tightness")}

    @property
    def metric_label(self) -> str:
        return METRICS.get(self.metric, self.metric)

    def to_dict(self, runs: bool = False) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "runs"}
        d["verdict"] = asdict(self.verdict)
        if runs:
            d["runs"] = [_run_dict(r) for r in self.runs]
        return json_ready(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExperimentResult:
        from empirics.records import Result

        kw = dict(d)
        for k in _ARRAYS:
            v = kw.get(k)
            kw[k] = None if v is None else np.asarray(
                [[math.nan if x is None else x for x in row] for row in v] if k == "per_seed"
                else [math.nan if x is None else x for x in v], dtype=float)
        kw["verdict"] = Verdict(**kw["verdict"])
        kw["runs"] = [Result.from_dict(r) for r in kw.get("runs", [])]
        kw["seconds"] = math.nan if kw.get("seconds") is None else float(kw["seconds"])
        return cls(**kw)

    def save(self, path: str | os.PathLike, runs: bool = True) -> Path:
        """JSON, written atomically."""
        return atomic_write_text(path, json.dumps(self.to_dict(runs=runs)))

    def __repr__(self) -> str:
        f = self.final
        b = "—" if f.get("bound") is None else f"{f['bound']:.4g}"
        t = "—" if f.get("tightness") is None else f"{f['tightness']:.3g}"
        sl = ""
        if f.get("slack_descent") is not None and f.get("slack_consensus") is not None:
            sl = (f" = {f['slack_descent']:.3g} (Lemma 2 ÷ measured) × "
                  f"{f['slack_consensus']:.3g} (bound ÷ Lemma 2)")
        pr = ""
        if f.get("predicted") is not None:
            pr = (f", predicted {f['predicted']:.4g} (÷ measured {f['predicted_ratio']:.3g}, "
                  f"{(self.prediction or {}).get('regime', '?')})")
        elif self.prediction is not None:
            pr = ", predicted — (out of the predictor's regime)"
        return (f"ExperimentResult({self.spec.get('name')}, {self.metric_label} = "
                f"{f['measured']:.4g} [{f['lower']:.4g}, {f['upper']:.4g}] over "
                f"{self.per_seed.shape[0]} seeds{pr}, bound {b}, tightness {t}{sl}; "
                f"{self.verdict})")


def _run_dict(r: Any) -> dict[str, Any]:
    d = r.to_dict()
    d["u_final"] = None  # the model can be large; the metric and records are kept
    return d


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------
BACKENDS = ("simulator", "gloo", "nccl")


def _auto_progress() -> bool:
    """Progress bars when someone watches: a terminal on stderr, or a Jupyter kernel."""
    import sys

    if "ipykernel" in sys.modules:
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def run_experiment(spec: ExperimentSpec, *, progress: bool | None = None,
                   cache: RunCache | None = None, backend: str = "simulator",
                   predict: bool = True) -> ExperimentResult:
    """Run ``spec`` (one run per seed; cached per seed in ``cache``) and compare the metric with
    the bound. See the module docstring for the metric, band and verdict.

    backend: ``"simulator"`` (every worker stacked on ``spec.device``) or ``"gloo"``/``"nccl"``
    (one ``torch.distributed`` process per worker on this machine,
    :func:`empirics.distributed.run_distributed`; same trajectory up to float rounding).
    progress: a bar per seed; default (None) when run from a terminal or a notebook.
    predict: also compute the prediction (:func:`empirics.predict.predict`, cached with the
    runs; cheaper than one seed)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} (got {backend!r})")
    if progress is None:
        progress = _auto_progress()
    from tqdm.auto import tqdm

    from empirics.engine import DivergenceError, run
    from empirics.records import Result

    t0 = time.perf_counter()
    cache = cache or RunCache(None)
    built = spec.build()
    problem, cfg, lr = built
    bname, b = choose_bound(spec, cfg, problem, lr)
    metric = spec.metric
    if metric == "auto":
        metric = b.setting.metric if (b is not None and b.setting is not None) else (
            "suboptimality" if problem.constants.mu is not None else "grad_norm2_running")
    F_star = problem.constants.F_star.value
    if metric == "grad_norm2_running" and spec.grad_every == 0:
        raise ValueError(f"grad_every = 0 turns off the running average of ‖∇F(u_k)‖², the "
                         f"metric of bound {bname!r}: use grad_every >= 1")

    base = spec.to_dict()
    for k in ("seeds", "bound", "bound_values", "bound_scale", "metric", "level", "name"):
        base.pop(k)
    runs = []
    extra: list[dict[str, Any] | None] = []  # the problem's final metrics per seed (if any)
    seeds = spec.seed_list
    for seed in tqdm(seeds, desc=spec.name, disable=not progress, leave=False):
        def one(seed: int = seed) -> dict[str, Any]:
            try:
                if backend == "simulator":
                    return _with_metrics(run(spec.run_spec(seed, built)), problem)
                from empirics.distributed import run_distributed

                return _with_metrics(run_distributed(spec, seed=seed, backend=backend,
                                                     device=spec.device).result, problem)
            except DivergenceError as e:  # keep the seed's records; the verdict says so
                if e.partial is None:
                    raise
                e.partial.message = (f"{e} (experiment {spec.name!r}, seed {seed}, lr "
                                     f"{spec.lr!r}: {cfg.divergence_hint(problem.dim)})")
                return _run_dict(e.partial)

        key = {"run": base, "seed": seed} | ({"backend": backend} if backend != "simulator"
                                              else {})
        raw = cache.get_or_run(key, one)
        runs.append(Result.from_dict(raw))
        extra.append(raw.get("metrics"))
    diverged = [(s, r) for s, r in zip(seeds, runs, strict=True) if r.status == "diverged"]
    steps = np.asarray(max(runs, key=len).step, dtype=np.int64)
    per_seed = np.full((len(runs), len(steps)), np.nan)
    for i, r in enumerate(runs):
        y = metric_of(r, metric, F_star)
        per_seed[i, :len(y)] = y
    if not diverged and not np.all(np.isfinite(per_seed[:, steps > 0])):
        raise FloatingPointError(f"experiment {spec.name!r}: the metric is not finite; lower "
                                 f"the lr")
    ok = np.asarray([r.status != "diverged" for r in runs])  # the band is over finished seeds
    mean, lower, upper = mean_band(per_seed[ok] if ok.any() else per_seed, spec.level)
    exact = truth(spec, problem, cfg, lr, metric)
    prediction = _prediction(spec, built, metric, base, cache) if predict else None
    predicted = None
    if prediction is not None and prediction.get("values") is not None:
        pv = np.asarray([math.nan if x is None else x for x in prediction["values"]], float)
        if len(pv) == len(steps):
            predicted = pv
            if exact is None and prediction.get("regime") == "exact":
                exact = pv

    bound = cons = opt = tight = None
    info = None
    slack = _Slack()
    if diverged:
        first_seed, first = diverged[0]
        verdict = Verdict(
            "diverged", f"{len(diverged)} of {len(runs)} seeds diverged (seeds "
            f"{[s for s, _ in diverged]}); seed {first_seed}: {first.message}. A bound says "
            f"nothing about a diverging run", len(runs), spec.level,
            step=int(first.steps_done))
    elif b is None:
        verdict = Verdict("no bound", f"no registered bound describes "
                          f"{spec.algorithm['name']!r} with this setting", len(seeds),
                          spec.level)
    else:
        vals = {**run_values(spec, cfg, problem, lr), **spec.bound_values}
        failed = hypotheses(b, spec, cfg, problem, lr)
        if b.setting is not None and b.setting.metric != metric:
            failed.append(f"bound {bname!r} bounds {b.setting.metric}, not {metric}")
        divides = _tau_divides(b, vals)
        ev, cond_failed = evaluate(b, vals, steps, problem, scale=float(spec.bound_scale),
                                   tau_divides=divides)
        failed += cond_failed
        info = {"key": bname, **(ev["info"] if "info" in ev else ev)}
        label = _estimated_label(b, problem, info)
        if failed:
            verdict = Verdict("not applicable", "; ".join(failed), len(seeds), spec.level,
                              failed=failed)
        else:
            bound, cons, opt = ev["bound"], ev["conservative"], ev["optimistic"]
            with np.errstate(divide="ignore", invalid="ignore"):
                tight = np.where(mean > 0, bound / mean, np.nan)
            verdict = unverifiable(b, bound_test(per_seed, steps, cons, opt, spec.level))
            if metric == "grad_norm2_running":
                slack = _slack(runs, ok, steps, vals, problem, divides, mean, bound, spec)
        if label:
            verdict.message += label

    def last(a: np.ndarray | None) -> float | None:
        return None if a is None else float(a[-1])

    j = _last_evaluated(bound)
    final = {"step": int(steps[-1]), "measured": float(mean[-1]), "lower": float(lower[-1]),
             "upper": float(upper[-1]), "bound": last(bound),
             "bound_conservative": last(cons), "bound_optimistic": last(opt),
             "tightness": last(tight), "truth": last(exact),
             "lemma2": last(slack.lemma2),
             "slack_descent": _at(slack.descent, j), "slack_consensus": _at(slack.consensus, j),
             "predicted": _at(predicted, len(steps) - 1)}
    final["metrics"] = _practice(runs, extra)
    if j is not None and j != len(steps) - 1:  # τ ∤ the last step: the last evaluated one
        final.update(step=int(steps[j]), measured=float(mean[j]), lower=float(lower[j]),
                     upper=float(upper[j]), bound=_at(bound, j),
                     bound_conservative=_at(cons, j), bound_optimistic=_at(opt, j),
                     tightness=_at(tight, j), truth=_at(exact, j),
                     lemma2=_at(slack.lemma2, j), predicted=_at(predicted, j))
    final["predicted_ratio"] = (final["predicted"] / final["measured"]
                                if final["predicted"] is not None and final["measured"] > 0
                                else None)
    return ExperimentResult(
        spec=spec.to_dict(), metric=metric, steps=steps, per_seed=per_seed, mean=mean,
        lower=lower, upper=upper, bound=bound, bound_conservative=cons, bound_optimistic=opt,
        truth=exact, tightness=tight, verdict=verdict, constants=problem.constants.to_dict(),
        bound_info=info, final=final, runs=runs, seconds=time.perf_counter() - t0,
        lemma2=slack.lemma2, lemma2_lower=slack.lower, lemma2_upper=slack.upper,
        predicted=predicted, prediction=prediction)


def _prediction(spec: ExperimentSpec, built: Any, metric: str, base: dict[str, Any],
                cache: RunCache) -> dict[str, Any] | None:
    """The prediction of ``spec``'s metric (:func:`empirics.predict.predict_built`) as a dict,
    cached beside the runs; an unexpected failure of the predictor is reported, not raised
    (the measurement stands on its own)."""
    from empirics.predict import predict_built

    def one() -> dict[str, Any]:
        try:
            return predict_built(spec, built, metric=metric).to_dict()
        except Exception as e:  # the run's verdict must not depend on the predictor
            warnings.warn(f"experiment {spec.name!r}: the predictor failed ({type(e).__name__}: "
                          f"{e}); the run and its verdict stand, the prediction is reported "
                          f"out of regime", RuntimeWarning, stacklevel=2)
            return {"name": spec.name, "metric": metric, "values": None,
                    "regime": "out of regime", "reason": f"predictor failed: "
                    f"{type(e).__name__}: {e}", "steps": [], "columns": {}}

    key = {"predict": base, "metric": metric, "version": PREDICT_VERSION}
    return cache.get_or_run(key, one)


def _with_metrics(res: Any, problem: Any) -> dict[str, Any]:
    """The run's JSON-ready records, with the problem's ``final_metrics`` of the averaged model
    (training loss, test accuracy, …) when the problem offers them (the model itself is not
    kept)."""
    d = _run_dict(res)
    fm = getattr(problem, "final_metrics", None)
    if fm is not None and res.u_final is not None:
        d["metrics"] = fm(res.u_final)
    return d


def _practice(runs: list[Any], extra: list[dict[str, Any] | None]) -> dict[str, Any]:
    """What a practitioner reads beside the bound's metric, as means over seeds: the problem's
    final metrics of the averaged model (training loss, test accuracy — where it defines them),
    wall-clock seconds per step (records included) and bits sent in the whole run."""
    out: dict[str, Any] = {}
    keys = sorted({k for e in extra if e for k in e})
    for k in keys:
        vals = [e[k] for e in extra if e and e.get(k) is not None]
        out[k] = float(np.mean(vals)) if vals else None
    done = [r for r in runs if r.steps_done > 0 and len(r.wall)]
    if done:
        out["wall_per_step"] = float(np.mean([r.wall[-1] / r.steps_done for r in done]))
        out["bits"] = float(np.mean([r.bits[-1] for r in done]))
    return out


def _estimated_label(b: Any, problem: Any, info: dict[str, Any]) -> str:
    """A suffix for the verdict naming the estimated constants the bound uses (an Estimate
    with an uncertainty, or whose method says "estimated") and the problem's caveats; records
    them in ``info`` ("constants": "estimated" or "exact")."""
    from theory.symbols import keyword

    c = problem.constants
    used = {keyword(x) for x in b.parameters}
    pairs = [("L", "L", c.L), ("sigma2", "σ²", c.sigma2), ("mu", "μ", c.mu),
             ("kappa2", "κ²", getattr(c, "kappa2", None)), ("beta", "β", c.beta),
             ("F_gap", "F(x₀) − F*", c.F_star), ("F_gap", "F(x₀) − F*", c.F0)]
    est: dict[str, str] = {}
    for sym, label, e in pairs:
        if sym in used and e is not None and label not in est and (
                e.uncertainty > 0 or e.method.lower().startswith("estimated")):
            est[label] = e.method
    info["constants"] = "estimated" if est else "exact"
    if est:
        info["estimated_constants"] = est
    caveats = list(getattr(problem, "caveats", []) or [])
    if caveats:
        info["caveats"] = caveats
    out = ""
    if est:
        out += f" [estimated constants: {', '.join(est)}]"
    for cv in caveats:
        out += f" [caveat: {cv}]"
    return out


def _at(a: np.ndarray | None, j: int | None) -> float | None:
    if a is None or j is None or not np.isfinite(a[j]):
        return None
    return float(a[j])


def _last_evaluated(bound: np.ndarray | None) -> int | None:
    """The last recorded step where the bound has a value (τ | K)."""
    if bound is None:
        return None
    idx = np.nonzero(np.isfinite(bound))[0]
    return int(idx[-1]) if len(idx) else None


def _tau_divides(b: Any, vals: dict[str, float]) -> int | None:
    """τ when the bound's theorem needs τ | K (its value is then given at those steps only)."""
    s = b.setting
    if s is not None and "tau_divides_K" in s.assumptions and "tau" in vals:
        return int(vals["tau"])
    return None


@dataclass
class _Slack:
    """Lemma 2 (JMLR eq. 38) with the measured consensus distance, its band over seeds, and
    the slack factors measured → Lemma 2 (``descent``) → the bound (``consensus``)."""

    lemma2: np.ndarray | None = None
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    descent: np.ndarray | None = None
    consensus: np.ndarray | None = None


def _slack(runs: list[Any], ok: np.ndarray, steps: np.ndarray, vals: dict[str, float],
           problem: Any, divides: int | None, mean: np.ndarray, bound: np.ndarray,
           spec: ExperimentSpec) -> _Slack:
    """Where the bound loses its slack (see :class:`_Slack`); empty when Lemma 2 cannot be
    evaluated (e.g. the consensus distance was not recorded)."""
    cr = np.full((len(runs), len(steps)), np.nan)
    for i, r in enumerate(runs):
        y = np.asarray(r.consensus_running, dtype=float)
        cr[i, :len(y)] = y
    cr = cr[ok]
    if not np.isfinite(cr[:, steps > 0]).all():
        return _Slack()
    per_seed, failed = lemma2(vals, steps, cr, problem, divides)
    if per_seed is None or failed:
        return _Slack()
    m_, lo, hi = mean_band(per_seed, spec.level)
    with np.errstate(divide="ignore", invalid="ignore"):
        descent = np.where(mean > 0, m_ / mean, np.nan)
        consensus = np.where(m_ > 0, bound / m_, np.nan)
    return _Slack(m_, lo, hi, descent, consensus)


# ---------------------------------------------------------------------------------------------
# sweeps
# ---------------------------------------------------------------------------------------------
@dataclass
class SweepResult:
    """``results[i]`` is the experiment with ``param`` = ``values[i]``."""

    param: str
    values: list[Any]
    results: list[ExperimentResult]

    def table(self) -> list[dict[str, Any]]:
        """One row per value: measured (mean, CI), predicted, bound, truth, tightness,
        verdict."""
        rows = []
        for v, r in zip(self.values, self.results, strict=True):
            rows.append({self.param: v, **{k: r.final.get(k) for k in (
                "measured", "lower", "upper", "predicted", "bound", "truth", "tightness")},
                "verdict": r.verdict.status})
        return rows

    def column(self, which: str) -> np.ndarray:
        """Final ``measured``/``predicted``/``bound``/``truth``/``lower``/``upper`` across the
        sweep."""
        return np.asarray([math.nan if r.final.get(which) is None else r.final[which]
                           for r in self.results], dtype=float)

    def slope(self, which: str = "measured", *, log: bool = False) -> float:
        """Least-squares slope of the final ``which`` against the parameter (log-log if
        ``log``). NaN if fewer than two finite points."""
        x = np.asarray(self.values, dtype=float)
        y = self.column(which)
        ok = np.isfinite(x) & np.isfinite(y)
        if log:
            ok &= (x > 0) & (y > 0)
            x, y = np.log(x[ok]), np.log(y[ok])
        else:
            x, y = x[ok], y[ok]
        if len(x) < 2:
            return math.nan
        return float(np.polyfit(x, y, 1)[0])

    def to_dict(self) -> dict[str, Any]:
        return json_ready({"param": self.param, "values": self.values,
                           "results": [r.to_dict() for r in self.results]})


def sweep(spec: ExperimentSpec, param: str, values: list[Any], *, progress: bool = False,
          cache: RunCache | None = None) -> SweepResult:
    """Run ``spec`` with the dotted ``param`` (e.g. ``"algorithm.tau"``) set to each value."""
    from tqdm.auto import tqdm

    if len(values) == 0:
        raise ValueError(f"sweep over {param!r} needs at least one value (got {values!r})")
    results = []
    for v in tqdm(values, desc=f"{spec.name}: {param}", disable=not progress, leave=False):
        s = spec.replace(param, v)
        s.name = f"{spec.name}[{param}={v}]"
        results.append(run_experiment(s, cache=cache))
    return SweepResult(param, list(values), results)


def sweep2(spec: ExperimentSpec, param: str, values: list[Any], param2: str,
           values2: list[Any], *, progress: bool = False, cache: RunCache | None = None
           ) -> dict[Any, SweepResult]:
    """Two-parameter sweep: ``{v2: sweep(spec with param2 = v2, param, values)}`` for each value
    of ``param2`` (e.g. τ for each topology: ``sweep2(s, "algorithm.tau", [1, 4, 16],
    "algorithm.topology", ["ring", "torus"])``)."""
    if len(values2) == 0:
        raise ValueError(f"sweep2 over {param2!r} needs at least one value (got {values2!r})")
    out = {}
    for v2 in values2:
        s = spec.replace(param2, v2)
        s.name = f"{spec.name}[{param2}={v2}]"
        out[v2] = sweep(s, param, values, progress=progress, cache=cache)
    return out
