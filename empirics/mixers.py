"""Stacked mixing X ← WᵀX by W's structure, and who sends how many messages in a round.

X is the n × d matrix of stacked rows (row i = node i; the paper's column form X W is the
transpose, Wang & Joshi, Cooperative SGD, JMLR 2021, eqs. 7–10). :class:`Mixer` analyses W once:

* ``identity``: W = I, nothing to do, no message.
* ``groups``: W block-diagonal with constant blocks (J = 11ᵀ/n, group averaging): means over
  groups, O(n d). One message per row in a block of size ≥ 2 (an all-reduce within the block).
* ``sparse``: neighbour sums over the off-diagonal non-zeros, costing (edges + n)·d.
* ``dense``: one matmul, n² d.

Sparse and dense W send one message per directed edge (off-diagonal non-zero W_ij, i ≠ j: node
i sends its row to node j). :attr:`Mixer.row_messages` holds, per node, the messages it sends in
one round, so that a process holding some of the rows counts exactly its own messages and the
simulator (all rows) counts the sum.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse.csgraph import connected_components

from theory.mixing import ATOL, MixingMatrix

__all__ = ["MIXING_MODES", "Mixer"]

#: accepted values of ``mixing=`` (``"auto"`` chooses by W's structure)
MIXING_MODES = ("auto", "identity", "groups", "sparse", "dense")


class Mixer:
    """Applies X ← Wᵀ X using W's structure (see the module docstring).

    ``kind``: the strategy; ``messages``: messages per mixing round (all nodes);
    ``row_messages``: the same per node (int64 array of length n); ``out_degree``: per node j
    the number of nodes i ≠ j with W_ji ≠ 0 (the receivers of j's row).
    Sparse W on small X (nnz·d ≤ ``GATHER_LIMIT``) runs as gather/scale/index_add over the nnz
    entries (few calls). On large X, when W has index locality (ring, path, torus, grid, EASGD
    star: the rows feeding each block of ``BLOCK`` output rows form at most 4 contiguous ranges
    and at most 4n rows are read in all), each block is a few small GEMMs on views of X
    (W[range, block]ᵀ X[range]); otherwise row by row.
    """

    GATHER_LIMIT = 1 << 22
    BLOCK = 4

    def __init__(self, W: MixingMatrix, device: torch.device, dtype: torch.dtype,
                 mode: str = "auto"):
        A = np.asarray(W.matrix, dtype=np.float64)
        n = A.shape[0]
        self.n = n
        self.A = A
        nz = np.abs(A) > ATOL
        off = nz & ~np.eye(n, dtype=bool)
        self.out_degree = off.sum(axis=1).astype(np.int64)
        self.edges_directed = int(off.sum())
        groups = self._groups(A, nz)
        if mode == "auto":
            if W.is_identity:
                kind = "identity"
            elif groups is not None:
                kind = "groups"
            elif self.edges_directed + n <= n * n / 4:
                kind = "sparse"
            else:
                kind = "dense"
        else:
            kind = mode
            if kind not in MIXING_MODES[1:]:
                raise ValueError(f"mixing must be 'auto', 'groups', 'sparse' or 'dense' "
                                 f"(got {mode!r})")
            if kind == "groups" and groups is None:
                raise ValueError("mixing='groups' needs a block-diagonal W with constant blocks")
            if kind == "identity" and not W.is_identity:
                raise ValueError("mixing='identity' needs W = I")
        self.kind = kind
        self.n_groups = 0
        if groups is not None:
            gid, sizes = groups
            self.gid_np = gid
            self.sizes = sizes
            self.n_groups = len(sizes)
        if kind == "groups":
            in_block = np.asarray(sizes)[gid] >= 2
            self.row_messages = in_block.astype(np.int64)
            self.ones = torch.full((n,), 1.0 / n, dtype=dtype, device=device)
            self.gid = torch.as_tensor(gid, device=device)
            self.inv = torch.as_tensor(1.0 / np.asarray(sizes, float), dtype=dtype,
                                       device=device)[:, None]
        elif kind == "identity":
            self.row_messages = np.zeros(n, dtype=np.int64)
        else:
            self.row_messages = self.out_degree.copy()
        self.messages = int(self.row_messages.sum())
        if kind == "sparse":
            # new row j = Σ_i A[i, j] x_i: one pass per row, (1 + deg_j) row operations
            self.rows = [[(int(i), float(A[i, j])) for i in np.nonzero(nz[:, j])[0]]
                         for j in range(n)]
            ii, jj = np.nonzero(nz)  # the same sum as gather → scale → scatter-add (3 calls)
            self.src = torch.as_tensor(ii, device=device)
            self.dst = torch.as_tensor(jj, device=device)
            self.w = torch.as_tensor(A[ii, jj], dtype=dtype, device=device).unsqueeze(1)
            self._gather: torch.Tensor | None = None
            self.blocks = self._block_plan(A, nz, self.BLOCK, dtype, device)
        if kind == "dense":
            self.Wt = torch.as_tensor(A.T.copy(), dtype=dtype, device=device)

    @property
    def is_average(self) -> bool:
        """W = J (exact averaging over all n nodes): every row ends equal."""
        return self.kind == "groups" and self.n_groups == 1

    @staticmethod
    def _block_plan(A: np.ndarray, nz: np.ndarray, s: int, dtype: torch.dtype,
                    device: torch.device) -> list | None:
        """[(a, b, [(r0, r1, W[r0:r1, a:b]ᵀ), ...]), ...] or None without index locality."""
        n = A.shape[0]
        plan, rows_read = [], 0
        for a in range(0, n, s):
            b = min(a + s, n)
            ins = np.nonzero(nz[:, a:b].any(axis=1))[0]
            cuts = np.nonzero(np.diff(ins) != 1)[0] + 1
            ranges = [(int(r[0]), int(r[-1]) + 1) for r in np.split(ins, cuts)]
            if len(ranges) > 4:
                return None
            rows_read += len(ins)
            plan.append((a, b, [(r0, r1, torch.as_tensor(A[r0:r1, a:b].T.copy(), dtype=dtype,
                                                         device=device))
                                for r0, r1 in ranges]))
        return plan if rows_read <= 4 * n else None

    @staticmethod
    def _groups(A: np.ndarray, nz: np.ndarray) -> tuple[np.ndarray, list[int]] | None:
        k, labels = connected_components(nz, directed=False)
        sizes = np.bincount(labels, minlength=k)
        expect = 1.0 / sizes[labels]
        same = labels[:, None] == labels[None, :]
        if np.allclose(np.where(same, A, 0.0), np.where(same, expect[:, None], 0.0),
                       atol=ATOL, rtol=0) and not np.any(nz & ~same):
            return labels.astype(np.int64), [int(s) for s in sizes]
        return None

    def __call__(self, X: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
        """Wᵀ X; returns the tensor holding the result (``X`` itself, or ``buf`` — the caller
        swaps buffers instead of copying back)."""
        k = self.kind
        if k == "identity":
            return X
        if k == "groups":
            if self.n_groups == 1:
                u = torch.mv(X.T, self.ones)  # (1/n) Σ_i x_i as one GEMV (bandwidth-bound)
                X.copy_(u.expand_as(X))
                return X
            sums = torch.zeros((self.n_groups, X.shape[1]), dtype=X.dtype, device=X.device)
            sums.index_add_(0, self.gid, X).mul_(self.inv)
            torch.index_select(sums, 0, self.gid, out=buf)
            return buf
        if k == "sparse":
            if len(self.src) * X.shape[1] <= self.GATHER_LIMIT:
                if self._gather is None or self._gather.shape[1] != X.shape[1]:
                    self._gather = X.new_empty((len(self.src), X.shape[1]))
                g = torch.index_select(X, 0, self.src, out=self._gather).mul_(self.w)
                return buf.zero_().index_add_(0, self.dst, g)
            if self.blocks is not None:
                for a, b, ranges in self.blocks:
                    o = buf[a:b]
                    r0, r1, Wt = ranges[0]
                    torch.mm(Wt, X[r0:r1], out=o)
                    for r0, r1, Wt in ranges[1:]:
                        o.addmm_(Wt, X[r0:r1])
                return buf
            for j, terms in enumerate(self.rows):
                (i0, w0), rest = terms[0], terms[1:]
                out = torch.mul(X[i0], w0, out=buf[j])
                for i, w in rest:
                    out.add_(X[i], alpha=w)
            return buf
        torch.mm(self.Wt, X, out=buf)
        return buf
