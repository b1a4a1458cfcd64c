"""A char-level GPT-2 on htsweep's shipped corpus trained by Lightning, α and phase per layer in MLflow.

    python examples/lightning_gpt2.py --steps 200 --every 50 --workdir runs/lightning-gpt2
    mlflow ui --backend-store-uri sqlite:///runs/lightning-gpt2/mlflow.db

``SpectralCallback(every_n_steps=...)`` logs ``alpha/<layer>``, ``phase_code/<layer>`` and the aggregates
through every logger of the Trainer (here MLflow and CSV) and tags the MLflow run with ``phase.<layer>``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from char_windows import CharWindows, gpt2, print_layers  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=50, help="analyze the spectra every N optimizer steps")
    parser.add_argument("--n-layer", type=int, default=2)
    parser.add_argument("--n-embd", type=int, default=128)
    parser.add_argument("--workdir", default="runs/lightning-gpt2")
    args = parser.parse_args(argv)

    import lightning as L
    import torch
    from lightning.pytorch.loggers import CSVLogger, MLFlowLogger

    from htsweep.integrations.lightning import SpectralCallback

    class CharGPT2(L.LightningModule):
        def __init__(self, vocab_size: int) -> None:
            super().__init__()
            self.gpt = gpt2(vocab_size, n_layer=args.n_layer, n_embd=args.n_embd)

        def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
            loss = self.gpt(**batch).loss
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(self.parameters(), lr=3e-3)

    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    train = CharWindows()
    loader = torch.utils.data.DataLoader(train, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
    mlflow_logger = MLFlowLogger(experiment_name="lightning-gpt2", tracking_uri=uri)
    callback = SpectralCallback(every_n_steps=args.every)
    trainer = L.Trainer(max_steps=args.steps, accelerator="cpu", logger=[mlflow_logger, CSVLogger(workdir)],
                        callbacks=[callback], log_every_n_steps=args.every, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(CharGPT2(len(train.vocab)), loader)
    print(f"final step {trainer.global_step}, loss {float(trainer.callback_metrics['train_loss']):.3f}, "
          f"MLflow run {mlflow_logger.run_id} in {uri}")
    print_layers(callback.last)
    return {"tracking_uri": uri, "run_id": mlflow_logger.run_id, "last": callback.last}


if __name__ == "__main__":
    main()
