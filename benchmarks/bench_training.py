"""Training throughput of each model on CPU, and the cost of spectral monitoring.

asv-style classes (``params``/``param_names``/``setup``/``time_*``) so the suite can run under
asv; ``python benchmarks/bench_training.py`` runs them directly, prints a table and writes
``benchmarks/results/bench_training.json``.

* ``TrainStep``: optimizer steps per second of each model at a typical configuration (MNIST-sized
  inputs, batch 32; the paper-sized teacher–student student full-batch; the char-GPT on the
  shipped corpus).
* ``MonitorOverhead``: one ``SpectralMonitor.on_monitor`` (extract + batched ESD + fits) per model,
  and the share of wall time it takes at a realistic cadence (``spectral_every`` below). Target:
  under 5 %.

Single-threaded by default (``--threads``), since trials share cores.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Benchmark, best_time  # noqa: E402
from htsweep.trainers.data import DataBundle, load_dataset  # noqa: E402
from htsweep.trainers.monitor import SpectralMonitor  # noqa: E402
from htsweep.trainers.train import TrainConfig, Trainer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bench_training.json"

# model -> (dataset, TrainConfig overrides, realistic spectral_every in steps)
CASES: dict[str, tuple[str, dict[str, Any], int]] = {
    "mlp3": ("mnist5k", {"batch_size": 32, "optimizer": "momentum"}, 500),
    "lenet5": ("mnist5k", {"batch_size": 32, "optimizer": "momentum"}, 500),
    "minialexnet": ("cifar_like", {"batch_size": 32, "optimizer": "momentum"}, 200),
    "student": ("teacher_student", {"batch_size": "full", "optimizer": "adam", "lr": 0.1,
                                    "data_kwargs": {"n": 2000, "n_test": 200, "d": 1000},
                                    "model_kwargs": {"width": 1500}}, 50),
    "char_gpt": ("text", {"batch_size": 32, "optimizer": "adamw", "lr": 1e-3}, 500),
}


def _cifar_like(n: int = 2048, seed: int = 0) -> DataBundle:
    """Random 32×32×3 images with random labels: CIFAR-10-shaped work without the download."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n + 256, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n + 256,), generator=g)
    return DataBundle("cifar10", "classification", x[:n], y[:n], x[n:], y[n:], input_shape=(3, 32, 32),
                      n_classes=10, meta={"source": "random"})


def _trainer(model: str, steps: int, callbacks: list | None = None, spectral_every: int = 0) -> Trainer:
    dataset, overrides, _ = CASES[model]
    kw = {"lr": 0.01, **overrides}
    data = _cifar_like() if dataset == "cifar_like" else None
    cfg = TrainConfig(model=model, dataset="cifar10" if dataset == "cifar_like" else dataset, steps=steps,
                      eval_every=0, spectral_every=spectral_every, eval_samples=256, device="cpu", **kw)
    if data is None:
        data = load_dataset(cfg.dataset, seed=0, **cfg.data_kwargs)
    return Trainer(cfg, callbacks or [], data=data)


class TrainStep(Benchmark):
    """Optimizer steps per second (forward + backward + step), no evaluation or monitoring."""

    params = [list(CASES)]
    param_names = ["model"]
    steps = 30

    def setup(self, model: str) -> None:
        self.trainer = _trainer(model, steps=10**9)
        for _ in range(3):  # warm-up
            self.trainer._train_step(*self.trainer.batcher.next()[:2])

    def time_steps(self, model: str) -> None:
        t = self.trainer
        for _ in range(self.steps):
            t._train_step(*t.batcher.next()[:2])


class MonitorOverhead(Benchmark):
    """One spectral analysis of the whole model (``SpectralMonitor.on_monitor``)."""

    params = [list(CASES)]
    param_names = ["model"]

    def setup(self, model: str) -> None:
        self.monitor = SpectralMonitor()
        self.trainer = _trainer(model, steps=1, callbacks=[self.monitor])
        self.monitor.on_fit_start(self.trainer, self.trainer.model)
        self.monitor.on_monitor(self.trainer, self.trainer.model, 0)  # warm-up (imports, caches)

    def time_monitor(self, model: str) -> None:
        self.monitor.on_monitor(self.trainer, self.trainer.model, 0)


def _end_to_end(model: str, steps: int, every: int) -> dict[str, float]:
    """A real ``fit`` with the monitor at ``every`` steps: measured share of wall time."""
    mon = SpectralMonitor()
    trainer = _trainer(model, steps=steps, callbacks=[mon], spectral_every=every)
    t0 = time.perf_counter()
    trainer.fit()
    wall = time.perf_counter() - t0
    return {"steps": steps, "spectral_every": every, "wall_s": wall, "monitor_s": mon.seconds,
            "monitor_calls": mon.n_calls, "overhead_pct": 100.0 * mon.seconds / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description="trainers benchmark")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="*", default=list(CASES))
    parser.add_argument("--e2e-steps", type=int, default=1000, help="steps of the end-to-end MLP3 run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for model in args.models:
        ts, mo = TrainStep(), MonitorOverhead()
        ts.setup(model)
        step_s = best_time(lambda m=model, t=ts: t.time_steps(m), repeat=args.repeats) / TrainStep.steps
        mo.setup(model)
        mon_s = best_time(lambda m=model, o=mo: o.time_monitor(m), repeat=args.repeats)
        every = CASES[model][2]
        overhead = 100.0 * mon_s / (mon_s + every * step_s)
        min_every = mon_s / (0.05 / 0.95 * step_s)
        rows.append({"model": model, "steps_per_s": 1.0 / step_s, "ms_per_step": 1e3 * step_s,
                     "monitor_ms": 1e3 * mon_s, "n_layers": len(mo.monitor.last.rows),
                     "spectral_every": every, "overhead_pct": overhead,
                     "min_spectral_every_for_5pct": int(min_every) + 1})
        r = rows[-1]
        print(f"{model:12s} {r['steps_per_s']:8.1f} steps/s  {r['ms_per_step']:7.2f} ms/step  "
              f"monitor {r['monitor_ms']:7.1f} ms ({r['n_layers']} layers)  every {every:4d} steps -> "
              f"{overhead:5.2f}% (5% needs every >= {r['min_spectral_every_for_5pct']})", flush=True)
    e2e = _end_to_end("mlp3", args.e2e_steps, CASES["mlp3"][2]) if "mlp3" in args.models else None
    if e2e:
        print(f"end-to-end mlp3 fit: {e2e['steps']} steps, monitor every {e2e['spectral_every']}: "
              f"{e2e['monitor_s']:.2f} s of {e2e['wall_s']:.2f} s = {e2e['overhead_pct']:.2f}%")
    out = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                       "torch": torch.__version__, "threads": args.threads, "device": "cpu"},
           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "train_and_monitor": rows, "end_to_end_mlp3": e2e}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
