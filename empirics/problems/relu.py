"""A single ReLU fitted to a planted model (Kalan, Soltanolkotabi & Avestimehr, "Fitting ReLUs
via SGD and Quantized SGD", ISIT 2019, arXiv:1901.06587; abstract only).

What the abstract states (verified at abstract level): Gaussian i.i.d. inputs, labels from a
planted weight vector, mini-batch SGD "suitably initialised" converging geometrically to the
planted model with a number of samples optimal up to constants, QSGD keeping that convergence.
The initialisation, step size and sample-count constants of the paper are not known here: the
choices below are this toolkit's and are stated as such.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any

import numpy as np
import torch

from empirics.data import STREAM_DATA, STREAM_INIT, rng_for
from empirics.problems.base import (
    _CPU,
    Batch,
    Constants,
    Estimate,
    Params,
)
from empirics.problems.finite_sum import FiniteSumProblem
from theory import checks

__all__ = ["PlantedReLU"]

_INITS = ("moment", "ball")


class PlantedReLU(FiniteSumProblem):
    """Squared loss of one ReLU on data from a planted ReLU (noiseless, realisable).

    Data: w* = ``w_star_norm`` · (uniform random unit vector), x_j ~ N(0, I_d) i.i.d. and
    y_j = max(0, ⟨w*, x_j⟩), j = 1..n, with n = ``n_samples`` or ⌈``samples_per_dim`` · d⌉
    (a finite sample growing linearly in d), dealt uniformly at random into m equal shards
    (m⌊n/m⌋ rows kept). All seeded from ``seed``.

    Objective: F(w) = (1/n) Σ_j ½ (max(0, ⟨w, x_j⟩) − y_j)², per-sample gradient
    ∇f_j(w) = (max(0, ⟨w, x_j⟩) − y_j) · 1{⟨w, x_j⟩ > 0} · x_j (the ReLU's derivative at 0 is
    taken as 0, as torch does). F ≥ 0 with F(w*) = 0 and ∇f_j(w*) = 0 for every j
    (interpolation: no gradient noise at w*). F is non-convex and its gradient jumps where a
    ⟨w, x_j⟩ changes sign (so no global L exists).

    Local constants (derived here, exact): with H* = (1/n) Σ_j 1{⟨w*, x_j⟩ > 0} x_j x_jᵀ and
    r₀ = min_j |⟨w*, x_j⟩| / ‖x_j‖, F(w) = ½ (w − w*)ᵀ H* (w − w*) exactly on the ball
    ‖w − w*‖ < r₀ (no sign of ⟨w, x_j⟩ differs from that of ⟨w*, x_j⟩ there), so L = λ_max(H*)
    and μ = λ_min(H*) are that quadratic's constants; population value E H* = ½ I (x ↦ −x
    symmetry). μ > 0 needs at least d samples with ⟨w*, x_j⟩ > 0, about n ≥ 2d.

    Initialisation (the paper's is not known here; ours): ``"moment"`` — w₀ = (2/n) Σ_j y_j x_j, the
    method-of-moments estimate, since E[max(0, ⟨w*, x⟩) x] = w*/2 for x ~ N(0, I) (derived:
    E[relu(z) z] = ½E[z²] for z = ⟨w*, x⟩ and the orthogonal part is independent with mean 0);
    its error is about √(2d/n)·‖w*‖ (√(2/c) at n = c·d), so at c ≥ 8 it starts within half a
    norm of w* with ⟨w₀, w*⟩ > 0, using the data only (one all-reduce of a d-vector in a
    distributed run). ``"ball"`` — w₀ = w* + ``init_radius``·‖w*‖·u with u uniform on the
    sphere (seeded), for controlled starts.
    """

    def __init__(self, d: int = 10, n_samples: int | None = None, samples_per_dim: float = 8.0,
                 m: int = 1, seed: int = 0, init: str = "moment", init_radius: float = 0.5,
                 w_star_norm: float = 1.0, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float64) -> None:
        super().__init__(m, device, dtype)
        self.d = checks.integer("d", d, lo=1)
        self.samples_per_dim = checks.real("samples_per_dim", samples_per_dim, 0.0, lo_strict=True)
        n_req = (math.ceil(self.samples_per_dim * self.d - 1e-9) if n_samples is None
                 else checks.integer("n_samples", n_samples, lo=1))
        n = self._validate_common(n_req, m, seed, 0.0)
        checks.one_of("init", init, _INITS)
        self.init = init
        self.init_radius = checks.real("init_radius", init_radius, 0.0)
        self.w_star_norm = checks.real("w_star_norm", w_star_norm, 0.0, lo_strict=True)
        self.seed = int(seed)
        rng = rng_for(seed, STREAM_DATA)
        u = rng.standard_normal(self.d)
        self._w_star = self.w_star_norm * u / np.linalg.norm(u)
        x = rng.standard_normal((n, self.d))
        y = np.maximum(x @ self._w_star, 0.0)
        self.param_shapes = {"w": (self.d,)}
        self._setup(x, y, y, 0.0, seed)  # i.i.d. split (heterogeneity 0)
        self.data()  # cache the problem's own device/dtype now, outside any transform

    # -- the model ---------------------------------------------------------------------------
    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        w = params["w"]
        x, y = (t.to(w.dtype) for t in batch)
        return 0.5 * ((torch.relu(x @ w) - y) ** 2).mean()

    def _init_numpy(self) -> dict[str, np.ndarray]:
        if self.init == "moment":
            return {"w": 2.0 * (self._y_np @ self._x_np) / self.n}
        u = rng_for(self.seed, STREAM_INIT).standard_normal(self.d)
        return {"w": self._w_star + self.init_radius * self.w_star_norm * u / np.linalg.norm(u)}

    # -- the planted model -------------------------------------------------------------------
    @property
    def w_star(self) -> np.ndarray:
        """The planted w* (float64 copy)."""
        return self._w_star.copy()

    @cached_property
    def x_star(self) -> Params:
        """The minimiser w* as parameters (float64, CPU); F(w*) = 0."""
        return {"w": torch.from_numpy(self._w_star.copy())}

    def distance_to_planted(self, w: Params | torch.Tensor | np.ndarray) -> float:
        """‖w − w*‖₂ for parameters ``{"w": ...}``, a tensor or an array of length d."""
        if isinstance(w, dict):
            if set(w) != {"w"}:
                raise ValueError(f"params must be {{'w': tensor of shape ({self.d},)}} "
                                 f"(got keys {sorted(w)})")
            w = w["w"]
        a = (w.detach().cpu().double().numpy() if isinstance(w, torch.Tensor)
             else np.asarray(w, dtype=np.float64))
        if a.shape != (self.d,):
            raise ValueError(f"w must have shape ({self.d},) (got {a.shape})")
        return float(np.linalg.norm(a - self._w_star))

    @cached_property
    def hessian_at_planted(self) -> np.ndarray:
        """H* = (1/n) Σ_j 1{⟨w*, x_j⟩ > 0} x_j x_jᵀ (float64): F's Hessian on the ball of
        radius :attr:`local_radius` around w*."""
        x = self._x_np
        act = x @ self._w_star > 0
        return x[act].T @ x[act] / self.n

    @cached_property
    def local_radius(self) -> float:
        """r₀ = min_j |⟨w*, x_j⟩| / ‖x_j‖: F is exactly ½(w − w*)ᵀH*(w − w*) for ‖w − w*‖ < r₀."""
        x = self._x_np
        return float(np.min(np.abs(x @ self._w_star) / np.linalg.norm(x, axis=1)))

    def _compute_constants(self, progress: bool = False) -> Constants:
        self.data(_CPU, torch.float64)  # cache the float64 copy outside transforms
        x0 = self.init_params(_CPU, torch.float64)
        xs = self.x_star
        ts, maxes, means = self._sigma2_on_segment(x0, xs)
        lam = np.linalg.eigvalsh(self.hessian_at_planted)
        per = []
        for xi in self._x_np.reshape(self.m, self.n_per, -1):
            a = xi[xi @ self._w_star > 0]
            per.append(float(np.linalg.eigvalsh(a.T @ a / self.n_per)[-1]) if len(a) else 0.0)
        r0 = self.local_radius
        where = (f"local: F = ½(w − w*)ᵀH*(w − w*) exactly on ‖w − w*‖ < r₀ = {r0:.3g}, "
                 f"H* = (1/n) Σ 1{{⟨w*,x_j⟩>0}} x_j x_jᵀ (numpy eigvalsh, float64); F is "
                 f"non-convex with a discontinuous gradient globally; population value ½")
        return Constants(
            L=Estimate(lam[-1], "λ_max(H*), " + where, detail={"radius": r0}),
            mu=Estimate(lam[0], "λ_min(H*), " + where, detail={"radius": r0}),
            L_local=Estimate(max(per), "max_i λ_max(H_i*), H_i* over worker i's rows; " + where),
            sigma2=self._segment_sigma2(ts, maxes, means, "w", "w₀→w*",
                                        "(0 at w*: every ∇f_j(w*) = 0)"),
            F_star=Estimate(0.0, "F(w*) = 0: the labels are the planted model's outputs "
                            "(realisable, noiseless), exact"),
            F0=Estimate(self.full_loss(x0), f"F(w₀), w₀ by init = {self.init!r}, exact"),
            zeta2_x0=Estimate(self.zeta2_at(x0), "(1/m) Σ_i ‖∇F_i(w₀) − ∇F(w₀)‖², exact"),
            zeta2_star=Estimate(0.0, "0: every ∇f_j(w*) = 0, exact"),
            kappa2=self._kappa2(self._segment(x0, xs),
                                "w on the segment w₀→w* (t = 0, ¼, ½, ¾, 1)"),
        )

    def _repr_args(self) -> dict[str, Any]:
        return {"d": self.d, "n_samples": self.n, "m": self.m, "init": self.init,
                "seed": self.seed}
