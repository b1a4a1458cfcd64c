"""Tests for `htsweep analyze`: table / JSON output, plots, and one-line errors with exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from sweeps.cli import app

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
