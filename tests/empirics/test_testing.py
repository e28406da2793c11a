"""The compressor property suite for users (empirics.testing, coopsgd check-compressor): broken
compressors are caught with their counterexamples, a registered compressor is named in a spec."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from click.testing import CliRunner

from empirics import compressors as cm
from empirics.compressors import QSGD, TopK
from empirics.testing import check_compressor

FAST = {"max_examples": 25, "stat_examples": 8}


@dataclass(frozen=True, repr=False)
class OptimisticTopK(TopK):
    """Declares δ = 2k/d: twice what top-k guarantees."""

    name: ClassVar[str] = "optimistic_topk"

    def delta(self, d: int) -> float:
        return min(1.0, 2 * self.k / d)

    def __repr__(self) -> str:
        return f"OptimisticTopK(k={self.k})"


@dataclass(frozen=True, repr=False)
class CheapBits(TopK):
    """Under-declares its payload: k·8 bits."""

    def bits(self, d: int, value_bits: int = 32) -> int:
        return 8 * self.k

    def __repr__(self) -> str:
        return f"CheapBits(k={self.k})"


@dataclass(frozen=True, repr=False)
class BiasedQSGD(QSGD):
    """Claims to be unbiased but shrinks by 10 %."""

    def __call__(self, x, generator=None):
        return 0.9 * super().__call__(x, generator)

    def __repr__(self) -> str:
        return f"BiasedQSGD(s={self.s})"


@dataclass(frozen=True, repr=False)
class Forgetful(TopK):
    """Ignores the generator: draws from torch's global RNG (not reproducible from a seed)."""

    def __call__(self, x, generator=None):
        y = super().__call__(x)
        return y + 0 * torch.rand(y.shape, dtype=y.dtype)[0] + (
            torch.rand(()) < 0.5).to(y.dtype) * 1e-3 * y

    def __repr__(self) -> str:
        return f"Forgetful(k={self.k})"


def test_a_correct_user_compressor_passes():
    rep = check_compressor(TopK(2), **FAST)
    assert rep.ok and "all properties hold" in str(rep)
    assert [r.name for r in rep.results] == ["shape", "roundtrip", "bits", "deterministic",
                                            "rows", "unbiased", "variance", "contraction"]


def test_an_optimistic_delta_is_caught_with_a_counterexample():
    rep = check_compressor(OptimisticTopK(2), **FAST)
    assert not rep.ok and [r.name for r in rep.failed] == ["contraction"]
    ex = rep["contraction"].counterexample
    assert ex is not None and "x" in ex and "declared" in ex and "measured" in ex
    with pytest.raises(AssertionError, match="contraction"):
        rep.raise_if_failed()


def test_understated_bits_a_false_unbiased_claim_and_no_seed_are_caught():
    cheap = check_compressor(CheapBits(2), **FAST)
    assert "bits" in [r.name for r in cheap.failed]  # (its decode refuses the payload too)
    assert "the payload holds more than rows · ⌈bits/8⌉" in cheap["bits"].detail
    biased = check_compressor(BiasedQSGD(2), **FAST)
    assert "unbiased" in [r.name for r in biased.failed]
    assert "E[C(x)] ≠ x" in biased["unbiased"].detail
    forgetful = check_compressor(Forgetful(2), **FAST)
    assert "deterministic" in [r.name for r in forgetful.failed]
    assert forgetful["deterministic"].counterexample["seed"] is not None


def test_check_compressor_wants_an_instance_with_the_protocol():
    with pytest.raises(TypeError, match=r"needs an instance, e\.g\. TopK\(\.\.\.\)"):
        check_compressor(TopK)
    with pytest.raises(TypeError, match="lacks"):
        check_compressor(object())


def test_a_registered_compressor_is_named_in_a_spec():
    from empirics.experiment import ExperimentSpec, run_experiment

    cm.register("optimistic_topk", OptimisticTopK)
    try:
        assert cm.make("optimistic_topk", k=2) == OptimisticTopK(2)
        with pytest.raises(ValueError, match="is taken by OptimisticTopK"):
            cm.register("optimistic_topk", CheapBits)
        with pytest.raises(ValueError, match="built-in compressor and cannot be replaced"):
            cm.register("topk", CheapBits, replace=True)
        with pytest.raises(ValueError, match="lower-case letters"):
            cm.register("My+Topk", CheapBits)
        spec = ExperimentSpec(
            name="mine", problem={"kind": "logistic_regression", "n_samples": 64, "d": 5},
            algorithm={"name": "mdsgd", "m": 2, "compressor": "optimistic_topk:k=2"},
            lr=0.05, steps=10, batch_size=2, seeds=2, record_every=5)
        r = run_experiment(spec, progress=False)
        assert r.runs[0].spec["config"]["compressor"] == "optimistic_topk"  # its name
        assert r.verdict.status != "diverged"
    finally:
        cm._REGISTRY.pop("optimistic_topk", None)


def test_coopsgd_check_compressor_from_the_shell(tmp_path, monkeypatch):
    from empirics.cli import main

    (tmp_path / "my_compressors.py").write_text(textwrap.dedent("""
        from dataclasses import dataclass
        from typing import ClassVar
        from empirics.compressors import TopK

        @dataclass(frozen=True, repr=False)
        class Liar(TopK):
            name: ClassVar[str] = "liar"
            def delta(self, d):
                return 1.0
            def __repr__(self):
                return f"Liar(k={self.k})"
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    run = CliRunner().invoke
    ok = run(main, ["check-compressor", "empirics.compressors:TopK", "--kw", "k=3",
                    "--examples", "15"])
    assert ok.exit_code == 0, ok.output
    assert "TopK(k=3): all properties hold" in ok.output
    bad = run(main, ["check-compressor", "my_compressors:Liar", "--kw", "k=2", "--examples",
                     "15", "--json"])
    assert bad.exit_code == 1, bad.output
    out = json.loads(bad.output)
    assert not out["ok"]
    fail = [r for r in out["results"] if r["status"] == "failed"]
    assert [r["name"] for r in fail] == ["contraction"] and fail[0]["counterexample"]["x"]
    usage = run(main, ["check-compressor", "my_compressors:Nope"])
    assert usage.exit_code == 2 and "has no attribute 'Nope'" in usage.output
    named = run(main, ["check-compressor", "qsgd", "--kw", "s=2", "--examples", "10",
                       "--draws", "2000"])
    assert named.exit_code == 0, named.output
