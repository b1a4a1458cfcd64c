"""Task objects: one per DataBundle.task, with the one LM windowing shared by Batcher and evaluation."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close
from trainers_testutils import boring_data

from htsweep import trainers
from htsweep.trainers import checkpoint, config, teacher_student
from htsweep.trainers.data import Batcher, DataBundle
from htsweep.trainers.tasks import TASKS, Classification, LanguageModel, Regression, lm_windows, task_of


def _lm_bundle(n_tokens: int = 50, block_size: int = 4) -> DataBundle:
    ids = torch.arange(n_tokens) % 7
    return DataBundle("text", "language_model", ids, None, ids[:23], None, input_shape=(block_size,),
                      vocab="abcdefg", block_size=block_size)


def test_task_of_picks_the_task_of_the_bundle():
    assert type(task_of(boring_data())) is Classification
    assert task_of(_lm_bundle(block_size=4)) == LanguageModel(4)
    assert sorted(TASKS) == ["classification", "language_model", "regression"]
    bad = boring_data()
    bad.task = "ranking"
    with pytest.raises(ValueError, match=r"^unknown task 'ranking'; choose one of 'classification', 'regression', "
                                         r"'language_model'$"):
        task_of(bad)


def test_lm_windows_are_inputs_and_next_tokens():
    ids = torch.arange(20)
    x, y = lm_windows(ids, torch.tensor([0, 3, 15]), 4)
    assert x.tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [15, 16, 17, 18]]
    assert torch.equal(y, x + 1)


def test_batcher_and_evaluation_window_alike():
    data = _lm_bundle()
    x, y, _ = Batcher(data, batch_size=3, seed=0).next()
    assert x.shape == y.shape == (3, 4) and torch.equal(x[:, 1:], y[:, :-1])
    task = task_of(data)
    # evaluation: non-overlapping windows; (50 - 1) // 4 = 12 of them in the train stream
    assert task.n_units(data.x_train) == 12
    xb, yb = task.units(data.x_train, None, torch.tensor([0, 11]))
    assert xb.tolist() == [data.x_train[0:4].tolist(), data.x_train[44:48].tolist()]
    assert torch.equal(yb[1], data.x_train[45:49])


def test_regression_r2_and_no_accuracy():
    y = torch.tensor([1.0, 2.0, 3.0, 4.0])
    scores = Regression().scores("test", loss=0.25, accuracy=0.0, y=y)
    assert scores == {"test_r2": pytest.approx(1 - 0.25 / 1.25)}  # Var(y) = 1.25 (population variance)
    assert math.isnan(Regression().scores("train", 0.1, 0.0, torch.ones(3))["train_r2"])
    assert Regression().n_correct(torch.zeros(3), torch.zeros(3)) == 0.0


def test_classification_evaluate_matches_a_direct_computation():
    data = boring_data(n=40, n_test=20)
    model = torch.nn.Linear(32, 2)
    idx = torch.tensor([1, 5, 7])
    with torch.no_grad():
        metrics = Classification().evaluate(model, data, idx)
        out_tr, out_te = model(data.x_train[idx]), model(data.x_test)
    assert list(metrics) == ["train_loss", "test_loss", "gen_gap", "train_acc", "test_acc"]
    assert_close(metrics["train_loss"], float(torch.nn.functional.cross_entropy(out_tr, data.y_train[idx])),
                 rtol=1e-6, atol=1e-7)
    assert metrics["test_acc"] == float((out_te.argmax(-1) == data.y_test).sum()) / 20  # a count over 20 examples
    assert metrics["gen_gap"] == metrics["test_loss"] - metrics["train_loss"]


def test_names_moved_out_of_train_are_still_importable_from_it():
    # old imports and pickles name trainers.train; they must resolve to the one definition
    assert trainers.train.TrainConfig is config.TrainConfig
    assert trainers.train.resolve_device is config.resolve_device
    assert trainers.train.CHECKPOINT_FORMAT == checkpoint.CHECKPOINT_FORMAT == "htsweep-trainer-checkpoint/1"
    for name in ("RIDGE_LAMBDA", "teacher_alignment", "kernel_target_alignment", "ridge_readout_losses"):
        assert getattr(trainers.train, name) is getattr(teacher_student, name)


def test_task_metric_names_are_the_reported_names_the_sweep_reads():
    # the trainer writes them per split; analysis.metric_names owns what sweeps and MLflow read back
    from htsweep.analysis.metric_names import ReportKey

    data = boring_data(n=40, n_test=20)
    metrics = Classification().evaluate(torch.nn.Linear(32, 2), data, None)
    assert {ReportKey.TEST_ACC, ReportKey.TRAIN_ACC, ReportKey.TEST_LOSS} <= set(metrics)
    assert ReportKey.TEST_R2 in Regression().scores("test", loss=0.1, accuracy=0.0, y=torch.arange(4.0))
