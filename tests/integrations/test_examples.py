"""The framework examples run (tiny settings, CPU) and log α and phase per layer to MLflow."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from integrations_testutils import metric_steps

pytest.importorskip("transformers")
pytest.importorskip("accelerate")
pytest.importorskip("lightning")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TINY = ["--steps", "4", "--every", "2", "--n-layer", "1", "--n-embd", "64"]


def _main(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.parametrize(("name", "prefix"), [("transformers_gpt2", ""), ("lightning_gpt2", "gpt.")])
def test_example_logs_alpha_and_phase_per_layer(name, prefix, tmp_path, monkeypatch, capsys):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "unused")  # the transformers example sets its own
    out = _main(name)([*TINY, "--workdir", str(tmp_path)])
    client = mlflow.MlflowClient(out["tracking_uri"])
    run = client.get_run(out["run_id"])
    for layer in (f"{prefix}transformer.h.0.attn.c_attn.q", f"{prefix}transformer.h.0.mlp.c_fc"):
        assert metric_steps(client, out["run_id"], f"alpha/{layer}") == [2, 4]
        assert run.data.tags[f"phase.{layer}"] == out["last"].layer(layer)["phase"]
    printed = capsys.readouterr().out
    assert "transformer.h.0.mlp.c_fc" in printed and "alpha" in printed
