"""`htsweep best --target-alpha`: on the session's finished sweep, the recomputed objective of every
trial equals what a fresh sweep's objective computes on the same trial's final Tune result, and with
the sweep's own objective it reproduces the values Optuna recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sweep_helpers import cli_env, run_cli

from htsweep.sweeps.objective import evaluate
from htsweep.sweeps.retarget import best_retargeted, retarget, retarget_objective
from htsweep.sweeps.status import best_trial, load_trials

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def _final_tune_results(workdir: Path, rows) -> dict[int, dict]:
    """Each trial's last Ray Tune result (result.json in its trial directory): what the sweep saw."""
    out = {}
    for r in rows:
        (path,) = [p for p in (workdir / "tune").glob(f"*{r.tune_trial_id}*/result.json")]
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        out[r.number] = json.loads(lines[-1])
    return out


def test_own_objective_reproduces_what_optuna_recorded(finished):
    workdir, _ = finished
    meta, spec, rows = load_trials(workdir)
    got = {t.number: t for t in retarget(meta, rows, spec.objective)}
    assert set(got) == {r.number for r in rows if r.complete}
    for r in rows:
        assert got[r.number].final["objective"] == pytest.approx(r.values[0], rel=1e-9, abs=1e-12)
        assert got[r.number].feasible == r.feasible
    mine, theirs = best_retargeted(list(got.values())), best_trial(rows)
    assert (mine and mine.number) == (theirs and theirs.number)


@pytest.mark.parametrize(("target", "floor", "aggregate"), [(2.5, 0.3, None), (3.0, None, "median")])
def test_new_target_equals_a_fresh_sweeps_objective_on_the_same_results(finished, target, floor, aggregate):
    workdir, _ = finished
    meta, spec, rows = load_trials(workdir)
    new = retarget_objective(spec.objective, target_alpha=target, min_test_accuracy=floor, aggregate=aggregate)
    results = _final_tune_results(workdir, rows)
    trials = retarget(meta, rows, new)
    for t in trials:
        fresh = evaluate(results[t.number], new)  # the trainable's objective on the same final report
        for key in ("alpha_error", "feasible", "objective"):
            assert t.final[key] == pytest.approx(fresh[key], rel=1e-9, abs=1e-12), key
        # the best monitored step is at least as good as the final report
        assert t.best_step_terms["objective"] <= t.final["objective"] + 1e-12
    feasible = [t for t in trials if t.feasible]
    want = min(feasible, key=lambda t: (abs(t.final["alpha_agg"] - target), -t.final["test_acc"])) if feasible else None
    best = best_retargeted(trials)
    assert (best is None and want is None) or best.number == want.number


def test_best_cli_retargets_and_refuses_bad_input(finished):
    workdir, _ = finished
    proc = run_cli("best", workdir, "--target-alpha", "2.5", "--min-test-accuracy", "0.2", env=cli_env())
    words = " ".join(proc.stdout.split())
    assert proc.returncode in (0, 1), proc.stdout[-2000:]
    assert "re-targeted: alpha (mean) -> 2.5, test acc >= 0.2" in words and "nothing re-trained" in words
    assert ("best: trial #" in words) == (proc.returncode == 0)
    bad = run_cli("best", workdir, "--aggregate", "mode", env=cli_env())
    assert bad.returncode == 2 and "aggregate" in bad.stdout and "Traceback" not in bad.stdout
