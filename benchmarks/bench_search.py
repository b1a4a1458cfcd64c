"""How fast does each Optuna sampler reach the target-α regime? Measured on the tabular benchmarks.

The samplers query ``benchmarks/results/search_table_<landscape>.json`` (real training of every
configuration of a grid, see ``make_search_tables.py``) instead of training: a trial's α is the
final monitored step's ``alpha_mean`` and its accuracy the final test accuracy. The learning rate
is searched as a continuous log-uniform and snapped to the nearest grid value (log scale); batch
size, weight decay and optimizer are categorical, as a sweep spec would state them.

Arms (50 seeds each unless stated, 96 trials; GPSampler 48, see ``BUDGET_GP``):

* ``random``, ``qmc`` (scrambled Sobol): the penalized objective (what both ignore anyway);
* ``tpe_penalty``: TPE on the penalized objective ``|α − target| + penalty·(1 + shortfall)``
  (htsweep's search before constraints);
* ``tpe_constraint`` / ``gp_constraint``: TPE / GPSampler told ``|α − target|`` with the
  accuracy floor as Optuna's constraint (what ``sweeps.search`` does now);
* ``nsga2_mo``: NSGA-II on (|α − target|, test error), the multi-objective form (no floor).

Per (landscape, target α, accuracy floor): the median number of trials to the first feasible
trial with |α − target| ≤ 0.1 (95 % bootstrap CI over seeds; censored at the budget when a run
never gets there: such a median prints as ">96"), simple regret of the penalized objective after
12 / 24 / 48 trials (against the table's best configuration), and the hypervolume of
(|α − target|, test error) after 48 trials (reference point (3, 1), normalized).

``python benchmarks/bench_search.py [--seeds 50] [--arms ...]`` appends runs to
``benchmarks/results/bench_search_runs.jsonl`` (an interrupted run resumes) and writes
``benchmarks/results/bench_search.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import single_thread_env  # noqa: E402

single_thread_env()

import numpy as np  # noqa: E402
import optuna  # noqa: E402

from htsweep.sweeps.objective import evaluate  # noqa: E402
from htsweep.sweeps.spec import AUTO_SAMPLER, ObjectiveSpec  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
RUNS = RESULTS / "bench_search_runs.jsonl"
OUT = RESULTS / "bench_search.json"

LANDSCAPES = ("mlp3_digits", "lenet5_digits")
TARGETS = (2.0, 2.5, 3.0)
FLOORS = (0.8, 0.9)
BUDGET = 96
#: GPSampler costs ~10 CPU s per 48 trials here (and grows ~cubically): its runs stop at 48.
BUDGET_GP = 48
CHECKPOINTS = (12, 24, 48)
TOLERANCE = 0.1
STARTUP = 4  # sweeps.spec.SamplerSpec.n_startup_trials' default
HV_REF = (3.0, 1.0)
ARMS = ("random", "qmc", "tpe_penalty", "tpe_constraint", "gp_constraint", "nsga2_mo")


class Table:
    """One landscape: configuration → (final α, final test accuracy)."""

    def __init__(self, landscape: str) -> None:
        data = json.loads((RESULTS / f"search_table_{landscape}.json").read_text())
        self.name = landscape
        self.grid = data["grid"]
        self.lrs = np.log10(np.array(self.grid["lr"], dtype=np.float64))
        self.values: dict[tuple, tuple[float, float]] = {}
        for row in data["rows"]:
            if row["seed"] != data["seeds"][0]:
                continue
            c = row["config"]
            last = row["steps"][-1] if row["steps"] else {}
            alpha = last.get("alpha_mean")
            acc = last.get("test_acc")
            alpha = math.nan if alpha is None or row["diverged"] else float(alpha)
            acc = 0.0 if acc is None or row["diverged"] else float(acc)
            self.values[self.key(c)] = (alpha, acc)

    def key(self, c: dict[str, Any]) -> tuple:
        lr = float(self.grid["lr"][int(np.argmin(np.abs(self.lrs - math.log10(c["lr"]))))])
        return c["optimizer"], lr, int(c["batch_size"]), float(c["weight_decay"])

    def space(self) -> dict[str, optuna.distributions.BaseDistribution]:
        d = optuna.distributions
        return {"optimizer": d.CategoricalDistribution(tuple(self.grid["optimizer"])),
                "lr": d.FloatDistribution(min(self.grid["lr"]), max(self.grid["lr"]), log=True),
                "batch_size": d.CategoricalDistribution(tuple(self.grid["batch_size"])),
                "weight_decay": d.CategoricalDistribution(tuple(self.grid["weight_decay"]))}

    def terms(self, c: dict[str, Any], spec: ObjectiveSpec) -> dict[str, float]:
        alpha, acc = self.values[self.key(c)]
        return {**evaluate({"alpha_mean": alpha, "test_acc": acc}, spec), "test_acc": acc}

    def best_objective(self, spec: ObjectiveSpec) -> float:
        return min(evaluate({"alpha_mean": a, "test_acc": t}, spec)["objective"] for a, t in self.values.values())

    def n_hits(self, spec: ObjectiveSpec) -> int:
        return sum(_hit(evaluate({"alpha_mean": a, "test_acc": t}, spec)) for a, t in self.values.values())


def _hit(terms: dict[str, float]) -> bool:
    return terms["feasible"] > 0 and terms["alpha_error"] <= TOLERANCE


def _sampler(arm: str, seed: int) -> optuna.samplers.BaseSampler:
    s = optuna.samplers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if arm == "random":
            return s.RandomSampler(seed=seed)
        if arm == "qmc":
            return s.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False)
        if arm.startswith("tpe"):
            return s.TPESampler(n_startup_trials=STARTUP, seed=seed)
        if arm == "gp_constraint":
            return s.GPSampler(n_startup_trials=STARTUP, seed=seed)
        if arm == "nsga2_mo":
            return s.NSGAIISampler(population_size=8, seed=seed)
    raise ValueError(arm)


def run_once(table: Table, arm: str, target: float, floor: float, seed: int) -> dict[str, Any]:
    """One search of ``BUDGET`` trials; the objective terms of each trial in order."""
    spec = ObjectiveSpec(target_alpha=target, min_test_accuracy=floor)
    mo = arm == "nsga2_mo"
    study = optuna.create_study(sampler=_sampler(arm, seed), directions=["minimize", "minimize"] if mo else None)
    trials = []
    t0 = time.process_time()
    for _ in range(BUDGET_GP if arm == "gp_constraint" else BUDGET):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = study.ask(table.space())
        terms = table.terms(trial.params, spec)
        if mo:
            study.tell(trial, [terms["alpha_error"], terms["test_error"]])
        elif arm.endswith("_constraint"):
            trial.set_constraint("min_test_accuracy", floor - terms["test_acc"])
            study.tell(trial, terms["alpha_error"])
        else:
            study.tell(trial, terms["objective"])
        trials.append([round(terms["alpha_error"], 6), round(terms["test_error"], 6), round(terms["objective"], 6),
                       int(_hit(terms))])
    return {"landscape": table.name, "arm": arm, "target": target, "floor": floor, "seed": seed,
            "trials": trials, "cpu_s": round(time.process_time() - t0, 3)}


# ----------------------------------------------------------------------------------- summary
def first_hit(trials: list[list[float]]) -> float:
    """1-based index of the first hit, ``inf`` when none within the budget."""
    return next((i + 1 for i, t in enumerate(trials) if t[3]), math.inf)


def hypervolume(points: np.ndarray, ref: tuple[float, float] = HV_REF) -> float:
    """Area dominated by the 2-D points (minimized) up to ``ref``, divided by the reference box."""
    p = points[(points[:, 0] < ref[0]) & (points[:, 1] < ref[1])]
    if not len(p):
        return 0.0
    p = p[np.argsort(p[:, 0])]
    area, best_y = 0.0, ref[1]
    for x, y in p:  # sweep by x: each new lower y adds the strip from x to the reference
        if y < best_y:
            area += (ref[0] - x) * (best_y - y)
            best_y = y
    return area / (ref[0] * ref[1])


def bootstrap_median(x: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Median and 95 % percentile-bootstrap interval (``inf`` entries are censored runs)."""
    rng = np.random.default_rng(seed)
    meds = np.median(x[rng.integers(0, len(x), size=(n_boot, len(x)))], axis=1)
    return float(np.median(x)), float(np.percentile(meds, 2.5)), float(np.percentile(meds, 97.5))


def summarize(runs: list[dict[str, Any]], tables: dict[str, Table]) -> list[dict[str, Any]]:
    out = []
    keys = sorted({(r["landscape"], r["target"], r["floor"]) for r in runs})
    for land, target, floor in keys:
        spec = ObjectiveSpec(target_alpha=target, min_test_accuracy=floor)
        best = tables[land].best_objective(spec)
        for arm in ARMS:
            rs = [r for r in runs if (r["landscape"], r["target"], r["floor"], r["arm"]) == (land, target, floor, arm)]
            if not rs:
                continue
            hits = np.array([first_hit(r["trials"]) for r in rs])
            med, lo, hi = bootstrap_median(hits)
            row = {"landscape": land, "target": target, "floor": floor, "arm": arm, "seeds": len(rs),
                   "budget": len(rs[0]["trials"]),
                   "table_hits": tables[land].n_hits(spec), "table_size": len(tables[land].values),
                   "median_first_hit": med, "ci": [lo, hi], "found_within_budget": float(np.isfinite(hits).mean()),
                   "cpu_s_per_run": float(np.mean([r["cpu_s"] for r in rs]))}
            for k in CHECKPOINTS:
                reg = [min(t[2] for t in r["trials"][:k]) - best for r in rs]
                row[f"regret_{k}"] = float(np.mean(reg))
                row[f"regret_{k}_median"] = float(np.median(reg))
            row["hypervolume_48"] = float(np.mean([hypervolume(np.array([t[:2] for t in r["trials"]]))
                                                   for r in rs]))
            out.append(row)
    return out


def with_ratios(out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row's median trials to the first hit over random search's in the same setting."""
    for row in out:
        rnd = next((r for r in out if r["arm"] == "random" and (r["landscape"], r["target"], r["floor"])
                    == (row["landscape"], row["target"], row["floor"])), None)
        row["ratio_to_random"] = (row["median_first_hit"] / rnd["median_first_hit"]
                                  if rnd and math.isfinite(rnd["median_first_hit"]) else math.nan)
    return out


def _fmt_hit(row: dict[str, Any]) -> str:
    def f(v: float) -> str:
        return f">{row['budget']}" if not math.isfinite(v) else f"{v:.0f}"

    m, (lo, hi) = row["median_first_hit"], row["ci"]
    return f"{f(m)} [{f(lo)}, {f(hi)}]"


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'landscape':15} {'α*':>4} {'floor':>5} {'arm':15} {'n':>3} {'hits':>4} {'first hit [CI]':>16} "
          f"{'×rand':>6} {'reg12':>6} {'reg24':>6} {'reg48':>6} {'HV48':>5}")
    for r in rows:
        print(f"{r['landscape']:15} {r['target']:4.1f} {r['floor']:5.2f} {r['arm']:15} {r['seeds']:3d} "
              f"{r['table_hits']:4d} {_fmt_hit(r):>16} {r['ratio_to_random']:6.2f} {r['regret_12']:6.3f} "
              f"{r['regret_24']:6.3f} {r['regret_48']:6.3f} {r['hypervolume_48']:5.3f}")


def load_runs() -> list[dict[str, Any]]:
    if not RUNS.exists():
        return []
    runs: dict[tuple, dict[str, Any]] = {}  # one run per (landscape, arm, target, floor, seed): the first
    for line in RUNS.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            runs.setdefault((r["landscape"], r["arm"], r["target"], r["floor"], r["seed"]), r)
    return list(runs.values())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    ap.add_argument("--landscapes", nargs="+", default=list(LANDSCAPES), choices=LANDSCAPES)
    ap.add_argument("--floors", nargs="+", type=float, default=list(FLOORS), choices=FLOORS)
    ap.add_argument("--summarize", action="store_true", help="only summarize the runs already recorded")
    args = ap.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    import torch

    torch.set_num_threads(1)
    tables = {name: Table(name) for name in LANDSCAPES if (RESULTS / f"search_table_{name}.json").exists()}
    done = {(r["landscape"], r["arm"], r["target"], r["floor"], r["seed"]) for r in load_runs()}
    if not args.summarize:
        for arm in args.arms:
            for land in args.landscapes:
                for target in TARGETS:
                    for floor in args.floors:
                        for seed in range(args.first_seed, args.first_seed + args.seeds):
                            if (land, arm, target, floor, seed) in done:
                                continue
                            rec = run_once(tables[land], arm, target, floor, seed)
                            with RUNS.open("a") as fh:
                                fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
                print(f"{arm} {land} done", flush=True)
    rows = summarize(load_runs(), tables)
    # settings the recorded runs do not cover keep their rows from the last results (the runs file
    # is not committed, so rerunning one arm must not drop the others)
    covered = {(r["landscape"], r["target"], r["floor"], r["arm"]) for r in rows}
    kept = json.loads(OUT.read_text())["rows"] if OUT.exists() else []
    rows = with_ratios(sorted(rows + [r for r in kept if (r["landscape"], r["target"], r["floor"], r["arm"])
                                      not in covered],
                              key=lambda r: (r["landscape"], r["target"], r["floor"], ARMS.index(r["arm"]))))
    print_table(rows)
    OUT.write_text(json.dumps({
        "budget": BUDGET, "budget_gp": BUDGET_GP, "tolerance": TOLERANCE, "targets": TARGETS, "floors": FLOORS, "startup_trials": STARTUP,
        "hv_reference": HV_REF, "optuna": optuna.__version__,
        "default_arm": f"{AUTO_SAMPLER}_constraint",
        "machine": {"python": platform.python_version(),
                    "note": "2 cores shared with other jobs; single-threaded"},
        "rows": rows,
    }, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
