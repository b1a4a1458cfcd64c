"""A run restored from a checkpoint continues bit-identically on CPU."""

from __future__ import annotations

import pytest
import torch

from htsweep.trainers.callbacks import MetricsHistory
from htsweep.trainers.train import TrainConfig, Trainer


def _run_and_resume(tmp_path, cfg_kwargs, resume_step):
    cfg_a = TrainConfig(checkpoint_dir=str(tmp_path / "a"), checkpoint_every=resume_step, **cfg_kwargs)
    hist_a = MetricsHistory()
    a = Trainer(cfg_a, [hist_a])
    a.fit()
    # A fresh trainer (different process state: its own init consumed the RNG) restores and continues.
    torch.manual_seed(12345)
    cfg_b = TrainConfig(**cfg_kwargs)
    hist_b = MetricsHistory()
    b = Trainer(cfg_b, [hist_b])
    out_b = b.fit(resume_from=tmp_path / "a" / f"step_{resume_step}.pt")
    return a, b, hist_a, hist_b, out_b


def _assert_same_params(a, b):
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_resume_is_bit_identical_mlp3(tmp_path):
    # Mid-epoch checkpoint (digits: 150 train / batch 16), with dropout, momentum and a cosine schedule.
    kw = dict(model="mlp3", dataset="digits", steps=14, batch_size=16, lr=0.05, optimizer="momentum",
              schedule="cosine", dropout=0.2, weight_decay=1e-4, eval_every=3, spectral_every=0,
              model_kwargs={"width": 32}, data_kwargs={"max_train": 150, "max_test": 50})
    a, b, hist_a, hist_b, out_b = _run_and_resume(tmp_path, kw, resume_step=5)
    assert b.step == a.step == 14
    _assert_same_params(a, b)
    assert hist_b.history == hist_a.history  # restored history + identical later reports
    assert out_b == hist_a.history[-1]
    assert a.optimizer.state_dict()["param_groups"][0]["lr"] == b.optimizer.state_dict()["param_groups"][0]["lr"]


def test_resume_is_bit_identical_char_gpt(tmp_path):
    kw = dict(model="char_gpt", dataset="text", steps=6, batch_size=4, lr=3e-3, optimizer="adamw",
              schedule="step", lr_step_size=2, dropout=0.1, eval_every=0, spectral_every=0, eval_samples=8,
              model_kwargs={"n_layer": 1, "n_embd": 16, "n_head": 2}, data_kwargs={"block_size": 16})
    a, b, *_ = _run_and_resume(tmp_path, kw, resume_step=3)
    _assert_same_params(a, b)


def test_checkpoint_errors(tmp_path):
    kw = dict(model="mlp3", dataset="digits", steps=1, model_kwargs={"width": 8})
    t = Trainer(TrainConfig(**kw))
    path = t.save_checkpoint(tmp_path / "c.pt")
    other = Trainer(TrainConfig(**{**kw, "model": "lenet5", "model_kwargs": {}}))
    with pytest.raises(ValueError, match="was made with model='mlp3', this trainer has model='lenet5'"):
        other.load_checkpoint(path)
    torch.save({"weights": torch.zeros(2, 2)}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="is not a trainer checkpoint"):
        t.load_checkpoint(tmp_path / "x.pt")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        t.load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_is_weights_only_and_analyzable(tmp_path):
    t = Trainer(TrainConfig(model="mlp3", dataset="digits", steps=1, model_kwargs={"width": 8}))
    path = t.save_checkpoint(tmp_path / "c.pt")
    ckpt = torch.load(path, weights_only=True)
    assert set(ckpt["model"]) == set(t.model.state_dict())
    import htsweep.analysis.layers as layers
    names = [lm.name for lm in layers.load_matrices(path)]
    assert names == ["fc1", "fc2", "fc3", "fc4"]


def test_resuming_a_finished_run_returns_its_final_metrics(tmp_path):
    kw = dict(model="mlp3", dataset="digits", steps=3, model_kwargs={"width": 8}, data_kwargs={"max_train": 64})
    a = Trainer(TrainConfig(**kw))
    final = a.fit()
    path = a.save_checkpoint(tmp_path / "done.pt")
    hist = MetricsHistory()
    b = Trainer(TrainConfig(**kw), [hist])
    assert b.fit(resume_from=path) == final
    assert b.step == 3 and hist.history == []  # nothing re-run, nothing re-reported


def test_checkpoint_keys_are_those_of_format_1(tmp_path):
    # Checkpoints already on disk have exactly these keys; load_checkpoint must keep reading them.
    t = Trainer(TrainConfig(model="mlp3", dataset="digits", steps=1, model_kwargs={"width": 8}))
    ckpt = torch.load(t.save_checkpoint(tmp_path / "c.pt"), weights_only=True)
    assert list(ckpt) == ["format", "config", "model", "optimizer", "scheduler", "step", "epoch", "batcher", "rng",
                          "callbacks", "callback_metrics", "losses", "last_report", "lr_factors"]
    assert ckpt["format"] == "htsweep-trainer-checkpoint/1"
    assert set(ckpt["rng"]) - {"cuda"} == {"numpy", "python", "torch"}


def test_rng_state_round_trip():
    import random

    import numpy as np

    from htsweep.trainers.checkpoint import rng_state, seed_everything, set_rng_state

    seed_everything(3)
    state = rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1))  # noqa: NPY002
    set_rng_state(state)
    again = (random.random(), np.random.rand(), torch.rand(1))  # noqa: NPY002
    assert first[:2] == again[:2] and torch.equal(first[2], again[2])
