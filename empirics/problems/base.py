"""The Problem contract, the per-worker seed convention, and the Estimate/Constants data.

See :mod:`empirics.problems` for the conventions shared by every problem.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch.func import grad, vmap

from empirics.devices import check_device
from theory import checks

Params = dict[str, torch.Tensor]
Batch = tuple[torch.Tensor, ...]

_SEED_PRIME = 1_000_003
_CPU = torch.device("cpu")


def seed_for(seed: int, worker: int) -> int:
    """Seed number ``worker`` of a run with seed ``seed``.

    s_i = (seed · 1 000 003 + i) mod 2⁶³ — injective in (seed, i) for 0 ≤ i < 1 000 003 and
    seed < 9.2·10¹² (2⁶³ / 1 000 003), with no hashing, so the simulator and the distributed
    backend agree by construction. The run's batch generator is seeded ``seed_for(seed, 0)``
    (:meth:`Problem.generator`: one stream for all m workers' batches); worker i's compressor
    and gossip streams are derived from ``seed_for(seed, i)``
    (:func:`empirics.algorithm.compressor_seed`, :func:`empirics.algorithm.gossip_seed`).
    """
    seed = checks.integer("seed", seed, lo=0)
    worker = checks.integer("worker", worker, lo=0, hi=_SEED_PRIME, hi_strict=True)
    return (seed * _SEED_PRIME + worker) % 2**63


def one_generator(generator: Any, what: str = "generator") -> torch.Generator:
    """``generator`` itself, or the single element of a one-element sequence (the form the
    earlier per-worker convention passed, ``problem.generators(seed)``)."""
    if isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, Sequence) and len(generator) == 1 \
            and isinstance(generator[0], torch.Generator):
        return generator[0]
    n = len(generator) if isinstance(generator, Sequence) else None
    raise ValueError(f"{what} must be one torch.Generator: all m workers' batches of a step "
                     f"come from one draw of the run's batch generator (Problem.generator(seed))"
                     + (f"; got a sequence of {n} generators (the per-worker convention "
                        f"of earlier versions)" if n is not None else
                        f"; got {type(generator).__name__}"))


# ---------------------------------------------------------------------------------------------
# plain data: Estimate, Constants
# ---------------------------------------------------------------------------------------------
def _plain(v: Any) -> Any:
    """numpy / torch scalars and arrays → JSON-ready Python objects."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, torch.Tensor):
        return _plain(v.detach().cpu().numpy())
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


@dataclass(frozen=True)
class Estimate:
    """A constant with how it was obtained: ``value``, ``method`` (text), ``uncertainty``.

    ``uncertainty = 0`` means exact (up to float64 rounding) for the definition stated in
    ``method``; otherwise ``method`` says what the number is (standard error, spread over points,
    width of a bracket). ``detail`` holds the raw numbers behind it (per-point values, ...).
    """

    value: float
    method: str
    uncertainty: float = 0.0
    detail: dict[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", checks.finite("Estimate value", self.value,
                                                        why=self.method))
        object.__setattr__(self, "uncertainty", checks.real("Estimate uncertainty",
                                                              self.uncertainty, 0, allow_inf=True))

    @property
    def exact(self) -> bool:
        return self.uncertainty == 0.0

    def __float__(self) -> float:
        return self.value

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "method": self.method, "uncertainty": self.uncertainty,
                "detail": _plain(self.detail)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Estimate:
        """Inverse of :meth:`to_dict` (e.g. after a JSON round trip)."""
        return cls(d["value"], d["method"], d.get("uncertainty", 0.0), d.get("detail"))

    def __repr__(self) -> str:
        unc = "exact" if self.exact else f"± {self.uncertainty:.3g}"
        return f"Estimate({self.value:.6g} {unc}: {self.method})"


@dataclass(frozen=True)
class Constants:
    """The constants a bound needs. Each field is an :class:`Estimate` (or None if undefined).

    L: smoothness of F. mu: strong convexity of F (None if non-convex). sigma2: single-sample
    gradient variance, E‖g − ∇F_i(x)‖² ≤ beta·‖∇F(x)‖² + sigma2 per sample (divide by b for a
    batch of b) — a global bound for the closed-form problems, a maximum over the points named
    in ``sigma2.method`` for the finite sums. F_star: min F. F0: F(x₀). beta: gradient-dependent
    part of the noise (None if the noise bound is uniform). L_local: max_i smoothness of the
    worker objectives F_i.
    zeta2_x0, zeta2_star: heterogeneity ζ² = (1/m) Σ_i ‖∇F_i(x) − ∇F(x)‖² at x₀ and at x*.
    kappa2: the heterogeneity constant κ² of Cooperative SGD's non-IID Theorem 2 (Wang & Joshi,
    JMLR 2021), which bounds (1/m) Σ_i ‖∇F_i(x) − ∇F(x)‖² at every x: the maximum of that
    quantity over the points named in ``kappa2.method`` (the points σ² is a maximum over), so
    an estimate from below of the supremum the theorem asks for; 0 when the workers' objectives
    are identical.
    """

    L: Estimate
    mu: Estimate | None
    sigma2: Estimate
    F_star: Estimate
    F0: Estimate
    beta: Estimate | None = None
    L_local: Estimate | None = None
    zeta2_x0: Estimate | None = None
    zeta2_star: Estimate | None = None
    kappa2: Estimate | None = None

    @property
    def initial_gap(self) -> float:
        """F(x₀) − F* (a lower bound on it when F* is only an upper estimate)."""
        return self.F0.value - self.F_star.value

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (None if (e := getattr(self, f.name)) is None else e.to_dict())
                for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Constants:
        """Inverse of :meth:`to_dict`."""
        return cls(**{f.name: None if d.get(f.name) is None else Estimate.from_dict(d[f.name])
                      for f in fields(cls)})

    def __repr__(self) -> str:
        rows = [f"  {f.name:<10} = {getattr(self, f.name)!r}" for f in fields(self)]
        return "Constants(\n" + "\n".join(rows) + "\n)"


# ---------------------------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------------------------
def _dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64 (got {dtype})")
    return dtype


def _flat(tree: Params) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tree.values()])


def _sqnorm(tree: Params) -> torch.Tensor:
    return sum((t * t).sum() for t in tree.values())


# ---------------------------------------------------------------------------------------------
# the contract
# ---------------------------------------------------------------------------------------------
class Problem(ABC):
    """Base class of the engine's problems (see the module docstring for the conventions)."""

    m: int
    device: torch.device
    dtype: torch.dtype
    param_shapes: dict[str, tuple[int, ...]]

    def __init__(self, m: int, device: torch.device | str | None, dtype: torch.dtype) -> None:
        self.m = checks.integer("m", m, lo=1)
        self.device = check_device(device) if device is not None else _CPU
        self.dtype = _dtype(dtype)
        self._constants: Constants | None = None

    # -- to implement ---------------------------------------------------------------------
    @abstractmethod
    def _init_numpy(self) -> dict[str, np.ndarray]:
        """x₀ as float64 arrays (so float32 and float64 runs start from the same point)."""

    @abstractmethod
    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        """Scalar mini-batch loss; pure in ``params``, usable under torch.func.grad/vmap."""

    @abstractmethod
    def sample(self, worker: int, batch_size: int, generator: torch.Generator) -> Batch:
        """One mini-batch of ``batch_size`` i.i.d. samples of worker ``worker``."""

    @abstractmethod
    def objective(self, params: Params) -> torch.Tensor:
        """F(params) as a differentiable scalar tensor (exact)."""

    @abstractmethod
    def sigma2_at(self, params: Params, batch_size: int = 1, worker: int | None = None) -> float:
        """E‖g − ∇F_i(x)‖² of a batch-``batch_size`` gradient of worker i (None: mean over i)."""

    @abstractmethod
    def _compute_constants(self, progress: bool = False) -> Constants: ...

    # -- shared ---------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Number of parameters d."""
        return sum(math.prod(s) for s in self.param_shapes.values())

    def init_params(self, device: torch.device | str | None = None,
                    dtype: torch.dtype | None = None) -> Params:
        """x₀ (one worker's parameters) on ``device`` (default: the problem's) in ``dtype``
        (default: the problem's, float64 unless set). Same seed → same x₀."""
        dev = torch.device(device) if device is not None else self.device
        dt = _dtype(dtype) if dtype is not None else self.dtype
        return {k: torch.as_tensor(v, dtype=dt, device=dev) for k, v in self._init_numpy().items()}

    def generator(self, seed: int, device: torch.device | str | None = None
                  ) -> torch.Generator:
        """The batch generator of a run with seed ``seed``: one ``torch.Generator`` on
        ``device`` (default: the problem's) seeded ``seed_for(seed, 0)``. Every step draws all
        m workers' batches from it at once (:meth:`sample_all`); worker i's batch is row i of
        that draw, in the simulator and in the distributed backend alike."""
        dev = torch.device(device) if device is not None else self.device
        return torch.Generator(device=dev).manual_seed(seed_for(seed, 0))

    def generators(self, seed: int, device: torch.device | str | None = None
                   ) -> list[torch.Generator]:
        """``[self.generator(seed, device)]`` — kept for callers of the earlier per-worker
        convention (``sample_all(b, problem.generators(seed))`` still works); new code uses
        :meth:`generator`."""
        return [self.generator(seed, device)]

    def sample_all(self, batch_size: int, generator: torch.Generator) -> Batch:
        """All m workers' batches of one step (leading axis m), drawn from the one
        ``generator`` (:meth:`generator`): row i is worker i's batch.

        This default stacks ``sample(i, batch_size, generator)`` for i = 0, …, m − 1 (one
        shared stream, consumed in worker order); problems override it with one draw for all
        workers (one ``randint``/``randn`` call per step). A one-element list is accepted for
        ``generator``."""
        g = one_generator(generator)
        checks.integer("batch_size", batch_size, lo=1)
        per = [self.sample(i, batch_size, g) for i in range(self.m)]
        return tuple(torch.stack(parts) for parts in zip(*per, strict=True))

    def sample_rows(self, rows: Sequence[int], batch_size: int, generator: torch.Generator
                    ) -> Batch:
        """The batches of the workers ``rows`` (leading axis len(rows)) from the same draw as
        :meth:`sample_all`: equal to ``sample_all(batch_size, generator)`` restricted to those
        rows, consuming the generator identically (what a process holding some of the workers
        — a rank of the distributed backend — calls). This default draws every worker's batch
        and keeps the rows; problems may gather only the rows' data."""
        full = self.sample_all(batch_size, generator)
        idx = torch.as_tensor([int(r) for r in rows], dtype=torch.long, device=full[0].device)
        return tuple(t.index_select(0, idx) for t in full)

    def full_loss(self, params: Params) -> float:
        """F(params), exact."""
        return float(self.objective(params).detach())

    def full_grad(self, params: Params) -> Params:
        """∇F(params), exact, in the dtype/device of ``params``."""
        return {k: v.detach() for k, v in grad(self.objective)(params).items()}

    def grad_norm2(self, params: Params) -> float:
        """‖∇F(params)‖²."""
        return float(_sqnorm(self.full_grad(params)))

    def loss_and_grad_norm2(self, params: Params) -> tuple[float, float]:
        """(F(params), ‖∇F(params)‖²) — what a record needs; problems may compute both in one
        pass over their data."""
        return self.full_loss(params), self.grad_norm2(params)

    def eval_rows(self) -> int:
        """Data rows one exact F or ∇F reads (0 for closed forms): the cost model of the default
        record and gradient-norm strides (:func:`empirics.spec.default_strides`) compares it
        with the m·b rows of a step. Default: the attribute ``n`` if the problem has one."""
        n = getattr(self, "n", 0)
        return int(n) if isinstance(n, (int, np.integer)) and n > 0 else 0

    def worker_grad(self, params: Params, worker: int) -> Params:
        """∇F_i(params) (all workers share F unless the problem splits data)."""
        self._check_sample_args(worker, 1)
        return self.full_grad(params)

    def sigma2_mc(self, params: Params, batch_size: int, worker: int, n_draws: int,
                  generator: torch.Generator) -> Estimate:
        """Monte-Carlo estimate of E‖g − ∇F_i(x)‖² from ``n_draws`` batches drawn by ``sample``,
        with the standard error of the mean."""
        checks.integer("n_draws", n_draws, lo=2)
        self._check_sample_args(worker, batch_size)
        gi = _flat(self.worker_grad(params, worker))
        batches = [self.sample(worker, batch_size, generator) for _ in range(n_draws)]
        stacked = tuple(torch.stack(parts).to(gi.device) for parts in zip(*batches, strict=True))
        g = vmap(grad(self.loss), in_dims=(None, 0))(params, stacked)
        dev = ((torch.cat([v.reshape(n_draws, -1) for v in g.values()], 1) - gi) ** 2).sum(1)
        dev = dev.double()
        return Estimate(dev.mean(), f"mean of {n_draws} sampled ‖g − ∇F_i‖² (batch "
                        f"{batch_size}); uncertainty = standard error",
                        dev.std() / math.sqrt(n_draws))

    @property
    def constants(self) -> Constants:
        """L, μ, σ², F*, F(x₀) (and β, L_local, ζ² where defined), computed on first access."""
        return self.compute_constants()

    def compute_constants(self, progress: bool = False) -> Constants:
        """The constants, computed once and cached; ``progress=True`` shows a tqdm bar where the
        computation is long (MLPClassifier)."""
        if self._constants is None:
            self._constants = self._compute_constants(progress=progress)
        return self._constants

    def _check_sample_args(self, worker: int, batch_size: int) -> None:
        checks.integer("worker", worker, lo=0, hi=self.m, hi_strict=True)
        checks.integer("batch_size", batch_size, lo=1)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._repr_args().items())
        return f"{type(self).__name__}({args})"

    def _repr_args(self) -> dict[str, Any]:
        return {"m": self.m, "dim": self.dim}


def _randn(generator: torch.Generator, shape: tuple[int, ...], dtype: torch.dtype,
           device: torch.device) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=generator.device, dtype=dtype).to(device)


def _is_transform_wrapped(t: torch.Tensor) -> bool:
    """Whether ``t`` was made inside a torch.func transform (and must not be cached: it dies with
    the transform). Uses torch's functorch introspection; if that is unavailable, says True."""
    try:
        return bool(torch._C._functorch.is_functorch_wrapped_tensor(t))
    except AttributeError:
        return True


def _unflatten(theta: torch.Tensor, shapes: dict[str, tuple[int, ...]]) -> Params:
    sizes = [math.prod(s) for s in shapes.values()]
    return {k: t.reshape(s) for (k, s), t in zip(shapes.items(), torch.split(theta, sizes),
                                                 strict=True)}
