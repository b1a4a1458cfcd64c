"""`htsweep run SPEC --warm-start DIR`: the finished trials of an earlier sweep start the new study,
with objectives recomputed for the new target, provenance on each, and nothing measured trained again.

Study level (no training): the searcher Tune drives, on a grid the warm-start trials half cover,
never hands Tune a configuration they measured. End to end: a real sweep warm-started from the
session's finished sweep (4 trials) under another target and floor.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sweep_helpers import REPO, cli_env, htsweep_cmd, run_cli, tiny_spec, write_spec

from htsweep.sweeps.retarget import retarget
from htsweep.sweeps.search import CONSTRAINT, make_searcher
from htsweep.sweeps.spec import SpecError, SweepSpec
from htsweep.sweeps.status import load_trials
from htsweep.sweeps.tune_runner import _completed_in_study
from htsweep.sweeps.warm_start import FROM, FROM_TRIAL, WarmTrial, add_warm_trials, load_warm_trials
from htsweep.sweeps.workdir import SweepMeta

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _grid_spec() -> SweepSpec:
    return SweepSpec.from_dict({
        "name": "g", "model": "mlp3", "dataset": "digits", "train": {"steps": 5},
        "search": {"lr": {"type": "grid", "values": [0.01, 0.1, 0.3]},
                   "batch_size": {"type": "grid", "values": [8, 32]}},
        "objective": {"target_alpha": 2.5, "min_test_accuracy": 0.5}, "num_samples": 6, "max_concurrent_trials": 1})


def _warm(spec: SweepSpec, url: str, measured: list[dict]):
    """A study on ``url`` holding ``measured`` as warm-start trials, and the searcher Tune would drive on it."""
    study = optuna.create_study(storage=url, study_name="g", direction="minimize")
    warm = [WarmTrial(source="/runs/earlier", number=i, params=p, attrs={"trained": True},
                      terms={"alpha_agg": 2.4, "alpha_error": 0.1, "test_error": 0.2, "feasible": 1.0,
                             "objective": 0.1, "test_acc": 0.8}) for i, p in enumerate(measured)]
    assert add_warm_trials(study, spec, warm) == len(measured)
    return make_searcher(spec, metric="objective", mode="min", storage_url=url, study_name="g").searcher


GRID = [{"lr": lr, "batch_size": b} for lr in (0.01, 0.1, 0.3) for b in (8, 32)]


def test_searcher_never_proposes_what_a_warm_start_trial_measured(tmp_path):
    measured = [GRID[0], GRID[3], GRID[4]]
    url = f"sqlite:///{tmp_path}/optuna.db"
    searcher = _warm(_grid_spec(), url, measured)
    proposed = []
    for i in range(6):  # the rest of the grid, then repeats of what this sweep trained (the grid is exhausted)
        proposed.append(searcher.suggest(f"t{i}"))
        searcher.on_trial_complete(f"t{i}", {"objective": 1.0, "alpha_error": 1.0, "test_acc": 0.9})
    assert all(p not in measured for p in proposed), proposed
    assert sorted(map(str, proposed[:3])) == sorted(str(p) for p in GRID if p not in measured)
    trials = optuna.load_study(study_name="g", storage=url).get_trials()
    skipped = [t for t in trials if "skipped" in t.user_attrs]
    assert skipped and all(t.state == TrialState.FAIL and t.params in measured for t in skipped)
    assert all(t.user_attrs["skipped"].startswith("already measured: earlier #") for t in skipped)
    assert sum(t.state == TrialState.COMPLETE and FROM not in t.user_attrs for t in trials) == 6


def test_searcher_stops_when_warm_start_trials_cover_the_space(tmp_path):
    searcher = _warm(_grid_spec(), f"sqlite:///{tmp_path}/optuna.db", GRID)
    assert searcher.suggest("t0") == "FINISHED"  # instead of training a measured configuration


@pytest.mark.integration
def test_incompatible_earlier_sweeps_are_one_line_errors(finished):
    workdir, _ = finished
    base = tiny_spec("w")
    wider = {**base, "search": {**base["search"], "weight_decay": {"type": "loguniform", "low": 1e-5, "high": 1e-2}}}
    kind = {**base, "search": {**base["search"], "batch_size": {"type": "int", "low": 8, "high": 32}}}
    steps = tiny_spec("w", train={"steps": 80})
    for spec, needle in ((wider, "search.weight_decay is not searched there"),
                         (kind, "search.batch_size is categorical there and int here"),
                         (steps, "its trials ran with steps=40, this spec sets steps=80")):
        with pytest.raises(SpecError, match=needle) as err:
            load_warm_trials(SweepSpec.from_dict(spec), [workdir])
        assert "\n" not in str(err.value)
    narrow = tiny_spec("w", search={"lr": {"type": "loguniform", "low": 0.6, "high": 0.9},
                                    "batch_size": base["search"]["batch_size"]})
    assert load_warm_trials(SweepSpec.from_dict(narrow), [workdir]) == []  # all left out, none wrongly kept


@pytest.fixture(scope="module")
def warm_sweep(finished, tmp_path_factory):
    """A 2-trial sweep warm-started from the session's finished sweep, toward alpha 2.5 with floor 0.3."""
    earlier, _ = finished
    tmp = tmp_path_factory.mktemp("warm")
    spec = write_spec(tmp / "warm.yaml", tiny_spec("warm", num_samples=2,
                                                   objective={"target_alpha": 2.5, "min_test_accuracy": 0.3}))
    workdir = tmp / "sweep"
    proc = run_cli("run", spec, "--workdir", workdir, "--quiet", "--no-report", "--warm-start", earlier, env=cli_env())
    return earlier, workdir, proc


@pytest.mark.integration
def test_warm_started_study_holds_the_earlier_trials_retargeted_and_trains_only_new_ones(warm_sweep):
    earlier, workdir, proc = warm_sweep
    assert proc.returncode == 0, proc.stdout[-3000:]
    old_meta, _, old_rows = load_trials(earlier)
    meta, spec, rows = load_trials(workdir)
    assert meta.warm_start == [str(Path(earlier).resolve())]
    expected = {t.number: t for t in retarget(old_meta, old_rows, spec.objective)}  # what `best --target-alpha` says
    warm = [r for r in rows if FROM in r.attrs]
    own = [r for r in rows if FROM not in r.attrs]
    assert {r.attrs[FROM_TRIAL] for r in warm} == set(expected) and len(expected) >= 3
    study = optuna.load_study(study_name=meta.study, storage=meta.optuna_storage)
    frozen = {t.number: t for t in study.get_trials()}
    for r in warm:
        want = expected[r.attrs[FROM_TRIAL]]
        assert r.attrs[FROM] == str(Path(earlier).resolve()) and r.params == want.params
        t = frozen[r.number]
        assert t.value == pytest.approx(want.final["alpha_error"], abs=1e-12)  # the floor is a constraint
        acc = want.final["test_acc"]
        assert t.system_attrs[f"constraints:{CONSTRAINT}"] == pytest.approx(0.3 - (acc if math.isfinite(acc) else 0))
        assert r.values[0] == pytest.approx(want.final["objective"], abs=1e-12)  # Tune's / best's ranking value
        assert r.feasible == want.feasible
    # 2 new trials trained here, none of them an earlier configuration; a resume would run none again
    assert len(own) == 2 and all(r.complete and r.tune_trial_id for r in own)
    assert not {tuple(sorted(r.params.items())) for r in own} & {tuple(sorted(t.params.items()))
                                                                 for t in expected.values()}
    assert _completed_in_study(SweepMeta.load(workdir)) == 2


@pytest.mark.integration
def test_status_and_best_say_where_each_trial_came_from(warm_sweep):
    earlier, workdir, _ = warm_sweep
    status = run_cli("status", workdir, env=cli_env())
    words = " ".join(status.stdout.split())
    assert status.returncode == 0, status.stdout
    assert "warm: 2/2 trials (2 complete, 4 warm-started)" in words
    assert f"{Path(earlier).name} #0" in words and "warm start from" in words
    best = run_cli("best", workdir, "--target-alpha", "2.5", env=cli_env())  # reads the earlier sweep's MLflow too
    assert best.returncode in (0, 1) and "re-targeted" in best.stdout and "Traceback" not in best.stdout
    _, _, rows = load_trials(workdir)
    assert best.stdout.count("\n") > len(rows)  # one table row per finished trial, warm-started ones included


@pytest.mark.integration
@pytest.mark.slow
def test_report_lists_the_warm_start_trials_by_sweep(warm_sweep):
    earlier, workdir, _ = warm_sweep
    report = run_cli("report", workdir, env=cli_env())
    assert report.returncode == 0, report.stdout[-2000:]
    page = (workdir / "report" / "index.html").read_text()
    assert "Warm start: 4 finished trial(s) of earlier sweeps" in page and str(Path(earlier).resolve()) in page
    assert page.count(f"{Path(earlier).name} #") == 4  # the trial table's provenance column


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_resume_after_a_driver_kill_keeps_the_warm_start(finished, tmp_path):
    """SIGKILL of the driver mid-sweep, then `htsweep resume`: the earlier trials stay in the study
    once each, are not counted as this sweep's, and none of them is trained."""
    earlier, _ = finished
    spec = write_spec(tmp_path / "wk.yaml", tiny_spec("wk", objective={"target_alpha": 2.5}))
    workdir = tmp_path / "sweep"
    env = cli_env()
    run = subprocess.Popen(htsweep_cmd("run", spec, "--workdir", workdir, "--quiet", "--no-report", "--warm-start",
                                       earlier), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    try:
        deadline = time.monotonic() + 600
        while not _own(workdir, TrialState.COMPLETE):
            assert run.poll() is None, run.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "no completed trial of its own within 600 s"
            time.sleep(0.2)
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        resumed = run_cli("resume", workdir, "--quiet", "--no-report", env=env)
    finally:
        if run.poll() is None:
            run.kill()
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert "added to the study" not in resumed.stdout  # nothing is added twice
    _, _, old_rows = load_trials(earlier)
    meta, _, rows = load_trials(workdir)
    warm = [r for r in rows if FROM in r.attrs]
    assert sorted(r.attrs[FROM_TRIAL] for r in warm) == sorted(r.number for r in old_rows if r.complete)
    assert all(r.state == "COMPLETE" for r in warm)
    assert _completed_in_study(meta) == 4 and len(_own(workdir, TrialState.COMPLETE)) == 4
    measured = {tuple(sorted(r.params.items())) for r in warm}
    assert not measured & {tuple(sorted(t.params.items())) for t in _own(workdir, TrialState.COMPLETE)}


def _own(workdir: Path, state: TrialState) -> list:
    """This sweep's own Optuna trials in ``state`` (not the warm-start ones)."""
    try:
        meta = SweepMeta.load(workdir)
        study = optuna.load_study(study_name=meta.study, storage=meta.optuna_storage)
    except Exception:  # noqa: BLE001 - the driver is still creating the sweep
        return []
    return [t for t in study.get_trials(deepcopy=False, states=(state,)) if FROM not in t.user_attrs]
