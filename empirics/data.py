"""Data for :mod:`empirics.problems`: seeded synthetic data, real image data sets that need no
download (scikit-learn's digits; CIFAR-10 from a local folder), and partitions across workers.

Everything here is a pure function of its arguments and a ``numpy.random.Generator``, so the same
seed gives the same arrays on every machine; the problems convert the arrays to torch afterwards
(the float32 data is the float64 data rounded once).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.linalg import solve_triangular

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "ImageData",
    "SPLITS",
    "features_with_spectrum",
    "gaussian_mixture",
    "geometric_spectrum",
    "label_skew",
    "load_cifar10",
    "load_digits",
    "orthonormal_factor",
    "partition",
    "rng_for",
    "split_shards",
    "write_cifar10_folder",
]

# Independent numpy streams of one problem seed, one per purpose.
STREAM_DATA, STREAM_SPLIT, STREAM_INIT, STREAM_POINTS, STREAM_SHIFT = 0, 1, 2, 3, 4
#: the held-out split of a real data set and the subsets drawn from it
STREAM_HOLDOUT = 5


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


# ---------------------------------------------------------------------------------------------
# real images: scikit-learn's digits (shipped), CIFAR-10 from a local folder
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageData:
    """A labelled data set with its held-out split, as numpy arrays.

    ``x`` (n, *shape) float32 features (images as (n, C, H, W)), ``y`` (n,) int64 labels in
    0..``n_classes``−1; ``x_test``/``y_test`` the held-out split (may be empty); ``name`` and
    ``source`` (where the numbers came from) for reports.
    """

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    name: str
    source: str

    def __repr__(self) -> str:
        return (f"ImageData({self.name}: {len(self.x)} train, {len(self.x_test)} test, "
                f"shape {tuple(self.x.shape[1:])}, {self.n_classes} classes)")


def _take(x: np.ndarray, y: np.ndarray, n: int | None, rng: np.random.Generator, what: str
          ) -> tuple[np.ndarray, np.ndarray]:
    """A seeded subset of n rows (all rows when n is None)."""
    if n is None:
        return x, y
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{what} must be an integer >= 1 (got {n!r})")
    if n > len(x):
        raise ValueError(f"{what} = {n} exceeds the {len(x)} samples available")
    idx = np.sort(rng.permutation(len(x))[:n])
    return x[idx], y[idx]


def load_digits(n_train: int | None = None, n_test: int | None = None,
                test_fraction: float = 0.2, seed: int = 0) -> ImageData:
    """scikit-learn's handwritten digits (1,797 images of 8×8 pixels, 10 classes), shipped
    inside the scikit-learn package: no download.

    Pixels (0..16) are scaled to [0, 1] and shaped (n, 1, 8, 8). A seeded, class-stratified
    ``test_fraction`` of the images is held out (default 20 % of each class: 1,438 train, 359
    test);
    ``n_train``/``n_test`` then take seeded subsets of each part (e.g. a 200-image training
    set). Same seed → same arrays.
    """
    try:
        from sklearn.datasets import load_digits as _sk_digits
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise ImportError("the digits data set comes with scikit-learn: pip install "
                          "scikit-learn") from e
    if not 0.0 <= float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1) (got {test_fraction!r})")
    d = _sk_digits()
    x = (np.asarray(d.data, dtype=np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = np.asarray(d.target, dtype=np.int64)
    rng = rng_for(seed, STREAM_HOLDOUT)
    test = np.zeros(len(y), dtype=bool)
    for c in range(10):  # stratified: the same fraction of every class
        idx = np.nonzero(y == c)[0]
        test[rng.permutation(idx)[: int(round(test_fraction * len(idx)))]] = True
    xtr, ytr = _take(x[~test], y[~test], n_train, rng, "n_train")
    xte, yte = _take(x[test], y[test], n_test, rng, "n_test")
    return ImageData(xtr, ytr, xte, yte, 10, "digits",
                     "scikit-learn load_digits (UCI optical recognition of handwritten digits)")


#: per-channel mean and standard deviation of the CIFAR-10 training images in [0, 1]
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def _cifar_batches(folder: Path) -> tuple[list[Path], Path]:
    train = [folder / f"data_batch_{i}" for i in range(1, 6)]
    test = folder / "test_batch"
    missing = [p.name for p in [*train, test] if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder} is not a CIFAR-10 folder in the standard python format: missing "
            f"{', '.join(missing)} (expected data_batch_1..5 and test_batch, as unpacked from "
            f"cifar-10-python.tar.gz)")
    return train, test


def _read_pickle_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import pickle

    with open(path, "rb") as fh:
        d = pickle.load(fh, encoding="bytes")
    data = d.get(b"data", d.get("data"))
    labels = d.get(b"labels", d.get("labels"))
    if data is None or labels is None:
        raise ValueError(f"{path}: not a CIFAR-10 batch (no 'data'/'labels' entries)")
    x = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
    return x, np.asarray(labels, dtype=np.int64)


def load_cifar10(root: str | os.PathLike, n_train: int | None = None,
                 n_test: int | None = None, seed: int = 0, normalize: bool = True,
                 reader: str = "auto") -> ImageData:
    """CIFAR-10 from a local folder in its standard python format (``data_batch_1`` …
    ``data_batch_5``, ``test_batch``; the folder ``cifar-10-batches-py`` of
    ``cifar-10-python.tar.gz``, or its parent). Nothing is downloaded.

    reader: ``"torchvision"`` (``torchvision.datasets.CIFAR10(root, download=False)``, the
    optional extra ``coopsgd[vision]``; it checks the files' md5 sums), ``"pickle"`` (read here
    with numpy/pickle: the same arrays) or ``"auto"`` (torchvision when it imports and accepts
    the folder, else pickle). Images (n, 3, 32, 32)
    in [0, 1], standardised per channel with :data:`CIFAR10_MEAN`/:data:`CIFAR10_STD` when
    ``normalize``; ``n_train``/``n_test`` take seeded subsets.
    """
    if reader not in ("auto", "torchvision", "pickle"):
        raise ValueError(f"reader must be 'auto', 'torchvision' or 'pickle' (got {reader!r})")
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"CIFAR-10 folder {folder} does not exist (give the folder "
                                f"holding data_batch_1..5 and test_batch)")
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    train, test = _cifar_batches(folder)
    used = "pickle"
    tv = None
    if reader != "pickle":
        try:
            import torchvision  # noqa: F401
            from torchvision.datasets import CIFAR10 as tv
        except Exception as e:  # ImportError, or torchvision's operator registration failing
            if reader == "torchvision":
                raise ImportError(f"reader='torchvision' but torchvision does not import "
                                  f"({type(e).__name__}: {e}); install the extra "
                                  f"coopsgd[vision] or use reader='pickle'") from e
    if tv is not None and folder.name != "cifar-10-batches-py":
        if reader == "torchvision":
            raise ValueError(f"reader='torchvision' needs the folder to be named "
                             f"cifar-10-batches-py (got {folder}); reader='pickle' reads any "
                             f"name")
        tv = None
    if tv is not None:
        parent = folder.parent  # torchvision wants the folder holding cifar-10-batches-py
        try:
            a = tv(str(parent), train=True, download=False)
            b = tv(str(parent), train=False, download=False)
        except RuntimeError:  # torchvision checks the files' md5: a subset or a test folder
            if reader == "torchvision":
                raise
            tv = None
        else:
            xtr = np.asarray(a.data).transpose(0, 3, 1, 2)
            ytr = np.asarray(a.targets, dtype=np.int64)
            xte = np.asarray(b.data).transpose(0, 3, 1, 2)
            yte = np.asarray(b.targets, dtype=np.int64)
            used = "torchvision"
    if tv is None:
        parts = [_read_pickle_batch(p) for p in train]
        xtr = np.concatenate([p[0] for p in parts])
        ytr = np.concatenate([p[1] for p in parts])
        xte, yte = _read_pickle_batch(test)

    def prep(x: np.ndarray) -> np.ndarray:
        z = x.astype(np.float32) / 255.0
        if normalize:
            z = (z - np.asarray(CIFAR10_MEAN, np.float32)[:, None, None]) \
                / np.asarray(CIFAR10_STD, np.float32)[:, None, None]
        return z

    rng = rng_for(seed, STREAM_HOLDOUT)
    xtr, ytr = _take(xtr, ytr, n_train, rng, "n_train")
    xte, yte = _take(xte, yte, n_test, rng, "n_test")
    return ImageData(prep(xtr), ytr, prep(xte), yte, 10, "cifar10",
                     f"CIFAR-10 from {folder} (read with {used})")


def write_cifar10_folder(folder: str | os.PathLike, n_train_per_batch: int = 10,
                         n_test: int = 10, seed: int = 0) -> Path:
    """Write a tiny folder in CIFAR-10's python format (random uint8 images, labels 0..9):
    ``data_batch_1..5`` and ``test_batch`` pickles with ``data`` (n × 3072 uint8, channel-major)
    and ``labels`` — what :func:`load_cifar10` reads; for tests and examples."""
    import pickle

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def batch(n: int, label: str) -> dict[bytes, Any]:
        return {b"batch_label": label.encode(),
                b"labels": [int(v) for v in rng.integers(0, 10, n)],
                b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                b"filenames": [f"img{i}.png".encode() for i in range(n)]}

    for i in range(1, 6):
        with open(out / f"data_batch_{i}", "wb") as fh:
            pickle.dump(batch(n_train_per_batch, f"training batch {i} of 5"), fh)
    with open(out / "test_batch", "wb") as fh:
        pickle.dump(batch(n_test, "testing batch 1 of 1"), fh)
    with open(out / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer",
                                      b"dog", b"frog", b"horse", b"ship", b"truck"],
                     b"num_cases_per_batch": n_train_per_batch, b"num_vis": 3072}, fh)
    return out


# ---------------------------------------------------------------------------------------------
# partitions of a data set across workers
# ---------------------------------------------------------------------------------------------
#: the split vocabulary: a name, ``{"kind": "dirichlet", "alpha": α}``, or explicit index lists
SPLITS = ("iid", "shared", "dirichlet", "by_label")


def partition(labels: np.ndarray, m: int, split: Any, rng: np.random.Generator,
              min_size: int = 1) -> list[np.ndarray]:
    """Row indices of every worker's shard (a list of m sorted int64 arrays).

    split:

    * ``"iid"``: a seeded shuffle dealt into m equal shards of ⌊n/m⌋ (the n mod m left-over
      samples are dropped);
    * ``"shared"``: every worker's shard is the whole data set (m copies of 0..n−1): every
      worker samples all rows, F_i = F — the i.i.d. setting of Cooperative SGD's Theorem 1
      (finite disjoint shards are never exactly i.i.d.);
    * ``{"kind": "dirichlet", "alpha": α}`` (or ``("dirichlet", α)``): label skew, the standard
      non-IID benchmark (Hsu, Qi & Brown 2019): for every class c, proportions
      p_c ~ Dirichlet(α·1_m) deal class c's samples to the workers; small α → few classes per
      worker, α → ∞ → i.i.d. Shard sizes differ; drawn again (up to 100 times) until every
      worker has at least ``min_size`` samples;
    * ``"by_label"``: samples sorted by label (ties in seeded order) and dealt in m contiguous
      equal blocks (each worker sees about n_classes/m labels);
    * a list of m index lists: explicit shards (indices into the data; overlaps allowed).
    """
    labels = np.asarray(labels)
    n = len(labels)
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"m must be an integer >= 1 (got {m!r})")
    if n < m:
        raise ValueError(f"data: the training set has {n} samples but there are m = {m} "
                         f"workers, each needing at least one (rule: n >= m)")
    if isinstance(split, (list, tuple)) and not (len(split) == 2 and split[0] == "dirichlet"):
        return _explicit(split, m, n)
    kind, alpha = _split_kind(split)
    if kind == "shared":
        return [np.arange(n, dtype=np.int64) for _ in range(m)]
    if kind == "iid":
        per = n // m
        perm = rng.permutation(n)[: per * m]
        return [np.sort(s) for s in perm.reshape(m, per)]
    if kind == "by_label":
        per = n // m
        order = rng.permutation(n)
        order = order[np.argsort(labels[order], kind="stable")][: per * m]
        return [np.sort(s) for s in order.reshape(m, per)]
    classes = np.unique(labels)
    for _ in range(100):
        shards: list[list[np.ndarray]] = [[] for _ in range(m)]
        for c in classes:
            idx = rng.permutation(np.nonzero(labels == c)[0])
            p = rng.dirichlet(np.full(m, alpha))
            cuts = (np.cumsum(p)[:-1] * len(idx)).astype(np.int64)
            for i, part in enumerate(np.split(idx, cuts)):
                shards[i].append(part)
        out = [np.sort(np.concatenate(s)).astype(np.int64) for s in shards]
        if min(len(s) for s in out) >= min_size:
            return out
    raise ValueError(f"split: the Dirichlet split with alpha = {alpha} left a worker with fewer "
                     f"than {min_size} samples in 100 draws (n = {n}, m = {m}): raise alpha or "
                     f"use fewer workers")


def _split_kind(split: Any) -> tuple[str, float]:
    """(kind, α) of a split given by name, ``{"kind": ..., "alpha": ...}`` or
    ``("dirichlet", α)``."""
    if isinstance(split, str):
        if split == "dirichlet":
            raise ValueError("split 'dirichlet' needs a concentration: {kind = 'dirichlet', "
                             "alpha = 0.5}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, a table {{kind = "
                             f"'dirichlet', alpha = ...}} or a list of m index lists (got "
                             f"{split!r})")
        return split, math.nan
    if isinstance(split, tuple) and len(split) == 2:
        split = {"kind": split[0], "alpha": split[1]}
    if isinstance(split, dict):
        kind = split.get("kind")
        extra = sorted(set(split) - {"kind", "alpha"})
        if kind != "dirichlet" or extra:
            if kind in ("iid", "shared", "by_label") and set(split) == {"kind"}:
                return kind, math.nan
            raise ValueError(f"split table must be {{kind = 'dirichlet', alpha = α}} (got "
                             f"{split!r})")
        if "alpha" not in split:
            raise ValueError("split {kind = 'dirichlet'} needs alpha, the Dirichlet "
                             "concentration (> 0)")
        a = split["alpha"]
        if isinstance(a, bool) or not isinstance(a, (int, float, np.integer, np.floating)) \
                or not (math.isfinite(float(a)) and float(a) > 0):
            raise ValueError(f"split.alpha must be a finite number > 0, the Dirichlet "
                             f"concentration (got {a!r})")
        return "dirichlet", float(a)
    raise ValueError(f"split must be one of {list(SPLITS)}, a table {{kind = 'dirichlet', "
                     f"alpha = ...}} or a list of m index lists (got {split!r})")


def _explicit(split: Any, m: int, n: int) -> list[np.ndarray]:
    if len(split) != m:
        raise ValueError(f"split: explicit shards must be a list of m = {m} index lists (got "
                         f"{len(split)})")
    out = []
    for i, s in enumerate(split):
        a = np.asarray(s)
        if a.ndim != 1 or a.size == 0 or a.dtype.kind not in "iu":
            raise ValueError(f"split[{i}]: worker {i}'s shard must be a non-empty list of "
                             f"integer indices (got {s!r:.60})")
        if a.min() < 0 or a.max() >= n:
            raise ValueError(f"split[{i}]: indices must be in 0..{n - 1} (got "
                             f"{int(a.min())}..{int(a.max())})")
        out.append(np.sort(a.astype(np.int64)))
    return out


def label_skew(labels: np.ndarray, shards: list[np.ndarray], n_classes: int) -> dict[str, Any]:
    """How far the workers' label distributions are from the pooled one: ``counts`` (m ×
    n_classes), ``tv`` (mean over workers of the total-variation distance between worker i's
    label histogram and the pooled one: 0 for identical histograms, 1 for disjoint ones) and
    ``sizes``."""
    labels = np.asarray(labels)
    counts = np.stack([np.bincount(labels[s], minlength=n_classes) for s in shards])
    p = counts / counts.sum(1, keepdims=True)
    pooled = counts.sum(0) / counts.sum()
    tv = 0.5 * np.abs(p - pooled).sum(1)
    return {"counts": counts, "tv": float(tv.mean()), "sizes": [int(len(s)) for s in shards]}
