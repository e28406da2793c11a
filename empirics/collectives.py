"""Communication primitives of the distributed backend (usable on their own inside a process
group): averaging by ``all_reduce``, neighbour exchange for a sparse W (point-to-point with the
graph neighbours only), dense mixing by ``all_gather``, and packed-payload exchange.

Mixing convention (Wang & Joshi, Cooperative SGD, JMLR 2021, eqs. 7–10, rows = nodes):
x_j ← Σ_i A_ij x_i.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from theory.mixing import ATOL

__all__ = ["NeighborPlan", "allreduce_mean", "dense_mix", "exchange_payloads", "neighbor_mix"]


def allreduce_mean(x: torch.Tensor, n: int | None = None, group: Any = None) -> torch.Tensor:
    """In place: x ← (1/n) Σ_ranks x (``all_reduce`` SUM, then × 1/n; n = group size)."""
    dist.all_reduce(x, op=dist.ReduceOp.SUM, group=group)
    n = dist.get_world_size(group) if n is None else n
    return x.mul_(1.0 / n)


class NeighborPlan:
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




def neighbor_mix(values: dict[int, torch.Tensor], plan: NeighborPlan,
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


