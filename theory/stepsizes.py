"""Step-size schedules η_t as torch-free data (beside the communication schedules).

Each is a small frozen callable ``t -> η_t`` with ``to_dict()``: :class:`Constant`,
:class:`Stagewise`, :class:`InverseTime`, :class:`LRFunction` (any user callable); :func:`as_lr`
turns a number or a callable into one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Constant", "InverseTime", "LRFunction", "Stagewise", "as_lr"]


def _pos(name: str, x: Any) -> float:
    v = float(x)
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a finite number > 0 (got {x!r})")
    return v


@dataclass(frozen=True)
class Constant:
    """η_t = eta."""

    eta: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "eta", _pos("lr (eta)", self.eta))

    def __call__(self, t: int) -> float:
        return self.eta

    def to_dict(self) -> dict[str, Any]:
        return {"type": "constant", "eta": self.eta}


@dataclass(frozen=True)
class Stagewise:
    """η_t = etas[s] for boundaries[s−1] ≤ t < boundaries[s] (stagewise learning, digest §2.2).

    ``boundaries`` strictly increasing, ``len(etas) == len(boundaries) + 1``."""

    etas: tuple[float, ...]
    boundaries: tuple[int, ...]

    def __post_init__(self) -> None:
        etas = tuple(_pos(f"etas[{i}]", e) for i, e in enumerate(self.etas))
        bnd = tuple(int(b) for b in self.boundaries)
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
        return {"type": "stagewise", "etas": list(self.etas), "boundaries": list(self.boundaries)}


@dataclass(frozen=True)
class InverseTime:
    """η_t = min(a / (t + beta), max_lr) — the 1/(t+β) family (e.g. Spiridonoff et al.'s
    η_t = α/(μ(t+β)) with a = α/μ, digest §4.2/§4.6)."""

    a: float
    beta: float = 1.0
    max_lr: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "a", _pos("a", self.a))
        b = float(self.beta)
        if not (b > 0 and math.isfinite(b)):
            raise ValueError(f"beta must be > 0 so that η_0 = a/beta is finite (got {self.beta!r})")
        object.__setattr__(self, "beta", b)
        if self.max_lr is not None:
            object.__setattr__(self, "max_lr", _pos("max_lr", self.max_lr))

    def __call__(self, t: int) -> float:
        e = self.a / (t + self.beta)
        return e if self.max_lr is None else min(e, self.max_lr)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "inverse_time", "a": self.a, "beta": self.beta, "max_lr": self.max_lr}


@dataclass(frozen=True)
class LRFunction:
    """Any user callable t -> η_t (checked > 0 and finite at every step of a run)."""

    fn: Callable[[int], float]
    name: str = "callable"

    def __call__(self, t: int) -> float:
        return float(self.fn(t))

    def to_dict(self) -> dict[str, Any]:
        return {"type": "callable", "name": self.name}


def as_lr(lr: Any) -> Any:
    """A learning-rate schedule from a number (constant) or a callable t -> η_t."""
    if isinstance(lr, (Constant, Stagewise, InverseTime, LRFunction)):
        return lr
    if isinstance(lr, (int, float, np.floating, np.integer)) and not isinstance(lr, bool):
        return Constant(float(lr))
    if callable(lr):
        return LRFunction(lr, getattr(lr, "__name__", "callable"))
    raise ValueError(f"lr must be a number > 0 or a callable t -> η_t (got {lr!r})")


