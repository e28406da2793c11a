"""Communication schedules: when workers mix, and with which W.

Steps are k = 0, …, T−1. A schedule is a sequence of *rounds*; round i is ``Round(start, length,
W)``: local steps ``start … start+length−1``, then mixing with ``W`` applied after the last one,
i.e. in Cooperative SGD's X_{k+1} = (X_k − η G_k) W_k, W_k = W at k = start+length−1 and W_k = I
otherwise (Cooperative SGD, JMLR eqs. 7 and 10). The last round is truncated to end exactly at T
and still mixes (so the output is the averaged model at T, as in local SGD / one-shot averaging).

Theory uses the *static* helpers (periods τ_i, number of rounds, Σ τ_i(τ_i − 1)); the engine
iterates :meth:`Schedule.rounds`. Adaptive schedules read the loss of the averaged model at the
start of each round through the ``loss`` callback.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from theory import checks
from theory.mixing import MixingMatrix, as_mixing


@dataclass(frozen=True)
class Round:
    """Local steps ``start … start+length−1``, then mix with ``W`` (None = no mixing, W = I)."""

    start: int
    length: int
    W: MixingMatrix | None

    @property
    def end(self) -> int:
        """Step count after the round (the communication time t_i)."""
        return self.start + self.length


class Schedule(ABC):
    """Base class. Subclasses implement :meth:`_rounds` (an infinite or finite generator of
    (length, W) pairs); truncation at T and the static helpers are shared."""

    #: True if rounds depend on the observed loss
    adaptive: bool = False
    name: str = "schedule"

    @property
    @abstractmethod
    def n(self) -> int:
        """Size of the mixing matrices (m + v)."""

    @abstractmethod
    def _rounds(
        self, loss: Callable[[], float] | None
    ) -> Iterator[tuple[int, MixingMatrix | None]]:
        """Yield (τ_i, W_i) forever (or until the schedule ends)."""

    def rounds(self, T: int, loss: Callable[[], float] | None = None) -> Iterator[Round]:
        """Consecutive rounds covering steps 0..T−1 exactly (last one truncated to end at T)."""
        T = checks.integer("T", T, lo=1)
        if self.adaptive and loss is None:
            raise ValueError(f"{self.name} is adaptive: rounds() needs a loss callback")
        start = 0
        for length, W in self._rounds(loss):
            length = checks.integer("round length", length, lo=1)
            if start + length >= T:
                yield Round(start, T - start, W)
                return
            yield Round(start, length, W)
            start += length
        if start < T:  # a finite schedule that ended before T: the remaining steps are local
            yield Round(start, T - start, None)

    # --- static helpers (theory side) ----------------------------------------------------------
    def _static(self, T: int) -> list[Round]:
        if self.adaptive:
            raise ValueError(f"{self.name} is adaptive: its periods depend on the loss; run it or "
                             "pass a loss callback to rounds()")
        return list(self.rounds(T))

    def periods(self, T: int) -> np.ndarray:
        """τ_i of every round (Σ τ_i = T)."""
        return np.array([r.length for r in self._static(T)], dtype=np.int64)

    def comm_times(self, T: int) -> np.ndarray:
        """Step counts t_i at which mixing happens (rounds that mix)."""
        return np.array([r.end for r in self._static(T) if r.W is not None], dtype=np.int64)

    def n_rounds(self, T: int) -> int:
        """Number of communication rounds within T steps."""
        return int(sum(1 for r in self._static(T) if r.W is not None and not r.W.is_identity))

    def sum_tau_tau_minus_1(self, T: int) -> int:
        """Σ_i τ_i(τ_i − 1), the quantity in the local-update error terms (Haddadpour et al.,
        NeurIPS 2019 poster, condition (ii))."""
        tau = self.periods(T).astype(object)
        return int(sum(t * (t - 1) for t in tau))

    def W_at(self, k: int, T: int) -> MixingMatrix | None:
        """W_k used after step k (None = identity)."""
        T = checks.integer("T", T, lo=1)
        k = checks.integer("k", k, lo=0, hi=T, hi_strict=True)
        for r in self._static(T):
            if r.start <= k < r.end:
                return r.W if k == r.end - 1 else None
        raise AssertionError("unreachable")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


def _mix(W: Any, name: str = "W") -> MixingMatrix:
    return as_mixing(W, name=name)


class Periodic(Schedule):
    """Constant period τ: mix with W after every τ local steps (A(τ, W, v))."""

    def __init__(self, W: Any, tau: int):
        self.W = _mix(W)
        self.tau = checks.integer("tau", tau, lo=1)
        self.name = f"periodic τ={self.tau}, {self.W.name}"

    @property
    def n(self) -> int:
        return self.W.n

    def _rounds(self, loss):
        while True:
            yield self.tau, self.W


class Intervals(Schedule):
    """Explicit periods τ_1, τ_2, … (mix with W at the end of each); after the list, local steps
    only unless ``repeat_last``."""

    def __init__(self, W: Any, periods: Sequence[int], *, repeat_last: bool = False,
                 name: str | None = None):
        self.W = _mix(W)
        self.periods_ = [checks.integer(f"periods[{i}]", t, lo=1)
                         for i, t in enumerate(periods)]
        if not self.periods_:
            raise ValueError("periods must be non-empty")
        self.repeat_last = repeat_last
        self.name = name or f"intervals {self.periods_[:4]}{'…' if len(self.periods_) > 4 else ''}"

    @property
    def n(self) -> int:
        return self.W.n

    def _rounds(self, loss):
        for t in self.periods_:
            yield t, self.W
        while self.repeat_last:
            yield self.periods_[-1], self.W


class Hierarchical(Schedule):
    """Two-level averaging: mix with ``W_group`` every τ₁ steps and with ``W_global`` every τ₂
    steps (τ₂ a multiple of τ₁; at a global step only W_global is applied)."""

    def __init__(self, W_group: Any, W_global: Any, tau1: int, tau2: int):
        self.W_group = _mix(W_group, "W_group")
        self.W_global = _mix(W_global, "W_global")
        if self.W_group.n != self.W_global.n:
            raise ValueError(f"W_group ({self.W_group.n}) and W_global ({self.W_global.n}) must "
                             "have the same size")
        self.tau1 = checks.integer("tau1", tau1, lo=1)
        self.tau2 = checks.integer("tau2", tau2, lo=1)
        if self.tau2 % self.tau1:
            raise ValueError(f"tau2 must be a multiple of tau1 (got tau1={tau1}, tau2={tau2})")
        self.name = f"hierarchical τ₁={self.tau1}, τ₂={self.tau2}"

    @property
    def n(self) -> int:
        return self.W_group.n

    def _rounds(self, loss):
        per = self.tau2 // self.tau1
        i = 0
        while True:
            i += 1
            yield self.tau1, (self.W_global if i % per == 0 else self.W_group)


class FromCallable(Schedule):
    """Any rule ``fn(k) -> W or None``: mix with W after step k when fn returns one."""

    def __init__(self, fn: Callable[[int], Any], n: int, name: str = "callable"):
        self.fn = fn
        self._n = checks.integer("n", n, lo=1)
        self.name = name
        self._cache: dict[int, MixingMatrix] = {}

    @property
    def n(self) -> int:
        return self._n

    def _rounds(self, loss):  # pragma: no cover - rounds() is overridden
        raise AssertionError("FromCallable overrides rounds()")

    def rounds(self, T: int, loss: Callable[[], float] | None = None) -> Iterator[Round]:
        T = checks.integer("T", T, lo=1)
        start = 0
        for k in range(T):
            W = self.fn(k)
            if W is None:
                continue
            M = self._cache.get(id(W))
            if M is None:
                M = self._cache[id(W)] = _mix(W)
            if M.n != self._n:
                raise ValueError(f"callable schedule returned a {M.n}×{M.n} W at step {k}; "
                                 f"expected {self._n}×{self._n}")
            yield Round(start, k - start + 1, M)
            start = k + 1
        if start < T:
            yield Round(start, T - start, None)


__all__ = ["FromCallable", "Hierarchical", "Intervals", "Periodic", "Round", "Schedule"]
