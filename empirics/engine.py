"""The simulator: all m workers (and v auxiliary variables) stacked on one device.

It runs the algorithm core of :mod:`empirics.algorithm` (Cooperative SGD A(τ, W, v), Wang &
Joshi, JMLR 2021, eqs. 7–10, in stacked-row form X_{k+1} = W_kᵀ(X_k − Δ_k)) through the driver loop
of :mod:`empirics.driver`, with a communicator that holds every row in one n × d tensor:

* mixing uses W's structure (:class:`empirics.mixers.Mixer`): W = I → nothing; block-diagonal
  constant blocks (J, group averaging) → means over groups; sparse W → neighbour sums; otherwise
  one dense matmul; results are double-buffered (buffers swapped, not copied back);
* a round of length 1 ending with W = J while all rows are equal (synchronous SGD) runs as one
  model on the concatenated m·B batch when the gradient path offers it, the common model held
  once until a record or another kind of step needs the m rows (same arithmetic up to rounding;
  tested);
* SQuARM-SGD's public copies X̂ are one m × d tensor.

Identities the tests check on real trajectories (float64, machine precision): u_k = mean of the
n rows satisfies u_{k+1} = u_k − (1/n) Σ_i δ_k^(i) whenever W 1 = 1; for plain SGD this is
u_{k+1} = u_k − η_eff (1/m) Σ_i g_k^(i), η_eff = mη/(m+v) (JMLR eqs. 13–14). With error
feedback the virtual sequence ũ_k = u_k − (1/n) Σ_i e_k^(i) follows ũ_{k+1} = ũ_k − (η_k/n)
Σ_i p_k^(i).

Every tensor is created on ``spec.device``; the same code path runs on CPU and GPU.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch

from empirics.algorithm import (
    UNCOMPRESSED_BITS,
    DivergenceError,
    LocalStep,
    compressor_seed,
    gossip_seed,
    grad_fn_for,
    register_fast_grad,
    tune_allocator,
    vmap_grad,
)
from empirics.driver import Driver, Layout, check_schedule
from empirics.mixers import MIXING_MODES, Mixer
from empirics.records import Result, Trace
from empirics.spec import DTYPES, RunSpec
from theory.mixing import as_mixing
from theory.stepsizes import Constant, InverseTime, LRFunction, Stagewise, as_lr

__all__ = [
    "UNCOMPRESSED_BITS",
    "Constant",
    "DivergenceError",
    "InverseTime",
    "LRFunction",
    "RunSpec",
    "Simulator",
    "StackedCommunicator",
    "Stagewise",
    "as_lr",
    "compressor_seed",
    "gossip_seed",
    "grad_fn_for",
    "register_fast_grad",
    "run",
    "simulate",
    "tune_allocator",
    "vmap_grad",
]

_TRACE_LIMIT = 50_000_000  # numbers stored by trace=True


class StackedCommunicator:
    """Every row in one n × d tensor ``X`` (rows 0..m−1 workers, m.. auxiliary variables); the
    :class:`empirics.driver.Communicator` of the simulator. Collectives are local reductions.
    ``mixing``: ``"auto"`` (by W's structure) or a forced strategy of :class:`Mixer`."""

    is_root = True

    def __init__(self, spec: RunSpec, layout: Layout, x0: torch.Tensor, mixing: str = "auto"):
        if mixing not in MIXING_MODES or mixing == "identity":
            raise ValueError(f"mixing must be one of "
                             f"{', '.join(repr(m) for m in MIXING_MODES if m != 'identity')} "
                             f"(got {mixing!r})")
        cfg = spec.config
        self.m, self.v, self.n, self.d = cfg.m, cfg.v, cfg.n, layout.d
        self.layout, self.mixing_mode = layout, mixing
        self.device, self.dtype = x0.device, x0.dtype
        self.rows = list(range(self.m))
        self.counted_nodes = np.arange(self.n)
        self.X = x0.expand(self.n, self.d).clone()
        self._buf: torch.Tensor | None = None  # second n × d buffer, allocated on first need
        self._set_views()
        self.shared: torch.Tensor | None = None  # when set, every row of X equals it
        self.n_sync_steps = 0  # steps taken by the synchronous shortcut
        self._mixers: dict[int, tuple[Any, Mixer]] = {}
        self.gossip = cfg.gossip
        if self.gossip is not None:
            self.Xhat = self.X[: self.m].clone()  # public copies x̂_i = x₀ (known to every node)
            self._gbuf = torch.empty_like(self.Xhat)
            self._gbuf2 = torch.empty_like(self.Xhat)

    def _set_views(self) -> None:
        self.wviews = self.layout.views(self.X[: self.m])

    # -- structure -------------------------------------------------------------------------
    def mixer(self, W: Any) -> Mixer:
        hit = self._mixers.get(id(W))
        if hit is not None and hit[0] is W:
            return hit[1]
        M = as_mixing(W)
        if M.n != self.n:
            raise ValueError(f"W size must equal m + v = {self.m} + {self.v} = {self.n} "
                             f"(the schedule gave a {M.n}×{M.n} W)")
        mx = Mixer(M, self.device, self.dtype, self.mixing_mode)
        self._mixers[id(W)] = (W, mx)
        return mx

    # -- rows ------------------------------------------------------------------------------
    def materialise(self) -> None:
        """Write the lazily held common model back into every row of X."""
        if self.shared is not None:
            self.X.copy_(self.shared.expand_as(self.X))
            self.shared = None

    def worker_rows(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.materialise()
        return self.X[: self.m], self.wviews

    def begin_round(self, synced: bool) -> None:
        pass

    def synchronous(self, k: int, W: Any, local: LocalStep, eta: float, synced: bool) -> bool:
        """One step of a length-1 round ending with W = J while all rows are equal: every
        worker starts from u and the mean of their updates is applied to u directly,
        u ← u − η·(1/m)Σ_i g_i (what X ← Jᵀ(X − ηG) computes, without storing m copies).
        Returns False (nothing done) when the shortcut does not apply."""
        if local.sync_step is None or self.v or self.gossip is not None or not (
                synced or self.shared is not None):
            return False
        if not self.mixer(W).is_average:
            return False
        batch = local.sample()
        if self.shared is None:
            self.shared = self.X[0].clone()
        shared = self.shared
        losses = local.sync_step(self.layout.unflat(shared), batch, eta)
        local.check_losses(losses, k, lambda: bool(torch.isfinite(shared).all()))
        self.n_sync_steps += 1
        return True

    # -- synchronisation -------------------------------------------------------------------
    def mix(self, W: Any, mixer: Mixer, payloads: list[Any] | None) -> None:
        """X ← WᵀX (compressed payloads need no exchange: every row is here)."""
        if self._buf is None and not mixer.is_average:
            self._buf = torch.empty_like(self.X)
        out = mixer(self.X, self._buf)
        if out is not self.X:  # double buffering: swap instead of copying back
            self.X, self._buf = out, self.X
            self._set_views()

    def public_own(self) -> torch.Tensor:
        return self.Xhat

    def publish(self, W: Any, mixer: Mixer, fired: list[int], payload: Any,
                q: torch.Tensor | None) -> None:
        if fired:
            self.Xhat.index_add_(0, torch.as_tensor(fired, device=self.device), q)

    def public_mix(self, W: Any, mixer: Mixer) -> torch.Tensor:
        """Wᵀ X̂ restricted to the worker rows (maybe computed in place of a buffer)."""
        return mixer(self._gbuf.copy_(self.Xhat), self._gbuf2)

    # -- reductions ------------------------------------------------------------------------
    def average(self) -> torch.Tensor:
        return self.shared if self.shared is not None else self.X.mean(0)

    def stats(self, u: torch.Tensor, mem: torch.Tensor | None) -> tuple[float, float, float]:
        """(Σ_i ‖x_i − u‖² over the n rows, ‖(1/m)Σ_i e_i‖², (1/m)Σ_i ‖e_i‖²)."""
        self.materialise()
        cons = float(((self.X - u) ** 2).sum())
        if mem is None:
            return cons, 0.0, 0.0
        return cons, float((mem.mean(0) ** 2).sum()), float((mem ** 2).sum(1).mean())

    def totals(self, x: np.ndarray) -> np.ndarray:
        return x

    def broadcast(self, x: float) -> float:
        return x

    def progress(self, k: int) -> None:
        pass

    def communicating(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def sync_device(self) -> None:
        pass

    def info(self, local: LocalStep) -> dict[str, Any]:
        return {"engine": {"grad_path": local.grad_path, "synchronous_steps": self.n_sync_steps,
                           "mixing": sorted({mx.kind for _, mx in self._mixers.values()}),
                           "mixing_kernels": sorted({mx.strategy
                                                     for _, mx in self._mixers.values()}),
                           "mixing_mode": self.mixing_mode}}


class _Tracer:
    """Per-step state of a small run (:class:`empirics.records.Trace`)."""

    def __init__(self, comm: StackedCommunicator, T: int):
        n_num = (T + 1) * comm.d * (comm.n + 4 * comm.m)
        if n_num > _TRACE_LIMIT:
            raise ValueError(f"trace=True would store {n_num:.3g} numbers (T × (m+v+4m) × d); "
                             f"the limit is {_TRACE_LIMIT:.0e}: use a smaller T, m or problem")
        self.comm = comm
        self.tr: dict[str, list] = {k: [] for k in ("X", "grads", "direction", "delta",
                                                     "memory", "lr", "mixed", "W")}

    def begin(self) -> None:
        self.tr["X"].append(self.comm.X.detach().cpu().double().numpy().copy())

    def step(self, G: np.ndarray, direction: np.ndarray, memory: np.ndarray, eta: float,
             delta: np.ndarray) -> None:
        tr = self.tr
        tr["grads"].append(G)
        tr["direction"].append(direction)
        tr["memory"].append(memory)
        tr["lr"].append(eta)
        tr["delta"].append(delta)
        tr["mixed"].append(False)
        tr["W"].append(None)

    def mixed(self, W: Any, applied: bool) -> None:
        self.tr["mixed"][-1] = applied
        self.tr["W"][-1] = np.asarray(W.matrix if hasattr(W, "matrix") else W, float)

    def trace(self, local: LocalStep) -> Trace:
        tr, comm = self.tr, self.comm
        X = np.stack(tr["X"] + [comm.X.detach().cpu().double().numpy().copy()])
        mem_last = (local.mem.cpu().double().numpy().copy() if local.mem is not None
                    else np.zeros((comm.m, comm.d)))
        return Trace(X=X, grads=np.stack(tr["grads"]), direction=np.stack(tr["direction"]),
                     delta=np.stack(tr["delta"]), memory=np.stack(tr["memory"] + [mem_last]),
                     lr=np.asarray(tr["lr"]), mixed=np.asarray(tr["mixed"], dtype=bool),
                     W=tr["W"])


class Simulator:
    """One run of ``spec`` with every row on one device: the stacked communicator, the local
    step of all m workers and the driver loop. ``mixing``: ``"auto"`` or a forced
    :class:`Mixer` strategy; ``fast_path``: use a registered hand-batched gradient when one
    applies; ``compile``: run the generic gradient path through ``torch.compile``
    (:func:`empirics.algorithm.compiled_grad`); ``trace``: keep the per-step state
    (:meth:`get_trace`)."""

    def __init__(self, spec: RunSpec, *, mixing: str = "auto", fast_path: bool = True,
                 trace: bool = False, save: str | None = None, save_every: float = 60.0,
                 progress: bool = False, compile: bool = False):
        self.spec = spec
        dtype, device = DTYPES[spec.dtype], torch.device(spec.device)
        x0 = spec.problem.init_params(device=device, dtype=dtype)
        self.layout = Layout(x0)
        self.comm = StackedCommunicator(spec, self.layout, self.layout.flat(x0), mixing)
        self.tracer = _Tracer(self.comm, spec.T) if trace else None
        self.local = LocalStep(spec.problem, spec.config, self.comm.rows, self.layout.d,
                               batch_size=spec.batch_size, seed=spec.seed, device=device,
                               dtype=dtype, fast_path=fast_path, trace=self.tracer,
                               compile=compile)
        self.driver = Driver(spec, self.comm, self.local, save=save, save_every=save_every,
                             progress=progress, tracer=self.tracer)

    @property
    def grad_path(self) -> str:
        return self.local.grad_path

    @property
    def fused(self) -> bool:
        return self.local.fused

    @property
    def n_sync_steps(self) -> int:
        return self.comm.n_sync_steps

    @property
    def rng(self) -> np.random.Generator:
        """The stream of the gradient-norm subsample (replaceable, e.g. in tests)."""
        return self.driver.rng

    @rng.setter
    def rng(self, value: np.random.Generator) -> None:
        self.driver.rng = value

    def check_schedule(self) -> None:
        """Refuse a schedule that never mixes in time (see :func:`empirics.driver.
        check_schedule`); :meth:`run` calls it first."""
        check_schedule(self.spec.config.schedule, self.spec.T, self.comm.n, self.comm.mixer)

    def run(self) -> Result:
        return self.driver.run()

    def get_trace(self) -> Trace:
        if self.tracer is None:
            raise ValueError("this run was not traced (pass trace=True)")
        return self.tracer.trace(self.local)


def run(spec: RunSpec, *, trace: bool = False, progress: bool = False,
        save: str | None = None, save_every: float = 60.0, mixing: str = "auto",
        fast_path: bool = True, compile: bool = False) -> Result | tuple[Result, Trace]:
    """Run ``spec``; returns the :class:`Result` (and the :class:`Trace` if ``trace=True``).

    save: path of a JSON file written atomically at the end — also when the run fails, with the
    partial records (status ``"diverged"``/``"error"``/``"interrupted"``); the exception carries
    the same partial result as ``err.partial``; during the run, after a record, every
    ``save_every`` seconds, a checkpoint of the records so far (status ``"running"``), so a
    killed process still leaves its finished work on disk. mixing: ``"auto"`` (by W's
    structure) or force ``"dense"``/``"sparse"``/``"groups"``, or a sparse kernel
    ``"csr"``/``"block"``/``"gather"`` (:class:`empirics.mixers.Mixer`). fast_path: use a registered
    hand-batched gradient path when one applies to the problem (else the generic path,
    ``vmap`` of the loss and one reverse pass). compile: run the generic path through
    ``torch.compile`` (tens of seconds to compile once per problem and process; a warning and
    the eager path where no compiler is available; :func:`empirics.algorithm.compiled_grad`).
    progress: tqdm bar.
    """
    sim = Simulator(spec, mixing=mixing, fast_path=fast_path, trace=trace, save=save,
                    save_every=save_every, progress=progress, compile=compile)
    res = sim.run()
    return (res, sim.get_trace()) if trace else res


def simulate(problem: Any, config: Any, *, lr: Any, T: int, batch_size: int = 1,
             seed: int = 0, record_every: int | None = None, grad_every: int | None = None,
             device: str | None = None, dtype: str | None = None, divergence: float = 1e6,
             **kw: Any) -> Result | tuple[Result, Trace]:
    """Shorthand for ``run(RunSpec(problem, config, lr, T, ...), **kw)``. ``record_every`` and
    ``grad_every`` left out take :func:`empirics.spec.default_strides` (about 100 records, the
    exact ‖∇F(u_k)‖² at every step where it is cheap, an unbiased stratified subsample
    otherwise: recording stays near 20 % of the run's time at most)."""
    spec = RunSpec(problem, config, lr, T, batch_size=batch_size, seed=seed, device=device,
                   dtype=dtype, record_every=record_every, grad_every=grad_every,
                   divergence=divergence)
    return run(spec, **kw)
