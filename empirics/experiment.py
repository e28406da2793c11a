"""Matched verification: one experiment spec → the runs, the bound with exactly the spec's
parameters, and a verdict.

An :class:`ExperimentSpec` is plain data (TOML/YAML/dict): the problem, the algorithm
configuration A(τ, W, v) with its local-step options, the learning rate, the number of steps, the
seeds. :func:`run_experiment` trains the configuration once per seed with the engine, measures
what the bound bounds, evaluates the bound with the run's own m, v, τ, ζ(W), η, b, K and the
problem's constants, and returns an :class:`ExperimentResult`:

* the metric per seed and its mean with a two-sided (1 − level) Student-t band over seeds;
* the bound per recorded step: nominal (the constants' values), conservative and optimistic
  (every constant moved by ± its stated uncertainty, the largest and smallest value);
* the exact expectation where the engine's problem admits one (the noisy quadratic under plain
  SGD: :mod:`empirics.recursion`);
* tightness = bound ÷ measured mean per recorded step, and a :class:`Verdict`.

What is measured matches the bound's left side:

* non-convex bounds (Cooperative SGD, Theorem 1, digest §1.6): E[(1/K) Σ_{k<K} ‖∇F(u_k)‖²]
  with u_k the average of the m + v rows and u_0 = x₀ the paper's u_1 — the records' running
  average ``grad_norm2_running`` (exact with ``grad_every = 1``);
* PL bounds (Haddadpour et al., digest §3.3): E[F(x̄_T)] − F* at T = the recorded step.

Verdict: the bound must hold at every K, so with S ≥ 2 seeds each recorded step gets a one-sided
t-test of H0: E[metric_K] ≤ conservative bound; "violated" iff the smallest p-value, Bonferroni-
corrected over the recorded steps, is below ``level``. "not applicable" when a condition or an
assumption of the bound fails (the message names it); "no bound" when no bound describes the
configuration.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from empirics.reproductions.base import RunCache, atomic_write_text, json_ready

__all__ = [
    "BOUNDS", "PROBLEMS", "ExperimentResult", "ExperimentSpec", "SweepResult", "Verdict",
    "build_config", "build_lr", "build_mixing", "build_problem", "register_problem",
    "run_experiment", "sweep", "sweep2",
]

#: problem kind → class name in :mod:`empirics.problems` (``register_problem`` adds more)
PROBLEMS: dict[str, str] = {
    "noisy_quadratic": "NoisyQuadratic",
    "piecewise_quadratic_1d": "PiecewiseQuadratic1D",
    "logistic_regression": "LogisticRegression",
    "least_squares": "LeastSquares",
    "mlp": "MLPClassifier",
    "planted_relu": "PlantedReLU",
}
_EXTRA_PROBLEMS: dict[str, Any] = {}

#: bound name → (theory function, metric it bounds)
BOUNDS: dict[str, tuple[str, str]] = {
    "cooperative": ("cooperative_bound", "grad_norm2_running"),
    "synchronous": ("synchronous_bound", "grad_norm2_running"),
    "pasgd": ("pasgd_bound", "grad_norm2_running"),
    "dpsgd": ("dpsgd_bound", "grad_norm2_running"),
    "decentralized_periodic": ("decentralized_periodic_bound", "grad_norm2_running"),
    "easgd": ("easgd_bound", "grad_norm2_running"),
    "pl": ("pl_bound", "suboptimality"),
    "pl_intervals": ("pl_bound_intervals", "suboptimality"),
}

METRICS = {
    "grad_norm2_running": "(1/K) Σ_{k<K} ‖∇F(u_k)‖²",
    "suboptimality": "F(u_k) − F*",
    "grad_norm2": "‖∇F(u_k)‖²",
}

_COOPERATIVE = {"cooperative", "synchronous", "pasgd", "dpsgd", "decentralized_periodic",
                "easgd"}


def register_problem(kind: str, cls: Any) -> None:
    """Make ``cls`` (an ``empirics.problems.Problem`` subclass taking ``m``, ``device``,
    ``dtype`` keywords) available as ``problem = {"kind": kind, ...}``."""
    _EXTRA_PROBLEMS[kind] = cls


# ---------------------------------------------------------------------------------------------
# the spec
# ---------------------------------------------------------------------------------------------
def _drop_none(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _drop_none(v) for k, v in d.items() if v is not None}
    if isinstance(d, list):
        return [_drop_none(v) for v in d]
    return d


def _text_of(path_or_text: str | os.PathLike, suffixes: tuple[str, ...]) -> str:
    """The file's text if ``path_or_text`` is an existing file with one of ``suffixes``, else
    the argument itself (a spec given as text)."""
    p = Path(path_or_text)
    return p.read_text() if p.suffix in suffixes and p.exists() else str(path_or_text)


def _maybe_write(text: str, path: str | os.PathLike | None) -> str:
    if path is not None:
        atomic_write_text(path, text)
    return text


@dataclass
class ExperimentSpec:
    """Everything that defines a matched experiment (plain data).

    problem: ``{"kind": <key of PROBLEMS>, **constructor kwargs}`` (m, device, dtype come from
    the spec). algorithm: ``{"name": ..., "m": ..., ...}`` — see :func:`build_config`.
    lr: a number (constant η), or ``{"kind": "inverse_time", "a", "beta", "max_lr"}``,
    ``{"kind": "stagewise", "etas", "boundaries"}``, ``{"kind": "pl", "alpha_pl"}`` (the PL
    theorem's η_t = 4/(μ(t + a)), a = α_PL·τ_max + 4, digest §3.3 [recalled, low]).
    α_PL defaults to 1; the paper's condition on α is [NF], and η₀ = 4/(μ(α_PL τ + 4)) ≤ 1/L
    needs α_PL ≥ (4κ − 4)/τ — pass it explicitly for ill-conditioned problems.
    steps: K (or T). batch_size: per worker, b. seeds: n (→ 0..n−1) or a list.
    bound: ``"auto"``, ``"none"`` or a key of :data:`BOUNDS`. bound_scale: multiplies the bound
    (0.01 makes a deliberately wrong bound). metric: ``"auto"`` (the bound's left side) or a key
    of :data:`METRICS`. level: test level of the verdict and 1 − coverage of the band.
    """

    name: str
    problem: dict[str, Any]
    algorithm: dict[str, Any]
    lr: Any
    steps: int
    batch_size: int = 1
    seeds: Any = 5
    device: str = "cpu"
    dtype: str = "float64"
    record_every: int = 1
    grad_every: int = 1
    bound: str = "auto"
    bound_scale: float = 1.0
    metric: str = "auto"
    level: float = 0.05

    def __post_init__(self) -> None:
        for key, lo in (("steps", 1), ("batch_size", 1), ("record_every", 1), ("grad_every", 0)):
            x = getattr(self, key)
            if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < lo:
                raise ValueError(f"{key} must be an integer >= {lo} (got {x!r})")
            setattr(self, key, int(x))
        if not isinstance(self.problem, dict) or "kind" not in self.problem:
            raise ValueError(f"problem must be a dict with a 'kind' (one of "
                             f"{sorted(PROBLEMS | _EXTRA_PROBLEMS)}); got {self.problem!r}")
        if not isinstance(self.algorithm, dict) or "name" not in self.algorithm:
            raise ValueError(f"algorithm must be a dict with a 'name'; got {self.algorithm!r}")
        if self.bound not in ("auto", "none", *BOUNDS):
            raise ValueError(f"bound must be 'auto', 'none' or one of {sorted(BOUNDS)} "
                             f"(got {self.bound!r})")
        if self.metric not in ("auto", *METRICS):
            raise ValueError(f"metric must be 'auto' or one of {sorted(METRICS)} "
                             f"(got {self.metric!r})")
        if not (0.0 < float(self.level) < 0.5):
            raise ValueError(f"level must be in (0, 0.5) (got {self.level!r})")
        if not (float(self.bound_scale) > 0 and math.isfinite(float(self.bound_scale))):
            raise ValueError(f"bound_scale must be a finite number > 0 (got {self.bound_scale!r})")
        _ = self.seed_list  # validates seeds

    @property
    def seed_list(self) -> list[int]:
        s = self.seeds
        if isinstance(s, (int, np.integer)) and not isinstance(s, bool):
            if s < 1:
                raise ValueError(f"seeds must be >= 1 or a list of seeds (got {s!r})")
            return list(range(int(s)))
        try:
            out = [int(x) for x in s]
        except TypeError:
            raise ValueError(f"seeds must be an int or a list of ints (got {s!r})") from None
        if not out or any(x < 0 for x in out) or len(set(out)) != len(out):
            raise ValueError(f"seeds must be distinct non-negative integers (got {s!r})")
        return out

    # -- (de)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return json_ready(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExperimentSpec:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown experiment field(s) {unknown}; valid: {sorted(names)}")
        return cls(**copy.deepcopy(d))

    def to_toml(self, path: str | os.PathLike | None = None) -> str:
        import tomli_w

        return _maybe_write(tomli_w.dumps(_drop_none(self.to_dict())), path)

    @classmethod
    def from_toml(cls, path_or_text: str | os.PathLike) -> ExperimentSpec:
        import tomllib

        return cls.from_dict(tomllib.loads(_text_of(path_or_text, (".toml",))))

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        import yaml

        return _maybe_write(yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True),
                            path)

    @classmethod
    def from_yaml(cls, path_or_text: str | os.PathLike) -> ExperimentSpec:
        import yaml

        return cls.from_dict(yaml.safe_load(_text_of(path_or_text, (".yaml", ".yml"))))

    @classmethod
    def load(cls, path: str | os.PathLike) -> ExperimentSpec:
        """From a ``.toml``, ``.yaml``/``.yml`` or ``.json`` file."""
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"experiment spec {p} does not exist")
        if p.suffix == ".toml":
            return cls.from_toml(p)
        if p.suffix in (".yaml", ".yml"):
            return cls.from_yaml(p)
        if p.suffix == ".json":
            return cls.from_dict(json.loads(p.read_text()))
        raise ValueError(f"spec file must end in .toml, .yaml, .yml or .json (got {p.name})")

    def replace(self, path: str, value: Any) -> ExperimentSpec:
        """A copy with the dotted ``path`` set, e.g. ``spec.replace("algorithm.tau", 8)``."""
        d = self.to_dict()
        keys = path.split(".")
        node = d
        for k in keys[:-1]:
            if k not in node or not isinstance(node[k], dict):
                raise ValueError(f"path {path!r}: {k!r} is not a section of the spec")
            node = node[k]
        node[keys[-1]] = value
        return ExperimentSpec.from_dict(d)


# ---------------------------------------------------------------------------------------------
# building the pieces
# ---------------------------------------------------------------------------------------------
_PROBLEM_CACHE: dict[str, Any] = {}
_PROBLEM_CACHE_SIZE = 16


def build_problem(spec: ExperimentSpec) -> Any:
    """The problem object for the spec's ``m``, device and dtype. Problems (and their computed
    constants) are kept for the last 16 distinct (problem, m, device, dtype): sweeps and cached
    reruns do not recompute F*, σ² and L. Problems are not mutated by runs."""
    key = json.dumps([spec.problem, spec.algorithm.get("m"), spec.device, spec.dtype],
                     sort_keys=True, default=str)
    hit = _PROBLEM_CACHE.get(key)
    if hit is None:
        hit = _build_problem(spec)
        if len(_PROBLEM_CACHE) >= _PROBLEM_CACHE_SIZE:
            _PROBLEM_CACHE.pop(next(iter(_PROBLEM_CACHE)))
        _PROBLEM_CACHE[key] = hit
    return hit


def _build_problem(spec: ExperimentSpec) -> Any:
    import torch

    import empirics.problems as P

    kw = dict(spec.problem)
    kind = kw.pop("kind")
    if kind in _EXTRA_PROBLEMS:
        cls = _EXTRA_PROBLEMS[kind]
    elif kind in PROBLEMS:
        cls = getattr(P, PROBLEMS[kind])
    else:
        raise ValueError(f"problem kind must be one of {sorted(PROBLEMS | _EXTRA_PROBLEMS)} "
                         f"(got {kind!r})")
    for bad in ("m", "device", "dtype"):
        if bad in kw:
            raise ValueError(f"problem.{bad} is set by the spec (algorithm.m, device, dtype), "
                             "not in the problem section")
    dtype = {"float32": torch.float32, "float64": torch.float64}.get(spec.dtype)
    if dtype is None:
        raise ValueError(f"dtype must be 'float32' or 'float64' (got {spec.dtype!r})")
    return cls(m=_m(spec.algorithm), device=spec.device, dtype=dtype, **kw)


def _m(alg: dict[str, Any]) -> int:
    m = alg.get("m")
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"algorithm.m must be an integer >= 1 (got {m!r})")
    return int(m)


def build_mixing(m: int, topology: str, weights: str | None = None) -> Any:
    """W for ``topology`` on m nodes: ring, path, star, exponential, complete, torus (m a square),
    hypercube (m a power of 2); ``weights`` a rule of :func:`theory.mixing_matrix`, or
    ``"fmmc"``/``"fdla"`` (optimal, cvxpy); default the topology's built-in weights."""
    import theory

    graphs = {
        "ring": theory.ring_graph, "path": theory.path_graph, "star": theory.star_graph,
        "exponential": theory.exponential_graph, "complete": theory.complete_graph,
    }
    if topology == "torus":
        r = int(round(math.sqrt(m)))
        if r * r != m or r < 3:
            raise ValueError(f"topology 'torus' needs m = r² with r >= 3 (got m = {m})")
        G = theory.torus_graph(r, r)
        default = lambda: theory.torus(r, r)  # noqa: E731
    elif topology == "hypercube":
        k = int(round(math.log2(m))) if m >= 2 else 0
        if 2**k != m or k < 1:
            raise ValueError(f"topology 'hypercube' needs m a power of 2 >= 2 (got m = {m})")
        G = theory.hypercube_graph(k)
        default = lambda: theory.hypercube(k)  # noqa: E731
    elif topology in graphs:
        G = graphs[topology](m)
        default = {"ring": lambda: theory.ring(m), "path": lambda: theory.path(m),
                   "star": lambda: theory.star(m), "exponential": lambda: theory.exponential(m),
                   "complete": lambda: theory.complete(m)}[topology]
    else:
        raise ValueError(f"topology must be one of ['complete', 'exponential', 'hypercube', "
                         f"'path', 'ring', 'star', 'torus'] (got {topology!r})")
    if weights is None:
        return default()
    if weights == "fmmc":
        return theory.fastest_mixing(G).mixing
    if weights == "fdla":
        return theory.fastest_averaging(G).mixing
    return theory.mixing_matrix(G, weights)


def _compressor(c: Any) -> Any:
    """``None``, a compressor, a name (``"topk"``) or ``"name:key=value,..."`` or a dict
    ``{"name": ..., **kwargs}`` → an ``empirics.compressors`` compressor."""
    from empirics import compressors

    if c is None or hasattr(c, "bits"):
        return c
    if isinstance(c, dict):
        kw = dict(c)
        return compressors.make(kw.pop("name"), **kw)
    if isinstance(c, str):
        name, _, rest = c.partition(":")
        kw: dict[str, Any] = {}
        for item in filter(None, rest.split(",")):
            k, _, val = item.partition("=")
            if not _:
                raise ValueError(f"compressor {c!r}: options are key=value (got {item!r})")
            kw[k.strip()] = _num(val.strip())
        return compressors.make(name, **kw)
    raise ValueError(f"compressor must be a name, 'name:key=value', a dict or None (got {c!r})")


def _num(s: str) -> Any:
    for conv in (int, float):
        try:
            return conv(s)
        except ValueError:
            pass
    return s


def _schedule(m: int, sched: dict[str, Any], T: int) -> Any:
    import theory

    kw = dict(sched)
    kind = kw.pop("kind", None)
    W = theory.average(m)
    if kind == "periodic":
        return theory.periodic(W, int(kw["tau"]))
    if kind == "intervals":
        return theory.Intervals(W, [int(x) for x in kw["periods"]])
    if kind == "spiridonoff":
        return theory.spiridonoff(W, T, kw.get("R"))
    if kind == "linear_growth":
        return theory.linear_growth(W, T, int(kw["E"]), int(kw["tau0"]))
    if kind == "one_shot":
        return theory.one_shot(W)
    if kind == "adaptive_lupa":
        return theory.adaptive_lupa(W, int(kw["tau0"]))
    raise ValueError("algorithm.schedule.kind must be one of ['adaptive_lupa', 'intervals', "
                     f"'linear_growth', 'one_shot', 'periodic', 'spiridonoff'] (got {kind!r})")


def build_config(spec: ExperimentSpec) -> Any:
    """The :class:`empirics.configs.Config` of ``spec.algorithm``.

    ``name`` ∈ synchronous(m), pasgd(m, tau), dpsgd(m, topology, weights),
    decentralized_periodic(m, tau, topology, weights), easgd(m, tau, alpha),
    hierarchical(m, n_groups, tau1, tau2), local_sgd(m, schedule={"kind": ...}),
    mdsgd(m, compressor, momentum, topology?, tau?), qsgd(m, s, topology?, tau?),
    squarm(m, topology, weights, tau, compressor, gamma, threshold, momentum),
    choco(m, topology, weights, compressor, gamma); options momentum, nesterov, compressor.
    """
    from empirics import configs

    a = dict(spec.algorithm)
    name = a.pop("name")
    m = _m(spec.algorithm)
    a.pop("m")
    opts = {k: a.pop(k) for k in ("momentum", "nesterov") if k in a}
    comp = _compressor(a.pop("compressor", None))
    topology, weights = a.pop("topology", None), a.pop("weights", None)

    def W() -> Any:
        if topology is None:
            raise ValueError(f"algorithm {name!r} needs a topology")
        return build_mixing(m, topology, weights)

    if name == "synchronous":
        cfg = configs.synchronous(m, **opts)
    elif name == "pasgd":
        cfg = configs.pasgd(m, a.pop("tau"), **opts)
    elif name == "dpsgd":
        cfg = configs.dpsgd(W(), **opts)
    elif name == "decentralized_periodic":
        cfg = configs.decentralized_periodic(W(), a.pop("tau"), **opts)
    elif name == "easgd":
        cfg = configs.easgd(m, a.pop("tau"), a.pop("alpha"), **opts)
    elif name == "hierarchical":
        cfg = configs.hierarchical(m, a.pop("n_groups"), a.pop("tau1"), a.pop("tau2"), **opts)
    elif name == "local_sgd":
        cfg = configs.local_sgd(_schedule(m, a.pop("schedule", {}), spec.steps), **opts)
    elif name == "mdsgd":
        cfg = configs.mdsgd(m, comp, W=None if topology is None else W(),
                            tau=int(a.pop("tau", 1)), **opts)
        comp = None
    elif name == "qsgd":
        cfg = configs.qsgd(m, int(a.pop("s", 1)), W=None if topology is None else W(),
                           tau=int(a.pop("tau", 1)), compressor=comp, **opts)
        comp = None
    elif name in ("squarm", "choco"):
        gamma = a.pop("gamma", None)
        if gamma is None or comp is None:
            raise ValueError(f"algorithm {name!r} needs a compressor and gamma")
        if name == "choco":
            cfg = configs.choco_sgd(W(), compressor=comp, gamma=gamma)
        else:
            th = a.pop("threshold", 0.0)
            cfg = configs.squarm(W(), int(a.pop("tau", 1)), compressor=comp, gamma=gamma,
                                 threshold=float(th), **opts)
        comp = None
    else:
        raise ValueError("algorithm.name must be one of ['choco', 'decentralized_periodic', "
                         "'dpsgd', 'easgd', 'hierarchical', 'local_sgd', 'mdsgd', 'pasgd', "
                         f"'qsgd', 'squarm', 'synchronous'] (got {name!r})")
    if a:
        raise ValueError(f"algorithm {name!r}: unknown option(s) {sorted(a)}")
    if comp is not None:
        cfg = cfg.with_options(compressor=comp)
    return cfg


def _max_period(cfg: Any, T: int) -> int:
    p = cfg.schedule.periods(T)
    return int(np.max(p)) if len(p) else T


def build_lr(spec: ExperimentSpec, problem: Any, cfg: Any) -> Any:
    """The engine's learning-rate schedule for ``spec.lr`` (see :class:`ExperimentSpec`)."""
    from empirics.engine import Constant, InverseTime, Stagewise

    lr = spec.lr
    if isinstance(lr, (int, float)) and not isinstance(lr, bool):
        return Constant(float(lr))
    if not isinstance(lr, dict) or "kind" not in lr:
        raise ValueError(f"lr must be a number or a dict with a 'kind' (got {lr!r})")
    kw = dict(lr)
    kind = kw.pop("kind")
    if kind == "constant":
        return Constant(float(kw["eta"]))
    if kind == "inverse_time":
        return InverseTime(**kw)
    if kind == "stagewise":
        return Stagewise(tuple(kw["etas"]), tuple(kw["boundaries"]))
    if kind == "pl":
        mu = problem.constants.mu
        if mu is None:
            raise ValueError("lr kind 'pl' needs a problem with a PL/strong-convexity constant μ")
        alpha_pl = float(kw.pop("alpha_pl", 1.0))
        a = alpha_pl * _max_period(cfg, spec.steps) + 4
        return InverseTime(a=4.0 / mu.value, beta=a)
    raise ValueError(f"lr kind must be one of ['constant', 'inverse_time', 'pl', 'stagewise'] "
                     f"(got {kind!r})")


# ---------------------------------------------------------------------------------------------
# the result
# ---------------------------------------------------------------------------------------------
@dataclass
class Verdict:
    """``status``: "holds", "violated", "not applicable" or "no bound"; ``message`` says why.
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


_ARRAYS = ("steps", "per_seed", "mean", "lower", "upper", "bound", "bound_conservative",
           "bound_optimistic", "truth", "tightness")


@dataclass
class ExperimentResult:
    """Measured metric vs bound for one spec (see the module docstring). Arrays are over the
    recorded steps (``per_seed`` is seeds × steps); bound/truth/tightness may be None."""

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
        return (f"ExperimentResult({self.spec.get('name')}, {self.metric_label} = "
                f"{f['measured']:.4g} [{f['lower']:.4g}, {f['upper']:.4g}] over "
                f"{self.per_seed.shape[0]} seeds, bound {b}, tightness {t}; {self.verdict})")


def _run_dict(r: Any) -> dict[str, Any]:
    d = r.to_dict()
    d["u_final"] = None  # the model can be large; the metric and records are kept
    return d


# ---------------------------------------------------------------------------------------------
# bound evaluation
# ---------------------------------------------------------------------------------------------
def _auto_bound(spec: ExperimentSpec, cfg: Any, problem: Any) -> str:
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
    from empirics.engine import Constant

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


def _assumptions(bname: str, spec: ExperimentSpec, cfg: Any, problem: Any, lr: Any
                 ) -> list[str]:
    """Assumptions of the bound that the setting breaks (each a message)."""
    from empirics.engine import Constant

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


def _evaluate_bound(bname: str, spec: ExperimentSpec, cfg: Any, problem: Any, lr: Any,
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


# ---------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------
def _band(x: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and two-sided (1 − level) Student-t interval over axis 0."""
    from scipy import stats

    n = x.shape[0]
    mean = x.mean(axis=0)
    if n < 2:
        return mean, mean.copy(), mean.copy()
    se = x.std(axis=0, ddof=1) / math.sqrt(n)
    q = stats.t.ppf(1 - level / 2, n - 1)
    return mean, mean - q * se, mean + q * se


def _verdict(x: np.ndarray, steps: np.ndarray, bound_c: np.ndarray, bound_o: np.ndarray,
             level: float) -> Verdict:
    from scipy import stats

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
        msg = (f"1 seed, no test possible: measured {mean[worst]:.4g} "
               f"{'>' if viol else '≤'} bound {bc[worst]:.4g} at step {int(ks[worst])}")
        return Verdict("violated" if viol else "holds", msg, n, level, None, None,
                       int(ks[worst]))
    sd = xs.std(axis=0, ddof=1)
    se = sd / math.sqrt(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, (mean - bc) / se, np.where(mean > bc, np.inf, -np.inf))
    p = stats.t.sf(t, n - 1)
    worst = int(np.argmin(p))
    p_adj = min(1.0, float(p[worst]) * R)
    k = int(ks[worst])
    if p_adj < level:
        msg = (f"mean {mean[worst]:.4g} exceeds the conservative bound {bc[worst]:.4g} at step "
               f"{k} (one-sided t = {t[worst]:.3g}, {n} seeds, p = {p_adj:.2g} after "
               f"Bonferroni over {R} steps < {level})")
        return Verdict("violated", msg, n, level, p_adj, float(t[worst]), k)
    above_opt = int(np.sum(mean > bo))
    tail = ("" if above_opt == 0 else
            f"; the mean exceeds the optimistic bound at {above_opt} of {R} steps")
    tight = float(np.nanmin(bc / np.where(mean > 0, mean, np.nan))) if np.any(mean > 0) \
        else math.nan
    msg = (f"no significant excess over the conservative bound at any of {R} recorded steps "
           f"({n} seeds, one-sided t-test, Bonferroni, level {level}); smallest bound/mean = "
           f"{tight:.3g}{tail}")
    return Verdict("holds", msg, n, level, p_adj, float(t[worst]), k)


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------
def _metric_of(res: Any, metric: str, F_star: float) -> np.ndarray:
    if metric == "grad_norm2_running":
        return np.asarray(res.grad_norm2_running, dtype=float)
    if metric == "suboptimality":
        return np.asarray(res.loss, dtype=float) - F_star
    return np.asarray(res.grad_norm2, dtype=float)


def _truth(spec: ExperimentSpec, problem: Any, cfg: Any, lr: Any, metric: str
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


def run_experiment(spec: ExperimentSpec, *, progress: bool = False,
                   cache: RunCache | None = None) -> ExperimentResult:
    """Run ``spec`` (one engine run per seed; cached per seed in ``cache``) and compare the
    metric with the bound. See the module docstring for the metric, band and verdict."""
    from tqdm.auto import tqdm

    from empirics.engine import DivergenceError, RunSpec, run
    from empirics.records import Result

    t0 = time.perf_counter()
    cache = cache or RunCache(None)
    problem = build_problem(spec)
    cfg = build_config(spec)
    lr = build_lr(spec, problem, cfg)
    bname = _auto_bound(spec, cfg, problem) if spec.bound == "auto" else spec.bound
    metric = spec.metric
    if metric == "auto":
        metric = BOUNDS[bname][1] if bname != "none" else (
            "suboptimality" if problem.constants.mu is not None else "grad_norm2_running")
    F_star = problem.constants.F_star.value

    base = spec.to_dict()
    for k in ("seeds", "bound", "bound_scale", "metric", "level", "name"):
        base.pop(k)
    runs = []
    seeds = spec.seed_list
    for seed in tqdm(seeds, desc=spec.name, disable=not progress, leave=False):
        def one(seed: int = seed) -> dict[str, Any]:
            rs = RunSpec(problem, cfg, lr, spec.steps, batch_size=spec.batch_size, seed=seed,
                         device=spec.device, dtype=spec.dtype, record_every=spec.record_every,
                         grad_every=spec.grad_every)
            try:
                return _run_dict(run(rs))
            except DivergenceError as e:
                raise DivergenceError(e.step, f"{e.what} (experiment {spec.name!r}, seed {seed}, "
                                      f"lr {spec.lr!r}: lower the learning rate)",
                                      e.partial) from e

        runs.append(Result.from_dict(cache.get_or_run({"run": base, "seed": seed}, one)))
    steps = np.asarray(runs[0].step, dtype=np.int64)
    per_seed = np.stack([_metric_of(r, metric, F_star) for r in runs])
    if not np.all(np.isfinite(per_seed[:, steps > 0])):
        bad = [s for s, r in zip(seeds, runs, strict=True) if r.status != "completed"]
        raise FloatingPointError(f"experiment {spec.name!r}: the metric is not finite "
                                 f"(runs not completed for seeds {bad}); lower the lr")
    mean, lower, upper = _band(per_seed, spec.level)
    truth = _truth(spec, problem, cfg, lr, metric)

    bound = cons = opt = tight = None
    info = None
    if bname == "none":
        verdict = Verdict("no bound", f"no bound of the four papers describes "
                          f"{spec.algorithm['name']!r} with this setting", len(seeds),
                          spec.level)
    else:
        failed = _assumptions(bname, spec, cfg, problem, lr)
        ev, cond_failed = _evaluate_bound(bname, spec, cfg, problem, lr, steps)
        failed += cond_failed
        info = ev["info"] if "info" in ev else ev
        if BOUNDS[bname][1] != metric:
            failed.append(f"bound {bname!r} bounds {BOUNDS[bname][1]}, not {metric}")
        if failed:
            verdict = Verdict("not applicable", "; ".join(failed), len(seeds), spec.level,
                              failed=failed)
        else:
            bound, cons, opt = ev["bound"], ev["conservative"], ev["optimistic"]
            with np.errstate(divide="ignore", invalid="ignore"):
                tight = np.where(mean > 0, bound / mean, np.nan)
            verdict = _verdict(per_seed, steps, cons, opt, spec.level)

    def last(a: np.ndarray | None) -> float | None:
        return None if a is None else float(a[-1])

    final = {"step": int(steps[-1]), "measured": float(mean[-1]), "lower": float(lower[-1]),
             "upper": float(upper[-1]), "bound": last(bound),
             "bound_conservative": last(cons), "bound_optimistic": last(opt),
             "tightness": last(tight), "truth": last(truth)}
    return ExperimentResult(
        spec=spec.to_dict(), metric=metric, steps=steps, per_seed=per_seed, mean=mean,
        lower=lower, upper=upper, bound=bound, bound_conservative=cons, bound_optimistic=opt,
        truth=truth, tightness=tight, verdict=verdict, constants=problem.constants.to_dict(),
        bound_info=info, final=final, runs=runs, seconds=time.perf_counter() - t0)


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
        """One row per value: measured (mean, CI), bound, truth, tightness, verdict."""
        rows = []
        for v, r in zip(self.values, self.results, strict=True):
            rows.append({self.param: v, **{k: r.final[k] for k in (
                "measured", "lower", "upper", "bound", "truth", "tightness")},
                "verdict": r.verdict.status})
        return rows

    def column(self, which: str) -> np.ndarray:
        """Final ``measured``/``bound``/``truth``/``lower``/``upper`` across the sweep."""
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
    out = {}
    for v2 in values2:
        s = spec.replace(param2, v2)
        s.name = f"{spec.name}[{param2}={v2}]"
        out[v2] = sweep(s, param, values, progress=progress, cache=cache)
    return out
