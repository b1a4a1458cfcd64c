"""Training precision, channels-last and torch.compile in the built-in loop.

On CPU: bf16-mixed is checked for correctness (the forward runs in bfloat16, weights, optimizer
and evaluation stay float32, the first update matches float32's, the monitor reads float32
weights, a run resumes bit-identically). The CUDA cases (16-mixed with gradient scaling, pinned
non-blocking DataLoader batches, channels-last convolutions) are skipped without a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from htsweep.trainers.datasets import from_datasets
from htsweep.trainers.monitor import SpectralMonitor
from htsweep.trainers.precision import MixedPrecision
from htsweep.trainers.train import TrainConfig, Trainer

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

_DIGITS = dict(dataset="digits", batch_size=32, lr=0.05, optimizer="momentum", eval_every=0, spectral_every=0,
               data_kwargs={"max_train": 512, "max_test": 256})


def test_bf16_mixed_forward_runs_in_bfloat16_and_weights_stay_float32():
    t = Trainer(TrainConfig(model="mlp3", steps=1, precision="bf16-mixed", model_kwargs={"width": 32}, **_DIGITS))
    seen = []
    t.model.fc1.register_forward_hook(lambda mod, inp, out: seen.append((out.dtype, torch.is_grad_enabled())))
    t.fit()
    assert (torch.bfloat16, True) in seen  # the training forward
    assert (torch.float32, False) in seen  # evaluation runs in float32
    assert all(p.dtype == torch.float32 for p in t.model.parameters())
    assert all(v.dtype == torch.float32 for s in t.optimizer.state.values() for v in s.values() if v.is_floating_point())


def test_bf16_mixed_first_update_matches_float32():
    updates = {}
    for precision in ("32", "bf16-mixed"):
        t = Trainer(TrainConfig(model="lenet5", steps=1, precision=precision, optimizer="sgd", **{
            k: v for k, v in _DIGITS.items() if k != "optimizer"}))
        before = torch.cat([p.detach().flatten().clone() for p in t.model.parameters()])
        t.fit()
        updates[precision] = torch.cat([p.detach().flatten() for p in t.model.parameters()]) - before
    cos = F.cosine_similarity(updates["32"], updates["bf16-mixed"], dim=0)
    assert cos > 0.99  # same gradient up to bfloat16 rounding of the activations
    assert not torch.equal(updates["32"], updates["bf16-mixed"])  # and it did run in lower precision


def test_bf16_mixed_learns_and_evaluates_exactly():
    t = Trainer(TrainConfig(model="lenet5", steps=80, precision="bf16-mixed", eval_samples=None, **_DIGITS))
    out = t.fit()
    assert out["test_acc"] > 0.7  # 10 classes: chance is 0.1
    t.model.eval()
    with torch.no_grad():
        logits = t.model(t.data.x_test)
    assert out["test_loss"] == pytest.approx(float(F.cross_entropy(logits, t.data.y_test)), rel=1e-5)


def test_monitor_reads_float32_weights_under_bf16_mixed():
    monitor = SpectralMonitor()
    t = Trainer(TrainConfig(model="mlp3", steps=5, precision="bf16-mixed", model_kwargs={"width": 64}, **_DIGITS),
                [monitor])
    t.fit()
    assert all(layer.matrix.dtype == torch.float32 for layer in monitor.extract(t.model))
    w = t.model.fc2.weight.detach().double()
    reference = np.sort((torch.linalg.svdvals(w) ** 2 / max(w.shape)).numpy())
    got = np.sort(t.spectral.eigs()["fc2"])[-len(reference):]
    # bfloat16 weights would be off by ~1e-2; float32 weights agree to float32 eigensolver accuracy
    assert got[-1] == pytest.approx(reference[-1], rel=1e-4)


def test_bf16_mixed_resumes_bit_identically(tmp_path):
    kw = dict(model="mlp3", steps=8, precision="bf16-mixed", dropout=0.1, model_kwargs={"width": 32}, **_DIGITS)
    a = Trainer(TrainConfig(checkpoint_dir=str(tmp_path), checkpoint_every=3, **kw))
    out_a = a.fit()
    b = Trainer(TrainConfig(**kw))
    assert b.fit(resume_from=tmp_path / "step_3.pt") == out_a


def test_channels_last_model_and_same_training():
    outs = []
    for channels_last in (False, True):
        t = Trainer(TrainConfig(model="lenet5", steps=10, channels_last=channels_last, **_DIGITS))
        outs.append(t.fit())
    assert t.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert outs[1]["test_loss"] == pytest.approx(outs[0]["test_loss"], rel=1e-4)


def test_precision_settings_are_checked():
    assert TrainConfig(steps=1, precision=32).precision == "32"  # YAML reads 32 as a number
    with pytest.raises(ValueError, match=r"unknown precision '16' \(did you mean '16-mixed'\?\)"):
        TrainConfig(steps=1, precision="16")
    with pytest.raises(ValueError, match="compile must be true or false"):
        TrainConfig(steps=1, compile="yes")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="precision '16-mixed' needs a CUDA device"):
            Trainer(TrainConfig(model="mlp3", steps=1, precision="16-mixed", device="cpu"))


@pytest.mark.slow
def test_compile_trains_like_eager():
    """torch.compile on CPU (inductor + the C compiler): ~45 s of compilation."""
    outs, names = [], []
    for compile_ in (False, True):
        t = Trainer(TrainConfig(model="mlp3", steps=12, compile=compile_, model_kwargs={"width": 32}, **_DIGITS))
        outs.append(t.fit())
        names.append(list(t.model.state_dict()))
    assert names[0] == names[1]  # the module is not wrapped: checkpoints and layer names unchanged
    assert outs[1]["test_loss"] == pytest.approx(outs[0]["test_loss"], rel=1e-4)


# ------------------------------------------------------------------ CUDA (skipped without a GPU)
@needs_cuda
@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_cuda_mixed_precision_learns(precision):
    t = Trainer(TrainConfig(model="lenet5", steps=150, precision=precision, device="cuda", channels_last=True,
                            **_DIGITS))
    out = t.fit()
    assert out["test_acc"] > 0.7
    assert all(p.dtype == torch.float32 for p in t.model.parameters())


@needs_cuda
def test_cuda_16_mixed_scaler_state_resumes(tmp_path):
    kw = dict(model="lenet5", steps=6, precision="16-mixed", device="cuda", grad_clip=1.0, **_DIGITS)
    a = Trainer(TrainConfig(checkpoint_dir=str(tmp_path), checkpoint_every=3, **kw))
    out_a = a.fit()
    ckpt = torch.load(tmp_path / "step_3.pt", weights_only=True)
    assert ckpt["grad_scaler"]["scale"] > 0
    b = Trainer(TrainConfig(**kw))
    out_b = b.fit(resume_from=tmp_path / "step_3.pt")
    assert out_b["test_loss"] == pytest.approx(out_a["test_loss"], rel=1e-3)


@needs_cuda
def test_cuda_dataloader_pins_and_copies_without_blocking():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(256, 1, 8, 8, generator=g), torch.randint(0, 4, (256,), generator=g)
    pair = from_datasets(list(zip(x[:192], y[:192], strict=True)), TensorDataset(x[192:], y[192:]), name="p")
    t = Trainer(TrainConfig(model="lenet5", steps=12, batch_size=32, loader="dataloader", num_workers=2,
                            device="cuda", precision="bf16-mixed", eval_every=0, spectral_every=0), data=pair)
    assert t.pin_memory and t.batcher.non_blocking
    xb, yb, _ = t.batcher.next()
    assert xb.is_cuda and yb.is_cuda
    assert np.isfinite(t.fit()["test_loss"])


def test_16_mixed_uses_a_grad_scaler_only_on_cuda():
    assert MixedPrecision("bf16-mixed", torch.device("cpu")).scaler is None
    if torch.cuda.is_available():
        assert MixedPrecision("16-mixed", torch.device("cuda")).scaler is not None
