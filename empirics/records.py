"""Plain-data results of an engine run: :class:`Result` (records at a stride) and :class:`Trace`.

Both are dataclasses of numpy arrays and Python scalars; ``to_dict`` gives JSON-ready data and
:meth:`Result.save` writes it atomically (temporary file + ``os.replace``), so a reader never sees
a half-written file. Symbols (Cooperative SGD, JMLR eqs. 7–14): X_k the (m+v) × d matrix of stacked
models (row i = worker i, rows m.. = auxiliary variables), u_k = mean of the m+v rows (the
averaged model, X_k 1/(m+v) in the paper's column convention), J = 11ᵀ/(m+v).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "COLUMNS", "Result", "RunCache", "Trace", "atomic_write_text", "json_ready", "load_result",
    "writable_folder",
]

#: Record columns (one value per recorded step), in order.
COLUMNS = (
    "step",          # k: number of steps taken (records describe the state before step k)
    "loss",          # F(u_k)
    "grad_norm2",    # ‖∇F(u_k)‖²
    "consensus",     # ‖X_k(I − J)‖²_F = Σ_i ‖x_i − u_k‖² over all m+v rows
    "memory_norm2",  # ‖(1/m) Σ_i e_i‖², e_i the error-feedback memory (0 without compressor)
    "memory_norm2_workers",  # (1/m) Σ_i ‖e_i‖²
    "bits",          # cumulative bits sent by all workers up to step k
    "rounds",        # cumulative number of mixing steps (W ≠ I) up to step k
    "grad_norm2_running",  # running average estimate of (1/k) Σ_{j<k} ‖∇F(u_j)‖² (NaN at k=0)
    "consensus_running",   # the same for ‖X_j(I − J)‖²_F (same steps and weights; NaN at k=0)
    "lr",            # η_k (learning rate used at step k; NaN at k = T)
    "wall",          # seconds since the run started (includes record computations)
)


def writable_folder(path: str | os.PathLike) -> Path:
    """``path`` as a folder this process can write (created if missing), checked before any
    work starts by writing and removing a probe file; ``OSError`` naming the folder otherwise
    (read-only, no permission, a file in the way, disk full)."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".coopsgd-probe-", dir=folder)
        try:
            os.write(fd, b"x" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as e:
        raise OSError(f"cannot write to the output folder {folder}: {e.strerror or e}") \
            from None
    return folder


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temporary file in the same directory, fsync,
    ``os.replace``): a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def json_ready(v: Any) -> Any:
    """numpy scalars/arrays, tuples, Paths and non-finite floats → JSON-ready Python objects."""
    if isinstance(v, dict):
        return {str(k): json_ready(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_ready(x) for x in v]
    if isinstance(v, np.ndarray):
        return json_ready(v.tolist())
    if isinstance(v, np.generic):
        return json_ready(v.item())
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


class RunCache:
    """Finished work on disk, one JSON file per key, written atomically.

    ``cache.get_or_run(key, fn)`` returns the stored value for ``key`` if there is one, else calls
    ``fn()`` (which must return JSON-ready data), stores and returns it. Keys are any JSON-able
    description of the work (a dict of parameters); the file name is a hash of it, and the key is
    stored beside the value so a collision would be detected.
    """

    def __init__(self, directory: str | os.PathLike | None):
        self.directory = None if directory is None else Path(directory)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _canonical(key: Any) -> str:
        return json.dumps(json_ready(key), sort_keys=True, separators=(",", ":"))

    def _path(self, key: Any) -> Path | None:
        if self.directory is None:
            return None
        h = hashlib.sha256(self._canonical(key).encode()).hexdigest()[:24]
        return self.directory / f"{h}.json"

    def get(self, key: Any) -> Any | None:
        path = self._path(key)
        if path is None or not path.exists():
            return None
        try:
            stored = json.loads(path.read_text())
            if not isinstance(stored, dict) or "value" not in stored:
                raise ValueError("not a cache entry (no key/value)")
        except (OSError, ValueError) as e:  # JSONDecodeError is a ValueError
            # atomic writes never leave half a file: this one was damaged or replaced
            warnings.warn(f"cache entry {path} is unreadable ({type(e).__name__}: {e}); "
                          f"recomputing it", UserWarning, stacklevel=2)
            return None
        if stored.get("key") != self._canonical(key):
            return None
        return stored["value"]

    def put(self, key: Any, value: Any) -> None:
        path = self._path(key)
        if path is not None:
            atomic_write_text(path, json.dumps({"key": self._canonical(key),
                                                "value": json_ready(value)}))

    def get_or_run(self, key: Any, fn: Callable[[], Any]) -> Any:
        got = self.get(key)
        if got is not None:
            self.hits += 1
            return got
        self.misses += 1
        value = json_ready(fn())
        self.put(key, value)
        return value


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return [_plain(x) for x in v.tolist()] if v.dtype.kind == "f" else v.tolist()
    if isinstance(v, np.generic):
        return _plain(v.item())
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def _unplain_float(v: Any) -> float:
    if v is None:
        return math.nan
    if v == "inf":
        return math.inf
    if v == "-inf":
        return -math.inf
    return float(v)


@dataclass
class Result:
    """Records of one run (plain data).

    Arrays (one entry per record, see :data:`COLUMNS`): ``step, loss, grad_norm2, consensus,
    memory_norm2, memory_norm2_workers, bits, rounds, grad_norm2_running, consensus_running,
    lr, wall``.

    Scalars: ``grad_norm2_avg`` — estimate of (1/K) Σ_{k=0}^{K−1} ‖∇F(u_k)‖² over the K steps
    taken (the left side of the Cooperative SGD bound, JMLR eq. 16, with u_0 = x₀ the paper's u_1);
    ``grad_norm2_avg_method`` says how it was obtained (every step exactly, or a stratified
    random subsample of steps: one uniformly chosen step per block of ``grad_every`` steps,
    weighted by block length — unbiased for the mean over the trajectory);
    ``grad_norm2_avg_steps`` the number of steps at which ∇F was evaluated.
    ``u_final`` is the averaged model u_K (flat, float64), ``comm_steps`` the steps k after which
    a W ≠ I was applied, ``grad_norm2_at`` the steps at which ‖∇F(u_k)‖² entered the running
    average, ``status`` one of ``"completed"``, ``"diverged"``, ``"error"``,
    ``"interrupted"``, or ``"running"`` (a checkpoint written during the run; ``u_final`` is then
    u at the checkpoint), with ``message``. ``spec`` is the run's spec as a dict. ``fires``:
    with compressed gossip (SQuARM-SGD, ``Config.gossip``), how many times each node's trigger
    fired (shape (m,), int), else None.
    """

    spec: dict[str, Any]
    step: np.ndarray
    loss: np.ndarray
    grad_norm2: np.ndarray
    consensus: np.ndarray
    memory_norm2: np.ndarray
    memory_norm2_workers: np.ndarray
    bits: np.ndarray
    rounds: np.ndarray
    grad_norm2_running: np.ndarray
    consensus_running: np.ndarray
    lr: np.ndarray
    wall: np.ndarray
    grad_norm2_avg: float = math.nan
    grad_norm2_avg_method: str = ""
    grad_norm2_avg_steps: int = 0
    steps_done: int = 0
    u_final: np.ndarray | None = None
    comm_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    grad_norm2_at: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    status: str = "completed"
    message: str = ""
    fires: np.ndarray | None = None

    @classmethod
    def from_rows(cls, spec: dict[str, Any], rows: list[dict[str, float]], **scalars: Any
                  ) -> Result:
        cols: dict[str, np.ndarray] = {}
        for c in COLUMNS:
            vals = [r[c] for r in rows]
            dt = np.int64 if c in ("step", "bits", "rounds") else np.float64
            cols[c] = np.asarray(vals, dtype=dt) if vals else np.zeros(0, dtype=dt)
        return cls(spec=spec, **cols, **scalars)

    def __len__(self) -> int:
        return len(self.step)

    @property
    def final_loss(self) -> float:
        """F(u_K) at the last record (NaN if nothing was recorded)."""
        return float(self.loss[-1]) if len(self.loss) else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)

    def save(self, path: str | os.PathLike) -> Path:
        """Write JSON atomically (temp file in the same directory, then ``os.replace``)."""
        return atomic_write_text(path, self.to_json())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        kw: dict[str, Any] = {}
        for f in fields(cls):
            v = d.get(f.name)
            if f.name in COLUMNS:
                if v is None:  # a column added after the file was written
                    v = [None] * len(d.get("step") or [])
                if f.name in ("step", "bits", "rounds"):
                    kw[f.name] = np.asarray(v, dtype=np.int64)
                else:
                    kw[f.name] = np.asarray([_unplain_float(x) for x in v], dtype=np.float64)
            elif f.name == "u_final":
                kw[f.name] = None if v is None else np.asarray(v, dtype=np.float64)
            elif f.name in ("comm_steps", "grad_norm2_at"):
                kw[f.name] = np.asarray(v if v is not None else [], dtype=np.int64)
            elif f.name == "fires":
                kw[f.name] = None if v is None else np.asarray(v, dtype=np.int64)
            elif f.name == "grad_norm2_avg":
                kw[f.name] = _unplain_float(v)
            else:
                kw[f.name] = v
        return cls(**kw)

    def __repr__(self) -> str:
        name = self.spec.get("config", {}).get("name", "?") if isinstance(self.spec, dict) else "?"
        return (f"Result({name}, status={self.status}, steps={self.steps_done}, "
                f"records={len(self)}, final F(u)={self.final_loss:.6g}, "
                f"avg‖∇F(u)‖²={self.grad_norm2_avg:.4g} [{self.grad_norm2_avg_method}], "
                f"bits={int(self.bits[-1]) if len(self.bits) else 0})")


def load_result(path: str | os.PathLike) -> Result:
    """Read a :class:`Result` written by :meth:`Result.save`."""
    with open(path) as fh:
        return Result.from_dict(json.load(fh))


@dataclass
class Trace:
    """Full per-step state of a (small) run, for checking identities (float64 numpy arrays).

    Shapes, with K steps, n = m + v rows, d parameters:
    ``X`` (K+1, n, d): X_k before step k (X[K] final); ``grads`` (K, m, d): the stochastic
    gradients g_k^(i) at x_k^(i); ``direction`` (K, m, d): the local direction (g, or the momentum
    direction); ``delta`` (K, m, d): the update subtracted from the worker rows before mixing
    (η_k·direction, or C(e + η_k·direction) with error feedback); ``memory`` (K+1, m, d): the
    error-feedback memory before step k; ``lr`` (K,); ``mixed`` (K,) bool: a W ≠ I was applied
    after step k; ``W`` list of K entries (the n × n matrix applied after step k, or None).
    """

    X: np.ndarray
    grads: np.ndarray
    direction: np.ndarray
    delta: np.ndarray
    memory: np.ndarray
    lr: np.ndarray
    mixed: np.ndarray
    W: list[np.ndarray | None]

    @property
    def u(self) -> np.ndarray:
        """Averaged model u_k = mean over the n rows, shape (K+1, d)."""
        return self.X.mean(axis=1)
