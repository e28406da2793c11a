"""The one spec language: :class:`ExperimentSpec` (plain data: TOML/YAML/JSON) and
:class:`RunSpec` (objects: one seed's run).

An :class:`ExperimentSpec` describes a matched experiment: the problem, the algorithm
configuration A(τ, W, v) with its local-step options, the learning rate, the number of steps,
the seeds, and the bound to compare with. ``spec.run_spec(seed)`` builds the :class:`RunSpec`
of one seed (the problem object, a :class:`~empirics.configs.Config`, a step-size schedule),
which the simulator (:func:`empirics.engine.run`) and the distributed backend
(:func:`empirics.distributed.run_distributed`) both run. One file therefore runs unchanged
through ``coopsgd run``, :func:`empirics.experiment.run_experiment` and the distributed
launcher.

Vocabulary: ``problem = {kind = ...}`` (a key of :data:`PROBLEMS`, or one added by
:func:`register_problem`), ``algorithm = {name = ..., m = ..., ...}`` (see
:func:`build_config`), ``lr`` a number or ``{kind = "constant" | "inverse_time" | "stagewise" |
"pl", ...}``, compressors ``"name:key=value,..."`` or ``{name = ..., ...}``, topologies by name
with ``weights`` a weight rule or ``"fmmc"``/``"fdla"``.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from empirics.configs import Config
from empirics.devices import check_device
from empirics.records import atomic_write_text, json_ready
from theory.bound import METRICS, Bound
from theory.bounds import registry
from theory.stepsizes import KIND_KEYS, as_lr

__all__ = [
    "DIVERGENCE_RULE", "DTYPES", "LR_KINDS", "METRICS", "PROBLEMS", "SCHEDULES",
    "Algorithm", "ExperimentSpec", "RunSpec", "build_config", "build_lr", "build_mixing",
    "build_problem", "check_algorithm", "check_device", "check_lr", "check_name", "check_problem",
    "default_strides", "register_problem",
]

#: problem kind → class name in :mod:`empirics.problems` (``register_problem`` adds more)
PROBLEMS: dict[str, str] = {
    "noisy_quadratic": "NoisyQuadratic",
    "piecewise_quadratic_1d": "PiecewiseQuadratic1D",
    "logistic_regression": "LogisticRegression",
    "least_squares": "LeastSquares",
    "mlp": "MLPClassifier",
    "planted_relu": "PlantedReLU",
    "module": "ModuleProblem",
    "quadratic": "Quadratic",
}
_EXTRA_PROBLEMS: dict[str, Any] = {}

def register_problem(kind: str, cls: Any) -> None:
    """Make ``cls`` (an ``empirics.problems.Problem`` subclass taking ``m``, ``device``,
    ``dtype`` keywords) available as ``problem = {"kind": kind, ...}``."""
    _EXTRA_PROBLEMS[kind] = cls


DTYPES = {"float32": torch.float32, "float64": torch.float64}


#: the divergence rule, as the docs and error messages state it
DIVERGENCE_RULE = ("a run has diverged at step k when a worker's mini-batch loss or F(u_k) "
                   "exceeds F(x₀) + D·max(|F(x₀)|, 1), when ‖∇F(u_k)‖² exceeds "
                   "D·max(‖∇F(x₀)‖², 1), or when any of them is NaN/inf (D = divergence, "
                   "default 10⁶)")


#: share of a run's step time that the default strides give to each of the two kinds of
#: recording work (the ‖∇F(u_k)‖² samples of the running average, and the records): 15 %
#: together, leaving room for the cost model's errors under the 20 % target
RECORD_BUDGET = 0.075
#: fixed costs of a step and of an exact evaluation, in parameter·rows (the strides' cost
#: model; one parameter·row ≈ 1 ns on the 2-core CPU the defaults were measured on)
STEP_OVERHEAD = 50_000
EVAL_OVERHEAD = 20_000


def default_strides(problem: Any, m: int, batch_size: int, T: int,
                    record_every: int | None = None, grad_every: int | None = None
                    ) -> tuple[int, int]:
    """``(record_every, grad_every)`` of a run of T steps with m workers and batch b: the
    given ones kept, the missing ones (None) the defaults.

    Cost model (deterministic: the same run always records the same steps): with p =
    ``problem.dim`` parameters, one exact ‖∇F‖² costs ρ = (E₀ + n_eval·p)/(S₀ + m·b·p) steps,
    n_eval = ``problem.eval_rows()`` the data rows an exact evaluation reads (0 for closed
    forms), S₀ = :data:`STEP_OVERHEAD` and E₀ = :data:`EVAL_OVERHEAD` the fixed costs of a step
    and of an evaluation. Then grad_every = ⌈ρ/β⌉ (β = :data:`RECORD_BUDGET` = 0.075): 1 — the
    exact running average — where ∇F costs at most β of a step, otherwise the unbiased
    stratified subsample (one uniformly random step per block); record_every =
    max(⌈T/100⌉, ⌈1.5ρ/β⌉) (a record evaluates F and ∇F, ≈ 1.5ρ): about 100 records, fewer
    where they are dear. Both shares stay near β of the steps' time, so recording costs under
    20 % of a run (``benchmarks/bench_defaults.py`` measures it). A short run of a problem whose
    exact ∇F is dear therefore gets few records and gradient samples (at least the records at 0
    and T and one sample); pass ``record_every``/``grad_every`` for more.

    With record_every given and grad_every not, grad_every is the largest divisor of
    record_every not above the default; otherwise record_every is rounded up to a multiple of
    grad_every. Either way every record's running average covers whole blocks (each evaluated
    once), never a block still to come."""
    rows_fn = getattr(problem, "eval_rows", None)
    rows = int(rows_fn()) if rows_fn is not None else int(getattr(problem, "n", 0) or 0)
    p = max(1, int(getattr(problem, "dim", 1) or 1))
    rho = (EVAL_OVERHEAD + rows * p) / (STEP_OVERHEAD + m * batch_size * p)
    q_auto = max(1, min(math.ceil(rho / RECORD_BUDGET - 1e-9), T))
    if grad_every is None:
        if record_every is None:
            grad_every = q_auto
        else:
            grad_every = max(q for q in range(1, min(q_auto, record_every) + 1)
                             if record_every % q == 0)
    if record_every is None:
        record_every = max(1, math.ceil(T / 100), math.ceil(1.5 * rho / RECORD_BUDGET - 1e-9))
        if grad_every > 1:
            record_every = -(-record_every // grad_every) * grad_every
    return record_every, grad_every


@dataclass
class RunSpec:
    """Everything that defines a run (``to_dict`` is JSON-ready).

    problem: an ``empirics.problems.Problem`` with m = config.m workers. config: a
    :class:`empirics.configs.Config` (schedule, v, compressor, momentum). lr: number or schedule
    t -> η_t. T: number of steps. batch_size: per worker. seed: fixes batches (all workers'
    batches of a step drawn at once from one generator seeded ``seed_for(seed, 0)``),
    compressor randomness (:func:`compressor_seed`) and
    the gradient-norm subsample. device/dtype: default the problem's (must match it).
    record_every: record stride (steps 0, s, 2s, … and always the last step T); default (None):
    :func:`default_strides`, about T/100 or sparser where a record is dear.
    grad_every: ‖∇F(u_k)‖² for the running average — 1: every step (exact); q > 1: one uniformly
    random step per block of q steps (unbiased); 0: only at records; default (None):
    :func:`default_strides`, every step where the exact ‖∇F‖² is cheap against a step, a
    stratified subsample otherwise (recording stays near 20 % of the run's time at most).
    divergence: the blow-up factor D of the divergence rule (:data:`DIVERGENCE_RULE`): the run
    stops with a :class:`~empirics.algorithm.DivergenceError` naming the step when a worker's
    mini-batch loss or F(u_k) exceeds F(x₀) + D·max(|F(x₀)|, 1), when ‖∇F(u_k)‖² exceeds
    D·max(‖∇F(x₀)‖², 1), or when any of them is NaN/inf (default D = 10⁶; ``math.inf``: only
    NaN/inf count).
    """

    problem: Any
    config: Config
    lr: Any
    T: int
    batch_size: int = 1
    seed: int = 0
    device: str | None = None
    dtype: str | None = None
    record_every: int | None = None
    grad_every: int | None = None
    divergence: float = 1e6

    def __post_init__(self) -> None:
        self.lr = as_lr(self.lr)
        d = self.divergence
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 1 < float(d):
            raise ValueError(f"divergence must be a number > 1, the blow-up factor of the "
                             f"divergence rule (inf: only NaN/inf count) (got {d!r})")
        self.divergence = float(d)
        auto = [k for k in ("record_every", "grad_every") if getattr(self, k) is None]
        for name, lo in (("T", 1), ("batch_size", 1), ("record_every", 1), ("grad_every", 0),
                         ("seed", 0)):
            x = getattr(self, name)
            if name in auto:
                continue
            if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < lo:
                raise ValueError(f"{name} must be an integer >= {lo} (got {x!r})")
            setattr(self, name, int(x))
        if not isinstance(self.config, Config):
            raise ValueError(f"config must be an empirics.configs.Config (got "
                             f"{type(self.config).__name__}); build one with e.g. pasgd(m, tau)")
        pm = getattr(self.problem, "m", None)
        if pm != self.config.m:
            n = self.config.n
            raise ValueError(f"W size does not match the workers: the schedule's W is {n}×{n} "
                             f"= m + v with v = {self.config.v}, so it needs m = {self.config.m} "
                             f"workers, but problem.m = {pm}")
        pdt = str(self.problem.dtype).replace("torch.", "")
        if self.dtype is None:
            self.dtype = pdt
        self.dtype = str(self.dtype).replace("torch.", "")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be 'float32' or 'float64' (got {self.dtype!r})")
        if self.dtype != pdt:
            raise ValueError(f"dtype {self.dtype} differs from the problem's dtype {pdt}: build "
                             f"the problem with dtype=torch.{self.dtype}")
        pdev = torch.device(self.problem.device)
        dev = pdev if self.device is None else torch.device(self.device)
        if dev.type != pdev.type or (dev.index is not None and pdev.index is not None
                                     and dev.index != pdev.index):
            raise ValueError(f"device {dev} differs from the problem's device {pdev}: build the "
                             f"problem with device={str(dev)!r}")
        self.device = str(pdev)
        if auto:
            self.record_every, self.grad_every = default_strides(
                self.problem, self.config.m, self.batch_size, self.T, self.record_every,
                self.grad_every)

    @property
    def m(self) -> int:
        return self.config.m

    @property
    def v(self) -> int:
        return self.config.v

    def to_dict(self) -> dict[str, Any]:
        p = self.problem
        pd = p.to_dict() if hasattr(p, "to_dict") else {"repr": repr(p)}
        return {"problem": pd, "config": self.config.to_dict(), "m": self.m, "v": self.v,
                "lr": self.lr.to_dict(), "T": self.T, "batch_size": self.batch_size,
                "seed": self.seed, "device": self.device, "dtype": self.dtype,
                "record_every": self.record_every, "grad_every": self.grad_every,
                "divergence": self.divergence}


# ---------------------------------------------------------------------------------------------
# the experiment spec (plain data)
# ---------------------------------------------------------------------------------------------
def _drop_none(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _drop_none(v) for k, v in d.items() if v is not None}
    if isinstance(d, list):
        return [_drop_none(v) for v in d]
    return d


def _where(path_or_text: str | os.PathLike) -> str:
    """The file name for messages, or "spec text" when the spec was given as text."""
    if isinstance(path_or_text, str) and ("\n" in path_or_text or len(path_or_text) > 255):
        return "spec text"
    return str(path_or_text)


def _text_of(path_or_text: str | os.PathLike, suffixes: tuple[str, ...]) -> str:
    """The file's text if ``path_or_text`` is an existing file with one of ``suffixes``, else
    the argument itself (a spec given as text)."""
    if isinstance(path_or_text, str) and "\n" in path_or_text:
        return path_or_text  # text (a file name has no newline)
    p = Path(path_or_text)
    try:
        is_file = p.suffix in suffixes and p.is_file()
    except OSError:  # e.g. a one-line text longer than a file name may be
        is_file = False
    return p.read_text() if is_file else str(path_or_text)


def _maybe_write(text: str, path: str | os.PathLike | None) -> str:
    if path is not None:
        atomic_write_text(path, text)
    return text


_NAME_OK = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.,=+\-\[\] ]*$")


def check_name(name: Any) -> None:
    """A spec name becomes a folder name (``runs/<name>``): letters, digits and ``_ . , = + - [
    ]`` and spaces, not starting with a dot, so it can never point outside its folder."""
    if not isinstance(name, str) or not _NAME_OK.match(name) or ".." in name:
        raise ValueError(f"name must be letters, digits and _ . , = + - [ ] or spaces, not "
                         f"starting with '.' and without '..' or a path separator (it names a "
                         f"folder); got {name!r}")


def _problem_class(kind: Any) -> Any:
    if kind in _EXTRA_PROBLEMS:
        return _EXTRA_PROBLEMS[kind]
    if kind in PROBLEMS:
        import empirics.problems as P

        return getattr(P, PROBLEMS[kind])
    import difflib

    kinds = sorted(PROBLEMS | _EXTRA_PROBLEMS)
    near = difflib.get_close_matches(str(kind), kinds, n=1)
    raise ValueError(f"problem kind must be one of {kinds} (got {kind!r})"
                     + (f"; did you mean {near[0]!r}?" if near else ""))


def check_problem(problem: dict[str, Any]) -> None:
    """Refuse an unknown problem kind or a key its constructor does not take (naming it)."""
    import inspect

    cls = _problem_class(problem["kind"])
    for bad in ("m", "device", "dtype"):
        if bad in problem:
            raise ValueError(f"problem.{bad} is set by the spec (algorithm.m, device, dtype), "
                             "not in the problem section")
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = tuple(k for k in params if k not in ("m", "device", "dtype"))
    required = tuple(k for k, p in params.items() if k in valid
                     and p.default is inspect.Parameter.empty
                     and p.kind is not inspect.Parameter.VAR_POSITIONAL)
    _keys("problem", {k: v for k, v in problem.items() if k != "kind"}, required,
          tuple(k for k in valid if k not in required), f"problem {problem['kind']!r}")


@dataclass
class ExperimentSpec:
    """Everything that defines a matched experiment (plain data).

    problem: ``{"kind": <key of PROBLEMS>, **constructor kwargs}`` (m, device, dtype come from
    the spec). algorithm: ``{"name": ..., "m": ..., ...}`` — see :func:`build_config`.
    lr: a number (constant η), or ``{"kind": "inverse_time", "a", "beta", "max_lr"}``,
    ``{"kind": "stagewise", "etas", "boundaries"}``, ``{"kind": "pl", "alpha_pl"}`` (the PL
    theorem's η_t = 4/(μ(t + a)), a = α_PL·τ_max + 4; Haddadpour et al. 2019, recalled, low
    confidence).
    α_PL defaults to 1; the paper's condition on α is [NF], and η₀ = 4/(μ(α_PL τ + 4)) ≤ 1/L
    needs α_PL ≥ (4κ − 4)/τ — pass it explicitly for ill-conditioned problems.
    steps: K (or T). batch_size: per worker, b. seeds: n (→ 0..n−1) or a list. record_every,
    grad_every: as in :class:`RunSpec` — left out (None), each run takes
    :func:`default_strides` (about 100 records; the exact ‖∇F(u_k)‖² at every step where it is
    cheap, an unbiased stratified subsample otherwise). divergence: the
    blow-up factor of the divergence rule (:data:`DIVERGENCE_RULE`; ``inf``: only NaN/inf).
    bound: ``"auto"``, ``"none"``, a name of ``theory.bounds.registry`` or a
    :class:`theory.Bound` (its setting says what it bounds; not stored in files). bound_values:
    values for bound symbols the run does not define. bound_scale: multiplies the bound
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
    record_every: int | None = None
    grad_every: int | None = None
    divergence: float = 1e6
    bound: Any = "auto"
    bound_values: dict[str, float] = field(default_factory=dict)
    bound_scale: float = 1.0
    metric: str = "auto"
    level: float = 0.05

    def __post_init__(self) -> None:
        for key, lo in (("steps", 1), ("batch_size", 1), ("record_every", 1), ("grad_every", 0)):
            x = getattr(self, key)
            if x is None and key in ("record_every", "grad_every"):
                continue  # the run's defaults (default_strides), resolved per problem
            if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < lo:
                raise ValueError(f"{key} must be an integer >= {lo} (got {x!r})")
            setattr(self, key, int(x))
        if not isinstance(self.problem, dict) or "kind" not in self.problem:
            raise ValueError(f"problem must be a dict with a 'kind' (one of "
                             f"{sorted(PROBLEMS | _EXTRA_PROBLEMS)}); got {self.problem!r}")
        if not isinstance(self.algorithm, dict) or "name" not in self.algorithm:
            raise ValueError(f"algorithm must be a dict with a 'name'; got {self.algorithm!r}")
        if not isinstance(self.bound, Bound) and self.bound not in ("auto", "none"):
            try:
                registry.resolve(self.bound)
            except ValueError as e:
                raise ValueError(f"bound must be 'auto', 'none', a theory.Bound or a "
                                 f"registered name: {e}") from None
        if self.metric not in ("auto", *METRICS):
            raise ValueError(f"metric must be 'auto' or one of {sorted(METRICS)} "
                             f"(got {self.metric!r})")
        if not isinstance(self.bound_values, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in self.bound_values.values()):
            raise ValueError(f"bound_values must map symbol names to finite numbers (got "
                             f"{self.bound_values!r})")
        if not (0.0 < float(self.level) < 0.5):
            raise ValueError(f"level must be in (0, 0.5) (got {self.level!r})")
        if not (float(self.bound_scale) > 0 and math.isfinite(float(self.bound_scale))):
            raise ValueError(f"bound_scale must be a finite number > 0 (got {self.bound_scale!r})")
        _ = self.seed_list  # validates seeds
        check_name(self.name)
        if self.divergence in ("inf", "Infinity"):  # the JSON form of inf (json_ready)
            self.divergence = math.inf
        d = self.divergence
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 1 < float(d):
            raise ValueError(f"divergence must be a number > 1, the blow-up factor of the "
                             f"divergence rule (inf: only NaN/inf count) (got {d!r})")
        check_device(self.device)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be 'float32' or 'float64' (got {self.dtype!r})")
        check_problem(self.problem)
        check_algorithm(self.algorithm)
        check_lr(self.lr)
        pl = isinstance(self.lr, dict) and self.lr.get("kind") == "pl"  # PL: F(u_T) − F*
        if self.grad_every == 0 and (self.metric == "grad_norm2_running" or (
                self.metric == "auto" and not pl and self.bound != "none")):
            raise ValueError("grad_every = 0 turns off the running average of ‖∇F(u_k)‖², the "
                             "left side of the Cooperative SGD bounds: use grad_every >= 1, or "
                             "metric = 'suboptimality'/'grad_norm2', or bound = 'none'")
        for key in ("tau", "tau2"):
            tau = self.algorithm.get(key)
            if isinstance(tau, int) and tau > self.steps:
                warnings.warn(f"algorithm.{key} = {tau} > steps = {self.steps}: the workers "
                              f"average only once, after the last step (no averaging inside "
                              f"the horizon); a bound that needs τ | K is not applicable",
                              UserWarning, stacklevel=2)

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
        """Plain data (a user's own Bound appears as ``"user: <its name>"``: a spec file names
        registered bounds only)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        if isinstance(self.bound, Bound):
            d["bound"] = f"user: {self.bound.name}"
        return json_ready(copy.deepcopy(d))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExperimentSpec:
        """From plain data; a missing or unknown field is named (with the near miss)."""
        import dataclasses
        import difflib

        if not isinstance(d, dict):
            raise ValueError(f"an experiment spec is a table of fields (name, problem, "
                             f"algorithm, lr, steps, ...); got {type(d).__name__}")
        names = [f.name for f in fields(cls)]
        required = [f.name for f in fields(cls) if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING]
        unknown = sorted(set(d) - set(names))
        for k in required:
            if k not in d:
                near = difflib.get_close_matches(k, unknown, n=1)
                raise ValueError(f"the spec is missing the field {k!r}"
                                 + (f" ({near[0]!r} is given: a misspelling?)" if near else "")
                                 + f"; required: {required}")
        if unknown:
            near = difflib.get_close_matches(unknown[0], names, n=1)
            raise ValueError(f"unknown experiment field(s) {unknown}"
                             + (f"; did you mean {near[0]!r}?" if near else "")
                             + f"; valid: {sorted(names)}")
        bound = d.get("bound", "auto")  # a theory.Bound object is kept as is
        return cls(**copy.deepcopy({k: v for k, v in d.items() if k != "bound"}), bound=bound)

    def to_toml(self, path: str | os.PathLike | None = None) -> str:
        import tomli_w

        return _maybe_write(tomli_w.dumps(_drop_none(self.to_dict())), path)

    @classmethod
    def from_toml(cls, path_or_text: str | os.PathLike) -> ExperimentSpec:
        import tomllib

        text, where = _text_of(path_or_text, (".toml",)), _where(path_or_text)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{where}: malformed TOML: {e}") from None
        return cls.from_dict(data)

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        import yaml

        return _maybe_write(yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True),
                            path)

    @classmethod
    def from_yaml(cls, path_or_text: str | os.PathLike) -> ExperimentSpec:
        import yaml

        text, where = _text_of(path_or_text, (".yaml", ".yml")), _where(path_or_text)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            what = getattr(e, "problem", None) or str(e)
            raise ValueError(f"{where}: malformed YAML{at}: {what}") from None
        return cls.from_dict(data)

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
            try:
                data = json.loads(p.read_text())
            except json.JSONDecodeError as e:
                raise ValueError(f"{p}: malformed JSON at line {e.lineno}, column {e.colno}: "
                                 f"{e.msg}") from None
            return cls.from_dict(data)
        raise ValueError(f"spec file must end in .toml, .yaml, .yml or .json (got {p.name})")

    def replace(self, path: str, value: Any) -> ExperimentSpec:
        """A copy with the dotted ``path`` set, e.g. ``spec.replace("algorithm.tau", 8)``."""
        d = self.to_dict()
        if isinstance(self.bound, Bound):
            d["bound"] = self.bound
        keys = path.split(".")
        node = d
        for k in keys[:-1]:
            if k not in node or not isinstance(node[k], dict):
                sections = sorted(x for x, v in node.items() if isinstance(v, dict))
                raise ValueError(f"path {path!r}: {k!r} is not a section of the spec "
                                 f"(sections: {sections})")
            node = node[k]
        node[keys[-1]] = value  # the new spec's validation names a misspelled key
        return ExperimentSpec.from_dict(d)

    # -- objects --------------------------------------------------------------------------------
    def build(self) -> tuple[Any, Config, Any]:
        """(problem, :class:`~empirics.configs.Config`, step-size schedule) of this spec."""
        problem = build_problem(self)
        cfg = build_config(self)
        return problem, cfg, build_lr(self, problem, cfg)

    def run_spec(self, seed: int | None = None, built: tuple[Any, Config, Any] | None = None
                 ) -> RunSpec:
        """The :class:`RunSpec` of one seed (default: the first of :attr:`seed_list`);
        ``built``: the result of :meth:`build`, to share one problem and configuration between
        seeds."""
        problem, cfg, lr = built if built is not None else self.build()
        return RunSpec(problem, cfg, lr, self.steps, batch_size=self.batch_size,
                       seed=self.seed_list[0] if seed is None else seed, device=self.device,
                       dtype=self.dtype, record_every=self.record_every,
                       grad_every=self.grad_every, divergence=self.divergence)


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
    check_problem(spec.problem)
    kw = {k: v for k, v in spec.problem.items() if k != "kind"}
    return _problem_class(spec.problem["kind"])(
        m=_m(spec.algorithm), device=spec.device, dtype=DTYPES[spec.dtype], **kw)


def _m(alg: dict[str, Any]) -> int:
    m = alg.get("m")
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"algorithm.m must be an integer >= 1 (got {m!r})")
    return int(m)


def build_mixing(m: int, topology: str | dict[str, Any], weights: str | None = None) -> Any:
    """W for ``topology`` on m nodes from the one topology table (:mod:`theory.topologies`):
    a name (ring, path, torus, grid, hypercube, star, complete, exponential, erdos_renyi,
    geometric, ...) or a table ``{name = ..., **params}`` (``rows``/``cols``, ``seed``, ...;
    ``{name = "lazy_average", zeta = ζ}`` is W = ζI + (1 − ζ)J, of exactly that ζ);
    ``weights`` a rule of :func:`theory.mixing_matrix`, or ``"fmmc"``/``"fdla"`` (optimal,
    cvxpy); default the topology's own weights.

    A table may also give ``lazy = s`` (0 ≤ s < 1): W = s·I + (1 − s)·W₀ with W₀ the topology's
    W, whose eigenvalues are s + (1 − s)λ(W₀) — still symmetric, doubly stochastic and on the
    same graph. On the complete graph (W₀ = J) every eigenvalue but the consensus one equals s,
    so ``{name = "complete", lazy = 0.75}`` has ζ = 0.75 exactly."""
    from theory.topologies import build_mixing as _build

    if isinstance(topology, dict):
        params = dict(topology)
        name = params.pop("name", None)
        if name is None:
            raise ValueError(f"algorithm.topology as a table needs a 'name' (got {topology!r})")
        if name == "lazy_average":
            return _lazy_average(m, params, weights)
        lazy = params.pop("lazy", None)
        W = _build(name, m, weights, **params)
        return W if lazy is None else _lazy(W, lazy)
    return _build(topology, m, weights)


def _lazy(W: Any, s: Any, what: str = "algorithm.topology.lazy") -> Any:
    """s·I + (1 − s)·W (see :func:`build_mixing`)."""
    from theory.mixing import MixingMatrix

    if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 <= float(s) < 1:
        raise ValueError(f"{what} must be a number in [0, 1) (the self-weight s "
                         f"of W = s·I + (1 − s)·W₀; s = 1 would never mix); got {s!r}")
    s = float(s)
    A = s * np.eye(W.n) + (1 - s) * np.asarray(W.matrix)
    return MixingMatrix(A, graph=W.graph, rule=f"lazy {W.rule}",
                        name=f"lazy {W.name} (s = {s:g})")


def _lazy_average(m: int, params: dict[str, Any], weights: str | None) -> Any:
    """``{name = "lazy_average", zeta = ζ}``: W = ζI + (1 − ζ)J, symmetric and doubly
    stochastic with every eigenvalue but the first equal to ζ — a mixing matrix of exactly the
    given ζ (the same W as ``{name = "complete", lazy = ζ}``; a dense W: every node hears
    every other)."""
    from theory.topologies import build_mixing as _build

    if set(params) != {"zeta"} or weights not in (None, "default"):
        raise ValueError(f"topology 'lazy_average' takes exactly zeta (and no weights); got "
                         f"{sorted(params)}" + (f", weights = {weights!r}" if weights else ""))
    return _lazy(_build("complete", m, None), params["zeta"],
                 what="topology 'lazy_average': zeta")


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
            kw[k.strip()] = option_value(val.strip())
        return compressors.make(name, **kw)
    raise ValueError(f"compressor must be a name, 'name:key=value', a dict or None (got {c!r})")


def option_value(s: str) -> Any:
    """A ``key=value`` option's value (``"name:key=value"`` compressor strings, the CLI's
    ``--kw``): int, float, true/false (any case), else the string."""
    if s.lower() in ("true", "false"):
        return s.lower() == "true"
    for conv in (int, float):
        try:
            return conv(s)
        except ValueError:
            pass
    return s


def _schedule(m: int, sched: dict[str, Any], T: int) -> Any:
    import theory

    kind = sched["kind"]
    W = theory.average(m)
    if kind == "periodic":
        return theory.periodic(W, sched["tau"])
    if kind == "intervals":
        return theory.Intervals(W, list(sched["periods"]))
    if kind == "spiridonoff":
        return theory.spiridonoff(W, T, sched.get("R"))
    if kind == "linear_growth":
        return theory.linear_growth(W, T, sched["E"], sched["tau0"])
    if kind == "one_shot":
        return theory.one_shot(W)
    return theory.adaptive_lupa(W, sched["tau0"])


@dataclass(frozen=True)
class Algorithm:
    """One ``algorithm.name`` of the spec vocabulary: its ``required`` and ``optional`` keys
    (besides ``name`` and ``m``) and ``build(m, args, W, steps) -> Config``, where ``args`` holds
    the given keys (compressor already built) and ``W()`` builds the topology's mixing
    matrix."""

    required: tuple[str, ...]
    optional: tuple[str, ...]
    build: Any
    doc: str = ""


_LOCAL = ("momentum", "nesterov", "compressor")  #: local-step options every algorithm takes
_TOPO = ("topology", "weights")


def _local(a: dict[str, Any]) -> dict[str, Any]:
    return {k: a[k] for k in _LOCAL if k in a}


def _algorithms() -> dict[str, Algorithm]:
    from empirics import configs

    def opt_W(a: dict[str, Any], W: Any) -> Any:
        return None if a.get("topology") is None else W()

    def gossip(a: dict[str, Any], W: Any, name: str) -> Any:
        if name == "choco":
            return configs.choco_sgd(W(), compressor=a["compressor"], gamma=a["gamma"])
        return configs.squarm(W(), int(a.get("tau", 1)), compressor=a["compressor"],
                              gamma=a["gamma"], threshold=float(a.get("threshold", 0.0)),
                              momentum=a.get("momentum", 0.0), nesterov=a.get("nesterov"))

    return {
        "synchronous": Algorithm((), _LOCAL, lambda m, a, W, T: configs.synchronous(
            m, **_local(a)), "A(1, J, 0)"),
        "pasgd": Algorithm(("tau",), _LOCAL, lambda m, a, W, T: configs.pasgd(
            m, a["tau"], **_local(a)), "A(τ, J, 0)"),
        "dpsgd": Algorithm(("topology",), ("weights", *_LOCAL), lambda m, a, W, T:
                           configs.dpsgd(W(), **_local(a)), "A(1, W, 0)"),
        "decentralized_periodic": Algorithm(
            ("tau", "topology"), ("weights", *_LOCAL), lambda m, a, W, T:
            configs.decentralized_periodic(W(), a["tau"], **_local(a)), "A(τ, W, 0)"),
        "easgd": Algorithm(("tau", "alpha"), _LOCAL, lambda m, a, W, T: configs.easgd(
            m, a["tau"], a["alpha"], **_local(a)), "A(τ, W_α, 1)"),
        "hierarchical": Algorithm(
            ("n_groups", "tau1", "tau2"), _LOCAL, lambda m, a, W, T: configs.hierarchical(
                m, a["n_groups"], a["tau1"], a["tau2"], **_local(a)),
            "group average every τ₁, global every τ₂ (this toolkit's scheme)"),
        "local_sgd": Algorithm(("schedule",), _LOCAL, lambda m, a, W, T: configs.local_sgd(
            _schedule(m, a["schedule"], T), **_local(a)), "W = J on a schedule"),
        "mdsgd": Algorithm(("compressor",), ("momentum", "nesterov", "tau", *_TOPO),
                           lambda m, a, W, T: configs.mdsgd(
                               m, a["compressor"], a.get("momentum", 0.0),
                               nesterov=a.get("nesterov", False), W=opt_W(a, W),
                               tau=int(a.get("tau", 1))), "error-feedback compression"),
        "qsgd": Algorithm((), ("s", "tau", *_TOPO, *_LOCAL), lambda m, a, W, T: configs.qsgd(
            m, int(a.get("s", 1)), a.get("momentum", 0.0), nesterov=a.get("nesterov", False),
            W=opt_W(a, W), tau=int(a.get("tau", 1)), compressor=a.get("compressor")),
            "unbiased quantisation without memory"),
        "squarm": Algorithm(("topology", "compressor", "gamma"),
                            ("weights", "tau", "threshold", "momentum", "nesterov"),
                            lambda m, a, W, T: gossip(a, W, "squarm"),
                            "event-triggered compressed gossip with momentum"),
        "choco": Algorithm(("topology", "compressor", "gamma"), ("weights",),
                           lambda m, a, W, T: gossip(a, W, "choco"), "compressed gossip"),
    }


#: the schedules of ``algorithm = {name = "local_sgd", schedule = {kind = ...}}``:
#: kind → (required keys, optional keys)
SCHEDULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "periodic": (("tau",), ()), "intervals": (("periods",), ()), "spiridonoff": ((), ("R",)),
    "linear_growth": (("E", "tau0"), ()), "one_shot": ((), ()), "adaptive_lupa": (("tau0",), ()),
}
#: the step sizes of ``lr = {kind = ...}``: kind → (required keys, optional keys); the PL
#: kind's μ and τ_max come from the problem and the schedule
LR_KINDS = {k: (req, tuple(o for o in opt if o not in ("mu", "tau_max")))
            for k, (req, opt) in KIND_KEYS.items()}


def _keys(where: str, given: dict[str, Any], required: tuple[str, ...],
          optional: tuple[str, ...], what: str) -> None:
    """Refuse a missing required key or an unknown one, naming it (with the near miss)."""
    import difflib

    valid = [*required, *optional]
    unknown = [k for k in given if k not in valid]
    for k in required:
        if k not in given:
            near = difflib.get_close_matches(k, unknown, n=1)
            hint = f" ({near[0]!r} is given: a misspelling of {k!r}?)" if near else ""
            raise ValueError(f"{where}: {what} needs {k!r}{hint}; its keys are "
                             f"{sorted(valid) or 'none'}")
    if unknown:
        k = unknown[0]
        near = difflib.get_close_matches(k, valid, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ValueError(f"{where}: unknown key {k!r} for {what}{hint} (valid: {sorted(valid)})")


def check_algorithm(alg: dict[str, Any]) -> None:
    """Refuse an algorithm section whose name is unknown or whose keys do not match it."""
    algos = _algorithms()
    name = alg.get("name")
    if name not in algos:
        import difflib

        near = difflib.get_close_matches(str(name), list(algos), n=1)
        raise ValueError(f"algorithm.name must be one of {sorted(algos)} (got {name!r})"
                         + (f"; did you mean {near[0]!r}?" if near else ""))
    _m(alg)
    spec_ = algos[name]
    rest = {k: v for k, v in alg.items() if k not in ("name", "m")}
    _keys("algorithm", rest, spec_.required, spec_.optional, f"{name!r}")
    if name == "local_sgd":
        sched = alg["schedule"]
        if not isinstance(sched, dict) or sched.get("kind") not in SCHEDULES:
            raise ValueError(f"algorithm.schedule must be a table with kind one of "
                             f"{sorted(SCHEDULES)} (got {sched!r})")
        req, opt = SCHEDULES[sched["kind"]]
        _keys("algorithm.schedule", {k: v for k, v in sched.items() if k != "kind"}, req, opt,
              f"schedule {sched['kind']!r}")


def build_config(spec: ExperimentSpec) -> Any:
    """The :class:`empirics.configs.Config` of ``spec.algorithm`` (the names and keys of
    :func:`check_algorithm`'s table: synchronous, pasgd, dpsgd, decentralized_periodic, easgd,
    hierarchical, local_sgd, mdsgd, qsgd, squarm, choco; every one takes the local-step options
    momentum, nesterov and, where it makes sense, compressor)."""
    check_algorithm(spec.algorithm)
    a = dict(spec.algorithm)
    name = a.pop("name")
    m = _m(spec.algorithm)
    a.pop("m")
    if "compressor" in a:
        a["compressor"] = _compressor(a["compressor"])

    def W() -> Any:
        return build_mixing(m, a["topology"], a.get("weights"))

    return _algorithms()[name].build(m, a, W, spec.steps)


def _max_period(cfg: Any, T: int) -> int:
    p = cfg.schedule.periods(T)
    return int(np.max(p)) if len(p) else T


def build_lr(spec: ExperimentSpec, problem: Any, cfg: Any) -> Any:
    """The step-size schedule of ``spec.lr`` (:func:`theory.stepsizes.stepsize_from_dict`; the
    PL kind takes μ from the problem and τ_max from the communication schedule)."""
    from theory.stepsizes import stepsize_from_dict

    check_lr(spec.lr)
    if isinstance(spec.lr, dict) and spec.lr["kind"] == "pl":
        mu = problem.constants.mu
        if mu is None:
            raise ValueError("lr kind 'pl' needs a problem with a PL/strong-convexity constant μ")
        return stepsize_from_dict(spec.lr, mu=mu.value, tau_max=_max_period(cfg, spec.steps))
    return stepsize_from_dict(spec.lr)


def check_lr(lr: Any) -> None:
    """Refuse an ``lr`` that is neither a positive number nor a known ``{kind = ...}`` table."""
    if isinstance(lr, (int, float, np.integer, np.floating)) and not isinstance(lr, bool):
        if not (float(lr) > 0 and math.isfinite(float(lr))):
            raise ValueError(f"lr must be a finite number > 0 (got {lr!r})")
        return
    if not isinstance(lr, dict) or lr.get("kind") not in LR_KINDS:
        raise ValueError(f"lr must be a number > 0 or a table with kind one of "
                         f"{sorted(LR_KINDS)} (got {lr!r})")
    req, opt = LR_KINDS[lr["kind"]]
    _keys("lr", {k: v for k, v in lr.items() if k != "kind"}, req, opt, f"lr {lr['kind']!r}")



