"""Steps per second of htsweep's built-in loop against a plain PyTorch loop, same model, data and batch.

``python benchmarks/bench_loader.py`` prints a table and writes ``benchmarks/results/bench_loader.json``.

Two data paths, each against the plain loop a PyTorch user would write for it:

* ``dataloader``: a map-style Dataset with per-item augmentation (random shift and flip) read
  through ``torch.utils.data.DataLoader``. htsweep: ``from_datasets`` + ``loader='dataloader'``
  (seeded per-batch item reads, resumable order). Plain: ``DataLoader(dataset, batch_size,
  shuffle=True)``.
* ``memory``: the same images as tensors. htsweep: ``loader='memory'`` (``Batcher``). Plain: a
  ``randperm`` per epoch and tensor indexing.

The plain loop does ``zero_grad / forward / cross_entropy / backward / step`` and reads
``loss.item()`` every step (as the PyTorch tutorials do; htsweep reads the loss every step too).
htsweep runs ``Trainer.fit`` without monitoring or evaluation callbacks; its steps are timed
between two ``on_train_step_end`` calls, so the final evaluation is not counted, but the hook
dispatch, the scheduler, the finiteness check and the batcher are. Each case runs in this process,
plain and htsweep alternating ``--repeats`` times; the overhead is the ratio of the medians
(target: at most 5 %), per CPU time of this process (the gate: robust on a shared machine, and
with ``--num-workers 0`` all the work is in this process) and per wall time. A third comparison, htsweep's two paths on fixed tensors, is what
``loader='auto'`` is chosen by.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from htsweep.trainers.callbacks import Callback  # noqa: E402
from htsweep.trainers.data import load_dataset  # noqa: E402
from htsweep.trainers.datasets import from_datasets  # noqa: E402
from htsweep.trainers.models import build_model  # noqa: E402
from htsweep.trainers.train import TrainConfig, Trainer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bench_loader.json"
TARGET_PCT = 5.0


class Augmented(Dataset):
    """Images with a random shift of up to 2 pixels and a random horizontal flip per read."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.x[i]
        dx, dy = torch.randint(-2, 3, (2,)).tolist()
        img = torch.roll(img, shifts=(dy, dx), dims=(1, 2))
        if torch.rand(()) < 0.5:
            img = img.flip(-1)
        return img, int(self.y[i])


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _rates(steps: int, t0: tuple[float, float]) -> dict[str, float]:
    """Steps per second of wall time and of this process's CPU time since ``t0``."""
    wall, cpu = _clocks()
    return {"wall": steps / (wall - t0[0]), "cpu": steps / (cpu - t0[1])}


class _StepClock(Callback):
    """Steps per second from the end of step ``start`` to the end of the last step."""

    def __init__(self, start: int, last: int):
        self.start, self.last, self.t0, self.rates = start, last, (0.0, 0.0), {}

    def on_train_step_end(self, trainer: Any, model: Any, step: int, loss: float) -> None:
        if step == self.start:
            self.t0 = _clocks()
        elif step == self.last:
            self.rates = _rates(self.last - self.start, self.t0)


def htsweep_steps_per_s(data: Any, model: str, path: str, *, steps: int, warmup: int, batch_size: int,
                        num_workers: int, device: str = "cpu", **settings: Any) -> dict[str, float]:
    """htsweep's ``Trainer.fit`` (no evaluation or monitoring during the run); ``settings``: more TrainConfig."""
    clock = _StepClock(warmup, warmup + steps)
    config = TrainConfig(model=model, dataset="mnist5k", steps=warmup + steps, batch_size=batch_size, lr=0.01,
                         optimizer="momentum", eval_every=0, spectral_every=0, eval_samples=64, device=device,
                         loader=path, num_workers=num_workers, seed=0, **settings)
    Trainer(config, [clock], data=data).fit()
    return clock.rates


def plain_steps_per_s(data: Any, model_name: str, path: str, *, steps: int, warmup: int, batch_size: int,
                      num_workers: int, device: str = "cpu") -> dict[str, float]:
    """The loop a PyTorch user writes, on the same model (same seed), data and batch size."""
    torch.manual_seed(0)
    dev = torch.device(device)
    model = build_model(model_name, data=data).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    if path == "dataloader":
        pin = dev.type == "cuda"
        loader = DataLoader(data.train, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                            persistent_workers=num_workers > 0, pin_memory=pin)

        def batches() -> Any:
            while True:
                for xb, yb in loader:
                    yield xb.to(dev, non_blocking=pin), yb.to(dev, non_blocking=pin)
    else:
        x, y = data.x_train.to(dev), data.y_train.to(dev)

        def batches() -> Any:
            while True:
                perm = torch.randperm(len(x), device=dev)
                for k in range(0, len(x), batch_size):
                    idx = perm[k:k + batch_size]
                    yield x[idx], y[idx]

    t0 = (0.0, 0.0)
    for i, (xb, yb) in enumerate(batches()):
        if i == warmup:
            t0 = _clocks()
        if i == warmup + steps:
            break
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        loss.item()
    return _rates(steps, t0)


def _data(n_train: int) -> tuple[Any, Any]:
    """The mnist5k images (28×28) as an augmented Dataset pair and as in-memory tensors."""
    bundle = load_dataset("mnist5k", seed=0, max_train=n_train, max_test=256)
    streamed = from_datasets(Augmented(bundle.x_train, bundle.y_train), TensorDataset(bundle.x_test, bundle.y_test),
                             name="mnist5k-augmented")
    return streamed, bundle


def compare(name: str, run_a: Any, run_b: Any, repeats: int) -> dict[str, Any]:
    """Alternate ``run_a`` (reference) and ``run_b`` ``repeats`` times; per clock, medians and b's overhead.

    ``overhead_pct`` is b's extra time per step relative to a, in % (negative: b is faster).
    """
    a, b = [], []
    for _ in range(repeats):
        a.append(run_a())
        b.append(run_b())
    out: dict[str, Any] = {"case": name}
    for clock in ("cpu", "wall"):
        ma, mb = statistics.median(r[clock] for r in a), statistics.median(r[clock] for r in b)
        out[clock] = {"reference_steps_per_s": [r[clock] for r in a], "htsweep_steps_per_s": [r[clock] for r in b],
                      "reference_median": ma, "htsweep_median": mb, "overhead_pct": 100.0 * (ma / mb - 1.0)}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-train", type=int, default=2048)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    streamed, bundle = _data(args.n_train)
    kw = dict(steps=args.steps, warmup=args.warmup, batch_size=args.batch_size, num_workers=args.num_workers,
              device=args.device)
    fixed = from_datasets(TensorDataset(bundle.x_train, bundle.y_train), TensorDataset(bundle.x_test, bundle.y_test),
                          name="mnist5k")
    cases = [
        compare("dataloader: augmented Dataset through DataLoader",
                lambda: plain_steps_per_s(streamed, args.model, "dataloader", **kw),
                lambda: htsweep_steps_per_s(streamed, args.model, "dataloader", **kw), args.repeats),
        compare("memory: tensors, randperm indexing",
                lambda: plain_steps_per_s(bundle, args.model, "memory", **kw),
                lambda: htsweep_steps_per_s(bundle, args.model, "memory", **kw), args.repeats),
        # what loader='auto' decides by: the same fixed tensors through either htsweep path
        compare("auto: fixed TensorDatasets, dataloader (reference) vs memory",
                lambda: htsweep_steps_per_s(fixed, args.model, "dataloader", **kw),
                lambda: htsweep_steps_per_s(fixed, args.model, "memory", **kw), args.repeats),
    ]
    result = {
        "benchmark": "bench_loader",
        "model": args.model, "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup,
        "repeats": args.repeats, "num_workers": args.num_workers, "threads": args.threads,
        "n_train": args.n_train, "device": args.device, "target_overhead_pct": TARGET_PCT, "cases": cases,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor()
                    or platform.machine(), "note": "2-core box shared with other jobs; plain and htsweep "
                    "alternate, medians compared"},
    }
    print(f"{'case':62s} {'clock':5s} {'plain/ref':>10s} {'htsweep':>10s} {'overhead':>9s}  (steps/s)")
    for c in cases:
        for clock in ("cpu", "wall"):
            r = c[clock]
            print(f"{c['case']:62s} {clock:5s} {r['reference_median']:10.1f} {r['htsweep_median']:10.1f} "
                  f"{r['overhead_pct']:8.1f}%")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
