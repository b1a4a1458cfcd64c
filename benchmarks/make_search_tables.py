"""Tabular search benchmarks from real training: every configuration of a grid trained once, its α
and test metrics recorded at every monitored step, so samplers can be compared by querying the
table instead of training (the HPOBench / YAHPO idea).

Two landscapes, each over learning rate × batch size × weight decay × optimizer (224 configurations):

* ``mlp3_digits``: MLP3 (width 128) on scikit-learn digits, 300 steps, monitored every 60;
* ``lenet5_digits``: LeNet5 (both convolutions padded for 8×8 inputs) on the same data, 240 steps,
  monitored every 60 (LeNet5 on MNIST-5k cost ~4 CPU s per configuration, too much for the 2
  shared cores this was generated on).

Each configuration is trained with the built-in ``Trainer`` and ``SpectralMonitor`` (no Ray, no
MLflow), one thread, seed 0 (``--seeds`` adds more). A configuration whose loss becomes non-finite
is recorded as diverged with the monitored steps it reached. Rows are appended to a ``.jsonl``
file as they finish, so an interrupted run resumes where it stopped; the JSON table is assembled
at the end (and by ``--assemble``).

``python benchmarks/make_search_tables.py [--landscape NAME] [--seeds 0 1]`` writes
``benchmarks/results/search_table_<landscape>.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import single_thread_env  # noqa: E402

single_thread_env()  # before numpy / torch load their thread pools

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"

GRID: dict[str, list[Any]] = {
    "optimizer": ["sgd", "momentum", "adam", "adamw"],
    "lr": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
    "batch_size": [16, 32, 64, 128],
    "weight_decay": [0.0, 1e-2],
}

LANDSCAPES: dict[str, dict[str, Any]] = {
    "mlp3_digits": {"model": "mlp3", "dataset": "digits", "steps": 300, "every": 60,
                    "model_kwargs": {"width": 128}},
    "lenet5_digits": {"model": "lenet5", "dataset": "digits", "steps": 240, "every": 60, "model_kwargs": {}},
}

#: Per-monitored-step keys kept from the trainer's report (plus ``alpha/<layer>``, ``phase_code/<layer>``).
STEP_KEYS = ("step", "alpha_mean", "alpha_median", "alpha_last", "phase_code", "test_acc", "test_loss", "train_loss")


def configurations() -> list[dict[str, Any]]:
    """Every point of :data:`GRID`, in a fixed order."""
    names = list(GRID)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*GRID.values())]


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _step_row(report: dict[str, Any]) -> dict[str, Any]:
    row = {k: _clean(report.get(k)) for k in STEP_KEYS}
    row["alpha"] = {k.split("/", 1)[1]: _clean(float(v)) for k, v in report.items() if k.startswith("alpha/")}
    row["phase_layers"] = {k.split("/", 1)[1]: _clean(float(v)) for k, v in report.items()
                           if k.startswith("phase_code/")}
    return row


def train_one(landscape: str, config: dict[str, Any], seed: int, data: Any) -> dict[str, Any]:
    """Train one configuration; its monitored steps, final metrics and CPU seconds."""
    import torch

    from htsweep.trainers.callbacks import MetricsHistory
    from htsweep.trainers.monitor import SpectralMonitor
    from htsweep.trainers.train import TrainConfig, Trainer

    land = LANDSCAPES[landscape]
    torch.set_num_threads(1)
    cfg = TrainConfig(model=land["model"], dataset=land["dataset"], steps=land["steps"], seed=seed,
                      eval_every=land["every"], spectral_every=land["every"], eval_samples=None, device="cpu",
                      threads=1, model_kwargs=dict(land["model_kwargs"]), **config)
    history = MetricsHistory()
    c0 = time.process_time()
    diverged = ""
    try:
        Trainer(cfg, [SpectralMonitor(), history], data=data).fit()
    except FloatingPointError as exc:  # an outcome of the configuration, kept in the table
        diverged = str(exc)[:200]
    steps = [_step_row(r) for r in history.history if "alpha_mean" in r or "test_acc" in r]
    return {"config": config, "seed": seed, "diverged": diverged, "steps": steps,
            "cpu_s": round(time.process_time() - c0, 3)}


def _jsonl(landscape: str) -> Path:
    return RESULTS / f"search_table_{landscape}.jsonl"


def assemble(landscape: str) -> Path:
    """The JSON table from the ``.jsonl`` rows (one entry per configuration and seed)."""
    rows = [json.loads(line) for line in _jsonl(landscape).read_text().splitlines() if line.strip()]
    land = LANDSCAPES[landscape]
    out = RESULTS / f"search_table_{landscape}.json"
    out.write_text(json.dumps({
        "landscape": landscape, **{k: land[k] for k in ("model", "dataset", "steps", "every", "model_kwargs")},
        "grid": GRID, "seeds": sorted({r["seed"] for r in rows}), "n_configurations": len(configurations()),
        "machine": {"python": platform.python_version(), "processor": platform.machine(),
                    "note": "2 cores shared with other jobs; one thread per configuration"},
        "rows": rows,
    }, separators=(",", ":")))
    return out


def generate(landscape: str, seeds: list[int]) -> Path:
    """Train every configuration × seed not yet in the ``.jsonl`` file, then assemble the table."""
    from htsweep.trainers.data import load_dataset

    path = _jsonl(landscape)
    done = set()
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done.add((json.dumps(r["config"], sort_keys=True), r["seed"]))
    land = LANDSCAPES[landscape]
    data = load_dataset(land["dataset"], seed=0)
    todo = [(c, s) for s in seeds for c in configurations() if (json.dumps(c, sort_keys=True), s) not in done]
    t0 = time.perf_counter()
    for i, (config, seed) in enumerate(todo):
        row = train_one(landscape, config, seed, data)
        with path.open("a") as fh:
            fh.write(json.dumps(row, separators=(",", ":")) + "\n")
        if i % 10 == 0:
            print(f"{landscape}: {i + 1}/{len(todo)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return assemble(landscape)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--landscape", choices=list(LANDSCAPES), action="append")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--assemble", action="store_true", help="only rebuild the JSON from the .jsonl rows")
    args = ap.parse_args(argv)
    for landscape in args.landscape or list(LANDSCAPES):
        out = assemble(landscape) if args.assemble else generate(landscape, args.seeds)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
