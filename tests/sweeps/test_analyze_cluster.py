"""``htsweep analyze --address`` / ``analyze_model(..., ray_address=)``: layers as tasks on a real local Ray.

The rows must be identical to the local run's (same order, same values to the last bit), whether
each task reads its own layer from the checkpoint or gets its matrix shipped from a module; a
layer's error stays one line; the CLI keeps its JSON lines.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import htsweep
from htsweep.analysis import analyze_model
from htsweep.analysis.layers import plan_layers
from htsweep.analysis.synthetic import trained_like
from htsweep.sweeps.analyze_cluster import LayerTiming, iter_analysis_ray
from htsweep.sweeps.cli import app

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A two-shard safetensors folder: heavy-tailed float32 and bfloat16 layers, a rank-deficient one, a vector."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("ckpt")
    rng = np.random.default_rng(0)
    low_rank = (rng.standard_normal((300, 20)) @ rng.standard_normal((20, 120))).astype(np.float32)
    shard1 = {"a.weight": torch.from_numpy(trained_like(400, 160, seed=1)),
              "b.weight": torch.from_numpy(trained_like(200, 200, seed=2)).to(torch.bfloat16),
              "norm.weight": torch.ones(160)}
    shard2 = {"c.weight": torch.from_numpy(low_rank), "d.weight": torch.from_numpy(trained_like(96, 256, seed=3))}
    save_file(shard1, folder / "model-00001-of-00002.safetensors")
    save_file(shard2, folder / "model-00002-of-00002.safetensors")
    weight_map = {k: "model-00001-of-00002.safetensors" for k in shard1}
    weight_map.update({k: "model-00002-of-00002.safetensors" for k in shard2})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def _same_rows(got, want):
    assert [r["name"] for r in got] == [r["name"] for r in want]
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        for key in w:
            if key == "eigs":
                np.testing.assert_array_equal(g[key], w[key])
            elif isinstance(w[key], float) and np.isnan(w[key]):
                assert np.isnan(g[key]), key
            else:
                assert g[key] == w[key], (w["name"], key, g[key], w[key])


def test_checkpoint_rows_identical_to_local(ray_local, checkpoint):
    from htsweep.analysis.analyze import iter_analysis

    plan = plan_layers(checkpoint)
    local = list(iter_analysis(plan, workers=2))
    timing = LayerTiming()
    seen = []
    remote = list(iter_analysis_ray(plan_layers(checkpoint), on_layer=lambda info: seen.append(info.name),
                                    timing=timing))
    _same_rows(remote, local)
    assert seen == [info.name for info in plan.layers] == ["a", "b", "c", "d"]
    assert {r["precision"] for r in remote} == {"float32", "float64"}  # c is rank-deficient: redone
    assert len(timing.task_s) == 4 and timing.wall_s > 0 and np.isfinite(timing.overhead_per_layer_s)


def test_module_rows_identical_and_public_api(ray_local):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(128, 256), torch.nn.ReLU(), torch.nn.Linear(256, 64))
    want = analyze_model(model, device="cpu", workers=2, farms=True, farms_windows=2)
    # the session's Ray is reused; FARMS with 2 offsets per dimension there too (10 would differ)
    got = htsweep.analyze_model(model, ray_address="auto", device="cpu", farms=True, farms_windows=2)
    assert got.columns.tolist() == want.columns.tolist() and "alpha_farms" in got.columns
    assert got.equals(want)


def test_layer_error_is_one_line(ray_local, tmp_path):
    W = np.ones((40, 20), dtype=np.float32)
    W[3, 4] = np.nan
    np.save(tmp_path / "w.npy", W)
    with pytest.raises(ValueError, match=r"^layer 'w': weights contain 1 NaN/Inf value\(s\)$"):
        list(iter_analysis_ray(plan_layers(tmp_path / "w.npy")))


def test_cli_address_json_lines(ray_local, checkpoint):
    local = CliRunner().invoke(app, ["analyze", str(checkpoint), "--json"])
    remote = CliRunner().invoke(app, ["analyze", str(checkpoint), "--json", "--address", "auto"])
    assert local.exit_code == remote.exit_code == 0, remote.output
    assert remote.stdout == local.stdout
    assert len(remote.stdout.splitlines()) == 4
