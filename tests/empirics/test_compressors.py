"""Property-based tests of ``empirics.compressors`` (issue 4).

Exact checks use the compressors' own deterministic maps (given an index set, given the uniforms)
and enumerate the randomness: all k-subsets for random-k, the two levels of every coordinate for
QSGD (coordinates are independent given x, so moments are exact sums). Statistical checks of the
actual random draws run with fixed seeds (so they are deterministic); the stated false-alarm rate
is the probability, over seeds, that a correct implementation fails: every test uses α = 1e-6,
Bonferroni-split across the coordinates or cells it tests.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from empirics import compressors as cm
from empirics.compressors import (
    QSGD,
    Compose,
    Compressor,
    Identity,
    Payload,
    RandomK,
    Rescaled,
    ScaledSign,
    TopK,
    available,
    make,
)
from empirics.testing import check_compressor
from empirics.testing import tensors as public_tensors

ALPHA = 1e-6
SCALES = [0.0, 1e-30, 1e-9, 1.0, 1e9, 1e30]
TORCH_DTYPE = {"float32": torch.float32, "float64": torch.float64}
NP_DTYPE = {"float32": np.float32, "float64": np.float64}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tol(dtype: torch.dtype) -> float:
    return 1e-5 if dtype == torch.float32 else 1e-11


# ----------------------------------------------------------------------------- strategies


# the public strategy (empirics.testing): the same inputs users check their compressors on
tensors = public_tensors


def draw_compressor(data, d: int, allow_randk_enum: bool = True) -> Compressor:
    """A compressor acting on d-vectors (any kind, compositions included)."""
    k = data.draw(st.integers(1, d), label="k")
    s = data.draw(st.integers(1, 12), label="s")
    kind = data.draw(
        st.sampled_from(
            [
                "identity",
                "topk",
                "randk",
                "randk_u",
                "qsgd",
                "sign",
                "qsgd_rescaled",
                "randk_rescaled",
                "compose_biased",
                "compose_unbiased",
            ]
        ),
        label="kind",
    )
    if kind == "identity":
        return Identity()
    if kind == "topk":
        return TopK(k)
    if kind == "randk":
        return RandomK(k)
    if kind == "randk_u":
        return RandomK(k, unbiased=True)
    if kind == "qsgd":
        return QSGD(s)
    if kind == "sign":
        return ScaledSign()
    if kind == "qsgd_rescaled":
        return QSGD(s).as_contraction()
    if kind == "randk_rescaled":
        return RandomK(k, unbiased=True).as_contraction()
    k2 = data.draw(st.integers(1, k), label="k2")
    if kind == "compose_biased":
        first = data.draw(st.sampled_from([TopK(k), RandomK(k)]), label="first")
        second = data.draw(
            st.sampled_from(
                [QSGD(s), QSGD(s).as_contraction(), ScaledSign(), Identity(), TopK(k2)]
            ),
            label="second",
        )
        return Compose(first, second)
    second = data.draw(
        st.sampled_from([QSGD(s), Identity(), RandomK(k2, unbiased=True)]), label="second"
    )
    return Compose(RandomK(k, unbiased=True), second)


def expected_bits(c: Compressor, d: int, vb: int) -> int:
    """Closed forms of the payload size, written independently of the implementation."""
    lg = math.ceil(math.log2(d)) if d > 1 else 0
    if isinstance(c, Identity):
        return vb * d
    if isinstance(c, TopK | RandomK):
        return c.k * (vb + lg)
    if isinstance(c, QSGD):
        return vb + d * (1 + math.ceil(math.log2(c.s + 1)))
    if isinstance(c, ScaledSign):
        return vb + d
    if isinstance(c, Rescaled):
        return expected_bits(c.inner, d, vb)
    if isinstance(c, Compose):
        return c.first.k * lg + expected_bits(c.second, c.first.k, vb)
    raise AssertionError(c)


# ----------------------------------------------------------------------------- exact laws


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).numpy()


def _subsets(d: int, k: int) -> torch.Tensor:
    return torch.tensor(list(itertools.combinations(range(d), k)), dtype=torch.int64)


def qsgd_two_points(q: QSGD, v: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Up and down outcomes of every coordinate (the implementation's map at u = 0 and u = 1)
    and the up-probability p = s·r − l computed here in float64 (r = |v_i|/‖v‖, l the level of
    the down outcome)."""
    zeros, ones = torch.zeros_like(v)[None], torch.ones_like(v)[None]
    n = v.shape[-1]
    up = _np(q._decode_fields(q._quantize(v[None], zeros), n, v.dtype)[0])
    down = _np(q._decode_fields(q._quantize(v[None], ones), n, v.dtype)[0])
    v64 = _np(v)
    norm = np.linalg.norm(v64)
    if norm == 0:
        return up, down, np.zeros(n)
    r = np.abs(v64) / norm
    low = np.rint(np.abs(down) * q.s / norm)
    return up, down, np.clip(q.s * r - low, 0.0, 1.0)


def exact_moments(c: Compressor, v: torch.Tensor) -> tuple[np.ndarray, float]:
    """Exact E[C(v)] and E‖C(v) − v‖² of one vector v (float64), by enumeration."""
    v64 = _np(v)
    n = v.shape[-1]
    if isinstance(c, Identity | TopK | ScaledSign):
        out = _np(c(v))
        return out, float(np.sum((out - v64) ** 2))
    if isinstance(c, RandomK):
        idx = _subsets(n, c.k)
        vb = v[None].expand(idx.shape[0], n)
        outs = _np(c._decode_fields(list(reversed(c._select_from(vb, idx))), n, v.dtype))
        return outs.mean(0), float(np.mean(np.sum((outs - v64) ** 2, axis=1)))
    if isinstance(c, QSGD):
        up, down, p = qsgd_two_points(c, v)
        mean = p * up + (1 - p) * down
        return mean, float(np.sum(p * (up - v64) ** 2 + (1 - p) * (down - v64) ** 2))
    if isinstance(c, Rescaled):
        f = c.factor(n)
        m, e = exact_moments(c.inner, v)
        second = e + 2 * v64 @ m - v64 @ v64  # E‖C‖²
        return f * m, float(v64 @ v64 - 2 * f * (v64 @ m) + f * f * second)
    if isinstance(c, Compose):
        if isinstance(c.first, TopK):
            idx, vals = c.first._select(v[None], None)
            outcomes = [(idx[0], vals[0])]
        else:
            idx_all = _subsets(n, c.first.k)
            idx_b, vals_b = c.first._select_from(v[None].expand(idx_all.shape[0], n), idx_all)
            outcomes = list(zip(idx_b, vals_b, strict=True))
        mean, err = np.zeros(n), 0.0
        for idx, vals in outcomes:
            mv, ev = exact_moments(c.second, vals)
            y, a = _np(vals), v64[idx.numpy()]
            off = np.ones(n, bool)
            off[idx.numpy()] = False
            # E‖a − Z‖² = E‖Z − y‖² + 2⟨y − a, E Z − y⟩ + ‖y − a‖²
            e_on = ev + 2 * (y - a) @ (mv - y) + (y - a) @ (y - a)
            m = np.zeros(n)
            m[idx.numpy()] = mv
            mean += m / len(outcomes)
            err += (float(np.sum(v64[off] ** 2)) + e_on) / len(outcomes)
        return mean, err
    raise AssertionError(c)


# ----------------------------------------------------------------------------- basic properties


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_output_shape_dtype_finite_and_zero_maps_to_zero(data):
    x = data.draw(tensors())
    c = draw_compressor(data, x.shape[-1])
    y = c(x, gen(data.draw(st.integers(0, 2**31), label="seed")))
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert bool(torch.isfinite(y).all())
    z = c(torch.zeros_like(x), gen(0))
    assert bool((z == 0).all())


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_roundtrip_is_exact_and_bits_match_the_closed_form(data):
    x = data.draw(tensors())
    d = x.shape[-1]
    c = draw_compressor(data, d)
    seed = data.draw(st.integers(0, 2**31), label="seed")
    y = c(x, gen(seed))
    p = c.encode(x, gen(seed))
    assert isinstance(p, Payload) and p.data.dtype == torch.uint8
    assert torch.equal(c.decode(p), y)
    vb = 8 * x.element_size()
    rows = math.prod(x.shape[:-1])
    per = expected_bits(c, d, vb)
    assert c.bits(d, value_bits=vb) == per
    assert c.bits(d) == expected_bits(c, d, 32)
    assert p.bits == rows * per
    assert p.nbytes == rows * math.ceil(per / 8)
    assert p.batch_shape == tuple(x.shape[:-1])


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_same_seed_same_output(data):
    x = data.draw(tensors())
    c = draw_compressor(data, x.shape[-1])
    seed = data.draw(st.integers(0, 2**31), label="seed")
    assert torch.equal(c(x, gen(seed)), c(x, gen(seed)))


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_batched_call_equals_per_row_calls(data):
    x = data.draw(tensors(min_rows=2, max_batch_dims=1))
    d = x.shape[-1]
    c = draw_compressor(data, d)
    seed = data.draw(st.integers(0, 2**20), label="seed")
    # one generator per row: what one process per worker does, for every compressor
    batched = c(x, [gen(seed + i) for i in range(x.shape[0])])
    rows = torch.stack([c(x[i], gen(seed + i)) for i in range(x.shape[0])])
    assert torch.equal(batched, rows)
    # one shared generator: single-stage compressors draw row-major
    if not isinstance(c, Compose):
        g = gen(seed)
        rows = torch.stack([c(x[i], g) for i in range(x.shape[0])])
        assert torch.equal(c(x, gen(seed)), rows)


def test_different_seeds_give_different_draws():
    x = torch.randn(50, generator=gen(0), dtype=torch.float64)
    for c in [RandomK(5), QSGD(2), Compose(TopK(10), QSGD(1))]:
        assert not torch.equal(c(x, gen(1)), c(x, gen(2))), c


def test_identity_returns_a_copy():
    x = torch.randn(3, 4)
    y = Identity()(x)
    assert torch.equal(x, y) and y.data_ptr() != x.data_ptr()


# ----------------------------------------------------------------------------- declared constants


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_topk_contraction_holds_deterministically_for_every_input(data):
    x = data.draw(tensors(max_d=64))
    d = x.shape[-1]
    k = data.draw(st.integers(1, d), label="k")
    y = TopK(k)(x)
    x64, y64 = _np(x).reshape(-1, d), _np(y).reshape(-1, d)
    lhs = np.sum((x64 - y64) ** 2, axis=1)
    rhs = (1 - k / d) * np.sum(x64**2, axis=1)
    assert np.all(lhs <= rhs * (1 + 1e-12))
    # kept entries are exact copies, and no dropped entry is larger than a kept one
    kept = np.zeros_like(x64, dtype=bool)
    idx = torch.topk(x.abs().reshape(-1, d), k, dim=-1).indices.numpy()
    np.put_along_axis(kept, idx, True, axis=1)
    assert np.all(y64[~kept] == 0) and np.all(y64[kept] == x64[kept])


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_scaled_sign_identity_and_worst_case_delta(data):
    x = data.draw(tensors(max_d=64))
    d = x.shape[-1]
    y = ScaledSign()(x)
    x64, y64 = _np(x).reshape(-1, d), _np(y).reshape(-1, d)
    sq = np.sum(x64**2, axis=1)
    err = np.sum((x64 - y64) ** 2, axis=1)
    identity = sq - np.sum(np.abs(x64), axis=1) ** 2 / d  # (1 − ‖x‖₁²/(d‖x‖²))‖x‖²
    assert np.all(np.abs(err - identity) <= 10 * tol(x.dtype) * sq)
    assert np.all(err <= (1 - ScaledSign().delta(d)) * sq + 10 * tol(x.dtype) * sq)
    # one magnitude, signs of x with sign(0) = +1
    assert np.all(np.sign(y64[x64 != 0]) == np.sign(x64[x64 != 0]))
    assert np.all(y64 >= 0, where=(x64 == 0))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_declared_constants_hold_exactly_by_enumeration(data):
    """Unbiased: E C(x) = x and E‖C(x) − x‖² ≤ ω‖x‖²; every δ: E‖x − C(x)‖² ≤ (1 − δ)‖x‖²."""
    x = data.draw(tensors(max_d=7, max_batch_dims=0))
    d = x.shape[-1]
    c = draw_compressor(data, d)
    mean, err = exact_moments(c, x)
    x64 = _np(x)
    sq = float(x64 @ x64)
    t = 50 * tol(x.dtype)
    if c.unbiased:
        assert np.all(np.abs(mean - x64) <= t * math.sqrt(sq) + 1e-300), (mean, x64)
        assert err <= c.omega(d) * sq * (1 + t) + t * sq
    delta = c.delta(d)
    if delta is not None:
        assert isinstance(delta, float) and 0 < delta <= 1
        assert err <= (1 - delta) * sq + t * sq
    assert c.unbiased or c.delta(d) is not None or isinstance(c, Compose)


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_random_k_moments_are_exactly_the_declared_ones(data):
    """Random-k: E‖x − C‖² = (1 − k/d)‖x‖² (biased), E‖C − x‖² = (d/k − 1)‖x‖² (unbiased)."""
    x = data.draw(tensors(max_d=8, max_batch_dims=0))
    d = x.shape[-1]
    k = data.draw(st.integers(1, d), label="k")
    x64 = _np(x)
    sq = float(x64 @ x64)
    t = 10 * tol(x.dtype)
    mean, err = exact_moments(RandomK(k), x)
    assert abs(err - (1 - k / d) * sq) <= t * sq
    assert np.allclose(mean, k / d * x64, rtol=t, atol=t * math.sqrt(sq))
    mean, err = exact_moments(RandomK(k, unbiased=True), x)
    assert abs(err - (d / k - 1) * sq) <= t * sq
    assert np.allclose(mean, x64, rtol=t, atol=t * math.sqrt(sq))


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_qsgd_levels_bracket_the_input_and_variance_matches_closed_form(data):
    x = data.draw(tensors(max_d=48, max_batch_dims=0))
    d = x.shape[-1]
    s = data.draw(st.integers(1, 16), label="s")
    q = QSGD(s)
    up, down, _ = qsgd_two_points(q, x)
    x64 = _np(x)
    norm = float(np.linalg.norm(x64))
    t = 10 * tol(x.dtype)
    if norm == 0:
        assert np.all(up == 0) and np.all(down == 0)
        return
    lv_up, lv_down = np.abs(up) * s / norm, np.abs(down) * s / norm
    assert np.allclose(lv_down, np.rint(lv_down), atol=t * s)  # levels l/s of the norm
    assert np.all((lv_down >= -t) & (lv_up <= s * (1 + t)))
    gap = lv_up - lv_down
    assert np.all((np.abs(gap) < t * s) | (np.abs(gap - 1) < t * s))
    assert np.all(np.abs(down) <= np.abs(x64) * (1 + t) + t * norm / s)
    assert np.all(np.abs(x64) <= np.abs(up) * (1 + t) + t * norm / s)
    nz = (up != 0) | (down != 0)
    assert np.all(np.sign(up[nz] + down[nz]) == np.sign(x64[nz]))
    # exact variance = ‖x‖² Σ (r − l/s)((l+1)/s − r), independent of the implementation's maps
    r = np.abs(x64) / norm
    low = np.minimum(np.floor(r * s), s - 1)
    closed = norm**2 * np.sum((r - low / s) * ((low + 1) / s - r))
    _, err = exact_moments(q, x)
    assert abs(err - closed) <= t * norm**2
    assert closed <= min(d / (4 * s * s), math.sqrt(d) / s) * norm**2 * (1 + t)


# ----------------------------------------------------------------------------- statistical tests


def _binomial_two_sided_p(count: np.ndarray, n: int, p: np.ndarray) -> np.ndarray:
    lo = stats.binom.cdf(count, n, p)
    hi = stats.binom.sf(count - 1, n, p)
    return np.minimum(1.0, 2 * np.minimum(lo, hi))


QSGD_CASES = [(8, 1, 0), (32, 2, 1), (32, 7, 2), (17, 3, 3)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("d", "s", "seed"), QSGD_CASES)
def test_qsgd_draws_go_up_with_the_unbiased_probability(d, s, seed, dtype):
    """Each coordinate's up-count over N draws ~ Binomial(N, p), p = s r − l; exact binomial test,
    Bonferroni over the d coordinates at α = 1e-6 (false-alarm rate ≤ 1e-6 per case)."""
    x = torch.randn(d, generator=gen(seed), dtype=dtype)
    x[0] = 0.0  # a zero coordinate must never move
    q, n = QSGD(s), 20000
    up, down, p = qsgd_two_points(q, x)
    out = _np(q(x.expand(n, d).contiguous(), gen(100 + seed)))
    is_up, is_down = out == up, out == down
    assert np.all(is_up | is_down)
    count = np.sum(is_up & ~is_down, axis=0)
    pv = _binomial_two_sided_p(count, n, np.where(up == down, 0.0, p))
    assert pv.min() >= ALPHA / d, (pv.min(), count, n * p)


@pytest.mark.parametrize(
    ("d", "k", "n_draws"), [(5, 2, None), (6, 3, None), (5, 2, 40), (7, 1, 20)]
)
def test_random_k_subsets_are_uniform(d, k, n_draws):
    """Chi-square test of the k-subset frequencies over N rows (both sampling methods: per-row
    noise, and first-k-distinct of i.i.d. draws), α = 1e-6."""
    n = 100000
    idx = cm._sample_subsets(n, d, k, gen(d * 10 + k), torch.device("cpu"), n_draws=n_draws)
    assert idx.shape == (n, k)
    srt = torch.sort(idx, dim=-1).values
    assert bool((srt[:, 1:] != srt[:, :-1]).all()) if k > 1 else True
    codes = (srt * torch.tensor([d**j for j in range(k)])).sum(-1).numpy()
    table = {
        c: i
        for i, c in enumerate(
            sorted(
                {
                    sum(s * d**j for j, s in enumerate(sub))
                    for sub in itertools.combinations(range(d), k)
                }
            )
        )
    }
    counts = np.bincount([table[c] for c in codes], minlength=len(table))
    assert len(counts) == math.comb(d, k)
    assert stats.chisquare(counts).pvalue >= ALPHA


def test_random_k_draw_method_for_large_d_includes_each_coordinate_with_probability_k_over_d():
    d, k, n = 2048, 8, 4000
    assert cm._n_draws(d, k) is not None  # this case takes the i.i.d.-draws path
    y = RandomK(k)(torch.ones(n, d), gen(5))
    assert bool(((y != 0).sum(-1) == k).all())
    count = (y != 0).sum(0).numpy()
    pv = _binomial_two_sided_p(count, n, np.full(d, k / d))
    assert pv.min() >= ALPHA / d


def test_random_k_draw_method_falls_back_exactly_when_draws_repeat():
    idx = cm._sample_subsets(500, 6, 3, gen(0), torch.device("cpu"), n_draws=3)
    srt = torch.sort(idx, dim=-1).values
    assert bool((srt[:, 1:] != srt[:, :-1]).all()) and bool((idx < 6).all())


COMPOSE_CASES = [
    Compose(RandomK(4, unbiased=True), QSGD(2)),
    Compose(TopK(4), QSGD(1)),
    Compose(RandomK(3), ScaledSign()),
    Compose(TopK(5), QSGD(3).as_contraction()),
    RandomK(3, unbiased=True),
    QSGD(1),
]


@pytest.mark.parametrize("c", COMPOSE_CASES, ids=repr)
def test_sample_moments_of_actual_draws_match_the_exact_law(c):
    """z-tests of the N-sample mean of every coordinate and of ‖C(x) − x‖² against the exact
    enumeration (normal approximation; Bonferroni over d + 1 statistics at α = 1e-6)."""
    d, n = 8, 100000
    x = torch.randn(d, generator=gen(11), dtype=torch.float64)
    mean, err = exact_moments(c, x)
    out = _np(c(x.expand(n, d).contiguous(), gen(12)))
    zcrit = stats.norm.isf(ALPHA / (2 * (d + 1)))
    sd = out.std(0, ddof=1)
    det = sd == 0
    assert np.allclose(out[0, det], mean[det], rtol=1e-12, atol=1e-12)
    z = np.abs(out.mean(0)[~det] - mean[~det]) / (sd[~det] / math.sqrt(n))
    assert z.max(initial=0.0) < zcrit, z
    e = np.sum((out - _np(x)) ** 2, axis=1)
    assert abs(e.mean() - err) / (e.std(ddof=1) / math.sqrt(n)) < zcrit
    if c.unbiased:
        assert np.allclose(mean, _np(x), atol=1e-12)


# ----------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("d", [1, 2, 7, 64, 1000])
def test_declared_constants_closed_forms_and_python_floats(d):
    k = max(1, d // 3)
    s = 3
    cases = [
        (TopK(k).delta(d), k / d),
        (RandomK(k).delta(d), k / d),
        (RandomK(k, unbiased=True).omega(d), d / k - 1),
        (QSGD(s).omega(d), min(d / s**2, math.sqrt(d) / s)),
        (ScaledSign().delta(d), 1 / d),
        (Identity().omega(d), 0.0),
        (Identity().delta(d), 1.0),
        (QSGD(s).as_contraction().delta(d), 1 / (1 + min(d / s**2, math.sqrt(d) / s))),
        (
            Compose(TopK(k), QSGD(s).as_contraction()).delta(d),
            (k / d) / (1 + min(k / s**2, math.sqrt(k) / s)),
        ),
        (
            Compose(RandomK(k, unbiased=True), QSGD(s)).omega(d),
            (d / k) * (1 + min(k / s**2, math.sqrt(k) / s)) - 1,
        ),
        (Compose(TopK(k), ScaledSign()).delta(d), (k / d) / k),
    ]
    for got, want in cases:
        assert type(got) is float
        assert got == pytest.approx(want, rel=1e-15)
    # unbiased ones are contractions themselves only when ω < 1
    assert RandomK(k, unbiased=True).delta(d) == (2 - d / k if d / k < 2 else None)
    assert QSGD(100).delta(4) == pytest.approx(1 - min(4 / 1e4, 2 / 100))
    assert TopK(k).omega(d) is None and ScaledSign().omega(d) is None
    assert Compose(TopK(k), QSGD(1)).delta(d) is None  # ω₂(k) ≥ 1: declare nothing, not a wrong δ


# ----------------------------------------------------------------------------- range robustness


def test_qsgd_and_sign_survive_huge_and_tiny_values():
    for dtype, big, tiny in [(torch.float32, 1e37, 1e-40), (torch.float64, 1e300, 1e-310)]:
        d = 64
        for value in (big, tiny):
            x = torch.full((d,), value, dtype=dtype)
            x[::2] *= -1
            norm = math.sqrt(d) * float(x.abs()[0])  # exact: all magnitudes equal
            y = QSGD(1)(x, gen(0))
            assert bool(torch.isfinite(y).all())
            nz = y[y != 0].abs().double()
            assert nz.numel() > 0 and torch.allclose(nz, torch.full_like(nz, norm), rtol=1e-6)
            assert bool((torch.sign(y[y != 0]) == torch.sign(x[y != 0])).all())
            z = ScaledSign()(x)
            assert torch.allclose(z.abs().double(), x.abs().double(), rtol=1e-6)
            assert torch.equal(torch.sign(z), torch.sign(x))


def test_qsgd_refuses_a_norm_beyond_the_dtype_range():
    x = torch.full((4,), 3e38)
    with pytest.raises(ValueError, match=r"‖x‖₂ overflows torch.float32"):
        QSGD(2)(x)
    with pytest.raises(ValueError, match=r"\(d/k\)·x overflows torch.float32"):
        RandomK(1, unbiased=True)(x, gen(0))


# ----------------------------------------------------------------------------- bad input


def test_constructor_errors_name_the_argument_and_the_rule():
    with pytest.raises(ValueError, match=r"TopK: k must be an integer >= 1 \(got 0\)"):
        TopK(0)
    with pytest.raises(TypeError, match=r"RandomK: k must be an integer >= 1 \(got 2.5\)"):
        RandomK(2.5)
    with pytest.raises(TypeError, match=r"TopK: k must be an integer >= 1 \(got True\)"):
        TopK(True)
    with pytest.raises(TypeError, match=r"RandomK: unbiased must be True or False \(got 1\)"):
        RandomK(2, unbiased=1)
    with pytest.raises(ValueError, match=r"QSGD: s must be an integer >= 1 \(got 0\)"):
        QSGD(0)
    with pytest.raises(
        ValueError, match=r"first must be a sparsifier \(TopK or RandomK\), got QSGD"
    ):
        Compose(QSGD(2), TopK(1))
    with pytest.raises(ValueError, match=r"unbiased sparsifier .* biased compressor"):
        Compose(RandomK(2, unbiased=True), ScaledSign())
    with pytest.raises(ValueError, match=r"inner must be unbiased"):
        TopK(3).as_contraction()


def test_call_errors_name_the_argument_and_the_rule():
    x = torch.randn(3, 5)
    with pytest.raises(ValueError, match=r"k must be ≤ d, got k=6 > d=5"):
        TopK(6)(x)
    with pytest.raises(ValueError, match=r"k must be ≤ d, got k=6 > d=5"):
        TopK(6).delta(5)
    with pytest.raises(ValueError, match=r"k must be ≤ d, got k=4 > d=3"):
        Compose(TopK(3), TopK(4))(x)
    with pytest.raises(TypeError, match=r"float32 or float64 tensor, got dtype torch.int64"):
        TopK(1)(torch.ones(3, 5, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"float32 or float64 tensor, got dtype torch.float16"):
        QSGD(1)(torch.ones(5, dtype=torch.float16))
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor, got ndarray"):
        ScaledSign()(np.ones(5))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., d\) with d ≥ 1"):
        Identity()(torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., d\) with d ≥ 1"):
        Identity()(torch.ones(3, 0))
    bad = x.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(
        ValueError, match=r"x must be finite: 1 non-finite entries, first at index \(1, 2\)"
    ):
        QSGD(2)(bad)
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"x must be finite: 2 non-finite"):
        TopK(1)(bad)
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator"):
        RandomK(1)(x, generator=3)
    with pytest.raises(ValueError, match=r"got 2 generators for 3 rows"):
        RandomK(1)(x, generator=[gen(0), gen(1)])
    with pytest.raises(ValueError, match=r"generator is on device cpu but x is on meta"):
        RandomK(1)(torch.empty(3, 5, device="meta"), generator=gen(0))
    with pytest.raises(ValueError, match=r"d must be an integer >= 1 \(got 0\): the vector length"):
        QSGD(1).omega(0)
    with pytest.raises(ValueError, match=r"value_bits must be an integer >= 1 \(got 0\)"):
        QSGD(1).bits(4, value_bits=0)


def test_decode_refuses_a_payload_of_another_compressor():
    p = TopK(2).encode(torch.randn(4, 6))
    with pytest.raises(
        ValueError, match=r"payload was encoded by TopK\(k=2\), cannot decode it with"
    ):
        TopK(3).decode(p)
    with pytest.raises(TypeError, match=r"payload must be a Payload"):
        TopK(2).decode(p.data)


# ----------------------------------------------------------------------------- registry and repr


def test_make_registry_and_readable_repr():
    assert available() == ["identity", "qsgd", "randk", "sign", "topk"]
    assert make("topk", k=3) == TopK(3) and repr(make("topk", k=3)) == "TopK(k=3)"
    assert make("randk", k=2, unbiased=True) == RandomK(2, unbiased=True)
    assert make("QSGD", s=4) == QSGD(4) and make("sign") == ScaledSign()
    assert make("identity") == Identity()
    c = make("topk+qsgd", k=10, s=4)
    assert c == Compose(TopK(10), QSGD(4))
    assert repr(c) == "Compose(TopK(k=10), QSGD(s=4))"
    assert make("randk+qsgd", k=5, unbiased=True, s=2) == Compose(RandomK(5, True), QSGD(2))
    assert make(c) is c
    for obj in [c, QSGD(3).as_contraction(), RandomK(4, unbiased=True), ScaledSign(), Identity()]:
        assert eval(repr(obj), vars(cm)) == obj
    assert "Payload(TopK(k=1)" in repr(TopK(1).encode(torch.ones(2, 3)))


def test_make_errors():
    with pytest.raises(ValueError, match=r"unknown compressor 'foo'; available: identity, qsgd"):
        make("foo")
    with pytest.raises(
        ValueError, match=r"unknown argument\(s\) \['s'\] for 'topk' \(accepts: \['k'\]\)"
    ):
        make("topk", k=2, s=3)
    with pytest.raises(ValueError, match=r"argument 'k' is accepted by both stages"):
        make("topk+randk", k=2)
    with pytest.raises(ValueError, match=r"unknown argument 'q'"):
        make("topk+qsgd", k=2, s=2, q=1)
    with pytest.raises(ValueError, match=r"compose at most two stages"):
        make("topk+qsgd+sign", k=2, s=2)
    with pytest.raises(ValueError, match=r"keywords \['k'\] given with a ready"):
        make(TopK(2), k=3)


def test_empty_batch_gives_empty_output_and_payload():
    x = torch.zeros(0, 5)
    for c in [QSGD(2), ScaledSign(), RandomK(2), TopK(2), Compose(RandomK(2), QSGD(1)), Identity()]:
        p = c.encode(x, gen(0))
        assert c(x, gen(0)).shape == (0, 5) and p.bits == 0 and p.nbytes == 0
        assert c.decode(p).shape == (0, 5)


# ----------------------------------------------------------------------------- the public suite


@pytest.mark.parametrize("c", [TopK(3), RandomK(2), RandomK(3, unbiased=True), QSGD(2),
                               ScaledSign(), Identity(), Compose(TopK(4), QSGD(1)),
                               QSGD(3).as_contraction()], ids=repr)
def test_builtin_compressors_pass_the_public_property_suite(c):
    """empirics.testing.check_compressor — what users run on their own compressors — on every
    built-in kind: every declared property holds (none failed, the applicable ones ran)."""
    rep = check_compressor(c, max_examples=25, stat_examples=8)
    rep.raise_if_failed()
    assert rep["roundtrip"].status == rep["bits"].status == "passed"
    assert (rep["unbiased"].status == "passed") == c.unbiased
    assert rep["variance"].status == ("passed" if c.omega(8) is not None else "skipped")
