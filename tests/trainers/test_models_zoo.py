"""Model shapes, registry errors, the student's scaling and the GPT's causality."""

from __future__ import annotations

import math

import pytest
import torch

from htsweep.trainers.models import MODELS, CharGPT, LeNet5, MiniAlexNet, TwoLayerStudent, build_model


@pytest.mark.parametrize(("channels", "size"), [(1, 8), (1, 28), (3, 32)])
@pytest.mark.parametrize("cls", [LeNet5, MiniAlexNet])
def test_conv_nets_take_digits_mnist_and_cifar_shapes(cls, channels, size):
    kwargs = {"channels": (8, 16)} if cls is MiniAlexNet else {"input_size": size}
    model = cls(channels, 10, **kwargs)
    assert model(torch.randn(2, channels, size, size)).shape == (2, 10)


def test_paper_shapes():
    # Martin & Mahoney (2021): MLP3 hidden layers 512 × 512; MiniAlexNet FC1 4096 × 384, FC2 384 × 192.
    mlp = build_model("mlp3", in_features=784)
    assert mlp.fc2.weight.shape == (512, 512) and mlp.fc3.weight.shape == (512, 512)
    alex = MiniAlexNet(3, 10)
    assert alex.fc1.weight.shape == (384, 4096) and alex.fc2.weight.shape == (192, 384)
    assert LeNet5(1, 10, input_size=32).fc1.weight.shape == (120, 400)


def test_student_scaling_and_freezing():
    torch.manual_seed(0)
    s = TwoLayerStudent(d=400, width=300)
    w, a = s.fc1.weight, s.fc2.weight
    assert w.shape == (300, 400) and a.shape == (1, 300)
    # Entries i.i.d. N(0, 1) at init (the paper's scaling); tolerance ~ 5 standard errors.
    assert float(w.detach().std()) == pytest.approx(1.0, abs=5 / math.sqrt(w.numel()))
    assert w.requires_grad and not a.requires_grad
    x = torch.randn(5, 400)
    expected = torch.tanh(x @ w.T / math.sqrt(400)) @ a[0] / math.sqrt(300)
    torch.testing.assert_close(s(x), expected, rtol=1e-5, atol=1e-6)
    both = TwoLayerStudent(d=4, width=3, train_second=True, train_first=False)
    assert both.fc2.weight.requires_grad and not both.fc1.weight.requires_grad


def test_char_gpt_is_causal_and_names_its_matrices():
    torch.manual_seed(0)
    gpt = CharGPT(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16).eval()
    idx = torch.randint(0, 11, (1, 8))
    changed = idx.clone()
    changed[0, -1] = (idx[0, -1] + 1) % 11
    out, out2 = gpt(idx), gpt(changed)
    assert out.shape == (1, 8, 11)
    torch.testing.assert_close(out[:, :-1], out2[:, :-1])  # earlier positions ignore the future
    names = {n for n, m in gpt.named_modules() if isinstance(m, torch.nn.Linear)}
    assert {"blocks.0.attn.q_proj", "blocks.0.attn.k_proj", "blocks.0.attn.v_proj",
            "blocks.0.attn.out_proj", "head"} <= names
    with pytest.raises(ValueError, match="sequence length 9 exceeds block_size 8"):
        gpt(torch.zeros(1, 9, dtype=torch.long))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_has_dropout(name):
    import inspect

    assert "dropout" in inspect.signature(MODELS[name][0]).parameters


def test_registry_errors():
    with pytest.raises(ValueError, match=r"unknown model 'MLP3' \(did you mean 'mlp3'\?\); choose one of"):
        build_model("MLP3")
    with pytest.raises(ValueError, match=r"^dropout must be a float in \[0, 1\); got 1\.5\.$"):
        build_model("mlp3", in_features=4, dropout=1.5)
    with pytest.raises(ValueError, match="unknown activation 'sigmoid'"):
        TwoLayerStudent(d=3, activation="sigmoid")
    with pytest.raises(ValueError, match=r"n_embd \(10\) must be divisible by n_head \(4\)"):
        CharGPT(5, n_embd=10, n_head=4)
