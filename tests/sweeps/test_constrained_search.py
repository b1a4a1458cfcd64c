"""The accuracy floor reaches Optuna as a constraint (real sqlite study, the searcher Tune drives),
Optuna gets |alpha - target| while the penalized objective stays what Tune and `best` rank by, and
a searcher restored the way `Tuner.restore` does keeps the floor and the sampler."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.study._constrained_optimization import _is_constrained_optimization
from optuna.trial import TrialState

from htsweep.sweeps.objective import evaluate
from htsweep.sweeps.search import CONSTRAINT, accuracy_constraint, make_searcher
from htsweep.sweeps.spec import SweepSpec
from htsweep.sweeps.status import load_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)
FLOOR = 0.8


def _spec(sampler: str, **objective) -> SweepSpec:
    return SweepSpec.from_dict({
        "name": "c", "model": "mlp3", "dataset": "digits", "train": {"steps": 5},
        "search": {"lr": {"type": "loguniform", "low": 1e-3, "high": 1.0},
                   "batch_size": {"type": "choice", "values": [16, 64]}},
        "objective": {"target_alpha": 2.5, "min_test_accuracy": FLOOR, **objective},
        "sampler": {"type": sampler, "n_startup_trials": 2}, "num_samples": 12, "max_concurrent_trials": 1})


def _result(config: dict) -> dict:
    """A stand-in training outcome: alpha falls with lr, accuracy collapses at large lr."""
    lr = config["lr"]
    metrics = {"alpha_mean": 4.0 + 0.4 * math.log10(lr) * 2, "test_acc": 0.95 - 0.6 * (lr > 0.2)}
    return {**metrics, "alpha_agg": metrics["alpha_mean"], **evaluate(metrics, _spec("tpe").objective),
            "training_iteration": 1}


def _drive(searcher, ids) -> None:
    for tid in ids:
        config = searcher.suggest(tid)
        searcher.on_trial_complete(tid, _result(config))


@pytest.mark.parametrize("sampler", ["tpe", "gp"])
def test_floor_is_an_optuna_constraint_and_tune_keeps_the_penalized_objective(tmp_path, sampler):
    spec = _spec(sampler)
    url = f"sqlite:///{tmp_path}/optuna.db"
    searcher = make_searcher(spec, metric="objective", mode="min", storage_url=url, study_name="c").searcher
    _drive(searcher, [f"t{i}" for i in range(4)])
    trials = optuna.load_study(study_name="c", storage=url).get_trials()
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    assert _is_constrained_optimization(trials)
    for t in trials:
        want = _result(t.params)
        assert t.constraints == {CONSTRAINT: pytest.approx(FLOOR - want["test_acc"])}
        assert t.value == pytest.approx(want["alpha_error"])  # no penalty cliff for the sampler to model
        assert t.user_attrs["objective"] == pytest.approx(want["objective"])


def test_status_reads_the_penalized_objective_of_a_constrained_study(tmp_path):
    from htsweep.sweeps.workdir import SPEC_FILE, SweepMeta

    spec = _spec("tpe")
    workdir = tmp_path / "sweep"
    workdir.mkdir()
    spec.to_yaml(workdir / SPEC_FILE)
    meta = SweepMeta(name="c", workdir=str(workdir), tracking_uri=f"sqlite:///{workdir}/mlflow.db",
                     optuna_storage=f"sqlite:///{workdir}/optuna.db", storage_path=str(workdir), experiment="c")
    meta.save()
    searcher = make_searcher(spec, metric="objective", mode="min", storage_url=meta.optuna_storage,
                             study_name=meta.study).searcher
    _drive(searcher, ["a", "b", "c"])
    _, _, rows = load_trials(workdir)
    for r in rows:
        assert r.values == (pytest.approx(_result(r.params)["objective"]),)


def test_restored_searcher_keeps_the_floor_and_the_sampler_state(tmp_path):
    """What Tuner.restore does: a fresh searcher restored from the one Tune saved."""
    spec = _spec("gp")
    url = f"sqlite:///{tmp_path}/optuna.db"
    first = make_searcher(spec, metric="objective", mode="min", storage_url=url, study_name="c").searcher
    _drive(first, [f"t{i}" for i in range(3)])
    first.save(str(tmp_path / "searcher.pkl"))
    rng = first._sampler._rng.rng.get_state()[1].copy()

    again = make_searcher(_spec("tpe", min_test_accuracy=None), metric="objective", mode="min",
                          storage_url=url, study_name="c").searcher
    again.restore(str(tmp_path / "searcher.pkl"))
    assert isinstance(again._sampler, optuna.samplers.GPSampler) and again._min_test_accuracy == FLOOR
    assert (again._sampler._rng.rng.get_state()[1] == rng).all()  # the sampler's random stream goes on
    _drive(again, ["t3", "t4"])
    trials = optuna.load_study(study_name="c", storage=url).get_trials()
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 5 and all(CONSTRAINT in t.constraints for t in done)


def test_accuracy_constraint_values():
    assert accuracy_constraint({"test_acc": 0.9}, 0.8) == pytest.approx(-0.1)
    assert accuracy_constraint({"test_acc": float("nan")}, 0.8) == 0.8
    assert accuracy_constraint({"test_acc": 0.5}, None) is None
