"""The papers' experiments, reproduced: one module per reproduction, each with ``NAME``,
``TITLE``, ``PAPER`` and ``reproduce(ctx) -> Reproduction`` (:mod:`empirics.reproductions.base`).

``coopsgd verify`` runs them in the order of :data:`REPRODUCTIONS`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from empirics.reproductions.base import (
    SCALES,
    VERDICTS,
    Claim,
    Context,
    Figure,
    Reproduction,
    RunCache,
)

#: name → module (in ``empirics.reproductions``), in the suite's order
REPRODUCTIONS: dict[str, str] = {
    "cooperative": "cooperative",
    "local_pl": "local_pl",
    "growing_intervals": "growing_intervals",
    "memory": "memory",
    "squarm": "squarm",
    "relu_qsgd": "relu_qsgd",
    "falsify": "falsify",
    "cooperative_cnn": "cooperative_cnn",
}


def module(name: str) -> ModuleType:
    """The reproduction module ``name`` (a key of :data:`REPRODUCTIONS`)."""
    if name not in REPRODUCTIONS:
        raise ValueError(f"unknown reproduction {name!r}; choose from {sorted(REPRODUCTIONS)}")
    return importlib.import_module(f"empirics.reproductions.{REPRODUCTIONS[name]}")


__all__ = ["REPRODUCTIONS", "SCALES", "VERDICTS", "Claim", "Context", "Figure", "Reproduction",
           "RunCache", "module"]
