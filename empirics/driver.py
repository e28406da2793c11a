"""The one loop of Cooperative SGD, run against a small communicator protocol.

:class:`Driver` walks the schedule's rounds (``schedule.rounds(T)``; Wang & Joshi, Cooperative
SGD, JMLR 2021, eqs. 7–10: W_k = the round's W after its last local step, I otherwise), takes the
local steps of the rows a process holds (:class:`empirics.algorithm.LocalStep`), synchronises at
the end of each round (:func:`empirics.algorithm.mix_round` or
:class:`empirics.algorithm.GossipStep`), samples ‖∇F(u_k)‖² for the running average, writes the
records (:data:`empirics.records.COLUMNS`), checkpoints them, and turns NaN/inf into a
:class:`~empirics.algorithm.DivergenceError` carrying the records so far.

Two communicators implement :class:`Communicator`: the stacked one of the simulator
(:mod:`empirics.engine`: every row in one tensor, with its fast paths) and the process-group one
of :mod:`empirics.distributed` (one worker per ``torch.distributed`` rank). Given the same seeds
both produce the same trajectory (tested to 1e-10 in float64).

Running average of ‖∇F(u_k)‖² (the left side of Theorem 1, JMLR eq. 17, with u_0 = x₀ the
paper's u_1): ``grad_every = 1`` evaluates it at every step (exact); q > 1 at one uniformly
random step per block of q steps, weighted by block length (unbiased; the draw has its own
stream, so it never changes the trajectory); 0 only at records.

Divergence (:data:`empirics.spec.DIVERGENCE_RULE`): the run stops at step k when a worker's
mini-batch loss or F(u_k) exceeds F(x₀) + D·max(|F(x₀)|, 1), when ‖∇F(u_k)‖² exceeds
D·max(‖∇F(x₀)‖², 1), or when any is NaN/inf (D = ``RunSpec.divergence``, default 10⁶); the
records so far are kept (the diverging one included) and travel with the error.
"""

from __future__ import annotations

import array
import contextlib
import math
import time
from typing import Any, Protocol

import numpy as np
import torch

from empirics.algorithm import (
    UNCOMPRESSED_BITS,
    DivergenceError,
    GossipStep,
    LocalStep,
    mix_round,
)
from empirics.mixers import Mixer
from empirics.records import Result

__all__ = ["Communicator", "Driver", "Layout", "check_schedule"]


class Layout:
    """How one model's parameters (a dict of tensors) sit in a flat row of length d."""

    def __init__(self, x0: dict[str, torch.Tensor]):
        self.names = list(x0)
        self.shapes = [tuple(t.shape) for t in x0.values()]
        self.sizes = [int(math.prod(s)) for s in self.shapes]
        self.d = int(sum(self.sizes))

    def flat(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([params[k].reshape(-1) for k in self.names])

    def views(self, X: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-parameter views of the rows of X (leading axis = rows)."""
        out, off = {}, 0
        for name, shp, sz in zip(self.names, self.shapes, self.sizes, strict=True):
            out[name] = X[:, off:off + sz].view(X.shape[0], *shp)
            off += sz
        return out

    def unflat(self, u: torch.Tensor) -> dict[str, torch.Tensor]:
        out, off = {}, 0
        for name, shp, sz in zip(self.names, self.shapes, self.sizes, strict=True):
            out[name] = u[off:off + sz].view(shp)
            off += sz
        return out


class Communicator(Protocol):
    """What the driver needs from a backend. Collective methods are called by every process
    in the same order; values documented as "on the root" are only meaningful there.

    Attributes: ``m, v, n, d``; ``layout`` (:class:`Layout`); ``rows`` (the worker rows this
    process holds, global indices); ``counted_nodes`` (the nodes whose messages this process
    counts: its rows, and the auxiliary rows on the root); ``is_root``.
    """

    m: int
    v: int
    n: int
    d: int
    layout: Layout
    rows: list[int]
    counted_nodes: np.ndarray
    is_root: bool

    def mixer(self, W: Any) -> Mixer: ...
    def worker_rows(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...
    def begin_round(self, synced: bool) -> None: ...
    def synchronous(self, k: int, W: Any, local: LocalStep, eta: float, synced: bool
                    ) -> bool: ...
    def mix(self, W: Any, mixer: Mixer, payloads: list[Any] | None) -> None: ...
    def public_own(self) -> torch.Tensor: ...
    def publish(self, W: Any, mixer: Mixer, fired: list[int], payload: Any,
                q: torch.Tensor | None) -> None: ...
    def public_mix(self, W: Any, mixer: Mixer) -> torch.Tensor: ...
    def average(self) -> torch.Tensor: ...
    def stats(self, u: torch.Tensor, mem: torch.Tensor | None) -> tuple[float, float, float]: ...
    def totals(self, x: np.ndarray) -> np.ndarray: ...
    def broadcast(self, x: float) -> float: ...
    def progress(self, k: int) -> None: ...
    def communicating(self) -> contextlib.AbstractContextManager[None]: ...
    def sync_device(self) -> None: ...
    def info(self, local: LocalStep) -> dict[str, Any]: ...


def check_schedule(schedule: Any, T: int, n: int, mixer: Any) -> None:
    """Refuse a schedule that cannot describe a cooperative run of T steps on n nodes: wrong
    size, never mixing (n > 1), or mixing only after the last step with a W that is not exact
    averaging. Streams the rounds (stops at the first mixing step before the last), so long
    runs never list their schedule; adaptive schedules are not checked in advance."""
    if schedule.n != n:
        raise ValueError(f"schedule size {schedule.n} must equal m + v = {n}")
    if getattr(schedule, "adaptive", False):
        return
    last = None
    for r in schedule.rounds(T):
        if r.W is None or r.W.is_identity:
            continue
        if r.end < T:
            return
        last = r
    if n > 1 and last is None:
        raise ValueError(f"schedule never communicates within T = {T} steps (no round "
                         f"mixes with a W ≠ I): the workers would never exchange anything")
    if last is not None and not mixer(last.W).is_average:
        raise ValueError(
            f"schedule mixes only once, after the last step (T = {T}), and with a W that "
            f"is not exact averaging: a decentralized/EASGD/hierarchical run needs mixing "
            f"during training (use a period tau < T)")


def _method(q: int) -> str:
    if q == 1:
        return "exact: every step"
    if q > 1:
        return (f"stratified subsample: one uniformly random step per block of {q} steps, "
                f"weighted by block length (unbiased)")
    return "off (grad_every = 0)"


class Driver:
    """Runs ``spec`` (an :class:`empirics.spec.RunSpec`) through ``comm``.

    ``local``: the held rows' :class:`LocalStep`; ``save``: path of the records, rewritten (on
    the root) after a record when ``save_every`` seconds have passed (status ``"running"``) and
    at the end, also when the run fails; ``progress``: a tqdm bar on the root; ``tracer``: the
    simulator's trace recorder (``mixed(W, applied)`` at the end of each round, on the entry of
    the round's last step)."""

    def __init__(self, spec: Any, comm: Communicator, local: LocalStep, *,
                 save: str | None = None, save_every: float = 60.0, progress: bool = False,
                 tracer: Any = None):
        self.spec, self.comm, self.local = spec, comm, local
        self.problem = spec.problem
        self.schedule = spec.config.schedule
        self.T = spec.T
        self.gossip = (GossipStep(spec.config, comm.rows, comm.d, seed=spec.seed,
                                  device=local.device, dtype=local.dtype)
                       if spec.config.gossip is not None else None)
        self.save, self.save_every, self.progress = save, save_every, progress
        self.tracer = tracer
        self.synced = True  # all n rows equal (true at x₀ and after mixing with W = J)
        self.bits = 0       # sent by the nodes this process counts
        self.n_rounds = 0
        self.comm_steps = array.array("q")
        self.rows: list[dict[str, float]] = []
        self.gn_sum = 0.0   # Σ over evaluated blocks of (block length × ‖∇F(u_k)‖²)
        self.cons_sum = 0.0  # the same for ‖X_k(I − J)‖²_F
        self.gn_weight = 0  # Σ block lengths covered
        self.gn_count = 0
        self.gn_at = array.array("q")
        self.k = 0
        self.eta_k = math.nan
        self._fires: np.ndarray | None = None  # fires per node at the last record (gossip)
        self.rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 0x6E0F]))
        self.timing: dict[str, list] = {"start": [], "length": [], "compute": [], "comm": [],
                                        "mixed": []}
        self.t0 = time.perf_counter()
        self._last_save = time.perf_counter()

    # -- values ----------------------------------------------------------------------------
    def lr(self, k: int) -> float:
        e = self.spec.lr(k)
        if not (isinstance(e, (int, float)) and e > 0 and math.isfinite(e)):
            raise ValueError(f"lr must be finite and > 0 at every step; lr({k}) = {e!r}")
        return float(e)

    def _on_root(self, fn: Any) -> float:
        """``fn(u)`` evaluated on the root at the current u and broadcast (collective)."""
        with self.comm.communicating():
            u = self.comm.average()
            x = float(fn(self.comm.layout.unflat(u))) if self.comm.is_root else 0.0
            return self.comm.broadcast(x)

    def full_loss(self) -> float:
        """F(u), the same number on every process (adaptive schedules decide rounds by it)."""
        return self._on_root(self.problem.full_loss)

    def sample_point(self) -> tuple[float, float]:
        """(‖∇F(u_k)‖² on the root (NaN elsewhere), ‖X_k(I − J)‖²_F) at the current step: the
        two running averages' terms (Theorem 1's left side, Lemma 2's network term)."""
        with self.comm.communicating():
            u = self.comm.average()
            cons, _, _ = self.comm.stats(u, None)
        gn = float(self.problem.grad_norm2(self.comm.layout.unflat(u))) \
            if self.comm.is_root else math.nan
        return gn, cons

    # -- records ---------------------------------------------------------------------------
    def _totals(self) -> tuple[int, np.ndarray | None]:
        """(bits of all nodes, fires per node or None), summed over processes (collective)."""
        m = self.comm.m
        x = np.zeros(1 + (m if self.gossip is not None else 0), dtype=np.int64)  # exact counts
        x[0] = self.bits
        if self.gossip is not None:
            x[1 + np.asarray(self.comm.rows)] = self.gossip.fires
        with self.comm.communicating():
            t = self.comm.totals(x)
        return int(t[0]), (np.asarray(t[1:], dtype=np.int64) if self.gossip is not None
                           else None)

    def record(self, k: int, gn: float | None = None) -> None:
        comm = self.comm
        with comm.communicating():
            u = comm.average()
            cons, mem2, memw = comm.stats(u, self.local.mem)
        bits, self._fires = self._totals()
        if not comm.is_root:
            return
        params = comm.layout.unflat(u)
        F = float(self.problem.full_loss(params))
        if gn is None:
            gn = float(self.problem.grad_norm2(params))
        if not (math.isfinite(F) and math.isfinite(gn) and math.isfinite(cons)):
            self._check(k, F, gn)  # a NaN/inf record is not kept: the error names it
            raise DivergenceError(k, "parameters contain NaN/inf")
        run = self.gn_sum / self.gn_weight if self.gn_weight else math.nan
        crun = self.cons_sum / self.gn_weight if self.gn_weight else math.nan
        self.rows.append({"step": k, "loss": F, "grad_norm2": gn, "consensus": cons,
                          "memory_norm2": mem2, "memory_norm2_workers": memw, "bits": bits,
                          "rounds": self.n_rounds, "grad_norm2_running": run,
                          "consensus_running": crun,
                          "lr": self.spec.lr(k) if k < self.T else math.nan,
                          "wall": time.perf_counter() - self.t0})
        self._check(k, F, gn)  # a finite diverging record is kept: it shows the blow-up
        if self.save is not None and time.perf_counter() - self._last_save >= self.save_every:
            self.result("running", f"checkpoint: steps 0..{k - 1} done").save(self.save)
            self._last_save = time.perf_counter()

    def result(self, status: str, message: str, u: torch.Tensor | None = None) -> Result:
        """The records so far as a :class:`Result` (on the root; no collective)."""
        q = self.spec.grad_every
        return Result.from_rows(
            {**self.spec.to_dict(), **self.comm.info(self.local)}, self.rows,
            grad_norm2_avg=self.gn_sum / self.gn_weight if self.gn_weight else math.nan,
            grad_norm2_avg_method=_method(q), grad_norm2_avg_steps=self.gn_count,
            steps_done=self.k, u_final=None if u is None else u.detach().cpu().double().numpy(),
            comm_steps=np.asarray(self.comm_steps, dtype=np.int64),
            grad_norm2_at=(np.arange(self.gn_count, dtype=np.int64) if q == 1
                           else np.asarray(self.gn_at, dtype=np.int64)), status=status,
            message=message, fires=None if self._fires is None else self._fires.copy())

    # -- one round's synchronisation -------------------------------------------------------
    def synchronise(self, W: Any, k: int, length: int, round_synced: bool) -> None:
        comm = self.comm
        mixer = comm.mixer(W)
        if mixer.kind == "identity":
            if self.tracer is not None:
                self.tracer.mixed(W, False)
            return
        with comm.communicating():
            if self.gossip is not None:
                Xw, _ = comm.worker_rows()
                self.bits += self.gossip(comm, Xw, W, mixer, k, self.eta_k)
                self.synced = False
            else:
                self.bits += mix_round(comm, W, mixer, length, round_synced, self.local)
                if mixer.is_average:
                    self.synced = True
        self.n_rounds += 1
        self.comm_steps.append(k)
        if self.tracer is not None:
            self.tracer.mixed(W, True)

    # -- the loop --------------------------------------------------------------------------
    def _loop(self) -> None:
        comm, local = self.comm, self.local
        T, s, q = self.T, self.spec.record_every, self.spec.grad_every
        multi = comm.n > 1
        bar = None
        if self.progress and comm.is_root:
            from tqdm.auto import tqdm

            bar = tqdm(total=T, desc=self.spec.config.name, unit="step")
        pick = -1  # step of the current block at which ‖∇F(u)‖² is evaluated
        try:
            for rnd in self.schedule.rounds(T, loss=self.full_loss):
                round_synced = self.synced
                comm.begin_round(round_synced)
                local.begin_round()
                compute = 0.0
                shortcut = False  # the round ran as one synchronous step (mixing included)
                for k in range(rnd.start, rnd.end):
                    self.k = k
                    comm.progress(k)
                    gn = None
                    if q >= 1:
                        if q == 1:
                            pick = k
                        elif k % q == 0:
                            pick = k + int(self.rng.integers(min(q, T - k)))
                        if k == pick:
                            gn, cons = self.sample_point()
                            if comm.is_root:
                                self._check(k, None, gn)
                    if k % s == 0:  # the record's running averages cover steps j < k
                        self.record(k, gn)
                    if gn is not None and comm.is_root:
                        w = 1 if q == 1 else min(q, T - (k - k % q))
                        self.gn_sum += w * gn
                        self.cons_sum += w * cons
                        self.gn_weight += w
                        self.gn_count += 1
                        if q > 1:
                            self.gn_at.append(k)
                    eta = self.eta_k = self.lr(k)
                    tc = time.perf_counter()
                    if rnd.length == 1 and rnd.W is not None and comm.synchronous(
                            k, rnd.W, local, eta, self.synced):
                        mixer = comm.mixer(rnd.W)
                        self.bits += self._sync_bits(mixer)
                        self.n_rounds += 1
                        self.comm_steps.append(k)
                        self.synced = True
                        shortcut = True
                        continue
                    Xw, params = comm.worker_rows()
                    local(Xw, params, k, eta)
                    if multi:
                        self.synced = False
                    comm.sync_device()
                    compute += time.perf_counter() - tc
                tm = time.perf_counter()
                if rnd.W is not None and not shortcut:
                    self.synchronise(rnd.W, rnd.end - 1, rnd.length, round_synced)
                    comm.sync_device()
                self._time_round(rnd, compute, time.perf_counter() - tm)
                if bar is not None:
                    bar.update(rnd.length)
        finally:
            if bar is not None:
                bar.close()

    def _sync_bits(self, mixer: Mixer) -> int:
        """Bits of the synchronous shortcut's round: uncompressed messages of W = J."""
        return UNCOMPRESSED_BITS * self.local.d * int(
            mixer.row_messages[self.comm.counted_nodes].sum())

    def _time_round(self, rnd: Any, compute: float, comm_s: float) -> None:
        tt = self.timing
        tt["start"].append(rnd.start)
        tt["length"].append(rnd.length)
        tt["compute"].append(compute)
        tt["comm"].append(comm_s)
        tt["mixed"].append(rnd.W is not None and not self.comm.mixer(rnd.W).kind == "identity")

    def _set_limits(self) -> None:
        """The divergence rule's limits from F(x₀) and ‖∇F(x₀)‖² (the same on every process):
        F > F(x₀) + D·max(|F(x₀)|, 1), ‖∇F‖² > D·max(‖∇F(x₀)‖², 1), D = ``spec.divergence``."""
        comm, D = self.comm, self.spec.divergence
        with comm.communicating():
            u = comm.average()
            F0 = g0 = 0.0
            if comm.is_root:
                params = comm.layout.unflat(u)
                F0 = float(self.problem.full_loss(params))
                g0 = float(self.problem.grad_norm2(params))
            F0, g0 = comm.broadcast(F0), comm.broadcast(g0)
        if not (math.isfinite(F0) and math.isfinite(g0)):
            raise ValueError(f"the starting point x₀ already has F(x₀) = {F0}, ‖∇F(x₀)‖² = {g0}")
        self.loss_limit = F0 + D * max(abs(F0), 1.0)
        self.grad_limit = D * max(g0, 1.0)
        self.local.loss_limit = self.loss_limit

    def _check(self, k: int, F: float | None, gn: float | None) -> None:
        """DivergenceError at step k if F(u_k) or ‖∇F(u_k)‖² breaks the divergence rule."""
        D = self.spec.divergence
        if F is not None and not F <= self.loss_limit:
            raise DivergenceError(k, f"F(u_k) = {F:.6g} exceeds the divergence limit "
                                     f"F(x₀) + {D:g}·max(|F(x₀)|, 1) = {self.loss_limit:.6g}"
                                  if math.isfinite(F) else f"F(u_k) = {F}")
        if gn is not None and not gn <= self.grad_limit:
            raise DivergenceError(k, f"‖∇F(u_k)‖² = {gn:.6g} exceeds the divergence limit "
                                     f"{D:g}·max(‖∇F(x₀)‖², 1) = {self.grad_limit:.6g}"
                                  if math.isfinite(gn) else f"‖∇F(u_k)‖² = {gn}")

    def run(self) -> Result | None:
        """The main loop; returns the :class:`Result` on the root (None elsewhere). On failure
        the exception carries ``partial`` (the records so far, on the root), also saved to
        ``save``."""
        check_schedule(self.schedule, self.T, self.comm.n, self.comm.mixer)
        self.t0 = time.perf_counter()
        try:
            self._set_limits()
            self._loop()
            self.k = self.T
            self.comm.progress(self.T)
            self.record(self.T)
            with self.comm.communicating():
                u = self.comm.average()
        except BaseException as e:
            self._fail(e)
            raise
        if not self.comm.is_root:
            return None
        res = self.result("completed", "", u)
        if self.save is not None:
            res.save(self.save)
        return res

    def _fail(self, e: BaseException) -> None:
        if not self.comm.is_root:
            return
        status = ("diverged" if isinstance(e, DivergenceError) else
                  "interrupted" if isinstance(e, KeyboardInterrupt) else "error")
        msg = str(e) if isinstance(e, DivergenceError) else f"{type(e).__name__}: {e}"
        with contextlib.suppress(Exception):
            partial = self.result(status, msg)
            e.partial = partial  # type: ignore[attr-defined]
            if self.save is not None:
                partial.save(self.save)

