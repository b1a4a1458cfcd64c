"""Tests for `htsweep analyze`: table / JSON output, plots, and one-line errors with exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from htsweep.sweeps.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def state_dict_path(tmp_path_factory):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(120, 60), nn.ReLU(), nn.Linear(60, 30), nn.Conv2d(3, 8, 3))
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save({"model": model.state_dict(), "step": 3}, path)
    return path


def test_json_lines(state_dict_path):
    result = runner.invoke(app, ["analyze", str(state_dict_path), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert [r["name"] for r in rows] == ["0", "2", "3"]
    assert [(r["n"], r["m"]) for r in rows] == [(120, 60), (60, 30), (27, 8)]
    assert "eigs" not in rows[0] and rows[0]["phase"]
    assert rows[2]["alpha"] is None and "too small" in rows[2]["warning"]  # M=8: NaN -> null


def test_table_and_plots(state_dict_path, tmp_path):
    plots = tmp_path / "plots"
    result = runner.invoke(app, ["analyze", str(state_dict_path), "--plot", str(plots), "--localization"])
    assert result.exit_code == 0, result.output
    assert "random_like" in result.stdout and "120×60" in result.stdout
    assert sorted(p.name for p in plots.iterdir()) == ["000_0.png", "001_2.png", "002_3.png"]


def test_conv_kernel_option(state_dict_path):
    result = runner.invoke(app, ["analyze", str(state_dict_path), "--json", "--conv", "kernel"])
    assert result.exit_code == 0, result.output
    names = [json.loads(line)["name"] for line in result.stdout.splitlines() if line.strip()]
    assert names[2:5] == ["3[0,0]", "3[0,1]", "3[0,2]"] and len(names) == 2 + 9


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "no such file"),
        ("cube", "is not a 2-D matrix"),
        ("nan", "layer 'w': weights contain 1 NaN/Inf"),
        ("garbage", "cannot read file"),
    ],
)
def test_bad_input_one_line_error_exit_2(tmp_path, setup, message):
    path = tmp_path / {"missing": "x.pt", "cube": "cube.npy", "nan": "w.npy", "garbage": "g.pt"}[setup]
    if setup == "cube":
        np.save(path, np.ones((2, 3, 4)))
    elif setup == "nan":
        w = np.ones((20, 20))
        w[0, 0] = np.nan
        np.save(path, w)
    elif setup == "garbage":
        path.write_bytes(b"definitely not a checkpoint")
    result = runner.invoke(app, ["analyze", str(path)])
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in result.output


def test_bad_conv_option(state_dict_path):
    result = runner.invoke(app, ["analyze", str(state_dict_path), "--conv", "flatten"])
    assert result.exit_code == 2 and "--conv must be" in result.stderr


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """A Hugging Face-style folder: config.json + sharded model.safetensors with its index."""
    from safetensors.torch import save_file

    torch.manual_seed(1)
    state = {"model.embed_tokens.weight": torch.randn(300, 64), "lm_head.weight": torch.randn(300, 64),
             "model.layers.0.self_attn.q_proj.weight": torch.randn(64, 64) * 0.1,
             "model.layers.0.mlp.up_proj.weight": torch.randn(160, 64).to(torch.bfloat16),
             "model.layers.0.input_layernorm.weight": torch.ones(64)}
    folder = tmp_path_factory.mktemp("hf")
    keys = list(state)
    shards = {"model-00001-of-00002.safetensors": keys[:2], "model-00002-of-00002.safetensors": keys[2:]}
    for fname, ks in shards.items():
        save_file({k: state[k] for k in ks}, folder / fname)
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {k: f for f, ks in shards.items() for k in ks}}))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "tie_word_embeddings": False}))
    return folder


def test_hf_folder_list_and_analyze(hf_folder):
    listing = runner.invoke(app, ["analyze", str(hf_folder), "--list", "--json"])
    assert listing.exit_code == 0, listing.output
    planned = [json.loads(line) for line in listing.stdout.splitlines()]
    assert [(p["name"], p["kind"], p["shape"]) for p in planned] == [
        ("lm_head", "linear", [300, 64]), ("model.embed_tokens", "embedding", [300, 64]),
        ("model.layers.0.mlp.up_proj", "linear", [160, 64]), ("model.layers.0.self_attn.q_proj", "linear", [64, 64])]
    assert planned[2]["dtype"] == "bfloat16"
    table = runner.invoke(app, ["analyze", str(hf_folder), "--list"])
    assert "model.embed_tokens" in table.stdout and "4 layers" in table.stdout
    result = runner.invoke(app, ["analyze", str(hf_folder), "--json", "--exclude", "lm_head", "--kind", "linear"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["name"] for r in rows] == ["model.layers.0.mlp.up_proj", "model.layers.0.self_attn.q_proj"]
    assert all(r["precision"] == "float32" and r["phase"] for r in rows)
    f64 = runner.invoke(app, ["analyze", str(hf_folder / "model.safetensors.index.json"), "--json",
                              "--precision", "float64", "--include", "*.q_proj", "--threads", "1"])
    (row,) = [json.loads(line) for line in f64.stdout.splitlines()]
    assert row["precision"] == "float64" and abs(row["alpha"] - rows[1]["alpha"]) < 0.02


def test_large_model_message(hf_folder, monkeypatch):
    import htsweep.sweeps.analyze_cmd as cmd

    monkeypatch.setattr(cmd, "LARGE_SECONDS", 0.0)
    monkeypatch.setattr(cmd, "_PROBE_FLOPS", 0.0)
    monkeypatch.setattr("htsweep.analysis.analyze.estimate_seconds", lambda plan, **kw: 12.0)
    result = runner.invoke(app, ["analyze", str(hf_folder), "--json"])
    assert result.exit_code == 0, result.output
    assert "Large model: 4 layers, 52.74 k weights, biggest matrix lm_head 300×64; estimated 12 s" in result.stderr


def test_unsafe_pickle_refused_with_the_opt_in_named(tmp_path):
    import pathlib

    target = tmp_path / "created-by-pickle"

    class Evil:
        def __reduce__(self):
            return (pathlib.Path.touch, (target,))

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.randn(40, 40)}, "x": Evil()}, path)
    result = runner.invoke(app, ["analyze", str(path)])
    assert result.exit_code == 2 and not target.exists()
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "refusing to unpickle" in line and "--trust-pickle" in line
    module = tmp_path / "module.pt"
    torch.save(nn.Sequential(nn.Linear(50, 40)), module)
    assert runner.invoke(app, ["analyze", str(module)]).exit_code == 2
    trusted = runner.invoke(app, ["analyze", str(module), "--trust-pickle", "--json"])
    assert trusted.exit_code == 0 and json.loads(trusted.stdout)["name"] == "0"


def test_empty_selection_and_bad_precision(state_dict_path):
    result = runner.invoke(app, ["analyze", str(state_dict_path), "--include", "nothing*"])
    assert result.exit_code == 2 and "no weight matrices found (after layer selection)" in result.stderr
    result = runner.invoke(app, ["analyze", str(state_dict_path), "--precision", "float16"])
    assert result.exit_code == 2 and "--precision must be one of float32, float64" in result.stderr
