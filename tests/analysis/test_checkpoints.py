"""Tests for analysis.checkpoints and the file path of analysis.layers: every format, real files.

Real parts only: safetensors files written by the ``safetensors`` package, a real ``transformers``
GPT-2 (tiny config, random init) saved with ``save_pretrained``, torch files written by
``torch.save``, and a malicious pickle that would create a file when unpickled.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from htsweep.analysis.checkpoints import open_checkpoint
from htsweep.analysis.layers import extract_layers, load_matrices, plan_layers


class Zoo(nn.Module):
    """One module of most supported kinds (no tied weights: safetensors refuses shared tensors)."""

    def __init__(self) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(40, 24)
        self.bag_embedding = nn.EmbeddingBag(30, 24)  # a file knows an embedding by its name only
        self.attn = nn.MultiheadAttention(24, 4)
        self.lstm = nn.LSTM(24, 16, num_layers=2)
        self.gru = nn.GRU(24, 12)
        self.conv = nn.Conv2d(3, 8, 3)
        self.conv3 = nn.Conv3d(2, 4, 2)
        self.up = nn.ConvTranspose2d(8, 6, 2)
        self.qkv = nn.Linear(24, 72)
        self.fc = nn.Linear(24, 48)
        self.norm = nn.LayerNorm(48)


def _signature(layers):
    return sorted((lay.name, lay.kind, lay.n, lay.m) for lay in layers)


@pytest.fixture(scope="module")
def zoo() -> Zoo:
    torch.manual_seed(0)
    return Zoo()


def _contiguous_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()}


def test_safetensors_single_sharded_and_torch_match_the_module(zoo, tmp_path):
    state = _contiguous_state(zoo)
    save_file(state, tmp_path / "model.safetensors")
    keys = list(state)
    shards = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2],
              "model-00002-of-00002.safetensors": keys[len(keys) // 2:]}
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    for fname, ks in shards.items():
        save_file({k: state[k] for k in ks}, sharded / fname)
    index = {"metadata": {}, "weight_map": {k: f for f, ks in shards.items() for k in ks}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    torch.save(zoo.state_dict(), tmp_path / "model.pt")

    module = {lay.name: lay for lay in extract_layers(zoo)}
    for source in (tmp_path / "model.safetensors", sharded, sharded / "model.safetensors.index.json",
                   tmp_path / "model.pt"):
        got = load_matrices(source)
        assert _signature(got) == _signature(module.values()), source
        for lay in got:
            assert torch.equal(lay.matrix, module[lay.name].matrix), (source, lay.name)
    # the module path is in module order, the safetensors path in natural key order
    names = [lay.name for lay in load_matrices(tmp_path / "model.safetensors")]
    assert names.index("lstm.weight_ih_l0.i") < names.index("lstm.weight_ih_l1.i")


def test_hf_folders_with_safetensors_or_pytorch_bin(zoo, tmp_path):
    state = _contiguous_state(zoo)
    expected = _signature(extract_layers(zoo))
    config = {"model_type": "zoo", "num_attention_heads": 4}
    for variant in ("safetensors", "bin", "bin-sharded"):
        folder = tmp_path / variant
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(config))
        if variant == "safetensors":
            save_file(state, folder / "model.safetensors")
        elif variant == "bin":
            torch.save(state, folder / "pytorch_model.bin")
        else:
            keys = list(state)
            halves = {"pytorch_model-1.bin": keys[:5], "pytorch_model-2.bin": keys[5:]}
            for fname, ks in halves.items():
                torch.save({k: state[k] for k in ks}, folder / fname)
            weight_map = {k: f for f, ks in halves.items() for k in ks}
            (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
        ckpt = open_checkpoint(folder)
        assert ckpt.config["num_attention_heads"] == 4
        assert _signature(load_matrices(folder)) == expected, variant


def test_listing_reads_nothing_and_iteration_reads_each_tensor_once(zoo, tmp_path):
    save_file(_contiguous_state(zoo), tmp_path / "m.safetensors")
    ckpt = open_checkpoint(tmp_path / "m.safetensors")
    reads: list[str] = []
    original = ckpt._reader

    def counting(info):
        reads.append(info.key)
        return original(info)

    ckpt = dataclasses.replace(ckpt, _reader=counting)
    plan = plan_layers(ckpt)
    assert reads == []  # names, kinds and shapes come from the header alone
    assert {i.name for i in plan.layers} >= {"attn.q", "lstm.weight_hh_l1.o", "conv3"}
    assert all(i.shape[-2:] and i.n >= i.m for i in plan.layers)
    mats = list(plan)
    assert len(mats) == len(plan.layers)
    assert sorted(reads) == sorted(set(reads))  # the pieces of one tensor (q, k, v; gates) share one read
    assert "attn.in_proj_weight" in reads and reads.count("lstm.weight_ih_l0") == 1


class _Evil:
    """Unpickling this creates a file: what a malicious checkpoint would do."""

    def __init__(self, target: pathlib.Path) -> None:
        self.target = target

    def __reduce__(self):
        return (pathlib.Path.touch, (self.target,))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.randn(8, 8)}, "payload": _Evil(target)}, path)
    for loader in (open_checkpoint, load_matrices, plan_layers):
        with pytest.raises(ValueError, match=r"refusing to unpickle: the file holds Python objects.*--trust-pickle") as info:
            loader(path)
        assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert not target.exists()
    # the same file inside a model folder is refused too
    folder = tmp_path / "hf"
    folder.mkdir()
    path.rename(folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match="--trust-pickle"):
        load_matrices(folder)
    assert not target.exists()


def test_pickled_module_needs_the_opt_in(tmp_path):
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(20, 10), nn.ReLU(), nn.Linear(10, 5))
    torch.save(net, tmp_path / "net.pt")
    with pytest.raises(ValueError, match="trust_pickle=True"):
        load_matrices(tmp_path / "net.pt")
    layers = load_matrices(tmp_path / "net.pt", trust_pickle=True)
    assert [(lay.name, lay.n, lay.m) for lay in layers] == [("0", 20, 10), ("2", 10, 5)]
    assert torch.equal(layers[0].matrix, net[0].weight.detach())


def test_legacy_torch_format_and_folder_errors(tmp_path):
    torch.save({"fc.weight": torch.randn(6, 4)}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    (lay,) = load_matrices(tmp_path / "old.pt")  # not memory-mappable: read in full, still weights only
    assert (lay.name, lay.n, lay.m) == ("fc", 6, 4)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no checkpoint in this folder"):
        open_checkpoint(empty)
    (empty / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "missing.safetensors"}}))
    with pytest.raises(ValueError, match="shard.*missing: missing.safetensors"):
        open_checkpoint(empty)
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match="cannot read safetensors file"):
        open_checkpoint(tmp_path / "bad.safetensors")


def test_bfloat16_tensors_stay_bfloat16(tmp_path):
    w = torch.randn(64, 32).to(torch.bfloat16)
    save_file({"proj.weight": w}, tmp_path / "bf16.safetensors")
    (lay,) = load_matrices(tmp_path / "bf16.safetensors")
    assert lay.matrix.dtype == torch.bfloat16 and torch.equal(lay.matrix, w)
    np.save(tmp_path / "half.npy", np.ones((5, 4), dtype=np.float16))
    assert load_matrices(tmp_path / "half.npy")[0].matrix.dtype == torch.float16


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=96, n_positions=48,
                                  bos_token_id=0, eos_token_id=0)
    torch.manual_seed(3)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    folder = tmp_path_factory.mktemp("gpt2")
    model.save_pretrained(folder)
    return model, folder


def test_gpt2_conv1d_layers_and_tied_head(gpt2, tmp_path):
    model, folder = gpt2
    layers = extract_layers(model)
    by_name = {lay.name: lay for lay in layers}
    # every attention and MLP matrix is a transformers Conv1D, weight (in, out)
    block = [n for n in by_name if n.startswith("transformer.h.0.")]
    assert block == ["transformer.h.0.attn.c_attn.q", "transformer.h.0.attn.c_attn.k", "transformer.h.0.attn.c_attn.v",
                     "transformer.h.0.attn.c_proj", "transformer.h.0.mlp.c_fc", "transformer.h.0.mlp.c_proj"]
    c_attn = model.transformer.h[0].attn.c_attn.weight.detach()  # (64, 192) = (in, 3·out)
    assert torch.equal(by_name["transformer.h.0.attn.c_attn.k"].matrix, c_attn[:, 64:128])
    assert by_name["transformer.h.0.mlp.c_fc"].kind == "linear"
    # lm_head is tied to wte: analysed once, as the embedding
    assert "lm_head" not in by_name and by_name["transformer.wte"].kind == "embedding"
    assert plan_layers(model).tied == (("lm_head.weight", "transformer.wte.weight"),)
    # the same layer set from save_pretrained (safetensors; the tied head is not stored) ...
    from_dir = load_matrices(folder)
    assert _signature(from_dir) == _signature(layers)
    # ... and from a plain torch.save of the state dict (both keys share one storage)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    plan = plan_layers(tmp_path / "pytorch_model.bin")
    assert plan.tied == (("lm_head.weight", "transformer.wte.weight"),)
    assert _signature(plan) == _signature(layers)
    for lay in plan:
        assert torch.equal(lay.matrix, by_name[lay.name].matrix), lay.name


def test_tied_copies_found_by_equal_data_or_config(tmp_path):
    torch.manual_seed(4)
    emb = torch.randn(50, 16)
    state = {"lm_head.weight": emb.clone(), "model.embed_tokens.weight": emb, "model.proj.weight": torch.randn(16, 16),
             "model.zero_a.weight": torch.zeros(16, 16), "model.zero_b.weight": torch.zeros(16, 16)}
    save_file(state, tmp_path / "model.safetensors")
    plan = plan_layers(tmp_path / "model.safetensors")
    names = [i.name for i in plan.layers]
    # equal data: the embedding is kept, the copy dropped; constant (zero) matrices are not ties
    assert "model.embed_tokens" in names and "lm_head" not in names
    assert {"model.zero_a", "model.zero_b"} <= set(names)
    assert plan.tied == (("lm_head.weight", "model.embed_tokens.weight"),)
    # the config's tie_word_embeddings wins even when the stored head differs
    folder = tmp_path / "hf"
    folder.mkdir()
    state["lm_head.weight"] = torch.randn(50, 16)
    save_file(state, folder / "model.safetensors")
    assert "lm_head" in [i.name for i in plan_layers(folder).layers]
    (folder / "config.json").write_text(json.dumps({"tie_word_embeddings": True}))
    assert "lm_head" not in [i.name for i in plan_layers(folder).layers]
    # the weights file itself reads its folder's config.json too
    assert "lm_head" not in [i.name for i in plan_layers(folder / "model.safetensors").layers]


def test_packed_query_key_value_split_per_head_with_config(tmp_path):
    heads, hd, d = 4, 8, 32
    q, k, v = (torch.randn(heads, hd, d) for _ in range(3))
    fused = torch.stack([q, k, v], dim=1).reshape(3 * d, d)  # GPT-NeoX layout: [head, (q|k|v), head_dim]
    save_file({"gpt_neox.layers.0.attention.query_key_value.weight": fused}, tmp_path / "model.safetensors")
    (whole,) = load_matrices(tmp_path / "model.safetensors")
    assert whole.kind == "attn_qkv" and whole.matrix.shape == (3 * d, d)  # no head count: kept whole
    (tmp_path / "config.json").write_text(json.dumps({"num_attention_heads": heads}))
    split = {lay.kind: lay.matrix for lay in load_matrices(tmp_path)}
    assert {lay.kind for lay in load_matrices(tmp_path / "model.safetensors")} == set(split)
    assert torch.equal(split["attn_k"], k.reshape(d, d)) and torch.equal(split["attn_v"], v.reshape(d, d))
