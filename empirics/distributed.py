"""Distributed backend: the simulator's configurations on ``torch.distributed``, one process per
worker (rank r = worker r), gloo on CPU, nccl on GPU.

The algorithm is not written here: every rank runs the algorithm core of
:mod:`empirics.algorithm` (its worker's local step, the bits rule, SQuARM-SGD's gossip step) in
the driver loop of :mod:`empirics.driver`, the same code as the simulator; this module holds
only communication — :class:`ProcessGroupCommunicator`, the driver's communicator over a
process group. Rank r draws its batches from ``seed_for(seed, r)`` and its compressor
randomness from ``compressor_seed(seed, r)``, the streams the simulator gives worker r, so both
runs produce the same trajectory up to float rounding (tested to 1e-10 in float64).

Mixing x_j ← Σ_i W_ij x_i after a round uses W's structure (:class:`empirics.mixers.Mixer`):

* ``W = I``: nothing. ``W = J`` (v = 0): one ``all_reduce`` (sum, then × 1/m).
* block-diagonal constant blocks (hierarchical group averaging): ``all_reduce`` in sub-groups.
* any other W (``"neighbor"``): point-to-point exchange (``batch_isend_irecv``) with the graph
  neighbours only: rank r sends x_r to each j with W_rj ≠ 0 and combines what it receives.
* ``mixing="dense"``: ``all_gather`` of all models and a local combination (on request).
* auxiliary rows (v ≥ 1, e.g. the EASGD centre z): ``aux="replicated"`` — every rank keeps z;
  the workers' share of z's update Σ_i W_{i,z} x_i is one ``all_reduce`` of (v × d), the rest is
  local and identical on every rank; or ``aux="owner"`` — rank 0 also holds z and z is a node of
  the neighbour exchange (for EASGD: every worker sends x_i to rank 0 and receives z back).
* a compressed round (error feedback with ``W = J`` from a synchronised round, when the bits
  rule sends compressed updates, :func:`empirics.algorithm.message_bits`): each rank sends the
  compressor's packed payloads of the round (``Compressor.encode``) by ``all_gather`` and every
  rank decodes them; the byte count of every payload is checked against ``bits(d)``.
* compressed gossip (``Config.gossip``: SQuARM-SGD, CHOCO-SGD): point-to-point with the graph
  neighbours only — a 1-byte fire flag to each out-neighbour, then only *fired* nodes send the
  packed payload of C(x_r − x̂_r) to their out-neighbours; each rank keeps the public copies x̂_j
  of its in-neighbours. The ``bits`` column counts payloads only (C.bits(d) per fired node and
  receiver, the simulator's convention); ``wire_bytes`` also counts the flags. Every W of the
  schedule must share one communication graph.

Records: rank 0 writes the simulator's :class:`empirics.records.Result` (same columns, same
bits accounting) to ``out_dir/result.json``, atomically and incrementally (so records survive a
failure); ``timing.json`` holds per-round compute and communication seconds of every rank and
the bytes each rank handed to the network. :func:`fit_runtime` fits round time = τ·Y + D.

Failures: every rank runs the heartbeat and watchdog of :mod:`empirics.liveness`, so a rank
that stops responding (stopped, frozen, deadlocked, lost) is named, with its step, within the
liveness timeout L (default 30 s; ``liveness_timeout=`` / ``--liveness-timeout``) plus two
heartbeat intervals — under :func:`run_distributed` and under plain ``torchrun``; rank 0 saves
its partial records first. The process-group timeout (``pg_timeout`` / ``--pg-timeout``) is what
``init_process_group`` and every ``new_group`` get. An output folder that holds an earlier job's
``result.json``/``timing.json`` is refused unless ``overwrite=True`` / ``--overwrite``.

Entry points: :func:`run_distributed` (spawns local ranks, see :mod:`empirics.launch`) and
``python -m empirics.distributed --spec SPEC --out DIR`` (what ``torchrun`` starts; see
docs/running_on_a_cluster.md).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import os
import pickle
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from empirics.algorithm import LocalStep
from empirics.collectives import (
    NeighborPlan,
    allreduce_mean,
    dense_mix,
    exchange_payloads,
    neighbor_mix,
)
from empirics.compressors import Payload
from empirics.driver import Driver, Layout
from empirics.launch import (
    DEFAULT_LIVENESS_TIMEOUT,
    DistributedError,
    RankContext,
    rank_main,
    spawn,
)
from empirics.liveness import check_liveness_timeout
from empirics.mixers import Mixer
from empirics.records import Result, atomic_write_text, load_result
from empirics.spec import DTYPES, ExperimentSpec, RunSpec
from theory.mixing import ATOL, MixingMatrix, as_mixing

__all__ = [
    "DistributedError",
    "DistributedResult",
    "NeighborPlan",
    "ProcessGroupCommunicator",
    "RoundTiming",
    "allreduce_mean",
    "dense_mix",
    "exchange_payloads",
    "fit_runtime",
    "load_spec",
    "main",
    "neighbor_mix",
    "run_distributed",
    "run_rank",
    "save_spec",
]

MIXING_MODES = ("auto", "neighbor", "dense")
AUX_MODES = ("replicated", "owner")


@dataclass
class _Strategy:
    kind: str           # identity | allreduce | groups | neighbor | dense
    plan: NeighborPlan | None = None
    group: Any = None
    group_size: int = 1


class ProcessGroupCommunicator:
    """The driver's communicator over a ``torch.distributed`` process group: rank r holds worker
    row r (``X``, 1 × d) and, with v > 0, the auxiliary rows ``Z`` (every rank for
    ``aux="replicated"``, rank 0 for ``"owner"``); rank 0 counts the auxiliary rows' messages
    and writes the records. See the module docstring for the mixing strategies."""

    def __init__(self, ctx: RankContext, spec: RunSpec, layout: Layout, x0: torch.Tensor,
                 mixing: str = "auto", aux: str = "replicated"):
        if mixing not in MIXING_MODES:
            raise ValueError(f"mixing must be one of {MIXING_MODES} (got {mixing!r})")
        if aux not in AUX_MODES:
            raise ValueError(f"aux must be one of {AUX_MODES} (got {aux!r})")
        cfg = spec.config
        if ctx.world_size != cfg.m:
            raise ValueError(f"world size {ctx.world_size} must equal the number of workers "
                             f"m = {cfg.m} (one rank per worker)")
        self.ctx, self.mixing, self.aux = ctx, mixing, aux
        self.m, self.v, self.n, self.d = cfg.m, cfg.v, cfg.n, layout.d
        self.layout = layout
        self.r = ctx.rank
        self.rows = [self.r]
        self.is_root = self.r == 0
        self.counted_nodes = np.asarray([self.r] + (list(range(self.m, self.n))
                                                    if self.is_root else []), dtype=np.int64)
        self.device, self.dtype = x0.device, x0.dtype
        self.X = x0[None, :].clone()
        self.wviews = layout.views(self.X)
        self.holds_aux = self.v > 0 and (aux == "replicated" or self.is_root)
        self.Z = x0.expand(self.v, self.d).clone() if self.holds_aux else None
        self.comp = cfg.compressor
        self.x_start: torch.Tensor | None = None
        self.wire_bytes = 0
        self._cache: dict[int, tuple[Any, Mixer, _Strategy]] = {}
        self.gossip = cfg.gossip
        if self.gossip is not None:
            # public copies: own x̂_r (live 1 × d tensor) and the in-neighbours' x̂_j
            self.x0 = x0.clone()
            self.xhat_own = x0[None, :].clone()
            self.xhat: dict[int, torch.Tensor] = {self.r: self.xhat_own[0]}
            self.gossip_pattern: np.ndarray | None = None

    # -- structure -------------------------------------------------------------------------
    def _entry(self, W: Any) -> tuple[Mixer, _Strategy]:
        hit = self._cache.get(id(W))
        if hit is not None and hit[0] is W:
            return hit[1], hit[2]
        M = as_mixing(W)
        if M.n != self.n:
            raise ValueError(f"W size must equal m + v = {self.m} + {self.v} = {self.n} "
                             f"(the schedule gave a {M.n}×{M.n} W)")
        mx = Mixer(M, self.device, self.dtype)
        st = self._strategy(M, mx)
        self._cache[id(W)] = (W, mx, st)
        return mx, st

    def _strategy(self, M: MixingMatrix, mx: Mixer) -> _Strategy:
        if mx.kind == "identity":
            return _Strategy("identity")
        if self.gossip is not None:
            return _Strategy("gossip", plan=self._gossip_plan(mx.A))
        if self.mixing == "dense":
            if self.v and self.aux != "replicated":
                raise ValueError("mixing='dense' needs aux='replicated' when v > 0")
            return _Strategy("dense")
        if mx.kind == "groups" and self.v == 0 and self.mixing == "auto":
            if mx.n_groups == 1:
                return _Strategy("allreduce", group_size=self.m)
            st = _Strategy("groups")
            gid = mx.gid_np.tolist()
            # new_group waits for every rank (a store barrier); without a timeout torch would
            # give the group its own default (30 min) instead of the job's pg_timeout
            pgt = self.ctx.pg_timeout
            kw = {"timeout": timedelta(seconds=pgt)} if pgt is not None else {}
            with self.ctx.communicating():
                for g in range(mx.n_groups):  # every rank creates every group, same order
                    ranks = [i for i in range(self.m) if gid[i] == g]
                    pg = dist.new_group(ranks, **kw) if len(ranks) > 1 else None
                    if self.r in ranks:
                        st.group, st.group_size = pg, len(ranks)
            return st
        return _Strategy("neighbor", plan=NeighborPlan(mx.A, self.m, self.r, self.m,
                                                        self.aux == "owner"))

    def _gossip_plan(self, A: np.ndarray) -> NeighborPlan:
        pattern = np.abs(A) > ATOL
        if self.gossip_pattern is None:
            self.gossip_pattern = pattern
        elif not np.array_equal(pattern, self.gossip_pattern):
            raise ValueError("distributed compressed gossip needs one communication graph: "
                             "every W of the schedule must have the non-zeros of the first "
                             "(each node keeps copies x̂_j of its in-neighbours only)")
        plan = NeighborPlan(A, self.m, self.r, self.m, aux_owner=False)
        for p in plan.recv:
            self.xhat.setdefault(p, self.x0.clone())
        return plan

    def mixer(self, W: Any) -> Mixer:
        return self._entry(W)[0]

    # -- rows ------------------------------------------------------------------------------
    def worker_rows(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.X, self.wviews

    def begin_round(self, synced: bool) -> None:
        """Keep the row at the round start (a compressed round rebuilds every row from it)."""
        self.x_start = self.X[0].detach().clone() if self.comp is not None and synced else None

    def synchronous(self, k: int, W: Any, local: LocalStep, eta: float, synced: bool) -> bool:
        return False

    # -- mixing ----------------------------------------------------------------------------
    def mix(self, W: Any, mixer: Mixer, payloads: list[Any] | None) -> None:
        _, st = self._entry(W)
        x = self.X[0]
        if payloads is not None and self.v == 0:
            self._mix_compressed(x, mixer, payloads)
        elif st.kind == "allreduce":
            self.wire_bytes += x.numel() * x.element_size()
            allreduce_mean(x, self.m)
        elif st.kind == "groups":
            if st.group_size > 1:
                self.wire_bytes += x.numel() * x.element_size()
                allreduce_mean(x, st.group_size, group=st.group)
        elif st.kind == "dense":
            rows = [self.r] + [self.m + a for a in range(self.v)]
            new, nb = dense_mix(x, mixer.A, rows, self.Z)
            self.wire_bytes += nb
            x.copy_(new[0])
            if self.v:
                self.Z.copy_(new[1:])
        else:
            self._mix_neighbor(x, mixer, st)

    def _mix_neighbor(self, x: torch.Tensor, mixer: Mixer, st: _Strategy) -> None:
        values = {self.r: x}
        extra = None
        if self.holds_aux and self.aux == "owner":
            values.update({self.m + a: self.Z[a] for a in range(self.v)})
        elif self.v and self.aux == "replicated":
            extra = {self.m + a: self.Z[a] for a in range(self.v)}
        new, nb = neighbor_mix(values, st.plan, extra)
        self.wire_bytes += nb
        if self.v and self.aux == "replicated":
            # z_a ← Σ_{i<m} A_{i,m+a} x_i + Σ_b A_{m+b,m+a} z_b: one all-reduce of the workers'
            # shares, the rest locally (identical on every rank)
            A = mixer.A
            S = torch.as_tensor(A[self.r, self.m:], dtype=self.dtype,
                                device=self.device)[:, None] * x[None, :]
            self.wire_bytes += S.numel() * S.element_size()
            dist.all_reduce(S, op=dist.ReduceOp.SUM)
            Azz = torch.as_tensor(A[self.m:, self.m:], dtype=self.dtype, device=self.device)
            S.add_(torch.mm(Azz.T, self.Z))
            self.Z.copy_(S)
        x.copy_(new[self.r])
        if self.holds_aux and self.aux == "owner":
            for a in range(self.v):
                self.Z[a].copy_(new[self.m + a])

    def _mix_compressed(self, x: torch.Tensor, mixer: Mixer, payloads: list[Any]) -> None:
        """Exchange the round's packed payloads; rebuild every worker's row as the simulator
        holds it (x_start − δ_1 − δ_2 − …) and average with the simulator's own mixer."""
        comp = self.comp
        vb = 8 * torch.empty((), dtype=self.dtype).element_size()
        expect = -(-comp.bits(self.d, vb) // 8)
        for p in payloads:
            if p.data.numel() != expect or p.rows != 1:
                raise RuntimeError(f"payload of {p.data.numel()} bytes differs from the "
                                   f"compressor's declared {comp.bits(self.d, vb)} bits "
                                   f"(= {expect} bytes) for d = {self.d}")
        data = torch.cat([p.data.reshape(1, -1) for p in payloads])  # (length, expect)
        self.wire_bytes += data.numel() * data.element_size()
        parts = exchange_payloads(data)
        proto = payloads[0]
        X = self.x_start.expand(self.m, self.d).clone()
        for s in range(data.shape[0]):
            D = torch.stack([comp.decode(type(proto)(parts[i][s:s + 1], proto.d, proto.dtype,
                                                     proto.bits_per_vector, proto.compressor))[0]
                             for i in range(self.m)])
            X.sub_(D)
        if not torch.equal(X[self.r], x):
            raise RuntimeError(f"rank {self.r}: the decoded payloads do not rebuild this "
                               f"worker's own model (wire format mismatch)")
        out = mixer(X, torch.empty_like(X))
        x.copy_(out[self.r])

    # -- compressed gossip (public copies) -------------------------------------------------
    def public_own(self) -> torch.Tensor:
        return self.xhat_own

    def publish(self, W: Any, mixer: Mixer, fired: list[int], payload: Any,
                q: torch.Tensor | None) -> None:
        """One fire flag (1 byte) to each out-neighbour, then the fired node's packed payload to
        its out-neighbours only; every node adds the decoded payloads to its copies."""
        _, st = self._entry(W)
        plan, comp = st.plan, self.gossip.compressor
        fire = bool(fired)
        flag = torch.tensor([1 if fire else 0], dtype=torch.uint8, device=self.device)
        ops, inflags = [], {}
        for p in plan.send:
            ops.append(dist.P2POp(dist.isend, flag, p))
            self.wire_bytes += 1
        for p in plan.recv:
            inflags[p] = torch.zeros(1, dtype=torch.uint8, device=self.device)
            ops.append(dist.P2POp(dist.irecv, inflags[p], p))
        _wait(ops)
        vb = 8 * torch.empty((), dtype=self.dtype).element_size()
        nbytes = -(-comp.bits(self.d, vb) // 8)
        ops, bufs = [], {}
        if fire:
            if payload.data.numel() != nbytes:
                raise RuntimeError(f"payload of {payload.data.numel()} bytes differs from the "
                                   f"compressor's declared {comp.bits(self.d, vb)} bits")
            data = payload.data.contiguous()
            for p in plan.send:
                ops.append(dist.P2POp(dist.isend, data, p))
                self.wire_bytes += nbytes
        for p in plan.recv:
            if int(inflags[p][0]):
                bufs[p] = torch.empty((1, nbytes), dtype=torch.uint8, device=self.device)
                ops.append(dist.P2POp(dist.irecv, bufs[p], p))
        _wait(ops)
        if fire:
            self.xhat_own.add_(q)
        for p, buf in bufs.items():
            pl = Payload(buf, self.d, self.dtype, comp.bits(self.d, vb), repr(comp))
            self.xhat[p].add_(comp.decode(pl)[0])

    def public_mix(self, W: Any, mixer: Mixer) -> torch.Tensor:
        _, st = self._entry(W)
        (i0, w0), rest = st.plan.terms[self.r][0], st.plan.terms[self.r][1:]
        y = torch.mul(self.xhat[i0], w0)
        for i, w in rest:
            y.add_(self.xhat[i], alpha=w)
        return y[None, :]

    # -- reductions ------------------------------------------------------------------------
    def average(self) -> torch.Tensor:
        """u = mean of the n rows (all ranks)."""
        vec = self.X[0].clone()
        if self.Z is not None and self.is_root:
            vec += self.Z.sum(0)
        dist.all_reduce(vec)
        return vec / self.n

    def stats(self, u: torch.Tensor, mem: torch.Tensor | None) -> tuple[float, float, float]:
        d = self.d
        cons = float(((self.X[0] - u) ** 2).sum())
        if self.Z is not None and self.is_root:
            cons += float(((self.Z - u) ** 2).sum())
        vec = torch.zeros(d + 2, dtype=torch.float64, device=self.device)
        vec[d] = cons
        if mem is not None:
            vec[:d] = mem[0]
            vec[d + 1] = float((mem ** 2).sum())
        dist.all_reduce(vec)
        mem2 = float(((vec[:d] / self.m) ** 2).sum()) if mem is not None else 0.0
        return float(vec[d]), mem2, float(vec[d + 1]) / self.m

    def totals(self, x: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(x, dtype=torch.int64, device=self.device)
        dist.all_reduce(t)
        return t.cpu().numpy()

    def broadcast(self, x: float) -> float:
        t = torch.tensor([x], dtype=torch.float64, device=self.device)
        dist.broadcast(t, 0)
        return float(t[0])

    def progress(self, k: int) -> None:
        self.ctx.progress(k)

    def communicating(self) -> contextlib.AbstractContextManager[None]:
        return self.ctx.communicating()

    def sync_device(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def info(self, local: LocalStep) -> dict[str, Any]:
        return {"distributed": {"world_size": self.ctx.world_size, "backend": self.ctx.backend,
                                "mixing": self.mixing, "aux": self.aux,
                                "grad_path": local.grad_path}}


def _wait(ops: list[Any]) -> None:
    if ops:
        for req in dist.batch_isend_irecv(ops):
            req.wait()


def _timing_data(timings: list[dict[str, Any]]) -> dict[str, Any]:
    t0 = timings[0]["timing"]
    return {"start": t0["start"], "length": t0["length"], "mixed": t0["mixed"],
            "compute": [t["timing"]["compute"] for t in timings],
            "comm": [t["timing"]["comm"] for t in timings],
            "wire_bytes": [t["wire_bytes"] for t in timings]}


def run_rank(ctx: RankContext, spec: RunSpec, *, mixing: str = "auto", aux: str = "replicated",
             save_every: float = 5.0) -> DistributedResult | None:
    """Run ``spec`` as rank ``ctx.rank`` of an initialised process group (one rank per worker).
    Rank 0 returns the :class:`DistributedResult` (and writes ``result.json``/``timing.json`` to
    ``ctx.out_dir``); other ranks return None. On failure rank 0 saves the partial records —
    also when its liveness watchdog finds a peer not responding (saved from the watchdog thread
    just before the process exits, status ``"error"``, the message naming the silent rank)."""
    dtype, device = DTYPES[spec.dtype], torch.device(spec.device)
    x0 = spec.problem.init_params(device=device, dtype=dtype)
    layout = Layout(x0)
    comm = ProcessGroupCommunicator(ctx, spec, layout, layout.flat(x0), mixing, aux)
    local = LocalStep(spec.problem, spec.config, comm.rows, layout.d,
                      batch_size=spec.batch_size, seed=spec.seed, device=device, dtype=dtype,
                      record_payloads=spec.config.compressor is not None)
    out = ctx.out_dir
    save = str(out / "result.json") if (out is not None and comm.is_root) else None
    driver = Driver(spec, comm, local, save=save, save_every=save_every)

    def save_partial(message: str) -> None:
        if save is not None:
            driver.result("error", message).save(save)

    with ctx.on_peer_failure(save_partial):
        res = driver.run()
    timings: list[Any] = [None] * ctx.world_size
    with ctx.communicating():
        dist.all_gather_object(timings, {"timing": driver.timing,
                                         "wire_bytes": comm.wire_bytes})
    if not comm.is_root:
        return None
    data = _timing_data(timings)
    if out is not None:
        atomic_write_text(out / "timing.json", json.dumps(data))
    return DistributedResult(res, RoundTiming.from_dict(data), None if out is None else str(out),
                             {"nprocs": ctx.world_size, "backend": ctx.backend,
                              "mixing": mixing, "aux": aux})


# ---------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------
# results of a distributed run
# ---------------------------------------------------------------------------------------------
@dataclass
class RoundTiming:
    """Measured seconds per round: ``start``/``length`` (R,), ``compute``/``comm`` (world, R) —
    local steps and mixing of each rank; ``mixed`` (R,) whether the round ended with a W ≠ I;
    ``wire_bytes`` (world,): bytes each rank handed to the network (point-to-point and payload
    sends exactly; for an all-reduce, the size of the tensor it contributed)."""

    start: np.ndarray
    length: np.ndarray
    compute: np.ndarray
    comm: np.ndarray
    mixed: np.ndarray
    wire_bytes: np.ndarray

    @classmethod
    def load(cls, path: str | os.PathLike) -> RoundTiming:
        with open(path) as fh:
            return cls.from_dict(json.load(fh))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RoundTiming:
        return cls(np.asarray(d["start"], np.int64), np.asarray(d["length"], np.int64),
                   np.asarray(d["compute"], float), np.asarray(d["comm"], float),
                   np.asarray(d["mixed"], bool), np.asarray(d["wire_bytes"], np.int64))

    @property
    def round_time(self) -> np.ndarray:
        """Seconds per round: max over ranks of compute + comm (a round ends for everyone when
        its slowest rank has mixed)."""
        return (self.compute + self.comm).max(axis=0)


def fit_runtime(lengths: Any, round_times: Any | None = None) -> tuple[float, float]:
    """Least squares of round time = τ·Y + D over the rounds: Y seconds per local step, D seconds
    per communication (the runtime model of Wang & Joshi's runtime-τ* analysis, see
    ``theory.bounds.runtime``). Accepts a :class:`RoundTiming` / :class:`DistributedResult`
    (mixing rounds only) or arrays (τ_i, t_i). Needs two distinct τ values."""
    if isinstance(lengths, DistributedResult):
        lengths = lengths.timing
    if isinstance(lengths, RoundTiming):
        tm = lengths
        sel = tm.mixed
        lengths, round_times = tm.length[sel], tm.round_time[sel]
    tau = np.asarray(lengths, dtype=float).ravel()
    t = np.asarray(round_times, dtype=float).ravel()
    if tau.shape != t.shape:
        raise ValueError(f"lengths and round_times must have the same length "
                         f"({tau.size} vs {t.size})")
    if not (np.all(np.isfinite(t)) and np.all(tau >= 1)):
        raise ValueError("round_times must be finite and lengths ≥ 1")
    if np.unique(tau).size < 2:
        raise ValueError(f"fit_runtime needs rounds with at least two distinct lengths τ to "
                         f"separate Y from D (got only τ = {sorted(set(tau.tolist()))})")
    A = np.stack([tau, np.ones_like(tau)], axis=1)
    (Y, D), *_ = np.linalg.lstsq(A, t, rcond=None)
    return float(Y), float(D)


@dataclass
class DistributedResult:
    """``result``: the simulator's :class:`~empirics.records.Result` (rank 0's records);
    ``timing``: :class:`RoundTiming`; ``out_dir``: where they were written."""

    result: Result
    timing: RoundTiming
    out_dir: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def fit_runtime(self) -> tuple[float, float]:
        return fit_runtime(self.timing)


# ---------------------------------------------------------------------------------------------
# specs on disk: pickled RunSpec or JSON description
# ---------------------------------------------------------------------------------------------
def save_spec(spec: RunSpec | Callable[..., RunSpec], path: str | os.PathLike) -> Path:
    """Pickle a RunSpec (or a picklable factory ``device -> RunSpec``) for the entry point."""
    path = Path(path)
    if isinstance(spec, RunSpec):
        spec = copy.copy(spec)
        spec.problem = _picklable(spec.problem)
    with open(path, "wb") as fh:
        pickle.dump(spec, fh)
    return path


def _picklable(problem: Any) -> Any:
    """A shallow copy of ``problem`` whose private dict caches that cannot be pickled (e.g.
    tensors created inside a ``torch.func`` transform) are emptied; they are rebuilt on use."""
    out = None
    for name, v in vars(problem).items():
        if name.startswith("_") and isinstance(v, dict):
            try:
                pickle.dumps(v)
            except Exception:
                out = out if out is not None else copy.copy(problem)
                setattr(out, name, {})
    return problem if out is None else out


def load_spec(path: str | os.PathLike, device: str | None = None, seed: int | None = None
              ) -> RunSpec:
    """Read a spec file: an experiment spec (``.toml``/``.yaml``/``.yml``/``.json``, the
    vocabulary of :class:`empirics.spec.ExperimentSpec`; ``seed`` picks the run, default its
    first seed) or a pickle written by :func:`save_spec` (a RunSpec, or a factory called with
    ``device``). ``device`` overrides the spec's device (each GPU rank passes its own)."""
    path = Path(path)
    if path.suffix in (".toml", ".yaml", ".yml", ".json"):
        es = ExperimentSpec.load(path)
        if device is not None:
            es = dataclasses.replace(es, device=device)
        return es.run_spec(seed)
    with open(path, "rb") as fh:
        obj = pickle.load(fh)
    if isinstance(obj, RunSpec):
        if device is not None and torch.device(device).type != torch.device(obj.device).type:
            raise ValueError(f"the pickled spec's problem lives on {obj.device}, not {device}: "
                             f"pickle a factory device -> RunSpec, or use an experiment spec")
        return obj
    if callable(obj):
        spec = obj(device)
        if not isinstance(spec, RunSpec):
            raise ValueError(f"the spec factory returned {type(spec).__name__}, not a RunSpec")
        return spec
    raise ValueError(f"{path}: expected a pickled RunSpec or factory (got {type(obj).__name__})")


# ---------------------------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m empirics.distributed --spec SPEC --out DIR`` on every rank (torchrun sets the
    environment). Exit code 0 on success, 1 on failure (error written to DIR/errors/)."""
    ap = argparse.ArgumentParser(prog="python -m empirics.distributed",
                                 description="Run a Cooperative SGD spec, one rank per worker.")
    ap.add_argument("--spec", required=True,
                    help="experiment spec (.toml/.yaml/.json) or a pickle from save_spec")
    ap.add_argument("--seed", type=int, default=None,
                    help="which seed of an experiment spec to run (default: its first)")
    ap.add_argument("--out", required=True, help="output directory (rank 0 writes result.json)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (→ cuda:LOCAL_RANK)")
    ap.add_argument("--backend", default="auto", help="gloo, nccl or auto")
    ap.add_argument("--mixing", default="auto", choices=MIXING_MODES)
    ap.add_argument("--aux", default="replicated", choices=AUX_MODES)
    ap.add_argument("--pg-timeout", type=float, default=300.0,
                    help="seconds a collective may wait for a peer before failing (the "
                         "process-group timeout; a last resort, keep it above the liveness "
                         "timeout)")
    ap.add_argument("--liveness-timeout", type=float, default=DEFAULT_LIVENESS_TIMEOUT,
                    help="seconds after which a rank that stopped responding (no heartbeat, or "
                         "no progress while its peers wait) is named and the job fails; 0: off "
                         f"(default {DEFAULT_LIVENESS_TIMEOUT:g})")
    ap.add_argument("--save-every", type=float, default=5.0)
    ap.add_argument("--overwrite", action="store_true",
                    help="replace the results of an earlier job in --out (otherwise refused)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    def work(ctx: RankContext) -> None:
        # rank 0 (the one that writes results) decides, every rank fails the same way
        verdict = [_refuse_reuse(out, a.overwrite, "--overwrite") if ctx.rank == 0 else None]
        with ctx.communicating():
            dist.broadcast_object_list(verdict, src=0)
        if verdict[0] is not None:
            raise ValueError(verdict[0])
        with contextlib.suppress(OSError):
            (out / "errors" / f"rank{ctx.rank}.json").unlink()  # an earlier job's
        if ctx.rank == 0:
            for f in _RESULT_FILES:
                with contextlib.suppress(OSError):
                    (out / f).unlink()
        dev = str(ctx.device) if ctx.device.type == "cuda" else None
        spec = load_spec(a.spec, device=dev, seed=a.seed)
        run_rank(ctx, spec, mixing=a.mixing, aux=a.aux, save_every=a.save_every)

    return rank_main(work, out, a.backend, a.device, a.pg_timeout, a.liveness_timeout)


_RESULT_FILES = ("result.json", "timing.json")


def _refuse_reuse(out: Path, overwrite: bool, how: str) -> str | None:
    """Why ``out`` must not be used (it holds an earlier job's results), or None."""
    if overwrite:
        return None
    held = [f for f in _RESULT_FILES if (out / f).exists()]
    if not held:
        return None
    return (f"output folder {out} already holds the results of an earlier job "
            f"({', '.join(held)}): choose a fresh folder, or pass {how} to replace them")


def run_distributed(spec: RunSpec | ExperimentSpec | str | os.PathLike | Callable[..., RunSpec],
                    nprocs: int | None = None, *, seed: int | None = None,
                    backend: str = "gloo", device: str = "cpu", timeout: float = 600.0,
                    pg_timeout: float | None = None, mixing: str = "auto",
                    aux: str = "replicated", out_dir: str | os.PathLike | None = None,
                    save_every: float = 5.0, fault: tuple[int, int, str] | None = None,
                    liveness_timeout: float = DEFAULT_LIVENESS_TIMEOUT,
                    overwrite: bool = False) -> DistributedResult:
    """Run ``spec`` on ``nprocs`` local processes (one per worker, loopback rendezvous) through
    the ``python -m empirics.distributed`` entry point and return the gathered result.

    spec: a RunSpec (pickled to the children), an :class:`~empirics.spec.ExperimentSpec` or the
    path of its file (``seed`` picks the run, default its first seed) — the same spec file that
    ``coopsgd run`` and :func:`~empirics.experiment.run_experiment` take — or a picklable
    factory ``device -> RunSpec``. nprocs: default (and only allowed value) the number of
    workers m. timeout: seconds for the whole job — past it every rank is stopped and
    :class:`DistributedError` names the ranks and their steps. pg_timeout: seconds a collective
    waits for a peer (default min(timeout, 300)), the process-group timeout every rank passes to
    torch. liveness_timeout: seconds after which a rank that stopped responding (no heartbeat,
    or no progress while a peer waits for it: :mod:`empirics.liveness`) ends the job with a
    :class:`DistributedError` naming it and its step (default 30; 0: off). mixing:
    ``"auto"``, ``"neighbor"`` or ``"dense"``; aux: ``"replicated"`` or ``"owner"`` (see module
    docstring). out_dir: job directory (default: a temporary one, removed after success); one
    that already holds a ``result.json`` or ``timing.json`` is refused (ValueError) unless
    ``overwrite=True``. fault: (rank, step, kind), kind one of
    :data:`empirics.launch.FAULT_KINDS`, for testing the failure paths."""
    liveness_timeout = check_liveness_timeout(liveness_timeout)
    if mixing not in MIXING_MODES:
        raise ValueError(f"mixing must be one of {MIXING_MODES} (got {mixing!r})")
    if aux not in AUX_MODES:
        raise ValueError(f"aux must be one of {AUX_MODES} (got {aux!r})")
    if isinstance(spec, (str, os.PathLike)):
        spec = ExperimentSpec.load(spec)
    m = None
    if isinstance(spec, RunSpec):
        m = spec.m
    elif isinstance(spec, ExperimentSpec):
        m = spec.run_spec(seed).m  # validates the spec in the parent
    elif not callable(spec):
        raise ValueError(f"spec must be a RunSpec, an ExperimentSpec (or its file) or a factory "
                         f"(got {type(spec).__name__})")
    if nprocs is None:
        if m is None:
            raise ValueError("nprocs is needed with a spec factory (one process per worker)")
        nprocs = m
    if m is not None and nprocs != m:
        raise ValueError(f"nprocs must equal the number of workers m = {m} (got {nprocs}): "
                         f"the backend runs one process per worker")
    tmp = out_dir is None
    out = Path(tempfile.mkdtemp(prefix="coopsgd-dist-")) if tmp else Path(out_dir).resolve()
    if (why := _refuse_reuse(out, overwrite, "overwrite=True")) is not None:
        raise ValueError(f"out_dir: {why}")
    out.mkdir(parents=True, exist_ok=True)
    for f in _RESULT_FILES:
        if (out / f).exists():
            (out / f).unlink()
    if isinstance(spec, ExperimentSpec):
        sp = out / "spec.json"
        atomic_write_text(sp, json.dumps(spec.to_dict()))
    else:
        sp = save_spec(spec, out / "spec.pkl")
    pgt = pg_timeout if pg_timeout is not None else min(float(timeout), 300.0)
    seed_args = ["--seed", str(seed)] if (seed is not None and isinstance(spec, ExperimentSpec)) \
        else []
    spawn(["-m", "empirics.distributed", "--spec", str(sp), *seed_args, "--out", str(out),
           "--backend", backend, "--device", device, "--mixing", mixing, "--aux", aux,
           "--pg-timeout", str(pgt), "--save-every", str(save_every),
           "--liveness-timeout", str(liveness_timeout), "--overwrite"],
          nprocs, out_dir=out, timeout=timeout, fault=fault)
    res = DistributedResult(load_result(out / "result.json"),
                            RoundTiming.load(out / "timing.json"),
                            None if tmp else str(out),
                            {"nprocs": nprocs, "backend": backend, "mixing": mixing, "aux": aux})
    if tmp:
        shutil.rmtree(out, ignore_errors=True)
    return res


if __name__ == "__main__":
    sys.exit(main())
