"""The one spec language: one file through ``coopsgd run``, ``run_experiment`` and the
distributed launcher gives the same runs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from empirics.distributed import run_distributed
from empirics.engine import run
from empirics.experiment import ExperimentResult, run_experiment
from empirics.records import COLUMNS
from empirics.spec import ExperimentSpec, RunSpec

SPEC = """\
name = "one-file"
lr = 0.05
steps = 12
batch_size = 4
seeds = [2, 5]
record_every = 3

[problem]
kind = "least_squares"
n_samples = 200
d = 6
seed = 0
heterogeneity = 0.5

[algorithm]
name = "decentralized_periodic"
m = 3
tau = 2
topology = "ring"
momentum = 0.5
"""


def _same(a, b, tol=1e-10):
    for c in COLUMNS:
        if c != "wall":
            np.testing.assert_allclose(getattr(a, c), getattr(b, c), rtol=tol, atol=tol,
                                       equal_nan=True, err_msg=c)
    if a.u_final is not None and b.u_final is not None:
        np.testing.assert_allclose(a.u_final, b.u_final, rtol=tol, atol=tol)


@pytest.mark.slow
def test_one_spec_file_through_cli_api_and_distributed_launcher(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text(SPEC)
    spec = ExperimentSpec.load(path)
    # the API
    res = run_experiment(spec)
    assert [r.spec["seed"] for r in res.runs] == [2, 5]
    # the distributed launcher, seed 5, from the same file
    dres = run_distributed(path, seed=5, timeout=300)
    _same(dres.result, res.runs[1])
    _same(dres.result, run(spec.run_spec(5)))
    # the CLI, from another directory
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "empirics.cli", "run", str(path), "--out",
                           str(out), "--quiet"], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = ExperimentResult.from_dict(json.loads((out / "result.json").read_text()))
    np.testing.assert_allclose(got.per_seed, res.per_seed, rtol=1e-12, atol=0, equal_nan=True)
    assert got.verdict.status == res.verdict.status


def test_run_spec_is_the_engine_input(tmp_path):
    spec = ExperimentSpec.from_toml(SPEC)
    rs = spec.run_spec(5)
    assert isinstance(rs, RunSpec) and rs.seed == 5 and rs.T == 12 and rs.m == 3
    assert spec.run_spec().seed == 2  # the first seed by default
    # one build shared between seeds: the same problem and configuration objects
    built = spec.build()
    a, b = spec.run_spec(2, built), spec.run_spec(5, built)
    assert a.problem is b.problem and a.config is b.config
    _same(run(a), run(spec.run_spec(2)))
    # the TOML round trip keeps every field
    again = ExperimentSpec.from_toml(spec.to_toml())
    assert again.to_dict() == spec.to_dict()
    spec.to_toml(tmp_path / "x.toml")
    assert ExperimentSpec.load(tmp_path / "x.toml").to_dict() == spec.to_dict()


def test_lazy_topology_table():
    """topology = {name = ..., lazy = s}: W = s·I + (1 − s)·W₀, on the complete graph ζ = s
    exactly; the spectrum of a lazy ring is s + (1 − s)λ(ring); s outside [0, 1) is refused."""
    from empirics.spec import build_mixing

    for s in (0.0, 0.33, 0.75, 0.99):
        W = build_mixing(16, {"name": "complete", "lazy": s})
        assert W.zeta == pytest.approx(s, abs=1e-12)
        np.testing.assert_allclose(W.matrix.sum(1), 1.0)
    ring = build_mixing(16, "ring")
    lazy = build_mixing(16, {"name": "ring", "lazy": 0.5})
    np.testing.assert_allclose(lazy.eigenvalues, 0.5 + 0.5 * ring.eigenvalues, atol=1e-12)
    for bad in (1, 1.5, -0.1, "0.5", True):
        with pytest.raises(ValueError, match="lazy must be a number in"):
            build_mixing(16, {"name": "complete", "lazy": bad})
    spec = ExperimentSpec.from_toml(SPEC.replace('topology = "ring"',
                                                 'topology = {name = "ring", lazy = 0.5}'))
    _, cfg, _ = spec.build()
    assert cfg.schedule.W.zeta == pytest.approx(lazy_zeta(3, 0.5))


def lazy_zeta(m: int, s: float) -> float:
    """ζ of s·I + (1 − s)·ring(m) (uniform weights 1/3), from the ring's eigenvalues
    1/3 + (2/3)cos(2πk/m)."""
    lam = [1 / 3 + 2 / 3 * np.cos(2 * np.pi * k / m) for k in range(1, m)]
    return max(abs(s + (1 - s) * x) for x in lam)


def test_lazy_average_is_the_lazy_complete_graph_with_exact_zeta():
    from empirics.spec import build_mixing

    a = build_mixing(8, {"name": "lazy_average", "zeta": 0.99})
    b = build_mixing(8, {"name": "complete", "lazy": 0.99})
    np.testing.assert_allclose(a.matrix, 0.99 * np.eye(8) + 0.01 / 8 * np.ones((8, 8)), atol=1e-15)
    np.testing.assert_allclose(a.matrix, b.matrix, atol=0)
    assert a.zeta == pytest.approx(0.99, abs=1e-12)
    with pytest.raises(ValueError, match="zeta must be a number in"):
        build_mixing(8, {"name": "lazy_average", "zeta": 1.0})
    with pytest.raises(ValueError, match="takes exactly zeta"):
        build_mixing(8, {"name": "lazy_average", "zeta": 0.5, "lazy": 0.2})


def test_compressor_strings_take_int_float_and_boolean_options() -> None:
    from empirics.compressors import QSGD, RandomK
    from empirics.spec import _compressor

    assert _compressor("randk:k=3,unbiased=true") == RandomK(3, unbiased=True)
    assert _compressor("randk:k=3,unbiased=False") == RandomK(3, unbiased=False)
    assert _compressor("qsgd:s=4") == QSGD(4)
    with pytest.raises(ValueError, match="key=value"):
        _compressor("randk:3")
