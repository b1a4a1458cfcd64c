"""SpectralCallback in a real 🤗 Trainer on a tiny GPT-2 built from a config (no download).

GPT-2's Conv1D weights and its packed ``c_attn`` (split into q, k, v by the layer plan) are
analyzed; the metrics go through ``Trainer.log`` to transformers' own MLflowCallback.
"""

from __future__ import annotations

import math

import pytest
import torch
from integrations_testutils import metric_steps

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from htsweep.integrations.transformers import SpectralCallback  # noqa: E402


def _gpt2():
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_embd=64, n_layer=1, n_head=2, vocab_size=72, n_positions=32,
                                     bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(config)


def _data(n: int = 64, block: int = 32) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 72, (n, block), generator=g)
    return [{"input_ids": row, "labels": row} for row in ids]


def _trainer(tmp_path, steps: int, report_to: list[str]):
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=steps, per_device_train_batch_size=8,
                                          learning_rate=1e-3, logging_steps=2, report_to=report_to, use_cpu=True,
                                          save_strategy="no", disable_tqdm=True, dataloader_num_workers=0, seed=0)
    return transformers.Trainer(model=_gpt2(), args=args, train_dataset=_data())


def test_alpha_and_phase_per_layer_reach_trainer_log_and_mlflow(tmp_path, mlflow_uri, request):
    import mlflow

    trainer = _trainer(tmp_path, 5, ["mlflow"])
    callback = SpectralCallback.attach(trainer, every_n_steps=2, device="cpu")
    trainer.train()

    q = "alpha/transformer.h.0.attn.c_attn.q"
    assert [h["step"] for h in trainer.state.log_history if q in h] == [2, 4, 5]  # every 2 and the last
    (run,) = mlflow.search_runs(experiment_names=[request.node.name], output_format="list")
    client = mlflow.MlflowClient(mlflow_uri)
    assert metric_steps(client, run.info.run_id, q) == [2, 4, 5]
    assert metric_steps(client, run.info.run_id, "alpha/transformer.h.0.mlp.c_fc") == [2, 4, 5]
    data = client.get_run(run.info.run_id).data
    last = callback.last.layer("transformer.h.0.mlp.c_fc")
    assert last["kind"] == "linear" and (last["n"], last["m"]) == (256, 64)  # Conv1D read as (in, out)
    assert math.isclose(data.metrics["alpha/transformer.h.0.mlp.c_fc"], last["alpha"], rel_tol=1e-12)
    assert data.tags["phase.transformer.h.0.attn.c_attn.v"] == callback.last.layer("transformer.h.0.attn.c_attn.v")["phase"]
    assert data.tags["phase_step"] == "5"
    assert metric_steps(client, run.info.run_id, "loss") == [2, 4]  # the Trainer's own logs are not lost


def test_an_unbound_callback_fails_at_the_start(tmp_path):
    trainer = _trainer(tmp_path, 1, [])
    trainer.add_callback(SpectralCallback(every_n_steps=1))
    with pytest.raises(RuntimeError, match=r"not bound to its Trainer: use SpectralCallback.attach\(trainer"):
        trainer.train()
