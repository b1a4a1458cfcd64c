"""Accuracy of the 5+1 phase classifier on synthetic suites → confusion matrices (JSON + PNG).

Three suites, each drawn from :mod:`analysis.synthetic` with its own seed:

* ``main`` — ≥ 600 matrices (100 per phase), parameters from :func:`analysis.synthetic.sample_params`,
  M ∈ {64, 128, 256, 512, 1024}, Q ∈ {1, 1.5, 2, 3, 4, 6, 10}.
* ``heldout`` — other seed, other sizes (M ∈ {48, 80, 100, 200, 300, 700, 1536}), other aspect
  ratios (Q ∈ {1.25, 2.5, 5, 8}) and strengths drawn from shifted ranges (wider spike ratios,
  other bulk-decay exponents and spike counts, other rank fractions; see ``heldout_params``).
* ``third`` — seed 777, M ∈ {96, 200, 700, 1500}, Q ∈ {1.2, 3, 6, 9}, the families' full
  :func:`~analysis.synthetic.sample_params` ranges.

Plus ``heavy_grid``: the fraction of iid heavy-tailed matrices tagged ``heavy_tailed`` for tail
indices μ up to 3.5 (beyond the family's sampled range) and M = 64…1024 — the detection limit.

Usage::

    .venv/bin/python benchmarks/bench_phases.py            # both suites, writes benchmarks/results/
                                                           # and docs/figures/phases_confusion.png
    .venv/bin/python benchmarks/bench_phases.py --per-phase 20 --heldout-per-phase 10 \
        --third-per-phase 0 --grid-per-cell 0                                      # quick look
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from analysis.esd import esd
from analysis.marchenko_pastur import fit_marchenko_pastur
from analysis.phases import PHASES, classify_phase
from analysis.powerlaw_fit import fit_power_law
from analysis.synthetic import MU_MAX, make, sample_params

RESULTS = Path(__file__).resolve().parent / "results"
DOC_FIGURE = Path(__file__).resolve().parents[1] / "docs" / "figures" / "phases_confusion.png"

MAIN_M = (64, 128, 256, 512, 1024)
MAIN_M_P = (0.3, 0.3, 0.2, 0.15, 0.05)
MAIN_Q = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 10.0)
HELD_M = (48, 80, 100, 200, 300, 700, 1536)
HELD_M_P = (0.1, 0.2, 0.2, 0.2, 0.15, 0.12, 0.03)
HELD_Q = (1.25, 2.5, 5.0, 8.0)
THIRD_M = (96, 200, 700, 1500)
THIRD_M_P = (0.25, 0.25, 0.25, 0.25)
THIRD_Q = (1.2, 3.0, 6.0, 9.0)
GRID_MU = (2.25, 2.5, 2.75, 3.0, 3.25, 3.5)
GRID_M = (64, 128, 256, 512, 1024)
GRID_Q = (1.0, 2.0, 4.0, 8.0)


def heldout_params(phase: str, n: int, m: int, rng: np.random.Generator) -> dict[str, Any]:
    """Parameters for the held-out suite: the family's sampler, then strengths from shifted ranges."""
    p = sample_params(phase, n, m, rng)
    if phase == "bulk_plus_spikes":
        p["ratio"] = float(np.exp(rng.uniform(np.log(2.4), np.log(20.0))))
    elif phase == "bleeding_out":
        p["excess"] = float(min(p["excess"] * rng.uniform(0.9, 1.1), 0.5))
    elif phase == "bulk_decay":
        p["tail_alpha"] = float(rng.uniform(4.2, 7.0))
        p["frac"] = float(rng.uniform(0.12, 0.4))
    elif phase == "heavy_tailed":
        p["mu"] = float(rng.uniform(1.1, MU_MAX))
    elif phase == "rank_collapse":
        p["rank_frac"] = float(rng.uniform(0.05, 0.8))
    return p


def run_suite(name: str, seed: int, per_phase: int, sizes, size_p, ratios, params_fn) -> dict[str, Any]:
    """Draw ``per_phase`` matrices of each phase, classify them, return the confusion matrix and rows."""
    rng = np.random.default_rng(seed)
    confusion = np.zeros((len(PHASES), len(PHASES)), dtype=int)
    rows = []
    t_eig = t_fit = t_cls = 0.0
    for i, phase in enumerate(PHASES):
        for _ in range(per_phase):
            m = int(rng.choice(sizes, p=size_p))
            q = float(rng.choice(ratios))
            n = int(round(q * m))
            params = params_fn(phase, n, m, rng)
            W = make(phase, n, m, rng, **params)
            t0 = time.perf_counter()
            eigs = esd(W)
            t1 = time.perf_counter()
            mp = fit_marchenko_pastur(eigs, q=n / m)
            pl = fit_power_law(eigs)
            t2 = time.perf_counter()
            res = classify_phase(eigs, q=n / m, mp=mp, pl=pl)
            t3 = time.perf_counter()
            t_eig, t_fit, t_cls = t_eig + t1 - t0, t_fit + t2 - t1, t_cls + t3 - t2
            j = PHASES.index(res.phase)
            confusion[i, j] += 1
            rows.append(
                {
                    "true": phase, "pred": res.phase, "confidence": round(res.confidence, 4), "n": n, "m": m,
                    "params": {k: (round(v, 5) if isinstance(v, float) else v) for k, v in params.items()},
                    "rule": res.evidence["rule"],
                }
            )
    total = int(confusion.sum())
    per = {p: float(confusion[i, i] / confusion[i].sum()) for i, p in enumerate(PHASES)}
    return {
        "name": name,
        "seed": seed,
        "n_matrices": total,
        "accuracy": float(np.trace(confusion) / total),
        "per_phase_accuracy": per,
        "confusion": confusion.tolist(),
        "labels": list(PHASES),
        "sizes_M": list(sizes),
        "aspect_ratios_Q": list(ratios),
        "seconds": {"eigvalsh": round(t_eig, 3), "mp_and_pl_fits": round(t_fit, 3), "classify": round(t_cls, 4)},
        "errors": [r for r in rows if r["true"] != r["pred"]],
    }


def heavy_grid(seed: int, per_cell: int) -> dict[str, Any]:
    """Fraction of heavy-tailed matrices tagged ``heavy_tailed`` per (μ, M), μ up to 3.5 (beyond the family).

    ``per_cell`` matrices per (μ, M) cell, half Pareto and half Student-t, spread over ``GRID_Q``.
    """
    rng = np.random.default_rng(seed)
    table = {}
    for mu in GRID_MU:
        for m in GRID_M:
            hits = 0
            for j in range(per_cell):
                q = GRID_Q[j % len(GRID_Q)]
                n = int(q * m)
                dist = ("pareto", "student_t")[(j // len(GRID_Q)) % 2]
                eigs = esd(make("heavy_tailed", n, m, rng, mu=mu, dist=dist))
                res = classify_phase(eigs, q=n / m, mp=fit_marchenko_pastur(eigs, q=n / m), pl=fit_power_law(eigs))
                hits += res.phase == "heavy_tailed"
            table[f"{mu:g}"] = table.get(f"{mu:g}", {}) | {str(m): hits / per_cell}
    return {"seed": seed, "per_cell": per_cell, "mu": list(GRID_MU), "M": list(GRID_M), "Q": list(GRID_Q),
            "recall": table}


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Side-by-side confusion matrices (rows: true phase, columns: predicted), saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.2 * len(results), 5.4))
    axes = np.atleast_1d(axes)
    short = ["random", "bleed", "b+spikes", "b-decay", "heavy", "collapse"]
    for ax, res in zip(axes, results, strict=True):
        c = np.asarray(res["confusion"])
        frac = c / c.sum(axis=1, keepdims=True)
        ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
        for i in range(c.shape[0]):
            for j in range(c.shape[1]):
                if c[i, j]:
                    ax.text(j, i, str(c[i, j]), ha="center", va="center",
                            color="white" if frac[i, j] > 0.5 else "black", fontsize=9)
        ax.set_xticks(range(6), short, rotation=35)
        ax.set_yticks(range(6), short)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{res['name']}: {res['n_matrices']} matrices, accuracy {res['accuracy']:.1%}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-phase", type=int, default=100)
    ap.add_argument("--heldout-per-phase", type=int, default=60)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--heldout-seed", type=int, default=90210)
    ap.add_argument("--third-per-phase", type=int, default=60)
    ap.add_argument("--third-seed", type=int, default=777)
    ap.add_argument("--grid-per-cell", type=int, default=16,
                    help="heavy-tailed recall grid over μ up to 3.5 and M (0 to skip)")
    ap.add_argument("--grid-seed", type=int, default=4242)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--doc-figure", type=Path, default=DOC_FIGURE,
                    help="second copy of the PNG for docs/phases.md (results/*.png is git-ignored)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    main_suite = run_suite("main", args.seed, args.per_phase, MAIN_M, MAIN_M_P, MAIN_Q, sample_params)
    held = run_suite("heldout", args.heldout_seed, args.heldout_per_phase, HELD_M, HELD_M_P, HELD_Q,
                     heldout_params)
    suites = [main_suite, held]
    if args.third_per_phase > 0:
        suites.append(run_suite("third", args.third_seed, args.third_per_phase, THIRD_M, THIRD_M_P, THIRD_Q,
                                sample_params))
    out = {
        "suites": suites,
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "machine": platform.platform(),
        "numpy": np.__version__,
    }
    if args.grid_per_cell > 0:
        out["heavy_grid"] = heavy_grid(args.grid_seed, args.grid_per_cell)
    out["wall_seconds"] = round(time.perf_counter() - t0, 1)
    (args.out / "bench_phases.json").write_text(json.dumps(out, indent=1))
    plot(suites, args.out / "bench_phases.png")
    args.doc_figure.parent.mkdir(parents=True, exist_ok=True)
    plot(suites, args.doc_figure)
    for s in suites:
        per = ", ".join(f"{k} {v:.1%}" for k, v in s["per_phase_accuracy"].items())
        print(f"{s['name']}: {s['n_matrices']} matrices, accuracy {s['accuracy']:.2%} ({per})")
        print(np.asarray(s["confusion"]))
        print(f"  time: {s['seconds']}")
    if "heavy_grid" in out:
        g = out["heavy_grid"]
        print("heavy_tailed recall by μ (rows) and M (columns):", g["M"])
        for mu, row in g["recall"].items():
            print(f"  μ={mu:>5}: " + "  ".join(f"{v:.2f}" for v in row.values()))
    return out


if __name__ == "__main__":
    main()
