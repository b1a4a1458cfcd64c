"""A char-level GPT-2 on htsweep's shipped corpus with the 🤗 Trainer, α and phase per layer in MLflow.

    python examples/transformers_gpt2.py --steps 200 --every 50 --workdir runs/hf-gpt2
    mlflow ui --backend-store-uri sqlite:///runs/hf-gpt2/mlflow.db

``SpectralCallback.attach(trainer, every_n_steps=...)`` hands ``alpha/<layer>``, ``phase_code/<layer>``
and the aggregates to ``Trainer.log``, so transformers' own MLflow integration (``report_to=["mlflow"]``)
records them, and tags the run with ``phase.<layer>``.
"""

from __future__ import annotations

import argparse
import os
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
    parser.add_argument("--workdir", default="runs/hf-gpt2")
    args = parser.parse_args(argv)

    import mlflow
    import transformers

    from htsweep.integrations.transformers import SpectralCallback

    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri  # transformers' MLflowCallback reads these
    os.environ["MLFLOW_EXPERIMENT_NAME"] = "hf-gpt2"
    train = CharWindows()
    model = gpt2(len(train.vocab), n_layer=args.n_layer, n_embd=args.n_embd)
    targs = transformers.TrainingArguments(
        output_dir=str(workdir / "trainer"), max_steps=args.steps, per_device_train_batch_size=16, learning_rate=3e-3,
        logging_steps=args.every, report_to=["mlflow"], use_cpu=True, save_strategy="no", disable_tqdm=True, seed=0)
    trainer = transformers.Trainer(model=model, args=targs, train_dataset=train)
    callback = SpectralCallback.attach(trainer, every_n_steps=args.every)
    trainer.train()
    run = mlflow.last_active_run()
    print(f"final step {trainer.state.global_step}, loss {trainer.state.log_history[-2].get('loss', float('nan')):.3f}, "
          f"MLflow run {run.info.run_id} in {uri}")
    print_layers(callback.last)
    return {"tracking_uri": uri, "run_id": run.info.run_id, "last": callback.last}


if __name__ == "__main__":
    main()
