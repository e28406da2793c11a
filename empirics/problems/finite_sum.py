"""Finite sums over seeded synthetic data: the shared machinery, least squares, logistic
regression.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch.func import grad, vmap

from empirics.data import (
    STREAM_DATA,
    STREAM_SHIFT,
    STREAM_SPLIT,
    features_with_spectrum,
    geometric_spectrum,
    rng_for,
    split_shards,
)
from empirics.problems.base import (
    _CPU,
    Batch,
    Constants,
    Estimate,
    Params,
    Problem,
    _dtype,
    _is_transform_wrapped,
    _unflatten,
    one_generator,
)
from theory import checks


# ---------------------------------------------------------------------------------------------
# finite sums over seeded synthetic data
# ---------------------------------------------------------------------------------------------
class FiniteSumProblem(Problem):
    """Data (X, y) dealt into m equal shards by :func:`empirics.data.split_shards`.

    Worker i owns rows i·n_per … (i+1)·n_per − 1 of the stored data (``shard_indices`` gives their
    positions in the generated data); F_i is the mean loss over them and F = (1/m) Σ_i F_i is the
    mean over all n = m·n_per rows. σ_i²(x) = (1/n_per) Σ_{j∈S_i} ‖∇f_j(x) − ∇F_i(x)‖² is computed
    exactly from per-sample gradients (torch.func.vmap over grad), so the variance of a batch of b
    indices drawn uniformly with replacement from S_i is exactly σ_i²(x)/b.

    ``sampling="shared"`` instead lets every worker draw its indices uniformly from all n rows:
    then F_i = F for every i, ζ² = 0 exactly and σ² is the variance over all n rows — the i.i.d.
    setting of the Cooperative SGD and PL theorems (every worker's stochastic gradient is
    unbiased for ∇F). Finite shards (the default) are never exactly i.i.d.: ζ² > 0 from the
    finite sample alone.
    """

    sampling: str = "shards"

    def _set_sampling(self, sampling: str) -> None:
        if sampling not in ("shards", "shared"):
            raise checks.refuse("sampling", "'shards' or 'shared'", sampling)
        if sampling == "shared" and self.heterogeneity > 0:
            raise ValueError("sampling='shared' draws every worker's batch from all rows, so "
                             f"heterogeneity must be 0 (got {self.heterogeneity})")
        self.sampling = sampling

    @property
    def shared(self) -> bool:
        """Every worker samples from all n rows (F_i = F)."""
        return self.sampling == "shared"

    def _rows(self, worker: int) -> slice:
        return slice(0, self.n) if self.shared else \
            slice(worker * self.n_per, (worker + 1) * self.n_per)

    def _setup(self, x: np.ndarray, y: np.ndarray, keys: np.ndarray, heterogeneity: float,
               seed: int) -> None:
        self.heterogeneity = float(heterogeneity)
        shards = split_shards(keys, self.m, self.heterogeneity, rng_for(seed, STREAM_SPLIT))
        self.shard_indices = shards
        self.n_per = shards.shape[1]
        self.n = self.m * self.n_per
        order = shards.reshape(-1)
        self._x_np, self._y_np = x[order], y[order]
        self._data: dict[tuple[torch.device, torch.dtype], Batch] = {}

    @staticmethod
    def _segment_sigma2(ts: list[float], maxes: list[float], means: list[float], x: str,
                        segment: str, note: str) -> Estimate:
        """σ² as the maximum over workers and the points t of the segment (from
        :meth:`_sigma2_on_segment`) of the exact single-sample variance σ_i²."""
        return Estimate(
            max(maxes),
            f"max over workers i and {x} on the segment {segment} (t = 0, ¼, ½, ¾, 1) of the "
            f"exact single-sample variance σ_i²({x}) {note}; divide by b",
            detail={"t": ts, "max_over_workers": maxes, "mean_over_workers": means,
                    "at_x0": maxes[0], "at_x_star": maxes[-1]})

    def _linear_features(self, n_samples: int, m: int, seed: int, heterogeneity: float, d: int,
                         condition_number: float, l2: float
                         ) -> tuple[int, np.random.Generator, np.ndarray]:
        """Validate and store d, condition_number, l2, seed; return (n, the data stream, the
        n × d features with the geometric spectrum of ``condition_number``)."""
        n = self._validate_common(n_samples, m, seed, heterogeneity)
        self.d = checks.integer("d", d, lo=1)
        self.condition_number = checks.real("condition_number", condition_number, 1.0)
        self.l2 = checks.real("l2", l2, 0.0)
        self.seed = int(seed)
        rng = rng_for(seed, STREAM_DATA)
        return n, rng, features_with_spectrum(
            n, geometric_spectrum(self.d, self.condition_number), rng)

    @staticmethod
    def _validate_common(n_samples: int, m: int, seed: int, heterogeneity: float) -> int:
        n = checks.integer("n_samples", n_samples, lo=1)
        m = checks.integer("m", m, lo=1)
        checks.integer("seed", seed, lo=0)
        checks.probability("heterogeneity", heterogeneity)
        if n < m:
            raise ValueError(f"n_samples must be >= m: each worker needs a sample "
                             f"(got n_samples={n}, m={m})")
        return m * (n // m)

    def data(self, device: torch.device | str | None = None,
             dtype: torch.dtype | None = None) -> Batch:
        """(X, y) of all n rows, worker-major, as tensors on ``device`` in ``dtype``."""
        dev = torch.device(device) if device is not None else self.device
        dt = _dtype(dtype) if dtype is not None else self.dtype
        hit = self._data.get((dev, dt))
        if hit is not None:
            return hit
        y_dt = torch.int64 if self._y_np.dtype.kind == "i" else dt
        out = (torch.as_tensor(self._x_np, dtype=dt, device=dev),
               torch.as_tensor(self._y_np, dtype=y_dt, device=dev))
        if not _is_transform_wrapped(out[0]):  # first call inside torch.func.grad: don't keep
            self._data[(dev, dt)] = out
        return out

    @property
    def shards(self) -> torch.Tensor:
        """Row indices into :meth:`data` of every worker's shard, shape (m, n_per), int64 (the
        rows are stored worker-major, so shard i is the range i·n_per … (i+1)·n_per − 1)."""
        return torch.arange(self.n, device=self.device).view(self.m, self.n_per)

    def _data_like(self, params: Params) -> Batch:
        t = next(iter(params.values()))
        return self.data(t.device, t.dtype)

    def _by_worker(self, data: Batch) -> Batch:
        return tuple(t.reshape(self.m, self.n_per, *t.shape[1:]) for t in data)

    def sample(self, worker: int, batch_size: int, generator: torch.Generator) -> Batch:
        """b row indices uniform with replacement from worker's shard → (X[j], y[j]).

        On the CPU, ``sample(i, b, g)`` for i = 0, …, m − 1 in turn from one generator draws
        the same indices as one :meth:`sample_all` (torch's CPU ``randint`` consumes its stream
        element by element)."""
        self._check_sample_args(worker, batch_size)
        if self.shared:
            j = torch.randint(self.n, (batch_size,), generator=generator,
                              device=generator.device).to(self.device)
        else:
            j = torch.randint(self.n_per, (batch_size,), generator=generator,
                              device=generator.device).to(self.device) + worker * self.n_per
        return tuple(t[j] for t in self.data())

    def _indices(self, batch_size: int, generator: Any) -> torch.Tensor:
        """The (m, b) row indices of one step, all workers in one ``randint`` call (row i:
        worker i's, uniform with replacement from its shard, or from all n rows)."""
        g = generator if isinstance(generator, torch.Generator) else one_generator(generator)
        if type(batch_size) is not int or batch_size < 1:
            checks.integer("batch_size", batch_size, lo=1)
        pool = self.n if self.shared else self.n_per
        j = torch.randint(pool, (self.m, batch_size), generator=g, device=g.device)
        j = j.to(self.device)
        if not self.shared:
            j += self._offsets()
        return j

    def _offsets(self) -> torch.Tensor:
        """The first row of every worker's shard, shape (m, 1) (cached per device)."""
        cache = self.__dict__.setdefault("_offsets_cache", {})
        hit = cache.get(self.device)
        if hit is None:
            hit = cache[self.device] = torch.arange(0, self.n, self.n_per,
                                                    device=self.device)[:, None]
        return hit

    def sample_all(self, batch_size: int, generator: torch.Generator,
                   out: Batch | None = None) -> Batch:
        """All m batches, leading axis m: one ``randint`` of shape (m, b) from ``generator``
        (row i: worker i's indices into its shard), then one gather for all workers.

        ``out``: tensors of an earlier call with the same batch size, overwritten in place (the
        simulator reuses one buffer across steps, so a large gathered batch is not allocated —
        and page-faulted in — afresh every step)."""
        j = self._indices(batch_size, generator).view(-1)
        data = self.data()
        if out is None:
            return tuple(t.index_select(0, j).view(self.m, batch_size, *t.shape[1:])
                         for t in data)
        return tuple(torch.index_select(t, 0, j, out=o.view(-1, *t.shape[1:]))
                     .view(self.m, batch_size, *t.shape[1:]) for t, o in zip(data, out,
                                                                             strict=True))

    def sample_rows(self, rows: Sequence[int], batch_size: int, generator: torch.Generator
                    ) -> Batch:
        """The rows' batches of the shared draw (see :meth:`Problem.sample_rows`): all m
        workers' indices are drawn, only the rows' data is gathered."""
        j = self._indices(batch_size, generator)
        idx = torch.as_tensor([int(r) for r in rows], dtype=torch.long, device=j.device)
        j = j.index_select(0, idx).view(-1)
        return tuple(t.index_select(0, j).view(len(idx), batch_size, *t.shape[1:])
                     for t in self.data())

    def objective(self, params: Params) -> torch.Tensor:
        return self.loss(params, self._data_like(params))

    def loss_and_grad_norm2(self, params: Params) -> tuple[float, float]:
        """(F, ‖∇F‖²): one forward and backward pass over the data (``grad_and_value``) when
        ∇F comes from autograd; the closed forms of the linear models otherwise."""
        if type(self).full_grad is not Problem.full_grad:
            return super().loss_and_grad_norm2(params)
        from torch.func import grad_and_value

        g, F = grad_and_value(self.objective)(params)
        return float(F.detach()), float(sum((t.detach() ** 2).sum() for t in g.values()))

    def worker_objective(self, params: Params, worker: int) -> float:
        """F_i(params)."""
        self._check_sample_args(worker, 1)
        rows = self._rows(worker)
        return float(self.loss(params, tuple(t[rows] for t in self._data_like(params))))

    def worker_grad(self, params: Params, worker: int) -> Params:
        self._check_sample_args(worker, 1)
        rows = self._rows(worker)
        data = tuple(t[rows] for t in self._data_like(params))
        return {k: v.detach() for k, v in grad(self.loss)(params, data).items()}

    def worker_grads(self, params: Params) -> Params:
        """∇F_i(params) for all i, stacked along a leading axis m."""
        if self.shared:
            g = grad(self.loss)(params, self._data_like(params))
            return {k: v.unsqueeze(0).expand(self.m, *v.shape) for k, v in g.items()}
        per_worker = self._by_worker(self._data_like(params))
        return vmap(grad(self.loss), in_dims=(None, 0))(params, per_worker)

    def zeta2_at(self, params: Params) -> float:
        """ζ²(x) = (1/m) Σ_i ‖∇F_i(x) − ∇F(x)‖² (∇F = mean of the ∇F_i, equal shard sizes)."""
        if self.shared:
            return 0.0  # F_i = F for every worker
        g = self.worker_grads(params)
        return float(sum(((v - v.mean(0)) ** 2).sum() for v in g.values()) / self.m)

    def _kappa2(self, points: list[tuple[str, Params]], where: str) -> Estimate:
        """κ² of Cooperative SGD's Theorem 2 (JMLR): max over ``points`` of the exact
        ζ²(x) = (1/m) Σ_i ‖∇F_i(x) − ∇F(x)‖² (``where`` names the points in the method)."""
        if self.shared:
            return Estimate(0.0, "κ² = 0: every worker samples all rows (F_i = F), exact")
        vals = [self.zeta2_at(p) for _, p in points]
        return Estimate(max(vals), f"max over {where} of the exact (1/m) Σ_i ‖∇F_i(x) − ∇F(x)‖² "
                        "(Cooperative SGD's κ², JMLR Theorem 2); a lower estimate of its "
                        "supremum over x", detail={"points": [n for n, _ in points],
                                                   "values": vals})

    def _segment(self, x0: Params, xs: Params) -> list[tuple[str, Params]]:
        """The five points x₀ + t(x* − x₀), t = 0, ¼, ½, ¾, 1 (σ² and κ² are maxima over them)."""
        return [(f"t={t}", {k: (1 - t) * x0[k] + t * xs[k] for k in x0})
                for t in (0.0, 0.25, 0.5, 0.75, 1.0)]

    def _sigma2_workers(self, params: Params) -> torch.Tensor:
        """σ_i²(x) for every worker i (single sample), shape (m,)."""
        x, y = self._data_like(params)
        gbar = torch.cat([v.reshape(self.m, -1) for v in self.worker_grads(params).values()], 1)
        chunk = max(1, 2**22 // gbar.shape[1])
        per_sample = vmap(grad(self.loss), in_dims=(None, 0))
        acc = torch.zeros(self.m, dtype=gbar.dtype, device=gbar.device)
        for s in range(0, self.n, chunk):
            xb, yb = x[s:s + chunk], y[s:s + chunk]
            g = per_sample(params, (xb.unsqueeze(1), yb.unsqueeze(1)))
            flat = torch.cat([v.reshape(xb.shape[0], -1) for v in g.values()], 1)
            wid = torch.arange(s, s + xb.shape[0], device=gbar.device) // self.n_per
            if self.shared:  # every worker's pool is all n rows: one variance, m times
                wid = torch.zeros_like(wid)
            acc.index_add_(0, wid, ((flat - gbar[wid]) ** 2).sum(1))
        if self.shared:
            return acc[:1].expand(self.m) / self.n
        return acc / self.n_per

    def sigma2_at(self, params: Params, batch_size: int = 1, worker: int | None = None) -> float:
        """Exact σ_i²(x)/b for worker i, or (1/m) Σ_i σ_i²(x)/b if ``worker`` is None."""
        checks.integer("batch_size", batch_size, lo=1)
        params = {k: v.detach() for k, v in params.items()}
        s2 = self._sigma2_workers(params)
        if worker is None:
            return float(s2.mean()) / batch_size
        self._check_sample_args(worker, batch_size)
        return float(s2[worker]) / batch_size

    def _sigma2_over(self, points: list[tuple[str, Params]]) -> tuple[list[float], list[float]]:
        maxes, means = [], []
        for _, p in points:
            s2 = self._sigma2_workers(p)
            maxes.append(float(s2.max()))
            means.append(float(s2.mean()))
        return maxes, means

    def _sigma2_on_segment(self, x0: Params, xs: Params
                           ) -> tuple[list[float], list[float], list[float]]:
        """(t, max_i σ_i², mean_i σ_i²) at the five points x₀ + t(x* − x₀), t = 0, ¼, ½, ¾, 1
        (the points ``constants.sigma2`` is a maximum over)."""
        ts = [0.0, 0.25, 0.5, 0.75, 1.0]
        points = self._segment(x0, xs)
        maxes, means = self._sigma2_over(points)
        return ts, maxes, means

    def _params64(self, theta: np.ndarray | torch.Tensor) -> Params:
        t = torch.as_tensor(theta, dtype=torch.float64, device=_CPU)
        return _unflatten(t, self.param_shapes)

    def _repr_args(self) -> dict[str, Any]:
        return {"n_samples": self.n, "m": self.m, "dim": self.dim,
                "heterogeneity": self.heterogeneity, "seed": self.seed,
                **({"sampling": self.sampling} if self.shared else {})}


class ConvexFiniteSum(FiniteSumProblem):
    """Linear model w ∈ ℝ^d with x₀ = 0 and a unique minimiser x* found by a float64 solve."""

    l2: float

    def _init_numpy(self) -> dict[str, np.ndarray]:
        return {"w": np.zeros(self.d)}

    @abstractmethod
    def _solve(self) -> np.ndarray: ...

    @abstractmethod
    def _curvature(self) -> tuple[Estimate, Estimate, Estimate]:
        """(L, μ, L_local) of the objectives."""

    @cached_property
    def x_star(self) -> Params:
        """The minimiser x* (float64, CPU)."""
        return {"w": torch.from_numpy(self._solve())}

    def _compute_constants(self, progress: bool = False) -> Constants:
        self.data(_CPU, torch.float64)  # cache the float64 copy outside transforms
        x0 = self.init_params(_CPU, torch.float64)
        xs = self.x_star
        ts, maxes, means = self._sigma2_on_segment(x0, xs)
        L, mu, L_local = self._curvature()
        gs = self.grad_norm2(xs)
        return Constants(
            L=L, mu=mu, L_local=L_local,
            sigma2=self._segment_sigma2(ts, maxes, means, "x", "x₀→x*",
                                        "= mean_j‖∇f_j(x) − ∇F_i(x)‖²"),
            F_star=Estimate(self.full_loss(xs), f"F(x*), x* by {self._solve_method} in float64 "
                            f"(‖∇F(x*)‖² = {gs:.2e})", detail={"grad_norm2": gs}),
            F0=Estimate(self.full_loss(x0), "F(x₀), x₀ = 0, exact"),
            zeta2_x0=Estimate(self.zeta2_at(x0), "(1/m) Σ_i ‖∇F_i(x₀) − ∇F(x₀)‖², exact"),
            zeta2_star=Estimate(self.zeta2_at(xs), "(1/m) Σ_i ‖∇F_i(x*)‖², exact"),
            kappa2=self._kappa2(self._segment(x0, xs),
                                "x on the segment x₀→x* (t = 0, ¼, ½, ¾, 1)"),
        )

    def _hessian_data(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """λ(XᵀX/n) and λ(X_iᵀX_i/n_per) for every worker i (ascending)."""
        x = self._x_np
        full = np.linalg.eigvalsh(x.T @ x / self.n)
        # X_iᵀX_i and X_iX_iᵀ share their non-zero eigenvalues: use the smaller Gram matrix
        if self.shared:
            return full, [full] * self.m
        per = [np.linalg.eigvalsh(xi.T @ xi if self.d <= self.n_per else xi @ xi.T) / self.n_per
               for xi in x.reshape(self.m, self.n_per, -1)]
        return full, per


class LeastSquares(ConvexFiniteSum):
    """Least squares F(w) = (1/2n) ‖Xw − y‖² + (l2/2) ‖w‖² on seeded synthetic data.

    X (n × d) has XᵀX/n = Q diag(λ) Qᵀ exactly with λ geometric from 1 to 1/κ
    (κ = ``condition_number``, needs n ≥ d) and Q a random rotation; y = X w_true + noise·ε with
    w_true, ε ~ N(0, I). n = m⌊n_samples/m⌋ rows are generated (equal shards). Constants (exact):
    L = λ_max(XᵀX/n) + l2, μ = λ_min(XᵀX/n) + l2 (= 1 + l2 and 1/κ + l2 up to rounding),
    x* by numpy lstsq, F* = F(x*). σ_i²(x) is a convex quadratic in x, so its maximum over the
    segment x₀→x* (``constants.sigma2``) is attained at an end point and is the exact sup there.

    Heterogeneity h (concept shift): rows are dealt to workers uniformly at random and worker i's
    targets are y = xᵀ(w_true + h·Δ_i) + noise·ε, with Δ_i ~ N(0, I_d) centred over workers, so
    the workers' minimisers differ and ζ²(x*) grows like h². (Sorting rows by y would not do: with
    a well-specified linear model every shard keeps the minimiser w_true.) h = 0: i.i.d. shards;
    the data then do not depend on m beyond n.
    """

    _solve_method = "numpy.linalg.lstsq"

    def __init__(self, n_samples: int = 1000, d: int = 10, m: int = 1,
                 condition_number: float = 10.0, noise: float = 0.1, seed: int = 0,
                 heterogeneity: float = 0.0, l2: float = 0.0, sampling: str = "shards",
                 device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float64) -> None:
        super().__init__(m, device, dtype)
        self.noise = checks.real("noise", noise, 0.0)
        n, rng, x = self._linear_features(n_samples, m, seed, heterogeneity, d,
                                          condition_number, l2)
        y = x @ rng.standard_normal(self.d) + self.noise * rng.standard_normal(n)
        self.param_shapes = {"w": (self.d,)}
        self._setup(x, y, y, 0.0, seed)
        self.heterogeneity = float(heterogeneity)
        if self.heterogeneity > 0:
            delta = rng_for(seed, STREAM_SHIFT).standard_normal((self.m, self.d))
            delta -= delta.mean(0)
            rows = np.repeat(self.heterogeneity * delta, self.n_per, axis=0)
            self._y_np = self._y_np + np.einsum("ij,ij->i", self._x_np, rows)
        self._set_sampling(sampling)
        self.data()  # cache the problem's own device/dtype now, outside any transform

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        w = params["w"]
        x, y = (t.to(w.dtype) for t in batch)
        return 0.5 * ((x @ w - y) ** 2).mean() + 0.5 * self.l2 * (w**2).sum()

    def full_grad(self, params: Params) -> Params:
        """∇F(w) = Xᵀ(Xw − y)/n + l2·w, in closed form (no autograd; same value)."""
        w = params["w"].detach()
        x, y = self._data_like(params)
        return {"w": x.T @ (x @ w - y) / self.n + self.l2 * w}

    def _solve(self) -> np.ndarray:
        a, b = self._x_np / math.sqrt(self.n), self._y_np / math.sqrt(self.n)
        if self.l2 > 0:
            a = np.vstack([a, math.sqrt(self.l2) * np.eye(self.d)])
            b = np.concatenate([b, np.zeros(self.d)])
        return np.linalg.lstsq(a, b, rcond=None)[0]

    def _curvature(self) -> tuple[Estimate, Estimate, Estimate]:
        full, per = self._hessian_data()
        how = "numpy eigvalsh of XᵀX/n (+ l2), float64, exact"
        return (Estimate(full[-1] + self.l2, "λ_max: " + how),
                Estimate(full[0] + self.l2, "λ_min: " + how),
                Estimate(max(p[-1] for p in per) + self.l2,
                         "max_i λ_max(X_iᵀX_i/n_per) + l2, exact"))


def _separable(x: np.ndarray, s: np.ndarray) -> bool:
    """Whether some w has s_j x_jᵀw ≥ 1 for all j (an LP feasibility problem, HiGHS)."""
    from scipy.optimize import linprog

    res = linprog(np.zeros(x.shape[1]), A_ub=-(s[:, None] * x), b_ub=-np.ones(x.shape[0]),
                  bounds=(None, None), method="highs")
    return res.status == 0


class LogisticRegression(ConvexFiniteSum):
    """ℓ2-regularised logistic regression F(w) = (1/n) Σ_j log(1 + e^{−s_j x_jᵀw}) + (l2/2)‖w‖².

    Features as in :class:`LeastSquares` (XᵀX/n with eigenvalues from 1 to 1/κ); labels
    s_j ∈ {−1, +1} drawn from a logistic teacher, P(s = 1) = σ(x_jᵀw_true), with w_true scaled so
    the teacher logits have mean square ``signal``². Constants: L = λ_max(XᵀX)/(4n) + l2 (global
    bound, since σ′ ≤ ¼; exact as a bound), μ = l2 (global; the data term's curvature vanishes as
    ‖w‖ → ∞), x* by damped Newton in float64 to ‖∇F‖ ≤ 1e-10, F* = F(x*); l2 = 0 is refused
    when the data are linearly separable (no minimiser).

    Heterogeneity h (concept shift, as in :class:`LeastSquares`): rows are dealt at random and
    worker i's labels come from the teacher w_true + h·Δ_i (Δ_i ~ N(0, I) centred over workers, in
    the units of w_true). Label-sorted shards would not do here: without an intercept and with
    symmetric features, (x, −1) has the loss of (−x, +1), so an all-negative shard has the same
    minimiser as the whole data. h = 0: i.i.d. shards, data independent of m beyond n.
    """

    _solve_method = "damped Newton to ‖∇F‖ ≤ 1e-10"

    def __init__(self, n_samples: int = 1000, d: int = 10, m: int = 1,
                 condition_number: float = 1.0, l2: float = 1e-3, seed: int = 0,
                 heterogeneity: float = 0.0, signal: float = 2.0, sampling: str = "shards",
                 device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float64) -> None:
        super().__init__(m, device, dtype)
        self.signal = checks.real("signal", signal, 0.0)
        n, rng, x = self._linear_features(n_samples, m, seed, heterogeneity, d,
                                          condition_number, l2)
        w = rng.standard_normal(self.d)
        scale = self.signal / max(np.sqrt(np.mean((x @ w) ** 2)), 1e-300)
        u = rng.random(n)
        self.param_shapes = {"w": (self.d,)}
        self._setup(x, u, u, 0.0, seed)  # i.i.d. split; labels drawn below, per worker
        self.heterogeneity = float(heterogeneity)
        logits = self._x_np @ (scale * w)
        if self.heterogeneity > 0:
            delta = rng_for(seed, STREAM_SHIFT).standard_normal((self.m, self.d))
            delta -= delta.mean(0)
            rows = np.repeat(self.heterogeneity * scale * delta, self.n_per, axis=0)
            logits = logits + np.einsum("ij,ij->i", self._x_np, rows)
        self._y_np = np.where(self._y_np < 0.5 * (1 + np.tanh(0.5 * logits)), 1.0, -1.0)
        self._set_sampling(sampling)
        self.data()  # cache the problem's own device/dtype now, outside any transform

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        w = params["w"]
        x, s = (t.to(w.dtype) for t in batch)
        return torch.nn.functional.softplus(-s * (x @ w)).mean() + 0.5 * self.l2 * (w**2).sum()

    def full_grad(self, params: Params) -> Params:
        """∇F(w) = −Xᵀ(s ⊙ σ(−s ⊙ Xw))/n + l2·w, in closed form (no autograd; same value)."""
        w = params["w"].detach()
        x, s = self._data_like(params)
        return {"w": -(x.T @ (s * torch.sigmoid(-s * (x @ w)))) / self.n + self.l2 * w}

    def _solve(self, tol: float = 1e-10, max_iter: int = 200) -> np.ndarray:
        x, s, n, l2 = self._x_np, self._y_np, self.n, self.l2
        if l2 == 0 and _separable(x, s):
            raise ValueError("l2 = 0 with linearly separable data: F has no minimiser "
                             "(inf F = 0 is not attained), so F* and x* are undefined; "
                             "use l2 > 0")

        def f(w: np.ndarray) -> float:
            return float(np.logaddexp(0.0, -s * (x @ w)).mean() + 0.5 * l2 * w @ w)

        w = np.zeros(self.d)
        for _ in range(max_iter):
            p = 0.5 * (1 - np.tanh(0.5 * s * (x @ w)))  # σ(−s xᵀw), overflow-free
            g = -(x.T @ (s * p)) / n + l2 * w
            gn = np.linalg.norm(g)
            if gn <= tol:
                return w
            h = (x.T * (p * (1 - p))) @ x / n + l2 * np.eye(self.d)
            step = np.linalg.solve(h, g)
            t, f0 = 1.0, f(w)
            while gn > 1e-6 and f(w - t * step) > f0 - 1e-4 * t * (g @ step) and t > 1e-10:
                t /= 2
            w = w - t * step
        raise RuntimeError(f"logistic regression: Newton did not reach ‖∇F‖ <= {tol} in "
                           f"{max_iter} iterations (‖∇F‖ = {gn:.2e}, l2 = {l2})")

    def _curvature(self) -> tuple[Estimate, Estimate, Estimate]:
        full, per = self._hessian_data()
        return (Estimate(full[-1] / 4 + self.l2,
                         "λ_max(XᵀX)/(4n) + l2: global bound on ‖∇²F‖ (σ′ ≤ ¼), exact"),
                Estimate(self.l2, "l2: global strong-convexity modulus, exact "
                         "(0 = merely convex)"),
                Estimate(max(p[-1] for p in per) / 4 + self.l2,
                         "max_i λ_max(X_iᵀX_i)/(4 n_per) + l2, exact"))
