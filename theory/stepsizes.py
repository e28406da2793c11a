"""Step-size (learning-rate) schedules as plain, torch-free data: small callables t -> η_t.

They sit beside the communication schedules (:mod:`theory.schedules`): the engine runs them, the
bounds read them, and a spec names them with the vocabulary of :func:`stepsize_from_dict`::

    {"kind": "constant", "eta": 0.1}
    {"kind": "inverse_time", "a": 2.0, "beta": 1.0, "max_lr": 0.5}     # η_t = min(a/(t+β), max)
    {"kind": "stagewise", "etas": [0.1, 0.01], "boundaries": [500]}
    {"kind": "pl", "alpha_pl": 1.0}                                    # + mu, tau_max (context)

``to_dict()`` writes ``kind`` (older files wrote ``type``; both are read). The PL theorem's step
size η_t = 4/(μ(t + a)), a = α_PL·τ_max + 4 (Haddadpour et al., :mod:`theory.bounds.local_pl`)
is written once, in :func:`pl_shift` and :class:`PLStepsize`; the bound uses the same
:func:`pl_shift` symbolically.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from theory import checks


@dataclass(frozen=True)
class Constant:
    """η_t = eta."""

    eta: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "eta", checks.positive("lr (eta)", self.eta))

    def __call__(self, t: int) -> float:
        return self.eta

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "constant", "eta": self.eta}


@dataclass(frozen=True)
class Stagewise:
    """η_t = etas[s] for boundaries[s−1] ≤ t < boundaries[s] (stagewise learning, Zhao, Gao & Li).

    ``boundaries`` strictly increasing, ``len(etas) == len(boundaries) + 1``."""

    etas: tuple[float, ...]
    boundaries: tuple[int, ...]

    def __post_init__(self) -> None:
        etas = tuple(checks.positive(f"etas[{i}]", e) for i, e in enumerate(self.etas))
        bnd = tuple(checks.integer(f"boundaries[{i}]", b) for i, b in enumerate(self.boundaries))
        if len(etas) != len(bnd) + 1:
            raise ValueError(f"Stagewise needs len(etas) == len(boundaries) + 1 "
                             f"(got {len(etas)} etas, {len(bnd)} boundaries)")
        if any(b <= 0 for b in bnd) or any(b2 <= b1 for b1, b2 in zip(bnd, bnd[1:], strict=False)):
            raise ValueError(f"boundaries must be positive and strictly increasing (got {bnd})")
        object.__setattr__(self, "etas", etas)
        object.__setattr__(self, "boundaries", bnd)

    def __call__(self, t: int) -> float:
        return self.etas[int(np.searchsorted(self.boundaries, t, side="right"))]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "stagewise", "etas": list(self.etas), "boundaries": list(self.boundaries)}


@dataclass(frozen=True)
class InverseTime:
    """η_t = min(a / (t + beta), max_lr) — the 1/(t+β) family (e.g. Spiridonoff et al.'s
    η_t = α/(μ(t+β)) with a = α/μ, NeurIPS 2021)."""

    a: float
    beta: float = 1.0
    max_lr: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "a", checks.positive("a", self.a))
        try:
            b = float(self.beta)
        except (TypeError, ValueError):
            b = float("nan")
        if not (b > 0 and np.isfinite(b)):
            raise checks.refuse("beta", "> 0 so that η_0 = a/beta is finite", self.beta)
        object.__setattr__(self, "beta", b)
        if self.max_lr is not None:
            object.__setattr__(self, "max_lr", checks.positive("max_lr", self.max_lr))

    def __call__(self, t: int) -> float:
        e = self.a / (t + self.beta)
        return e if self.max_lr is None else min(e, self.max_lr)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "inverse_time", "a": self.a, "beta": self.beta, "max_lr": self.max_lr}


def pl_shift(tau_max: Any, alpha_pl: Any = 1.0) -> Any:
    """a = α_PL·τ_max + 4, the shift of the PL step size η_t = 4/(μ(t + a)) (Haddadpour et al.,
    NeurIPS 2019; recalled, low confidence). Numbers or sympy expressions alike."""
    return alpha_pl * tau_max + 4


@dataclass(frozen=True)
class PLStepsize:
    """The PL theorem's step size η_t = 4/(μ(t + a)), a = α_PL·τ_max + 4 (:func:`pl_shift`).

    μ: the PL / strong-convexity constant of the problem; τ_max: the longest period of the
    communication schedule; α_PL > 0 (the paper's condition on it is not known; η₀ ≤ 1/L needs
    α_PL ≥ (4κ − 4)/τ_max). Equal to ``InverseTime(a=4/μ, beta=a)`` at every t
    (:meth:`inverse_time`)."""

    mu: float
    tau_max: int
    alpha_pl: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "mu", checks.positive("mu", self.mu))
        object.__setattr__(self, "tau_max", checks.integer("tau_max", self.tau_max, lo=1))
        object.__setattr__(self, "alpha_pl", checks.positive("alpha_pl", self.alpha_pl))

    @property
    def shift(self) -> float:
        """a = α_PL·τ_max + 4."""
        return float(pl_shift(self.tau_max, self.alpha_pl))

    def inverse_time(self) -> InverseTime:
        """The same schedule as an :class:`InverseTime` (a = 4/μ, β = shift)."""
        return InverseTime(a=4.0 / self.mu, beta=self.shift)

    def __call__(self, t: int) -> float:
        return (4.0 / self.mu) / (t + self.shift)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "pl", "mu": self.mu, "tau_max": self.tau_max, "alpha_pl": self.alpha_pl}


def pl_stepsize(mu: float, tau_max: int, alpha_pl: float = 1.0) -> PLStepsize:
    """η_t = 4/(μ(t + α_PL·τ_max + 4)), the PL theorem's step size (:class:`PLStepsize`)."""
    return PLStepsize(mu, tau_max, alpha_pl)


@dataclass(frozen=True)
class LRFunction:
    """Any user callable t -> η_t (checked > 0 and finite at every step of a run)."""

    fn: Callable[[int], float]
    name: str = "callable"

    def __call__(self, t: int) -> float:
        return float(self.fn(t))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "callable", "name": self.name}


#: the step-size classes (what :func:`as_lr` returns unchanged)
STEPSIZES = (Constant, Stagewise, InverseTime, PLStepsize, LRFunction)
#: the ``kind`` values :func:`stepsize_from_dict` reads, with their (required, optional) keys
KIND_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "constant": (("eta",), ()),
    "inverse_time": (("a",), ("beta", "max_lr")),
    "stagewise": (("etas", "boundaries"), ()),
    "pl": ((), ("alpha_pl", "mu", "tau_max")),
}
KINDS = tuple(KIND_KEYS)


def as_lr(lr: Any) -> Any:
    """A learning-rate schedule from a number (constant) or a callable t -> η_t."""
    if isinstance(lr, STEPSIZES):
        return lr
    if isinstance(lr, (int, float, np.floating, np.integer)) and not isinstance(lr, bool):
        return Constant(float(lr))
    if callable(lr):
        return LRFunction(lr, getattr(lr, "__name__", "callable"))
    raise ValueError(f"lr must be a number > 0 or a callable t -> η_t (got {lr!r})")


def stepsize_from_dict(d: Any, *, mu: float | None = None, tau_max: int | None = None) -> Any:
    """A step size from a number (constant η) or a dict ``{"kind": ..., ...}`` (``"type"`` is read
    as ``"kind"``, as older ``to_dict`` output wrote it); the inverse of ``to_dict``.

    For ``{"kind": "pl", "alpha_pl": α}`` the PL constant ``mu`` and the schedule's ``tau_max``
    come from the dict or, when it lacks them, from the keyword arguments (the problem and the
    communication schedule of the run)."""
    if isinstance(d, (int, float, np.floating, np.integer)) and not isinstance(d, bool):
        return Constant(float(d))
    if not isinstance(d, Mapping):
        raise checks.refuse("lr", "a number or a dict with a 'kind'", d)
    kw = dict(d)
    if "kind" in kw and "type" in kw and kw["kind"] != kw["type"]:
        raise ValueError(f"lr gives kind {kw['kind']!r} and type {kw['type']!r}: give one")
    kind = kw.pop("kind", None)
    kind = kw.pop("type", kind)
    if kind is None:
        raise checks.refuse("lr", "a number or a dict with a 'kind'", d)
    if kind == "callable":
        raise ValueError("lr kind 'callable' cannot be rebuilt from data (it holds a Python "
                         "function): pass the function itself")
    kind = checks.one_of("lr kind", kind, KINDS)
    allowed = set(KIND_KEYS[kind][0]) | set(KIND_KEYS[kind][1])
    extra = sorted(set(kw) - allowed)
    if extra:
        raise ValueError(f"lr kind {kind!r} does not take {', '.join(extra)} (it takes "
                         f"{', '.join(sorted(allowed))})")
    if kind == "constant":
        if "eta" not in kw:
            raise ValueError("lr kind 'constant' needs eta")
        return Constant(kw["eta"])
    if kind == "inverse_time":
        if "a" not in kw:
            raise ValueError("lr kind 'inverse_time' needs a (η_t = a/(t + beta))")
        return InverseTime(**kw)
    if kind == "stagewise":
        missing = sorted({"etas", "boundaries"} - set(kw))
        if missing:
            raise ValueError(f"lr kind 'stagewise' needs {' and '.join(missing)}")
        return Stagewise(tuple(kw["etas"]), tuple(kw["boundaries"]))
    mu = kw.get("mu", mu)
    tau_max = kw.get("tau_max", tau_max)
    if mu is None or tau_max is None:
        missing = [n for n, v in (("mu", mu), ("tau_max", tau_max)) if v is None]
        raise ValueError(f"lr kind 'pl' needs {' and '.join(missing)} (mu: the PL constant of the "
                         "problem; tau_max: the longest period of the schedule)")
    return PLStepsize(mu, tau_max, kw.get("alpha_pl", 1.0))


__all__ = [
    "KINDS", "KIND_KEYS", "STEPSIZES", "Constant", "InverseTime", "LRFunction", "PLStepsize",
    "Stagewise", "as_lr", "pl_shift", "pl_stepsize", "stepsize_from_dict",
]
