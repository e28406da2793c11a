"""Matplotlib helpers shared by the reports: a measured curve with its confidence band against a
bound (and the exact expectation where known), labelled axes, log scales, PNG written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["axes", "band", "new_figure", "save_figure"]


def new_figure(ncols: int = 1, *, width: float = 5.2, height: float = 3.8) -> tuple[Any, Any]:
    """A figure with ``ncols`` axes (Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, axes[0] if ncols > 1 else axes[0][0]


def axes(ax: Any, xlabel: str | None = None, ylabel: str | None = None, *, log: str = "",
         grid: bool = True, legend: bool | int = False, title: str | None = None,
         xbase: int = 10) -> Any:
    """Label an axes: ``log`` holds the axes on a log scale (``"x"``, ``"y"``, ``"xy"``; the x
    axis in base ``xbase``), a light grid, an optional small legend (``legend`` may be a font
    size) and title. Returns ``ax``."""
    if "x" in log:
        ax.set_xscale("log", base=xbase)
    if "y" in log:
        ax.set_yscale("log")
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title, fontsize=9)
    if grid:
        ax.grid(True, which="both", alpha=0.3)
    if legend:
        ax.legend(fontsize=7 if legend is True else legend)
    return ax


def band(ax: Any, x: Any, mean: Any, lower: Any | None = None, upper: Any | None = None, *,
         label: str, color: str | None = None, style: str = "-", **kw: Any) -> None:
    """Plot ``mean`` against ``x`` with a shaded band [lower, upper] (e.g. a 95% CI over seeds);
    non-positive values are dropped on log axes by matplotlib itself."""
    x, mean = np.asarray(x, dtype=float), np.asarray(mean, dtype=float)
    (line,) = ax.plot(x, mean, style, label=label, color=color, **kw)
    if lower is not None and upper is not None:
        ax.fill_between(x, np.asarray(lower, dtype=float), np.asarray(upper, dtype=float),
                        color=line.get_color(), alpha=0.2, linewidth=0)


def save_figure(fig: Any, path: str | os.PathLike) -> Path:
    """Save ``fig`` as PNG atomically (temp file + ``os.replace``) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return path
