"""Objective terms, the search space as Optuna distributions, samplers, and the restart-safe searcher
(on a real sqlite Optuna study)."""

from __future__ import annotations

import math
import pickle
import typing

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from htsweep.analysis.metric_names import ALPHA_AGGREGATE_KEYS, MODEL_AGGREGATE_KEYS
from htsweep.sweeps.objective import alpha_aggregate, evaluate, metric_and_mode
from htsweep.sweeps.search import (
    AskTellGridSampler,
    ResumableOptunaSearch,
    fail_stale_trials,
    make_sampler,
    make_scheduler,
    search_space,
)
from htsweep.sweeps.spec import ObjectiveSpec, SweepSpec
from htsweep.sweeps.status import TrialRow, best_trial, pareto_front

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _spec(**kw):
    return SweepSpec.from_dict({"name": "s", "model": "mlp3", "dataset": "digits", "train": {"steps": 5}, **kw})


# ----------------------------------------------------------------------------------- objective
def test_constrained_objective_feasible_and_infeasible():
    spec = ObjectiveSpec(target_alpha=2.0, min_test_accuracy=0.9, penalty=10.0)
    ok = evaluate({"alpha_mean": 2.5, "test_acc": 0.95}, spec)
    # |2.5 - 2| = 0.5, feasible: no penalty.
    np.testing.assert_allclose([ok["objective"], ok["alpha_error"], ok["test_error"], ok["feasible"]],
                               [0.5, 0.5, 0.05, 1.0], rtol=1e-12, atol=1e-12)
    bad = evaluate({"alpha_mean": 2.1, "test_acc": 0.7}, spec)
    # 0.1 + 10 * (1 + (0.9 - 0.7)) = 12.1: every infeasible trial ranks behind every feasible one.
    np.testing.assert_allclose(bad["objective"], 12.1, rtol=1e-12)
    assert bad["feasible"] == 0.0


def test_missing_alpha_is_penalized_but_finite():
    out = evaluate({"test_acc": 0.9}, ObjectiveSpec(penalty=7.0))
    assert math.isnan(out["alpha_agg"]) and out["objective"] == 7.0


@pytest.mark.parametrize(("aggregate", "layers", "expected"), [
    ("mean", None, 3.0), ("median", None, 2.5), ("last", None, 4.0), ("layers", ["fc1", "fc3"], 2.0),
])
def test_alpha_aggregates(aggregate, layers, expected):
    metrics = {"alpha_mean": 3.0, "alpha_median": 2.5, "alpha_last": 4.0,
               "alpha/fc1": 1.5, "alpha/fc2": 9.0, "alpha/fc3": 2.5}
    spec = ObjectiveSpec(aggregate=aggregate, layers=layers)
    np.testing.assert_allclose(alpha_aggregate(metrics, spec), expected, rtol=1e-12)


@pytest.mark.parametrize(("aggregate", "layers", "expected"), [
    ("mean", None, 2.1), ("median", None, 2.2), ("last", None, 2.3), ("layers", ["fc1", "fc2"], 2.0),
])
def test_objective_metric_alpha_farms_reads_the_farms_aggregates(aggregate, layers, expected):
    metrics = {"alpha_mean": 9.0, "alpha_median": 9.0, "alpha_last": 9.0, "alpha/fc1": 9.0, "alpha/fc2": 9.0,
               "alpha_farms_mean": 2.1, "alpha_farms_median": 2.2, "alpha_farms_last": 2.3,
               "alpha_farms/fc1": 1.5, "alpha_farms/fc2": 2.5}
    spec = ObjectiveSpec(metric="alpha_farms", aggregate=aggregate, layers=layers)
    np.testing.assert_allclose(alpha_aggregate(metrics, spec), expected, rtol=1e-12)
    # a sweep whose trials never computed FARMS: the alpha is unknown and penalized, not taken from alpha
    assert math.isnan(alpha_aggregate({"alpha_mean": 2.0}, spec))
    with pytest.raises(ValueError, match="metric"):
        ObjectiveSpec(metric="alpha_hill")


def test_every_objective_aggregate_but_layers_reads_a_model_aggregate():
    options = typing.get_args(typing.get_type_hints(ObjectiveSpec)["aggregate"])
    assert set(ALPHA_AGGREGATE_KEYS) == set(options) - {"layers"}
    assert set(ALPHA_AGGREGATE_KEYS.values()) <= set(MODEL_AGGREGATE_KEYS)


def test_metric_and_mode():
    assert metric_and_mode(ObjectiveSpec()) == ("objective", "min")
    assert metric_and_mode(ObjectiveSpec(multi_objective=True)) == (["alpha_error", "test_error"], ["min", "min"])


# ----------------------------------------------------------------------------------- search space
def test_search_space_is_optuna_distributions():
    spec = _spec(search={
        "lr": {"type": "loguniform", "low": 1e-3, "high": 1.0},
        "dropout": {"type": "uniform", "low": 0.0, "high": 0.5},
        "batch_size": {"type": "choice", "values": [8, "full"]},
        "model_kwargs.width": {"type": "int", "low": 16, "high": 256, "log": True},
    })
    space = search_space(spec)
    assert space["lr"] == FloatDistribution(1e-3, 1.0, log=True)
    assert space["dropout"] == FloatDistribution(0.0, 0.5)
    assert space["batch_size"] == CategoricalDistribution((8, "full"))
    assert space["model_kwargs.width"] == IntDistribution(16, 256, log=True)


@pytest.mark.parametrize(("sampler", "cls"), [
    ({}, optuna.samplers.TPESampler), ({"type": "random"}, optuna.samplers.RandomSampler),
    ({"type": "qmc"}, optuna.samplers.QMCSampler), ({"type": "nsga2"}, optuna.samplers.NSGAIISampler),
    ({"type": "gp"}, optuna.samplers.GPSampler), ({"type": "tpe"}, optuna.samplers.TPESampler),
])
def test_make_sampler(sampler, cls):
    spec = _spec(search={"lr": {"type": "uniform", "low": 0.1, "high": 0.2}}, sampler=sampler)
    assert isinstance(make_sampler(spec), cls)


def test_multi_objective_defaults_to_nsga2_and_grid_to_grid():
    spec = _spec(search={"lr": {"type": "uniform", "low": 0.1, "high": 0.2}}, objective={"multi_objective": True})
    assert isinstance(make_sampler(spec), optuna.samplers.NSGAIISampler)
    grid = _spec(search={"batch_size": {"type": "grid", "values": [8, 16, 32]}})
    assert isinstance(make_sampler(grid), AskTellGridSampler)


def test_grid_sampler_visits_every_point_in_ask_tell(tmp_path):
    spec = _spec(search={"batch_size": {"type": "grid", "values": [8, 16, 32]}})
    study = optuna.create_study(sampler=make_sampler(spec), storage=f"sqlite:///{tmp_path}/g.db")
    seen = []
    for _ in range(3):
        t = study.ask(search_space(spec))
        seen.append(t.params["batch_size"])
        study.tell(t, 1.0)  # the stock GridSampler raises here (study.stop outside optimize)
    assert sorted(seen) == [8, 16, 32]


def test_asha_only_when_asked():
    assert make_scheduler(_spec()) is None
    from ray.tune.schedulers import ASHAScheduler

    assert isinstance(make_scheduler(_spec(scheduler={"type": "asha", "grace_period": 2})), ASHAScheduler)


# ----------------------------------------------------------------------------------- searcher
def _searcher(tmp_path, name="s"):
    spec = _spec(search={"lr": {"type": "loguniform", "low": 1e-3, "high": 1.0}})
    return ResumableOptunaSearch(space=search_space(spec), metric="objective", mode="min",
                                 sampler=make_sampler(spec), study_name=name,
                                 storage=optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/o.db"), seed=0)


def test_searcher_records_user_attrs(tmp_path):
    s = _searcher(tmp_path)
    cfg = s.suggest("t1")
    assert 1e-3 <= cfg["lr"] <= 1.0
    s.on_trial_result("t1", {"objective": 0.7, "training_iteration": 1})
    s.on_trial_complete("t1", {"objective": 0.3, "alpha_agg": 2.3, "test_acc": 0.9, "phase": "bulk_decay",
                               "mlflow_run_id": "abc", "training_iteration": 2})
    (t,) = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/o.db").get_trials()
    assert t.state == TrialState.COMPLETE and t.value == 0.3
    assert t.intermediate_values == {1: 0.7}
    assert t.user_attrs == {"tune_trial_id": "t1", "alpha_agg": 2.3, "test_acc": 0.9, "phase": "bulk_decay",
                            "mlflow_run_id": "abc", "objective": 0.3}


def test_searcher_tolerates_trials_the_study_already_finished(tmp_path):
    # After a hard kill Tune re-runs a trial whose Optuna trial is already COMPLETE (STACK_NOTES):
    # the stock OptunaSearch raises UpdateFinishedTrialError from on_trial_result and fails the sweep.
    s = _searcher(tmp_path)
    s.suggest("t1")
    state = pickle.dumps(s.__dict__ | {"_ot_study": s._ot_study})  # what Tune saved before the kill
    s.on_trial_complete("t1", {"objective": 0.3, "training_iteration": 2})
    restored = _searcher(tmp_path)
    restored.__dict__.update(pickle.loads(state))
    restored.on_trial_result("t1", {"objective": 0.5, "training_iteration": 1})  # no exception
    restored.on_trial_complete("t1", {"objective": 0.5, "training_iteration": 2})  # no exception
    (t,) = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/o.db").get_trials()
    assert t.state == TrialState.COMPLETE and t.value == 0.3  # the first value stands


def test_fail_stale_trials(tmp_path):
    s = _searcher(tmp_path)
    s.suggest("t1")
    s.suggest("t2")
    s.on_trial_complete("t1", {"objective": 0.3, "training_iteration": 1})
    assert fail_stale_trials(f"sqlite:///{tmp_path}/o.db", "s") == 1
    states = [t.state for t in optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/o.db").trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL]
    assert fail_stale_trials(f"sqlite:///{tmp_path}/o.db", "missing-study") == 0


def test_searcher_pickles_for_tune_restore(tmp_path):
    s = _searcher(tmp_path)
    s.suggest("t1")
    path = tmp_path / "searcher.pkl"
    s.save(str(path))
    again = _searcher(tmp_path)
    again.restore(str(path))
    assert isinstance(again, ResumableOptunaSearch) and "t1" in again._ot_trials


# ----------------------------------------------------------------------------------- best / pareto
def _row(n, alpha, acc, feasible=True, state="COMPLETE", **attrs):
    return TrialRow(number=n, state=state, params={}, alpha=alpha, alpha_error=abs(alpha - 2.0), test_acc=acc,
                    feasible=feasible, values=(abs(alpha - 2.0),), attrs=attrs)


def test_best_is_closest_feasible_completed():
    rows = [_row(0, 2.05, 0.5, feasible=False), _row(1, 2.4, 0.95), _row(2, 1.7, 0.96),
            _row(3, 2.01, 0.99, state="RUNNING"), _row(4, math.nan, 0.99)]
    assert best_trial(rows).number == 2  # |1.7-2| = 0.3 < 0.4; #0 infeasible, #3 running, #4 no alpha
    assert best_trial([_row(0, 2.05, 0.5, feasible=False)]) is None


def test_best_skips_trials_stopped_before_their_last_step():
    rows = [_row(0, 2.01, 0.95, trained=False), _row(1, 2.3, 0.94, trained=True), _row(2, 2.6, 0.97)]
    assert best_trial(rows).number == 1  # #0 was stopped early by ASHA; #2 predates the attribute
    assert [r.fully_trained for r in rows] == [False, True, True]


def test_pareto_front():
    rows = [_row(0, 2.1, 0.80), _row(1, 2.5, 0.95), _row(2, 2.6, 0.90), _row(3, 2.0, 0.70)]
    assert [r.number for r in pareto_front(rows)] == [3, 0, 1]  # #2 is dominated by #1


def test_diverged_trial_result_is_worst_and_infeasible():
    from htsweep.sweeps.trainable import diverged_result

    class _T:
        step = 17

    out = diverged_result(_T(), ObjectiveSpec(penalty=10.0), "non-finite training loss nan at step 17")
    assert out["objective"] == 20.0 and out["feasible"] == 0.0 and out["diverged"] == 1.0 and out["step"] == 17


def test_merge_config_nested_keys():
    from htsweep.sweeps.trainable import merge_config

    base = {"model": "mlp3", "model_kwargs": {"width": 64, "depth": 3}, "lr": 0.1}
    out = merge_config(base, {"model_kwargs.width": 128, "lr": 0.5})
    assert out == {"model": "mlp3", "model_kwargs": {"width": 128, "depth": 3}, "lr": 0.5}
    assert base["model_kwargs"]["width"] == 64  # the shared base is not mutated
