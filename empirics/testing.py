"""The compressor property suite, for users: check your own compressor the way the built-in ones
are checked (``tests/empirics/test_compressors.py`` uses the same strategies and checks).

    >>> from empirics.testing import check_compressor
    >>> from empirics.compressors import TopK
    >>> report = check_compressor(TopK(3), max_examples=20)
    >>> report.ok
    True

or from the shell: ``coopsgd check-compressor mypackage.mymodule:MyTopK --kw k=5``.

Properties (each reported as passed / failed / skipped, a failure with its counterexample):

* ``shape``: C(x) has x's shape, dtype and device, is finite, and C(0) = 0;
* ``roundtrip``: ``decode(encode(x, g)) == C(x, g')`` bit for bit when g and g' are in the same
  state (the wire format the distributed backend sends);
* ``bits``: the payload carries exactly ``rows · bits(d, value_bits)`` bits, in at most
  ⌈bits/8⌉ bytes per row, and ``bits(d) ≥ 1``;
* ``deterministic``: the same seed gives the same output;
* ``rows``: compressing a batch with one generator per row equals compressing each row alone
  with its own generator (what one process per worker does);
* ``unbiased`` (unbiased compressors): E[C(x)] = x — per coordinate, a z-test of the mean of
  ``draws`` draws against x, Bonferroni over coordinates and examples at level ``alpha``; a
  coordinate that never varied must equal x_i (deterministic compressors: to rounding;
  randomized ones: within the shift an unseen outcome of probability ≤ ln(d·examples/α)/draws
  could cause);
* ``variance`` (a declared ω): E‖C(x) − x‖² ≤ ω‖x‖² — a one-sided z-test of the sample mean at
  level ``alpha`` (exact for deterministic compressors);
* ``contraction`` (a declared δ): E‖x − C(x)‖² ≤ (1 − δ)‖x‖², the same test.

Inputs x are drawn by hypothesis (:func:`tensors`): float32 and float64, d in the range the
compressor accepts, batch shapes up to 2 leading axes, magnitudes from 1e-30 to 1e30, exact
zeros; a failure is shrunk to a small counterexample. The statistical checks have a
false-alarm probability of at most ``alpha`` per property for a correct compressor (seeds
are fixed, so the outcome is reproducible).

Needs hypothesis (``pip install coopsgd[test]``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["CompressorReport", "PropertyResult", "SCALES", "check_compressor",
           "check_contraction", "check_deterministic", "check_rows", "check_roundtrip_and_bits",
           "check_shape", "check_unbiased", "check_variance", "tensors"]

#: magnitudes the drawn inputs are scaled by
SCALES = (0.0, 1e-30, 1e-9, 1.0, 1e9, 1e30)
_NP = {torch.float32: np.float32, torch.float64: np.float64}


def _hyp() -> Any:
    try:
        import hypothesis
        from hypothesis import strategies as st
        from hypothesis.extra import numpy as hnp
    except ImportError as e:  # pragma: no cover - hypothesis is in the [test] extra
        raise ImportError("empirics.testing needs hypothesis: pip install 'coopsgd[test]'") \
            from e
    return hypothesis, st, hnp


def tensors(min_d: int = 1, max_d: int = 40, max_batch_dims: int = 2, min_rows: int = 1,
            scales: tuple[float, ...] = SCALES, dtypes: tuple[str, ...] = ("float32", "float64"),
            max_batch: int = 3) -> Any:
    """Hypothesis strategy of float tensors of shape (*batch, d): d in [min_d, max_d], up to
    ``max_batch_dims`` leading axes of size 1..``max_batch`` (at least ``min_rows`` rows),
    entries in [−1, 1] with magnitudes below 1e-12 set to exactly 0, times a scale from
    ``scales`` (float64 reference sums of squares neither underflow nor overflow)."""
    _, st, hnp = _hyp()

    @st.composite
    def draw(draw_: Any) -> torch.Tensor:
        name = draw_(st.sampled_from(list(dtypes)))
        d = draw_(st.integers(min_d, max_d))
        batch = tuple(draw_(st.lists(st.integers(1, max_batch), min_size=0,
                                     max_size=max_batch_dims)))
        if math.prod(batch) < min_rows:
            batch = (min_rows,)
        np_dt = np.float32 if name == "float32" else np.float64
        arr = draw_(hnp.arrays(np_dt, (*batch, d), elements=st.floats(
            -1, 1, width=32 if name == "float32" else 64, allow_nan=False,
            allow_infinity=False)))
        arr[np.abs(arr) < 1e-12] = 0
        scale = draw_(st.sampled_from(list(scales)))
        return torch.from_numpy(arr * np_dt(scale))

    return draw()


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------
@dataclass
class PropertyResult:
    """One property: ``status`` ("passed", "failed", "skipped"), what was checked
    (``detail``), and for a failure the ``counterexample`` (input, seed, the numbers)."""

    name: str
    status: str
    detail: str
    counterexample: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def __str__(self) -> str:
        s = f"{self.name:<13} {self.status:<8} {self.detail}"
        if self.counterexample:
            s += "\n" + "\n".join(f"{'':<23}{k} = {v}" for k, v in self.counterexample.items())
        return s


@dataclass
class CompressorReport:
    """All properties of one compressor; ``ok`` when none failed."""

    compressor: str
    results: list[PropertyResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failed(self) -> list[PropertyResult]:
        return [r for r in self.results if r.status == "failed"]

    def __getitem__(self, name: str) -> PropertyResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    def raise_if_failed(self) -> None:
        """AssertionError listing the failed properties with their counterexamples."""
        if not self.ok:
            raise AssertionError(f"{self.compressor}: " + "; ".join(
                f"{r.name}: {r.detail} {r.counterexample}" for r in self.failed))

    def to_dict(self) -> dict[str, Any]:
        return {"compressor": self.compressor, "ok": self.ok,
                "results": [{"name": r.name, "status": r.status, "detail": r.detail,
                             "counterexample": r.counterexample} for r in self.results]}

    def __str__(self) -> str:
        head = f"{self.compressor}: {'all properties hold' if self.ok else 'FAILED'}"
        return head + "\n" + "\n".join(f"  {r}" for r in self.results)

    __repr__ = __str__


class _Fail(AssertionError):
    def __init__(self, msg: str, example: dict[str, Any]):
        super().__init__(msg)
        self.example = example


def _show(x: torch.Tensor) -> str:
    a = x.detach().cpu().double().numpy()
    s = np.array2string(a, precision=6, threshold=24, max_line_width=88)
    return f"tensor({s}, dtype={str(x.dtype).replace('torch.', '')}, shape={tuple(x.shape)})"


def _gen(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _search(name: str, what: str, strategy: Any, body: Callable[..., None],
            max_examples: int) -> PropertyResult:
    """Run ``body(*drawn)`` over hypothesis examples; the last failure seen (after shrinking)
    is the counterexample."""
    hypothesis, _, _ = _hyp()
    seen: dict[str, Any] = {}

    @hypothesis.settings(max_examples=max_examples, deadline=None, database=None,
                         derandomize=True, suppress_health_check=list(hypothesis.HealthCheck),
                         phases=[hypothesis.Phase.generate, hypothesis.Phase.shrink])
    @hypothesis.given(strategy)
    def run(args: Any) -> None:
        try:
            body(*args)
        except _Fail as e:
            seen.clear()
            seen.update(message=str(e), **e.example)
            raise

    try:
        run()
    except _Fail:
        msg = seen.pop("message", "")
        return PropertyResult(name, "failed", f"{what}: {msg}", dict(seen))
    except Exception as e:  # the compressor raised on a valid input
        ex = dict(seen)
        return PropertyResult(name, "failed", f"{what}: raised {type(e).__name__}: {e}",
                              ex or None)
    return PropertyResult(name, "passed", f"{what} ({max_examples} examples)")


def _dims(c: Any, max_d: int) -> int:
    """The smallest d in 1..max_d on which ``c`` works (ValueError below it)."""
    for d in range(1, max_d + 1):
        try:
            c(torch.zeros(1, d), generator=_gen(0, torch.device("cpu")))
            return d
        except ValueError:
            continue
    raise ValueError(f"{c!r} refuses every d in 1..{max_d}: give a larger max_d")


def _with_seed(st: Any, x: Any) -> Any:
    return st.tuples(x, st.integers(0, 2**31 - 1))


# ---------------------------------------------------------------------------------------------
# the checks
# ---------------------------------------------------------------------------------------------
def check_shape(c: Any, *, min_d: int = 1, max_d: int = 40, max_examples: int = 50
                ) -> PropertyResult:
    """C(x) has x's shape, dtype and device, is finite; C(0) = 0."""
    _, st, _ = _hyp()

    def body(x: torch.Tensor, seed: int) -> None:
        y = c(x, generator=_gen(seed, x.device))
        ex = {"x": _show(x), "seed": seed}
        if not isinstance(y, torch.Tensor) or y.shape != x.shape or y.dtype != x.dtype \
                or y.device != x.device:
            got = (tuple(y.shape), y.dtype, y.device) if isinstance(y, torch.Tensor) else y
            raise _Fail(f"output {got} differs from input ({tuple(x.shape)}, {x.dtype}, "
                        f"{x.device})", ex)
        if not bool(torch.isfinite(y).all()):
            raise _Fail("output is not finite", {**ex, "C(x)": _show(y)})
        z = c(torch.zeros_like(x), generator=_gen(seed, x.device))
        if not bool((z == 0).all()):
            raise _Fail("C(0) ≠ 0", {**ex, "C(0)": _show(z)})

    return _search("shape", "shape, dtype, device kept; finite; C(0) = 0",
                   _with_seed(st, tensors(min_d, max_d)), body, max_examples)


def check_roundtrip_and_bits(c: Any, *, min_d: int = 1, max_d: int = 40,
                             max_examples: int = 50) -> list[PropertyResult]:
    """``roundtrip``: decode(encode(x, g)) == C(x, g) bit for bit; ``bits``: the payload's bits
    equal rows · bits(d, value_bits) and fit in ⌈bits/8⌉ bytes per row."""
    _, st, _ = _hyp()
    strat = _with_seed(st, tensors(min_d, max_d))

    def rt(x: torch.Tensor, seed: int) -> None:
        y = c(x, generator=_gen(seed, x.device))
        p = c.encode(x, generator=_gen(seed, x.device))
        z = c.decode(p)
        if not torch.equal(z, y):
            raise _Fail("decode(encode(x)) differs from C(x)",
                        {"x": _show(x), "seed": seed, "C(x)": _show(y),
                         "decode(encode(x))": _show(z)})

    def bits(x: torch.Tensor, seed: int) -> None:
        d = x.shape[-1]
        rows = math.prod(x.shape[:-1])
        vb = 8 * x.element_size()
        declared = int(c.bits(d, value_bits=vb)) if _takes_value_bits(c) else int(c.bits(d))
        p = c.encode(x, generator=_gen(seed, x.device))
        sent = getattr(p, "bits", None)
        nbytes = getattr(p, "nbytes", None)
        ex = {"x": _show(x), "seed": seed, "declared bits per row": declared,
              "payload bits": sent, "payload bytes": nbytes}
        if declared < 1:
            raise _Fail("bits(d) < 1", ex)
        if sent is None or int(sent) > rows * declared:
            raise _Fail(f"the payload carries more than rows · bits(d) = {rows * declared} "
                        f"bits", ex)
        if nbytes is not None and int(nbytes) > rows * math.ceil(declared / 8):
            raise _Fail(f"the payload holds more than rows · ⌈bits/8⌉ = "
                        f"{rows * math.ceil(declared / 8)} bytes", ex)

    return [_search("roundtrip", "decode∘encode = C bit for bit", strat, rt, max_examples),
            _search("bits", "payload bits ≤ rows · declared bits(d), bytes ≤ ⌈bits/8⌉/row",
                    strat, bits, max_examples)]


def _takes_value_bits(c: Any) -> bool:
    import inspect

    try:
        return "value_bits" in inspect.signature(c.bits).parameters
    except (TypeError, ValueError):
        return False


def check_deterministic(c: Any, *, min_d: int = 1, max_d: int = 40, max_examples: int = 50
                        ) -> PropertyResult:
    """The same seed gives the same output."""
    _, st, _ = _hyp()

    def body(x: torch.Tensor, seed: int) -> None:
        a = c(x, generator=_gen(seed, x.device))
        b = c(x, generator=_gen(seed, x.device))
        if not torch.equal(a, b):
            raise _Fail("two calls with the same seed differ",
                        {"x": _show(x), "seed": seed, "first": _show(a), "second": _show(b)})

    return _search("deterministic", "same seed → same output",
                   _with_seed(st, tensors(min_d, max_d)), body, max_examples)


def check_rows(c: Any, *, min_d: int = 1, max_d: int = 40, max_examples: int = 50
               ) -> PropertyResult:
    """A batch with one generator per row equals each row compressed alone with its own."""
    _, st, _ = _hyp()

    def body(x: torch.Tensor, seed: int) -> None:
        n = x.shape[0]
        batched = c(x, generator=[_gen(seed + i, x.device) for i in range(n)])
        rows = torch.stack([c(x[i], generator=_gen(seed + i, x.device)) for i in range(n)])
        if not torch.equal(batched, rows):
            raise _Fail("a batch with per-row generators differs from the rows alone",
                        {"x": _show(x), "seed": seed, "batched": _show(batched),
                         "row by row": _show(rows)})

    return _search("rows", "per-row generators: batch = rows alone",
                   _with_seed(st, tensors(min_d, max_d, max_batch_dims=1, min_rows=2)), body,
                   max_examples)


def _draws(c: Any, x: torch.Tensor, n: int, seed: int) -> np.ndarray:
    """n independent draws of C(x) for one vector x (float64, (n, d))."""
    xs = x.reshape(1, -1).expand(n, x.shape[-1]).contiguous()
    return c(xs, generator=_gen(seed, x.device)).detach().cpu().double().numpy()


def _z(level: float, k: int = 1) -> float:
    from scipy import stats

    return float(stats.norm.isf(level / k))


def _vectors(min_d: int, max_d: int) -> Any:
    return tensors(min_d, min(max_d, 32), max_batch_dims=0, scales=(1e-9, 1.0, 1e9))


def check_unbiased(c: Any, *, min_d: int = 1, max_d: int = 32, draws: int = 20000,
                   alpha: float = 1e-6, max_examples: int = 20) -> PropertyResult:
    """E[C(x)] = x (unbiased compressors; skipped otherwise): per coordinate a two-sided z-test
    of the mean of ``draws`` draws, Bonferroni over coordinates and examples at ``alpha``;
    a coordinate that never varied must equal x_i (to 1e-5 relative in float32, 1e-11 in
    float64; for a randomized C, within the shift of an outcome too rare to have been seen)."""
    if not getattr(c, "unbiased", False):
        return PropertyResult("unbiased", "skipped", "declared biased (unbiased = False)")
    _, st, _ = _hyp()

    def body(x: torch.Tensor, seed: int) -> None:
        d = x.shape[-1]
        out = _draws(c, x, draws, seed)
        x64 = x.double().numpy()
        mean, sd = out.mean(0), out.std(0, ddof=1)
        # rounding of the inputs' dtype, relative to the vector's largest entry
        tol = (1e-5 if x.dtype == torch.float32 else 1e-11) * max(np.abs(x64).max(), 1e-300)
        se = sd / math.sqrt(draws)
        fixed = sd <= tol  # never varied (up to rounding)
        gap = np.maximum(np.abs(mean - x64) - tol, 0.0)
        if _randomized(c):
            # an outcome of probability q ≥ ln(1/α')/N shows up in N draws with probability
            # ≥ 1 − α', so a coordinate that never varied may still hide one: allow the shift
            # q/(1 − q)·B it can cause, B a bound on |C_i(x) − x_i| (√(1 + ω)·‖x‖, or √d·‖x‖
            # without a declared ω, or the largest output seen)
            q = min(math.log(d * max_examples / alpha) / draws, 0.5)
            w = c.omega(d)
            nx = float(np.linalg.norm(x64))
            B = 2 * max(nx * math.sqrt(1 + w) if w is not None else nx * math.sqrt(d),
                        float(np.abs(out).max()))
            slack = q / (1 - q) * B
        else:
            slack = 0.0
        bad = fixed & (gap > slack)
        zc = _z(alpha / 2, d * max_examples)
        z = np.zeros(d)
        z[~fixed] = gap[~fixed] / se[~fixed]
        if bad.any() or (z > zc).any():
            j = int(np.argmax(np.where(bad, np.inf, z)))
            raise _Fail(f"E[C(x)] ≠ x at coordinate {j}: mean of {draws} draws "
                        f"{mean[j]:.6g} vs x = {x64[j]:.6g} (z = {z[j]:.3g} > {zc:.3g})",
                        {"x": _show(x), "seed": seed, "mean of draws": _show(
                            torch.from_numpy(mean))})

    return _search("unbiased", f"E[C(x)] = x (z-tests, α = {alpha:g})",
                   _with_seed(st, _vectors(min_d, max_d)), body, max_examples)


def _bound_check(name: str, what: str, c: Any, factor: Callable[[int], float | None],
                 err: Callable[[np.ndarray, np.ndarray], np.ndarray], min_d: int, max_d: int,
                 draws: int, alpha: float, max_examples: int) -> PropertyResult:
    """E[err] ≤ factor(d)·‖x‖² by a one-sided z-test (exact when the error never varies)."""
    _, st, _ = _hyp()

    def body(x: torch.Tensor, seed: int) -> None:
        d = x.shape[-1]
        f = factor(d)
        if f is None:
            return
        out = _draws(c, x, draws if _randomized(c) else 2, seed)
        x64 = x.double().numpy()
        e = err(out, x64)
        sq = float(x64 @ x64)
        bound = f * sq
        tol = (1e-5 if x.dtype == torch.float32 else 1e-11) * 10 * sq
        mean, sd = float(e.mean()), float(e.std(ddof=1)) if len(e) > 1 else 0.0
        zc = _z(alpha, max_examples)
        ex = {"x": _show(x), "seed": seed, "declared": f"{f:.6g}·‖x‖² = {bound:.6g}",
              "measured": f"{mean:.6g} (mean of {len(e)} draws, sd {sd:.3g})"}
        if sd == 0 or sd / math.sqrt(len(e)) <= tol:
            if mean > bound + tol:
                raise _Fail(f"{mean:.6g} > {bound:.6g}", ex)
        elif (mean - bound - tol) / (sd / math.sqrt(len(e))) > zc:
            raise _Fail(f"{mean:.6g} > {bound:.6g} (one-sided z > {zc:.3g})", ex)

    return _search(name, what, _with_seed(st, _vectors(min_d, max_d)), body, max_examples)


def _randomized(c: Any) -> bool:
    """Whether C draws randomness (undeclared: assumed so)."""
    return bool(getattr(c, "randomized", True))


def check_variance(c: Any, *, min_d: int = 1, max_d: int = 32, draws: int = 20000,
                   alpha: float = 1e-6, max_examples: int = 20) -> PropertyResult:
    """E‖C(x) − x‖² ≤ ω(d)‖x‖² for a declared ω (skipped when ``omega(d)`` is None)."""
    if c.omega(max(min_d, 1)) is None:
        return PropertyResult("variance", "skipped", "no ω declared (omega(d) is None)")
    return _bound_check("variance", f"E‖C(x) − x‖² ≤ ω(d)‖x‖² (one-sided z, α = {alpha:g})",
                        c, c.omega, lambda o, x: ((o - x) ** 2).sum(1), min_d, max_d, draws,
                        alpha, max_examples)


def check_contraction(c: Any, *, min_d: int = 1, max_d: int = 32, draws: int = 20000,
                      alpha: float = 1e-6, max_examples: int = 20) -> PropertyResult:
    """E‖x − C(x)‖² ≤ (1 − δ(d))‖x‖² for a declared δ (skipped when ``delta(d)`` is None)."""
    if c.delta(max(min_d, 1)) is None:
        return PropertyResult("contraction", "skipped", "no δ declared (delta(d) is None)")

    def one_minus(d: int) -> float | None:
        dd = c.delta(d)
        return None if dd is None else 1.0 - float(dd)

    return _bound_check("contraction", f"E‖x − C(x)‖² ≤ (1 − δ(d))‖x‖² (one-sided z, "
                        f"α = {alpha:g})", c, one_minus, lambda o, x: ((x - o) ** 2).sum(1),
                        min_d, max_d, draws, alpha, max_examples)


_PROTOCOL = ("unbiased", "omega", "delta", "bits", "encode", "decode")


def check_compressor(c: Any, *, max_d: int = 40, max_examples: int = 50, draws: int = 20000,
                     alpha: float = 1e-6, stat_examples: int = 20) -> CompressorReport:
    """Run every property of the module docstring on compressor ``c`` (an instance) and return
    the :class:`CompressorReport` (each property with its counterexample when it fails).

    max_d: largest vector length drawn (the smallest is the least d the compressor accepts);
    max_examples: hypothesis examples per exact property; draws, alpha, stat_examples: the
    statistical checks (draws per input, level per property, inputs tried)."""
    if isinstance(c, type):
        raise TypeError(f"check_compressor needs an instance, e.g. {c.__name__}(...), not the "
                        f"class")
    missing = [a for a in _PROTOCOL if not hasattr(c, a)] + ([] if callable(c) else
                                                               ["__call__"])
    if missing:
        raise TypeError(f"{c!r} lacks {missing} of the compressor protocol (name, unbiased, "
                        f"omega, delta, bits, __call__, encode, decode; docs/dev/CONTRACTS.md)")
    min_d = _dims(c, max_d)
    rep = CompressorReport(repr(c))
    kw = {"min_d": min_d, "max_d": max_d, "max_examples": max_examples}
    rep.results.append(check_shape(c, **kw))
    rep.results += check_roundtrip_and_bits(c, **kw)
    rep.results.append(check_deterministic(c, **kw))
    rep.results.append(check_rows(c, **kw))
    # a deterministic compressor's moments are exact from one draw: search as widely as the
    # exact properties
    skw = {"min_d": min_d, "max_d": min(max_d, 32), "draws": draws, "alpha": alpha,
           "max_examples": stat_examples if _randomized(c) else max_examples}
    rep.results.append(check_unbiased(c, **skw))
    rep.results.append(check_variance(c, **skw))
    rep.results.append(check_contraction(c, **skw))
    return rep
