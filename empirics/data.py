"""Seeded synthetic data and worker splits for :mod:`empirics.problems` (numpy, float64).

Everything here is a pure function of its arguments and a ``numpy.random.Generator``, so the same
seed gives the same arrays on every machine; the problems convert the arrays to torch afterwards
(the float32 data is the float64 data rounded once).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import solve_triangular

__all__ = [
    "features_with_spectrum",
    "gaussian_mixture",
    "geometric_spectrum",
    "orthonormal_factor",
    "rng_for",
    "split_shards",
]

# Independent numpy streams of one problem seed, one per purpose.
STREAM_DATA, STREAM_SPLIT, STREAM_INIT, STREAM_POINTS, STREAM_SHIFT = 0, 1, 2, 3, 4


def rng_for(seed: int, stream: int) -> np.random.Generator:
    """The numpy generator of ``stream`` for problem ``seed`` (``SeedSequence([seed, stream])``)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream)]))


def geometric_spectrum(d: int, condition_number: float) -> np.ndarray:
    """Eigenvalues λ_k = κ^{-k/(d-1)}, k = 0..d-1: from 1 down to 1/κ, geometrically spaced."""
    if d == 1:
        if condition_number != 1.0:
            raise ValueError(
                f"condition_number must be 1 when d = 1 (got {condition_number}): "
                "one eigenvalue has no spread"
            )
        return np.ones(1)
    return condition_number ** (-np.linspace(0.0, 1.0, d))


def orthonormal_factor(g: np.ndarray) -> np.ndarray:
    """Q of the QR factorisation g = QR (R with positive diagonal), by CholeskyQR2.

    Two passes of Q ← Q R⁻¹ with RᵀR = QᵀQ (Cholesky): accurate to rounding while cond(g) ≲ 1e7
    (a Gaussian n × d matrix has cond ≈ (√n + √d)/(√n − √d) for n > d, of order 2d for n = d),
    and several times faster than LAPACK's QR/SVD for tall matrices since it is all matrix
    products. For a Gaussian g, Q is Haar-distributed (uniform on the Stiefel manifold).
    """
    q = np.asarray(g, dtype=np.float64)
    for _ in range(2):
        r = np.linalg.cholesky(q.T @ q).T
        q = solve_triangular(r, q.T, trans="T", lower=False).T
    return q


def features_with_spectrum(n: int, eigenvalues: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Features X (n × d) whose second-moment matrix is exactly prescribed.

    X = √n · U diag(√λ) Qᵀ with U (n × d) the orthonormal factor of a Gaussian matrix and Q a
    Haar-random rotation, so that XᵀX / n = Q diag(λ) Qᵀ holds to rounding (needs n ≥ d). The rows
    are spread like Gaussian rows with that covariance.
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    d = lam.size
    if n < d:
        raise ValueError(f"n_samples must be >= d to realise a condition number (got {n} < {d})")
    u = orthonormal_factor(rng.standard_normal((n, d)))
    q = orthonormal_factor(rng.standard_normal((d, d)))
    return np.sqrt(n) * (u * np.sqrt(lam)) @ q.T


def gaussian_mixture(
    n: int, d: int, n_classes: int, separation: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Balanced Gaussian mixture: x = separation·u_y + N(0, I_d), u_c uniform on the unit sphere.

    Labels are y = j mod n_classes, randomly permuted. Returns (X (n × d), y (n,) int64).
    """
    centres = rng.standard_normal((n_classes, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    y = rng.permutation(np.arange(n) % n_classes).astype(np.int64)
    x = separation * centres[y] + rng.standard_normal((n, d))
    return x, y


def split_shards(
    keys: np.ndarray, m: int, heterogeneity: float, rng: np.random.Generator
) -> np.ndarray:
    """Split ⌊n/m⌋·m sample indices into m equal shards, with a heterogeneity knob h ∈ [0, 1].

    A random subset of ⌊h·n'⌋ of the used indices (n' = m⌊n/m⌋) is sorted by ``keys`` (labels for
    classification, targets for regression; ties broken at random) and dealt to the workers in
    contiguous blocks; the rest is dealt uniformly at random. So h = 0 is an i.i.d. split (every
    shard is a uniform random subset) and h = 1 sorts the whole data by key (each worker sees a
    narrow range of labels/targets). The n − n' left-over samples (n mod m of them) are dropped.
    Returns an int64 array of shape (m, ⌊n/m⌋), each row sorted.
    """
    keys = np.asarray(keys)
    n = keys.shape[0]
    n_per = n // m
    n_used = n_per * m
    perm = rng.permutation(n)[:n_used]
    n_sorted = int(np.floor(heterogeneity * n_used))
    sorted_part = perm[:n_sorted]
    sorted_part = sorted_part[np.argsort(keys[sorted_part], kind="stable")]
    random_part = perm[n_sorted:]
    shards = []
    start = 0
    for block in np.array_split(sorted_part, m):
        take = n_per - block.size
        shards.append(np.sort(np.concatenate([block, random_part[start:start + take]])))
        start += take
    return np.stack(shards).astype(np.int64)
