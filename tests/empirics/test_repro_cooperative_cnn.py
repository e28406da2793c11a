"""Smoke-scale reproduction of Cooperative SGD's CIFAR-10 experiments in miniature
(empirics.reproductions.cooperative_cnn): valid verdicts, bound rows labelled with estimated
constants, figures on disk, a cached rerun gives identical numbers; the full-scale path
(CIFAR-10 folder, segments with checkpoints) on a tiny folder, resumed."""

from __future__ import annotations

import pytest

from empirics.reproductions import REPRODUCTIONS, VERDICTS, Context, RunCache
from empirics.reproductions import cooperative_cnn as cc


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, smoke_twice):
    return smoke_twice("cooperative_cnn", tmp_path_factory)


def test_in_the_suite_and_claims_have_valid_verdicts(runs):
    _, rep, *_ = runs
    assert "cooperative_cnn" in REPRODUCTIONS
    assert rep.name == cc.NAME and rep.scale == "smoke"
    assert all(c.verdict in VERDICTS for c in rep.claims)
    bound_rows = [c for c in rep.claims if "Cooperative SGD bound" in c.claim]
    s = cc.setting("smoke")
    assert len(bound_rows) == len(s.fig3) + 2 + len(s.alphas)
    for c in bound_rows:
        assert c.verdict in ("holds", "violated", "not applicable", "diverged")
        if c.verdict in ("holds", "violated"):
            assert "(estimated constants)" in c.bound
            assert c.detail["constants"] == "estimated"
            assert "[estimated constants: L, σ²]" in c.detail["message"]
    # at least one bound row decides (PASGD inside Corollary 2's condition)
    assert any(c.verdict in ("holds", "violated") for c in bound_rows)
    qualitative = [c for c in rep.claims if c not in bound_rows]
    assert len(qualitative) == 3 + 3 + 3
    assert all(c.verdict in ("agrees", "disagrees", "inconclusive") for c in qualitative)
    bits = next(c for c in qualitative if "communication" in c.claim)
    assert bits.verdict == "agrees"  # τ = 24 sends exactly 1/24 of τ = 1's bits


def test_real_images_shared_split_and_constants(runs):
    _, rep, *_ = runs
    d = rep.data
    assert d["problem"]["data"].startswith("ImageData(digits")
    assert d["problem"]["split"] == "shared" and d["problem"]["label_skew_tv"] == 0
    assert d["constants"]["kappa2"]["value"] == 0
    assert d["constants"]["L"]["method"].startswith("estimated")
    assert d["eta_applicable"] > 0
    for key in ("fig3", "fig4", "fig5"):
        for summary in d[key].values():
            assert 0 <= summary["metrics"]["test_accuracy"] <= 1


def test_figures_and_cached_rerun(runs, repro_checks):
    out, rep, *_ = runs
    repro_checks.figures(out, rep, 3)
    repro_checks.cached_rerun(runs)


def test_segments_follow_the_papers_schedule():
    fs = cc.FullSetting(root="x")
    seg = cc._segments(fs)
    assert seg[0] == (0, 10, 0.4) and seg[-1] == (190, 200, pytest.approx(0.004))
    assert all(lr == pytest.approx(0.04) for a, b, lr in seg if 100 <= a < 150)
    assert all(b - a <= 10 for a, b, _ in seg) and sum(b - a for a, b, _ in seg) == 200
    with pytest.raises(ValueError, match="set COOPSGD_CIFAR10"):
        cc.full_setting(root="")


def test_full_scale_on_a_tiny_cifar_folder_resumes_from_checkpoints(tmp_path):
    """--scale full's path on a 40-image folder in CIFAR-10's format with a tiny VGG: segments
    cut at the milestone, a checkpoint per segment, and a second call served from the cache
    (a missing checkpoint recomputes its segment)."""
    from empirics.data import write_cifar10_folder

    folder = write_cifar10_folder(tmp_path / "cifar-10-batches-py", n_train_per_batch=8,
                                  n_test=8)
    fs = cc.FullSetting(root=str(folder), epochs=3, milestones=(2,), lr=0.05, batch=1,
                        segment_epochs=2, model_kwargs=(("width", 0.03),), fig3=((1, 0.0),
                                                                                 (2, 0.0)),
                        taus_fig5=(1, 2), lrs_fig5=(0.05,))
    out = tmp_path / "out"
    ctx = Context(out=out, scale="full", cache=RunCache(out / "cache"))
    rep = cc.full_scale(ctx, fs)
    assert all(c.verdict in VERDICTS for c in rep.claims)
    assert rep.claims[-1].verdict == "not applicable"
    run = rep.data["runs"]["tau=2,zeta=0"]
    assert run["epoch"][0] == 0 and run["epoch"][-1] == 3
    cks = sorted(p.name for p in (out / "checkpoints" / "full_tau2_zeta0").iterdir())
    assert cks == ["seed0_epoch2.pt", "seed0_epoch3.pt"]
    again = Context(out=out, scale="full", cache=RunCache(out / "cache"))
    rep2 = cc.full_scale(again, fs)
    assert again.cache.misses == 0 and rep2.data["runs"] == rep.data["runs"]
    (out / "checkpoints" / "full_tau2_zeta0" / "seed0_epoch3.pt").unlink()
    third = Context(out=out, scale="full", cache=RunCache(out / "cache"))
    cc.full_scale(third, fs)
    assert (out / "checkpoints" / "full_tau2_zeta0" / "seed0_epoch3.pt").exists()
