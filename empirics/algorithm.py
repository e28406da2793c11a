"""The algorithm core of Cooperative SGD, written once over the rows a process holds.

Algorithm A(τ, W, v) (Wang & Joshi, Cooperative SGD, JMLR 2021, eqs. 7–10) in stacked-row form:
X_k is the n × d matrix (n = m + v) whose row i is worker i's model (rows m.. are auxiliary
variables such as the EASGD centre, which receive no gradient), and

    X_{k+1} = W_kᵀ (X_k − Δ_k),        Δ_k = [δ_k^(1); …; δ_k^(m); 0; …; 0],

with W_k the round's W after the last local step of a round and I otherwise. The two halves
are written here once and run unchanged by the simulator (a process holding all rows) and the
``torch.distributed`` backend (a process per worker), through the communicator protocol of
:mod:`empirics.driver`:

* :class:`LocalStep` — the local step of the worker rows a process holds: direction p (plain g;
  heavy ball b ← βb + g, p = b; Nesterov b ← βb + g, p = g + βb), then the update δ = η_k p, or
  with a compressor C and error feedback (M-DSGD, Zhao, Gao & Li; this toolkit's reading of the
  update) u = e + η_k p, δ = C(u), e ← u − δ; without error feedback (QSGD) δ = C(η_k p).
* :func:`mix_round` — the synchronisation X ← WᵀX through the communicator, with the bits rule
  (:func:`message_bits`) written once.
* :class:`GossipStep` — SQuARM-SGD's event-triggered compressed gossip on public copies
  (Singh, Data, George & Diggavi 2021; update equations as transcribed by a third party, not
  checked against the paper): fired rows j (‖x_j − x̂_j‖² > c_t η²) publish q_j = C(x_j − x̂_j),
  x̂_j += q_j, then x_i += γ(Σ_j W_ji x̂_j − x̂_i).

Randomness: all workers' batches of a step come from one draw of the run's batch generator
(``problem.generator(seed)``, seeded ``seed_for(seed, 0)``): worker i's batch is row i of
``problem.sample_all``, and a process holding only some rows draws the same numbers and keeps
its rows (``problem.sample_rows``). Worker i's compressor draws from :func:`compressor_seed`, its
gossip compressor from :func:`gossip_seed`. A compressor is probed
once at construction with a throwaway generator (no worker's stream is consumed).
"""

from __future__ import annotations

import ctypes
import inspect
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from empirics.configs import Config
from empirics.fastgrads import BUILTIN, GradFn
from empirics.mixers import Mixer
from empirics.problems import seed_for

__all__ = [
    "UNCOMPRESSED_BITS",
    "DivergenceError",
    "auto_tune_allocator",
    "compiled_grad",
    "GossipStep",
    "LocalStep",
    "compressor_seed",
    "gossip_seed",
    "grad_fn_for",
    "message_bits",
    "mix_round",
    "register_fast_grad",
    "tune_allocator",
    "vmap_grad",
]

UNCOMPRESSED_BITS = 32  #: bits per coordinate of an uncompressed message (float32 on the wire)


class DivergenceError(RuntimeError):
    """The run diverged. ``step``: the step at which it was detected; ``what``: what diverged;
    ``partial``: the :class:`~empirics.records.Result` recorded so far (set by the driver)."""

    def __init__(self, step: int, what: str, partial: Any = None):
        super().__init__(f"run diverged at step {step}: {what}")
        self.step, self.what, self.partial = step, what, partial


def compressor_seed(seed: int, worker: int) -> int:
    """Seed of worker ``worker``'s compressor generator: ``seed_for(seed_for(seed, worker), 1)``
    (a stream separate from the run's batch generator ``seed_for(seed, 0)``)."""
    return seed_for(seed_for(seed, worker), 1)


def gossip_seed(seed: int, worker: int) -> int:
    """Seed of node ``worker``'s gossip-compressor generator (SQuARM-SGD / CHOCO-SGD):
    ``seed_for(seed_for(seed, worker), 2)`` (separate from its batch and error-feedback
    streams)."""
    return seed_for(seed_for(seed, worker), 2)


def _np(t: torch.Tensor) -> np.ndarray:
    """A float64 numpy copy of ``t``."""
    return t.detach().cpu().double().numpy().copy()


def _generators(seeds: Sequence[int], device: torch.device) -> list[torch.Generator]:
    return [torch.Generator(device=device).manual_seed(s) for s in seeds]


def _batch_generator(problem: Any, seed: int, device: torch.device) -> torch.Generator:
    """The run's batch generator (``problem.generator(seed, device)``; ``seed_for(seed, 0)`` for
    a problem without that method)."""
    make = getattr(problem, "generator", None)
    if make is not None:
        return make(seed, device=device)
    return torch.Generator(device=device).manual_seed(seed_for(seed, 0))


def _accepts_out(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` takes an ``out=`` keyword (a batch buffer it overwrites in place)."""
    try:
        return "out" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


_ALLOCATOR: dict[str, bool] = {}


def tune_allocator(threshold: int = 2**31 - 1) -> bool:
    """Ask glibc malloc to keep large blocks instead of returning them to the OS (the effect of
    ``MALLOC_MMAP_THRESHOLD_=threshold MALLOC_TRIM_THRESHOLD_=threshold``). Returns False where
    ``mallopt`` is unavailable (not glibc).

    Why: glibc serves every allocation above its mmap threshold (which adapts up to 32 MiB) with
    a fresh ``mmap`` and unmaps it on ``free``, so a per-step temporary above 32 MiB (a gathered
    batch, the autograd temporaries of a large model on the generic path, a compressor's
    intermediate arrays) is page-faulted in — and zeroed by the kernel — afresh every step.
    Measured on a 2-core CPU: the steps of such runs took 1.8–2.1× longer (the MLP
    784-256-10 at m = 64 on the generic path ≈ 4×); with this call they cost the same per
    element as below the cliff. The simulator and the distributed backend call it once per
    process on their first CPU run (:func:`auto_tune_allocator`); ``COOPSGD_TUNE_ALLOCATOR=0``
    turns that off. Process-wide: freed memory stays in the process for reuse (its resident
    size stays near its peak) instead of going back to the OS."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        return bool(libc.mallopt(M_MMAP_THRESHOLD, int(threshold))) and bool(
            libc.mallopt(M_TRIM_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):
        return False


def auto_tune_allocator(device: torch.device) -> bool:
    """:func:`tune_allocator` once per process, for CPU runs, unless the environment sets
    ``COOPSGD_TUNE_ALLOCATOR=0``; returns whether the allocator is tuned."""
    if device.type != "cpu":
        return _ALLOCATOR.get("tuned", False)
    if "tuned" not in _ALLOCATOR:
        off = os.environ.get("COOPSGD_TUNE_ALLOCATOR", "1").strip().lower() in ("0", "false",
                                                                                "no", "off")
        _ALLOCATOR["tuned"] = False if off else tune_allocator()
    return _ALLOCATOR["tuned"]


def _probe(comp: Any, d: int, dtype: torch.dtype, device: torch.device) -> None:
    """Fail early if ``comp`` cannot act on d-vectors (a throwaway generator: no stream used)."""
    comp(torch.zeros((1, d), dtype=dtype, device=device),
         generator=torch.Generator(device=device).manual_seed(0))


# ---------------------------------------------------------------------------------------------
# stacked gradients
# ---------------------------------------------------------------------------------------------
#: user-registered hand-batched gradient paths (consulted before the built-in ones)
_FAST_GRADS: list[tuple[Callable[[Any], bool], Callable[[Any], GradFn]]] = []


def register_fast_grad(applies: Callable[[Any], bool], factory: Callable[[Any], GradFn]) -> None:
    """Register a hand-batched gradient path: ``factory(problem)`` returns a function
    ``(stacked_params, stacked_batch) -> (stacked_grads, per_worker_losses)`` with the same
    semantics as ``vmap(grad_and_value(problem.loss))``, used when ``applies(problem)``.

    Optional attributes of the function: ``supports_out`` (it accepts ``out=`` preallocated
    gradient tensors), ``supports_fused_sgd`` (it accepts ``sgd_lr=η`` and applies plain SGD
    in place inside its backward pass, returning no gradient) and ``synchronous_step(u, batch,
    η)`` (one model on the concatenated batch of all workers, for W = J with τ = 1)."""
    _FAST_GRADS.append((applies, factory))


def vmap_grad(problem: Any) -> GradFn:
    """The generic stacked gradient, with the semantics of
    ``vmap(grad_and_value(problem.loss))`` over the leading worker axis of params and batch.

    Written as one ``vmap`` of the forward pass (the per-worker losses ℓ_i, shape (m,)) and
    one reverse pass of Σ_i ℓ_i: worker i's loss depends only on its own row (``vmap``), so
    ∂(Σ_j ℓ_j)/∂θ_i = ∇ℓ_i(θ_i) — the same batched kernels as ``vmap(grad)``, without its
    per-step pytree wrapping (≈ half the fixed cost on a tiny problem). Parameters the loss
    does not use get zero gradients. Options as the hand-batched paths: ``out`` (gradient
    tensors written in place), ``sgd_lr = η`` (plain SGD applied in place, θ ← θ − η∇ℓ, one
    fused ``_foreach_add_`` per step, no gradient buffer; returns no gradient).

    A problem whose loss is ``data_loss(θ, batch) + ½·λ‖θ‖²`` over all its parameters (it
    defines ``data_loss`` and ``l2 = λ``) has the ridge folded outside autograd: ∇ℓ_i =
    ∇data_loss_i + λθ_i, with SGD θ ← (1 − ηλ)θ − η∇data_loss (the same update up to
    rounding; autograd's square, its two backward products and their sum over all m·d
    parameters are gone), and the returned losses add ½λ‖θ_i‖² per worker."""
    from torch.func import vmap

    data_loss = getattr(problem, "data_loss", None)
    ridge = float(getattr(problem, "l2", 0.0) or 0.0) if callable(data_loss) else 0.0

    def f(params: dict[str, torch.Tensor], batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return data_loss(params, batch) if ridge else problem.loss(params, batch)

    vloss = vmap(f, in_dims=(0, 0))

    def vmap_autograd(params: dict[str, torch.Tensor], batch: tuple[torch.Tensor, ...],
                      out: dict[str, torch.Tensor] | None = None, sgd_lr: float | None = None
                      ) -> tuple[dict[str, torch.Tensor] | None, torch.Tensor]:
        names = list(params)
        with torch.enable_grad():
            leaves = {k: params[k].detach().requires_grad_() for k in names}
            losses = vloss(leaves, batch)
            grads = torch.autograd.grad(losses.sum(), [leaves[k] for k in names],
                                        allow_unused=True, materialize_grads=True)
        losses = losses.detach()
        plist = [params[k] for k in names]
        if ridge:
            m = losses.shape[0]
            losses = losses + 0.5 * ridge * sum(
                torch.linalg.vector_norm(p.reshape(m, -1), dim=1) ** 2 for p in plist)
            if sgd_lr is not None:
                torch._foreach_mul_(plist, 1.0 - sgd_lr * ridge)
            else:
                torch._foreach_add_(list(grads), plist, alpha=ridge)
        if sgd_lr is not None:
            torch._foreach_add_(plist, list(grads), alpha=-sgd_lr)
            return None, losses
        if out is not None:
            torch._foreach_copy_([out[k] for k in names], list(grads))
            return dict(out), losses
        return dict(zip(names, grads, strict=True)), losses

    vmap_autograd.supports_out = True  # type: ignore[attr-defined]
    vmap_autograd.supports_fused_sgd = True  # type: ignore[attr-defined]
    return vmap_autograd


def grad_fn_for(problem: Any, fast_path: bool = True) -> tuple[GradFn, str]:
    """The stacked gradient function for ``problem`` and its name (``"vmap"`` or the fast
    path's)."""
    if fast_path:
        for applies, factory in [*_FAST_GRADS, *BUILTIN]:
            if applies(problem):
                fn = factory(problem)
                return fn, getattr(fn, "__name__", "fast")
    return vmap_grad(problem), "vmap"


#: compiled generic gradients, one per problem object (compiling takes seconds to a minute)
_COMPILED: dict[int, tuple[Any, GradFn, str]] = {}


def _cpp_compiler() -> str | None:
    """The C++ compiler torch.compile's CPU backend would use, or None."""
    import shutil

    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def compiled_grad(problem: Any) -> tuple[GradFn, str]:
    """The generic stacked gradient ``vmap(grad_and_value(problem.loss))`` through
    ``torch.compile`` (inductor: the per-step Python and dispatch overhead goes, elementwise
    work is fused; results equal the eager path up to float rounding), with a clean fallback:
    where no C++ compiler is found (CPU) or compiling fails, a warning and the eager
    :func:`vmap_grad`. Compiling takes tens of seconds on a small CPU, once per problem object
    and process — worth it for long runs of models without a hand-batched path. Returns
    ``(function, name)``, the name ``"vmap+compiled"`` or ``"vmap"``."""
    import warnings

    hit = _COMPILED.get(id(problem))
    if hit is not None and hit[0] is problem:
        return hit[1], hit[2]
    eager = vmap_grad(problem)
    dev = torch.device(getattr(problem, "device", "cpu"))
    if dev.type == "cpu" and _cpp_compiler() is None:
        warnings.warn("compile=True: no C++ compiler found (torch.compile's CPU backend needs "
                      "one); running the generic gradient path eagerly", stacklevel=3)
        return eager, "vmap"
    from torch.func import grad_and_value, vmap

    def f(params: dict[str, torch.Tensor], batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return problem.loss(params, batch)

    inner = torch.compile(vmap(grad_and_value(f), in_dims=(0, 0)), dynamic=False)
    state = {"eager": False}

    def vmap_compiled(params: dict[str, torch.Tensor], batch: tuple[torch.Tensor, ...],
                      out: dict[str, torch.Tensor] | None = None,
                      sgd_lr: float | None = None
                      ) -> tuple[dict[str, torch.Tensor] | None, torch.Tensor]:
        if state["eager"]:
            return eager(params, batch, out=out, sgd_lr=sgd_lr)
        try:  # the first call compiles (and a new shape recompiles)
            grads, losses = inner(params, batch)
        except Exception as e:  # any compiler failure: eager from now on (a genuine error
            # of the loss is raised again by the eager call)
            msg = str(e).splitlines()[0] if str(e) else ""
            warnings.warn(f"compile=True: torch.compile failed ({type(e).__name__}: {msg}); "
                          f"running the generic gradient path eagerly", stacklevel=2)
            state["eager"] = True
            return eager(params, batch, out=out, sgd_lr=sgd_lr)
        names = list(params)
        if sgd_lr is not None:
            torch._foreach_add_([params[k] for k in names], [grads[k] for k in names],
                                alpha=-sgd_lr)
            return None, losses
        if out is not None:
            torch._foreach_copy_([out[k] for k in names], [grads[k] for k in names])
            return dict(out), losses
        return grads, losses

    vmap_compiled.supports_out = True  # type: ignore[attr-defined]
    vmap_compiled.supports_fused_sgd = True  # type: ignore[attr-defined]
    if len(_COMPILED) >= 8:  # a small cache: keep the most recent problems
        _COMPILED.pop(next(iter(_COMPILED)))
    _COMPILED[id(problem)] = (problem, vmap_compiled, "vmap+compiled")
    return vmap_compiled, "vmap+compiled"


# ---------------------------------------------------------------------------------------------
# the local step
# ---------------------------------------------------------------------------------------------
class LocalStep:
    """The local step of the worker rows ``rows`` (global worker indices) a process holds.

    ``__call__(Xw, params, k, eta)`` updates ``Xw`` (len(rows) × d, the held worker rows) in
    place; ``params`` are the per-parameter views of ``Xw`` (leading axis = held rows) that the
    gradient function reads. Every step draws all m workers' batches from the run's one batch
    generator: a process holding every worker with the problem's ``sample_all`` (into a batch
    buffer reused across steps when ``sample_all`` takes ``out=``), one holding a subset with
    ``sample_rows`` (the same draw, its rows kept), so the numbers agree.

    Options: ``fast_path`` (use a registered hand-batched gradient), ``compile`` (run the
    generic path through ``torch.compile``, :func:`compiled_grad`; no effect on a fast path),
    ``trace`` (an object with
    ``begin()``, called before the step, and ``step(G, direction, memory, eta, delta)``, given
    float64 numpy copies, for identity checks; disables the fused SGD path),
    ``record_payloads`` (compress through ``encode``/``decode`` and keep the round's payloads in
    :attr:`payloads`, for a backend that sends them).
    """

    def __init__(self, problem: Any, cfg: Config, rows: Sequence[int], d: int, *,
                 batch_size: int, seed: int, device: torch.device, dtype: torch.dtype,
                 fast_path: bool = True, trace: Any = None,
                 record_payloads: bool = False, compile: bool = False):
        self.problem, self.cfg = problem, cfg
        self.rows = [int(i) for i in rows]
        self.d, self.device, self.dtype = d, device, dtype
        self.batch_size = batch_size
        #: mini-batch losses above this (or NaN/inf) are divergence (set by the driver)
        self.loss_limit = math.inf
        r = len(self.rows)
        auto_tune_allocator(device)
        self.grad_fn, self.grad_path = grad_fn_for(problem, fast_path)
        if compile and self.grad_path == "vmap":
            self.grad_fn, self.grad_path = compiled_grad(problem)
        beta = cfg.momentum
        self.comp = cfg.compressor
        self.trace = trace
        #: plain SGD through a fast path that applies the update inside its backward pass
        self.fused = (getattr(self.grad_fn, "supports_fused_sgd", False) and not beta
                      and self.comp is None and trace is None)
        if self.fused:
            self.grad_path += "+fused-sgd"
        self.G = (torch.empty((r, d), dtype=dtype, device=device) if not self.fused
                  else torch.empty(0, dtype=dtype, device=device))
        self.writes_out = getattr(self.grad_fn, "supports_out", False) and not self.fused
        self._out: tuple[int, dict[str, torch.Tensor]] | None = None
        #: one model on the m·B batch (W = J, τ = 1, all rows equal); see the simulator
        self.sync_step = getattr(self.grad_fn, "synchronous_step", None) if self.fused else None
        #: the run's one batch generator: every step draws all m workers' batches from it at
        #: once, and a process keeps its rows (:meth:`Problem.sample_rows`)
        self.gen = _batch_generator(problem, seed, device)
        self._batch: tuple[torch.Tensor, ...] | None = None  # reused batch buffer (out=)
        if self.rows == list(range(problem.m)):
            self._batch_out = _accepts_out(problem.sample_all)
            self._sample = self._sample_all
        else:
            self._sample = self._sample_rows
        self.mom = torch.zeros((r, d), dtype=dtype, device=device) if beta else None
        self.dirbuf = torch.empty((r, d), dtype=dtype, device=device) \
            if (beta and cfg.nesterov) else None
        self.mem: torch.Tensor | None = None
        self.comp_bits = 0
        self.record_payloads = record_payloads and self.comp is not None
        self.payloads: list[Any] = []
        if self.comp is not None:
            self.mem = torch.zeros((r, d), dtype=dtype, device=device)
            self.U = torch.empty((r, d), dtype=dtype, device=device)
            self.cgens = _generators([compressor_seed(seed, i) for i in self.rows], device)
            _probe(self.comp, d, dtype, device)
            self.comp_bits = int(self.comp.bits(d))

    def _sample_all(self) -> tuple[torch.Tensor, ...]:
        if self._batch_out and self._batch is not None:
            return self.problem.sample_all(self.batch_size, self.gen, out=self._batch)
        batch = self.problem.sample_all(self.batch_size, self.gen)
        if self._batch_out:
            self._batch = batch
        return batch

    def _sample_rows(self) -> tuple[torch.Tensor, ...]:
        rows_fn = getattr(self.problem, "sample_rows", None)
        if rows_fn is not None:
            return rows_fn(self.rows, self.batch_size, self.gen)
        full = self.problem.sample_all(self.batch_size, self.gen)
        idx = torch.as_tensor(self.rows, dtype=torch.long, device=full[0].device)
        return tuple(t.index_select(0, idx) for t in full)

    def sample(self) -> tuple[torch.Tensor, ...]:
        """The held rows' next mini-batches (leading axis = held rows)."""
        return self._sample()

    def check_losses(self, losses: torch.Tensor, k: int, params_finite: Callable[[], bool]
                     ) -> None:
        """DivergenceError naming the worker whose mini-batch loss is NaN/inf or above
        :attr:`loss_limit` (the divergence rule, set by the driver; one device sync)."""
        if not bool((losses <= self.loss_limit).all()):  # False for NaN too
            i = int(torch.nonzero(~(losses <= self.loss_limit))[0])
            x = float(losses[i])
            what = (f"above the divergence limit {self.loss_limit:.6g}" if math.isfinite(x)
                    else f"(parameters {'finite' if params_finite() else 'contain NaN/inf'})")
            raise DivergenceError(
                k, f"mini-batch loss of worker {self.rows[i] if len(self.rows) > i else i} is "
                   f"{x:.6g} {what}")

    def _grad_out(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Views of the gradient buffer G shaped like ``params`` (cached)."""
        if self._out is None or self._out[0] != id(self.G):
            out, off = {}, 0
            for name, t in params.items():
                sz = math.prod(t.shape[1:])
                out[name] = self.G[:, off:off + sz].view(t.shape)
                off += sz
            self._out = (id(self.G), out)
        return self._out[1]

    def begin_round(self) -> None:
        """Forget the payloads of the previous round."""
        self.payloads.clear()

    def compress(self, U: torch.Tensor) -> torch.Tensor:
        """C(U) row by row with each row's own generator (through the wire format when
        payloads are recorded: decode(encode(U)) equals C(U) bit for bit)."""
        if self.record_payloads:
            p = self.comp.encode(U, generator=self.cgens)
            self.payloads.append(p)
            return self.comp.decode(p)
        return self.comp(U, generator=self.cgens)

    def __call__(self, Xw: torch.Tensor, params: dict[str, torch.Tensor], k: int,
                 eta: float) -> None:
        cfg = self.cfg
        if self.trace is not None:
            self.trace.begin()
        batch = self._sample()
        if self.fused:
            _, losses = self.grad_fn(params, batch, sgd_lr=eta)
            self.check_losses(losses, k, lambda: bool(torch.isfinite(Xw).all()))
            return
        if self.writes_out:
            _, losses = self.grad_fn(params, batch, out=self._grad_out(params))
        else:
            grads, losses = self.grad_fn(params, batch)
            torch.cat([grads[nm].reshape(len(self.rows), -1) for nm in params], dim=1,
                      out=self.G)
        self.check_losses(losses, k, lambda: bool(torch.isfinite(Xw).all()))
        G = self.G
        if self.mom is not None:
            self.mom.mul_(cfg.momentum).add_(G)
            direction = (torch.add(G, self.mom, alpha=cfg.momentum, out=self.dirbuf)
                         if cfg.nesterov else self.mom)
        else:
            direction = G
        if self.trace is not None:
            snap = (_np(G), _np(direction),
                    _np(self.mem) if self.mem is not None else np.zeros(tuple(G.shape)))
        if self.comp is not None:
            if cfg.error_feedback:
                torch.add(self.mem, direction, alpha=eta, out=self.U)
            else:  # no memory (QSGD-style): δ = C(η p), e stays 0
                torch.mul(direction, eta, out=self.U)
            delta = self.compress(self.U)
            if cfg.error_feedback:
                torch.sub(self.U, delta, out=self.mem)
            Xw.sub_(delta)
        else:
            Xw.add_(direction, alpha=-eta)
            delta = None
        if self.trace is not None:
            self.trace.step(*snap, eta, _np(delta) if delta is not None else _np(eta * direction))


# ---------------------------------------------------------------------------------------------
# synchronisation: mixing rounds and the bits rule
# ---------------------------------------------------------------------------------------------
def message_bits(d: int, comp_bits: int | None, length: int, average_from_synced: bool
                 ) -> tuple[int, bool]:
    """(bits of one message of a mixing round, whether the round's compressed updates are sent).

    A message is a row, 32·d bits (float32 on the wire). With an error-feedback/quantising
    compressor, when W = J and all rows were equal at the round start, each worker can send its
    round's compressed updates instead: min(τ·C.bits(d), 32·d) bits, and compressed payloads are
    actually exchanged when τ·C.bits(d) < 32·d. Decentralized W with a compressor is counted
    uncompressed (neighbours need full models without CHOCO-style gossip)."""
    per = UNCOMPRESSED_BITS * d
    if comp_bits is None or not average_from_synced:
        return per, False
    return min(per, length * comp_bits), length * comp_bits < per


def mix_round(comm: Any, W: Any, mixer: Mixer, length: int, round_synced: bool,
              local: LocalStep) -> int:
    """X ← WᵀX through ``comm`` at the end of a round; returns the bits sent by the nodes this
    process counts (``comm.counted_nodes``): messages per node (:attr:`Mixer.row_messages`)
    times :func:`message_bits`."""
    per, compressed = message_bits(local.d, local.comp_bits if local.comp is not None else None,
                                   length, mixer.is_average and round_synced)
    comm.mix(W, mixer, payloads=local.payloads if compressed and local.record_payloads
             else None)
    return per * int(mixer.row_messages[comm.counted_nodes].sum())


class GossipStep:
    """SQuARM-SGD's synchronisation step (``Config.gossip``) for the rows a process holds.

    At the end of a round with matrix W after local step k (η = η_k, t = k + 1): row j fires iff
    ‖x_j − x̂_j‖² > c_t·η²; a fired row publishes q_j = C(x_j − x̂_j) (drawn from its own gossip
    stream; non-fired rows draw nothing) and every holder of x̂_j adds it; then
    x_i ← x_i + γ(Σ_j W_ji x̂_j − x̂_i). Bits: C.bits(d) per fired row and out-neighbour (directed
    edge of W); silent rows send nothing. The public copies live in the communicator:
    ``public_own()`` (the live tensor of the held rows' copies, updated in place by
    ``publish``), ``publish(W, mixer, fired, payload, q)`` (send the fired rows' payloads to
    their out-neighbours and add the decoded q to every copy of those rows),
    ``public_mix(W, mixer)`` (Σ_j W_ji x̂_j for the held rows i)."""

    def __init__(self, cfg: Config, rows: Sequence[int], d: int, *, seed: int,
                 device: torch.device, dtype: torch.dtype):
        self.g = cfg.gossip
        self.rows = np.asarray(rows, dtype=np.int64)
        self.delta = self.g.check(d)
        _probe(self.g.compressor, d, dtype, device)
        self.bits_per = int(self.g.compressor.bits(d))
        self.ggens = _generators([gossip_seed(seed, int(i)) for i in self.rows], device)
        self.fires = np.zeros(len(self.rows), dtype=np.int64)

    def __call__(self, comm: Any, Xw: torch.Tensor, W: Any, mixer: Mixer, k: int,
                 eta: float) -> int:
        g, comp = self.g, self.g.compressor
        c = g.threshold_at(k + 1)
        own = comm.public_own()
        diff = Xw - own
        n2 = (diff * diff).sum(1)
        if math.isfinite(c):
            fired = torch.nonzero(n2 > c * eta * eta).flatten().tolist()
        else:
            fired = []
        payload = q = None
        if fired:
            payload = comp.encode(diff[fired], generator=[self.ggens[j] for j in fired])
            q = comp.decode(payload)  # = C(x_j − x̂_j) bit for bit (the compressor contract)
        comm.publish(W, mixer, fired, payload, q)
        Y = comm.public_mix(W, mixer)
        Xw.add_(Y.sub_(own), alpha=g.gamma)
        self.fires[fired] += 1
        return int(mixer.out_degree[self.rows[fired]].sum()) * self.bits_per
