"""Tests for analysis.layers: layer extraction from modules and loading matrices from files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from torch import nn

from analysis.layers import LayerMatrix, extract_layers, load_matrices


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 8)
        self.conv1 = nn.Conv2d(3, 4, kernel_size=(2, 3))
        self.conv1d = nn.Conv1d(4, 6, kernel_size=3)
        self.attn = nn.MultiheadAttention(8, num_heads=2)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))


def test_extract_all_kinds_with_qualified_names():
    torch.manual_seed(0)
    net = Net()
    layers = extract_layers(net)
    got = [(lay.name, lay.kind, lay.n, lay.m) for lay in layers]
    assert got == [
        ("emb", "embedding", 50, 8),
        ("conv1", "conv2d", 18, 4),  # (out=4, in*kh*kw = 3*2*3)
        ("conv1d", "conv1d", 12, 6),
        ("attn.q", "attn_q", 8, 8),
        ("attn.k", "attn_k", 8, 8),
        ("attn.v", "attn_v", 8, 8),
        ("attn.out_proj", "attn_out", 8, 8),
        ("head.0", "linear", 16, 8),
        # head.2 is (1, 16): min dim 1 < min_dim=2, skipped; LayerNorm and biases are 1-D
    ]
    q, k, v = net.attn.in_proj_weight.detach().chunk(3)
    assert torch.equal(layers[3].matrix, q) and torch.equal(layers[5].matrix, v)
    assert torch.equal(layers[1].matrix, net.conv1.weight.detach().reshape(4, 18))
    # copies: later training does not change an extracted matrix
    with torch.no_grad():
        net.head[0].weight.add_(1.0)
    assert not torch.equal(layers[-1].matrix, net.head[0].weight)
    assert [lay.name for lay in extract_layers(net, min_dim=1)][-1] == "head.2"


def test_conv_kernel_mode_slices_per_position():
    conv = nn.Conv2d(3, 5, kernel_size=(2, 2))
    layers = extract_layers(nn.Sequential(conv), conv="kernel")
    assert [lay.name for lay in layers] == ["0[0,0]", "0[0,1]", "0[1,0]", "0[1,1]"]
    assert all(lay.matrix.shape == (5, 3) for lay in layers)
    assert torch.equal(layers[1].matrix, conv.weight.detach()[:, :, 0, 1])
    c1 = extract_layers(nn.Sequential(nn.Conv1d(4, 6, 3)), conv="kernel")
    assert [lay.name for lay in c1] == ["0[0]", "0[1]", "0[2]"]


def test_mha_with_separate_projections():
    mha = nn.MultiheadAttention(8, 2, kdim=4, vdim=6)
    kinds = [(lay.name, lay.kind, tuple(lay.matrix.shape)) for lay in extract_layers(mha)]
    assert kinds == [("q", "attn_q", (8, 8)), ("k", "attn_k", (8, 4)), ("v", "attn_v", (8, 6)),
                     ("out_proj", "attn_out", (8, 8))]


def test_extract_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"parameter 'conv' must be one of \{'kernel', 'reshape'\}"):
        extract_layers(nn.Linear(3, 3), conv="flatten")
    with pytest.raises(TypeError, match="parameter 'model'"):
        extract_layers(np.eye(3))


def test_load_state_dict_and_checkpoint(tmp_path):
    torch.manual_seed(1)
    net = Net()
    sd_path = tmp_path / "sd.pt"
    torch.save(net.state_dict(), sd_path)
    from_file = {(lay.name, lay.kind): lay for lay in load_matrices(sd_path)}
    from_model = {(lay.name, lay.kind): lay for lay in extract_layers(net)}
    assert set(from_file) == set(from_model)
    for key, lay in from_model.items():
        assert torch.equal(from_file[key].matrix, lay.matrix)
    ck_path = tmp_path / "ck.pt"
    torch.save({"model": net.state_dict(), "step": 10, "config": {"lr": 0.1}}, ck_path)
    assert len(load_matrices(ck_path)) == len(from_model)
    assert [lay.name for lay in load_matrices(sd_path, conv="kernel") if lay.kind == "conv2d"][:2] == [
        "conv1[0,0]", "conv1[0,1]"]


def test_load_numpy_files(tmp_path):
    rng = np.random.default_rng(0)
    W = rng.standard_normal((20, 7))
    np.save(tmp_path / "w.npy", W)
    (lay,) = load_matrices(tmp_path / "w.npy")
    assert (lay.name, lay.kind, lay.n, lay.m) == ("w", "matrix", 20, 7)
    assert_allclose(lay.matrix.numpy(), W)
    np.savez(tmp_path / "m.npz", a=W, b=W.T[:5])
    assert [(x.name, x.n, x.m) for x in load_matrices(tmp_path / "m.npz")] == [("a", 20, 7), ("b", 20, 5)]
    assert isinstance(lay, LayerMatrix) and lay.q == pytest.approx(20 / 7)


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("missing.pt", None, "no such file"),
        ("garbage.pt", b"not a torch file", "cannot read file"),
        ("garbage.npy", b"\x00\x01", "cannot read file"),
        ("weights.txt", b"1 2 3", "unsupported file type '.txt'"),
    ],
)
def test_load_bad_files_one_line_errors(tmp_path, name, content, match):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        load_matrices(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_load_non_2d_arrays_rejected(tmp_path):
    np.save(tmp_path / "cube.npy", np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match=r"array 'cube' is not a 2-D matrix \(shape \(2, 3, 4\)\)"):
        load_matrices(tmp_path / "cube.npy")
    np.savez(tmp_path / "mixed.npz", w=np.ones((4, 4)), b=np.ones(4))
    with pytest.raises(ValueError, match="array 'b' is not a 2-D matrix"):
        load_matrices(tmp_path / "mixed.npz")
    torch.save({"bias": torch.ones(3)}, tmp_path / "nomat.pt")
    with pytest.raises(ValueError, match="no weight matrices found"):
        load_matrices(tmp_path / "nomat.pt")
