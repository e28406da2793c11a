"""The Cooperative SGD engine: all m workers (and v auxiliary variables) stacked on one device.

Algorithm (Wang & Joshi, Cooperative SGD, digest §1.3 [MEM, high]), in stacked-row form: X_k is
the n × d matrix (n = m + v) whose row i is worker i's model (rows m.. are auxiliary variables
such as the EASGD centre, which receive no gradient), and

    X_{k+1} = W_kᵀ (X_k − Δ_k),        Δ_k = [δ_k^(1); …; δ_k^(m); 0; …; 0],

which is the paper's column form X_{k+1} = (X_k − η G_k) W_k with X transposed. W_k is the
round's W after the last local step of a round and I otherwise (:class:`theory.schedules.Round`).

Local step of worker i at step k (η_k from the learning-rate schedule, g = stochastic gradient
of ``problem.loss`` on the worker's mini-batch at x_k^(i)):

* direction p: plain g; heavy ball b ← βb + g, p = b; Nesterov b ← βb + g, p = g + βb
  (the buffer b is local and never mixed);
* update δ: η_k p; or, with a compressor C (error feedback, M-DSGD, digest §2.3 [RECON]):
  u = e + η_k p, δ = C(u), e ← u − C(u); with ``Config.error_feedback = False`` (QSGD-style,
  :func:`empirics.configs.qsgd`): δ = C(η_k p) and no memory.

With W = J and τ = 1 this is exactly the server form w_{t+1} = w_t − (1/m) Σ_k C(u_k); with a
sparse W it is X_{k+1} = Wᵀ(X_k − C-updates) (not CHOCO-style gossip: that is ``Config.gossip``).

Compressed gossip (``Config.gossip``, :class:`empirics.configs.Gossip`; SQuARM-SGD and CHOCO-SGD):
the end of a round does not apply X ← WᵀX but the event-triggered consensus on public copies X̂
(:meth:`_Engine.gossip_mix`): fired rows j (‖x_j − x̂_j‖² > c_t η²) update x̂_j += C(x_j − x̂_j),
then X ← X + γ(WᵀX̂ − X̂). Bits: C.bits(d) per fired node and out-neighbour (directed edge of W,
for every W, W = J included); non-fired nodes send nothing; ``Result.fires`` counts per node.

Identities the tests check on real trajectories (float64, machine precision):
u_k = mean of the n rows satisfies u_{k+1} = u_k − (1/n) Σ_i δ_k^(i) whenever W 1 = 1; for plain
SGD this is u_{k+1} = u_k − η_eff · (1/m) Σ_i g_k^(i), η_eff = m η/(m+v). With error feedback the
virtual sequence ũ_k = u_k − (1/n) Σ_i e_k^(i) follows ũ_{k+1} = ũ_k − (η_k/n) Σ_i p_k^(i)
(uncompressed SGD / momentum SGD with gradients taken at the real iterates).

Mixing uses W's structure, chosen once per W object: W = I → nothing; W block-diagonal with
constant blocks (J, group averaging) → means over groups (O(n d)); sparse W → neighbour sums
costing (edges + n)·d; otherwise one dense matmul (n² d).

Gradients: ``torch.func.vmap(grad_and_value(problem.loss))`` over the stacked worker rows (the
per-worker mini-batch losses are used to detect divergence at the step it happens), or a
hand-batched path for known model families (:func:`register_fast_grad`: the MLP classifier and
the linear models of :mod:`empirics.problems`, written with ``torch.bmm``), tested against vmap.
With plain SGD a fast path applies the update inside its backward pass (no gradient buffer),
and a round of length 1 ending with W = J while all rows are equal (synchronous SGD) runs as one
model on the concatenated m·B batch, the common model held once until a record or another kind
of step needs the m rows (same arithmetic up to rounding; tested).

Communication accounting (``bits``): a mixing round with a block-averaging W costs one message
per row in a block of size ≥ 2 (all-reduce), any other W one message per directed edge
(off-diagonal non-zero); a message is 32·d bits (float32 on the wire), except with a compressor
when W = J and all rows were equal at the round start: then each worker can send its round's
compressed updates, min(τ·C.bits(d), 32·d) bits. Decentralized W with a compressor is counted
uncompressed (neighbours need full models without CHOCO-style gossip, ``Config.gossip``).

Randomness: worker i's batches come from ``seed_for(seed, i)`` (the problems' convention), its
compressor draws from :func:`compressor_seed`; the gradient-norm subsample has its own stream, so
no record option changes the trajectory. Every tensor is created on ``spec.device``.
"""

from __future__ import annotations

import array
import ctypes
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.sparse.csgraph import connected_components

from empirics.configs import Config
from empirics.problems import seed_for
from empirics.records import Result, Trace
from theory.mixing import ATOL, MixingMatrix, as_mixing
from theory.stepsizes import Constant, InverseTime, LRFunction, Stagewise, as_lr

__all__ = [
    "Constant",
    "DivergenceError",
    "InverseTime",
    "LRFunction",
    "RunSpec",
    "Stagewise",
    "as_lr",
    "compressor_seed",
    "gossip_seed",
    "register_fast_grad",
    "run",
    "simulate",
    "tune_allocator",
]

UNCOMPRESSED_BITS = 32  #: bits per coordinate of an uncompressed message (float32 on the wire)


# ---------------------------------------------------------------------------------------------
# the run specification
# ---------------------------------------------------------------------------------------------
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class RunSpec:
    """Everything that defines a run (``to_dict`` is JSON-ready).

    problem: an ``empirics.problems.Problem`` with m = config.m workers. config: a
    :class:`empirics.configs.Config` (schedule, v, compressor, momentum). lr: number or schedule
    t -> η_t. T: number of steps. batch_size: per worker. seed: fixes batches (worker i's
    generator seeded ``seed_for(seed, i)``), compressor randomness (:func:`compressor_seed`) and
    the gradient-norm subsample. device/dtype: default the problem's (must match it).
    record_every: record stride (steps 0, s, 2s, … and always the last step T).
    grad_every: ‖∇F(u_k)‖² for the running average — 1: every step (exact); q > 1: one uniformly
    random step per block of q steps (unbiased); 0: only at records.
    """

    problem: Any
    config: Config
    lr: Any
    T: int
    batch_size: int = 1
    seed: int = 0
    device: str | None = None
    dtype: str | None = None
    record_every: int = 1
    grad_every: int = 1

    def __post_init__(self) -> None:
        self.lr = as_lr(self.lr)
        for name, lo in (("T", 1), ("batch_size", 1), ("record_every", 1), ("grad_every", 0),
                         ("seed", 0)):
            x = getattr(self, name)
            if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < lo:
                raise ValueError(f"{name} must be an integer >= {lo} (got {x!r})")
            setattr(self, name, int(x))
        if not isinstance(self.config, Config):
            raise ValueError(f"config must be an empirics.configs.Config (got "
                             f"{type(self.config).__name__}); build one with e.g. pasgd(m, tau)")
        pm = getattr(self.problem, "m", None)
        if pm != self.config.m:
            n = self.config.n
            raise ValueError(f"W size does not match the workers: the schedule's W is {n}×{n} "
                             f"= m + v with v = {self.config.v}, so it needs m = {self.config.m} "
                             f"workers, but problem.m = {pm}")
        pdt = str(self.problem.dtype).replace("torch.", "")
        if self.dtype is None:
            self.dtype = pdt
        self.dtype = str(self.dtype).replace("torch.", "")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be 'float32' or 'float64' (got {self.dtype!r})")
        if self.dtype != pdt:
            raise ValueError(f"dtype {self.dtype} differs from the problem's dtype {pdt}: build "
                             f"the problem with dtype=torch.{self.dtype}")
        pdev = torch.device(self.problem.device)
        dev = pdev if self.device is None else torch.device(self.device)
        if dev.type != pdev.type or (dev.index is not None and pdev.index is not None
                                     and dev.index != pdev.index):
            raise ValueError(f"device {dev} differs from the problem's device {pdev}: build the "
                             f"problem with device={str(dev)!r}")
        self.device = str(pdev)

    @property
    def m(self) -> int:
        return self.config.m

    @property
    def v(self) -> int:
        return self.config.v

    def to_dict(self) -> dict[str, Any]:
        p = self.problem
        pd = p.to_dict() if hasattr(p, "to_dict") else {"repr": repr(p)}
        return {"problem": pd, "config": self.config.to_dict(), "m": self.m, "v": self.v,
                "lr": self.lr.to_dict(), "T": self.T, "batch_size": self.batch_size,
                "seed": self.seed, "device": self.device, "dtype": self.dtype,
                "record_every": self.record_every, "grad_every": self.grad_every}


class DivergenceError(RuntimeError):
    """NaN/inf in the loss or the parameters. ``step``: the step at which it was detected;
    ``what``: what diverged; ``partial``: the :class:`Result` recorded so far."""

    def __init__(self, step: int, what: str, partial: Result | None = None):
        super().__init__(f"run diverged at step {step}: {what}")
        self.step, self.what, self.partial = step, what, partial


def compressor_seed(seed: int, worker: int) -> int:
    """Seed of worker ``worker``'s compressor generator: ``seed_for(seed_for(seed, worker), 1)``
    (a stream separate from its batch generator ``seed_for(seed, worker)``)."""
    return seed_for(seed_for(seed, worker), 1)


def gossip_seed(seed: int, worker: int) -> int:
    """Seed of node ``worker``'s gossip-compressor generator (SQuARM-SGD / CHOCO-SGD,
    ``Config.gossip``): ``seed_for(seed_for(seed, worker), 2)`` (separate from its batch and
    error-feedback streams)."""
    return seed_for(seed_for(seed, worker), 2)


# ---------------------------------------------------------------------------------------------
# mixing
# ---------------------------------------------------------------------------------------------
class _Mixer:
    """Applies X ← Wᵀ X using W's structure (see the module docstring).

    kind: ``identity`` | ``groups`` (block-diagonal with constant blocks: J, group averaging) |
    ``sparse`` (neighbour sums over the off-diagonal non-zeros) | ``dense`` (one matmul).
    ``messages``: messages per mixing round — groups: one per row in a group of size ≥ 2
    (all-reduce within the group); sparse/dense: one per directed edge (off-diagonal non-zero).
    Sparse W on small X (nnz·d ≤ ``GATHER_LIMIT``) runs as gather/scale/index_add over the nnz
    entries (few calls). On large X, when W has index locality (ring, path, torus, grid, EASGD
    star: the rows feeding each block of ``BLOCK`` output rows form at most 4 contiguous ranges
    and at most 4n rows are read in all), each block is a few small GEMMs on views of X
    (W[range, block]ᵀ X[range]): a ring reads X about (1 + 2/BLOCK) times, near one copy;
    otherwise row by row.
    """

    GATHER_LIMIT = 1 << 22
    BLOCK = 4

    def __init__(self, W: MixingMatrix, device: torch.device, dtype: torch.dtype,
                 mode: str = "auto"):
        A = np.asarray(W.matrix, dtype=np.float64)
        n = A.shape[0]
        self.n = n
        nz = np.abs(A) > ATOL
        off = nz & ~np.eye(n, dtype=bool)
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
            if kind not in ("identity", "groups", "sparse", "dense"):
                raise ValueError(f"mixing must be 'auto', 'groups', 'sparse' or 'dense' "
                                 f"(got {mode!r})")
            if kind == "groups" and groups is None:
                raise ValueError("mixing='groups' needs a block-diagonal W with constant blocks")
            if kind == "identity" and not W.is_identity:
                raise ValueError("mixing='identity' needs W = I")
        self.kind = kind
        if kind == "groups":
            gid, sizes = groups
            self.messages = int(sum(s for s in sizes if s >= 2))
            self.n_groups = len(sizes)
            self.ones = torch.full((n,), 1.0 / n, dtype=dtype, device=device)
            self.gid = torch.as_tensor(gid, device=device)
            self.inv = torch.as_tensor(1.0 / np.asarray(sizes, float), dtype=dtype,
                                       device=device)[:, None]
        elif kind == "identity":
            self.messages = 0
        else:
            self.messages = self.edges_directed
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


# ---------------------------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------------------------
GradFn = Callable[[dict[str, torch.Tensor], tuple[torch.Tensor, ...]],
                  tuple[dict[str, torch.Tensor], torch.Tensor]]

#: (predicate(problem) -> bool, factory(problem) -> GradFn) for hand-batched gradient paths.
_FAST_GRADS: list[tuple[Callable[[Any], bool], Callable[[Any], GradFn]]] = []


def register_fast_grad(applies: Callable[[Any], bool], factory: Callable[[Any], GradFn]) -> None:
    """Register a hand-batched gradient path: ``factory(problem)`` returns a function
    ``(stacked_params, stacked_batch) -> (stacked_grads, per_worker_losses)`` with the same
    semantics as ``vmap(grad_and_value(problem.loss))``, used when ``applies(problem)``."""
    _FAST_GRADS.append((applies, factory))


def vmap_grad(problem: Any) -> GradFn:
    """``vmap(grad_and_value(problem.loss))`` over the leading worker axis of params and batch."""
    from torch.func import grad_and_value, vmap

    def f(params: dict[str, torch.Tensor], batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return problem.loss(params, batch)

    return vmap(grad_and_value(f), in_dims=(0, 0))


def grad_fn_for(problem: Any, fast_path: bool = True) -> tuple[GradFn, str]:
    """The stacked gradient function for ``problem`` and its name (``"vmap"`` or the fast
    path's)."""
    if fast_path:
        for applies, factory in _FAST_GRADS:
            if applies(problem):
                fn = factory(problem)
                return fn, getattr(fn, "__name__", "fast")
    return vmap_grad(problem), "vmap"


# ---------------------------------------------------------------------------------------------
# allocator advice
# ---------------------------------------------------------------------------------------------
def tune_allocator(threshold: int = 2**31 - 1) -> bool:
    """Ask glibc malloc to keep large blocks instead of returning them to the OS (the effect of
    ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``; measured to double the stacked
    MLP's steps/s at m = 64 on a 2-core machine), so per-step
    temporaries of tens of MB are not page-faulted in afresh every step. Process-wide; opt-in.
    Returns False where mallopt is unavailable (non-glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        return bool(libc.mallopt(M_MMAP_THRESHOLD, int(threshold))) and bool(
            libc.mallopt(M_TRIM_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):
        return False


# ---------------------------------------------------------------------------------------------
# the engine
# ---------------------------------------------------------------------------------------------
_TRACE_LIMIT = 50_000_000  # numbers stored by trace=True


class _Engine:
    def __init__(self, spec: RunSpec, *, mixing: str = "auto", fast_path: bool = True,
                 trace: bool = False):
        self.spec = spec
        p = self.problem = spec.problem
        cfg = spec.config
        self.m, self.v, self.n = cfg.m, cfg.v, cfg.n
        self.dtype = _DTYPES[spec.dtype]
        self.device = torch.device(spec.device)
        self.mixing_mode = mixing
        self.T = spec.T
        x0 = p.init_params(device=self.device, dtype=self.dtype)
        self.names = list(x0)
        self.shapes = [tuple(t.shape) for t in x0.values()]
        self.sizes = [int(math.prod(s)) for s in self.shapes]
        self.d = int(sum(self.sizes))
        flat0 = torch.cat([t.reshape(-1) for t in x0.values()])
        self.X = flat0.expand(self.n, self.d).clone()
        self._buf: torch.Tensor | None = None  # second n × d buffer, allocated on first need
        self.views = self._views(self.X)
        self.worker_views = {k: t[: self.m] for k, t in self.views.items()}
        self.grad_fn, self.grad_path = grad_fn_for(p, fast_path)
        beta = cfg.momentum
        # plain SGD through a fast path that can apply the update inside its backward pass
        self.fused = (getattr(self.grad_fn, "supports_fused_sgd", False) and not beta
                      and cfg.compressor is None and not trace)
        self.G = (torch.empty((self.m, self.d), dtype=self.dtype, device=self.device)
                  if not self.fused else torch.empty(0))
        self.grad_out = (self._views(self.G) if getattr(self.grad_fn, "supports_out", False)
                         and not self.fused else None)
        self.gens = p.generators(spec.seed, device=self.device)
        self.sample_all = p.sample_all
        self.mom = torch.zeros_like(self.G) if beta else None
        self.comp = cfg.compressor
        if self.comp is not None:
            self.mem = torch.zeros_like(self.G)
            self.U = torch.empty_like(self.G)
            self.cgens = [torch.Generator(device=self.device).manual_seed(
                compressor_seed(spec.seed, i)) for i in range(self.m)]
            self.comp(torch.zeros((1, self.d), dtype=self.dtype, device=self.device),
                      generator=self.cgens[:1])  # fails early if C cannot act on d-vectors
            self.comp_bits = int(self.comp.bits(self.d))
        self.dirbuf = torch.empty_like(self.G) if (beta and cfg.nesterov) else None
        if self.fused:
            self.grad_path += "+fused-sgd"
        # τ = 1 rounds with W = J on equal rows (synchronous SGD): one model on the m·B batch
        self.sync_step = (getattr(self.grad_fn, "synchronous_step", None)
                          if self.fused and self.v == 0 and cfg.gossip is None else None)
        self.gossip = cfg.gossip
        if self.gossip is not None:
            self._init_gossip(spec)
        self.shared: torch.Tensor | None = None  # when set, every row of X equals it
        self.n_sync_steps = 0  # steps taken by the synchronous shortcut
        self._mixers: dict[int, tuple[MixingMatrix, _Mixer]] = {}
        self.synced = True  # all n rows equal (true at x₀ and after mixing with W = J)
        self.round_synced = True  # ... at the start of the current round
        self.bits = 0
        self.n_rounds = 0
        self.comm_steps = array.array("q")  # compact: one entry per mixing round
        self.rows: list[dict[str, float]] = []
        self.gn_sum = 0.0   # Σ over evaluated blocks of (block length × ‖∇F(u_k)‖²)
        self.gn_weight = 0  # Σ block lengths covered
        self.gn_count = 0
        self.gn_at = array.array("q")  # kept for grad_every > 1 (every step otherwise)
        self.k = 0
        self.lr_k = math.nan
        self.rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 0x6E0F]))
        self.trace = trace
        if trace:
            n_num = (self.T + 1) * self.d * (self.n + 4 * self.m)
            if n_num > _TRACE_LIMIT:
                raise ValueError(f"trace=True would store {n_num:.3g} numbers (T × (m+v+4m) × d); "
                                 f"the limit is {_TRACE_LIMIT:.0e}: use a smaller T, m or problem")
            self.tr: dict[str, list] = {k: [] for k in
                                        ("X", "grads", "direction", "delta", "memory", "lr",
                                         "mixed", "W")}

    # -- helpers ---------------------------------------------------------------------------
    def _views(self, X: torch.Tensor) -> dict[str, torch.Tensor]:
        out, off = {}, 0
        for name, shp, sz in zip(self.names, self.shapes, self.sizes, strict=True):
            out[name] = X[:, off:off + sz].view(X.shape[0], *shp)
            off += sz
        return out

    def _unflat(self, u: torch.Tensor) -> dict[str, torch.Tensor]:
        out, off = {}, 0
        for name, shp, sz in zip(self.names, self.shapes, self.sizes, strict=True):
            out[name] = u[off:off + sz].view(shp)
            off += sz
        return out

    def u(self) -> torch.Tensor:
        return self.shared if self.shared is not None else self.X.mean(0)

    def materialise(self) -> None:
        """Write the lazily held common model back into every row of X."""
        if self.shared is not None:
            self.X.copy_(self.shared.expand_as(self.X))
            self.shared = None

    def full_loss(self) -> float:
        return float(self.problem.full_loss(self._unflat(self.u())))

    def mixer(self, W: Any) -> _Mixer:
        hit = self._mixers.get(id(W))
        if hit is not None and hit[0] is W:
            return hit[1]
        M = as_mixing(W)
        if M.n != self.n:
            raise ValueError(f"W size must equal m + v = {self.m} + {self.v} = {self.n} "
                             f"(the schedule gave a {M.n}×{M.n} W)")
        mx = _Mixer(M, self.device, self.dtype, self.mixing_mode)
        self._mixers[id(W)] = (W, mx)
        return mx

    # -- checks before running -------------------------------------------------------------
    def check_schedule(self) -> None:
        sched = self.spec.config.schedule
        if sched.n != self.n:
            raise ValueError(f"schedule size {sched.n} must equal m + v = {self.n}")
        if getattr(sched, "adaptive", False):
            return  # rounds depend on the loss: nothing to check in advance
        # stream the rounds: stop at the first mixing step before the last one (then both
        # rules hold), so long runs never materialise their schedule
        last = None
        for r in sched.rounds(self.T):
            if r.W is None or r.W.is_identity:
                continue
            if r.end < self.T:
                return
            last = r
        if self.n > 1 and last is None:
            raise ValueError(f"schedule never communicates within T = {self.T} steps (no round "
                             f"mixes with a W ≠ I): the workers would never exchange anything")
        if last is not None and not (self.mixer(last.W).kind == "groups"
                                     and self.mixer(last.W).n_groups == 1):
            raise ValueError(
                f"schedule mixes only once, after the last step (T = {self.T}), and with a W that "
                f"is not exact averaging: a decentralized/EASGD/hierarchical run needs mixing "
                f"during training (use a period tau < T)")

    # -- one step --------------------------------------------------------------------------
    def lr(self, k: int) -> float:
        e = self.spec.lr(k)
        if not (isinstance(e, (int, float)) and e > 0 and math.isfinite(e)):
            raise ValueError(f"lr must be finite and > 0 at every step; lr({k}) = {e!r}")
        return float(e)

    def step(self, k: int) -> None:
        cfg = self.spec.config
        m = self.m
        eta = self.lr_k = self.lr(k)
        batch = self.sample_all(self.spec.batch_size, self.gens)
        if self.fused:
            _, losses = self.grad_fn(self.worker_views, batch, sgd_lr=eta)
        elif self.grad_out is not None:
            grads, losses = self.grad_fn(self.worker_views, batch, out=self.grad_out)
        else:
            grads, losses = self.grad_fn(self.worker_views, batch)
        bad = ~torch.isfinite(losses)
        if bool(bad.any()):
            i = int(torch.nonzero(bad)[0])
            params_ok = bool(torch.isfinite(self.X).all())
            raise DivergenceError(
                k, f"mini-batch loss of worker {i} is {float(losses[i])} "
                   f"(parameters {'finite' if params_ok else 'contain NaN/inf'})")
        if self.fused:
            if m > 1 or self.v > 0:
                self.synced = False
            return
        G = self.G
        if self.grad_out is None:
            torch.cat([grads[nm].reshape(m, -1) for nm in self.names], dim=1, out=G)
        if self.mom is not None:
            self.mom.mul_(cfg.momentum).add_(G)
            if cfg.nesterov:
                direction = torch.add(G, self.mom, alpha=cfg.momentum, out=self.dirbuf)
            else:
                direction = self.mom
        else:
            direction = G
        if self.trace:
            self.tr["X"].append(self.X.detach().cpu().double().numpy().copy())
            self.tr["grads"].append(G.cpu().double().numpy().copy())
            self.tr["direction"].append(direction.cpu().double().numpy().copy())
            self.tr["memory"].append(self.mem.cpu().double().numpy().copy()
                                     if self.comp is not None else np.zeros((m, self.d)))
            self.tr["lr"].append(eta)
        Xw = self.X[:m]
        if self.comp is not None:
            if cfg.error_feedback:
                torch.add(self.mem, direction, alpha=eta, out=self.U)
            else:  # no memory (QSGD-style): δ = C(η p), e stays 0
                torch.mul(direction, eta, out=self.U)
            # one generator per worker row: equals each worker compressing alone
            self.D = self.comp(self.U, generator=self.cgens)
            if cfg.error_feedback:
                torch.sub(self.U, self.D, out=self.mem)
            Xw.sub_(self.D)
            delta = self.D
        else:
            Xw.add_(direction, alpha=-eta)
            delta = None
        if self.trace:
            self.tr["delta"].append(delta.cpu().double().numpy().copy() if delta is not None
                                    else (eta * direction).cpu().double().numpy())
        if m > 1 or self.v > 0:
            self.synced = False

    def synchronous(self, k: int, W: Any) -> bool:
        """One step of a length-1 round ending with W = J while all rows are equal: every
        worker starts from u and the mean of their updates is applied to u directly,
        u ← u − η·(1/m)Σ_i g_i (what X ← Jᵀ(X − ηG) computes, without storing m copies).
        Returns False (nothing done) when the shortcut does not apply."""
        if self.sync_step is None or not (self.synced or self.shared is not None):
            return False
        mx = self.mixer(W)
        if not (mx.kind == "groups" and mx.n_groups == 1):
            return False
        eta = self.lr_k = self.lr(k)
        batch = self.sample_all(self.spec.batch_size, self.gens)
        if self.shared is None:
            self.shared = self.X[0].clone()
        losses = self.sync_step(self._unflat(self.shared), batch, eta)
        bad = ~torch.isfinite(losses)
        if bool(bad.any()):
            i = int(torch.nonzero(bad)[0])
            ok = bool(torch.isfinite(self.shared).all())
            raise DivergenceError(
                k, f"mini-batch loss of worker {i} is {float(losses[i])} "
                   f"(parameters {'finite' if ok else 'contain NaN/inf'})")
        self.bits += mx.messages * UNCOMPRESSED_BITS * self.d
        self.n_rounds += 1
        self.comm_steps.append(k)
        self.synced = True
        self.n_sync_steps += 1
        return True

    def mix(self, W: Any, k: int, length: int) -> None:
        if self.gossip is not None:
            self.gossip_mix(W, k)
            return
        mx = self.mixer(W)
        if mx.kind != "identity":
            was_synced = self.round_synced
            if self._buf is None and not (mx.kind == "groups" and mx.n_groups == 1):
                self._buf = torch.empty_like(self.X)
            out = mx(self.X, self._buf)
            if out is not self.X:  # double buffering: swap instead of copying back
                self.X, self._buf = out, self.X
                self.views = self._views(self.X)
                self.worker_views = {k: t[: self.m] for k, t in self.views.items()}
            per = UNCOMPRESSED_BITS * self.d
            if self.comp is not None and mx.kind == "groups" and mx.n_groups == 1 and was_synced:
                per = min(per, length * self.comp_bits)
            self.bits += mx.messages * per
            self.n_rounds += 1
            self.comm_steps.append(k)
            if mx.kind == "groups" and mx.n_groups == 1:
                self.synced = True
        if self.trace:
            self.tr["mixed"].append(mx.kind != "identity")
            self.tr["W"].append(np.asarray(W.matrix if hasattr(W, "matrix") else W, float))

    # -- compressed, event-triggered gossip (SQuARM-SGD; Config.gossip) --------------------
    def _init_gossip(self, spec: RunSpec) -> None:
        g = self.gossip
        self.gossip_delta = g.check(self.d)
        comp = g.compressor
        # a throwaway generator: the probe must not consume any node's stream
        comp(torch.zeros((1, self.d), dtype=self.dtype, device=self.device),
             generator=torch.Generator(device=self.device).manual_seed(0))
        self.gossip_bits = int(comp.bits(self.d))
        self.Xhat = self.X[: self.m].clone()  # public copies x̂_i = x₀ (known to every node)
        self.ggens = [torch.Generator(device=self.device).manual_seed(gossip_seed(spec.seed, i))
                      for i in range(self.m)]
        self.fires = np.zeros(self.m, dtype=np.int64)
        self._gbuf = torch.empty_like(self.Xhat)
        self._gbuf2 = torch.empty_like(self.Xhat)
        self._outdeg: dict[int, tuple[Any, np.ndarray]] = {}

    def out_degrees(self, W: Any) -> np.ndarray:
        """Per node j, the number of nodes i ≠ j with W_ji ≠ 0 (the receivers of j's message)."""
        hit = self._outdeg.get(id(W))
        if hit is not None and hit[0] is W:
            return hit[1]
        A = np.asarray(as_mixing(W).matrix, dtype=np.float64)
        off = (np.abs(A) > ATOL) & ~np.eye(A.shape[0], dtype=bool)
        deg = off.sum(axis=1).astype(np.int64)
        self._outdeg[id(W)] = (W, deg)
        return deg

    def gossip_mix(self, W: Any, k: int) -> None:
        """SQuARM-SGD's synchronisation step after local step k (see :class:`Gossip`): trigger
        ‖x_j − x̂_j‖² > c_t·η_k² with t = k + 1; fired j: x̂_j += C(x_j − x̂_j) drawn from node j's
        own gossip stream (non-fired nodes draw nothing); x_i += γ((Wᵀx̂)_i − x̂_i). Bits: each
        fired node sends C.bits(d) to each of its out-neighbours (off-diagonal W_ji ≠ 0)."""
        mx = self.mixer(W)
        if mx.kind != "identity":
            g = self.gossip
            c = g.threshold_at(k + 1)
            eta = self.lr_k
            Xw = self.X[: self.m]
            diff = torch.sub(Xw, self.Xhat, out=self._gbuf)
            n2 = (diff * diff).sum(1)
            if math.isfinite(c):
                fired = torch.nonzero(n2 > c * eta * eta).flatten()
            else:
                fired = n2.new_zeros(0, dtype=torch.long)
            if fired.numel():
                idx = fired.tolist()
                Q = g.compressor(diff[fired], generator=[self.ggens[j] for j in idx])
                self.Xhat.index_add_(0, fired, Q)
                self.fires[idx] += 1
                self.bits += int(self.out_degrees(W)[idx].sum()) * self.gossip_bits
            Y = mx(self._gbuf.copy_(self.Xhat), self._gbuf2)  # Wᵀ X̂ (maybe in place)
            Xw.add_(Y.sub_(self.Xhat), alpha=g.gamma)
            self.n_rounds += 1
            self.comm_steps.append(k)
            self.synced = False
        if self.trace:
            self.tr["mixed"].append(mx.kind != "identity")
            self.tr["W"].append(np.asarray(W.matrix if hasattr(W, "matrix") else W, float))

    # -- records ---------------------------------------------------------------------------
    def grad_norm2_u(self) -> float:
        return float(self.problem.grad_norm2(self._unflat(self.u())))

    def record(self, k: int, wall: float, gn: float | None = None) -> None:
        self.materialise()
        u = self.u()
        F = float(self.problem.full_loss(self._unflat(u)))
        if gn is None:
            gn = self.grad_norm2_u()
        if not (math.isfinite(F) and math.isfinite(gn)) or not bool(torch.isfinite(self.X).all()):
            what = (f"F(u_k) = {F}" if not math.isfinite(F) else
                    f"‖∇F(u_k)‖² = {gn}" if not math.isfinite(gn) else "parameters contain NaN/inf")
            raise DivergenceError(k, what)
        cons = float(((self.X - u) ** 2).sum())
        if self.comp is not None:
            mem2 = float((self.mem.mean(0) ** 2).sum())
            memw = float((self.mem ** 2).sum(1).mean())
        else:
            mem2 = memw = 0.0
        run = self.gn_sum / self.gn_weight if self.gn_weight else math.nan
        self.rows.append({"step": k, "loss": F, "grad_norm2": gn, "consensus": cons,
                          "memory_norm2": mem2, "memory_norm2_workers": memw, "bits": self.bits,
                          "rounds": self.n_rounds, "grad_norm2_running": run,
                          "lr": self.spec.lr(k) if k < self.T else math.nan, "wall": wall})

    def result(self, status: str, message: str) -> Result:
        q = self.spec.grad_every
        if q == 1:
            method = "exact: every step"
        elif q > 1:
            method = (f"stratified subsample: one uniformly random step per block of {q} steps, "
                      f"weighted by block length (unbiased)")
        else:
            method = "off (grad_every = 0)"
        return Result.from_rows(
            {**self.spec.to_dict(),
             "engine": {"grad_path": self.grad_path, "synchronous_steps": self.n_sync_steps,
                        "mixing": sorted({mx.kind for _, mx in self._mixers.values()}),
                        "mixing_mode": self.mixing_mode}},
            self.rows,
            grad_norm2_avg=self.gn_sum / self.gn_weight if self.gn_weight else math.nan,
            grad_norm2_avg_method=method, grad_norm2_avg_steps=self.gn_count,
            steps_done=self.k, u_final=self.u().detach().cpu().double().numpy(),
            comm_steps=np.asarray(self.comm_steps, dtype=np.int64),
            grad_norm2_at=(np.arange(self.gn_count, dtype=np.int64) if q == 1
                           else np.asarray(self.gn_at, dtype=np.int64)), status=status,
            message=message, fires=None if self.gossip is None else self.fires.copy())

    def get_trace(self) -> Trace:
        tr = self.tr
        X = np.stack(tr["X"] + [self.X.detach().cpu().double().numpy().copy()])
        mem_last = (self.mem.cpu().double().numpy().copy() if self.comp is not None
                    else np.zeros((self.m, self.d)))
        return Trace(X=X, grads=np.stack(tr["grads"]), direction=np.stack(tr["direction"]),
                     delta=np.stack(tr["delta"]), memory=np.stack(tr["memory"] + [mem_last]),
                     lr=np.asarray(tr["lr"]), mixed=np.asarray(tr["mixed"], dtype=bool),
                     W=tr["W"])

    # -- main loop -------------------------------------------------------------------------
    def run(self, progress: bool = False, save: str | None = None,
            save_every: float = 60.0) -> Result:
        """The main loop. ``save``: checkpoint the result so far (status ``"running"``) to this
        path after a record when ``save_every`` seconds have passed since the last one."""
        self.check_schedule()
        last_save = time.perf_counter()
        T, s, q = self.T, self.spec.record_every, self.spec.grad_every
        t0 = time.perf_counter()
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=T, desc=self.spec.config.name, unit="step")
        pick = -1  # step of the current block at which ‖∇F(u)‖² is evaluated
        try:
            for rnd in self.spec.config.schedule.rounds(T, loss=self.full_loss):
                self.round_synced = self.synced
                for k in range(rnd.start, rnd.end):
                    self.k = k
                    gn = None
                    if q >= 1:
                        if q == 1:
                            pick = k
                        elif k % q == 0:
                            pick = k + int(self.rng.integers(min(q, T - k)))
                        if k == pick:
                            gn = self.grad_norm2_u()
                            if not math.isfinite(gn):
                                raise DivergenceError(k, f"‖∇F(u_k)‖² = {gn}")
                    if k % s == 0:  # the record's running average covers steps j < k
                        self.record(k, time.perf_counter() - t0, gn)
                        if save is not None and time.perf_counter() - last_save >= save_every:
                            self.result("running", f"checkpoint: steps 0..{k - 1} done").save(save)
                            last_save = time.perf_counter()
                    if gn is not None:
                        w = 1 if q == 1 else min(q, T - (k - k % q))
                        self.gn_sum += w * gn
                        self.gn_weight += w
                        self.gn_count += 1
                        if q > 1:
                            self.gn_at.append(k)
                    if rnd.length == 1 and rnd.W is not None and self.synchronous(k, rnd.W):
                        continue
                    self.materialise()
                    self.step(k)
                    if k == rnd.end - 1 and rnd.W is not None:
                        self.mix(rnd.W, k, rnd.length)
                    elif self.trace:
                        self.tr["mixed"].append(False)
                        self.tr["W"].append(None)
                if bar is not None:
                    bar.update(rnd.length)
            self.k = T
            self.record(T, time.perf_counter() - t0)
        except DivergenceError as e:
            e.partial = self.result("diverged", str(e))
            raise
        except KeyboardInterrupt as e:
            e.partial = self.result("interrupted", "KeyboardInterrupt")  # type: ignore[attr-defined]
            raise
        except Exception as e:
            try:
                e.partial = self.result("error", f"{type(e).__name__}: {e}")  # type: ignore
            except Exception:  # pragma: no cover - cannot attach (exotic exception type)
                pass
            raise
        finally:
            if bar is not None:
                bar.close()
        return self.result("completed", "")


def run(spec: RunSpec, *, trace: bool = False, progress: bool = False,
        save: str | None = None, save_every: float = 60.0, mixing: str = "auto",
        fast_path: bool = True) -> Result | tuple[Result, Trace]:
    """Run ``spec``; returns the :class:`Result` (and the :class:`Trace` if ``trace=True``).

    save: path of a JSON file written atomically at the end — also when the run fails, with the
    partial records (status ``"diverged"``/``"error"``/``"interrupted"``); the exception carries
    the same partial result as ``err.partial``; during the run, after a record, every
    ``save_every`` seconds, a checkpoint of the records so far (status ``"running"``), so a
    killed process still leaves its finished work on disk. mixing: ``"auto"`` (by W's
    structure) or force ``"dense"``/``"sparse"``/``"groups"``. fast_path: use a registered
    hand-batched gradient path when one applies to the problem (else ``vmap``). progress: tqdm
    bar.
    """
    eng = _Engine(spec, mixing=mixing, fast_path=fast_path, trace=trace)
    try:
        res = eng.run(progress=progress, save=save, save_every=save_every)
    except BaseException as e:
        partial = getattr(e, "partial", None)
        if save is not None and partial is not None:
            partial.save(save)
        raise
    if save is not None:
        res.save(save)
    return (res, eng.get_trace()) if trace else res


def simulate(problem: Any, config: Config, *, lr: Any, T: int, batch_size: int = 1,
             seed: int = 0, record_every: int = 1, grad_every: int = 1,
             device: str | None = None, dtype: str | None = None, **kw: Any
             ) -> Result | tuple[Result, Trace]:
    """Shorthand for ``run(RunSpec(problem, config, lr, T, ...), **kw)``."""
    spec = RunSpec(problem, config, lr, T, batch_size=batch_size, seed=seed, device=device,
                   dtype=dtype, record_every=record_every, grad_every=grad_every)
    return run(spec, **kw)



# ---------------------------------------------------------------------------------------------
# hand-batched fast path: empirics.problems.MLPClassifier
# ---------------------------------------------------------------------------------------------
def _tanh_backward(dh: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """dh ⊙ (1 − h²) for h = tanh(z): one kernel (aten's tanh_backward) instead of three."""
    return torch.ops.aten.tanh_backward(dh, h)


def _mlp_grad_factory(problem: Any) -> GradFn:
    """Stacked forward/backward of :class:`empirics.problems.MLPClassifier` with batched matmuls.

    Same function as ``problem.loss`` (tanh hidden layers, mean cross-entropy
    logsumexp(z) − z_y, + (l2/2)‖θ‖²), with the gradient written by hand:
    δ_L = (softmax(z_L) − onehot(y))/B, ∂W_k = h_kᵀ δ_k, ∂b_k = Σ_rows δ_k,
    δ_{k−1} = (δ_k W_kᵀ) ⊙ (1 − h_k²); per worker via ``torch.bmm`` (``baddbmm`` for the bias).
    ``out``: optional dict of preallocated gradient tensors (e.g. views into the engine's flat
    gradient buffer), written in place. ``sgd_lr = η``: fused plain SGD — the parameters are
    updated in place, θ ← θ − η∇loss, inside the backward pass (no gradient buffer), and the
    returned losses omit the (l2/2)‖θ‖² term (they serve only the divergence check).
    Tested against the vmap path."""
    L = problem._n_layers
    l2 = float(problem.l2)

    def synchronous_step(u: dict[str, torch.Tensor], batch: tuple[torch.Tensor, ...],
                         eta: float) -> torch.Tensor:
        """All workers at the same u, W = J after the step: u ← u − η·(1/m)Σ_i ∇loss_i(u),
        one model on the m·B concatenated batch (per-worker losses returned, l2 term omitted)."""
        x, y = batch
        m, B = x.shape[:2]
        Ws = [u[f"W{k}"] for k in range(L)]
        bs = [u[f"b{k}"] for k in range(L)]
        hs = [x.reshape(m * B, -1).to(Ws[0].dtype)]
        for k in range(L):
            z = torch.addmm(bs[k], hs[-1], Ws[k])
            hs.append(torch.tanh(z) if k < L - 1 else z)
        z = hs.pop()
        yy = y.reshape(-1, 1)
        lse = torch.logsumexp(z, -1, keepdim=True)
        losses = (lse - torch.gather(z, -1, yy)).view(m, B).mean(1)
        delta = torch.exp(z - lse)
        delta.scatter_add_(-1, yy, torch.full_like(lse, -1.0))
        delta.div_(m * B)
        for k in range(L - 1, -1, -1):
            dh = delta @ Ws[k].T if k > 0 else None
            Ws[k].addmm_(hs[k].T, delta, beta=1.0 - eta * l2, alpha=-eta)
            bs[k].mul_(1.0 - eta * l2).sub_(delta.sum(0), alpha=eta)
            if dh is not None:
                delta = _tanh_backward(dh, hs[k])
        return losses

    def mlp_bmm(params: dict[str, torch.Tensor], batch: tuple[torch.Tensor, ...],
                out: dict[str, torch.Tensor] | None = None, sgd_lr: float | None = None
                ) -> tuple[dict[str, torch.Tensor] | None, torch.Tensor]:
        x, y = batch
        Ws = [params[f"W{k}"] for k in range(L)]
        bs = [params[f"b{k}"] for k in range(L)]
        hs = [x.to(Ws[0].dtype)]
        for k in range(L):
            z = torch.baddbmm(bs[k].unsqueeze(1), hs[-1], Ws[k])
            hs.append(torch.tanh(z) if k < L - 1 else z)
        z = hs.pop()  # logits (m, B, C)
        B = z.shape[1]
        lse = torch.logsumexp(z, -1, keepdim=True)
        losses = (lse.squeeze(-1) - torch.gather(z, -1, y.unsqueeze(-1)).squeeze(-1)).mean(1)
        if l2 and sgd_lr is None:
            sq = sum(torch.linalg.vector_norm(t.reshape(t.shape[0], -1), dim=1) ** 2
                     for t in Ws + bs)
            losses = losses + 0.5 * l2 * sq
        delta = torch.exp(z - lse)
        delta.scatter_add_(-1, y.unsqueeze(-1), torch.full_like(lse, -1.0))
        delta.div_(B)
        g: dict[str, torch.Tensor] = {}
        for k in range(L - 1, -1, -1):
            hT = hs[k].transpose(1, 2)
            dh = torch.bmm(delta, Ws[k].transpose(1, 2)) if k > 0 else None
            if sgd_lr is not None:
                # fused plain SGD: θ ← θ − η(∂θ + l2·θ) = (1 − η·l2)θ − η·∂θ, in place
                Ws[k].baddbmm_(hT, delta, beta=1.0 - sgd_lr * l2, alpha=-sgd_lr)
                bs[k].mul_(1.0 - sgd_lr * l2).sub_(delta.sum(1), alpha=sgd_lr)
            else:
                gW = out[f"W{k}"] if out is not None else None
                gb = out[f"b{k}"] if out is not None else None
                if l2:
                    gW = torch.baddbmm(Ws[k], hT, delta, beta=l2, out=gW)
                    gb = torch.add(delta.sum(1), bs[k], alpha=l2, out=gb)
                else:
                    gW = torch.bmm(hT, delta, out=gW)
                    gb = torch.sum(delta, 1, out=gb)
                g[f"W{k}"], g[f"b{k}"] = gW, gb
            if dh is not None:
                delta = _tanh_backward(dh, hs[k])
        return (None if sgd_lr is not None else g), losses

    mlp_bmm.supports_out = True  # type: ignore[attr-defined]
    mlp_bmm.supports_fused_sgd = True  # type: ignore[attr-defined]
    mlp_bmm.synchronous_step = synchronous_step  # type: ignore[attr-defined]
    return mlp_bmm


def _is_mlp(problem: Any) -> bool:
    from empirics.problems import MLPClassifier

    return type(problem) is MLPClassifier


register_fast_grad(_is_mlp, _mlp_grad_factory)


# ---------------------------------------------------------------------------------------------
# hand-batched fast path: linear models (LogisticRegression, LeastSquares)
# ---------------------------------------------------------------------------------------------
def _linear_grad_factory(problem: Any) -> GradFn:
    """Stacked gradient of the linear finite-sum models, w ∈ ℝ^d per worker, z = x w:

    logistic: loss = mean softplus(−s z) + (l2/2)‖w‖², ∂z = −s σ(−s z)/B;
    least squares: loss = ½ mean (z − y)² + (l2/2)‖w‖², ∂z = (z − y)/B;
    ∇w = xᵀ∂z + l2·w, batched over workers with ``torch.bmm``. ``out``/``sgd_lr`` as in the MLP
    path (fused SGD omits the l2 term from the returned losses). Tested against vmap."""
    from empirics.problems import LogisticRegression

    logistic = isinstance(problem, LogisticRegression)
    l2 = float(problem.l2)

    def synchronous_step(u: dict[str, torch.Tensor], batch: tuple[torch.Tensor, ...],
                         eta: float) -> torch.Tensor:
        """u ← u − η·(1/m)Σ_i ∇loss_i(u) on the concatenated batch (see the MLP path)."""
        w = u["w"]
        x, t = (a.to(w.dtype) for a in batch)
        m, B = x.shape[:2]
        xf = x.reshape(m * B, -1)
        z = (xf @ w).view(m, B)
        if logistic:
            sz = -t * z
            losses = torch.nn.functional.softplus(sz).mean(1)
            dz = torch.sigmoid(sz).mul_(-t)
        else:
            dz = z - t
            losses = 0.5 * (dz * dz).mean(1)
        w.mul_(1.0 - eta * l2).addmv_(xf.T, dz.reshape(-1), alpha=-eta / (m * B))
        return losses

    def linear_bmm(params: dict[str, torch.Tensor], batch: tuple[torch.Tensor, ...],
                   out: dict[str, torch.Tensor] | None = None, sgd_lr: float | None = None
                   ) -> tuple[dict[str, torch.Tensor] | None, torch.Tensor]:
        w = params["w"]
        x, t = (a.to(w.dtype) for a in batch)
        B = x.shape[1]
        z = torch.bmm(x, w.unsqueeze(-1)).squeeze(-1)  # (m, B)
        if logistic:
            sz = -t * z
            losses = torch.nn.functional.softplus(sz).mean(1)
            dz = torch.sigmoid(sz).mul_(-t).div_(B)
        else:
            r = z - t
            losses = 0.5 * (r * r).mean(1)
            dz = r.div_(B)
        if sgd_lr is not None:
            w.unsqueeze(1).baddbmm_(dz.unsqueeze(1), x, beta=1.0 - sgd_lr * l2, alpha=-sgd_lr)
            return None, losses
        if l2:
            losses = losses + 0.5 * l2 * (w * w).sum(1)
        gw = out["w"] if out is not None else torch.empty_like(w)
        torch.baddbmm(w.unsqueeze(1), dz.unsqueeze(1), x, beta=l2, out=gw.unsqueeze(1))
        return {"w": gw}, losses

    linear_bmm.supports_out = True  # type: ignore[attr-defined]
    linear_bmm.supports_fused_sgd = True  # type: ignore[attr-defined]
    linear_bmm.synchronous_step = synchronous_step  # type: ignore[attr-defined]
    return linear_bmm


def _is_linear(problem: Any) -> bool:
    from empirics.problems import LeastSquares, LogisticRegression

    return type(problem) in (LogisticRegression, LeastSquares)


register_fast_grad(_is_linear, _linear_grad_factory)
