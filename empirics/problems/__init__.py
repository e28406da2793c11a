"""Problems with known (or estimated) constants L, μ, σ², F*, F(x₀) for the engine (issue 4).

Every problem follows the ``Problem`` contract of ``docs/dev/CONTRACTS.md``: m workers, a pure
mini-batch ``loss(params, batch)`` usable under ``torch.func.grad``/``vmap``, seeded ``sample``,
exact ``full_loss``/``full_grad``/``grad_norm2`` of the global objective, and ``constants``.

Conventions (all problems):

* The global objective is F = (1/m) Σ_i F_i with F_i worker i's objective. Finite-sum problems give
  every worker the same number of samples, so F is also the plain mean over the data in use.
* A stochastic gradient g of worker i on a batch of b samples has E g = ∇F_i(x) and
  E‖g − ∇F_i(x)‖² = σ_i²(x)/b, where σ_i²(x) is the single-sample variance (``sigma2_at``).
  ``constants.sigma2`` is stated for b = 1; divide by b for mini-batches.
* ``sample`` draws with replacement (i.i.d. samples of the worker's distribution), which is what
  makes the σ²/b formula exact.
* A run with seed s draws its batches from one generator,
  ``torch.Generator().manual_seed(seed_for(s, 0))`` (``Problem.generator``): every step,
  ``sample_all(b, generator)`` draws all m workers' batches at once (one ``randint``/``randn``
  call) and worker i's batch is row i; a process holding some of the workers (a distributed
  rank) calls ``sample_rows(rows, b, generator)``, the same draw restricted to its rows.
  ``sample(worker, b, generator)`` draws one worker's batch (same law) for callers who want one.
* Constants are computed lazily (first access of ``.constants``), in float64 on the CPU.

Modules: :mod:`~empirics.problems.base` (``Problem``, ``Estimate``, ``Constants``, ``seed_for``),
:mod:`~empirics.problems.closed_form` (``NoisyQuadratic``, ``PiecewiseQuadratic1D``),
:mod:`~empirics.problems.finite_sum` (``FiniteSumProblem``, ``LeastSquares``,
``LogisticRegression``), :mod:`~empirics.problems.mlp` (``MLPClassifier``),
:mod:`~empirics.problems.relu` (``PlantedReLU``), :mod:`~empirics.problems.module`
(``ModuleProblem``: any ``torch.nn.Module`` and data set, with estimated constants),
:mod:`~empirics.problems.models` (model factories: small CNNs, VGG-16, ResNet-18),
:mod:`~empirics.problems.quadratic` (``Quadratic``: per-worker Hessians, optima and noise
covariances).
"""

from empirics.problems.base import Constants, Estimate, Problem, seed_for
from empirics.problems.closed_form import NoisyQuadratic, PiecewiseQuadratic1D
from empirics.problems.finite_sum import FiniteSumProblem, LeastSquares, LogisticRegression
from empirics.problems.mlp import MLPClassifier
from empirics.problems.module import ModuleProblem
from empirics.problems.quadratic import Quadratic
from empirics.problems.relu import PlantedReLU

__all__ = [
    "Constants",
    "Estimate",
    "FiniteSumProblem",
    "LeastSquares",
    "LogisticRegression",
    "MLPClassifier",
    "ModuleProblem",
    "NoisyQuadratic",
    "PiecewiseQuadratic1D",
    "PlantedReLU",
    "Problem",
    "Quadratic",
    "seed_for",
]
