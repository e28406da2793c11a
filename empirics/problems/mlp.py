"""A small MLP classifier (non-convex) with estimated constants.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.func import grad, jvp
from tqdm.auto import tqdm

from empirics.data import (
    STREAM_DATA,
    STREAM_INIT,
    STREAM_POINTS,
    gaussian_mixture,
    rng_for,
)
from empirics.problems.base import (
    _CPU,
    Batch,
    Constants,
    Estimate,
    Params,
    _flat,
    _sqnorm,
    _unflatten,
    seed_for,
)
from empirics.problems.finite_sum import FiniteSumProblem
from theory import checks


def _power_iteration(f: Any, theta: torch.Tensor, generator: torch.Generator,
                     max_iter: int = 200, rtol: float = 1e-6) -> tuple[float, int]:
    """‖∇²f(θ)‖₂ by power iteration on Hessian-vector products (forward-over-reverse,
    torch.func.jvp of grad). Every iterate ‖Hv‖ (‖v‖ = 1) is a lower bound on ‖∇²f(θ)‖₂."""
    g = grad(f)
    v = torch.randn(theta.shape, generator=generator, dtype=theta.dtype)
    v = v / v.norm()
    lam_prev, lam = 0.0, 0.0
    for it in range(1, max_iter + 1):
        hv = jvp(g, (theta,), (v,))[1]
        lam = float(hv.norm())
        if lam == 0.0 or abs(lam - lam_prev) <= rtol * lam:
            return lam, it
        v, lam_prev = hv / lam, lam
    return lam, max_iter


class MLPClassifier(FiniteSumProblem):
    """A tanh MLP d_in → hidden… → n_classes with mean cross-entropy (+ (l2/2)‖θ‖²), non-convex.

    Data (``dataset="synthetic"``, the only option: no data set ships with the dependencies): a
    balanced Gaussian mixture, x = separation·u_y + N(0, I), u_c random unit vectors. Parameters
    ``W0, b0, W1, b1, …`` (W_k of shape fan_in × fan_out), x₀ ~ U(±1/√fan_in) seeded. tanh keeps F
    twice differentiable, so Hessian-vector products and L are meaningful. Estimated constants
    (float64, at a set P of points: x₀, L-BFGS iterates at 10 %, 50 % and 100 % of the F* run, and
    ``n_random_points`` further random initialisations):

    * F*: best full-batch loss of ``fstar_iters`` L-BFGS iterations (strong-Wolfe) from x₀ — an
      upper bound, F* ∈ [0, value] (uncertainty = the width of that bracket).
    * L: max over P of ‖∇²F(x)‖₂ by power iteration on HVPs (each a lower bound at its point; the
      sup over the region may be larger); uncertainty = spread (max − min) over P.
    * σ²: max over P and workers of the exact single-sample variance σ_i²(x) (finite data: no
      sampling error at a point, computed from per-sample gradient norms in one pass;
      :meth:`sigma2_mc` gives a Monte-Carlo estimate with its standard error); uncertainty =
      spread over P. μ: None. ζ² at x₀ and at the F* point.

    Cost: a few hundred full-batch passes (L-BFGS, ``power_iters`` HVPs per point) — seconds for
    the defaults, minutes for a 784-256-10 network on 10⁴ samples; computed on first access.
    """

    def __init__(self, n_samples: int = 2000, d_in: int = 10, hidden: int | Sequence[int] = 16,
                 n_classes: int = 4, m: int = 1, seed: int = 0, heterogeneity: float = 0.0,
                 dataset: str = "synthetic", separation: float = 1.5, l2: float = 1e-4,
                 fstar_iters: int = 300, n_random_points: int = 2, power_iters: int = 100,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float64) -> None:
        super().__init__(m, device, dtype)
        n = self._validate_common(n_samples, m, seed, heterogeneity)
        checks.one_of("dataset", dataset, ["synthetic"])
        self.d_in = checks.integer("d_in", d_in, lo=1)
        hid = [hidden] if isinstance(hidden, (int, np.integer)) else list(hidden)
        self.hidden = tuple(checks.integer("hidden", h, lo=1) for h in hid)
        self.n_classes = checks.integer("n_classes", n_classes, lo=2)
        self.separation = checks.real("separation", separation, 0.0)
        self.l2 = checks.real("l2", l2, 0.0)
        self.fstar_iters = checks.integer("fstar_iters", fstar_iters, lo=1)
        self.n_random_points = checks.integer("n_random_points", n_random_points, lo=0)
        self.power_iters = checks.integer("power_iters", power_iters, lo=1)
        self.seed = int(seed)
        self.dataset = dataset
        widths = [self.d_in, *self.hidden, self.n_classes]
        self.param_shapes = {}
        for k, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            self.param_shapes[f"W{k}"] = (a, b)
            self.param_shapes[f"b{k}"] = (b,)
        self._n_layers = len(widths) - 1
        x, y = gaussian_mixture(n, self.d_in, self.n_classes, self.separation,
                                rng_for(seed, STREAM_DATA))
        self._setup(x, y, y, heterogeneity, seed)
        self.data()  # cache the problem's own device/dtype now, outside any transform

    @property
    def n_layers(self) -> int:
        """Number of dense layers (hidden layers + output); parameters W0, b0, …, W{n−1}, b{n−1}."""
        return self._n_layers

    def _random_init(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        out = {}
        for k, s in self.param_shapes.items():
            bound = 1 / math.sqrt(self.param_shapes[f"W{k[1:]}"][0])
            out[k] = rng.uniform(-bound, bound, size=s)
        return out

    def _init_numpy(self) -> dict[str, np.ndarray]:
        return self._random_init(rng_for(self.seed, STREAM_INIT))

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        ce = self.data_loss(params, batch)
        return ce + 0.5 * self.l2 * _sqnorm(params) if self.l2 else ce

    def data_loss(self, params: Params, batch: Batch) -> torch.Tensor:
        """The mini-batch cross-entropy without the ridge term: ``loss = data_loss +
        ½·l2·‖params‖²`` (the generic gradient path folds the ridge into the update)."""
        x, y = batch
        h = x.to(params["W0"].dtype)
        for k in range(self._n_layers):
            h = h @ params[f"W{k}"] + params[f"b{k}"]
            if k < self._n_layers - 1:
                h = torch.tanh(h)
        picked = torch.gather(h, -1, y.unsqueeze(-1)).squeeze(-1)
        return (torch.logsumexp(h, -1) - picked).mean()

    def _sigma2_workers(self, params: Params) -> torch.Tensor:
        """σ_i²(x) for every worker, exactly, without materialising per-sample gradients.

        For a dense layer z = aW + b, sample j's gradient is (a_j δ_jᵀ, δ_j) with δ_j = ∂ℓ_j/∂z_j
        (the rows of ∂(Σ_j ℓ_j)/∂z), so ‖g_j‖² = Σ_layers (‖a_j‖² + 1)‖δ_j‖² and the worker mean is
        (A_iᵀΔ_i, Σ_j δ_j)/n_per; then σ_i² = mean_j ‖g_j‖² − ‖ḡ_i‖² (the l2 term is the same for
        every sample and cancels). Same value as the generic vmap path, at the cost of one
        forward/backward pass over the data.
        """
        x_all, y_all = self._data_like(params)
        p = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        dt, dev = p["W0"].dtype, p["W0"].device
        sq = torch.zeros(self.m, dtype=dt, device=dev)
        mean_sq = torch.zeros(self.m, dtype=dt, device=dev)
        per_chunk = max(1, 8192 // self.n_per)
        for w0 in range(0, self.m, per_chunk):
            w1 = min(self.m, w0 + per_chunk)
            rows = slice(w0 * self.n_per, w1 * self.n_per)
            with torch.enable_grad():
                h, acts, pre = x_all[rows].to(dt), [], []
                for k in range(self._n_layers):
                    acts.append(h)
                    z = h @ p[f"W{k}"] + p[f"b{k}"]
                    pre.append(z)
                    h = torch.tanh(z) if k < self._n_layers - 1 else z
                y = y_all[rows]
                total = (torch.logsumexp(h, -1) - h.gather(-1, y.unsqueeze(-1)).squeeze(-1)).sum()
                deltas = torch.autograd.grad(total, pre)
            nw = w1 - w0
            for a, dl in zip(acts, deltas, strict=True):
                a, dl = a.detach(), dl.detach()
                wid = torch.arange(w0, w1, device=dev).repeat_interleave(self.n_per)
                sq.index_add_(0, wid, ((a**2).sum(1) + 1) * (dl**2).sum(1))
                a3, d3 = a.reshape(nw, self.n_per, -1), dl.reshape(nw, self.n_per, -1)
                gw = torch.bmm(a3.transpose(1, 2), d3) / self.n_per
                gb = d3.mean(1)
                mean_sq[w0:w1] += (gw**2).sum((1, 2)) + (gb**2).sum(1)
        return sq / self.n_per - mean_sq

    def _flat_objective(self, theta: torch.Tensor) -> torch.Tensor:
        return self.objective(_unflatten(theta, self.param_shapes))

    def _fstar_run(self, bar: tqdm | None = None
                   ) -> tuple[list[tuple[str, torch.Tensor]], float, torch.Tensor]:
        theta = _flat(self.init_params(_CPU, torch.float64)).clone().requires_grad_(True)
        opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=1, history_size=20,
                                tolerance_grad=1e-12, tolerance_change=1e-15,
                                line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            val = self._flat_objective(theta)
            val.backward()
            return val

        marks = sorted({max(1, self.fstar_iters // 10), max(1, self.fstar_iters // 2),
                        self.fstar_iters})
        ckpts: list[tuple[str, torch.Tensor]] = []
        best, best_theta, done = math.inf, theta.detach().clone(), 0
        for mark in marks:
            opt.param_groups[0]["max_iter"] = mark - done
            opt.param_groups[0]["max_eval"] = 2 * (mark - done) + 5
            opt.step(closure)
            done = mark
            with torch.no_grad():
                val = float(self._flat_objective(theta))
            ckpts.append((f"lbfgs@{mark}", theta.detach().clone()))
            if val < best:
                best, best_theta = val, theta.detach().clone()
            if bar is not None:
                bar.set_postfix_str(f"F = {val:.4g}")
                bar.update()
        return ckpts, best, best_theta

    def _compute_constants(self, progress: bool = False) -> Constants:
        self.data(_CPU, torch.float64)  # cache the float64 copy outside transforms
        x0 = self.init_params(_CPU, torch.float64)
        n_marks = len({max(1, self.fstar_iters // 10), max(1, self.fstar_iters // 2),
                       self.fstar_iters})
        bar = tqdm(total=n_marks + 2 * (1 + n_marks + self.n_random_points),
                   desc="MLP constants (L-BFGS, L, σ²)", disable=not progress)
        ckpts, best, best_theta = self._fstar_run(bar)
        rng = rng_for(self.seed, STREAM_POINTS)
        points = [("x0", _flat(x0)), *ckpts]
        points += [(f"init#{i + 1}", _flat({k: torch.from_numpy(v) for k, v in
                                           self._random_init(rng).items()}))
                   for i in range(self.n_random_points)]
        gen = torch.Generator().manual_seed(seed_for(self.seed, 0))
        ls, its = [], []
        for _, th in points:
            lam, it = _power_iteration(self._flat_objective, th, gen, self.power_iters)
            ls.append(lam)
            its.append(it)
            bar.update()
        named = [(name, self._params64(th)) for name, th in points]
        maxes, means = [], []
        for pt in named:
            mx, mn = self._sigma2_over([pt])
            maxes += mx
            means += mn
            bar.update()
        bar.close()
        names = [name for name, _ in points]
        x_best = self._params64(best_theta)
        gbest = self.grad_norm2(x_best)
        return Constants(
            L=Estimate(max(ls), f"max over {len(points)} points of ‖∇²F(x)‖₂ by power "
                       "iteration on HVPs (lower bound at each point); uncertainty = spread",
                       max(ls) - min(ls), detail={"points": names, "values": ls,
                                                  "iterations": its}),
            mu=None,
            sigma2=Estimate(max(maxes), f"max over {len(points)} points and workers of the "
                            "exact single-sample variance σ_i²(x); divide by b; "
                            "uncertainty = spread over points", max(maxes) - min(maxes),
                            detail={"points": names, "max_over_workers": maxes,
                                    "mean_over_workers": means}),
            F_star=Estimate(best, f"upper bound: best full-batch loss of {self.fstar_iters} "
                            "L-BFGS iterations from x₀ (float64); F* ∈ [0, value], "
                            "uncertainty = width", best,
                            detail={"lower_bound": 0.0, "grad_norm2_at_best": gbest}),
            F0=Estimate(self.full_loss(x0), "F(x₀), exact"),
            zeta2_x0=Estimate(self.zeta2_at(x0), "(1/m) Σ_i ‖∇F_i(x₀) − ∇F(x₀)‖², exact"),
            zeta2_star=Estimate(self.zeta2_at(x_best), "ζ² at the F* estimate's point, exact"),
            kappa2=self._kappa2(named, f"the {len(named)} points σ² is a maximum over "
                                "(x₀, the L-BFGS checkpoints, random initialisations)"),
        )

    def _repr_args(self) -> dict[str, Any]:
        return {**super()._repr_args(), "d_in": self.d_in, "hidden": self.hidden,
                "n_classes": self.n_classes}
