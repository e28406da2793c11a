"""Stacked mixing X ← WᵀX by W's structure, and who sends how many messages in a round.

X is the n × d matrix of stacked rows (row i = node i; the paper's column form X W is the
transpose, Wang & Joshi, Cooperative SGD, JMLR 2021, eqs. 7–10). :class:`Mixer` analyses W once:

* ``identity``: W = I, nothing to do, no message.
* ``groups``: W block-diagonal with constant blocks (J = 11ᵀ/n, group averaging): means over
  groups, O(n d). One message per row in a block of size ≥ 2 (an all-reduce within the block).
* ``sparse``: neighbour sums over the off-diagonal non-zeros (W with at most n²/4 non-zeros
  off the diagonal plus n), by one of the kernels below.
* ``dense``: one matmul, n² d.

Sparse W runs through one of four kernels (:attr:`Mixer.strategy`), all computing
x'_j = Σ_i W_ij x_i over the non-zeros (|W_ij| > ATOL):

* ``csr``: a sparse (CSR) × dense matmul with Wᵀ (MKL on CPU), over column panels of X that fit
  in cache when X does not (the panels leave every sum's order unchanged);
* ``block``: for W with index locality (ring, path, torus, grid, EASGD star: the rows feeding
  each block of ``BLOCK`` output rows form at most 4 contiguous ranges, at most 4n rows read in
  all): a few small GEMMs per block on views of X;
* ``gather``: gather → scale → scatter-add over the non-zeros, in chunks of output rows with a
  temporary of at most ``GATHER_LIMIT`` numbers;
* ``dense``: the dense matmul (also chosen for a sparse W when it is the cheapest).

The automatic choice is a deterministic function of W's structure (n, non-zeros, the block
plan), d, dtype and device — never of timings measured at run time, since the kernels round
differently and a timing-dependent choice would make runs irreproducible. It takes the least
cost of :func:`mixing_cost`, a model calibrated once from measurements on a 2-core AMD EPYC
(AVX-512, MKL; ``benchmarks/bench_mixing.py``): on CUDA it takes ``csr`` (cuSPARSE) for sparse
W and ``dense`` otherwise (untested there).

Sparse and dense W send one message per directed edge (off-diagonal non-zero W_ij, i ≠ j: node
i sends its row to node j). :attr:`Mixer.row_messages` holds, per node, the messages it sends in
one round, so that a process holding some of the rows counts exactly its own messages and the
simulator (all rows) counts the sum.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from theory.mixing import ATOL, MixingMatrix

__all__ = ["MIXING_MODES", "SPARSE_KERNELS", "Mixer", "mixing_cost"]

#: the kernels of a sparse W (``Mixer.strategy``), forceable through ``mixing=``
SPARSE_KERNELS = ("csr", "block", "gather")
#: accepted values of ``mixing=`` (``"auto"`` chooses by W's structure; ``"sparse"`` forces
#: neighbour sums with the kernel of least modelled cost; a kernel name forces that kernel)
MIXING_MODES = ("auto", "identity", "groups", "sparse", "dense", *SPARSE_KERNELS)

#: cost-model constants (seconds), calibrated on a 2-core AMD EPYC with AVX-512 and MKL, one
#: thread (benchmarks/bench_mixing.py --calibrate, float32, m ∈ {64, 512}, d = 10²…10⁵): per
#: torch call; per multiply-add of the dense GEMM (float32; float64 twice); per non-zero and
#: column of the CSR kernel on a row panel in cache; per number streamed to/from memory
CALL_S = 2.7e-6
GEMM_S = 1.84e-11
CSR_CACHE_S = 5.7e-11
STREAM_S = 1.7e-10
#: bytes of a row panel of X that stays in cache (the CSR kernel's column panels)
PANEL_BYTES = 1 << 21


def mixing_cost(strategy: str, n: int, d: int, nnz: int, elem: int,
                block_calls: int = 0, block_rows: int = 0) -> float:
    """Modelled seconds of one X ← WᵀX on the CPU with ``strategy`` for an n × d X of
    ``elem``-byte numbers and W with ``nnz`` non-zeros (the diagonal included); ``block_calls``
    and ``block_rows``: GEMM calls and rows of X read by the block plan. The constants are the
    module's (calibrated once from measurements, not at run time)."""
    scale = elem / 4.0
    io = 2 * n * d * STREAM_S * scale  # read X once, write the result once
    if strategy == "dense":
        return CALL_S + n * n * d * GEMM_S * scale + io
    if strategy == "csr":
        if n * d * elem <= PANEL_BYTES:  # X in cache
            return CALL_S + nnz * d * CSR_CACHE_S * scale + io
        panels = math.ceil(d / _panel_width(n, d, elem))
        # in panels: two more streams (copy in, copy out) and three calls per panel
        return 3 * panels * CALL_S + nnz * d * CSR_CACHE_S * scale + 2 * io
    if strategy == "block":
        return block_calls * CALL_S + (block_rows + n) * d * STREAM_S * scale
    if strategy == "gather":
        # read the source rows, write/scale/read the temporary, read-modify-write the result
        return 4 * CALL_S + (4 * nnz + 2 * n) * d * STREAM_S * scale
    raise ValueError(f"unknown mixing strategy {strategy!r}")


def _components(nz: np.ndarray) -> tuple[int, np.ndarray]:
    """(number of connected components, label per node) of the undirected graph of the
    non-zero pattern ``nz`` (labels 0, 1, … in order of each component's smallest node; the
    same as ``scipy.sparse.csgraph.connected_components``, without importing scipy.sparse,
    which costs a distributed rank 0.4 s of start-up)."""
    n = nz.shape[0]
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    ii, jj = np.nonzero(nz | nz.T)
    for i, j in zip(ii.tolist(), jj.tolist(), strict=True):
        if i < j:
            a, b = find(i), find(j)
            if a != b:
                parent[max(a, b)] = min(a, b)
    roots = np.asarray([find(i) for i in range(n)])
    _, labels = np.unique(roots, return_inverse=True)
    return int(labels.max()) + 1 if n else 0, labels.astype(np.int64)


def _panel_width(n: int, d: int, elem: int) -> int:
    """Columns of X per CSR panel: a power of two with n·width·elem ≤ PANEL_BYTES (≥ 256)."""
    w = max(256, 1 << max(0, int(math.log2(max(1, PANEL_BYTES // (n * elem))))))
    return min(w, d)


class Mixer:
    """Applies X ← Wᵀ X using W's structure (see the module docstring).

    ``kind``: the structure (identity, groups, sparse, dense); ``strategy``: the kernel
    (``mean``/``group-means`` for groups, ``csr``/``block``/``gather``/``dense`` otherwise,
    chosen per width d on first use, see :meth:`strategy_for`); ``messages``: messages per
    mixing round (all nodes); ``row_messages``: the same per node (int64 array of length n);
    ``out_degree``: per node j the number of nodes i ≠ j with W_ji ≠ 0 (the receivers of j's
    row).
    """

    GATHER_LIMIT = 1 << 22
    BLOCK = 4

    def __init__(self, W: MixingMatrix, device: torch.device, dtype: torch.dtype,
                 mode: str = "auto"):
        A = np.asarray(W.matrix, dtype=np.float64)
        n = A.shape[0]
        self.n = n
        self.A = A
        self.device, self.dtype = torch.device(device), dtype
        nz = np.abs(A) > ATOL
        off = nz & ~np.eye(n, dtype=bool)
        self.out_degree = off.sum(axis=1).astype(np.int64)
        self.edges_directed = int(off.sum())
        self.nnz = int(nz.sum())
        groups = self._groups(A, nz)
        if mode not in MIXING_MODES:
            raise ValueError(f"mixing must be one of {', '.join(map(repr, MIXING_MODES))} "
                             f"(got {mode!r})")
        self.forced = mode if mode in ("dense", *SPARSE_KERNELS) else None
        if mode == "auto":
            if W.is_identity:
                kind = "identity"
            elif groups is not None:
                kind = "groups"
            elif self.edges_directed + n <= n * n / 4:
                kind = "sparse"
            else:
                kind = "dense"
        elif mode in SPARSE_KERNELS:
            kind = "sparse"
        else:
            kind = mode
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
        self._nz = nz
        self._csr: torch.Tensor | None = None
        self._gather_plan: list | None = None
        self._panels: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._by_width: dict[int, str] = {}
        self.Wt: torch.Tensor | None = None
        self.blocks = None
        if kind == "sparse":
            self.blocks = self._block_plan(A, nz, self.BLOCK, dtype, device)
            if mode == "block" and self.blocks is None:
                raise ValueError("mixing='block' needs a W with index locality (the rows "
                                 "feeding each block of output rows in at most 4 ranges)")
        if kind == "dense":
            self.Wt = torch.as_tensor(A.T.copy(), dtype=dtype, device=device)

    @property
    def strategy(self) -> str:
        """The kernel of the last width used (or of the structure before any use)."""
        if self.kind == "identity":
            return "identity"
        if self.kind == "groups":
            return "mean" if self.n_groups == 1 else "group-means"
        if self._by_width:
            return next(reversed(self._by_width.values()))
        return self.forced or self.kind

    def strategy_for(self, d: int) -> str:
        """The kernel for an n × d X: the forced one, or the least :func:`mixing_cost` (CPU);
        on CUDA ``csr`` for a sparse W. Deterministic in (W's structure, n, d, dtype,
        device)."""
        hit = self._by_width.get(d)
        if hit is not None:
            return hit
        if self.kind == "dense":
            s = "dense"
        elif self.forced is not None:
            s = self.forced
        elif self.device.type != "cpu":
            s = "csr"
        else:
            elem = torch.empty((), dtype=self.dtype).element_size()
            costs = {k: mixing_cost(k, self.n, d, self.nnz, elem) for k in ("csr", "dense")}
            if self.blocks is not None:
                calls = sum(len(r) for _, _, r in self.blocks)
                rows = sum(int(r1 - r0) for _, _, r in self.blocks for r0, r1, _ in r)
                costs["block"] = mixing_cost("block", self.n, d, self.nnz, elem, calls, rows)
            s = min(costs, key=lambda k: (costs[k], k))
        self._by_width[d] = s
        return s

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
        k, labels = _components(nz)
        sizes = np.bincount(labels, minlength=k)
        expect = 1.0 / sizes[labels]
        same = labels[:, None] == labels[None, :]
        if np.allclose(np.where(same, A, 0.0), np.where(same, expect[:, None], 0.0),
                       atol=ATOL, rtol=0) and not np.any(nz & ~same):
            return labels.astype(np.int64), [int(s) for s in sizes]
        return None

    # -- kernels ---------------------------------------------------------------------------
    def _csr_matrix(self) -> torch.Tensor:
        """Wᵀ over the non-zeros as a CSR tensor (built on first use)."""
        if self._csr is None:
            At = np.where(self._nz, self.A, 0.0).T
            cols = [np.nonzero(At[j])[0] for j in range(self.n)]
            crow = np.concatenate([[0], np.cumsum([len(c) for c in cols])]).astype(np.int64)
            col = np.concatenate(cols).astype(np.int64)
            val = np.concatenate([At[j, c] for j, c in enumerate(cols)])
            with warnings.catch_warnings():  # "sparse CSR support is in beta state"
                warnings.simplefilter("ignore", UserWarning)
                self._csr = torch.sparse_csr_tensor(
                    torch.as_tensor(crow, device=self.device),
                    torch.as_tensor(col, device=self.device),
                    torch.as_tensor(val, dtype=self.dtype, device=self.device), (self.n, self.n),
                    check_invariants=True)
        return self._csr

    def _mix_csr(self, X: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
        S = self._csr_matrix()
        n, d = X.shape
        elem = X.element_size()
        w = _panel_width(n, d, elem)
        if X.device.type != "cpu" or n * d * elem <= PANEL_BYTES or w >= d:
            return torch.mm(S, X, out=buf)
        hit = self._panels.get(w)
        if hit is None:
            hit = self._panels[w] = (X.new_empty((n, w)), X.new_empty((n, w)))
        xin, xout = hit
        for c0 in range(0, d, w):
            c1 = min(d, c0 + w)
            k = c1 - c0
            xi = xin[:, :k] if k < w else xin
            xo = xout[:, :k] if k < w else xout
            xi.copy_(X[:, c0:c1])
            torch.mm(S, xi, out=xo)
            buf[:, c0:c1].copy_(xo)
        return buf

    def _mix_block(self, X: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
        for a, b, ranges in self.blocks:
            o = buf[a:b]
            r0, r1, Wt = ranges[0]
            torch.mm(Wt, X[r0:r1], out=o)
            for r0, r1, Wt in ranges[1:]:
                o.addmm_(Wt, X[r0:r1])
        return buf

    def _mix_gather(self, X: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
        """Gather → scale → scatter-add, chunked by output rows so that the temporary holds
        at most ``GATHER_LIMIT`` numbers (one output row's sources at least)."""
        d = X.shape[1]
        plan = self._gather_plan
        if plan is None or plan[0] != d:
            ii, jj = np.nonzero(self._nz)  # sorted by source; re-sort by destination
            order = np.lexsort((ii, jj))
            ii, jj = ii[order], jj[order]
            ptr = np.searchsorted(jj, np.arange(self.n + 1))
            chunks, a = [], 0
            while a < self.n:
                b = a + 1
                while b < self.n and (ptr[b + 1] - ptr[a]) * d <= self.GATHER_LIMIT:
                    b += 1
                e0, e1 = int(ptr[a]), int(ptr[b])
                dev, dt = X.device, X.dtype
                chunks.append((a, b, torch.as_tensor(ii[e0:e1], device=dev),
                               torch.as_tensor(jj[e0:e1] - a, device=dev),
                               torch.as_tensor(self.A[ii[e0:e1], jj[e0:e1]], dtype=dt,
                                               device=dev).unsqueeze(1)))
                a = b
            tmp = X.new_empty((max(len(c[2]) for c in chunks), d))
            plan = self._gather_plan = [d, chunks, tmp]
        _, chunks, tmp = plan
        for a, b, src, dst, w in chunks:
            g = torch.index_select(X, 0, src, out=tmp[:len(src)]).mul_(w)
            buf[a:b].zero_().index_add_(0, dst, g)
        return buf

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
        s = self.strategy_for(X.shape[1])
        if s == "csr":
            return self._mix_csr(X, buf)
        if s == "block":
            return self._mix_block(X, buf)
        if s == "gather":
            return self._mix_gather(X, buf)
        if self.Wt is None:
            self.Wt = torch.as_tensor(self.A.T.copy(), dtype=self.dtype, device=self.device)
        torch.mm(self.Wt, X, out=buf)
        return buf
