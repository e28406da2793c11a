"""Named Cooperative SGD configurations A(τ, W, v) plus the local-step options (digest §1.4).

Every algorithm the engine runs is X_{k+1} = (X_k − Δ_k) W_k (Wang & Joshi, Cooperative SGD,
digest §1.3; Δ_k = η_k G_k for plain SGD): a :class:`Config` is *data* — a schedule (when to
mix, with which W; :mod:`theory.schedules`), the number v of auxiliary variables, and the local
step (momentum, Nesterov, an error-feedback compressor). The table of special cases (digest
§1.4, recalled [MEM, high]):

=============================  ====  =================  ===
algorithm                       τ     W                  v
=============================  ====  =================  ===
fully synchronous SGD           1     J                  0
PASGD / local SGD               τ     J                  0
D-PSGD                          1     sparse W           0
decentralized periodic          τ     sparse W           0
EASGD                           τ     W_α                1
hierarchical averaging          τ₁,τ₂ group J / J        0
M-DSGD (memory + compression)   1     J                  0
=============================  ====  =================  ===

The hierarchical definition (group averaging every τ₁ steps, global every τ₂) is this toolkit's
reading of the paper's "hierarchical averaging" (definition [NF] in the digest §1.7.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from theory.mixing import MixingMatrix, as_mixing, average, contiguous_groups, easgd_matrix
from theory.mixing import group_average as _group_average
from theory.schedule_library import OneShot
from theory.schedules import Hierarchical, Periodic, Schedule

__all__ = [
    "Config",
    "configuration",
    "decentralized_periodic",
    "dpsgd",
    "easgd",
    "hierarchical",
    "local_sgd",
    "lupa",
    "mdsgd",
    "one_shot",
    "pasgd",
    "spiridonoff_sgd",
    "synchronous",
]


def _int(name: str, x: Any, lo: int) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or int(x) < lo:
        raise ValueError(f"{name} must be an integer >= {lo} (got {x!r})")
    return int(x)


@dataclass(frozen=True)
class Config:
    """One Cooperative SGD configuration (plain data; see the module docstring).

    Attributes:
        name: e.g. ``"pasgd"``.
        schedule: a :class:`theory.schedules.Schedule` of size n = m + v.
        v: number of auxiliary variables (rows m..m+v−1 of X; they get no gradient).
        compressor: an ``empirics.compressors`` compressor for error feedback (M-DSGD), or None.
        momentum: β of local heavy-ball momentum (per-worker buffer; 0 = plain SGD).
        nesterov: Nesterov variant of the local momentum.
        params: the constructor's arguments (for ``to_dict``).
    """

    name: str
    schedule: Schedule
    v: int = 0
    compressor: Any = None
    momentum: float = 0.0
    nesterov: bool = False
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.schedule, Schedule):
            raise ValueError(f"schedule must be a theory.schedules.Schedule "
                             f"(got {type(self.schedule).__name__})")
        v = _int("v", self.v, 0)
        object.__setattr__(self, "v", v)
        if v >= self.schedule.n:
            raise ValueError(f"v = {v} auxiliary variables leave no worker: the schedule's W is "
                             f"{self.schedule.n}×{self.schedule.n} (n = m + v needs m ≥ 1)")
        beta = float(self.momentum)
        if not (0.0 <= beta < 1.0 and math.isfinite(beta)):
            raise ValueError(f"momentum must be in [0, 1) (got {self.momentum!r})")
        object.__setattr__(self, "momentum", beta)
        if self.nesterov and beta == 0.0:
            raise ValueError("nesterov=True needs momentum > 0")
        c = self.compressor
        if c is not None and not (callable(c) and hasattr(c, "bits")):
            raise ValueError(f"compressor must be an empirics.compressors compressor (callable "
                             f"with .bits(d)); got {type(c).__name__}")

    @property
    def m(self) -> int:
        """Number of workers (schedule size minus v)."""
        return self.schedule.n - self.v

    @property
    def n(self) -> int:
        return self.schedule.n

    def with_options(self, **kw: Any) -> Config:
        """A copy with local-step options changed, e.g. ``cfg.with_options(momentum=0.9)``."""
        return replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        c = self.compressor
        return {
            "name": self.name,
            "m": self.m,
            "v": self.v,
            "schedule": {"type": type(self.schedule).__name__,
                         "name": getattr(self.schedule, "name", repr(self.schedule)),
                         "adaptive": bool(getattr(self.schedule, "adaptive", False))},
            "compressor": None if c is None else getattr(c, "name", repr(c)),
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "params": {k: (v if isinstance(v, (int, float, str, bool, type(None))) else repr(v))
                       for k, v in self.params.items()},
        }

    def __repr__(self) -> str:
        extra = ""
        if self.compressor is not None:
            extra += f", compressor={getattr(self.compressor, 'name', self.compressor)}"
        if self.momentum:
            extra += f", momentum={self.momentum}{' nesterov' if self.nesterov else ''}"
        return (f"Config({self.name}, m={self.m}, v={self.v}, "
                f"schedule={getattr(self.schedule, 'name', self.schedule)}{extra})")


def configuration(schedule: Schedule, *, v: int = 0, compressor: Any = None,
                  momentum: float = 0.0, nesterov: bool = False, name: str | None = None
                  ) -> Config:
    """Any schedule as a configuration (the generic A(τ_i, W_i, v))."""
    return Config(name or getattr(schedule, "name", "custom"), schedule, v=v,
                  compressor=compressor, momentum=momentum, nesterov=nesterov)


def local_sgd(schedule: Schedule, *, name: str = "local_sgd", **options: Any) -> Config:
    """Local SGD with any schedule of averaging steps (W = J), e.g. those of
    :mod:`theory.schedule_library`: ``spiridonoff(average(m), T)``, ``linear_growth(...)``,
    ``adaptive_lupa(...)``, ``one_shot(...)``."""
    return configuration(schedule, name=name, **options)


def synchronous(m: int, **options: Any) -> Config:
    """Fully synchronous (mini-batch) SGD: A(1, J, 0)."""
    m = _int("m", m, 1)
    return Config("synchronous", Periodic(average(m), 1), params={"m": m}, **options)


def pasgd(m: int, tau: int, **options: Any) -> Config:
    """Periodic averaging SGD / local SGD: A(τ, J, 0)."""
    m, tau = _int("m", m, 1), _int("tau", tau, 1)
    return Config("pasgd", Periodic(average(m), tau), params={"m": m, "tau": tau}, **options)


def one_shot(m: int, **options: Any) -> Config:
    """One-shot averaging: local steps only, one average at the last step T−1."""
    m = _int("m", m, 1)
    return Config("one_shot", OneShot(average(m)), params={"m": m}, **options)


def dpsgd(W: MixingMatrix | Any, **options: Any) -> Config:
    """D-PSGD (Lian et al. 2017): A(1, W, 0), neighbour mixing after every step."""
    W = as_mixing(W)
    return Config("dpsgd", Periodic(W, 1), params={"W": W.name}, **options)


def decentralized_periodic(W: MixingMatrix | Any, tau: int, **options: Any) -> Config:
    """Decentralized periodic averaging: A(τ, W, 0) (Cooperative SGD's new variant)."""
    W, tau = as_mixing(W), _int("tau", tau, 1)
    return Config("decentralized_periodic", Periodic(W, tau), params={"W": W.name, "tau": tau},
                  **options)


def easgd(m: int, tau: int, alpha: float, **options: Any) -> Config:
    """EASGD: A(τ, W_α, 1) with the centre variable as row m (W_α from
    :func:`theory.mixing.easgd_matrix`; digest §1.4, corroborated by the author's code)."""
    m, tau = _int("m", m, 1), _int("tau", tau, 1)
    return Config("easgd", Periodic(easgd_matrix(m, alpha), tau), v=1,
                  params={"m": m, "tau": tau, "alpha": float(alpha)}, **options)


def hierarchical(m: int, n_groups: int | None = None, tau1: int = 1, tau2: int = 1, *,
                 groups: list[list[int]] | None = None, **options: Any) -> Config:
    """Hierarchical averaging: average within groups every τ₁ steps, globally every τ₂ steps
    (τ₂ a multiple of τ₁). Groups: ``n_groups`` contiguous equal groups, or explicit ``groups``.
    This definition is the toolkit's reading (digest §1.7.5: definition [NF])."""
    m = _int("m", m, 1)
    if groups is None:
        if n_groups is None:
            raise ValueError("hierarchical needs n_groups or groups")
        groups = contiguous_groups(m, _int("n_groups", n_groups, 1))
    Wg = _group_average(groups)
    if Wg.n != m:
        raise ValueError(f"groups cover {Wg.n} workers but m = {m}")
    sched = Hierarchical(Wg, average(m), tau1, tau2)
    return Config("hierarchical", sched, params={"m": m, "n_groups": len(groups),
                                                  "tau1": sched.tau1, "tau2": sched.tau2},
                  **options)


def mdsgd(m: int, compressor: Any, momentum: float = 0.0, *, nesterov: bool = False,
          W: MixingMatrix | Any | None = None, tau: int = 1) -> Config:
    """M-DSGD (memory-based distributed SGD, Zhao, Gao & Li; update reconstructed in digest
    §2.3 [RECON]): each worker sends C(e + η·direction), keeps e ← e + η·direction − C(·); with
    W = J and τ = 1 this is w_{t+1} = w_t − (1/m) Σ_k C(u_k). ``W``/``tau`` give the
    decentralized / periodic variant X_{k+1} = (X_k − C-updates) W_k (not CHOCO)."""
    m = _int("m", m, 1)
    if compressor is None:
        raise ValueError("mdsgd needs a compressor (use empirics.compressors.Identity() for none)")
    Wm = average(m) if W is None else as_mixing(W)
    if Wm.n != m:
        raise ValueError(f"W is {Wm.n}×{Wm.n} but m = {m}")
    return Config("mdsgd", Periodic(Wm, tau), compressor=compressor, momentum=momentum,
                  nesterov=nesterov, params={"m": m, "W": Wm.name, "tau": int(tau)})


def spiridonoff_sgd(m: int, T: int, R: int | None = None, **options: Any) -> Config:
    """Local SGD with Spiridonoff et al.'s linearly growing intervals H_i = a·i, R = m rounds by
    default (digest §4.3, verified from the authors' notebook)."""
    from theory.schedule_library import spiridonoff

    m = _int("m", m, 1)
    return Config("spiridonoff", spiridonoff(average(m), T, R),
                  params={"m": m, "T": int(T), "R": R}, **options)


def lupa(m: int, T: int, E: int, tau0: int, *, adaptive: bool = False, **options: Any
         ) -> Config:
    """Haddadpour et al.'s LUPA-SGD schedules (digest §3.5): linearly growing τ_i = (1 + iα)τ₀
    with E rounds, or (``adaptive=True``) the loss-driven τ_i = ⌈(F(x̄⁰)/F(x̄))^{1/3}⌉·τ₀."""
    from theory.schedule_library import adaptive_lupa, linear_growth

    m = _int("m", m, 1)
    sched = adaptive_lupa(average(m), tau0) if adaptive else linear_growth(average(m), T, E, tau0)
    return Config("lupa_adaptive" if adaptive else "lupa", sched,
                  params={"m": m, "T": int(T), "E": int(E), "tau0": int(tau0)}, **options)
