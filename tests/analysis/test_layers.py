"""Tests for analysis.layers: layer extraction from modules and loading matrices from files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from torch import nn

from htsweep.analysis.layers import LayerMatrix, extract_layers, load_matrices, plan_layers


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
    with pytest.raises(ValueError, match=r"parameter 'conv' must be one of \{'kernel', 'pooled', 'reshape'\}"):
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


def test_rnn_gates_are_separate_matrices():
    torch.manual_seed(5)
    lstm = nn.LSTM(12, 20, num_layers=2, bidirectional=True)
    layers = {lay.name: lay for lay in extract_layers(lstm)}
    # LSTM stacks (i, f, g, o) in weight_ih_l0 (4·20, 12); each gate is its own matrix
    for i, gate in enumerate("ifgo"):
        assert torch.equal(layers[f"weight_ih_l0.{gate}"].matrix, lstm.weight_ih_l0.detach()[20 * i : 20 * (i + 1)])
        assert layers[f"weight_hh_l1_reverse.{gate}"].kind == "rnn_hh"
    assert layers["weight_ih_l1.i"].matrix.shape == (20, 40)  # layer 2 reads both directions
    assert len(layers) == 2 * 2 * 2 * 4
    gru = nn.GRU(8, 16)
    assert [lay.name for lay in extract_layers(gru)] == [f"weight_{w}_l0.{g}" for w in ("ih", "hh") for g in "rzn"]
    # from a state dict, the gate count comes from the recurrent matrix's shape (G·H, H)
    for module in (lstm, gru, nn.LSTM(8, 16, proj_size=4), nn.RNN(8, 16)):
        from_state = [(i.name, i.kind, i.shape) for i in plan_layers(module.state_dict()).layers]
        assert from_state == [(i.name, i.kind, i.shape) for i in plan_layers(module).layers]


class Odd(nn.Module):
    """Layer types with a documented matrix choice."""

    def __init__(self) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(30, 8)
        self.pair = nn.Bilinear(6, 5, 4)
        self.conv3 = nn.Conv3d(2, 3, (2, 2, 2))
        self.up = nn.ConvTranspose2d(5, 7, 3)
        self.experts = nn.Module()
        self.experts.gate_up_proj = nn.Parameter(torch.randn(3, 16, 24))  # MoE stack (E, d, 2f)
        self.mixer = nn.Parameter(torch.randn(10, 10))  # a bare matrix parameter of a custom module


def test_odd_layer_types_and_file_agreement():
    torch.manual_seed(6)
    odd = Odd()
    layers = {lay.name: lay for lay in extract_layers(odd)}
    assert {n: lay.kind for n, lay in layers.items()} == {
        "bag": "embedding", "pair": "bilinear", "conv3": "conv3d", "up": "conv2d",
        "experts.gate_up_proj[0]": "expert", "experts.gate_up_proj[1]": "expert", "experts.gate_up_proj[2]": "expert",
        "mixer": "linear",
    }
    assert layers["pair"].matrix.shape == (4, 30)  # y_k = x1ᵀ W_k x2 is linear in vec(x1 x2ᵀ)
    assert torch.equal(layers["up"].matrix, odd.up.weight.detach().reshape(5, 63))  # (in, out·k²) as stored
    assert torch.equal(layers["experts.gate_up_proj[1]"].matrix, odd.experts.gate_up_proj.detach()[1])
    # a file has no module types: the same matrices; kinds follow the key names (documented)
    from_file = {i.name: i.kind for i in plan_layers(odd.state_dict()).layers}
    assert set(from_file) == set(layers)
    assert {n for n in layers if from_file[n] != layers[n].kind} == {"bag", "pair"}


def test_conv_pooled_mode_stacks_kernel_slices():
    torch.manual_seed(7)
    conv = nn.Conv2d(4, 6, 3)
    (pooled,) = extract_layers(nn.Sequential(conv), conv="pooled")
    assert pooled.matrix.shape == (9, 6, 4) and (pooled.n, pooled.m) == (6, 4)
    kernel = extract_layers(nn.Sequential(conv), conv="kernel")
    for i, lay in enumerate(kernel):
        assert torch.equal(pooled.matrix[i], lay.matrix)


def test_lora_pairs_merge_to_delta_w(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(8)
    base = nn.Module()
    base.q_proj = nn.Module()
    base.q_proj.base_layer = nn.Linear(32, 48)
    base.q_proj.lora_A = nn.ModuleDict({"default": nn.Linear(32, 4, bias=False)})
    base.q_proj.lora_B = nn.ModuleDict({"default": nn.Linear(4, 48, bias=False)})
    layers = {lay.name: lay for lay in extract_layers(base, min_dim=1)}
    assert set(layers) == {"q_proj.base_layer", "q_proj.lora_BA"}
    delta = base.q_proj.lora_B["default"].weight @ base.q_proj.lora_A["default"].weight
    assert layers["q_proj.lora_BA"].kind == "lora"
    torch.testing.assert_close(layers["q_proj.lora_BA"].matrix, delta.detach())
    # a PEFT adapter file (adapter name dropped from the keys)
    save_file({"base_model.model.q_proj.lora_A.weight": base.q_proj.lora_A["default"].weight.detach(),
               "base_model.model.q_proj.lora_B.weight": base.q_proj.lora_B["default"].weight.detach()},
              tmp_path / "adapter_model.safetensors")
    (lay,) = load_matrices(tmp_path)
    assert (lay.name, lay.kind, lay.n, lay.m) == ("base_model.model.q_proj.lora_BA", "lora", 48, 32)
    torch.testing.assert_close(lay.matrix, delta.detach())


def test_layer_selection_by_glob_kind_and_size():
    torch.manual_seed(9)
    net = Net()
    names = lambda **kw: [lay.name for lay in extract_layers(net, **kw)]  # noqa: E731
    assert names(include="attn.*") == ["attn.q", "attn.k", "attn.v", "attn.out_proj"]
    assert names(include=["attn.*", "emb"], exclude="*.v") == ["emb", "attn.q", "attn.k", "attn.out_proj"]
    assert names(kinds="attn_*", exclude_kinds=["attn_out"]) == ["attn.q", "attn.k", "attn.v"]
    assert names(kinds="conv*") == ["conv1", "conv1d"]
    assert names(min_dim=7, max_dim=8) == ["emb", "attn.q", "attn.k", "attn.v", "attn.out_proj", "head.0"]
    assert names(min_dim=7, max_dim=7) == []
    with pytest.raises(ValueError, match="parameter 'max_dim'"):
        extract_layers(net, max_dim=0)
    with pytest.raises(TypeError, match="parameter 'include'"):
        extract_layers(net, include=3)
