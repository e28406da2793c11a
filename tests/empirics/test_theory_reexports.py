"""empirics keeps its names for what now lives in theory (the step sizes)."""

from __future__ import annotations

import theory.stepsizes
from empirics import engine


def test_engine_re_exports_the_theory_step_sizes():
    for name in ("Constant", "InverseTime", "LRFunction", "Stagewise", "as_lr"):
        assert getattr(engine, name) is getattr(theory.stepsizes, name)
    assert engine.as_lr(theory.stepsizes.pl_stepsize(1.0, 4)) is not None
