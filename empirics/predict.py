"""Predict the error of a run without sampling: the expected metric along the run, its
stationary floor, and the assumptions used.

:func:`predict` takes an :class:`~empirics.spec.ExperimentSpec` (or a spec file) and returns a
:class:`Prediction`: the expectation of the metric the spec's bound controls (the running
average of ‖∇F(u_k)‖², F(u_T) − F*, ‖∇F(u_K)‖²) at every recorded step, every other record
column (consensus distance, error-feedback memory, …), the stationary floor at a constant step
size, and the regime:

* **exact** — quadratic problems (:class:`~empirics.problems.Quadratic`: per-worker Hessians,
  optima and noise covariances; :class:`~empirics.problems.NoisyQuadratic`; least squares with
  its sampling noise) under every configuration whose local step keeps the second moments
  closed: plain SGD, heavy-ball and Nesterov momentum, random-k with or without error feedback,
  any static mixing schedule (periodic, gossip with any W_k, EASGD's auxiliary variable,
  hierarchical, growing intervals, one-shot);
* **local model** — smooth problems (logistic regression): the same propagation with the
  second-order local model of :mod:`empirics.laws`, re-expanded at the predicted means;
* **out of regime** — anything else (top-k, QSGD, compressed gossip, problems without a law):
  the prediction says why and carries no values.

The propagation is :mod:`empirics.moments` (derivation in its docstring and in
``docs/predict.md``). :func:`best_tau` and :func:`best_topology` choose the period or the mixing
matrix with the smallest predicted error under a communication budget.
"""

from __future__ import annotations

import math
import os
import sys
import time
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from empirics.moments import propagate
from empirics.records import json_ready

__all__ = ["Prediction", "TauChoice", "TopologyChoice", "best_tau", "best_topology",
           "predict", "predict_built"]

#: the predicted record columns (see :class:`empirics.moments.MomentRun`)
COLUMNS = ("suboptimality", "grad_norm2", "grad_norm2_running", "consensus",
           "consensus_running", "dist2_u", "dist2_workers", "memory_norm2_workers",
           "memory_norm2")


@dataclass
class Prediction:
    """The predicted expectation of a run's metric (see the module docstring).

    ``steps`` are the spec's records; ``values`` the predicted metric there (None out of
    regime); ``columns`` every predicted record column; ``floor`` the stationary value of the
    metric at a constant step size (time average over one period of the stationary cycle; None
    where there is none, ``floor_note`` says why); ``regime`` ``"exact"``, ``"local model"``
    or ``"out of regime"`` (``reason``); ``assumptions`` what the prediction used;
    ``structure`` how the moments were held (dense / modal, separable); ``seconds`` its cost."""

    name: str
    metric: str
    steps: np.ndarray
    values: np.ndarray | None
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    floor: float | None = None
    floor_note: str = ""
    regime: str = "out of regime"
    reason: str = ""
    assumptions: list[str] = field(default_factory=list)
    structure: str = ""
    seconds: float = math.nan

    @property
    def exact(self) -> bool:
        return self.regime == "exact"

    @property
    def in_regime(self) -> bool:
        return self.values is not None

    @property
    def final(self) -> float | None:
        """The predicted metric at the last record (None out of regime)."""
        if self.values is None or not len(self.values):
            return None
        v = float(self.values[-1])
        return v if math.isfinite(v) else None

    def at(self, step: int) -> float | None:
        """The predicted metric at a recorded step (None if not recorded or out of regime)."""
        if self.values is None:
            return None
        hit = np.nonzero(self.steps == int(step))[0]
        return float(self.values[hit[0]]) if hit.size else None

    def to_dict(self) -> dict[str, Any]:
        return json_ready({"name": self.name, "metric": self.metric, "steps": self.steps,
                           "values": self.values, "columns": self.columns,
                           "floor": self.floor, "floor_note": self.floor_note,
                           "regime": self.regime, "reason": self.reason,
                           "assumptions": self.assumptions, "structure": self.structure,
                           "seconds": self.seconds})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Prediction:
        def arr(v: Any) -> np.ndarray | None:
            return None if v is None else np.asarray(
                [math.nan if x is None else x for x in v], dtype=float)

        return cls(d["name"], d["metric"], np.asarray(d["steps"], dtype=np.int64),
                   arr(d.get("values")), {k: arr(v) for k, v in d.get("columns", {}).items()},
                   d.get("floor"), d.get("floor_note", ""), d.get("regime", "out of regime"),
                   d.get("reason", ""), list(d.get("assumptions", [])), d.get("structure", ""),
                   math.nan if d.get("seconds") is None else float(d["seconds"]))

    def __repr__(self) -> str:
        if self.values is None:
            return f"Prediction({self.name}: out of regime — {self.reason})"
        fl = "" if self.floor is None else f", floor {self.floor:.4g}"
        return (f"Prediction({self.name}, {self.metric} = {self.final:.4g} at K = "
                f"{int(self.steps[-1])}{fl}; {self.regime}, {self.structure}, "
                f"{self.seconds:.2g} s)")


def _as_spec(spec: Any) -> Any:
    from empirics.spec import ExperimentSpec

    if isinstance(spec, ExperimentSpec):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        return ExperimentSpec.load(spec)
    if isinstance(spec, dict):
        return ExperimentSpec.from_dict(spec)
    raise ValueError(f"spec must be an ExperimentSpec, a spec file or a dict (got "
                     f"{type(spec).__name__})")


def auto_metric(spec: Any, cfg: Any, problem: Any) -> str:
    """The metric of ``spec``: its own, else the left side of its bound (a registered name or a
    Bound), else that of the first registered bound describing the configuration, else
    F(u_T) − F* for strongly convex problems and the running average of ‖∇F(u_k)‖² otherwise
    (the rule of :func:`empirics.experiment.run_experiment`)."""
    from theory.bound import Bound
    from theory.bounds import registry

    if spec.metric != "auto":
        return spec.metric
    b = spec.bound
    if isinstance(b, Bound) and b.setting is not None:
        return b.setting.metric
    if isinstance(b, str) and b not in ("auto", "none"):
        try:
            e = registry.get(registry.resolve(b))
            s = getattr(e.build(**{k: [1] for k in e.from_run}), "setting", None)
            if s is not None:
                return s.metric
        except (TypeError, ValueError):
            pass
    if b == "auto":
        lr = spec.lr
        kind = "pl" if isinstance(lr, dict) and lr.get("kind") == "pl" else (
            "constant" if not isinstance(lr, dict) else "schedule")
        best = None
        for i, e in enumerate(registry.entries()):
            try:
                s = getattr(e.build(**{k: [1] for k in e.from_run}), "setting", None)
            except (TypeError, ValueError):
                continue
            if s is None or cfg.name not in s.describes:
                continue
            rank = (0 if s.stepsize in (kind, "any") else 1, i)
            if best is None or rank < best[0]:
                best = (rank, s.metric)
        if best is not None:
            return best[1]
    return "suboptimality" if problem.constants.mu is not None else "grad_norm2_running"


def predict(spec: Any, *, metric: str | None = None, structure: str = "auto",
            floor: bool = True, refresh: int | None = None, closure: str = "gauss",
            threads: int | None = 1) -> Prediction:
    """The predicted expectation of ``spec``'s metric along its records (see the module
    docstring). spec: an :class:`~empirics.spec.ExperimentSpec`, a spec file (TOML/YAML/JSON)
    or a dict. metric: override the spec's metric. structure: ``"auto"``, ``"dense"`` or
    ``"modal"`` (:func:`empirics.moments.propagate`). floor: also solve for the stationary
    floor at a constant step size. refresh: steps between re-expansions of a local model
    (default 32). closure: the local model's treatment of the workers' fluctuations —
    ``"gauss"`` (Gaussian fluctuations, exact expectations along the margins; default),
    ``"taylor"`` (the second-order correction alone), ``"linear"`` (none)."""
    spec = _as_spec(spec)
    return predict_built(spec, spec.build(), metric=metric, structure=structure, floor=floor,
                         refresh=refresh, closure=closure, threads=threads)


def predict_built(spec: Any, built: tuple[Any, Any, Any], *, metric: str | None = None,
                  structure: str = "auto", floor: bool = True, refresh: int | None = None,
                  closure: str = "gauss", threads: int | None = 1) -> Prediction:
    """:func:`predict` with the spec's (problem, config, lr) already built (what
    :func:`empirics.experiment.run_experiment` shares with its runs)."""
    from empirics.laws import OutOfRegime, law_for
    from empirics.moments import Diverged

    problem, cfg, lr = built
    metric = metric or auto_metric(spec, cfg, problem)
    t0 = time.perf_counter()  # the prediction's own cost (the metric lookup builds bounds)
    every = spec.run_spec(built=built).record_every  # the runs' stride (defaults resolved)
    steps = _record_steps(spec.steps, every)

    def out(reason: str) -> Prediction:
        return Prediction(spec.name, metric, steps, None, regime="out of regime",
                          reason=reason, seconds=time.perf_counter() - t0)

    try:
        law = law_for(problem, refresh=refresh, closure=closure)
    except OutOfRegime as e:
        return out(str(e))
    try:
        run = propagate(law, cfg, lr, spec.steps, batch_size=spec.batch_size,
                        record_every=every, structure=structure, threads=threads,
                        divergence=spec.divergence)
    except Diverged as e:
        lam = getattr(law, "lambda_last", math.inf)
        if lam < 0:  # the local model's instability, not the runs'
            return out(f"{e}, along a negative eigenvalue ({lam:.3g}) of the Hessian at the "
                       f"predicted mean: in this non-convex region the linearised spread grows "
                       f"without bound where SGD's need not (the runs may well converge; if "
                       f"they diverge too, lower the learning rate)")
        return out(f"{e}; {cfg.divergence_hint(law.d)}")
    except ValueError as e:
        return out(str(e))
    cols = dict(run.columns)
    if metric not in cols:
        return out(f"metric {metric!r} is not predicted (predicted: {', '.join(COLUMNS)})")
    regime = "exact" if not law.approximate else "local model"
    assumptions = [*law.assumptions(), *_config_assumptions(cfg, run)]
    fl, note = None, "not requested"
    if floor:
        from empirics.moments import stationary

        try:
            fl_all, note = stationary(run, cfg, lr, spec.batch_size)
            fl = None if fl_all is None else fl_all.get(metric)
        except ValueError as e:
            fl, note = None, str(e)
        lam = getattr(law, "lambda_last", math.inf)
        if fl is None and "not contracting" in note and lam < 0:
            note += (f" — the Hessian at the predicted mean has a negative eigenvalue "
                     f"({lam:.3g}): a non-convex region, where the local model has no "
                     f"stationary cycle")
    return Prediction(spec.name, metric, run.steps, np.asarray(cols[metric], dtype=float),
                      cols, fl, note, regime, "", assumptions, run.structure,
                      time.perf_counter() - t0)


def _config_assumptions(cfg: Any, run: Any) -> list[str]:
    out = []
    if getattr(cfg.schedule, "adaptive", False):
        out.append("adaptive schedule: its rounds are driven by the predicted E F(u), not by "
                   "a sampled loss")
    if run.info.get("compression"):
        out.append(f"compressor {run.info['compression']}: second moment linear in the input's "
                   f"(exact law)")
    return out




def _record_steps(T: int, every: int) -> np.ndarray:
    s = list(range(0, T, every))
    return np.asarray([*s, T], dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# choices under a budget
# ---------------------------------------------------------------------------------------------
@dataclass
class TauChoice:
    """:func:`best_tau`'s answer: the τ with the smallest predicted error (``best``), the table
    of candidates (τ, steps K, rounds, predicted metric at K, admissible under the budget), the
    bound's τ* where the budget is wall-clock (:func:`theory.optimal_tau_runtime`, AdaComm's
    τ*, real-valued) and its nearest candidate."""

    best: int
    metric: str
    table: list[dict[str, Any]]
    budget: str
    bound_tau: float | None = None
    bound_note: str = ""

    def __repr__(self) -> str:
        b = "" if self.bound_tau is None else f"; bound's τ* = {self.bound_tau:.3g}"
        row = next(r for r in self.table if r["tau"] == self.best)
        return (f"TauChoice(τ = {self.best}: predicted {self.metric} = {row['predicted']:.4g} "
                f"at K = {row['steps']}, {row['rounds']} rounds; {self.budget}{b})")


def _with_tau(spec: Any, tau: int, steps: int | None = None) -> Any:
    s = spec.replace("algorithm.tau", int(tau))
    if steps is not None:
        s = s.replace("steps", int(steps))
        if spec.record_every is not None:
            s = s.replace("record_every", max(1, min(spec.record_every, int(steps))))
    s.name = f"{spec.name}[tau={tau}]"
    return s


def best_tau(spec: Any, taus: Any = None, *, rounds: int | None = None,
             wall: float | None = None, Y: float = 1.0, D: float = 1.0,
             structure: str = "auto") -> TauChoice:
    """The communication period with the smallest predicted metric at the end of the run.

    spec: a spec whose algorithm has a ``tau`` (pasgd, decentralized_periodic, easgd, …).
    taus: the candidates (default: powers of two up to K). Budget: ``rounds`` (at most this
    many communication rounds in the spec's K steps: τ ≥ K/rounds), or ``wall`` (wall-clock
    under the runtime model of :mod:`theory.bounds.runtime`: a step costs Y, a round D, so τ
    buys K(τ) = ⌊wall/(Y + D/τ)⌋ steps); neither: every τ at the spec's K. With a wall budget
    the bound's τ* = √(2ΔF·D/(η³L²σ²T_wall)) (AdaComm, :func:`theory.optimal_tau_runtime`) is
    reported beside the predicted argmin."""
    spec = _as_spec(spec)
    if "tau" not in spec.algorithm:
        raise ValueError(f"best_tau needs an algorithm with a period 'tau' (got "
                         f"{spec.algorithm.get('name')!r})")
    K = spec.steps
    if taus is None:
        taus = [2**i for i in range(0, int(math.log2(K)) + 1)]
    taus = sorted({int(t) for t in taus})
    table = []
    metric = None
    for t in taus:
        steps = K if wall is None else int(math.floor(wall / (Y + D / t)))
        if steps < 1:
            continue
        n_rounds = steps // t
        ok = rounds is None or n_rounds <= rounds
        pred = predict(_with_tau(spec, t, steps if wall is not None else None),
                       structure=structure, floor=False)
        metric = pred.metric
        table.append({"tau": t, "steps": steps, "rounds": n_rounds, "admissible": ok,
                      "predicted": pred.final, "regime": pred.regime,
                      "reason": pred.reason})
    cands = [r for r in table if r["admissible"] and r["predicted"] is not None]
    if not cands:
        raise ValueError("no candidate τ meets the budget with a prediction in regime: "
                         + "; ".join(f"τ={r['tau']}: {r['reason'] or 'over budget'}"
                                     for r in table))
    best = min(cands, key=lambda r: r["predicted"])["tau"]
    budget = (f"wall-clock {wall:g} (Y = {Y:g}/step, D = {D:g}/round)" if wall is not None
              else f"≤ {rounds} rounds in K = {K}" if rounds is not None else f"K = {K} steps")
    bt, note = None, ""
    if wall is not None:
        bt, note = _bound_tau(spec, wall, Y, D)
    return TauChoice(best, str(metric), table, budget, bt, note)


def _bound_tau(spec: Any, wall: float, Y: float, D: float) -> tuple[float | None, str]:
    """AdaComm's τ* at the spec's η and the problem's L, σ², ΔF (None when not defined)."""
    from theory.bounds.cooperative import optimal_tau_runtime
    from theory.symbols import D as Dsym
    from theory.symbols import F_gap, L, T_wall, eta, sigma2

    lr = spec.lr
    if isinstance(lr, dict):
        return None, "the bound's τ* needs a constant η"
    problem, _, _ = spec.build()
    c = problem.constants
    s2 = c.sigma2.value / spec.batch_size
    expr = optimal_tau_runtime().subs({eta: float(lr), L: c.L.value, sigma2: s2,
                                       F_gap: c.initial_gap, T_wall: float(wall),
                                       Dsym: float(D)})
    try:
        v = float(expr)
    except TypeError:
        return None, f"τ* = {expr}"
    return v, ("AdaComm's τ* = √(2ΔF·D/(η³L²σ²T_wall)) (theory.optimal_tau_runtime), with σ² "
               "per worker batch; Y enters only through the budget")


@dataclass
class TopologyChoice:
    """:func:`best_topology`'s answer: the candidate with the smallest predicted metric
    (``best``) and the table (name, ζ, round cost D(W), steps K within the budget, predicted
    metric), with the bound's choice (:func:`theory.bounds.runtime.best_topology_and_tau`) where
    the budget is wall-clock."""

    best: str
    table: list[dict[str, Any]]
    budget: str
    bound_best: str | None = None
    bound_note: str = ""

    def __repr__(self) -> str:
        row = next(r for r in self.table if r["name"] == self.best)
        b = "" if self.bound_best is None else f"; the bound picks {self.bound_best}"
        return (f"TopologyChoice({self.best}: predicted {row['predicted']:.4g} at K = "
                f"{row['steps']}; {self.budget}{b})")


def best_topology(spec: Any, candidates: Any, *, wall: float | None = None, Y: float = 1.0,
                  latency: float = 1.0, structure: str = "auto") -> TopologyChoice:
    """The mixing topology with the smallest predicted metric at the end of the run.

    spec: a decentralized spec (``dpsgd`` or ``decentralized_periodic``: its ``topology`` is
    replaced). candidates: topology names or tables (``{name = ..., lazy = ...}``) as in a spec,
    a list or a dict label → topology. wall: a wall-clock budget (a step costs Y, a round
    D(W) = latency × the largest degree, :func:`theory.bounds.runtime.topology_delay`), so a
    sparser graph buys more steps; None: every candidate at the spec's K."""
    from empirics.spec import build_mixing
    from theory.bounds.runtime import topology_delay

    spec = _as_spec(spec)
    if "topology" not in spec.algorithm:
        raise ValueError(f"best_topology needs a decentralized algorithm with a 'topology' "
                         f"(dpsgd, decentralized_periodic); got {spec.algorithm.get('name')!r}")
    items = candidates.items() if isinstance(candidates, dict) else [
        (c if isinstance(c, str) else c.get("name", str(c)), c) for c in candidates]
    m = int(spec.algorithm["m"])
    tau = int(spec.algorithm.get("tau", 1))
    table = []
    Ws = {}
    for label, topo in items:
        W = build_mixing(m, topo, spec.algorithm.get("weights"))
        Ws[label] = W
        Dw = topology_delay(W, latency=latency)
        steps = spec.steps if wall is None else int(math.floor(wall / (Y + Dw / tau)))
        if steps < 1:
            table.append({"name": label, "zeta": float(W.zeta), "D": Dw, "steps": steps,
                          "predicted": None, "regime": "over budget",
                          "reason": "over budget: not one step fits"})
            continue
        s = spec.replace("algorithm.topology", topo)
        if wall is not None:
            s = s.replace("steps", steps)
        s.name = f"{spec.name}[topology={label}]"
        pred = predict(s, structure=structure, floor=False)
        table.append({"name": label, "zeta": float(W.zeta), "D": Dw, "steps": steps,
                      "predicted": pred.final, "regime": pred.regime, "reason": pred.reason})
    cands = [r for r in table if r["predicted"] is not None]
    if not cands:
        raise ValueError("no candidate topology has a prediction within the budget")
    best = min(cands, key=lambda r: r["predicted"])["name"]
    budget = (f"wall-clock {wall:g} (Y = {Y:g}/step, D(W) = {latency:g} × max degree)"
              if wall is not None else f"K = {spec.steps} steps")
    bb, note = None, ""
    if wall is not None and not isinstance(spec.lr, dict):
        from theory.bounds.runtime import best_topology_and_tau

        problem, _, _ = spec.build()
        c = problem.constants
        try:
            jc = best_topology_and_tau(Ws, {"eta": float(spec.lr), "L": c.L.value,
                                            "sigma2": c.sigma2.value / spec.batch_size,
                                            "F_gap": c.initial_gap, "Y": Y, "T_wall": wall},
                                       latency=latency)
            bb = jc.best.name
            note = f"bound's choice with its own τ* = {jc.best.tau}"
        except ValueError as e:
            note = f"the bound has no choice: {e}"
    return TopologyChoice(best, table, budget, bb, note)


class _CallableModule(types.ModuleType):
    """``empirics.predict`` is this module and also :func:`predict`: ``empirics.predict(spec)``."""

    def __call__(self, spec: Any, **kwargs: Any) -> Prediction:
        return predict(spec, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
