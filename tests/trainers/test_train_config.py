"""TrainConfig validation and its error messages (part of the API)."""

from __future__ import annotations

import pytest

from htsweep.trainers.train import TrainConfig, Trainer, resolve_device


def test_defaults_and_round_trip():
    cfg = TrainConfig(steps=10)
    assert cfg.optimizer == "sgd" and cfg.batch_size == 64
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_from_dict_coerces_yaml_values():
    cfg = TrainConfig.from_dict({"lr": "1e-3", "batch_size": "full", "steps": "5", "dropout": 0})
    assert cfg.lr == pytest.approx(1e-3) and cfg.batch_size == "full" and cfg.steps == 5
    assert type(cfg.dropout) is float and type(cfg.steps) is int


def test_numpy_scalars_become_builtins():
    # sweeps sample numpy scalars; the config must stay JSON-safe
    import numpy as np

    cfg = TrainConfig(steps=np.int64(3), batch_size=np.int32(8), lr=np.float32(0.5), seed=np.int64(2))
    assert [type(v) for v in (cfg.steps, cfg.batch_size, cfg.lr, cfg.seed)] == [int, int, float, int]
    assert cfg.batch_size == 8 and cfg.lr == 0.5


@pytest.mark.parametrize(("kwargs", "msg"), [
    ({"optimizer": "adan"}, r"unknown optimizer 'adan' \(did you mean 'adam'\?\); choose one of 'sgd', 'momentum', 'adam', 'adamw'"),
    ({"schedule": "linear"}, r"unknown schedule 'linear'.*choose one of 'constant', 'cosine', 'step'"),
    ({"model": "resnet18"}, r"unknown model 'resnet18'.*'mlp3', 'lenet5', 'minialexnet', 'student', 'char_gpt'"),
    ({"dataset": "imagenet"}, r"unknown dataset 'imagenet'.*'teacher_student', 'digits', 'mnist5k'"),
    ({"batch_size": "half"}, r"^batch_size must be an int in \[1, inf\) or one of \{'full'\}; got 'half'\.$"),
    ({"batch_size": 0}, r"^batch_size must be an int in \[1, inf\) or one of \{'full'\}; got 0\.$"),
    ({"batch_size": 2.5}, r"^batch_size must be an int in \[1, inf\) or one of \{'full'\}; got 2\.5\.$"),
    ({"lr": -0.1}, r"^lr must be a float in \(0, inf\); got -0\.1\.$"),
    ({"lr": float("inf")}, r"^lr must be a float in \(0, inf\); got inf\.$"),
    ({"lr": "fast"}, r"^lr must be a float in \(0, inf\); got 'fast'\.$"),
    ({"lr": None}, r"^lr must be a float in \(0, inf\); got None\.$"),
    ({"dropout": 1.0}, r"^dropout must be a float in \[0, 1\); got 1\.0\.$"),
    ({"momentum": 1.5}, r"^momentum must be a float in \[0, 1\); got 1\.5\.$"),
    ({"weight_decay": float("nan")}, r"^weight_decay must be a float in \[0, inf\); got nan\.$"),
    ({"grad_clip": 0}, r"^grad_clip must be a float in \(0, inf\) or None; got 0\.0\.$"),
    ({"seed": -1}, r"^seed must be an int in \[0, inf\); got -1\.$"),
    ({"seed": True}, r"^seed must be an int in \[0, inf\); got True\.$"),
    ({"eval_every": -1}, r"^eval_every must be an int in \[0, inf\) or None; got -1\.$"),
    ({"device": "tpu"}, r"unknown device 'tpu'; choose one of 'auto', 'cpu', 'cuda', 'cuda:<index>'"),
    ({"epochs": 2}, r"set exactly one of epochs or steps \(got epochs=2, steps=10\)"),
    ({"threads": 0}, r"^threads must be an int in \[1, inf\) or None; got 0\.$"),
    ({"steps": "5.0"}, r"^steps must be an int in \[1, inf\) or None; got '5\.0'\.$"),
    ({"checkpoint_every": 5}, r"checkpoint_every needs checkpoint_dir"),
    ({"model_kwargs": [1]}, r"model_kwargs must be a mapping, got list"),
    ({"dataset": "text", "model": "char_gpt", "batch_size": "full"}, r"batch_size='full' is not supported"),
])
def test_invalid_values(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        TrainConfig(**{"steps": 10, **kwargs})


def test_neither_epochs_nor_steps():
    with pytest.raises(ValueError, match=r"set exactly one of epochs or steps \(got epochs=None, steps=None\)"):
        TrainConfig()


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown TrainConfig key\(s\) 'stpes' \(did you mean 'steps'\?\); "
                                         r"valid keys: model, dataset, batch_size"):
        TrainConfig.from_dict({"lr": 0.1, "stpes": 3})


def test_model_dataset_mismatch():
    with pytest.raises(ValueError, match="model 'student' needs a regression dataset, but 'digits' is a "
                                         "classification dataset"):
        Trainer(TrainConfig(model="student", dataset="digits", steps=1))


def test_unknown_model_kwarg():
    with pytest.raises(TypeError, match="mlp3: .*'depth'.*accepted arguments: in_features, n_classes, width, dropout"):
        Trainer(TrainConfig(model="mlp3", dataset="digits", steps=1, model_kwargs={"depth": 3}))


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available; use device='auto' or 'cpu'"):
            resolve_device("cuda")


def test_threads_are_applied():
    import torch

    before = torch.get_num_threads()
    try:
        # start from a count neither config asks for, so the assertions can only pass if applied
        torch.set_num_threads(3)
        Trainer(TrainConfig(model="mlp3", dataset="digits", steps=1, threads=2, model_kwargs={"width": 8}))
        assert torch.get_num_threads() == 2
        Trainer(TrainConfig(model="mlp3", dataset="digits", steps=1, threads=1, model_kwargs={"width": 8}))
        assert torch.get_num_threads() == 1
        Trainer(TrainConfig(model="mlp3", dataset="digits", steps=1, model_kwargs={"width": 8}))
        assert torch.get_num_threads() == 1  # threads=None leaves the process setting alone
    finally:
        torch.set_num_threads(before)
