"""The reproduction protocol: a :class:`Context` in, a :class:`Reproduction` (claims, figures,
data) out, with every finished run cached on disk so an interrupted suite resumes.

Each reproduction module of this package defines ``NAME``, ``TITLE``, ``PAPER`` and
``reproduce(ctx: Context) -> Reproduction``. A :class:`Claim` is one row of the verification
report's table: the paper's claim (with its provenance status), what was measured,
the bound (or "—" for a scaling statement whose constants are unknown), the verdict and the
tightness (bound ÷ measured).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from empirics.records import RunCache, atomic_write_text, json_ready

__all__ = [
    "PREDICT_RANGE", "SCALES", "VERDICTS", "Claim", "Context", "Figure", "Reproduction",
    "RunCache", "atomic_write_text", "claim_status", "effect_verdict", "interval_verdict",
    "json_ready", "predicted_cell", "result_prediction", "result_reason",
]

#: the predictor's target: predicted ÷ measured inside this range; outside it the claim's
#: predicted cell says the predictor is out of its regime there, with the numbers
PREDICT_RANGE = (0.5, 2.0)

#: ``smoke``: seconds (tests); ``default``: the whole suite in under 10 minutes on 2 CPU cores;
#: ``full``: the papers' sizes.
SCALES = ("smoke", "default", "full")

#: Verdicts of a claim. holds / violated: a bound against a measurement (statistical test);
#: agrees / disagrees: a qualitative or scaling claim against the measurement; not applicable:
#: a condition or assumption of the claim fails for the setting (the claim says which);
#: inconclusive: the measurement cannot decide (overlapping bands), or a hypothesis of the
#: theorem is not known (``Setting.unknown``: no run can be shown inside it); untested: one seed, no
#: test; diverged: a run diverged (nothing is claimed about it).
VERDICTS = ("holds", "violated", "agrees", "disagrees", "not applicable", "inconclusive",
            "untested", "diverged")


@dataclass
class Claim:
    """One row of the report: ``claim`` (the paper's statement, one sentence), ``paper`` (paper,
    section/theorem/equation and provenance status: quoted / recalled / derived / not known),
    ``measured`` (what was measured, with numbers), ``bound`` (value(s) or "—"), ``verdict``
    (one of :data:`VERDICTS`), ``tightness`` (bound ÷ measured, or None), ``detail`` (numbers
    behind the verdict: p-value, seeds, slopes, …).

    For a bound of Cooperative SGD's family, ``slack_descent`` (Lemma 2 of the JMLR paper with
    the measured consensus distance ÷ measured: what the descent-lemma step loses) and
    ``slack_consensus`` (bound ÷ Lemma 2: what bounding the consensus distance by its worst
    case loses) locate the slack; they multiply to ``tightness``. None where not evaluated.

    ``predicted``: the predictor's value for what ``measured`` reports (:mod:`empirics.predict`:
    exact on quadratics, a local model on smooth finite sums), with its regime, or "out of
    regime: why" — "—" where the claim has no predicted counterpart; ``predicted_ratio``:
    predicted ÷ measured (None where either is missing)."""

    claim: str
    paper: str
    measured: str
    verdict: str
    bound: str = "—"
    tightness: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    slack_descent: float | None = None
    slack_consensus: float | None = None
    predicted: str = "—"
    predicted_ratio: float | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS} (got {self.verdict!r})")


def predicted_cell(value: float | None, measured: float | None, regime: str | None,
                   reason: str = "", fmt: str = ".4g") -> tuple[str, float | None]:
    """(text of a claim's predicted cell, predicted ÷ measured). Out of the predictor's regime
    (no value) the text says why; a value whose ratio falls outside :data:`PREDICT_RANGE` is
    shown with "outside the predictor's regime here" and the ratio — never a silent pass."""
    if value is None:
        return ("out of regime" + (f": {reason}" if reason else "")), None
    ratio = value / measured if measured not in (None, 0) and measured == measured else None
    text = f"{value:{fmt}} ({regime})" if regime else f"{value:{fmt}}"
    if ratio is not None and not PREDICT_RANGE[0] <= ratio <= PREDICT_RANGE[1]:
        text += (f" — outside the predictor's regime here: ÷ measured = {ratio:.3g} ∉ "
                 f"[{PREDICT_RANGE[0]:g}, {PREDICT_RANGE[1]:g}]")
    return text, ratio


def result_reason(res: Any) -> str:
    """Why an :class:`~empirics.experiment.ExperimentResult` has no prediction (its
    prediction's reason; "no prediction" when it was not computed), "" when it has one."""
    pr = getattr(res, "prediction", None) or {}
    return pr.get("reason", "") if pr else "no prediction"


def result_prediction(res: Any) -> tuple[str, float | None]:
    """:func:`predicted_cell` of an :class:`~empirics.experiment.ExperimentResult`'s final
    prediction."""
    pr = getattr(res, "prediction", None) or {}
    f = res.final
    return predicted_cell(f.get("predicted"), f.get("measured"), pr.get("regime"),
                          result_reason(res))


def effect_verdict(predicted: float | None, measured: float | None,
                   measured_ci: tuple[float, float] | None = None) -> str:
    """A predicted effect against a measured one, within :data:`PREDICT_RANGE` (2×): the
    effects that agree are the band [predicted/2, 2·predicted]. With the measurement's
    interval: "agrees" when the whole interval lies inside the band (every effect the
    measurement allows is within 2× of the prediction), "disagrees" when the interval and the
    band are disjoint, "inconclusive" otherwise — a point estimate inside the band with an
    interval reaching outside it does not establish agreement, as the memory and PL claims'
    interval rules already require. Without an interval: the point estimate decides.
    Missing numbers: "inconclusive"."""
    if predicted is None or measured is None or measured == 0 or predicted != predicted:
        return "inconclusive"
    band = sorted((predicted / PREDICT_RANGE[1], predicted / PREDICT_RANGE[0]))
    if predicted < 0:
        band = sorted((predicted * PREDICT_RANGE[1], predicted * PREDICT_RANGE[0]))
    if measured_ci is None:
        return "agrees" if band[0] <= measured <= band[1] else "disagrees"
    return interval_verdict(measured_ci, band)


def interval_verdict(interval: Any, band: Any) -> str:
    """A measured interval against the band of values that agree with a claim: "agrees" when
    the interval lies inside the band (every value the measurement allows agrees),
    "disagrees" when they are disjoint, "inconclusive" otherwise."""
    lo, hi = sorted(interval)
    b_lo, b_hi = sorted(band)
    if b_lo <= lo and hi <= b_hi:
        return "agrees"
    return "disagrees" if hi < b_lo or lo > b_hi else "inconclusive"


def claim_status(status: str) -> str:
    """A run's verdict (:class:`~empirics.stats.Verdict` status) as a claim's: itself where it
    is one of :data:`VERDICTS` (holds, violated, inconclusive, untested, diverged, not
    applicable), "not applicable" for "no bound"."""
    return status if status in VERDICTS else "not applicable"


@dataclass
class Figure:
    """A PNG written by a reproduction: ``path`` relative to the report folder, ``caption``."""

    path: str
    caption: str


@dataclass
class Reproduction:
    """What one reproduction returns: its claims, figures and plain data (JSON-ready)."""

    name: str
    title: str
    paper: str
    scale: str
    claims: list[Claim]
    figures: list[Figure] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        return json_ready(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Reproduction:
        d = dict(d)
        d["claims"] = [Claim(**c) for c in d.get("claims", [])]
        d["figures"] = [Figure(**f) for f in d.get("figures", [])]
        s = d.get("seconds")
        d["seconds"] = math.nan if s is None else float(s)
        return cls(**d)


@dataclass
class Context:
    """Where and how a reproduction runs.

    out: the report folder (figures go to ``out / "figures"``). scale: one of :data:`SCALES`.
    device: torch device string for every tensor (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
    progress: show progress bars. cache: finished runs (resume after an interruption).
    """

    out: Path
    scale: str = "default"
    device: str = "cpu"
    progress: bool = False
    cache: RunCache = field(default_factory=lambda: RunCache(None))

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES} (got {self.scale!r})")
        self.out = Path(self.out)

    def pick(self, smoke: Any, default: Any, full: Any) -> Any:
        """The value for this context's scale."""
        return {"smoke": smoke, "default": default, "full": full}[self.scale]

    def save_figure(self, fig: Any, name: str, caption: str) -> Figure:
        """Write matplotlib ``fig`` as ``out/figures/<name>.png`` (atomically, then closed) and
        return its :class:`Figure` for the report."""
        from empirics.plots import save_figure

        path, rel = self.figure_path(name)
        save_figure(fig, path)
        return Figure(rel, caption)

    def figure_path(self, name: str) -> tuple[Path, str]:
        """(absolute path to write, path relative to ``out`` for the report) of figure ``name``."""
        rel = f"figures/{name}.png"
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path, rel
