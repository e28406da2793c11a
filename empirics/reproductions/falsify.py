"""Falsifying the Cooperative SGD bounds: a property-based search over their admissible
settings (:func:`empirics.falsify.falsify`) for the run that comes closest to breaking each.

The reproductions check a bound on the handful of settings they choose; here hypothesis draws
settings inside each bound's hypotheses (m, τ, the topology, η as a fraction of the largest η
its learning-rate condition admits, K = rounds·τ; i.i.d. logistic regression), steers towards
small tightness (bound ÷ measured at the worst recorded step) and would shrink a violation to
the simplest setting that breaks the bound. Each claim says how many admissible settings were
searched and the tightest one found, beside the tightness of the Cooperative SGD reproduction's
hand-picked settings (when that reproduction has run in the same report folder).
"""

from __future__ import annotations

import json
import math
import time

from empirics.falsify import Space, falsify
from empirics.reproductions.base import Claim, Context, Reproduction
from theory.bounds import registry

NAME = "falsify"
TITLE = "Falsifying the bounds: the tightest admissible settings a property-based search finds"
PAPER = ("Wang & Joshi, Cooperative SGD, JMLR 22(213), 2021: Corollary 2 (PASGD), Corollary 3 "
         "(D-PSGD), Theorem 1 at v = 0 (decentralized periodic averaging)")

BOUNDS = {
    "pasgd": Space(m=(2, 16), tau=(1, 16)),
    "dpsgd": Space(m=(4, 16), topology=("ring", "torus", "hypercube", "complete")),
    "decentralized-periodic": Space(m=(4, 16), tau=(1, 8), topology=("ring", "torus", "complete")),
}
#: the Cooperative SGD reproduction's bound claims that each searched bound is compared with
HAND_PICKED = {"pasgd": "PASGD", "dpsgd": "D-PSGD", "decentralized-periodic": "decentralized"}


def _hand_picked(ctx: Context) -> dict[str, float]:
    """The smallest tightness of the cooperative reproduction's bound claims, per bound (from
    its finished result in the same report folder), when it ran."""
    path = ctx.out / "reproductions" / "cooperative.json"
    out: dict[str, float] = {}
    try:
        claims = json.loads(path.read_text())["reproduction"]["claims"]
    except (OSError, ValueError, KeyError):
        return out
    for key, word in HAND_PICKED.items():
        ts = [c["tightness"] for c in claims if word in c["claim"] and c.get("tightness")
              and c["verdict"] in ("holds", "violated")]
        if ts:
            out[key] = float(min(ts))
    return out


def reproduce(ctx: Context) -> Reproduction:
    t0 = time.perf_counter()
    budget = ctx.pick(3, 12, 60)
    hand = _hand_picked(ctx)
    claims, data = [], {}
    for key, space in BOUNDS.items():
        res = falsify(key, space, budget=budget, seed=0, cache=ctx.cache)
        best = res.tightest
        ce = res.counterexample
        n = len(res.candidates)
        hp = hand.get(key)
        tail = (f"; the Cooperative SGD reproduction's hand-picked settings: tightest "
                f"{hp:.3g}" if hp is not None else "")
        if ce is not None:
            verdict, measured = "violated", (f"counterexample (shrunk) at {ce.setting}: "
                                             f"{ce.message}")
        else:
            verdict = "holds"
            measured = (f"no violation in {n} admissible settings; tightest found "
                        f"{best.tightness:.3g} at m = {best.setting['m']}, τ = "
                        f"{best.setting['tau']}, {best.setting['topology']}, η = "
                        f"{best.setting['eta_fraction']:.2f}·η_max, K = {best.setting['K']}"
                        + tail) if best is not None else f"no setting evaluated ({n} drawn)"
            if res.ranked_out:
                measured += (f"; {len(res.ranked_out)} further drawn settings ranked out by "
                             f"the predictor (predicted tightness above 2× the best "
                             f"predicted), no verdict on them")
        src = registry.build(key).source
        claims.append(Claim(
            claim=f"{key}: for every setting inside the hypotheses the measured error is below "
                  f"the bound (property-based search, {n} admissible settings)",
            paper=f"{src.paper}, {src.where} [{src.status}]", measured=measured,
            verdict=verdict,
            bound="—" if best is None else f"{best.tightness:.3g} (tightest)",
            tightness=None if best is None or not math.isfinite(best.tightness)
            else best.tightness,
            detail={"searched": n, "budget": budget, "hand_picked": hp}))
        data[key] = {"table": res.table()[:10], "counterexample": None if ce is None
                     else ce.setting}
    return Reproduction(NAME, TITLE, PAPER, ctx.scale, claims, [], data,
                        time.perf_counter() - t0)


__all__ = ["NAME", "PAPER", "TITLE", "reproduce"]
