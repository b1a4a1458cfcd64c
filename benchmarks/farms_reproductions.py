"""Does FARMS α rank models by generalization better than α? Reduced reproductions + a figure.

The recorded reproductions keep eigenvalues, not weights, and FARMS needs the weights, so this
script retrains reduced versions of the reproductions here (single-threaded, no Ray; the reduced
settings of ``tests/reproductions``, three seeds per grid point) and analyses each final model with
``farms=True``: batch size (``batch_size_phases_mnist5k``), weight decay (``weight_decay_rank``),
LR spike (``lr_spike_one_step``, regression: test loss) and the quickstart (MLP3 on digits, a grid
over its search space). Per reproduction: Spearman ρ (95 % bootstrap CI) of the model mean of α,
PL_Alpha_Hill, alpha_farms and alpha_hill_farms with test accuracy (test loss for regression),
via ``analysis.generalization``. Also draws ``docs/figures/farms_alpha_vs_q.png``: α and FARMS α
against Q for random Gaussian layers and the trained layers.

``python benchmarks/farms_reproductions.py [names]`` writes ``benchmarks/results/farms_reproductions.json``
(about 4 minutes on a busy 2-core box); ``... figure`` redraws the figure from it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import single_thread_env  # noqa: E402

single_thread_env()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.repro_records import grid_points, spec_setup  # noqa: E402
from htsweep.analysis import analyze_layers, analyze_matrix, extract_layers  # noqa: E402
from htsweep.analysis.generalization import model_aggregates, rank_correlations  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "farms_reproductions.json"
FIGURE = ROOT / "docs" / "figures" / "farms_alpha_vs_q.png"
METRICS = ("alpha_mean", "alpha_hill", "alpha_farms", "alpha_hill_farms")
SEEDS = (0, 1, 2)


def _setups() -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
    batch = spec_setup("batch_size_phases_mnist5k", train={"epochs": 2, "model_kwargs": {"width": 128},
                                                           "eval_every": 0, "spectral_every": 0},
                       grid={"batch_size": [500, 100, 32, 8]})
    wd = spec_setup("weight_decay_rank", train={"epochs": 3, "model_kwargs": {"width": 128}, "eval_every": 0,
                                                "spectral_every": 0},
                    grid={"weight_decay": [0.0, 0.03, 0.1, 0.3]})
    spike = spec_setup("lr_spike_one_step", train={"model_kwargs": {"width": 300}, "eval_every": 0,
                                                   "spectral_every": 0,
                                                   "data_kwargs": {"n": 800, "n_test": 200, "d": 200}},
                       grid={"lr": [0.03, 0.3, 100.0, 1000.0]})
    quick, _ = spec_setup("quickstart", train={"eval_every": 0, "spectral_every": 0})
    quick_points = grid_points({"lr": [0.005, 0.03, 0.15, 0.5], "batch_size": [4, 16, 64]})
    return {"batch_size": batch, "weight_decay": wd, "lr_spike": spike, "quickstart": (quick, quick_points)}


def _train(config: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from htsweep.trainers.train import TrainConfig, Trainer

    trainer = Trainer(TrainConfig.from_dict(config), [])
    final = trainer.fit()
    final.update(trainer.evaluate())
    rows = analyze_layers(extract_layers(trainer.model), device="cpu", precision="float64", farms=True)
    for row in rows:
        row.pop("eigs")
    return rows, final


def reproduction(name: str, base: dict[str, Any], points: list[dict[str, Any]]) -> dict[str, Any]:
    from htsweep.sweeps.trainable import merge_config

    runs = []
    for point in points:
        for seed in SEEDS if name != "quickstart" else (0,):
            t0 = time.perf_counter()
            rows, final = _train({**merge_config(dict(base), dict(point)), "seed": seed})
            agg = model_aggregates(rows)
            target = "test_acc" if "test_acc" in final else "test_loss"
            runs.append({"params": point, "seed": seed, "target": target, "target_value": float(final[target]),
                         **{m: agg[m] for m in METRICS},
                         "layers": [{k: r[k] for k in ("name", "q", "alpha", "alpha_hill", "alpha_farms",
                                                       "alpha_hill_farms")} for r in rows]})
            print(f"{name} {point} seed {seed}: {target} {final[target]:.4f}, α {agg['alpha_mean']:.2f}, "
                  f"α_FARMS {agg['alpha_farms']:.2f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    target = runs[0]["target"]
    y = np.array([r["target_value"] for r in runs])
    metrics = {m: np.array([r[m] for r in runs]) for m in METRICS}
    corr = rank_correlations(metrics, y, target_name=target, n_boot=2000)
    table = [{"metric": c.metric, "n": c.n, "spearman": c.spearman, "ci": list(c.spearman_ci), "p": c.spearman_p}
             for c in corr]
    for c in table:
        print(f"  {c['metric']:>17}: ρ = {c['spearman']:+.2f} [{c['ci'][0]:+.2f}, {c['ci'][1]:+.2f}] (n={c['n']})")
    return {"target": target, "runs": runs, "correlations": table}


def random_layers() -> list[dict[str, float]]:
    rng = np.random.default_rng(0)
    out = []
    for q in (1, 2, 4, 8):
        row = analyze_matrix(rng.standard_normal((500, 500 * q)), device="cpu", farms=True)
        out.append({"q": float(q), **{k: row[k] for k in ("alpha", "alpha_hill", "alpha_farms", "alpha_hill_farms")}})
    return out


def figure(result: dict[str, Any]) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    rnd = result["random"]
    trained = [layer for rep in result["reproductions"].values() for run in rep["runs"] for layer in run["layers"]
               if np.isfinite(layer["alpha_hill_farms"])]
    for ax, (plain, farms, label) in zip(axes, (("alpha_hill", "alpha_hill_farms", "PL_Alpha_Hill"),
                                                 ("alpha", "alpha_farms", "CSN α")), strict=True):
        ax.plot([r["q"] for r in rnd], [r[plain] for r in rnd], "o-", color="C0", label=f"{label}, random")
        ax.plot([r["q"] for r in rnd], [r[farms] for r in rnd], "s-", color="C1", label=f"FARMS {label}, random")
        ax.scatter([t["q"] for t in trained], [t[plain] for t in trained], s=8, color="C0", alpha=0.3,
                   label=f"{label}, trained layers")
        ax.scatter([t["q"] for t in trained], [t[farms] for t in trained], s=8, color="C1", alpha=0.3, marker="s",
                   label=f"FARMS {label}, trained layers")
        ax.set_xscale("log")
        ax.set_xticks([1, 2, 4, 8], ["1", "2", "4", "8"])
        ax.minorticks_off()
        ax.set_xlabel("aspect ratio Q = N / M")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    axes[1].set_ylim(1, 17)
    fig.suptitle("α against the aspect ratio: per-layer ESD vs FARMS (pooled square windows)")
    fig.tight_layout()
    fig.savefig(FIGURE, dpi=110)


def main() -> int:
    torch.set_num_threads(1)
    if sys.argv[1:] == ["figure"]:  # redraw from the saved JSON
        figure(json.loads(OUT.read_text(encoding="utf-8")))
        return 0
    only = sys.argv[1].split(",") if len(sys.argv) > 1 else None
    result: dict[str, Any] = {"random": random_layers(), "reproductions": {}}
    for name, (base, points) in _setups().items():
        if only is None or name in only:
            result["reproductions"][name] = reproduction(name, base, points)
    OUT.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    figure(result)
    print(f"wrote {OUT} and {FIGURE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
