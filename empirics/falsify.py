"""Falsify a bound: a hypothesis-driven search over the settings inside the bound's hypotheses
for the run that comes closest to breaking it.

The property a theorem states is "for every setting inside the hypotheses, the measured error
is below the bound". :func:`falsify` hands it to `hypothesis
<https://hypothesis.readthedocs.io>`_: its strategies draw settings from a :class:`Space` (m, τ,
the topology, the heterogeneity of the data, the step size as a fraction of the largest η the
bound's learning-rate condition admits, the number of rounds), every candidate is a matched
experiment (:func:`empirics.experiment.run_experiment`, several seeds, the one-sided test of
the verdict), ``hypothesis.target`` steers the search towards small tightness (bound ÷
measured, at the worst recorded step), and a violation is shrunk by hypothesis to the simplest
setting that still breaks the bound.

**Guidance by the predictor** (``guide="predict"``, the default): before a candidate runs,
its expected metric is predicted without sampling (:func:`empirics.predict.predict_built`, the
local model of the problem) and the bound is evaluated along it, giving a *predicted
tightness*. After the first few runs, a candidate whose predicted tightness exceeds
``GUIDE_FACTOR`` times the smallest predicted tightness among those already run is ranked out:
it is not run, its predicted tightness still steers hypothesis (``target``), and the report
lists it as ranked out — never as a verdict. The search stops after ``budget`` runs (hypothesis
draws up to ``GUIDE_POOL``·budget settings); a candidate out of the predictor's regime always
runs, and once a violation is found every shrinking step runs. ``guide="none"``: every drawn
setting runs (plain hypothesis search).

Every candidate is checked to lie inside the bound's hypotheses before it runs (the learning-
rate condition, τ | K, i.i.d. data unless the bound has a heterogeneity term, …): the search
never reports a verdict the theorem does not speak about. Runs are cached (``out/cache``), so a
repeated search replays from disk.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from empirics.experiment import ExperimentSpec, run_experiment
from empirics.records import RunCache, atomic_write_text, json_ready, writable_folder
from theory.bound import Bound
from theory.bounds import registry

__all__ = ["Candidate", "FalsifyResult", "Space", "falsify", "parse_over"]

#: the configurations a search can run, by the bound setting's ``describes``
_RUNNABLE = ("pasgd", "synchronous", "dpsgd", "decentralized_periodic")
_TOPOLOGIES = ("ring", "torus", "hypercube", "complete", "geometric")
#: guided search: a candidate runs if its predicted tightness is at most this factor times the
#: smallest predicted tightness run so far (the predictor's regime is ÷ 2 of the measurement)
GUIDE_FACTOR = 2.0
#: guided search: hypothesis draws up to this many settings per run of the budget
GUIDE_POOL = 4
#: guided search: the first candidates always run (a reference for the ranking)
GUIDE_WARMUP = 3


@dataclass(frozen=True)
class Space:
    """The settings searched (closed ranges; topologies by name, see :mod:`theory.topologies`).

    ``eta``: the step size as a fraction of the largest η the bound's conditions admit at the
    setting; ``rounds``: K = rounds·τ (τ | K); ``heterogeneity``: of the data split (searched
    only when the bound has a heterogeneity term, else 0 with shared sampling: the i.i.d.
    setting); ``problem``: the base problem (logistic regression by default); ``seeds``: per
    candidate (≥ 2, for the verdict's test)."""

    m: tuple[int, int] = (2, 16)
    tau: tuple[int, int] = (1, 16)
    topology: tuple[str, ...] = ("ring", "complete")
    heterogeneity: tuple[float, float] = (0.0, 1.0)
    eta: tuple[float, float] = (0.05, 1.0)
    rounds: tuple[int, int] = (4, 16)
    batch_size: int = 2
    seeds: int = 3
    problem: dict[str, Any] = field(default_factory=lambda: {
        "kind": "logistic_regression", "n_samples": 512, "d": 10, "l2": 0.01})

    def __post_init__(self) -> None:
        for name in ("m", "tau", "rounds"):
            lo, hi = getattr(self, name)
            if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
                raise ValueError(f"{name} must be a range lo..hi of integers with 1 <= lo <= hi "
                                 f"(got {lo}..{hi})")
        if self.m[0] < 2:
            raise ValueError(f"m must be >= 2 workers (got {self.m[0]}..{self.m[1]})")
        for name, (lo, hi), top in (("heterogeneity", self.heterogeneity, 1.0),
                                    ("eta", self.eta, 1.0)):
            if not (0 <= lo <= hi <= top) or (name == "eta" and lo <= 0):
                raise ValueError(f"{name} must be a range within {'(0' if name == 'eta' else '[0'}"
                                 f", {top:g}] (got {lo}..{hi})")
        bad = [t for t in self.topology if t not in _TOPOLOGIES]
        if bad or not self.topology:
            raise ValueError(f"topology must be a non-empty list of {list(_TOPOLOGIES)} "
                             f"(got {list(self.topology)})")
        if not (isinstance(self.seeds, int) and self.seeds >= 2):
            raise ValueError(f"seeds must be an integer >= 2 (a verdict needs a test over "
                             f"seeds; got {self.seeds!r})")


def parse_over(items: list[str]) -> dict[str, Any]:
    """``["m=2..64", "tau=1..32", "topology=ring,torus", "heterogeneity=0..1"]`` → the keyword
    arguments of :class:`Space` (``coopsgd falsify --over``)."""
    out: dict[str, Any] = {}
    fields_ = {"m": int, "tau": int, "rounds": int, "heterogeneity": float, "eta": float,
               "topology": str}
    for item in items:
        key, sep, val = item.partition("=")
        key = key.strip()
        if not sep or key not in fields_:
            raise ValueError(f"--over takes NAME=LO..HI or topology=A,B,... with NAME one of "
                             f"{sorted(fields_)} (got {item!r})")
        if key == "topology":
            out[key] = tuple(t.strip() for t in val.split(",") if t.strip())
            continue
        lo, dots, hi = val.partition("..")
        try:
            a = fields_[key](lo)
            b = fields_[key](hi) if dots else a
        except ValueError:
            raise ValueError(f"--over {key}: {val!r} is not a range LO..HI of "
                             f"{fields_[key].__name__}s") from None
        out[key] = (a, b)
    return out


@dataclass
class Candidate:
    """One searched setting and what its matched experiment gave: tightness (bound ÷ measured
    at the worst recorded step, inf when the bound is never evaluated), the verdict, and the
    spec that reproduces it."""

    setting: dict[str, Any]
    tightness: float
    verdict: str
    message: str
    spec: dict[str, Any]
    seconds: float
    predicted_tightness: float | None = None


@dataclass
class FalsifyResult:
    """The search: every candidate in order, the tightest admissible one, the counterexample
    (a violated verdict, shrunk by hypothesis) or None, and where the report was written."""

    bound: str
    space: dict[str, Any]
    candidates: list[Candidate]
    counterexample: Candidate | None
    budget: int
    out: str | None = None
    guide: str = "none"
    ranked_out: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tightest(self) -> Candidate | None:
        ok = [c for c in self.candidates if math.isfinite(c.tightness)]
        return min(ok, key=lambda c: c.tightness) if ok else None

    def table(self) -> list[dict[str, Any]]:
        return [{**c.setting, "tightness": c.tightness, "verdict": c.verdict,
                 "predicted_tightness": c.predicted_tightness}
                for c in sorted(self.candidates, key=lambda c: c.tightness)]

    def __repr__(self) -> str:
        t = self.tightest
        best = "none evaluated" if t is None else f"{t.tightness:.3g} at {t.setting}"
        ce = "" if self.counterexample is None else \
            f"; COUNTEREXAMPLE at {self.counterexample.setting}"
        ranked = f", {len(self.ranked_out)} ranked out by the predictor" \
            if self.ranked_out else ""
        return (f"FalsifyResult({self.bound}: {len(self.candidates)} admissible settings run"
                f"{ranked}, tightest {best}{ce})")


def _predicted_tightness(b: Bound, spec: ExperimentSpec) -> float | None:
    """min over the recorded steps of bound ÷ predicted metric, without running (None out of
    the predictor's regime or where the bound is not evaluated)."""
    from empirics.experiment import _tau_divides
    from empirics.match import evaluate, run_values
    from empirics.predict import predict_built

    built = spec.build()
    problem, cfg, lr = built
    pred = predict_built(spec, built, metric="grad_norm2_running", floor=False)
    if pred.values is None:
        return None
    vals = {**run_values(spec, cfg, problem, lr), **spec.bound_values}
    ev, failed = evaluate(b, vals, np.asarray(pred.steps), problem,
                          scale=float(spec.bound_scale), tau_divides=_tau_divides(b, vals))
    if failed:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.asarray(ev["conservative"], float) / np.asarray(pred.values, float)
    ok = np.isfinite(ratio) & (np.asarray(pred.steps) > 0) & (ratio > 0)
    return float(ratio[ok].min()) if ok.any() else None


class _Falsified(Exception):
    """Raised inside the property when a candidate violates the bound (hypothesis shrinks it)."""


def _config_name(b: Bound) -> str:
    describes = b.setting.describes if b.setting is not None else ()
    if not describes:
        return "decentralized_periodic"
    for name in describes:
        if name in _RUNNABLE:
            return name
    raise ValueError(f"bound {b.name!r} describes {list(describes)}: the search runs "
                     f"{list(_RUNNABLE)} only")


def _fits(topology: str, m: int) -> bool:
    if topology == "torus":
        r = math.isqrt(m)
        return r * r == m and r >= 3
    if topology == "hypercube":
        return m >= 2 and m & (m - 1) == 0
    return True


def _admissible_eta(b: Bound, vals: dict[str, float]) -> float:
    """The largest η every condition of ``b`` allows at ``vals`` (inf if none bounds it)."""
    from theory.symbols import keyword

    given = {k: v for k, v in vals.items()
             if k in {keyword(s) for s in b.parameters} and k != "eta"}
    x = b.largest("eta", given)
    return float(x)


def falsify(bound: str | Bound, space: Space | None = None, *, budget: int = 30, seed: int = 0,
            steps_per_round: int | None = None, out: str | Path | None = None,
            progress: bool = False, cache: RunCache | None = None,
            bound_scale: float = 1.0, guide: str = "predict") -> FalsifyResult:
    """Search ``space`` for the setting where ``bound`` is tightest (or broken).

    bound: a registered name or a :class:`~theory.bound.Bound` with a ``setting``. budget:
    the number of settings run (a found violation is then shrunk, which runs a few more).
    seed: fixes the search (same seed, same settings). out: a folder for the run
    cache, ``report.md``, ``candidates.json``, ``tightness.png`` and, with a counterexample,
    ``counterexample.toml`` (a spec ``coopsgd run`` reproduces it with). guide: ``"predict"``
    ranks candidates by their predicted tightness before running them (see the module's
    docstring), ``"none"`` runs every drawn setting."""
    from hypothesis import HealthCheck, Phase, given, reject, settings, target
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be an integer >= 1 (got {budget!r})")
    if guide not in ("predict", "none"):
        raise ValueError(f"guide must be 'predict' (rank candidates by the predictor) or "
                         f"'none' (got {guide!r})")
    space = space or Space()
    key = "user" if isinstance(bound, Bound) else registry.resolve(bound)
    b = bound if isinstance(bound, Bound) else registry.build(key)
    if b.setting is None:
        raise ValueError(f"bound {b.name!r} declares no setting, so it cannot be matched with a "
                         f"run: give it one with Bound.with_setting(...)")
    if b.setting.metric != "grad_norm2_running":
        raise ValueError(f"the search runs bounds on the running average of ‖∇F(u_k)‖² (bound "
                         f"{b.name!r} bounds {b.setting.metric})")
    if b.setting.unknown:
        raise ValueError(f"bound {b.name!r} has hypotheses that are not known "
                         f"({'; '.join(b.setting.unknown)}): no setting can be shown inside "
                         f"them, so no search can falsify it")
    name = _config_name(b)
    iid = "iid" in b.setting.assumptions
    folder = writable_folder(out) if out is not None else None
    if cache is None:
        cache = RunCache(folder / "cache" if folder is not None else None)
    tops = [t for t in space.topology if name in ("dpsgd", "decentralized_periodic")] \
        or ["complete"]
    found: list[Candidate] = []
    last_fail: list[Candidate] = []
    ranked_out: list[dict[str, Any]] = []
    run_predicted: list[float] = []
    uses_tau = name in ("pasgd", "decentralized_periodic")

    def build(m: int, tau: int, topology: str, het: float, frac: float, rounds: int
              ) -> tuple[ExperimentSpec, dict[str, Any]]:
        problem = {**space.problem, "sampling": "shared"} if (iid or het == 0) else \
            {**space.problem, "sampling": "shards", "heterogeneity": het}
        alg: dict[str, Any] = {"name": name, "m": m}
        if uses_tau:
            alg["tau"] = tau
        if name in ("dpsgd", "decentralized_periodic"):
            alg["topology"] = topology
        K = (tau if uses_tau else 1) * rounds * (steps_per_round or 1)
        base = ExperimentSpec(name="falsify", problem=problem, algorithm=alg, lr=1.0, steps=K,
                              batch_size=space.batch_size, seeds=space.seeds,
                              record_every=max(1, K // 8 // (tau if uses_tau else 1)
                                               * (tau if uses_tau else 1)),
                              bound=bound if isinstance(bound, Bound) else key,
                              bound_scale=bound_scale)
        from empirics.match import run_values

        problem_, cfg, lr = base.build()
        vals = run_values(base, cfg, problem_, lr)
        eta = frac * _admissible_eta(b, vals) * (1 - 1e-9)  # inside, also after rounding
        if not math.isfinite(eta):
            eta = frac * 1.0 / vals["L"]
        setting = {"m": m, "tau": tau if uses_tau else 1, "topology": topology if
                   name in ("dpsgd", "decentralized_periodic") else "complete",
                   "heterogeneity": 0.0 if iid else het, "eta_fraction": frac, "eta": eta,
                   "K": K}
        return base.replace("lr", float(eta)), setting

    sizes = {t: [m for m in range(space.m[0], space.m[1] + 1) if _fits(t, m)] for t in tops}
    tops = [t for t in tops if sizes[t]]
    if not tops:
        raise ValueError(f"no topology of {list(space.topology)} fits m in "
                         f"{space.m[0]}..{space.m[1]} (torus: m = r² with r >= 3; hypercube: "
                         f"m = 2^k)")
    strategy = st.tuples(
        st.sampled_from(tops).flatmap(lambda t: st.tuples(st.just(t), st.sampled_from(sizes[t]))),
        st.integers(*space.tau), st.just(0.0) if iid else st.floats(*space.heterogeneity),
        st.floats(*space.eta), st.integers(*space.rounds))

    def evaluate(args: tuple) -> Candidate | float | None:
        """The candidate's run, or its predicted tightness where the predictor ranks it
        out (or None once the budget is spent)."""
        shrinking = bool(last_fail)
        if len(found) >= budget and not shrinking:
            return None
        (topology, m), tau, het, frac, rounds = args
        spec, setting = build(m, tau, topology, het, frac, rounds)
        t0 = time.perf_counter()
        pt = None
        if guide == "predict":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pt = _predicted_tightness(b, spec)
            if (pt is not None and not shrinking and len(run_predicted) >= GUIDE_WARMUP
                    and pt > GUIDE_FACTOR * min(run_predicted)):
                ranked_out.append({**setting, "predicted_tightness": pt})
                if progress:
                    print(f"  [ranked out] {setting} → predicted tightness {pt:.3g}",
                          flush=True)
                return pt
            if pt is not None:
                run_predicted.append(pt)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = run_experiment(spec, cache=cache, progress=False, predict=False)
        v = res.verdict
        if v.status not in ("holds", "violated"):
            # a candidate outside the hypotheses is a bug of the search, never a result
            raise AssertionError(f"falsify drew a setting outside the hypotheses of "
                                 f"{b.name!r}: {setting}: {v}")
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.asarray(res.bound_conservative) / res.per_seed.mean(0)
        ok = np.isfinite(ratio) & (res.steps > 0)
        tight = float(ratio[ok].min()) if ok.any() else math.inf
        c = Candidate(setting, tight, v.status, v.message, spec.to_dict(),
                      time.perf_counter() - t0, pt)
        found.append(c)
        if progress:
            print(f"  [{len(found)}] {setting} → tightness {tight:.3g}, {v.status}", flush=True)
        return c

    @hseed(seed)
    @settings(max_examples=budget * (GUIDE_POOL if guide == "predict" else 1), deadline=None,
              database=None, derandomize=False,
              phases=(Phase.generate, Phase.target, Phase.shrink),
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def prop(args: tuple) -> None:
        c = evaluate(args)
        if c is None:  # the budget of runs is spent
            reject()
        if not isinstance(c, Candidate):  # ranked out: its predicted tightness steers
            target(-math.log(max(c, 1e-300)), label="-log tightness")
            return
        if math.isfinite(c.tightness):
            target(-math.log(max(c.tightness, 1e-300)), label="-log tightness")
        if c.verdict == "violated":
            last_fail.append(c)
            raise _Falsified(c.setting)

    counter = None
    try:
        prop()
    except _Falsified:
        counter = last_fail[-1]  # hypothesis replays the shrunk example last
    result = FalsifyResult(key if key != "user" else b.name, json_ready(asdict(space)), found,
                           counter, budget, None if folder is None else str(folder), guide,
                           ranked_out)
    if folder is not None:
        _write(result, folder)
    return result


def _write(res: FalsifyResult, folder: Path) -> None:
    """``report.md``, ``candidates.json``, ``tightness.png`` and the counterexample's spec."""
    import json

    from empirics.plots import axes, new_figure

    atomic_write_text(folder / "candidates.json", json.dumps(json_ready(
        {"bound": res.bound, "space": res.space, "budget": res.budget,
         "guide": res.guide, "ranked_out": res.ranked_out,
         "candidates": [asdict(c) for c in res.candidates],
         "counterexample": None if res.counterexample is None else asdict(
             res.counterexample)}), indent=1))
    if res.counterexample is not None:
        d = dict(res.counterexample.spec)
        if str(d.get("bound", "")).startswith("user:"):  # a REPL bound is not in a file
            d["bound"] = "auto"
        ExperimentSpec.from_dict(d).to_toml(folder / "counterexample.toml")
    keys = ("m", "tau", "eta_fraction", "K")
    fig, axs = new_figure(len(keys), width=3.4)
    t = np.asarray([c.tightness for c in res.candidates], dtype=float)
    viol = np.asarray([c.verdict == "violated" for c in res.candidates])
    for ax, k in zip(axs, keys, strict=True):
        x = np.asarray([c.setting[k] for c in res.candidates], dtype=float)
        ax.scatter(x[~viol], t[~viol], s=14, color="C0", label="holds")
        if viol.any():
            ax.scatter(x[viol], t[viol], s=24, color="C3", marker="x", label="violated")
        ax.axhline(1.0, color="k", lw=0.8, ls=":")
        axes(ax, k, "tightness (bound ÷ measured)", log="y", legend=k == keys[0])
    fig.suptitle(f"falsify {res.bound}: {len(res.candidates)} admissible settings", fontsize=10)
    from empirics.plots import save_figure

    save_figure(fig, folder / "tightness.png")
    tight = res.tightest
    lines = [f"# Falsifying `{res.bound}`", "",
             f"{len(res.candidates)} admissible settings searched (budget {res.budget}; every "
             f"one inside the bound's hypotheses), hypothesis steering towards small "
             f"tightness = bound ÷ measured at the worst recorded step.", ""]
    if res.guide == "predict":
        lines += [f"Guided by the predictor: {len(res.ranked_out)} drawn settings were ranked "
                  f"out without running (predicted tightness above {GUIDE_FACTOR:g}× the "
                  f"smallest predicted among those run); they carry no verdict.", ""]
    if res.counterexample is not None:
        ce = res.counterexample
        lines += [f"**Counterexample** (shrunk): {ce.setting} — {ce.message}", "",
                  "Reproduce it: `coopsgd run counterexample.toml`.", ""]
    if tight is not None:
        lines += [f"**Tightest admissible setting found:** {tight.setting}, tightness "
                  f"{tight.tightness:.4g} ({tight.verdict}).", ""]
    lines += ["| m | τ | topology | heterogeneity | η fraction | K | tightness | predicted "
              "tightness | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    for row in res.table():
        pt = row["predicted_tightness"]
        lines.append(f"| {row['m']} | {row['tau']} | {row['topology']} | "
                     f"{row['heterogeneity']:.3g} | {row['eta_fraction']:.3g} | {row['K']} | "
                     f"{row['tightness']:.4g} | {'—' if pt is None else format(pt, '.4g')} | "
                     f"{row['verdict']} |")
    lines += ["", "![tightness across the searched settings](tightness.png)", ""]
    atomic_write_text(folder / "report.md", "\n".join(lines))
