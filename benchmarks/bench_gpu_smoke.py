"""GPU smoke benchmark of the built-in loop: one command, under 5 minutes on one GPU.

``python benchmarks/bench_gpu_smoke.py`` (add ``--compile`` for the torch.compile case, about a
minute more) trains MiniAlexNet (conv + batch norm) on synthetic CIFAR-shaped data that ship
with nothing (class-dependent patterns plus noise, so accuracy has something to learn) and
checks, on CUDA:

* each precision (``32``, ``bf16-mixed``, ``16-mixed``) with channels-last trains: finite loss,
  test accuracy above chance, float32 weights; steps/s of each;
* htsweep's loop against the plain PyTorch loop (``bench_loader``'s, both at float32): the
  DataLoader path (augmented Dataset, ``num_workers``, pinned memory, non-blocking copies) and the
  in-memory path, overhead of the wall-time medians (target: at most 5 %);
* one spectral-monitor pass on the GPU reads float32 weights.

Writes ``benchmarks/results/bench_gpu_smoke.json``. Exits 2 with a message when no GPU is present.
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

from benchmarks.bench_loader import Augmented, compare, htsweep_steps_per_s, plain_steps_per_s  # noqa: E402
from htsweep.trainers.data import DataBundle  # noqa: E402
from htsweep.trainers.datasets import from_datasets  # noqa: E402
from htsweep.trainers.monitor import SpectralMonitor  # noqa: E402
from htsweep.trainers.train import TrainConfig, Trainer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bench_gpu_smoke.json"
MODEL = "minialexnet"


def synthetic_cifar(n: int, n_test: int, seed: int = 0) -> DataBundle:
    """32×32×3 images: a fixed random pattern per class (10 classes) plus unit noise."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randn(10, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n + n_test,), generator=g)
    x = 0.5 * patterns[y] + torch.randn(n + n_test, 3, 32, 32, generator=g)
    return DataBundle("cifar10", "classification", x[:n], y[:n], x[n:], y[n:], input_shape=(3, 32, 32),
                      n_classes=10, meta={"source": "synthetic"})


def train_case(data: Any, *, steps: int, batch_size: int, **settings: Any) -> dict[str, Any]:
    """Train ``steps`` steps under ``settings``; steps/s (training only), final metrics, weight dtypes."""
    config = TrainConfig(model=MODEL, dataset="cifar10", steps=steps, batch_size=batch_size, lr=0.02,
                         optimizer="momentum", eval_every=0, spectral_every=0, eval_samples=2048, device="cuda",
                         **settings)
    trainer = Trainer(config, data=data)
    for _ in range(5):  # warm-up (cuDNN autotuning, compilation), not timed
        trainer._train_step(*trainer.batcher.next()[:2])
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer._train_step(*trainer.batcher.next()[:2])
    torch.cuda.synchronize()
    rate = steps / (time.perf_counter() - t0)
    metrics = trainer.evaluate()
    return {"settings": settings, "steps_per_s": rate, "test_acc": metrics["test_acc"],
            "test_loss": metrics["test_loss"],
            "float32_weights": all(p.dtype == torch.float32 for p in trainer.model.parameters()), "trainer": trainer}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-workers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (bf16-mixed)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_gpu_smoke needs a CUDA GPU; none is visible (torch.cuda.is_available() is False)")
        return 2
    t_start = time.perf_counter()
    data = synthetic_cifar(20_000, 2_000)
    runs = []
    settings = [{"precision": p, "channels_last": True} for p in ("32", "bf16-mixed", "16-mixed")]
    if args.compile:
        settings.append({"precision": "bf16-mixed", "channels_last": True, "compile": True})
    for s in settings:
        run = train_case(data, steps=args.steps, batch_size=args.batch_size, **s)
        trainer = run.pop("trainer")
        runs.append(run)
        print(f"{s!s:70s} {run['steps_per_s']:8.1f} steps/s  test_acc {run['test_acc']:.3f}")
    monitor = SpectralMonitor()
    t0 = time.perf_counter()
    monitor.on_monitor(trainer, trainer.model, trainer.step)
    monitor_s = time.perf_counter() - t0
    dtypes = sorted({str(layer.matrix.dtype) for layer in monitor.extract(trainer.model)})

    streamed = from_datasets(Augmented(data.x_train, data.y_train), torch.utils.data.TensorDataset(
        data.x_test, data.y_test), name="synthetic-augmented")
    kw = dict(steps=100, warmup=10, batch_size=args.batch_size, num_workers=args.num_workers, device="cuda")
    loops = [
        compare("dataloader: augmented Dataset, pinned, non-blocking",
                lambda: plain_steps_per_s(streamed, MODEL, "dataloader", **kw),
                lambda: htsweep_steps_per_s(streamed, MODEL, "dataloader", **kw), args.repeats),
        compare("memory: tensors on the GPU",
                lambda: plain_steps_per_s(data, MODEL, "memory", **kw),
                lambda: htsweep_steps_per_s(data, MODEL, "memory", **kw), args.repeats),
    ]
    for c in loops:
        w = c["wall"]
        print(f"{c['case']:60s} plain {w['reference_median']:8.1f} htsweep {w['htsweep_median']:8.1f} steps/s "
              f"overhead {w['overhead_pct']:.1f} %")
    checks = {
        "all_learn": all(r["test_acc"] > 0.2 for r in runs),  # chance: 0.1
        "float32_weights": all(r["float32_weights"] for r in runs) and dtypes == ["torch.float32"],
        "overhead_le_5pct": all(c["wall"]["overhead_pct"] <= 5.0 for c in loops),
    }
    result = {
        "benchmark": "bench_gpu_smoke", "model": MODEL, "batch_size": args.batch_size, "steps": args.steps,
        "runs": runs, "monitor_seconds": monitor_s, "monitor_weight_dtypes": dtypes, "loops": loops,
        "checks": checks, "total_seconds": time.perf_counter() - t_start,
        "machine": {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                    "python": platform.python_version()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"checks: {checks}  ({result['total_seconds']:.0f} s)")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
