"""The relu_qsgd reproduction at smoke scale: verdicts, figures, cached rerun identical; and its
helpers (slope fit, step-size rule) against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from empirics.reproductions import Context, RunCache, module
from empirics.reproductions.relu_qsgd import fit_log_slope, second_moment_factor, step_size

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("relu_qsgd")
    ctx = Context(out, scale="smoke", cache=RunCache(out / "cache"))
    rep = module("relu_qsgd").reproduce(ctx)
    return out, ctx, rep


def test_smoke_verdicts_and_numbers(smoke):
    _, _, rep = smoke
    assert rep.name == "relu_qsgd" and rep.scale == "smoke"
    assert [c.verdict for c in rep.claims] == ["agrees"] * 4, [c.measured for c in rep.claims]
    table = rep.data["table"]
    for d, rows in table.items():
        for s, row in rows.items():
            assert row["slope"] < 0 and row["r2_min"] >= 0.97, (d, s, row)
            assert row["final_max"] <= rep.data["settings"]["tol"]
        # QSGD sends fewer bits per step than float32 SGD
        assert all(rows[s]["bits_per_step"] < rows["sgd"]["bits_per_step"]
                   for s in rows if s != "sgd")
    assert math.isfinite(rep.seconds)


def test_figures_exist(smoke):
    out, _, rep = smoke
    names = {f.path for f in rep.figures}
    assert names == {"figures/relu_qsgd_error.png", "figures/relu_qsgd_same_step.png",
                     "figures/relu_qsgd_samples.png"}
    for f in rep.figures:
        p = out / f.path
        assert p.stat().st_size > 5000 and p.read_bytes()[:4] == b"\x89PNG"


def test_cached_rerun_is_identical(smoke):
    out, ctx, rep = smoke
    hits = ctx.cache.hits
    ctx2 = Context(out, scale="smoke", cache=RunCache(out / "cache"))
    rep2 = module("relu_qsgd").reproduce(ctx2)
    assert ctx2.cache.misses == 0 and ctx2.cache.hits > hits
    a, b = rep.to_dict(), rep2.to_dict()
    for r in (a, b):
        r.pop("seconds")
        for run in r["data"]["runs"].values():
            run.pop("seconds")
    assert a == b


def test_fit_log_slope():
    k = np.arange(40)
    slope, r2, n = fit_log_slope(3.0 * np.exp(-0.2 * k))
    assert slope == pytest.approx(-0.2, rel=1e-12) and r2 == pytest.approx(1.0) and n == 40
    # points at the round-off floor are cut off, not fitted
    d = np.exp(-0.5 * k)
    slope, r2, n = fit_log_slope(d, floor=1e-6)
    assert n == int(np.argmax(d <= 1e-6)) and slope == pytest.approx(-0.5, rel=1e-12)
    # a curve that is not geometric has R² < 1
    assert fit_log_slope(1.0 / (1 + k))[1] < 0.97
    assert math.isnan(fit_log_slope(np.array([1.0, 1e-20]))[0])


def test_step_size_rule():
    # κ = ¼ + a/(mB) + (ω/m)(¼ + a/B), a = (d+2)/2 − ¼, by hand for d = 10, m = 4, B = 8
    a = 5.75
    assert second_moment_factor(10, 0.0) == pytest.approx(0.25 + a / 32)
    assert second_moment_factor(10, 2.0) == pytest.approx(0.25 + a / 32 + 0.5 * (0.25 + a / 8))
    assert step_size(10, 0.0) == pytest.approx(1 / (2 * (0.25 + a / 32)))
    assert step_size(40, 1.0) < step_size(40, 0.0) < step_size(10, 0.0)
