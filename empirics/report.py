"""Reports: one experiment (figure + markdown + JSON) and the verification suite (one table of
claims, the reproductions' figures, ``results.json``). Every file is written atomically.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from empirics.plots import band, new_figure, save_figure
from empirics.reproductions.base import Reproduction, atomic_write_text, json_ready

__all__ = ["experiment_figure", "fmt", "suite_markdown", "write_experiment_report",
           "write_gallery", "write_suite_report"]


def fmt(x: Any, digits: int = 3) -> str:
    """A number for a table (``—`` for None/NaN)."""
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    x = float(x)
    if not math.isfinite(x):
        return "—" if math.isnan(x) else str(x)
    return f"{x:.{digits}g}"


def experiment_figure(res: Any, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Measured metric (mean with its band over seeds), the prediction (exact or local model),
    the bound (nominal; conservative to optimistic shaded), against the step, log-log."""
    fig, ax = new_figure()
    k = np.asarray(res.steps, dtype=float)
    pos = k > 0
    n = res.per_seed.shape[0]
    if np.isfinite(res.mean[pos]).any():
        band(ax, k[pos], res.mean[pos], res.lower[pos], res.upper[pos],
             label=f"sample mean, {n} seeds ({100 * (1 - res.spec.get('level', 0.05)):.0f}% "
                   f"CI)", color="C0")
    if res.verdict.status == "diverged":  # every seed's records up to its divergence
        for i, y in enumerate(res.per_seed):
            ax.plot(k[pos], y[pos], color="C1", alpha=0.6, lw=1,
                    label="each seed (until it diverged)" if i == 0 else None)
    pred = getattr(res, "predicted", None)
    regime = (getattr(res, "prediction", None) or {}).get("regime")
    if pred is not None and np.isfinite(pred[pos]).any():
        ax.plot(k[pos], pred[pos], "-.", color="C4", lw=1.6,
                label=f"predicted ({regime}; no sampling)")
    if res.truth is not None and not (pred is not None and regime == "exact"):
        ax.plot(k[pos], res.truth[pos], "k--", label="exact expectation (recursion)")
    if res.bound is not None:
        band(ax, k[pos], res.bound[pos], res.bound_optimistic[pos],
             res.bound_conservative[pos], label="bound (band: constants ± uncertainty)",
             color="C3")
    if getattr(res, "lemma2", None) is not None:
        band(ax, k[pos], res.lemma2[pos], res.lemma2_lower[pos], res.lemma2_upper[pos],
             label="Lemma 2 with the measured consensus distance", color="C2")
    ax.set_xscale("log")
    shown = np.concatenate([np.ravel(res.per_seed[:, pos]), res.mean[pos]])
    if np.any(np.isfinite(shown) & (shown > 0)):
        ax.set_yscale("log")
    ax.set_xlabel("step K")
    ax.set_ylabel(res.metric_label)
    ax.set_title(title or f"{res.spec.get('name')}: {res.verdict.status}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return save_figure(fig, path)


def write_experiment_report(res: Any, out: str | os.PathLike) -> Path:
    """``out/report.md``, ``out/result.json`` and ``out/figure.png`` for one experiment; returns
    the path of ``report.md``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    experiment_figure(res, out / "figure.png")
    res.save(out / "result.json")
    f = res.final
    info = res.bound_info or {}
    lines = [
        f"# Experiment `{res.spec.get('name')}`",
        "",
        f"**Verdict: {res.verdict.status}** — {res.verdict.message}",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| metric | {res.metric_label} at K = {f['step']} |",
        f"| measured (mean over {res.per_seed.shape[0]} seeds) | {fmt(f['measured'], 4)} "
        f"[{fmt(f['lower'], 4)}, {fmt(f['upper'], 4)}] |",
        f"| exact expectation | {fmt(f.get('truth'), 4)} |",
        f"| predicted ({(getattr(res, 'prediction', None) or {}).get('regime', '—')}) | "
        f"{fmt(f.get('predicted'), 4)} |",
        f"| predicted ÷ measured | {fmt(f.get('predicted_ratio'), 3)} |",
        f"| bound (nominal) | {fmt(f.get('bound'), 4)} |",
        f"| bound (optimistic … conservative) | {fmt(f.get('bound_optimistic'), 4)} … "
        f"{fmt(f.get('bound_conservative'), 4)} |",
        f"| tightness (bound ÷ measured) | {fmt(f.get('tightness'), 3)} |",
        f"| Lemma 2 (JMLR eq. 38) with the measured consensus distance | "
        f"{fmt(f.get('lemma2'), 4)} |",
        f"| slack: Lemma 2 ÷ measured (descent step) × bound ÷ Lemma 2 (consensus bound) | "
        f"{fmt(f.get('slack_descent'), 3)} × {fmt(f.get('slack_consensus'), 3)} |",
        f"| wall time | {res.seconds:.1f} s |",
        "",
    ]
    if info:
        lines += [f"**Bound:** {info.get('name')} — {info.get('source')}", "",
                  f"`{info.get('lhs')} ≤ {info.get('expr')}`", "",
                  "Values: " + ", ".join(f"{k} = {fmt(v, 6)}"
                                         for k, v in info.get("values", {}).items()), ""]
        if info.get("terms"):
            lines += ["Terms at the last step: " + ", ".join(
                f"{k} = {fmt(v, 4)}" for k, v in info["terms"].items()), ""]
    pr = getattr(res, "prediction", None)
    if pr:
        if pr.get("values") is None:
            lines += [f"**Prediction:** out of the predictor's regime — {pr.get('reason')}", ""]
        else:
            fl = pr.get("floor")
            lines += [f"**Prediction** ({pr.get('regime')}, {pr.get('structure')}, "
                      f"{fmt(pr.get('seconds'), 2)} s): stationary floor {fmt(fl, 4)}"
                      + (f" ({pr.get('floor_note')})" if pr.get("floor_note") else "") + ".",
                      "", "Assumptions: " + ("; ".join(pr.get("assumptions") or []) or "none")
                      + ".", ""]
    lines += ["**Constants:**", ""]
    for name, est in res.constants.items():
        if est is not None:
            unc = "exact" if not est.get("uncertainty") else f"± {fmt(est['uncertainty'])}"
            lines.append(f"- {name} = {fmt(est['value'], 6)} ({unc}; {est['method']})")
    lines += ["", "![measured vs bound](figure.png)", "",
              "Spec:", "", "```json", json.dumps(res.spec, indent=2), "```", ""]
    return atomic_write_text(out / "report.md", "\n".join(lines))


def _cell(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def suite_markdown(reps: list[Reproduction], failures: dict[str, str], meta: dict[str, Any],
                   pending: list[str] | None = None) -> str:
    """The text of the suite's ``report.md``."""
    counts: dict[str, int] = {}
    for r in reps:
        for c in r.claims:
            counts[c.verdict] = counts.get(c.verdict, 0) + 1
    lines = [
        "# coopsgd verification report",
        "",
        f"Scale `{meta.get('scale')}`, device `{meta.get('device')}`, coopsgd "
        f"{meta.get('version')}, torch {meta.get('torch')}, {meta.get('date')}.",
        "",
        "Verdicts: " + (", ".join(f"{v}: {n}" for v, n in sorted(counts.items()))
                        or "none yet") + ".",
        "",
        *([f"**Interrupted: not finished: {', '.join(pending)}.** Run the same command again "
           f"to resume.", ""] if pending else []),
        "*holds / violated*: a bound against the measured mean (one-sided t-test over seeds). "
        "*agrees / disagrees*: a qualitative or scaling claim against the measurement. "
        "*not applicable*: an assumption or condition of the claim fails for the setting. "
        "*inconclusive*: the measurement cannot decide, or a hypothesis of the theorem is not "
        "known, so no run can be shown inside it (the bound is still shown). "
        "Tightness = bound ÷ measured. Where the bound is Cooperative SGD's (JMLR Theorem 1 and "
        "its corollaries), the tightness splits into two factors that multiply to it: "
        "*descent* = Lemma 2 (JMLR eq. 38, with the measured consensus distance) ÷ measured, "
        "what the descent-lemma step loses, and *consensus* = bound ÷ Lemma 2, what bounding "
        "the consensus distance by its worst case loses. The paper column carries the "
        "provenance status (quoted / recalled / derived / [NF]); recalled formulas are not "
        "quotations. *Predicted*: the expectation computed from the problem's law without "
        "sampling (`empirics.predict`: exact on quadratics, a local model on smooth finite "
        "sums — logistic regression, the MLP, smooth own models; \"out of regime\" says why "
        "there is none), with predicted ÷ measured.",
        "",
        "| reproduction | claim | paper | measured | predicted | predicted ÷ measured | bound "
        "| verdict | tightness | descent | consensus |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reps:
        for c in r.claims:
            lines.append("| " + " | ".join(_cell(x) for x in (
                r.name, c.claim, c.paper, c.measured, getattr(c, "predicted", "—"),
                fmt(getattr(c, "predicted_ratio", None)), c.bound, f"**{c.verdict}**",
                fmt(c.tightness), fmt(getattr(c, "slack_descent", None)),
                fmt(getattr(c, "slack_consensus", None)))) + " |")
    for name, err in failures.items():
        lines.append(f"| {name} | (reproduction failed) | — | {_cell(err)} | — | — | — "
                     f"| **error** | — | — | — |")
    lines.append("")
    for r in reps:
        lines += [f"## {r.title}", "", f"{r.paper}. Scale `{r.scale}`, {r.seconds:.0f} s.", ""]
        for fig in r.figures:
            lines += [f"![{_cell(fig.caption)}]({fig.path})", "", f"*{fig.caption}*", ""]
    return "\n".join(lines)


def write_suite_report(reps: list[Reproduction], failures: dict[str, str], out: Path,
                       meta: dict[str, Any], pending: list[str] | None = None) -> Path:
    """``out/report.md`` and ``out/results.json`` (atomic); returns the report's path.
    ``pending``: the reproductions an interruption left unfinished (named in the report)."""
    data = {"meta": meta, "reproductions": [r.to_dict() for r in reps], "failures": failures,
            "pending": pending or []}
    atomic_write_text(out / "results.json", json.dumps(json_ready(data), indent=1))
    return atomic_write_text(out / "report.md", suite_markdown(reps, failures, meta, pending))


def write_gallery(reps: list[Reproduction], report_dir: Path, docs_dir: str | os.PathLike,
                  meta: dict[str, Any], failures: dict[str, str] | None = None) -> Path:
    """Copy every reproduction figure to ``docs_dir/gallery/`` and write ``docs_dir/gallery.md``
    (the claims table and the figures, with how they were produced). A reproduction that
    failed (``failures``: name → error) is listed as failed, not left out silently."""
    import shutil

    docs = Path(docs_dir)
    (docs / "gallery").mkdir(parents=True, exist_ok=True)
    moved: list[Reproduction] = []
    for r in reps:
        figs = []
        for fig in r.figures:
            src = Path(report_dir) / fig.path
            dst = docs / "gallery" / Path(fig.path).name
            if src.exists():
                tmp = dst.with_name(dst.name + ".tmp")
                shutil.copyfile(src, tmp)
                os.replace(tmp, dst)
            figs.append(type(fig)(f"gallery/{dst.name}", fig.caption))
        moved.append(Reproduction(r.name, r.title, r.paper, r.scale, r.claims, figs, r.data,
                                  r.seconds))
    body = suite_markdown(moved, dict(failures or {}), meta).replace(
        "# coopsgd verification report",
        "# Gallery: every reproduction of `coopsgd verify`\n\nProduced by "
        f"`coopsgd verify --scale {meta.get('scale')} --gallery docs` (this page and "
        "`docs/gallery/*.png` are its output, committed as is).", 1)
    return atomic_write_text(docs / "gallery.md", body)
