"""User data as a pair of map-style Datasets: checks and inference of ``from_datasets``, training
through the DataLoader (deterministic whatever ``num_workers``, resumable mid-epoch with random
augmentation), evaluation over the test Dataset, and the ``loader`` choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, IterableDataset, TensorDataset
from trainers_testutils import boring_data

from htsweep.trainers.data import DataBundle
from htsweep.trainers.datasets import DatasetPair, from_bundle, from_datasets, to_bundle
from htsweep.trainers.loader import LoaderBatcher
from htsweep.trainers.train import TrainConfig, Trainer


class Jitter(Dataset):
    """Images with a random additive jitter drawn per read (torch) and a random flip (numpy): augmentation."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        img = self.x[i] + 0.2 * torch.randn(self.x[i].shape)
        if np.random.rand() < 0.5:  # noqa: NPY002 - user code often uses the legacy global RNG
            img = img.flip(-1)
        return img, int(self.y[i])


def _images(n: int = 120, n_test: int = 40, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n + n_test, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).long() + 2 * (x.mean((1, 2, 3)) > 0).long()
    return x[:n], y[:n], x[n:], y[n:]


def _jitter_pair() -> DatasetPair:
    x, y, xt, yt = _images()
    return from_datasets(Jitter(x, y), Jitter(xt, yt), name="jitter")


_CFG = dict(model="lenet5", batch_size=16, lr=0.05, optimizer="momentum", dropout=0.1, eval_every=5,
            spectral_every=0, loader="dataloader")


# ------------------------------------------------------------------ from_datasets
def test_infers_task_shape_and_classes():
    x, y, xt, yt = _images()
    pair = from_datasets(TensorDataset(x, y), TensorDataset(xt, yt), name="t")
    assert (pair.task, pair.input_shape, pair.n_classes, pair.in_channels) == ("classification", (1, 8, 8), 4, 1)
    reg = from_datasets(TensorDataset(x, y.float()), TensorDataset(xt, yt.float()), name="r")
    assert reg.task == "regression" and reg.n_classes is None
    forced = from_datasets(TensorDataset(x, y), TensorDataset(xt, yt), name="f", task="regression")
    assert forced.task == "regression"
    # numpy items and a torchvision-style ``targets`` attribute (read instead of every item)
    items = [(np.ones(3), k % 7) for k in range(10)]

    class WithTargets(list):
        targets = [k % 7 for k in range(10)]

    assert from_datasets(WithTargets(items), items, name="n").n_classes == 7


def test_infers_language_model_windows():
    ids = torch.arange(200) % 13
    windows = [(ids[i:i + 8], ids[i + 1:i + 9]) for i in range(0, 180, 8)]
    pair = from_datasets(windows, windows[:4], name="lm")
    assert (pair.task, pair.vocab_size, pair.block_size) == ("language_model", 13, 8)


@pytest.mark.parametrize(("train", "message"), [
    ([1, 2, 3], r"items of train must be \(x, y\) pairs; train\[0\] is a int"),
    ([(torch.zeros(2), 1, 2)], r"train\[0\] is a 3-tuple"),
    ({"a": 1}, "train is not a map-style torch.utils.data.Dataset"),
    (42, r"train is not a map-style torch.utils.data.Dataset \(got int\)"),
    ([], "train is empty"),
    ([(torch.zeros(2), "cat")], r"y of train\[0\] is a str"),
    ([(torch.zeros(3), 1)], r"train inputs have shape \(3,\) but test inputs \(2,\)"),
])
def test_bad_pairs_fail_with_one_line(train, message):
    with pytest.raises(ValueError, match=message) as info:
        from_datasets(train, [(torch.zeros(2), 0)], name="bad")
    assert "\n" not in str(info.value)


def test_bad_pairs_more():
    class Stream(IterableDataset):
        def __iter__(self):
            yield torch.zeros(2), 0

    with pytest.raises(ValueError, match="test is an IterableDataset"):
        from_datasets([(torch.zeros(2), 0)], Stream(), name="s")
    floats = [(torch.zeros(2), 0.5)]
    with pytest.raises(ValueError, match="task 'classification' needs one integer class id"):
        from_datasets(floats, floats, name="f", task="classification")
    with pytest.raises(ValueError, match="unknown task 'clasification'"):
        from_datasets(floats, floats, name="f", task="clasification")

    class Broken(list):
        def __getitem__(self, i):
            raise KeyError(i)

    with pytest.raises(ValueError, match=r"train\[0\] raised KeyError"):
        from_datasets(Broken([1]), floats, name="b")


def test_bundle_round_trip():
    data = boring_data(n=20, n_test=8)
    back = to_bundle(from_bundle(data))
    assert torch.equal(back.x_train, data.x_train) and torch.equal(back.y_test, data.y_test)
    assert back.n_classes == data.n_classes


# ------------------------------------------------------------------ training through the DataLoader
def test_loader_batches_cover_each_epoch_once_and_resume_mid_epoch():
    pair = from_datasets(TensorDataset(torch.arange(10.0)[:, None], torch.arange(10)),
                         TensorDataset(torch.zeros(1, 1), torch.zeros(1, dtype=torch.long)), name="ids")
    a = LoaderBatcher(pair, 4, seed=3)
    assert a.steps_per_epoch == 3
    seen = [a.next() for _ in range(6)]
    for epoch in (seen[:3], seen[3:]):
        assert sorted(torch.cat([y for _, y, _ in epoch]).tolist()) == list(range(10))
        assert [done for *_, done in epoch] == [False, False, True]
    assert not torch.equal(seen[0][1], seen[3][1])  # reshuffled each epoch
    b = LoaderBatcher(pair, 4, seed=3)
    b.load_state_dict({"loader": "dataloader", "epoch": 1, "pos": 1})
    assert torch.equal(b.next()[1], seen[4][1])


def test_training_with_augmentation_is_the_same_for_any_num_workers():
    pair = _jitter_pair()
    runs, outs = [], []
    for workers in (0, 2):  # built and run one after the other: dropout draws from the global RNG
        runs.append(Trainer(TrainConfig(**{**_CFG, "eval_every": 0}, steps=10, num_workers=workers), data=pair))
        outs.append(runs[-1].fit())
    assert outs[0] == outs[1]
    for key, value in runs[0].model.state_dict().items():
        assert torch.equal(value, runs[1].model.state_dict()[key]), key


def test_dataloader_run_resumes_mid_epoch_bit_identically(tmp_path):
    pair = _jitter_pair()  # 120 items / batch 16: 8 steps an epoch; checkpoint at step 11 (mid-epoch 2)
    a = Trainer(TrainConfig(**_CFG, steps=18, checkpoint_dir=str(tmp_path), checkpoint_every=11), data=pair)
    out_a = a.fit()
    torch.manual_seed(999)
    b = Trainer(TrainConfig(**_CFG, steps=18), data=pair)
    out_b = b.fit(resume_from=tmp_path / "step_11.pt")
    assert out_a == out_b and b.epoch == a.epoch == 2
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    memory = Trainer(TrainConfig(**{**_CFG, "loader": "memory"}, steps=18), data=pair)
    with pytest.raises(ValueError, match="written with loader='dataloader'"):
        memory.load_checkpoint(tmp_path / "step_11.pt")


def test_evaluation_reads_the_whole_test_dataset():
    x, y, xt, yt = _images()
    pair = from_datasets(Jitter(x, y), TensorDataset(xt, yt), name="t")
    t = Trainer(TrainConfig(**_CFG, steps=3, eval_samples=None), data=pair)
    metrics = t.fit()
    t.model.eval()
    with torch.no_grad():
        out = t.model(xt)
    assert metrics["test_loss"] == pytest.approx(float(F.cross_entropy(out, yt)), rel=1e-5)
    assert metrics["test_acc"] == pytest.approx(float((out.argmax(1) == yt).float().mean()))


def test_regression_pair_reports_r2_and_learns():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(400, 6, generator=g)
    y = x @ torch.linspace(-1, 1, 6)
    numpy_items = [(a.double().numpy(), b.double().numpy()) for a, b in zip(x[:300], y[:300], strict=True)]  # float64
    pair = from_datasets(numpy_items, TensorDataset(x[300:], y[300:]), name="lin")
    t = Trainer(TrainConfig(model="student", steps=60, batch_size=30, lr=0.5, eval_every=0, spectral_every=0,
                            loader="dataloader", model_kwargs={"width": 64}), data=pair)
    first = t.evaluate()
    last = t.fit()
    assert last["test_loss"] < 0.5 * first["test_loss"] and "test_r2" in last


def test_loader_choice():
    x, y, xt, yt = _images()
    fixed = from_datasets(TensorDataset(x, y), TensorDataset(xt, yt), name="fixed")
    auto = Trainer(TrainConfig(model="lenet5", steps=1), data=fixed)
    assert isinstance(auto.data, DataBundle)  # fixed tensors: the in-memory fast path
    assert isinstance(Trainer(TrainConfig(model="lenet5", steps=1), data=_jitter_pair()).data, DatasetPair)
    streamed = Trainer(TrainConfig(model="mlp3", steps=2, loader="dataloader"), data=boring_data())
    assert isinstance(streamed.batcher, LoaderBatcher)
    with pytest.raises(ValueError, match="unknown loader 'disk'"):
        TrainConfig(loader="disk", steps=1)
    with pytest.raises(ValueError, match="pin_memory must be true or false"):
        TrainConfig(pin_memory="yes", steps=1)
