"""``dataset: "pkg.module:factory"`` and the driver's dry run: the user's Datasets train, and every
way the user's model or data can be wrong is one line naming the spec field, before training."""

from __future__ import annotations

import pytest

from htsweep.trainers import Trainer
from htsweep.trainers.data import DataBundle
from htsweep.trainers.datasets import DatasetPair
from htsweep.trainers.dry_run import dry_run
from htsweep.trainers.user_code import UserCodeError
from htsweep.trainers.user_data import load_user_dataset

DATA = """
import torch
from torch.utils.data import Dataset, TensorDataset
from htsweep.trainers.data import load_dataset

CALLS = []

class Shifted(Dataset):
    def __init__(self, x, y, augment):
        self.x, self.targets, self.augment = x, y, augment
    def __len__(self):
        return len(self.targets)
    def __getitem__(self, i):
        x = self.x[i]
        if self.augment:
            x = torch.roll(x, int(torch.randint(-1, 2, ())), dims=-1)
        return x, int(self.targets[i])

def digits(seed, augment=True, keep=600):
    CALLS.append({"seed": seed, "augment": augment, "keep": keep})
    b = load_dataset("digits", seed=seed)
    return Shifted(b.x_train[:keep], b.y_train[:keep], augment), Shifted(b.x_test, b.y_test, False)

def bundle():
    return load_dataset("digits", max_train=64, max_test=32)

def regression_pair():
    x = torch.randn(40, 3)
    y = torch.arange(40) % 3  # integer targets, read as values when the spec says task: regression
    return TensorDataset(x[:30], y[:30]), TensorDataset(x[30:], y[30:])

def one_split():
    return TensorDataset(torch.randn(8, 2), torch.zeros(8, dtype=torch.long))

def triples():
    t = TensorDataset(torch.randn(8, 2), torch.zeros(8, dtype=torch.long), torch.ones(8))
    return t, t

def raises(seed):
    raise FileNotFoundError("no such file: /data/x.npz")
"""

NETS = """
from torch import nn

def flat(input_shape, n_classes, width=32):
    d = 1
    for s in input_shape:
        d *= s
    return nn.Sequential(nn.Flatten(), nn.Linear(d, width), nn.ReLU(), nn.Linear(width, n_classes))

def wrong_inputs(n_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(7, n_classes))

def wrong_classes():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 4))

def returns_tuple(n_classes):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, n_classes)
        def forward(self, x):
            return self.fc(x.flatten(1)), None
    return Net()
"""


@pytest.fixture
def pkg(user_pkg):
    return user_pkg("data", DATA), user_pkg("nets", NETS)


def test_user_datasets_with_augmentation_train_a_user_model(pkg):
    data, nets = pkg
    cfg = {"model": f"{nets}:flat", "dataset": f"{data}:digits", "data_kwargs": {"keep": 500}, "seed": 3,
           "steps": 120, "batch_size": 32, "lr": 0.1, "optimizer": "momentum", "eval_every": 120,
           "spectral_every": 0}
    trainer = Trainer(cfg)
    assert isinstance(trainer.data, DatasetPair)  # not TensorDatasets: streamed, augmentation per read
    assert trainer.data.n_classes == 10 and trainer.data.input_shape == (1, 8, 8)
    metrics = trainer.fit()
    assert metrics["test_acc"] > 0.5  # chance is 0.1
    import sys

    assert sys.modules[data].CALLS[-1] == {"seed": 3, "augment": True, "keep": 500}


def test_a_factory_may_return_a_bundle_and_task_overrides_inference(pkg):
    data, _ = pkg
    assert isinstance(load_user_dataset(f"{data}:bundle"), DataBundle)
    assert load_user_dataset(f"{data}:regression_pair").task == "classification"
    assert load_user_dataset(f"{data}:regression_pair", task="regression").task == "regression"
    with pytest.raises(UserCodeError, match=r"^dataset: .*:bundle returned classification data, but the spec "
                                            r"sets task: regression$"):
        load_user_dataset(f"{data}:bundle", task="regression")


@pytest.mark.parametrize("factory, match", [
    ("one_split", r"must return a \(train, test\) pair of map-style Datasets .*it returned a TensorDataset$"),
    ("triples", r"items of train must be \(x, y\) pairs; train\[0\] is a 3-tuple"),
    ("raises", r"raises\(seed\) raised FileNotFoundError: no such file: /data/x.npz$"),
])
def test_bad_dataset_is_one_line(pkg, factory, match):
    data, _ = pkg
    with pytest.raises(UserCodeError, match=r"^dataset: .*" + match) as info:
        load_user_dataset(f"{data}:{factory}")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("model, match", [
    ("wrong_inputs", r"^model: .*:wrong_inputs fails on a batch of .*digits \(x of shape \(16, 1, 8, 8\), "
                     r"torch.float32\): RuntimeError: mat1 and mat2 shapes cannot be multiplied"),
    ("wrong_classes", r"^model: .*:wrong_classes outputs shape \(16, 4\) for a batch of 16, but .* has 10 "
                      r"classes: expected \(16, 10\)$"),
    ("returns_tuple", r"^model: .*:returns_tuple returned a tuple for a batch; the trainer needs one tensor"),
    ("flat_", r"^model: .* has no attribute 'flat_' \(did you mean 'flat'\?\)$"),
])
def test_dry_run_names_the_model_and_the_cause(pkg, model, match):
    data, nets = pkg
    with pytest.raises(UserCodeError, match=match) as info:
        dry_run({"model": f"{nets}:{model}", "dataset": f"{data}:digits", "steps": 10, "batch_size": 64})
    assert "\n" not in str(info.value)


def test_dry_run_passes_a_good_pair_and_the_bad_dataset_is_named(pkg):
    data, nets = pkg
    dry_run({"model": f"{nets}:flat", "dataset": f"{data}:digits", "steps": 10, "batch_size": "full"})
    with pytest.raises(UserCodeError, match=r"^dataset: .*raised FileNotFoundError"):
        dry_run({"model": f"{nets}:flat", "dataset": f"{data}:raises", "steps": 10})
