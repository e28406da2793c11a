"""Gradient compressors with declared constants, batched over leading (worker) axes.

A compressor C maps a vector x ∈ R^d to C(x) ∈ R^d. Each one declares the constant the theory side
uses (pure Python floats, so ``theory`` can consume them without torch):

- unbiased ones: E[C(x)] = x and the *variance factor* ω(d):  E‖C(x) − x‖² ≤ ω‖x‖²;
- every one, where it holds: the *contraction* δ(d) ∈ (0, 1]:  E‖x − C(x)‖² ≤ (1 − δ)‖x‖².

``delta(d)`` is always a statement about the object itself. An unbiased C is a contraction with
δ = 1 − ω only when ω < 1; otherwise ``delta`` is None and ``C.as_contraction()`` gives the
rescaled C/(1 + ω), which is a contraction with δ = 1/(1 + ω) (derived in :class:`Rescaled`).

Wire format (``bits``/``encode``/``decode``): values travel in the dtype of x (``value_bits`` =
32 for float32, 64 for float64; the declared ``bits(d)`` uses float32), indices take ⌈log₂ d⌉
bits, integer codes their stated width, no headers. ``encode`` packs each d-vector into
⌈bits/8⌉ bytes (whole-byte values first, then one bit stream, padded once at the end, LSB first,
host byte order), so ``Payload.bits == rows · bits(d, value_bits)`` exactly, and
``decode(encode(x, g)) == C(x, g')`` bit for bit when g and g' are in the same state.

Randomness: ``generator`` is None (torch's default generator), one ``torch.Generator`` on x's
device, or a sequence of generators, one per row of x (leading axes flattened). With per-row
generators, compressing a batch equals compressing each row alone with its own generator (what one
process per worker does), for every compressor. With a single generator the same holds row by row
for single-stage compressors (draws are row-major); :class:`Compose` draws its first stage for all
rows before its second.

Contract: docs/dev/CONTRACTS.md (``empirics.compressors.Compressor``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

import torch
from torch import Tensor

from theory import checks

__all__ = [
    "QSGD",
    "Compose",
    "Compressor",
    "Identity",
    "Payload",
    "RandomK",
    "Rescaled",
    "ScaledSign",
    "TopK",
    "available",
    "index_bits",
    "make",
    "register",
]

_FLOAT_DTYPES = (torch.float32, torch.float64)

GeneratorLike: TypeAlias = "torch.Generator | Sequence[torch.Generator] | None"


def index_bits(d: int) -> int:
    """⌈log₂ d⌉: bits of one coordinate index in {0, …, d−1} (0 when d = 1)."""
    d = _check_d(d)
    return (d - 1).bit_length()


# ----------------------------------------------------------------------------- validation


def _check_d(d: Any) -> int:
    return checks.integer("d", d, lo=1, why="the vector length")


def _check_input(x: Any, generator: Any) -> Tensor:
    """Validate x (floating tensor, last axis = d ≥ 1, finite) and the generator's device."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"x must be a float32 or float64 tensor, got dtype {x.dtype}")
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(
            f"x must have shape (..., d) with d ≥ 1 (last axis = vector), got {tuple(x.shape)}"
        )
    if generator is not None:
        rows = math.prod(x.shape[:-1])
        gens = [generator] if isinstance(generator, torch.Generator) else generator
        if not isinstance(gens, Sequence) or isinstance(gens, str):
            raise TypeError(
                "generator must be a torch.Generator, a sequence of them (one per row of x) "
                f"or None, got {type(generator).__name__}"
            )
        if not isinstance(generator, torch.Generator) and len(gens) != rows:
            raise ValueError(
                f"generator: got {len(gens)} generators for {rows} rows of x (shape "
                f"{tuple(x.shape)}); give one per row or a single generator"
            )
        for i, g in enumerate(gens):
            if not isinstance(g, torch.Generator):
                raise TypeError(f"generator[{i}] must be a torch.Generator, got {type(g).__name__}")
            if torch.device(g.device) != x.device:
                raise ValueError(
                    f"generator is on device {g.device} but x is on {x.device}: randomised "
                    "compressors draw from a generator on x's device"
                )
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = (~finite).nonzero()
        raise ValueError(
            f"x must be finite: {bad.shape[0]} non-finite entries, first at index "
            f"{tuple(bad[0].tolist())} (value {x[tuple(bad[0].tolist())].item()})"
        )
    return x


def _rand(
    rows: int, n: int, generator: GeneratorLike, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """(rows, n) uniforms on [0, 1); row i from generator[i] when a sequence is given."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.rand(rows, n, generator=generator, dtype=dtype, device=device)
    if rows == 0:
        return torch.empty(0, n, dtype=dtype, device=device)
    return torch.stack([torch.rand(n, generator=g, dtype=dtype, device=device) for g in generator])


def _randint(
    rows: int, n: int, high: int, generator: GeneratorLike, device: torch.device
) -> Tensor:
    """(rows, n) uniform integers in [0, high); row i from generator[i] for a sequence."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randint(0, high, (rows, n), generator=generator, device=device)
    if rows == 0:
        return torch.empty(0, n, dtype=torch.int64, device=device)
    return torch.stack(
        [torch.randint(0, high, (n,), generator=g, device=device) for g in generator]
    )


def _value_bits(value_bits: Any) -> int:
    return checks.integer("value_bits", value_bits, lo=1, why="bits per value, 32 or 64")


def _row_abs_max(x: Tensor) -> Tensor:
    return x.abs().amax(dim=-1, keepdim=True)


def _row_l2(x: Tensor) -> Tensor:
    """‖x‖₂ of every row (shape (..., 1)) without overflow or underflow.

    Direct ``vector_norm`` when every non-zero row has max|x_i| = a in a safe range (d·a² below the
    dtype's max, and a² ≥ 2²⁴·d·tiny so underflowing squares cost < 2⁻²⁴ relative); otherwise
    ‖x‖ = a‖x/a‖ with ‖x/a‖ ∈ [1, √d]. A true norm beyond the dtype's range still gives inf.
    """
    d = x.shape[-1]
    fi = torch.finfo(x.dtype)
    amax = _row_abs_max(x)
    nz = amax[amax > 0]
    hi, lo = math.sqrt(fi.max / d) / 2, math.sqrt(fi.tiny * d) * 2**12
    if nz.numel() == 0 or (float(nz.min()) > lo and float(nz.max()) < hi):
        return torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    a = torch.where(amax > 0, amax, torch.ones_like(amax))
    return a * torch.linalg.vector_norm(x / a, dim=-1, keepdim=True)


def _row_mean_abs(x: Tensor) -> Tensor:
    """‖x‖₁/d of every row (shape (..., 1)); as a·mean(|x|/a) when d·max|x| would overflow."""
    d = x.shape[-1]
    amax = _row_abs_max(x)
    if amax.numel() == 0 or float(amax.max()) < torch.finfo(x.dtype).max / (2 * d):
        return x.abs().mean(dim=-1, keepdim=True)
    a = torch.where(amax > 0, amax, torch.ones_like(amax))
    return a * (x / a).abs().mean(dim=-1, keepdim=True)


# ----------------------------------------------------------------------------- wire format


@dataclass(frozen=True)
class _Field:
    """One wire field per vector: n entries; ``width`` bits each (None = one value, x's dtype)."""

    n: int
    width: int | None


def _int_dtype(width: int) -> torch.dtype:
    if width <= 7:
        return torch.uint8
    if width <= 15:
        return torch.int16
    if width <= 31:
        return torch.int32
    return torch.int64


@dataclass(frozen=True, eq=False)
class Payload:
    """Packed wire message of a batch of d-vectors.

    ``data``: uint8 tensor of shape (*batch, ⌈bits_per_vector/8⌉), one message per vector.
    ``bits``: exact payload bits of the batch (= rows · ``bits_per_vector``); ``nbytes`` the bytes
    actually held (each vector's message is padded to whole bytes once).
    """

    data: Tensor
    d: int
    dtype: torch.dtype
    bits_per_vector: int
    compressor: str

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[:-1])

    @property
    def rows(self) -> int:
        return math.prod(self.batch_shape)

    @property
    def bits(self) -> int:
        return self.rows * self.bits_per_vector

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()

    def __repr__(self) -> str:
        return (
            f"Payload({self.compressor}, batch={self.batch_shape}, d={self.d}, "
            f"dtype={self.dtype}, bits={self.bits}, nbytes={self.nbytes})"
        )


def _pack(fields: list[Tensor], layout: list[_Field], batch: tuple[int, ...]) -> Tensor:
    """Pack per-vector fields: value fields as raw bytes, then one LSB-first bit stream."""
    byte_parts: list[Tensor] = []
    bit_parts: list[Tensor] = []
    for f, spec in zip(fields, layout, strict=True):
        f = f.reshape(*batch, spec.n)
        if spec.width is None:
            byte_parts.append(f.contiguous().view(torch.uint8))
        elif spec.width > 0:
            dt = _int_dtype(spec.width)
            shifts = torch.arange(spec.width, dtype=dt, device=f.device)
            b = (f.to(dt).unsqueeze(-1) >> shifts) & 1
            bit_parts.append(b.to(torch.uint8).reshape(*batch, spec.n * spec.width))
    device = fields[0].device
    if bit_parts:
        bits = torch.cat(bit_parts, dim=-1)
        pad = (-bits.shape[-1]) % 8
        if pad:
            bits = torch.cat([bits, bits.new_zeros(*batch, pad)], dim=-1)
        bits = bits.reshape(*batch, bits.shape[-1] // 8, 8)
        packed = torch.zeros(bits.shape[:-1], dtype=torch.uint8, device=device)
        for j in range(8):
            packed |= bits[..., j] << j
        byte_parts.append(packed)
    if not byte_parts:
        return torch.zeros(*batch, 0, dtype=torch.uint8, device=device)
    return torch.cat(byte_parts, dim=-1)


def _unpack(data: Tensor, layout: list[_Field], dtype: torch.dtype) -> list[Tensor]:
    """Inverse of :func:`_pack`: value fields as ``dtype``, integer fields as int64."""
    batch = tuple(data.shape[:-1])
    out: list[Tensor | None] = [None] * len(layout)
    itemsize = torch.empty((), dtype=dtype).element_size()
    pos = 0
    for i, spec in enumerate(layout):
        if spec.width is None:
            nb = spec.n * itemsize
            part = data[..., pos : pos + nb]
            # fresh row-major copy: .contiguous() may keep odd strides of size-1 axes
            buf = torch.empty(part.shape, dtype=torch.uint8, device=data.device).copy_(part)
            out[i] = buf.view(dtype)
            pos += nb
    shifts = torch.arange(8, dtype=torch.uint8, device=data.device)
    tail = data[..., pos:]
    bits = ((tail.unsqueeze(-1) >> shifts) & 1).reshape(*batch, 8 * tail.shape[-1])
    bpos = 0
    for i, spec in enumerate(layout):
        if spec.width is None:
            continue
        if spec.width == 0:
            out[i] = torch.zeros(*batch, spec.n, dtype=torch.int64, device=data.device)
            continue
        nbits = spec.n * spec.width
        b = bits[..., bpos : bpos + nbits].reshape(*batch, spec.n, spec.width).to(torch.int64)
        w = torch.arange(spec.width, dtype=torch.int64, device=data.device)
        out[i] = (b << w).sum(dim=-1)
        bpos += nbits
    return out  # type: ignore[return-value]


# ----------------------------------------------------------------------------- base class


class Compressor:
    """Base class (see module docstring and docs/dev/CONTRACTS.md).

    Subclasses define ``_layout(d)`` (wire fields), ``_encode_fields(x, g)`` (the fields, as
    tensors, of every row of x) and ``_decode_fields(fields, d, dtype)`` (dense output). Both
    ``__call__`` and ``decode(encode(·))`` go through the same ``_decode_fields``, so the dense
    output and the wire round trip agree bit for bit.
    """

    name: ClassVar[str] = "compressor"
    unbiased: ClassVar[bool] = False
    randomized: ClassVar[bool] = False

    # --- declared constants
    def omega(self, d: int) -> float | None:
        """Variance factor ω(d): E‖C(x) − x‖² ≤ ω‖x‖² (None when not unbiased)."""
        return None

    def delta(self, d: int) -> float | None:
        """Contraction δ(d): E‖x − C(x)‖² ≤ (1 − δ)‖x‖² for every x (None if C is none)."""
        w = self.omega(d)
        if self.unbiased and w is not None and w < 1:
            return 1.0 - w
        return None

    def bits(self, d: int, value_bits: int = 32) -> int:
        """Exact payload bits of one d-vector (values at ``value_bits``, float32 by default)."""
        vb = _value_bits(value_bits)
        return sum(f.n * (vb if f.width is None else f.width) for f in self._layout(_check_d(d)))

    # --- subclass hooks
    def _check_dim(self, d: int) -> None:
        """Raise if this compressor cannot act on d-vectors."""

    def _layout(self, d: int) -> list[_Field]:
        raise NotImplementedError

    def _encode_fields(self, x: Tensor, generator: GeneratorLike) -> list[Tensor]:
        raise NotImplementedError

    def _decode_fields(self, fields: list[Tensor], d: int, dtype: torch.dtype) -> Tensor:
        raise NotImplementedError

    def _dense(self, x: Tensor, generator: GeneratorLike) -> Tensor:
        """C(x) on validated x; overrides must equal decode∘encode bit for bit (tested)."""
        return self._decode_fields(self._encode_fields(x, generator), x.shape[-1], x.dtype)

    # --- public API
    def __call__(self, x: Tensor, generator: GeneratorLike = None) -> Tensor:
        """C(x) for every last-axis vector of x (shape (..., d)); same shape, dtype, device."""
        x = _check_input(x, generator)
        d = x.shape[-1]
        self._check_dim(d)
        return self._dense(x, generator)

    def encode(self, x: Tensor, generator: GeneratorLike = None) -> Payload:
        """Compact wire message of C(x) for every last-axis vector (see module docstring)."""
        x = _check_input(x, generator)
        d = x.shape[-1]
        self._check_dim(d)
        layout = self._layout(d)
        data = _pack(self._encode_fields(x, generator), layout, tuple(x.shape[:-1]))
        vb = 8 * x.element_size()
        return Payload(data, d, x.dtype, self.bits(d, vb), repr(self))

    def decode(self, payload: Payload) -> Tensor:
        """Dense C(x) (shape (*batch, d)) from a :class:`Payload` made by ``encode``."""
        if not isinstance(payload, Payload):
            raise TypeError(f"payload must be a Payload, got {type(payload).__name__}")
        if payload.compressor != repr(self):
            raise ValueError(
                f"payload was encoded by {payload.compressor}, cannot decode it with {self!r}"
            )
        d = payload.d
        self._check_dim(d)
        expect = -(-self.bits(d, 8 * torch.empty((), dtype=payload.dtype).element_size()) // 8)
        if payload.data.dtype != torch.uint8 or payload.data.shape[-1] != expect:
            raise ValueError(
                f"payload.data must be uint8 with last axis {expect} bytes for d={d}, got "
                f"{payload.data.dtype} with shape {tuple(payload.data.shape)}"
            )
        fields = _unpack(payload.data, self._layout(d), payload.dtype)
        return self._decode_fields(fields, d, payload.dtype)

    def as_contraction(self) -> Rescaled:
        """C/(1 + ω): a contraction with δ = 1/(1 + ω) (unbiased compressors only)."""
        return Rescaled(self)


def _dataclass_repr(obj: Any) -> str:
    args = ", ".join(f"{f.name}={getattr(obj, f.name)!r}" for f in dataclasses.fields(obj))
    return f"{type(obj).__name__}({args})"


# ----------------------------------------------------------------------------- compressors


@dataclass(frozen=True, repr=False)
class Identity(Compressor):
    """C(x) = x (no compression): unbiased, ω = 0, δ = 1; bits = d · 32 (float32 values).

    Returns a copy, never x itself, so callers may modify either in place.
    """

    name: ClassVar[str] = "identity"
    unbiased: ClassVar[bool] = True

    def omega(self, d: int) -> float:
        _check_d(d)
        return 0.0

    def delta(self, d: int) -> float:
        _check_d(d)
        return 1.0

    def _layout(self, d: int) -> list[_Field]:
        return [_Field(d, None)]

    def _encode_fields(self, x: Tensor, generator: GeneratorLike) -> list[Tensor]:
        return [x]

    def _decode_fields(self, fields: list[Tensor], d: int, dtype: torch.dtype) -> Tensor:
        return fields[0].clone()

    def _dense(self, x: Tensor, generator: GeneratorLike) -> Tensor:
        return x.clone()

    def __repr__(self) -> str:
        return "Identity()"


class _Sparsifier(Compressor):
    """Keeps k coordinates: the wire carries k (index, value) pairs.

    ``_select(x, g) -> (idx, vals)`` with idx (..., k) int64 and vals (..., k); the output is
    vals scattered into zeros. TopK and RandomK(unbiased=False) are *projections* (vals = x[idx]),
    which :class:`Compose` uses to derive its constants.
    """

    k: int

    def _check_dim(self, d: int) -> None:
        if self.k > d:
            raise ValueError(f"{self!r}: k must be ≤ d, got k={self.k} > d={d} (last axis of x)")

    def _select(self, x: Tensor, generator: GeneratorLike) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _layout(self, d: int) -> list[_Field]:
        return [_Field(self.k, None), _Field(self.k, index_bits(d))]

    def _encode_fields(self, x: Tensor, generator: GeneratorLike) -> list[Tensor]:
        idx, vals = self._select(x, generator)
        return [vals, idx]

    def _decode_fields(self, fields: list[Tensor], d: int, dtype: torch.dtype) -> Tensor:
        vals, idx = fields
        out = torch.zeros(*vals.shape[:-1], d, dtype=dtype, device=vals.device)
        return out.scatter_(-1, idx, vals.to(dtype))

    @property
    def is_projection(self) -> bool:
        return not self.unbiased


@dataclass(frozen=True, repr=False)
class TopK(_Sparsifier):
    """Top-k: keep the k entries of largest |x_i| (ties broken by torch.topk), zero the rest.

    Biased; deterministic contraction δ = k/d: ‖x − top_k(x)‖² ≤ (1 − k/d)‖x‖² for every x,
    since the d − k dropped squares are the smallest, so their mean is at most the mean of all
    (derived here). bits = k · (32 + ⌈log₂ d⌉): float32 values
    and ⌈log₂ d⌉-bit indices.
    """

    k: int
    name: ClassVar[str] = "topk"

    def __post_init__(self) -> None:
        checks.integer("TopK: k", self.k, lo=1)

    def delta(self, d: int) -> float:
        self._check_dim(_check_d(d))
        return self.k / d

    def _select(self, x: Tensor, generator: GeneratorLike) -> tuple[Tensor, Tensor]:
        idx = torch.topk(x.abs(), self.k, dim=-1, sorted=False).indices
        return idx, x.gather(-1, idx)

    def __repr__(self) -> str:
        return _dataclass_repr(self)


# McDiarmid: each draw changes the number of distinct values by ≤ 1, so
# P(distinct ≤ E[distinct] − t) ≤ exp(−2t²/n); t = √(n·ln(10¹²)/2) gives ≤ 1e−12 per row.
_DRAW_FAILURE_LOG = math.log(1e12)


def _n_draws(d: int, k: int) -> int | None:
    """Smallest n (found by iteration) with E[#distinct of n uniform draws] − t(n) ≥ k, or None."""
    n = k
    for _ in range(60):
        expected = -d * math.expm1(n * math.log1p(-1.0 / d))
        t = math.sqrt(n * _DRAW_FAILURE_LOG / 2)
        short = k - (expected - t)
        if short <= 0:
            return n
        n += max(1, math.ceil(short))
        if n > 2 * d:
            return None
    return None


def _sample_subsets(
    rows: int,
    d: int,
    k: int,
    generator: GeneratorLike,
    device: torch.device,
    n_draws: int | None = None,
) -> Tensor:
    """k distinct indices per row, each row an independent uniform k-subset of {0..d−1}.

    Two exact methods (both uniform over k-subsets):
    - *draws* (k ≪ d): n i.i.d. uniform indices per row; keep the first k distinct ones in draw
      order. By symmetry of the i.i.d. sequence under relabelling of {0..d−1}, the ordered tuple
      of the first k distinct values is uniform over ordered k-tuples. n is chosen so that fewer
      than k distinct values occur with probability ≤ 1e−12 per row (McDiarmid); if it happens
      anyway, the whole batch falls back to the next method (still exact, still seeded).
    - *noise*: i.i.d. float64 uniforms per coordinate, the k largest (ties have probability
      ≈ d²·2⁻⁵³, negligible).
    Cost: draws O(n log n) per row with n ≈ k; noise O(d) per row.
    """
    if n_draws is None and d >= 1024 and 4 * k <= d:
        n_draws = _n_draws(d, k)
    if n_draws is not None:
        r = _randint(rows, n_draws, d, generator, device)
        sv, pos = torch.sort(r, dim=-1, stable=True)
        first = torch.ones_like(sv, dtype=torch.bool)
        first[:, 1:] = sv[:, 1:] != sv[:, :-1]
        firstpos = torch.where(first, pos, torch.full_like(pos, n_draws))
        chosen = torch.topk(firstpos, k, dim=-1, largest=False, sorted=True).values
        if rows == 0 or not bool((chosen[:, -1] >= n_draws).any()):
            return r.gather(-1, chosen)
    noise = _rand(rows, d, generator, torch.float64, device)
    return torch.topk(noise, k, dim=-1, sorted=False).indices


@dataclass(frozen=True, repr=False)
class RandomK(_Sparsifier):
    """Random-k: keep k coordinates chosen uniformly at random (independently per row).

    - ``unbiased=False``: C(x) = x ⊙ 1_S, |S| = k. E‖x − C(x)‖² = (1 − k/d)‖x‖² exactly
      (each i ∈ S with probability k/d), so δ = k/d in expectation; biased.
    - ``unbiased=True``: C(x) = (d/k) x ⊙ 1_S. E[C(x)] = x and, with p = k/d,
      E(C_i − x_i)² = x_i²[p(1/p − 1)² + (1 − p)] = (d/k − 1)x_i², so ω = d/k − 1 exactly
      (derived). δ = 1 − ω = 2 − d/k when k > d/2, else None (use ``as_contraction()``).

    bits = k · (32 + ⌈log₂ d⌉) (float32 values, scaled ones for ``unbiased=True``). Only the
    index set is random; sampling: :func:`_sample_subsets`.
    """

    k: int
    unbiased: bool = False  # type: ignore[misc]
    name: ClassVar[str] = "randk"
    randomized: ClassVar[bool] = True

    def __post_init__(self) -> None:
        checks.integer("RandomK: k", self.k, lo=1)
        checks.boolean("RandomK: unbiased", self.unbiased)

    def omega(self, d: int) -> float | None:
        self._check_dim(_check_d(d))
        return d / self.k - 1.0 if self.unbiased else None

    def delta(self, d: int) -> float | None:
        self._check_dim(_check_d(d))
        return self.k / d if not self.unbiased else super().delta(d)

    def _select_from(self, x: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
        """The deterministic part: (idx, x[idx]), scaled by d/k when unbiased."""
        vals = x.gather(-1, idx)
        if self.unbiased:
            vals = vals * (x.shape[-1] / self.k)
            if not bool(torch.isfinite(vals).all()):
                raise ValueError(
                    f"{self!r}: (d/k)·x overflows {x.dtype} (d/k = {x.shape[-1] / self.k:g}, "
                    f"max|x| = {x.abs().max().item():g})"
                )
        return idx, vals

    def _select(self, x: Tensor, generator: GeneratorLike) -> tuple[Tensor, Tensor]:
        batch, d = tuple(x.shape[:-1]), x.shape[-1]
        idx = _sample_subsets(math.prod(batch), d, self.k, generator, x.device)
        return self._select_from(x, idx.reshape(*batch, self.k))

    def __repr__(self) -> str:
        return _dataclass_repr(self)


@dataclass(frozen=True, repr=False)
class QSGD(Compressor):
    """QSGD with s levels (Alistarh, Grubic, Li, Tomioka, Vojnovic, NeurIPS 2017).

    Q_s(x)_i = ‖x‖₂ · sgn(x_i) · ξ_i, with r_i = |x_i|/‖x‖₂ ∈ [l/s, (l+1)/s] and
    ξ_i = (l+1)/s with probability s·r_i − l, else l/s (independently per coordinate); Q_s(0) = 0.
    - Unbiased: E ξ_i = r_i.
    - ω(d) = min(d/s², √d/s) — the paper's Lemma 3.1 (recalled; not checked against the
      paper's text). Derived here as well: Var(ξ_i)‖x‖² = (r_i − l/s)((l+1)/s − r_i)‖x‖² ≤
      min(1/(4s²), r_i/s)‖x‖², and Σ r_i ≤ √d, so E‖Q − x‖² ≤ min(d/(4s²), √d/s)‖x‖², which
      is ≤ the declared ω (the declared value keeps the paper's form).
    - δ = 1 − ω where ω < 1 (large s), else None.
    bits = 32 + d·(1 + ⌈log₂(s+1)⌉): one float32 norm, per coordinate a sign bit and the level
    l ∈ {0..s} in ⌈log₂(s+1)⌉ bits (no Elias coding).
    The norm is computed without overflow or underflow for huge and tiny x (:func:`_row_l2`); if
    ‖x‖₂ itself exceeds the dtype's range a ValueError is raised.
    """

    s: int
    name: ClassVar[str] = "qsgd"
    unbiased: ClassVar[bool] = True
    randomized: ClassVar[bool] = True

    def __post_init__(self) -> None:
        checks.integer("QSGD: s", self.s, lo=1)

    @property
    def level_bits(self) -> int:
        return (self.s).bit_length()  # = ⌈log₂(s + 1)⌉

    def omega(self, d: int) -> float:
        d = _check_d(d)
        return min(d / self.s**2, math.sqrt(d) / self.s)

    def _layout(self, d: int) -> list[_Field]:
        return [_Field(1, None), _Field(d, 1 + self.level_bits)]

    def _levels(self, x: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Deterministic part given uniforms u ∈ [0, 1) (shape of x).

        Returns (‖x‖₂ per row, level as a float tensor, x < 0) with level = l + [u_i < s·r_i − l],
        l = ⌊s·r_i⌋, r_i = |x_i|/‖x‖₂ clamped to [0, 1] (r = 0 for the zero vector).
        """
        norm = _row_l2(x)
        if not bool(torch.isfinite(norm).all()):
            raise ValueError(
                f"{self!r}: ‖x‖₂ overflows {x.dtype} (max|x| = {x.abs().max().item():g}); "
                "scale x down before compressing"
            )
        sr = x.abs().div_(torch.where(norm > 0, norm, torch.ones_like(norm)))
        sr = sr.clamp_(max=1.0).mul_(self.s)  # s·r
        level = sr.floor()
        p = sr.sub_(level)
        level.add_((u < p).to(x.dtype))
        return norm, level, x < 0

    def _values(self, norm: Tensor, level: Tensor, neg: Tensor) -> Tensor:
        """Dense output ±‖x‖·level/s (shared by __call__ and decode, so both agree bitwise)."""
        v = norm * (level / self.s)
        return torch.where(neg, -v, v)

    def _quantize(self, x: Tensor, u: Tensor) -> list[Tensor]:
        """Wire fields given uniforms u: [norm, code], code = level·2 + [x_i < 0]."""
        norm, level, neg = self._levels(x, u)
        code = (level.to(torch.int32) << 1) | neg.to(torch.int32)
        return [norm, code]

    def _uniforms(self, x: Tensor, generator: GeneratorLike) -> Tensor:
        rows = math.prod(x.shape[:-1])
        return _rand(rows, x.shape[-1], generator, x.dtype, x.device).reshape(x.shape)

    def _encode_fields(self, x: Tensor, generator: GeneratorLike) -> list[Tensor]:
        return self._quantize(x, self._uniforms(x, generator))

    def _decode_fields(self, fields: list[Tensor], d: int, dtype: torch.dtype) -> Tensor:
        norm, code = fields
        norm = norm.to(dtype).reshape(*code.shape[:-1], 1)
        return self._values(norm, (code >> 1).to(dtype), (code & 1).bool())

    def _dense(self, x: Tensor, generator: GeneratorLike) -> Tensor:
        return self._values(*self._levels(x, self._uniforms(x, generator)))

    def __repr__(self) -> str:
        return _dataclass_repr(self)


@dataclass(frozen=True, repr=False)
class ScaledSign(Compressor):
    """Scaled sign: C(x) = (‖x‖₁/d) · sign(x), with sign(0) := +1 so one bit per coordinate.

    Biased. Exact identity (derived): ‖x − C(x)‖² = ‖x‖² − 2(‖x‖₁/d)‖x‖₁ + d(‖x‖₁/d)²
    = (1 − ‖x‖₁²/(d‖x‖₂²))‖x‖², i.e. δ(x) = ‖x‖₁²/(d‖x‖₂²) ≥ 1/d (Cauchy–Schwarz ‖x‖₁ ≥ ‖x‖₂),
    as in Karimireddy, Rebjock, Stich, Jaggi, ICML 2019 (recalled, not checked).
    Declared δ(d) = 1/d, the worst case (a 1-sparse x). C(0) = 0.
    bits = 32 + d: one float32 scale and d sign bits. The scale never overflows (it is ≤ max|x|;
    :func:`_row_mean_abs`).
    """

    name: ClassVar[str] = "sign"

    def delta(self, d: int) -> float:
        return 1.0 / _check_d(d)

    def _layout(self, d: int) -> list[_Field]:
        return [_Field(1, None), _Field(d, 1)]

    def _encode_fields(self, x: Tensor, generator: GeneratorLike) -> list[Tensor]:
        return [_row_mean_abs(x), (x < 0).to(torch.uint8)]

    def _decode_fields(self, fields: list[Tensor], d: int, dtype: torch.dtype) -> Tensor:
        scale, neg = fields
        scale = scale.to(dtype).reshape(*neg.shape[:-1], 1)
        return torch.where(neg.bool(), -scale, scale)

    def _dense(self, x: Tensor, generator: GeneratorLike) -> Tensor:
        scale = _row_mean_abs(x)
        return torch.where(x < 0, -scale, scale)

    def __repr__(self) -> str:
        return "ScaledSign()"


@dataclass(frozen=True, repr=False)
class Rescaled(Compressor):
    """C/(1 + ω(d)) for an unbiased C with variance factor ω: a contraction, δ = 1/(1 + ω).

    Derived: E‖x − C/(1+ω)‖² = ‖x‖² − 2⟨x, E C⟩/(1+ω) + E‖C‖²/(1+ω)², with E C = x and
    E‖C‖² = ‖x‖² + E‖C − x‖² ≤ (1+ω)‖x‖², hence ≤ (1 − 1/(1+ω))‖x‖². Biased (unless ω = 0).
    Same wire message as C (the receiver knows ω(d)); bits = C.bits.
    """

    inner: Compressor
    name: ClassVar[str] = "rescaled"

    def __post_init__(self) -> None:
        if not isinstance(self.inner, Compressor):
            raise TypeError(f"Rescaled: inner must be a Compressor, got {self.inner!r}")
        if not self.inner.unbiased:
            raise ValueError(
                f"Rescaled: inner must be unbiased (it rescales by 1/(1+ω)), got {self.inner!r}"
            )

    @property
    def randomized(self) -> bool:  # type: ignore[override]
        return self.inner.randomized

    def factor(self, d: int) -> float:
        """1/(1 + ω(d))."""
        return 1.0 / (1.0 + self.inner.omega(d))  # type: ignore[operator]

    def delta(self, d: int) -> float:
        return self.factor(d)

    def _check_dim(self, d: int) -> None:
        self.inner._check_dim(d)

    def _layout(self, d: int) -> list[_Field]:
        return self.inner._layout(d)

    def _encode_fields(self, x: Tensor, generator: GeneratorLike) -> list[Tensor]:
        return self.inner._encode_fields(x, generator)

    def _decode_fields(self, fields: list[Tensor], d: int, dtype: torch.dtype) -> Tensor:
        return self.inner._decode_fields(fields, d, dtype) * self.factor(d)

    def _dense(self, x: Tensor, generator: GeneratorLike) -> Tensor:
        return self.inner._dense(x, generator) * self.factor(x.shape[-1])

    def __repr__(self) -> str:
        return f"Rescaled({self.inner!r})"


@dataclass(frozen=True, repr=False)
class Compose(Compressor):
    """Sparsify then compress the kept values: C(x) = scatter_S(second(first's k values)).

    ``first`` is a sparsifier (TopK or RandomK) keeping k entries; ``second`` acts on the
    k-vector of kept values (so its constants are taken at dimension k). SQuARM-SGD (Singh et al.
    2021) and Qsparse-local-SGD (Basu et al. 2019) use top-k then a quantiser; their exact lemma
    is recalled, not verified (SQuARM-SGD's abstract states only that it sparsifies then
    quantises).
    Constants (derived here):

    - first a projection (TopK, RandomK(unbiased=False); y = x ⊙ 1_S, δ₁ = k/d) and second with
      contraction δ₂(k): z = C(x) is supported on S and x − y off S, so
      ‖x − z‖² = ‖x − y‖² + ‖y − z‖² = ‖x‖² − ‖y‖² + ‖y − z‖². Conditioning on S,
      E‖y − z‖² ≤ (1 − δ₂)‖y‖², hence E‖x − z‖² ≤ ‖x‖² − δ₂E‖y‖² ≤ (1 − δ₁δ₂)‖x‖²:
      **δ = δ₁ · δ₂(k)**, biased. With an unbiased second stage δ₂ = 1 − ω₂ (needs ω₂ < 1);
      with ``second = Q.as_contraction()``, δ₂ = 1/(1 + ω₂) and δ = (k/d)/(1 + ω₂), the form of
      Basu et al.'s Lemma 1 (recalled). If second declares no δ, δ is None.
    - first RandomK(unbiased=True) (ω₁ = d/k − 1) and second unbiased (ω₂(k)), independent:
      E[C] = x and E‖C − x‖² = E‖y − x‖² + E‖z − y‖² ≤ ω₁‖x‖² + ω₂E‖y‖² ≤ (ω₁ + ω₂(1 + ω₁))‖x‖²
      (the cross term vanishes as E[z | y] = y): **ω = (1 + ω₁)(1 + ω₂) − 1**, unbiased.
    - An unbiased sparsifier followed by a biased stage is refused (no constant to declare).

    bits = k⌈log₂ d⌉ + second.bits(k): the indices, then the second stage's message of the
    k-vector (e.g. TopK(k) then QSGD(s): k⌈log₂ d⌉ + 32 + k(1 + ⌈log₂(s+1)⌉)).
    """

    first: _Sparsifier
    second: Compressor
    name: ClassVar[str] = "compose"

    def __post_init__(self) -> None:
        if not isinstance(self.first, _Sparsifier):
            raise ValueError(
                f"Compose: first must be a sparsifier (TopK or RandomK), got {self.first!r}"
            )
        if not isinstance(self.second, Compressor):
            raise TypeError(f"Compose: second must be a Compressor, got {self.second!r}")
        if self.first.unbiased and not self.second.unbiased:
            raise ValueError(
                f"Compose: an unbiased sparsifier ({self.first!r}) followed by a biased "
                f"compressor ({self.second!r}) has no declared constant; use "
                "RandomK(k, unbiased=False) or an unbiased second stage"
            )

    @property
    def unbiased(self) -> bool:  # type: ignore[override]
        return self.first.unbiased and self.second.unbiased

    @property
    def randomized(self) -> bool:  # type: ignore[override]
        return self.first.randomized or self.second.randomized

    def _check_dim(self, d: int) -> None:
        self.first._check_dim(d)
        self.second._check_dim(self.first.k)

    def omega(self, d: int) -> float | None:
        self._check_dim(_check_d(d))
        if not self.unbiased:
            return None
        w1, w2 = self.first.omega(d), self.second.omega(self.first.k)
        return (1.0 + w1) * (1.0 + w2) - 1.0  # type: ignore[operator]

    def delta(self, d: int) -> float | None:
        self._check_dim(_check_d(d))
        if self.unbiased:
            return super().delta(d)
        d2 = self.second.delta(self.first.k)
        return None if d2 is None else self.first.delta(d) * d2  # type: ignore[operator]

    def _layout(self, d: int) -> list[_Field]:
        return [_Field(self.first.k, index_bits(d)), *self.second._layout(self.first.k)]

    def _encode_fields(self, x: Tensor, generator: GeneratorLike) -> list[Tensor]:
        idx, vals = self.first._select(x, generator)
        return [idx, *self.second._encode_fields(vals, generator)]

    def _decode_fields(self, fields: list[Tensor], d: int, dtype: torch.dtype) -> Tensor:
        idx, rest = fields[0], fields[1:]
        vals = self.second._decode_fields(rest, self.first.k, dtype)
        out = torch.zeros(*vals.shape[:-1], d, dtype=dtype, device=vals.device)
        return out.scatter_(-1, idx, vals)

    def _dense(self, x: Tensor, generator: GeneratorLike) -> Tensor:
        idx, vals = self.first._select(x, generator)
        vals = self.second._dense(vals, generator)
        return torch.zeros_like(x).scatter_(-1, idx, vals)

    def __repr__(self) -> str:
        return f"Compose({self.first!r}, {self.second!r})"


# ----------------------------------------------------------------------------- registry

_REGISTRY: dict[str, type[Compressor]] = {
    "identity": Identity,
    "topk": TopK,
    "randk": RandomK,
    "qsgd": QSGD,
    "sign": ScaledSign,
}


_BUILTIN = frozenset(_REGISTRY)


def available() -> list[str]:
    """Names accepted by :func:`make` (compose two with '+', e.g. ``"topk+qsgd"``)."""
    return sorted(_REGISTRY)


def _params(cls: type[Compressor]) -> list[str]:
    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls) if f.init]
    import inspect

    return [p.name for p in inspect.signature(cls).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


_PROTOCOL = ("unbiased", "omega", "delta", "bits", "encode", "decode", "__call__")


def register(name: str, cls: type, *, replace: bool = False) -> None:
    """Make a compressor class available by name: ``make(name, **kw)`` and
    ``compressor = "name:key=value"`` in specs then build ``cls(**kw)``.

    ``cls``: a :class:`Compressor` subclass, or any class with the protocol of
    docs/dev/CONTRACTS.md (``unbiased``, ``omega``, ``delta``, ``bits``, ``__call__``,
    ``encode``, ``decode``). ``name``: lower-case letters, digits and ``_`` (no ``+`` or ``:``,
    which the spec syntax uses); a built-in or taken name is refused unless ``replace``. Check
    the class first with :func:`empirics.testing.check_compressor`."""
    import re

    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"name must be lower-case letters, digits and '_', starting with a "
                         f"letter (it is written in specs as 'name:key=value'); got {name!r}")
    if not isinstance(cls, type):
        raise TypeError(f"cls must be a compressor class (got {type(cls).__name__})")
    missing = [a for a in _PROTOCOL if not hasattr(cls, a)]
    if missing:
        raise TypeError(f"{cls.__name__} lacks {missing} of the compressor protocol "
                        f"(docs/dev/CONTRACTS.md)")
    if name in _REGISTRY and _REGISTRY[name] is not cls and not replace:
        raise ValueError(f"compressor name {name!r} is taken by {_REGISTRY[name].__name__}; "
                         f"pass replace=True to replace it")
    if name in _BUILTIN and _REGISTRY[name] is not cls:
        raise ValueError(f"{name!r} is a built-in compressor and cannot be replaced")
    _REGISTRY[name] = cls


def _build(name: str, kw: dict[str, Any]) -> Compressor:
    key = name.strip().lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown compressor {name!r}; available: {', '.join(available())}")
    cls = _REGISTRY[key]
    unknown = sorted(set(kw) - set(_params(cls)))
    if unknown:
        raise ValueError(
            f"unknown argument(s) {unknown} for {key!r} (accepts: {_params(cls) or 'none'})"
        )
    return cls(**kw)


def make(name: str | Compressor, **kw: Any) -> Compressor:
    """Build a compressor by name: ``make("topk", k=10)``, ``make("qsgd", s=4)``, ``make("sign")``.

    ``"a+b"`` builds ``Compose(make(a), make(b))``; each keyword goes to the stage whose
    constructor accepts it (an error if both or neither do), e.g.
    ``make("topk+qsgd", k=100, s=4)`` = ``Compose(TopK(100), QSGD(4))``. A Compressor is returned
    unchanged (no keywords allowed).
    """
    if isinstance(name, Compressor):
        if kw:
            raise ValueError(f"make: keywords {sorted(kw)} given with a ready {name!r}")
        return name
    if not isinstance(name, str):
        raise TypeError(f"name must be a str or Compressor, got {type(name).__name__}")
    parts = name.split("+")
    if len(parts) == 1:
        return _build(parts[0], kw)
    if len(parts) != 2:
        raise ValueError(f"name {name!r}: compose at most two stages ('first+second')")
    a, b = (p.strip().lower() for p in parts)
    for p in (a, b):
        if p not in _REGISTRY:
            raise ValueError(f"unknown compressor {p!r}; available: {', '.join(available())}")
    pa, pb = set(_params(_REGISTRY[a])), set(_params(_REGISTRY[b]))
    kwa, kwb = {}, {}
    for key, v in kw.items():
        if key in pa and key in pb:
            raise ValueError(f"make({name!r}): argument {key!r} is accepted by both stages")
        if key in pa:
            kwa[key] = v
        elif key in pb:
            kwb[key] = v
        else:
            raise ValueError(
                f"make({name!r}): unknown argument {key!r} (accepts: {sorted(pa | pb)})"
            )
    return Compose(_build(a, kwa), _build(b, kwb))  # type: ignore[arg-type]
