"""The verification suite's machinery: report, resume from finished work, failures kept apart,
exit codes of ``coopsgd verify`` and ``coopsgd run``."""

from __future__ import annotations

import json
import sys
import types

import pytest
from click.testing import CliRunner

import empirics.reproductions as R
import empirics.verify as V
from empirics.cli import main
from empirics.reproductions.base import Claim, Figure, Reproduction

CALLS: list[str] = []


def _fake(name: str, verdict: str, fail: bool = False) -> types.ModuleType:
    mod = types.ModuleType(f"fake_{name}")

    def reproduce(ctx):
        CALLS.append(name)
        if fail:
            raise RuntimeError("boom")
        x = ctx.cache.get_or_run({"unit": name}, lambda: {"value": 1.5})
        path, rel = ctx.figure_path(f"{name}_fig")
        path.write_bytes(b"\x89PNG fake")
        return Reproduction(name, f"Title {name}", "Paper X (digest §0, recalled)", ctx.scale,
                            [Claim("a claim", "Paper X §1 (recalled)", f"x = {x['value']}",
                                   verdict, bound="2.0", tightness=2.0 / x["value"])],
                            [Figure(rel, "a caption")])

    mod.reproduce = reproduce
    return mod


@pytest.fixture
def fake_suite(monkeypatch):
    mods = {"a": _fake("a", "holds"), "b": _fake("b", "disagrees"), "c": _fake("c", "holds",
                                                                                  fail=True)}
    monkeypatch.setattr(R, "REPRODUCTIONS", {k: k for k in mods})
    monkeypatch.setattr(V, "REPRODUCTIONS", {k: k for k in mods})
    monkeypatch.setattr(V, "module", lambda n: mods[n])
    CALLS.clear()
    return mods


def test_verify_writes_report_keeps_failures_apart_and_resumes(fake_suite, tmp_path):
    res = V.verify(tmp_path, scale="smoke", progress=False)
    assert CALLS == ["a", "b", "c"]
    assert set(res.failures) == {"c"} and "boom" in res.failures["c"]
    text = res.report.read_text()
    assert "| a | a claim |" in text and "**holds**" in text and "**disagrees**" in text
    assert "(reproduction failed)" in text and "figures/a_fig.png" in text
    data = json.loads((tmp_path / "results.json").read_text())
    assert [r["name"] for r in data["reproductions"]] == ["a", "b"]
    assert res.failing_claims() == [("b", "a claim", "disagrees")]
    # second call: finished reproductions are reused, the failed one is retried
    CALLS.clear()
    again = V.verify(tmp_path, scale="smoke", progress=False)
    assert CALLS == ["c"] and again.resumed == ["a", "b"]
    # another scale does not reuse them; --fresh starts over
    CALLS.clear()
    V.verify(tmp_path, scale="smoke", progress=False, fresh=True, only=["a"])
    assert CALLS == ["a"]


def test_verify_rejects_bad_arguments(fake_suite, tmp_path):
    with pytest.raises(ValueError, match="scale must be one of"):
        V.verify(tmp_path, scale="huge")
    with pytest.raises(ValueError, match="unknown reproduction 'zz'"):
        V.verify(tmp_path, only=["zz"])
    if "torch" in sys.modules and not sys.modules["torch"].cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            V.verify(tmp_path, device="cuda")


def test_verify_command_exit_codes(fake_suite, tmp_path):
    r = CliRunner().invoke(main, ["verify", "--out", str(tmp_path), "--scale", "smoke",
                                  "--quiet", "--only", "cooperative"])
    assert r.exit_code == 2 and "unknown reproduction" in r.output  # not in the fake suite
    r = CliRunner().invoke(main, ["verify", "--out", str(tmp_path / "x"), "--quiet"])
    assert r.exit_code == 1 and "reproduction c failed" in r.output  # c raised
    assert "disagrees: [b] a claim" in r.output and "report:" in r.output


def test_run_command_writes_report_and_strict_exit_code(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text("""
name = "tiny"
lr = 0.1
steps = 40
seeds = 3
batch_size = 2
record_every = 10
bound_scale = 0.01

[problem]
kind = "logistic_regression"
n_samples = 400
d = 5
l2 = 0.01
sampling = "shared"

[algorithm]
name = "pasgd"
m = 4
tau = 2
""")
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["run", str(spec), "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "violated" in r.output and (out / "report.md").exists()
    assert (out / "figure.png").exists() and (out / "result.json").exists()
    r = CliRunner().invoke(main, ["run", str(spec), "--out", str(out), "--quiet", "--strict"])
    assert r.exit_code == 1
    r = CliRunner().invoke(main, ["run", str(tmp_path / "missing.toml")])
    assert r.exit_code == 2 and "does not exist" in r.output
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "b"\nlr = 0.1\nsteps = 10\ntau = 3\n[problem]\nkind = "x"\n'
                   '[algorithm]\nname = "pasgd"\nm = 2\n')
    r = CliRunner().invoke(main, ["run", str(bad)])
    assert r.exit_code == 2 and "unknown experiment field" in r.output


def test_gallery_copies_figures_and_lists_claims(fake_suite, tmp_path):
    out, docs = tmp_path / "rep", tmp_path / "docs"
    r = CliRunner().invoke(main, ["verify", "--out", str(out), "--quiet", "--only", "a",
                                  "--gallery", str(docs)])
    assert r.exit_code == 0, r.output
    text = (docs / "gallery.md").read_text()
    assert "(gallery/a_fig.png)" in text and "| a | a claim |" in text
    assert (docs / "gallery" / "a_fig.png").read_bytes() == b"\x89PNG fake"


def test_gallery_lists_a_failed_reproduction(fake_suite, tmp_path):
    out, docs = tmp_path / "rep", tmp_path / "docs"
    r = CliRunner().invoke(main, ["verify", "--out", str(out), "--quiet", "--only", "a",
                                  "--only", "c", "--gallery", str(docs)])
    assert r.exit_code == 1, r.output  # c raised
    text = (docs / "gallery.md").read_text()
    assert "| a | a claim |" in text
    assert "| c | (reproduction failed) |" in text and "boom" in text


def test_run_command_reports_divergence_with_exit_1(tmp_path):
    spec = tmp_path / "d.toml"
    spec.write_text('name = "div"\nlr = 80.0\nsteps = 300\nseeds = 2\nbound = "none"\n'
                    '[problem]\nkind = "least_squares"\nn_samples = 200\nd = 4\n'
                    'condition_number = 5.0\n[algorithm]\nname = "pasgd"\nm = 2\ntau = 2\n')
    r = CliRunner().invoke(main, ["run", str(spec), "--out", str(tmp_path / "o"), "--quiet"])
    assert r.exit_code == 1, r.output
    assert "diverged at step" in r.output and "seed 0" in r.output
    assert "lower the learning rate" in r.output


@pytest.mark.slow
def test_sigterm_writes_the_report_and_the_next_call_resumes(tmp_path):
    """A real ``coopsgd verify`` process killed with SIGTERM after its first reproduction
    finished: exit 130, report of the finished one on disk, the next call resumes it."""
    import os
    import signal
    import subprocess
    import time

    out = tmp_path / "rep"
    cmd = [sys.executable, "-c", "from empirics.cli import main; main()", "verify", "--out",
           str(out), "--scale", "smoke", "--quiet", "--only", "squarm", "--only", "cooperative"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            text=True)
    done = out / "reproductions" / "squarm.json"
    t0 = time.time()
    while not done.exists() and time.time() - t0 < 300 and proc.poll() is None:
        time.sleep(0.2)
    assert done.exists(), proc.communicate()[0] if proc.poll() is not None else "timeout"
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, output
    assert "interrupted" in output
    report = (out / "report.md").read_text()
    assert "| squarm |" in report
    assert "Interrupted: not finished: cooperative" in report  # what did not finish is named
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resumed from finished work: squarm" in again.stdout


def test_report_has_the_slack_columns_and_old_results_still_load():
    """Two columns, descent and consensus, beside the tightness; '—' where a claim has no
    slack; a stored reproduction without the slack fields (written before them) loads."""
    from empirics.report import suite_markdown

    with_slack = Claim("bound claim", "P (quoted)", "m", "holds", bound="6.0", tightness=6.0,
                       slack_descent=2.0, slack_consensus=3.0)
    without = Claim("shape claim", "P (quoted)", "m", "agrees")
    rep = Reproduction("r", "T", "P", "smoke", [with_slack, without])
    text = suite_markdown([rep], {"x": "Boom"}, {"scale": "smoke"})
    header = next(line for line in text.splitlines() if line.startswith("| reproduction"))
    assert header.endswith("| tightness | descent | consensus |")
    assert "| **holds** | 6 | 2 | 3 |" in text
    assert "| **agrees** | — | — | — |" in text
    rows = [line for line in text.splitlines() if line.startswith("| r |")
            or line.startswith("| x |")]
    assert all(line.count(" | ") == header.count(" | ") for line in rows)
    old = rep.to_dict()
    for c in old["claims"]:
        del c["slack_descent"], c["slack_consensus"]
    back = Reproduction.from_dict(old)
    assert back.claims[0].slack_descent is None and back.claims[0].tightness == 6.0
