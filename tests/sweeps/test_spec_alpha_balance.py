"""``train.alpha_balance`` in sweep specs: validation naming the field, Optuna-searchable settings, and
the per-layer lr factors reaching MLflow as ``lr_factor/<layer>`` over steps."""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest
import yaml

from htsweep.sweeps.spec import AlphaBalanceSettings, SpecError, SweepSpec
from htsweep.sweeps.trainable import merge_config, train_config_dict
from htsweep.trainers.alpha_balance import METHODS, METRICS, AlphaBalanceConfig

BASE = {"name": "t", "model": "mlp3", "dataset": "digits", "train": {"steps": 10}}


def _spec(train=None, search=None):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    data["train"].update(train or {})
    if search:
        data["search"] = search
    return data


def test_valid_spec_keeps_train_a_plain_dict_and_builds_a_train_config():
    from htsweep.sweeps.tune_runner import check_train_config

    spec = SweepSpec.from_dict(_spec(
        train={"alpha_balance": {"method": "proportional", "target": 2, "max_factor": 3}},
        search={"alpha_balance.gain": {"type": "loguniform", "low": 0.1, "high": 10},
                "alpha_balance.metric": {"type": "choice", "values": ["alpha_hill", "alpha"]}}))
    assert spec.train == {"steps": 10, "alpha_balance": {"method": "proportional", "target": 2.0, "max_factor": 3.0}}
    check_train_config(spec)
    # a trial's sampled settings land inside the fixed ones
    config = merge_config(train_config_dict(spec), {"alpha_balance.gain": 2.5, "alpha_balance.metric": "alpha"})
    assert config["alpha_balance"] == {"method": "proportional", "target": 2.0, "max_factor": 3.0, "gain": 2.5,
                                       "metric": "alpha"}
    assert SweepSpec.from_dict(spec.model_dump(mode="json")) == spec  # round trip


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (_spec(train={"alpha_balance": {"min_factor": 1.5}}),
         r"train\.alpha_balance\.min_factor: Input should be less than or equal to 1 \(got 1\.5\)"),
        (_spec(train={"alpha_balance": {"max_factor": 0.5}}),
         r"train\.alpha_balance\.max_factor: Input should be greater than or equal to 1 \(got 0\.5\)"),
        (_spec(train={"alpha_balance": {"method": "tb"}}),
         r"train\.alpha_balance\.method: Input should be 'tempbalance', 'tempbalance_rank' or 'proportional'"),
        (_spec(train={"alpha_balance": {"metric": "ks"}}), r"train\.alpha_balance\.metric: Input should be"),
        (_spec(train={"alpha_balance": {"target": "two"}}), r"train\.alpha_balance\.target: Input should be a valid"),
        (_spec(train={"alpha_balance": {"gain": 0}}), r"train\.alpha_balance\.gain: Input should be greater than 0"),
        (_spec(train={"alpha_balance": {"taget": 2}}), r"train\.alpha_balance\.taget: unknown field"),
        (_spec(train={"alpha_balance": [2.0]}), r"train\.alpha_balance: Input should be a valid dictionary"),
        (_spec(search={"alpha_balance.max_factor": {"type": "uniform", "low": 0.5, "high": 3}}),
         r"search: alpha_balance\.max_factor: value 0\.5 is not a valid setting: Input should be greater than or "
         r"equal to 1"),
        (_spec(search={"alpha_balance.method": {"type": "choice", "values": ["tempbalance", "pid"]}}),
         r"search: alpha_balance\.method: value 'pid' is not a valid setting"),
        (_spec(search={"alpha_balance.taget": {"type": "uniform", "low": 1, "high": 3}}),
         r"search: cannot search 'alpha_balance\.taget'; alpha_balance settings: target, method"),
        (_spec(search={"alpha_balance": {"type": "choice", "values": [1]}}),
         r"search alpha_balance\.<key> instead of the whole alpha_balance mapping"),
        (_spec(train={"alpha_balance": {"gain": 1}}, search={"alpha_balance.gain": {"type": "uniform", "low": 1,
                                                                                     "high": 2}}),
         r"search\.alpha_balance\.gain is also fixed under train"),
    ],
)
def test_errors_name_the_field(data, match):
    with pytest.raises(SpecError, match=match):
        SweepSpec.from_dict(data)


def test_spec_schema_matches_the_trainer_settings():
    # The spec does not import torch, so it mirrors AlphaBalanceConfig; keep the two in step.
    hints = typing.get_type_hints(AlphaBalanceSettings, include_extras=True)
    assert list(hints) == [f.name for f in dataclasses.fields(AlphaBalanceConfig)]
    assert typing.get_args(hints["method"]) == METHODS and typing.get_args(hints["metric"]) == METRICS
    from pydantic import TypeAdapter, ValidationError

    adapter = TypeAdapter(AlphaBalanceSettings)
    probes = [-1.0, 0.0, 1e-9, 0.5, 1.0, 1.0 + 1e-9, 2.0, 50.0, math.inf, math.nan]
    for name in ("target", "min_factor", "max_factor", "gain"):
        for value in probes:
            try:
                adapter.validate_python({name: value})
                spec_ok = True
            except ValidationError:
                spec_ok = False
            try:
                AlphaBalanceConfig(**{name: value})
                trainer_ok = True
            except ValueError:
                trainer_ok = False
            assert spec_ok == trainer_ok, (name, value)


def test_lr_factors_reach_mlflow_over_steps(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    from htsweep.services.tracking import TrackingConfig, init_store
    from htsweep.sweeps.trial_logger import MlflowTrialLogger
    from htsweep.trainers.monitor import SpectralMonitor
    from htsweep.trainers.train import TrainConfig, Trainer

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("HTSWEEP_TRACKING_URI", raising=False)
    spec = SweepSpec.from_dict({
        "name": "ab", "model": "mlp3", "dataset": "digits",
        "train": {"steps": 30, "batch_size": 32, "lr": 0.05, "model_kwargs": {"width": 48}, "eval_samples": 128,
                  "eval_at_start": True, "alpha_balance": {"exclude_first": False, "min_factor": 0.5}},
        "search": {"alpha_balance.max_factor": {"type": "uniform", "low": 1.5, "high": 3.0}},
        "monitor": {"eval_every": 5, "spectral_every": 10}})
    trial = {"alpha_balance.max_factor": 2.0}
    tracking = TrackingConfig.for_workdir(tmp_path, experiment="ab")
    init_store(tracking.tracking_uri)
    logger = MlflowTrialLogger(tracking, trial_id="t0", params=trial)
    config = TrainConfig.from_dict(merge_config(train_config_dict(spec), trial))
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # idle OpenMP threads spin on a loaded 2-core machine
    try:
        trainer = Trainer(config, [SpectralMonitor(), logger])
        trainer.fit()
    finally:
        torch.set_num_threads(before)

    client = mlflow.MlflowClient(tracking.tracking_uri)
    assert {"fc1", "fc2", "fc3"} <= set(trainer.lr_factors)
    for layer in trainer.lr_factors:  # every parameter group, balanced or not
        history = client.get_metric_history(logger.run_id, f"lr_factor/{layer}")
        # reported with every metrics row from the first update on: the factor in effect at that step
        assert sorted(m.step for m in history) == [0, 5, 10, 15, 20, 25, 30], layer
        assert all(0.5 <= m.value <= 2.0 for m in history)
    extremes = {client.get_metric_history(logger.run_id, f"lr_factor/{layer}")[0].value for layer in ("fc1", "fc3")}
    assert {0.5, 2.0} & extremes  # TempBalance gives the extreme layers the bounds
    params = client.get_run(logger.run_id).data.params
    assert params["train.alpha_balance.max_factor"] == "2.0" and params["train.alpha_balance.method"] == "tempbalance"
