"""Sweep specs: every example validates, and bad specs fail with messages naming field and problem."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from htsweep.sweeps.spec import TRAIN_FIELDS, Grid, SpecError, SweepSpec

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "sweeps" / "examples").glob("*.yaml"))
BASE = {"name": "t", "model": "mlp3", "dataset": "digits", "train": {"steps": 10}}


def _with(**changes):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for key, value in changes.items():
        data[key] = value
    return data


def test_examples_exist():
    names = {p.stem for p in EXAMPLES}
    assert {"quickstart", "batch_size_phases", "batch_size_phases_mnist5k", "lr_spike_to_heavy_tail",
            "weight_decay_rank", "target_alpha"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_specs_validate(path):
    spec = SweepSpec.from_yaml(path)
    assert spec.name == path.stem
    assert spec.search, "every example searches something"
    assert spec.objective.target_alpha > 0


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_specs_build_a_train_config(path):
    # The trainer accepts every example's settings (first value of each domain).
    from htsweep.sweeps.tune_runner import check_train_config

    check_train_config(SweepSpec.from_yaml(path))


def test_a_data_kwargs_typo_fails_the_spec_before_any_trial():
    from htsweep.sweeps.tune_runner import check_train_config

    spec = SweepSpec.from_yaml(EXAMPLES[0])
    bad = spec.with_overrides(train={**spec.train, "data_kwargs": {**spec.train.get("data_kwargs", {}), "nosie": 0.1}})
    with pytest.raises(SpecError, match=rf"^spec '{spec.name}': the trainer rejects the settings: dataset "
                                        rf"'{spec.dataset}' has no option 'nosie'; its data_kwargs are: "):
        check_train_config(bad)


def test_train_fields_match_trainconfig():
    # Contract: a spec may set every TrainConfig field except the checkpoint ones Tune owns.
    from htsweep.trainers.train import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"model", "dataset", "task", "checkpoint_dir",
                                                                    "checkpoint_every"}
    assert set(TRAIN_FIELDS) == fields


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (_with(search={"lr": {"type": "loguniform", "low": -1, "high": 1}}),
         r"search\.lr\.loguniform\.low: must be > 0 for a log scale \(got -1\.0\)"),
        (_with(search={"lr": {"type": "logu", "low": 1, "high": 2}}),
         r"search\.lr: unknown domain type 'logu'"),
        (_with(search={"lr": {"low": 1, "high": 2}}), r"search\.lr: a search domain needs 'type'"),
        (_with(search={"lr": {"type": "uniform", "low": 2, "high": 1}}),
         r"search\.lr\.uniform: .*low \(2\.0\) must be smaller than high \(1\.0\)"),
        (_with(search={"lrr": {"type": "choice", "values": [1, 2]}}), r"search: .*cannot search 'lrr'"),
        (_with(search={"batch_size": {"type": "choice", "values": []}}),
         r"search\.batch_size\.choice\.values: List should have at least 1 item"),
        (_with(train={"steps": 10, "lrr": 0.1}), r"train: .*unknown training setting 'lrr'"),
        (_with(train={"steps": 10, "model": "x"}), r"'model' is set at the top level"),
        (_with(num_samples=0), r"num_samples: Input should be greater than or equal to 1 \(got 0\)"),
        (_with(bogus=1), r"bogus: unknown field"),
        ({"name": "t", "dataset": "digits"}, r"model: required field is missing"),
        (_with(objective={"target_alpha": "two"}), r"objective\.target_alpha: Input should be a valid number"),
        (_with(objective={"min_test_accuracy": 1.5}),
         r"objective\.min_test_accuracy: Input should be less than or equal to 1"),
        (_with(objective={"aggregate": "layers"}), r"aggregate 'layers' needs a non-empty 'layers' list"),
        (_with(objective={"multi_objective": True, "min_test_accuracy": 0.9}),
         r"use either multi_objective .* or min_test_accuracy"),
        (_with(objective={"multi_objective": True}, scheduler={"type": "asha"}),
         r"asha cannot stop trials of a multi_objective sweep"),
        (_with(search={"lr": {"type": "grid", "values": [0.1, 0.2]},
                       "dropout": {"type": "uniform", "low": 0, "high": 0.5}}),
         r"grid domains \(lr\) cannot be mixed with sampled ones \(dropout\)"),
        (_with(search={"lr": {"type": "choice", "values": [0.1, 0.1]}}), r"values must be distinct"),
        (_with(train={"steps": 10, "lr": 0.1}, search={"lr": {"type": "choice", "values": [0.1, 0.2]}}),
         r"search\.lr is also fixed under train"),
        (_with(name="has space"), r"name: .*must start with a letter or digit"),
        (_with(resources={"cpu": 0}), r"resources\.cpu: Input should be greater than 0"),
        (_with(sampler={"type": "cmaes"}), r"sampler\.type: Input should be"),
        ([1, 2], r"a sweep spec must be a YAML mapping"),
    ],
)
def test_bad_specs_name_field_and_problem(data, match):
    with pytest.raises(SpecError, match=match):
        SweepSpec.from_dict(data)


def test_all_problems_reported_at_once():
    with pytest.raises(SpecError, match=r"3 problems") as info:
        SweepSpec.from_dict(_with(num_samples=0, bogus=1, max_concurrent_trials=0))
    msg = str(info.value)
    assert "num_samples" in msg and "bogus" in msg and "max_concurrent_trials" in msg


def test_bad_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nmodel: mlp3\nsearch:\n  lr: {type: choice, values: [1, 2\n")
    with pytest.raises(SpecError, match=r"broken\.yaml: not valid YAML at line \d+, column \d+"):
        SweepSpec.from_yaml(path)


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match=r"no such spec file"):
        SweepSpec.from_yaml(tmp_path / "nope.yaml")


def test_error_from_file_names_the_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(_with(num_samples=-3)))
    with pytest.raises(SpecError, match=r"s\.yaml: 1 problem in the sweep spec:\n  num_samples"):
        SweepSpec.from_yaml(path)


def test_yaml_exponent_strings_become_floats():
    spec = SweepSpec.from_dict(_with(search={"lr": {"type": "choice", "values": ["1e-3", 0.1, "full"]}}))
    assert spec.search["lr"].values == [0.001, 0.1, "full"]


def test_defaults_and_derived_fields():
    spec = SweepSpec.from_dict(_with(search={"batch_size": {"type": "grid", "values": [8, 32, 128]}}))
    assert isinstance(spec.search["batch_size"], Grid)
    assert spec.sampler_type == "grid" and spec.grid_size == 3
    assert SweepSpec.from_dict(_with(objective={"multi_objective": True})).sampler_type == "nsga2"
    assert SweepSpec.from_dict(BASE).sampler_type == "tpe"


def test_concurrency_capped_by_samples():
    assert SweepSpec.from_dict(_with(num_samples=2, max_concurrent_trials=8)).max_concurrent_trials == 2


def test_with_overrides_revalidates():
    spec = SweepSpec.from_dict(BASE)
    assert spec.with_overrides(**{"objective.target_alpha": 3.0}).objective.target_alpha == 3.0
    with pytest.raises(SpecError, match=r"objective\.target_alpha: Input should be greater than 0"):
        spec.with_overrides(**{"objective.target_alpha": -1.0})


def test_yaml_roundtrip(tmp_path):
    spec = SweepSpec.from_yaml(EXAMPLES[0])
    again = SweepSpec.from_yaml(spec.to_yaml(tmp_path / "spec.yaml"))
    assert again == spec


# ----------------------------------------------------------------------------------- CLI errors
def test_cli_run_bad_spec_exits_2_with_field_message(tmp_path):
    from typer.testing import CliRunner

    from htsweep.sweeps.cli import app

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_with(search={"lr": {"type": "loguniform", "low": 0, "high": 1}})))
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 2
    assert "search.lr.loguniform.low: must be > 0 for a log scale" in result.output


def test_cli_status_on_non_sweep_dir(tmp_path):
    from typer.testing import CliRunner

    from htsweep.sweeps.cli import app

    result = CliRunner().invoke(app, ["status", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a sweep directory (no sweep.json)" in result.output


def test_cli_trainer_rejects_unknown_model(tmp_path):
    from typer.testing import CliRunner

    from htsweep.sweeps.cli import app

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**BASE, "model": "resnet9000"}))
    result = CliRunner().invoke(app, ["run", str(path), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 2
    assert "the trainer rejects the settings" in result.output and "resnet9000" in result.output
    assert not (tmp_path / "w").exists()  # nothing created for a spec that cannot run



@pytest.mark.parametrize("bad", [0, -1])
def test_bad_monitor_farms_windows_fails_on_one_line(bad):
    with pytest.raises(SpecError) as info:
        SweepSpec.from_dict(_with(monitor={"farms_windows": bad}))
    assert str(info.value).splitlines()[1:] == [
        f"  monitor.farms_windows: Input should be greater than or equal to 1 (got {bad})"]


@pytest.mark.filterwarnings("ignore:`get_trial_id` is meant:UserWarning")  # the monitor is built outside Tune here
def test_monitor_farms_windows_reaches_the_trials_monitor():
    from htsweep.analysis.farms import FARMS_WINDOWS
    from htsweep.sweeps.trainable import TrialContext, _monitor_and_logger

    assert SweepSpec.from_dict(BASE).monitor.farms_windows == FARMS_WINDOWS  # the paper's 10, kept in step
    spec = SweepSpec.from_dict(_with(monitor={"farms_windows": 2}, objective={"metric": "alpha_farms"}))
    ctx = TrialContext(base={}, objective=spec.objective, farms=spec.computes_farms,
                       farms_windows=spec.monitor.farms_windows)
    monitor, _ = _monitor_and_logger({}, ctx, params={})
    assert monitor.farms and monitor.farms_windows == 2


@pytest.mark.filterwarnings("ignore:`get_trial_id` is meant:UserWarning")
def test_monitor_farms_logs_farms_without_steering_on_it():
    from htsweep.sweeps.trainable import TrialContext, _monitor_and_logger

    assert not SweepSpec.from_dict(BASE).computes_farms
    spec = SweepSpec.from_dict(_with(monitor={"farms": True, "farms_windows": 3}))
    assert spec.objective.metric == "alpha" and spec.computes_farms
    ctx = TrialContext(base={}, objective=spec.objective, farms=spec.computes_farms,
                       farms_windows=spec.monitor.farms_windows)
    monitor, _ = _monitor_and_logger({}, ctx, params={})
    assert monitor.farms and monitor.farms_windows == 3
    steered = SweepSpec.from_dict(_with(train={"alpha_balance": {"metric": "alpha_farms"}}))
    assert steered.computes_farms


def test_farms_windows_without_farms_fails_on_one_line():
    with pytest.raises(SpecError) as info:
        SweepSpec.from_dict(_with(monitor={"farms_windows": 2}))
    lines = str(info.value).splitlines()
    assert len(lines) == 2 and "monitor.farms_windows is set but nothing computes FARMS" in lines[1]


def test_a_user_loops_train_settings_never_turn_farms_on():
    loop = {"name": "x", "trainable": "pkg.mod:train"}
    assert not SweepSpec.from_dict({**loop, "train": {"alpha_balance": "on"}}).computes_farms
    assert not SweepSpec.from_dict({**loop, "train": {"alpha_balance": {"metric": "alpha_farms"}}}).computes_farms
    assert SweepSpec.from_dict({**loop, "monitor": {"farms": True, "farms_windows": 2}}).computes_farms
