"""Distributed backend: the engine's configurations on ``torch.distributed``, one process per
worker (rank r = worker r), gloo on CPU, nccl on GPU.

Algorithm: the same Cooperative SGD recursion as :mod:`empirics.engine` (digest §1.3),
X_{k+1} = W_kᵀ(X_k − Δ_k), with row i of X held by rank i. Rank r runs worker r's local step
with the engine's own code (:class:`_LocalWorker` wraps a one-worker ``empirics.engine._Engine``:
same sampling, gradient path, momentum, error feedback, learning rate), drawing its batches from
``seed_for(seed, r)`` and its compressor randomness from ``compressor_seed(seed, r)`` — the
streams the simulator gives worker r — so both runs produce the same trajectory up to float
rounding (tested to 1e-10 in float64). Mixing x_j ← Σ_i W_ij x_i after a round uses W's structure:

* ``W = I``: nothing. ``W = J`` (v = 0): one ``all_reduce`` (sum, then × 1/m).
* block-diagonal constant blocks (hierarchical group averaging): ``all_reduce`` in sub-groups.
* any other W (``"neighbor"``): point-to-point exchange (``batch_isend_irecv``) with the graph
  neighbours only: rank r sends x_r to each j with W_rj ≠ 0 and combines what it receives.
* ``mixing="dense"``: ``all_gather`` of all models and a local combination (on request).
* auxiliary rows (v ≥ 1, e.g. the EASGD centre z): ``aux="replicated"`` — every rank keeps z;
  the workers' share of z's update Σ_i W_{i,z} x_i is one ``all_reduce`` of (v × d), the rest is
  local and identical on every rank; or ``aux="owner"`` — rank 0 also holds z and z is a node of
  the neighbour exchange (for EASGD: every worker sends x_i to rank 0 and receives z back).
* error feedback with ``W = J`` starting from a synchronised round, when the engine would count
  compressed messages (τ·bits(C) < 32·d): each rank sends the compressor's packed payloads of the
  round (``Compressor.encode``; indices + values, quantised levels ...) by ``all_gather`` and every
  rank decodes them; the byte count of every payload is checked against ``bits(d)``.
* compressed gossip (``Config.gossip``: SQuARM-SGD, CHOCO-SGD): point-to-point with the graph
  neighbours only — a 1-byte fire flag to each out-neighbour, then only *fired* nodes send the
  packed payload of C(x_r − x̂_r) (``Compressor.encode``) to their out-neighbours; each rank keeps
  the public copies x̂_j of its in-neighbours. The ``bits`` column counts payloads only
  (C.bits(d) per fired node and receiver, the simulator's convention); ``wire_bytes`` also counts
  the flags. Every W of the schedule must share one communication graph.

Records: rank 0 writes the simulator's :class:`empirics.records.Result` (same columns; the
``bits`` column uses the engine's accounting) to ``out_dir/result.json``, atomically and
incrementally (so records survive a failure); ``timing.json`` holds per-round compute and
communication seconds of every rank and the bytes each rank handed to the network.
:func:`fit_runtime` fits round time = τ·Y + D to them.

Entry points: :func:`run_distributed` (spawns local ranks, see :mod:`empirics.launch`) and
``python -m empirics.distributed --spec SPEC --out DIR`` (what ``torchrun`` starts; see
docs/running_on_a_cluster.md).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import pickle
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from empirics.compressors import Payload
from empirics.configs import Config
from empirics.engine import (
    UNCOMPRESSED_BITS,
    DivergenceError,
    RunSpec,
    _Engine,
    _Mixer,
    compressor_seed,
    gossip_seed,
)
from empirics.launch import DistributedError, RankContext, init_rank, report_error, spawn
from empirics.problems import seed_for
from empirics.records import Result, load_result
from theory.mixing import ATOL, MixingMatrix, as_mixing
from theory.mixing import identity as _identity
from theory.schedules import Periodic

__all__ = [
    "DistributedError",
    "DistributedResult",
    "NeighborPlan",
    "RoundTiming",
    "allreduce_mean",
    "exchange_payloads",
    "fit_runtime",
    "load_spec",
    "main",
    "neighbor_mix",
    "dense_mix",
    "run_distributed",
    "run_rank",
    "save_spec",
    "spec_from_dict",
]

MIXING_MODES = ("auto", "neighbor", "dense")
AUX_MODES = ("replicated", "owner")


# ---------------------------------------------------------------------------------------------
# communication primitives (also usable on their own inside a process group)
# ---------------------------------------------------------------------------------------------
def allreduce_mean(x: torch.Tensor, n: int | None = None, group: Any = None) -> torch.Tensor:
    """In place: x ← (1/n) Σ_ranks x (``all_reduce`` SUM, then × 1/n; n = group size)."""
    dist.all_reduce(x, op=dist.ReduceOp.SUM, group=group)
    n = dist.get_world_size(group) if n is None else n
    return x.mul_(1.0 / n)


class _NeighborPlan:
    """Who sends which rows to whom for x_j ← Σ_i A_ij x_i with a sparse A.

    Nodes 0..m−1 are the workers (node r on rank r); nodes m..n−1 (auxiliary rows) are on rank 0
    when ``aux_owner`` and are otherwise left out of the exchange (their values are local on
    every rank). ``send[p]``/``recv[p]``: the nodes this rank sends to / receives from rank p;
    ``terms[j]``: [(i, A_ij)] over the non-zeros of column j in increasing i (the engine's
    order), for each node j this rank updates.
    """

    def __init__(self, A: np.ndarray, m: int, rank: int, world: int, aux_owner: bool):
        n = A.shape[0]
        nz = np.abs(A) > ATOL
        owner: list[int | None] = list(range(m)) + [0 if aux_owner else None] * (n - m)
        self.mine = [i for i in range(n) if owner[i] == rank]
        self.send: dict[int, list[int]] = {}
        self.recv: dict[int, list[int]] = {}
        for p in range(world):
            if p == rank:
                continue
            theirs = [i for i in range(n) if owner[i] == p]
            s = [i for i in self.mine if any(nz[i, j] for j in theirs)]
            r = [i for i in theirs if any(nz[i, j] for j in self.mine)]
            if s:
                self.send[p] = s
            if r:
                self.recv[p] = r
        self.terms = {j: [(int(i), float(A[i, j])) for i in np.nonzero(nz[:, j])[0]]
                      for j in self.mine}


NeighborPlan = _NeighborPlan  #: public name: ``NeighborPlan(A, m, rank, world, aux_owner)``


def neighbor_mix(values: dict[int, torch.Tensor], plan: _NeighborPlan,
                 extra: dict[int, torch.Tensor] | None = None) -> tuple[dict[int, torch.Tensor],
                                                                         int]:
    """One neighbour exchange: ``values`` maps this rank's nodes to their d-vectors; returns
    ({j: Σ_i A_ij x_i} for j in plan.mine, bytes sent). ``extra``: rows every rank holds locally
    (replicated auxiliary rows). Only graph neighbours exchange (``batch_isend_irecv``)."""
    ops, bufs, nbytes = [], {}, 0
    any_v = next(iter(values.values()))
    for p, nodes in plan.send.items():
        t = torch.stack([values[i] for i in nodes]).contiguous()
        nbytes += t.numel() * t.element_size()
        ops.append(dist.P2POp(dist.isend, t, p))
    for p, nodes in plan.recv.items():
        bufs[p] = torch.empty((len(nodes), any_v.numel()), dtype=any_v.dtype,
                              device=any_v.device)
        ops.append(dist.P2POp(dist.irecv, bufs[p], p))
    if ops:
        for req in dist.batch_isend_irecv(ops):
            req.wait()
    allv = dict(extra or {})
    allv.update(values)
    for p, nodes in plan.recv.items():
        for row, i in enumerate(nodes):
            allv[i] = bufs[p][row]
    out = {}
    for j, terms in plan.terms.items():
        (i0, w0), rest = terms[0], terms[1:]
        o = torch.mul(allv[i0], w0)
        for i, w in rest:
            o.add_(allv[i], alpha=w)
        out[j] = o
    return out, nbytes


def dense_mix(x: torch.Tensor, A: np.ndarray, rows: Sequence[int],
              aux: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """``all_gather`` of every rank's x (shape (d,)), then (Aᵀ X)[rows] locally, X = [x_0; …;
    x_{m−1}; aux]. Returns (new rows (len(rows), d), bytes sent)."""
    world = dist.get_world_size()
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.contiguous())
    X = torch.stack(parts) if aux is None else torch.cat([torch.stack(parts), aux])
    Wt = torch.as_tensor(np.ascontiguousarray(A.T[list(rows)]), dtype=x.dtype, device=x.device)
    return torch.mm(Wt, X), x.numel() * x.element_size()


def exchange_payloads(data: torch.Tensor) -> list[torch.Tensor]:
    """``all_gather`` of this rank's packed payload bytes (uint8, same shape on every rank)."""
    if data.dtype != torch.uint8:
        raise ValueError(f"payload data must be uint8 (got {data.dtype})")
    parts = [torch.empty_like(data) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, data.contiguous())
    return parts


# ---------------------------------------------------------------------------------------------
# one worker's local step = the engine's code with m = 1
# ---------------------------------------------------------------------------------------------
class _RecordingCompressor:
    """Wraps a compressor: C(x, g) = decode(encode(x, g)) (equal bit for bit by the compressor
    contract) and keeps the payloads, so the bytes sent are exactly those the engine decoded."""

    def __init__(self, comp: Any):
        self.inner = comp
        self.payloads: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def bits(self, d: int, *a: Any, **kw: Any) -> int:
        return self.inner.bits(d, *a, **kw)

    def __call__(self, x: torch.Tensor, generator: Any = None) -> torch.Tensor:
        p = self.inner.encode(x, generator=generator)
        self.payloads.append(p)
        return self.inner.decode(p)


class _LocalWorker:
    """Worker r's local step, run by an ``empirics.engine._Engine`` holding one row.

    The engine is built on a view of the problem with m = 1 whose sampler draws worker r's shard
    from ``seed_for(seed, r)``; its compressor generator is reseeded to
    ``compressor_seed(seed, r)``. Hook wished from the engine: a public per-worker local step
    (``local_step(worker, k)`` or an ``Engine.for_worker(spec, i)``) — this adapter reaches into
    ``_Engine`` attributes (``gens``, ``cgens``, ``sample_all``, ``X``, ``mem``) instead.
    """

    def __init__(self, spec: RunSpec, r: int, record_payloads: bool):
        problem = spec.problem
        view = copy.copy(problem)
        view.m = 1

        def sample_all(batch_size: int, generators: Any) -> tuple[torch.Tensor, ...]:
            return tuple(t.unsqueeze(0) for t in problem.sample(r, batch_size, generators[0]))

        def generators(seed: int, device: Any = None) -> list[torch.Generator]:
            dev = torch.device(device) if device is not None else problem.device
            return [torch.Generator(device=dev).manual_seed(seed_for(seed, r))]

        view.sample_all = sample_all
        view.generators = generators
        cfg = spec.config
        comp = cfg.compressor
        self.recorder = _RecordingCompressor(comp) if (comp is not None and record_payloads) \
            else None
        cfg1 = Config(cfg.name, Periodic(_identity(1), 1), v=0,
                      compressor=self.recorder if self.recorder is not None else comp,
                      momentum=cfg.momentum, nesterov=cfg.nesterov,
                      error_feedback=cfg.error_feedback)
        spec1 = RunSpec(view, cfg1, spec.lr, spec.T, batch_size=spec.batch_size, seed=spec.seed,
                        device=spec.device, dtype=spec.dtype, record_every=spec.record_every,
                        grad_every=spec.grad_every)
        eng = _Engine(spec1)
        eng.sample_all = sample_all  # the engine may have chosen a batched sampler for m = 1
        if comp is not None:
            g = torch.Generator(device=eng.device).manual_seed(compressor_seed(spec.seed, r))
            eng.cgens = [g]
            if r == 0:
                # the simulator's constructor probes C once with worker 0's generator
                eng.comp(torch.zeros((1, eng.d), dtype=eng.dtype, device=eng.device),
                         generator=eng.cgens[:1])
        if self.recorder is not None:
            self.recorder.payloads.clear()
        self.eng, self.r = eng, r

    @property
    def x(self) -> torch.Tensor:
        return self.eng.X[0]

    @property
    def memory(self) -> torch.Tensor | None:
        return self.eng.mem[0] if self.eng.comp is not None else None

    def step(self, k: int) -> None:
        try:
            self.eng.step(k)
        except DivergenceError as e:
            raise DivergenceError(k, e.what.replace("worker 0", f"worker {self.r}")) from None


# ---------------------------------------------------------------------------------------------
# per-rank run
# ---------------------------------------------------------------------------------------------
@dataclass
class _Strategy:
    kind: str           # identity | allreduce | groups | neighbor | dense
    engine_mixer: _Mixer
    plan: _NeighborPlan | None = None
    group: Any = None
    group_size: int = 1
    aux_cols: np.ndarray | None = None  # A[:m, m:] (workers' share of the aux update)
    A: np.ndarray | None = None


class _RankRunner:
    def __init__(self, ctx: RankContext, spec: RunSpec, mixing: str, aux: str,
                 save_every: float):
        if mixing not in MIXING_MODES:
            raise ValueError(f"mixing must be one of {MIXING_MODES} (got {mixing!r})")
        if aux not in AUX_MODES:
            raise ValueError(f"aux must be one of {AUX_MODES} (got {aux!r})")
        cfg = spec.config
        if ctx.world_size != cfg.m:
            raise ValueError(f"world size {ctx.world_size} must equal the number of workers "
                             f"m = {cfg.m} (one rank per worker)")
        self.ctx, self.spec, self.mixing, self.aux = ctx, spec, mixing, aux
        self.m, self.v, self.n, self.r = cfg.m, cfg.v, cfg.n, ctx.rank
        self.comp = cfg.compressor
        self.worker = _LocalWorker(spec, self.r, record_payloads=self.comp is not None)
        eng = self.worker.eng
        self.d, self.device, self.dtype = eng.d, eng.device, eng.dtype
        # auxiliary rows: start at x0 like every row of the simulator
        self.holds_aux = self.v > 0 and (aux == "replicated" or self.r == 0)
        self.Z = (self.worker.x.detach().clone().expand(self.v, self.d).clone()
                  if self.holds_aux else None)
        self.save_every = save_every
        self.gossip = cfg.gossip
        if self.gossip is not None:
            self._init_gossip()
        self.strategies: dict[int, tuple[Any, _Strategy]] = {}
        self.bits = 0
        self.n_rounds = 0
        self.wire_bytes = 0
        self.comm_steps: list[int] = []
        self.rows: list[dict[str, float]] = []
        self.gn_sum, self.gn_weight, self.gn_count = 0.0, 0, 0
        self.gn_at: list[int] = []
        self.synced = True
        self.timing: dict[str, list] = {"start": [], "length": [], "compute": [], "comm": [],
                                        "mixed": []}
        self.last_save = 0.0
        self.t0 = time.perf_counter()
        self.k = 0

    # -- strategies ------------------------------------------------------------------------
    def strategy(self, W: Any) -> _Strategy:
        hit = self.strategies.get(id(W))
        if hit is not None and hit[0] is W:
            return hit[1]
        M = as_mixing(W)
        if M.n != self.n:
            raise ValueError(f"W size must equal m + v = {self.m} + {self.v} = {self.n} "
                             f"(the schedule gave a {M.n}×{M.n} W)")
        emx = _Mixer(M, self.device, self.dtype)
        A = np.asarray(M.matrix, dtype=np.float64)
        if emx.kind == "identity":
            st = _Strategy("identity", emx)
        elif self.mixing == "dense":
            if self.v and self.aux != "replicated":
                raise ValueError("mixing='dense' needs aux='replicated' when v > 0")
            st = _Strategy("dense", emx)
        elif emx.kind == "groups" and self.v == 0 and self.mixing == "auto":
            if emx.n_groups == 1:
                st = _Strategy("allreduce", emx, group_size=self.m)
            else:
                gid = emx.gid.tolist()
                st = _Strategy("groups", emx)
                for g in range(emx.n_groups):  # every rank creates every group, same order
                    ranks = [i for i in range(self.m) if gid[i] == g]
                    pg = dist.new_group(ranks) if len(ranks) > 1 else None
                    if self.r in ranks:
                        st.group, st.group_size = pg, len(ranks)
        else:
            st = _Strategy("neighbor", emx,
                           plan=_NeighborPlan(A, self.m, self.r, self.m, self.aux == "owner"))
        st.A = A
        if self.v and self.aux == "replicated":
            st.aux_cols = A[:self.m, self.m:]
        self.strategies[id(W)] = (W, st)
        return st

    # -- mixing ----------------------------------------------------------------------------
    def mix(self, W: Any, k: int, length: int, round_synced: bool,
            x_start: torch.Tensor | None) -> None:
        if self.gossip is not None:
            self._mix_gossip(W, k)
            return
        st = self.strategy(W)
        emx = st.engine_mixer
        if st.kind == "identity":
            return
        x = self.worker.x
        A = st.A
        comp = self.comp
        per = UNCOMPRESSED_BITS * self.d
        compressed = False
        if comp is not None and emx.kind == "groups" and emx.n_groups == 1 and round_synced:
            cbits = int(comp.bits(self.d))
            if length * cbits < per:
                compressed = True
            per = min(per, length * cbits)
        if compressed and self.v == 0:
            self._mix_compressed(x, x_start, emx)
        elif st.kind == "allreduce":
            self.wire_bytes += x.numel() * x.element_size()
            allreduce_mean(x, self.m)
        elif st.kind == "groups":
            if st.group_size > 1:
                self.wire_bytes += x.numel() * x.element_size()
                allreduce_mean(x, st.group_size, group=st.group)
        elif st.kind == "dense":
            rows = [self.r] + ([self.m + a for a in range(self.v)] if self.v else [])
            new, nb = dense_mix(x, A, rows, self.Z)
            self.wire_bytes += nb
            x.copy_(new[0])
            if self.v:
                self.Z.copy_(new[1:])
        else:
            self._mix_neighbor(x, st)
        self.bits += emx.messages * per
        self.n_rounds += 1
        self.comm_steps.append(k)
        if emx.kind == "groups" and emx.n_groups == 1:
            self.synced = True

    def _mix_neighbor(self, x: torch.Tensor, st: _Strategy) -> None:
        plan = st.plan
        values = {self.r: x}
        extra = None
        if self.holds_aux and self.aux == "owner":
            values.update({self.m + a: self.Z[a] for a in range(self.v)})
        elif self.v and self.aux == "replicated":
            extra = {self.m + a: self.Z[a] for a in range(self.v)}
        new, nb = neighbor_mix(values, plan, extra)
        self.wire_bytes += nb
        if self.v and self.aux == "replicated":
            # z_a ← Σ_{i<m} A_{i,m+a} x_i + Σ_b A_{m+b,m+a} z_b: one all-reduce of the workers'
            # shares, the rest locally (identical on every rank)
            S = torch.as_tensor(st.aux_cols[self.r], dtype=self.dtype,
                                device=self.device)[:, None] * x[None, :]
            self.wire_bytes += S.numel() * S.element_size()
            dist.all_reduce(S, op=dist.ReduceOp.SUM)
            Azz = torch.as_tensor(st.A[self.m:, self.m:], dtype=self.dtype,
                                  device=self.device)
            S.add_(torch.mm(Azz.T, self.Z))
            self.Z.copy_(S)
        x.copy_(new[self.r])
        if self.holds_aux and self.aux == "owner":
            for a in range(self.v):
                self.Z[a].copy_(new[self.m + a])

    def _mix_compressed(self, x: torch.Tensor, x_start: torch.Tensor, emx: _Mixer) -> None:
        """Exchange the round's packed payloads; rebuild every worker's row as the simulator
        holds it (x_start − δ_1 − δ_2 − …) and average with the engine's own mixer."""
        comp = self.comp
        rec = self.worker.recorder
        pls = rec.payloads
        vb = 8 * torch.empty((), dtype=self.dtype).element_size()
        expect = -(-comp.bits(self.d, vb) // 8)
        for p in pls:
            if p.data.numel() != expect or p.rows != 1:
                raise RuntimeError(f"payload of {p.data.numel()} bytes differs from the "
                                   f"compressor's declared {comp.bits(self.d, vb)} bits "
                                   f"(= {expect} bytes) for d = {self.d}")
        data = torch.cat([p.data.reshape(1, -1) for p in pls])  # (length, expect)
        self.wire_bytes += data.numel() * data.element_size()
        parts = exchange_payloads(data)
        proto = pls[0]
        X = x_start.expand(self.m, self.d).clone()
        for s in range(data.shape[0]):
            D = torch.stack([comp.decode(type(proto)(parts[i][s:s + 1], proto.d, proto.dtype,
                                                     proto.bits_per_vector, proto.compressor))[0]
                             for i in range(self.m)])
            X.sub_(D)
        if not torch.equal(X[self.r], x):
            raise RuntimeError(f"rank {self.r}: the decoded payloads do not rebuild this "
                               f"worker's own model (wire format mismatch)")
        out = emx(X, torch.empty_like(X))
        x.copy_(out[self.r])

    # -- compressed, event-triggered gossip (SQuARM-SGD; Config.gossip) ----------------------
    def _init_gossip(self) -> None:
        """State of node r: its public copy x̂_r and copies of its in-neighbours' x̂_j (all x₀ at
        the start, as in the simulator), its own gossip stream ``gossip_seed(seed, r)``."""
        self.gossip_delta = self.gossip.check(self.d)
        self.gossip_bits = int(self.gossip.compressor.bits(self.d))
        self.x0 = self.worker.x.detach().clone()
        self.xhat: dict[int, torch.Tensor] = {self.r: self.x0.clone()}
        self.ggen = torch.Generator(device=self.device).manual_seed(
            gossip_seed(self.spec.seed, self.r))
        self.gossip_plans: dict[int, tuple[Any, _NeighborPlan]] = {}
        self.gossip_pattern: np.ndarray | None = None
        self.fires_self = 0
        self.bits_self = 0  # payload bits this rank sent (C.bits(d) per receiver)
        self.fires_all = np.zeros(self.m, dtype=np.int64)

    def _gossip_plan(self, W: Any) -> _NeighborPlan | None:
        hit = self.gossip_plans.get(id(W))
        if hit is not None and hit[0] is W:
            return hit[1]
        M = as_mixing(W)
        if M.n != self.n:
            raise ValueError(f"W size must equal m = {self.m} (the schedule gave a "
                             f"{M.n}×{M.n} W)")
        A = np.asarray(M.matrix, dtype=np.float64)
        plan = None
        if not M.is_identity:
            pattern = np.abs(A) > ATOL
            if self.gossip_pattern is None:
                self.gossip_pattern = pattern
            elif not np.array_equal(pattern, self.gossip_pattern):
                raise ValueError("distributed compressed gossip needs one communication graph: "
                                 "every W of the schedule must have the non-zeros of the first "
                                 "(each node keeps copies x̂_j of its in-neighbours only)")
            plan = _NeighborPlan(A, self.m, self.r, self.m, aux_owner=False)
            for p in plan.recv:
                self.xhat.setdefault(p, self.x0.clone())
        self.gossip_plans[id(W)] = (W, plan)
        return plan

    def _mix_gossip(self, W: Any, k: int) -> None:
        """Node r's synchronisation step (the simulator's ``_Engine.gossip_mix``): trigger
        ‖x_r − x̂_r‖² > c_t·η_k² (t = k + 1); one fire flag (1 byte) to each out-neighbour; a
        fired node sends the packed payload of C(x_r − x̂_r) (``Compressor.encode``, drawn from
        its own gossip stream) to its out-neighbours only; every node adds the decoded payloads
        it receives to its copies; x_r ← x_r + γ(Σ_j W_jr x̂_j − x̂_r)."""
        plan = self._gossip_plan(W)
        if plan is None:
            return
        g, comp = self.gossip, self.gossip.compressor
        x = self.worker.x
        xh = self.xhat[self.r]
        c = g.threshold_at(k + 1)
        eta = self.worker.eng.lr_k
        diff = (x - xh)[None, :]
        n2 = (diff * diff).sum(1)
        fire = math.isfinite(c) and bool(n2[0] > c * eta * eta)
        # 1. fire flags with the graph neighbours
        flag = torch.tensor([1 if fire else 0], dtype=torch.uint8, device=self.device)
        ops, inflags = [], {}
        for p in plan.send:
            ops.append(dist.P2POp(dist.isend, flag, p))
            self.wire_bytes += 1
        for p in plan.recv:
            inflags[p] = torch.zeros(1, dtype=torch.uint8, device=self.device)
            ops.append(dist.P2POp(dist.irecv, inflags[p], p))
        if ops:
            for req in dist.batch_isend_irecv(ops):
                req.wait()
        # 2. payloads of the fired nodes only
        vb = 8 * torch.empty((), dtype=self.dtype).element_size()
        nbytes = -(-comp.bits(self.d, vb) // 8)
        ops, bufs = [], {}
        own = None
        if fire:
            own = comp.encode(diff, generator=self.ggen)
            if own.data.numel() != nbytes:
                raise RuntimeError(f"payload of {own.data.numel()} bytes differs from the "
                                   f"compressor's declared {comp.bits(self.d, vb)} bits")
            data = own.data.contiguous()
            for p in plan.send:
                ops.append(dist.P2POp(dist.isend, data, p))
                self.wire_bytes += nbytes
            self.fires_self += 1
            self.bits_self += len(plan.send) * self.gossip_bits
        for p in plan.recv:
            if int(inflags[p][0]):
                bufs[p] = torch.empty((1, nbytes), dtype=torch.uint8, device=self.device)
                ops.append(dist.P2POp(dist.irecv, bufs[p], p))
        if ops:
            for req in dist.batch_isend_irecv(ops):
                req.wait()
        if own is not None:
            xh.add_(comp.decode(own)[0])
        for p, buf in bufs.items():
            pl = Payload(buf, self.d, self.dtype, comp.bits(self.d, vb), repr(comp))
            self.xhat[p].add_(comp.decode(pl)[0])
        # 3. consensus with the neighbours' public copies
        (i0, w0), rest = plan.terms[self.r][0], plan.terms[self.r][1:]
        y = torch.mul(self.xhat[i0], w0)
        for i, w in rest:
            y.add_(self.xhat[i], alpha=w)
        x.add_(y.sub_(xh), alpha=g.gamma)
        self.n_rounds += 1
        self.comm_steps.append(k)
        self.synced = False

    def _gossip_totals(self) -> None:
        """All ranks: sum the per-rank fire counts and payload bits (rank 0 records them)."""
        t = torch.zeros(self.m + 1, dtype=torch.int64, device=self.device)
        t[self.r] = self.fires_self
        t[self.m] = self.bits_self
        with self.ctx.communicating():
            dist.all_reduce(t)
        tot = t.cpu().numpy()
        self.fires_all = tot[: self.m].copy()
        self.bits = int(tot[self.m])

    # -- global state (collective) ---------------------------------------------------------
    def global_u(self, with_stats: bool) -> tuple[torch.Tensor, float, float, float]:
        """u = mean of the n rows (all ranks); with_stats: also (consensus, ‖ē‖², mean ‖e_i‖²)
        — meaningful on rank 0."""
        with self.ctx.communicating():
            return self._global_u(with_stats)

    def _global_u(self, with_stats: bool) -> tuple[torch.Tensor, float, float, float]:
        x, d = self.worker.x, self.d
        e = self.worker.memory
        vec = torch.zeros(2 * d if e is not None else d, dtype=self.dtype, device=self.device)
        vec[:d] = x
        if self.Z is not None and self.r == 0:
            vec[:d] += self.Z.sum(0)
        if e is not None:
            vec[d:] = e
        dist.all_reduce(vec)
        u = vec[:d] / self.n
        if not with_stats:
            return u, math.nan, math.nan, math.nan
        cons = float(((x - u) ** 2).sum())
        if self.Z is not None and self.r == 0:
            cons += float(((self.Z - u) ** 2).sum())
        memw = float((e ** 2).sum()) if e is not None else 0.0
        s = torch.tensor([cons, memw], dtype=torch.float64, device=self.device)
        dist.all_reduce(s)
        mem2 = float(((vec[d:] / self.m) ** 2).sum()) if e is not None else 0.0
        return u, float(s[0]), mem2, float(s[1]) / self.m

    def full_loss(self) -> float:
        """F(u) computed on rank 0 and broadcast (adaptive schedules: every rank decides the
        same round lengths)."""
        u, *_ = self.global_u(False)
        F = torch.zeros(1, dtype=torch.float64, device=self.device)
        if self.r == 0:
            F[0] = float(self.spec.problem.full_loss(self.worker.eng._unflat(u)))
        with self.ctx.communicating():
            dist.broadcast(F, 0)
        return float(F[0])

    def grad_norm2_u(self) -> float:
        u, *_ = self.global_u(False)
        if self.r != 0:
            return 0.0
        return float(self.spec.problem.grad_norm2(self.worker.eng._unflat(u)))

    def record(self, k: int, gn: float | None) -> None:
        u, cons, mem2, memw = self.global_u(True)
        if self.gossip is not None:
            self._gossip_totals()
        if self.r != 0:
            return
        p, unflat = self.spec.problem, self.worker.eng._unflat
        F = float(p.full_loss(unflat(u)))
        if gn is None:
            gn = float(p.grad_norm2(unflat(u)))
        if not (math.isfinite(F) and math.isfinite(gn) and math.isfinite(cons)):
            what = (f"F(u_k) = {F}" if not math.isfinite(F) else
                    f"‖∇F(u_k)‖² = {gn}" if not math.isfinite(gn) else "parameters contain NaN/inf")
            raise DivergenceError(k, what)
        run = self.gn_sum / self.gn_weight if self.gn_weight else math.nan
        self.rows.append({"step": k, "loss": F, "grad_norm2": gn, "consensus": cons,
                          "memory_norm2": mem2, "memory_norm2_workers": memw, "bits": self.bits,
                          "rounds": self.n_rounds, "grad_norm2_running": run,
                          "lr": self.spec.lr(k) if k < self.spec.T else math.nan,
                          "wall": time.perf_counter() - self.t0})
        self.maybe_save("running", "")

    # -- results ---------------------------------------------------------------------------
    def result(self, status: str, message: str, u: torch.Tensor | None = None) -> Result:
        q = self.spec.grad_every
        method = ("exact: every step" if q == 1 else
                  f"stratified subsample: one uniformly random step per block of {q} steps, "
                  f"weighted by block length (unbiased)" if q > 1 else "off (grad_every = 0)")
        sd = self.spec.to_dict()
        sd["distributed"] = {"world_size": self.ctx.world_size, "backend": self.ctx.backend,
                             "mixing": self.mixing, "aux": self.aux}
        return Result.from_rows(
            sd, self.rows,
            grad_norm2_avg=self.gn_sum / self.gn_weight if self.gn_weight else math.nan,
            grad_norm2_avg_method=method, grad_norm2_avg_steps=self.gn_count,
            steps_done=self.k, u_final=None if u is None else u.detach().cpu().double().numpy(),
            comm_steps=np.asarray(self.comm_steps, dtype=np.int64),
            grad_norm2_at=np.asarray(self.gn_at, dtype=np.int64), status=status,
            message=message, fires=None if self.gossip is None else self.fires_all.copy())

    def maybe_save(self, status: str, message: str, force: bool = False,
                   u: torch.Tensor | None = None) -> None:
        out = self.ctx.out_dir
        if self.r != 0 or out is None:
            return
        now = time.monotonic()
        if force or now - self.last_save >= self.save_every:
            self.last_save = now
            self.result(status, message, u).save(out / "result.json")

    # -- main loop (mirrors empirics.engine._Engine.run) ------------------------------------
    def run(self) -> DistributedResult | None:
        spec = self.spec
        T, s, q = spec.T, spec.record_every, spec.grad_every
        rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 0x6E0F]))
        pick = -1
        self.t0 = time.perf_counter()
        for rnd in spec.config.schedule.rounds(T, loss=self.full_loss):
            round_synced = self.synced
            x_start = (self.worker.x.detach().clone()
                       if self.worker.recorder is not None and round_synced else None)
            if self.worker.recorder is not None:
                self.worker.recorder.payloads.clear()
            compute = 0.0
            for k in range(rnd.start, rnd.end):
                self.k = k
                self.ctx.progress(k)
                gn = None
                if q >= 1:
                    if q == 1:
                        pick = k
                    elif k % q == 0:
                        pick = k + int(rng.integers(min(q, T - k)))
                    if k == pick:
                        g = self.grad_norm2_u()  # collective: every rank takes part
                        gn = g if self.r == 0 else None
                        if self.r == 0 and not math.isfinite(gn):
                            raise DivergenceError(k, f"‖∇F(u_k)‖² = {gn}")
                if k % s == 0:
                    self.record(k, gn)
                if gn is not None and self.r == 0:
                    w = 1 if q == 1 else min(q, T - (k - k % q))
                    self.gn_sum += w * gn
                    self.gn_weight += w
                    self.gn_count += 1
                    self.gn_at.append(k)
                tc = time.perf_counter()
                self.worker.step(k)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                compute += time.perf_counter() - tc
                if self.m > 1 or self.v > 0:
                    self.synced = False
            tm = time.perf_counter()
            if rnd.W is not None:
                with self.ctx.communicating():
                    self.mix(rnd.W, rnd.end - 1, rnd.length, round_synced, x_start)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
            comm = time.perf_counter() - tm
            tt = self.timing
            tt["start"].append(rnd.start)
            tt["length"].append(rnd.length)
            tt["compute"].append(compute)
            tt["comm"].append(comm)
            tt["mixed"].append(rnd.W is not None and not as_mixing(rnd.W).is_identity)
        self.k = T
        self.ctx.progress(T)
        self.record(T, None)
        u, *_ = self.global_u(False)
        timings = [None] * self.ctx.world_size
        with self.ctx.communicating():
            dist.all_gather_object(timings, {"timing": self.timing,
                                             "wire_bytes": self.wire_bytes})
        if self.r != 0:
            return None
        res = self.result("completed", "", u)
        data = _timing_data(timings)
        if self.ctx.out_dir is not None:
            res.save(self.ctx.out_dir / "result.json")
            _write_timing(self.ctx.out_dir / "timing.json", data)
        return DistributedResult(res, RoundTiming.from_dict(data),
                                 None if self.ctx.out_dir is None else str(self.ctx.out_dir),
                                 {"nprocs": self.ctx.world_size, "backend": self.ctx.backend,
                                  "mixing": self.mixing, "aux": self.aux})


def _timing_data(timings: list[dict[str, Any]]) -> dict[str, Any]:
    t0 = timings[0]["timing"]
    return {"start": t0["start"], "length": t0["length"], "mixed": t0["mixed"],
            "compute": [t["timing"]["compute"] for t in timings],
            "comm": [t["timing"]["comm"] for t in timings],
            "wire_bytes": [t["wire_bytes"] for t in timings]}


def _write_timing(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix="timing.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def run_rank(ctx: RankContext, spec: RunSpec, *, mixing: str = "auto", aux: str = "replicated",
             save_every: float = 5.0) -> DistributedResult | None:
    """Run ``spec`` as rank ``ctx.rank`` of an initialised process group (one rank per worker).
    Rank 0 returns the :class:`DistributedResult` (and writes ``result.json``/``timing.json`` to
    ``ctx.out_dir``); other ranks return None. On failure rank 0 saves the partial records."""
    runner = None
    try:
        runner = _RankRunner(ctx, spec, mixing, aux, save_every)
        return runner.run()
    except BaseException as e:
        if runner is not None and runner.r == 0:
            status = "diverged" if isinstance(e, DivergenceError) else "error"
            try:
                runner.maybe_save(status, f"{type(e).__name__}: {e}", force=True)
            except Exception:  # pragma: no cover - saving must not mask the error
                pass
        raise


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


def _build_W(d: Any) -> MixingMatrix:
    import theory.mixing as tm

    if isinstance(d, MixingMatrix):
        return d
    if isinstance(d, dict) and "matrix" in d:
        return as_mixing(np.asarray(d["matrix"], dtype=float))
    if not isinstance(d, dict) or "type" not in d:
        raise ValueError(f"W must be {{'type': name, ...}} or {{'matrix': [[...]]}} (got {d!r})")
    names = ("ring", "path", "torus", "grid", "hypercube", "star", "complete", "exponential",
             "average", "identity", "easgd_matrix")
    kw = {k: v for k, v in d.items() if k != "type"}
    if d["type"] not in names:
        raise ValueError(f"W type must be one of {names} (got {d['type']!r})")
    return getattr(tm, d["type"])(**kw)


def spec_from_dict(d: dict[str, Any], device: str | None = None) -> RunSpec:
    """Build a RunSpec from a JSON-ready description::

        {"problem": {"type": "LeastSquares", "n_samples": 400, "d": 10, "m": 4, "seed": 0},
         "config": {"type": "dpsgd", "W": {"type": "ring", "m": 4}, "momentum": 0.9,
                    "compressor": {"name": "topk", "k": 5}},
         "lr": 0.05, "T": 100, "batch_size": 8, "seed": 0}

    ``problem.type``: a class of :mod:`empirics.problems` (keyword arguments as its constructor,
    ``dtype`` as "float32"/"float64"); ``config.type``: a constructor of
    :mod:`empirics.configs`; ``W`` a constructor of :mod:`theory.mixing` or ``{"matrix": ...}``;
    ``compressor``: ``empirics.compressors.make`` arguments; ``lr``: a number or an
    ``lr.to_dict()`` form (constant / stagewise / inverse_time). ``device`` overrides the
    problem's device (each rank passes its own)."""
    import empirics.compressors as ec
    import empirics.configs as ecfg
    import empirics.engine as eng
    import empirics.problems as ep

    if not isinstance(d, dict):
        raise ValueError(f"spec must be a dict (got {type(d).__name__})")
    for key in ("problem", "config", "lr", "T"):
        if key not in d:
            raise ValueError(f"spec is missing {key!r}")
    pd = dict(d["problem"])
    ptype = pd.pop("type", None)
    if ptype not in ep.__all__ or not isinstance(getattr(ep, ptype), type):
        raise ValueError(f"problem type must be a class of empirics.problems (got {ptype!r})")
    if "dtype" in pd:
        dt = str(pd["dtype"]).replace("torch.", "")
        if dt not in ("float32", "float64"):
            raise ValueError(f"problem dtype must be 'float32' or 'float64' (got {dt!r})")
        pd["dtype"] = getattr(torch, dt)
    if device is not None:
        pd["device"] = device
    problem = getattr(ep, ptype)(**pd)
    cd = dict(d["config"])
    ctype = cd.pop("type", None)
    if ctype not in ecfg.__all__ or ctype in ("Config", "configuration", "local_sgd"):
        raise ValueError(f"config type must be a named configuration of empirics.configs "
                         f"(got {ctype!r})")
    if "W" in cd:
        cd["W"] = _build_W(cd["W"])
    if isinstance(cd.get("compressor"), dict):
        c = dict(cd["compressor"])
        cd["compressor"] = ec.make(c.pop("name"), **c)
    config = getattr(ecfg, ctype)(**cd)
    lr = d["lr"]
    if isinstance(lr, dict):
        lt = dict(lr)
        kind = lt.pop("type", None)
        classes = {"constant": eng.Constant, "stagewise": eng.Stagewise,
                   "inverse_time": eng.InverseTime}
        if kind not in classes:
            raise ValueError(f"lr type must be one of {sorted(classes)} (got {kind!r})")
        if kind == "stagewise":
            lt = {"etas": tuple(lt["etas"]), "boundaries": tuple(lt["boundaries"])}
        lr = classes[kind](**lt)
    extra = {k: d[k] for k in ("batch_size", "seed", "record_every", "grad_every") if k in d}
    return RunSpec(problem, config, lr, d["T"], **extra)


def load_spec(path: str | os.PathLike, device: str | None = None) -> RunSpec:
    """Read a spec file: ``.json`` (:func:`spec_from_dict`) or a pickle (:func:`save_spec`:
    a RunSpec, or a factory called with ``device``)."""
    path = Path(path)
    if path.suffix == ".json":
        with open(path) as fh:
            return spec_from_dict(json.load(fh), device=device)
    with open(path, "rb") as fh:
        obj = pickle.load(fh)
    if isinstance(obj, RunSpec):
        if device is not None and torch.device(device).type != torch.device(obj.device).type:
            raise ValueError(f"the pickled spec's problem lives on {obj.device}, not {device}: "
                             f"pickle a factory device -> RunSpec, or use a JSON spec")
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
    ap.add_argument("--spec", required=True, help="spec file (.json, or pickle from save_spec)")
    ap.add_argument("--out", required=True, help="output directory (rank 0 writes result.json)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (→ cuda:LOCAL_RANK)")
    ap.add_argument("--backend", default="auto", help="gloo, nccl or auto")
    ap.add_argument("--mixing", default="auto", choices=MIXING_MODES)
    ap.add_argument("--aux", default="replicated", choices=AUX_MODES)
    ap.add_argument("--pg-timeout", type=float, default=300.0,
                    help="seconds a collective may wait for a peer before failing")
    ap.add_argument("--save-every", type=float, default=5.0)
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = None
    try:
        ctx = init_rank(a.backend, a.device, a.pg_timeout, out)
        dev = str(ctx.device) if ctx.device.type == "cuda" else None
        spec = load_spec(a.spec, device=dev)
        run_rank(ctx, spec, mixing=a.mixing, aux=a.aux, save_every=a.save_every)
        dist.barrier()
        dist.destroy_process_group()
        return 0
    except BaseException as e:
        report_error(ctx, e, out)
        import traceback

        traceback.print_exc()
        return 1


def run_distributed(spec: RunSpec | dict[str, Any] | Callable[..., RunSpec], nprocs: int, *,
                    backend: str = "gloo", device: str = "cpu", timeout: float = 600.0,
                    pg_timeout: float | None = None, mixing: str = "auto",
                    aux: str = "replicated", out_dir: str | os.PathLike | None = None,
                    save_every: float = 5.0, fault: tuple[int, int, str] | None = None
                    ) -> DistributedResult:
    """Run ``spec`` on ``nprocs`` local processes (one per worker, loopback rendezvous) through
    the ``python -m empirics.distributed`` entry point and return the gathered result.

    spec: a RunSpec (pickled to the children), a JSON-ready dict (:func:`spec_from_dict`) or a
    picklable factory ``device -> RunSpec``. timeout: seconds for the whole job — past it every
    rank is stopped and :class:`DistributedError` names the ranks and their steps. pg_timeout:
    seconds a collective waits for a peer (default min(timeout, 300)). mixing: ``"auto"``,
    ``"neighbor"`` or ``"dense"``; aux: ``"replicated"`` or ``"owner"`` (see module docstring).
    out_dir: job directory (default: a temporary one, removed after success). fault: (rank, step,
    "raise"|"hang"|"exit") for testing the failure paths."""
    if mixing not in MIXING_MODES:
        raise ValueError(f"mixing must be one of {MIXING_MODES} (got {mixing!r})")
    if aux not in AUX_MODES:
        raise ValueError(f"aux must be one of {AUX_MODES} (got {aux!r})")
    m = None
    if isinstance(spec, RunSpec):
        m = spec.m
    elif isinstance(spec, dict):
        m = spec_from_dict(spec).m  # validates the description in the parent
    elif not callable(spec):
        raise ValueError(f"spec must be a RunSpec, a dict or a factory (got "
                         f"{type(spec).__name__})")
    if m is not None and nprocs != m:
        raise ValueError(f"nprocs must equal the number of workers m = {m} (got {nprocs}): "
                         f"the backend runs one process per worker")
    tmp = out_dir is None
    out = Path(tempfile.mkdtemp(prefix="coopsgd-dist-")) if tmp else Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for f in ("result.json", "timing.json"):
        if (out / f).exists():
            (out / f).unlink()
    if isinstance(spec, dict):
        sp = out / "spec.json"
        sp.write_text(json.dumps(spec))
    else:
        sp = save_spec(spec, out / "spec.pkl")
    pgt = pg_timeout if pg_timeout is not None else min(float(timeout), 300.0)
    spawn(["-m", "empirics.distributed", "--spec", str(sp), "--out", str(out),
           "--backend", backend, "--device", device, "--mixing", mixing, "--aux", aux,
           "--pg-timeout", str(pgt), "--save-every", str(save_every)],
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
