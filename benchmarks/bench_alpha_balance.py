"""Alpha-guided per-layer learning rates vs plain training: α spread, test metrics, wall-time overhead.

The same model, data, seed and hyperparameters are trained four ways in one process: ``plain``
(one optimizer parameter group), ``tempbalance`` (TempBalance's linear map with the paper's
defaults: factors in [0.5, 1.5], first and last layer left out), ``tempbalance_all`` (the same
map over every fitted layer) and ``proportional`` (the P-controller toward PL_Alpha_Hill = 2,
gain 0.5, factors in [0.5, 1.5], every fitted layer). None of these settings were tuned here. Every arm runs the ``SpectralMonitor`` at the same cadence, once per
epoch as TempBalance does, so the plain arm's α trajectory is observed too and the wall-time
ratio isolates the balancing itself; the monitor's own share of the wall time is reported beside
it (that is what balancing needs on top of an unmonitored run).

Times are taken single-threaded and side by side: after one short warm-up fit per arm, the arms of
one seed run back to back in an order rotated per seed, and each overhead is the ratio within one
seed. Both wall time and the process's CPU time are recorded: on a machine loaded by other work
the CPU-time ratio is the steadier of the two (one thread: CPU time = wall time when unloaded).

The step overhead is measured apart from the full runs as well (``step_overhead``): best-of-N
times of the same optimizer steps with one parameter group vs per-layer groups under ``scaled_lr``,
interleaved, plus the cost of one ``AlphaBalance.on_monitor``; best-of timings are robust to load.

``python benchmarks/bench_alpha_balance.py`` prints a table, writes
``benchmarks/results/bench_alpha_balance.json`` and ``docs/figures/alpha_balance.png``;
``--quick`` (300 steps, one seed) is a smoke run; ``--overhead-only`` refreshes just the step
overhead in the results file; ``--seeds ... --arms ... --out FILE`` runs more seeds into another file.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import best_time, single_thread_env  # noqa: E402

single_thread_env()  # before numpy / torch load their thread pools

import torch  # noqa: E402

from htsweep.trainers.alpha_balance import AlphaBalance  # noqa: E402
from htsweep.trainers.callbacks import MetricsHistory  # noqa: E402
from htsweep.trainers.data import load_dataset  # noqa: E402
from htsweep.trainers.monitor import SpectralMonitor  # noqa: E402
from htsweep.trainers.train import TrainConfig, Trainer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_alpha_balance.json"
FIGURE = ROOT / "docs" / "figures" / "alpha_balance.png"

STEPS_PER_EPOCH = 125  # MNIST-5k: 4,000 training images / batch 32
BASE: dict[str, Any] = dict(dataset="mnist5k", batch_size=32, lr=0.02, optimizer="momentum", momentum=0.9,
                            weight_decay=5e-4, schedule="cosine", eval_every=0, spectral_every=STEPS_PER_EPOCH,
                            eval_at_start=True, eval_samples=None, device="cpu", threads=1)
MODELS: dict[str, dict[str, Any]] = {"mlp3": {"model_kwargs": {"width": 256}}, "lenet5": {}}
ARMS: dict[str, dict[str, Any] | None] = {
    "plain": None,
    "tempbalance": {"method": "tempbalance"},
    "tempbalance_all": {"method": "tempbalance", "exclude_first": False, "exclude_last": False},
    "proportional": {"method": "proportional", "target": 2.0, "gain": 0.5, "exclude_first": False,
                     "exclude_last": False},
}


def _layer_keys(row: dict[str, Any], prefix: str) -> dict[str, float]:
    return {k[len(prefix):]: float(v) for k, v in row.items() if k.startswith(prefix)}


def run_arm(model: str, arm: str, seed: int, steps: int, data: Any) -> dict[str, Any]:
    """Train one arm; return its final metrics, per-layer α, trajectories and timings."""
    cfg = TrainConfig(model=model, steps=steps, seed=seed, alpha_balance=ARMS[arm], **BASE, **MODELS[model])
    monitor, history = SpectralMonitor(), MetricsHistory()
    trainer = Trainer(cfg, [monitor, history], data=data)
    t0, c0 = time.perf_counter(), time.process_time()
    final = trainer.fit()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    alpha_hill = {k: v for k, v in _layer_keys(final, "alpha_hill/").items() if math.isfinite(v)}
    alpha_csn = {k: v for k, v in _layer_keys(final, "alpha/").items() if math.isfinite(v)}
    balance = next((cb for cb in trainer.callbacks if isinstance(cb, AlphaBalance)), None)
    return {
        "model": model, "arm": arm, "seed": seed, "steps": steps,
        "test_acc": final["test_acc"], "test_loss": final["test_loss"], "train_loss": final["train_loss"],
        "alpha_hill": alpha_hill, "alpha": alpha_csn,
        "alpha_hill_spread": _spread(alpha_hill), "alpha_hill_std": _std(alpha_hill),
        "alpha_hill_mean": statistics.fmean(alpha_hill.values()) if alpha_hill else math.nan,
        "wall_s": wall, "cpu_s": cpu, "monitor_s": monitor.seconds,
        "balance_s": trainer.hook_seconds.get("AlphaBalance.on_monitor", 0.0),
        "trajectory": [{"step": r["step"], "alpha_hill": _layer_keys(r, "alpha_hill/"),
                        "lr_factor": _layer_keys(r, "lr_factor/")} for r in history.history],
        "factor_updates": len(balance.history) if balance else 0,
    }


def _spread(values: dict[str, float]) -> float:
    return max(values.values()) - min(values.values()) if len(values) > 1 else math.nan


def _std(values: dict[str, float]) -> float:
    return statistics.pstdev(values.values()) if len(values) > 1 else math.nan


def _mean_sd(xs: list[float]) -> tuple[float, float]:
    xs = [x for x in xs if math.isfinite(x)]
    if not xs:
        return math.nan, math.nan
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± sd over seeds per (model, arm), and the per-seed wall-time ratio to ``plain``."""
    out = []
    for model in dict.fromkeys(r["model"] for r in runs):
        plain = {r["seed"]: r for r in runs if r["model"] == model and r["arm"] == "plain"}
        for arm in ARMS:
            rs = [r for r in runs if r["model"] == model and r["arm"] == arm]
            if not rs:
                continue
            row: dict[str, Any] = {"model": model, "arm": arm, "seeds": [r["seed"] for r in rs]}
            for key in ("test_acc", "test_loss", "alpha_hill_spread", "alpha_hill_std", "alpha_hill_mean"):
                row[key], row[f"{key}_sd"] = _mean_sd([r[key] for r in rs])
            for clock in ("wall", "cpu"):
                ratios = [r[f"{clock}_s"] / plain[r["seed"]][f"{clock}_s"] for r in rs if r["seed"] in plain]
                row[f"{clock}_ratio_median"] = statistics.median(ratios) if ratios else math.nan
                row[f"{clock}_ratios"] = ratios
            row["monitor_share"] = statistics.fmean(r["monitor_s"] / r["wall_s"] for r in rs)
            row["balance_s_mean"] = statistics.fmean(r["balance_s"] for r in rs)
            row["acc_delta_vs_plain"] = [r["test_acc"] - plain[r["seed"]]["test_acc"] for r in rs
                                         if r["seed"] in plain]
            out.append(row)
    return out


def step_overhead(model: str, *, steps: int = 20, repeat: int = 15) -> dict[str, float]:
    """Best-of-``repeat`` time of ``steps`` optimizer steps, plain vs per-layer groups with factors."""
    data = load_dataset(BASE["dataset"], seed=0)
    trainers = {}
    for arm in ("plain", "tempbalance"):
        cfg = TrainConfig(model=model, steps=10**9, seed=0, alpha_balance=ARMS[arm], **BASE, **MODELS[model])
        trainers[arm] = Trainer(cfg, [SpectralMonitor()], data=data)
    balanced = trainers["tempbalance"]
    balanced.set_lr_factors({name: 0.75 for name in balanced.lr_factors})  # every group really rescaled

    def run(trainer: Trainer) -> None:
        for _ in range(steps):
            trainer._train_step(*trainer.batcher.next()[:2])

    for trainer in trainers.values():
        run(trainer)  # warm-up
    best = {arm: math.inf for arm in trainers}
    for _ in range(repeat):  # interleaved, so drifting load hits both alike
        for arm, trainer in trainers.items():
            best[arm] = min(best[arm], best_time(lambda t=trainer: run(t), repeat=1))
    monitor = balanced.callbacks[0]
    monitor.on_monitor(balanced, balanced.model, 0)
    callback = balanced.callbacks[-1]
    update_s = best_time(lambda: callback.on_monitor(balanced, balanced.model, 0), repeat=50)
    step_plain, step_bal = best["plain"] / steps, best["tempbalance"] / steps
    every = BASE["spectral_every"]
    return {"model": model, "ms_per_step_plain": 1e3 * step_plain, "ms_per_step_balanced": 1e3 * step_bal,
            "step_ratio": step_bal / step_plain, "update_ms": 1e3 * update_s, "spectral_every": every,
            "overhead_pct": 100.0 * ((step_bal + update_s / every) / step_plain - 1.0)}


def plot(runs: list[dict[str, Any]], path: Path, seed: int) -> None:
    """Per-layer PL_Alpha_Hill over training, one panel per (model, arm), for one seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in runs))
    fig, axes = plt.subplots(len(models), len(ARMS), figsize=(4 * len(ARMS), 3.2 * len(models)), sharey="row",
                             squeeze=False)
    for i, model in enumerate(models):
        for j, arm in enumerate(ARMS):
            ax = axes[i][j]
            run = next((r for r in runs if r["model"] == model and r["arm"] == arm and r["seed"] == seed), None)
            if run is None:
                ax.set_visible(False)
                continue
            steps = [t["step"] for t in run["trajectory"]]
            for layer in run["alpha_hill"]:
                ax.plot(steps, [t["alpha_hill"].get(layer, math.nan) for t in run["trajectory"]], label=layer)
            ax.set_title(f"{model} · {arm} (test acc {run['test_acc']:.3f})", fontsize=9)
            ax.set_xlabel("step")
            if j == 0:
                ax.set_ylabel("PL_Alpha_Hill")
            ax.legend(fontsize=7)
    fig.suptitle(f"Per-layer PL_Alpha_Hill, MNIST-5k, seed {seed}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description="alpha-balanced vs plain training")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=16 * STEPS_PER_EPOCH)
    parser.add_argument("--arms", nargs="*", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--quick", action="store_true", help="300 steps, seed 0, no files written")
    parser.add_argument("--overhead-only", action="store_true", help="only refresh step_overhead in the results")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (the figure only for the default)")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.seeds = 300, [0]
    torch.set_num_threads(1)
    overhead = [step_overhead(model) for model in args.models]
    for row in overhead:
        print(f"{row['model']:7s} step {row['ms_per_step_plain']:.2f} ms plain, {row['ms_per_step_balanced']:.2f} ms "
              f"per-layer groups (x{row['step_ratio']:.3f}); one factor update {row['update_ms']:.3f} ms; "
              f"overhead at spectral_every={row['spectral_every']}: {row['overhead_pct']:+.2f}%", flush=True)
    if args.overhead_only:
        out = json.loads(args.out.read_text())
        out["step_overhead"] = overhead
        args.out.write_text(json.dumps(out, indent=2) + "\n")
        print(f"updated step_overhead in {args.out}")
        return
    runs = []
    arms = args.arms
    for model in args.models:
        warm = load_dataset(BASE["dataset"], seed=0)
        for arm in arms:  # first-call costs (allocator, kernels, analysis caches) stay out of the timings
            run_arm(model, arm, 0, 2 * STEPS_PER_EPOCH // 5, warm)
        for k, seed in enumerate(args.seeds):
            data = load_dataset(BASE["dataset"], seed=seed)
            order = arms[k % len(arms):] + arms[:k % len(arms)]  # rotate so no arm always runs first
            for arm in order:
                run = run_arm(model, arm, seed, args.steps, data)
                runs.append(run)
                print(f"{model:7s} seed {seed} {arm:13s} test_acc {run['test_acc']:.4f} "
                      f"test_loss {run['test_loss']:.4f} alpha_hill "
                      f"{ {k: round(v, 3) for k, v in run['alpha_hill'].items()} } "
                      f"spread {run['alpha_hill_spread']:.3f} wall {run['wall_s']:.1f}s cpu {run['cpu_s']:.1f}s "
                      f"(monitor {run['monitor_s']:.1f}s)", flush=True)
    summary = summarize(runs)
    print()
    for row in summary:
        print(f"{row['model']:7s} {row['arm']:13s} test_acc {row['test_acc']:.4f}±{row['test_acc_sd']:.4f} "
              f"test_loss {row['test_loss']:.4f}±{row['test_loss_sd']:.4f} alpha spread "
              f"{row['alpha_hill_spread']:.3f}±{row['alpha_hill_spread_sd']:.3f} ratio wall "
              f"{row['wall_ratio_median']:.3f} cpu {row['cpu_ratio_median']:.3f} "
              f"monitor share {100 * row['monitor_share']:.1f}%")
    if args.quick:
        return
    out = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                       "torch": torch.__version__, "threads": 1, "device": "cpu"},
           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "command": "python benchmarks/bench_alpha_balance.py " + " ".join(sys.argv[1:]),
           "config": {"base": BASE, "models": MODELS, "arms": {a: ARMS[a] for a in arms}, "steps": args.steps,
                      "seeds": args.seeds},
           "step_overhead": overhead, "summary": summary, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")
    if args.out == RESULTS:
        plot(runs, FIGURE, args.seeds[0])
        print(f"wrote {FIGURE}")


if __name__ == "__main__":
    main()
