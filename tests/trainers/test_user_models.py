"""``model: "pkg.module:factory"``: the user's model, built with what the data provide, trained by the loop."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from htsweep.trainers import Trainer, build_model
from htsweep.trainers.data import load_dataset
from htsweep.trainers.user_code import UserCodeError

NETS = """
import torch
from torch import nn

class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)
    def forward(self, x):
        return torch.relu(x + self.bn(self.conv(x)))

def tiny_resnet(n_classes, in_channels, width=8, dropout=0.0):
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), Block(width), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Dropout(dropout), nn.Linear(width, n_classes))

def flat(input_shape, n_classes, hidden=16):
    d = 1
    for s in input_shape:
        d *= s
    return nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))

def not_a_module(n_classes):
    return {"n_classes": n_classes}
"""


@pytest.fixture
def nets(user_pkg):
    return user_pkg("nets", NETS)


def test_factory_gets_what_the_data_provide_and_model_kwargs_win(nets):
    data = load_dataset("digits", max_train=64, max_test=32)  # (1, 8, 8), 10 classes
    net = build_model(f"{nets}:tiny_resnet", data=data, defaults={"dropout": 0.25}, width=4)
    assert net[0].in_channels == 1 and net[0].out_channels == 4 and net[-1].out_features == 10
    assert net[-2].p == 0.25  # the trainer's dropout reaches a factory that names it
    flat = build_model(f"{nets}.flat", data=data, defaults={"dropout": 0.25})  # no dropout parameter: not passed
    assert flat[1].in_features == 64


def test_trainer_trains_the_users_model_and_learns(nets):
    cfg = {"model": f"{nets}:tiny_resnet", "dataset": "digits", "steps": 60, "batch_size": 64, "lr": 0.1,
           "optimizer": "momentum", "eval_every": 60, "spectral_every": 0, "model_kwargs": {"width": 8},
           "data_kwargs": {"max_train": 600}}
    trainer = Trainer(cfg)
    trainer.fit()
    assert isinstance(trainer.model[1].bn, nn.BatchNorm2d)
    assert trainer.callback_metrics["test_acc"] > 0.3  # chance is 0.1


def test_library_class_by_import_path():
    net = build_model("torch.nn:Linear", in_features=5, out_features=3)
    assert isinstance(net, nn.Linear) and net.weight.shape == (3, 5)


def test_torchvision_resnet18_with_num_classes():
    pytest.importorskip("torchvision")
    net = build_model("torchvision.models:resnet18", data=load_dataset("digits", max_train=8, max_test=8),
                      defaults={"dropout": 0.0}, num_classes=10)
    # data facts are not forced on it: resnet18(**kwargs) forwards to ResNet, which has no n_classes
    assert net.fc.out_features == 10
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("path, kwargs, match", [
    ("{nets}:not_a_module", {}, r"^model: .*:not_a_module returned a dict, not a torch.nn.Module$"),
    ("{nets}:tiny_resnet", {"depth": 3}, r"^model: tiny_resnet\(.*\) raised TypeError: .*'depth'"),
    ("{nets}:tiny_resnt", {}, r"^model: .* has no attribute 'tiny_resnt' \(did you mean 'tiny_resnet'\?\)$"),
])
def test_bad_user_model_is_one_line(nets, path, kwargs, match):
    data = load_dataset("digits", max_train=8, max_test=8)
    with pytest.raises(UserCodeError, match=match):
        build_model(path.format(nets=nets), data=data, **kwargs)
