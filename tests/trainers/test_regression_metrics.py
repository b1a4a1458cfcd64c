"""Regression (teacher–student) evaluation reports R² next to the MSE, checked against scikit-learn."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import r2_score

from htsweep.trainers.train import TrainConfig, Trainer


def test_teacher_student_reports_r2_of_its_predictions():
    cfg = TrainConfig(model="student", dataset="teacher_student", steps=30, lr=0.2, batch_size="full",
                      eval_every=30, spectral_every=0, seed=3, device="cpu", threads=1,
                      model_kwargs={"width": 64}, data_kwargs={"n": 300, "n_test": 200, "d": 30})
    trainer = Trainer(cfg)
    metrics = trainer.fit()
    d = trainer.data
    with torch.no_grad():
        trainer.model.eval()
        pred = trainer.model(d.x_test).reshape(d.y_test.shape)
    # scikit-learn's coefficient of determination on the same predictions is the reference
    assert metrics["test_r2"] == pytest.approx(r2_score(d.y_test.numpy(), pred.numpy()), rel=1e-5, abs=1e-6)
    assert -10 < metrics["train_r2"] <= 1 and "test_acc" not in metrics
