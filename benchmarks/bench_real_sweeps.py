"""Search and early stopping on real sweeps: the quickstart spec trained for real, several seeds per arm.

``bench_search.py`` compares samplers on tables of finished training; this script checks its
answer, and measures ASHA, on real ``htsweep run`` sweeps of ``sweeps/examples/quickstart.yaml``
(12 MLP3 trials on digits, 300 steps, 2 at a time). Arms, each over the same seeds:

* ``tpe``: the spec as shipped (the default sampler, TPE with the accuracy floor as a constraint), FIFO;
* ``random``: ``sampler: random``, FIFO;
* ``tpe_asha``: the default sampler with ``scheduler: asha`` (grace period 1 report, reduction factor 2).

Per sweep: wall time of ``htsweep run`` (Ray start included, the same for every arm), training
steps run (the sum of every trial's last step: a load-independent cost), the final regret (the
best feasible, fully trained trial's ``|α − target|``: what ``htsweep best`` answers; inf when no
trial is feasible), and the number of trials to the first feasible ``|α − target| ≤ 0.1``
(censored at the budget + 1 when no trial gets there). Arms run interleaved seed by seed, so a
change in the box's load hits all of them alike.

With 2 trials at a time, TPE's proposals depend on which trial finishes first, so a rerun of the
same seed can differ: a trial's wall time varies with the box's load. ASHA's cuts are asynchronous
and depend on timing as well. Random search does not.

``python benchmarks/bench_real_sweeps.py [--seeds 0 1 2]`` appends one JSON line per sweep to
``benchmarks/results/bench_real_sweeps_runs.jsonl`` (an interrupted run resumes) and writes
``benchmarks/results/bench_real_sweeps.json``. Run it under ``flock /work/locks/bench.lock``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from htsweep.sweeps.status import best_trial, load_trials  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
RUNS = RESULTS / "bench_real_sweeps_runs.jsonl"
OUT = RESULTS / "bench_real_sweeps.json"
SPEC = ROOT / "sweeps" / "examples" / "quickstart.yaml"
TOLERANCE = 0.1
ARMS: dict[str, dict[str, Any]] = {
    "tpe": {},
    "random": {"sampler": {"type": "random"}},
    "tpe_asha": {"scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2}},
}


def _spec(arm: str, seed: int) -> dict[str, Any]:
    spec = yaml.safe_load(SPEC.read_text())
    spec.update({"name": f"bench_{arm}_{seed}", "seed": seed, **ARMS[arm]})
    return spec


def run_one(arm: str, seed: int, scratch: Path) -> dict[str, Any]:
    """One real sweep of ``arm`` with ``seed``: its wall time, cost, regret and trials to the target."""
    spec_path = scratch / f"{arm}_{seed}.yaml"
    spec_path.write_text(yaml.safe_dump(_spec(arm, seed), sort_keys=False))
    workdir = scratch / f"{arm}_{seed}"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HTSWEEP_TRACKING_URI",
                                                            "RAY_ADDRESS")}
    env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="htsb-", dir="/tmp")  # short: Ray's socket paths
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "htsweep.sweeps.cli", "run", str(spec_path), "--workdir",
                           str(workdir), "--quiet", "--no-report"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    wall = time.monotonic() - t0
    shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{arm} seed {seed}: htsweep run exited {proc.returncode}: {proc.stdout[-1500:]}")
    _, spec, rows = load_trials(workdir)
    best = best_trial(rows)
    first = next((i + 1 for i, r in enumerate(rows) if r.complete and r.fully_trained and r.feasible
                  and r.alpha_error <= TOLERANCE), spec.num_samples + 1)
    return {
        "arm": arm, "seed": seed, "wall_s": round(wall, 2), "n_trials": len(rows),
        "n_complete": sum(r.complete for r in rows),
        "n_cut_short": sum(r.complete and not r.fully_trained for r in rows),
        "steps_trained": int(sum(int(r.attrs.get("step", 0) or 0) for r in rows)),
        "final_regret": best.alpha_error if best is not None else math.inf,
        "best_alpha": best.alpha if best is not None else math.nan,
        "best_test_acc": best.test_acc if best is not None else math.nan,
        "first_hit": first, "budget": spec.num_samples,
    }


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return math.nan if not n else (xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2]))


def summarize(runs: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """Per arm: medians over seeds; ASHA's wall time and steps over the FIFO arm's, seed by seed."""
    by = {(r["arm"], r["seed"]): r for r in runs}
    arms = {}
    for arm in ARMS:
        rs = [by[(arm, s)] for s in seeds if (arm, s) in by]
        arms[arm] = {
            "seeds": [r["seed"] for r in rs],
            "median_wall_s": _median([r["wall_s"] for r in rs]),
            "median_steps": _median([r["steps_trained"] for r in rs]),
            "median_final_regret": _median([r["final_regret"] for r in rs]),
            "final_regret": [r["final_regret"] for r in rs],
            "median_first_hit": _median([r["first_hit"] for r in rs]),
            "first_hit": [r["first_hit"] for r in rs],
            "wall_s": [r["wall_s"] for r in rs],
        }
    paired = [s for s in seeds if ("tpe", s) in by and ("tpe_asha", s) in by]
    asha = {
        "seeds": paired,
        "wall_ratio": [by[("tpe_asha", s)]["wall_s"] / by[("tpe", s)]["wall_s"] for s in paired],
        "steps_ratio": [by[("tpe_asha", s)]["steps_trained"] / by[("tpe", s)]["steps_trained"] for s in paired],
        "regret_diff": [by[("tpe_asha", s)]["final_regret"] - by[("tpe", s)]["final_regret"] for s in paired],
    }
    asha["median_wall_ratio"] = _median(asha["wall_ratio"])
    asha["median_steps_ratio"] = _median(asha["steps_ratio"])
    return {"arms": arms, "asha_vs_fifo": asha}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    args = parser.parse_args(argv)
    runs = [json.loads(line) for line in RUNS.read_text().splitlines() if line.strip()] if RUNS.exists() else []
    done = {(r["arm"], r["seed"]) for r in runs}
    scratch = Path(tempfile.mkdtemp(prefix="bench_real_sweeps-"))
    try:
        for seed in args.seeds:
            for arm in args.arms:
                if (arm, seed) in done:
                    continue
                rec = run_one(arm, seed, scratch)
                print(json.dumps(rec), flush=True)
                runs.append(rec)
                with RUNS.open("a") as fh:
                    fh.write(json.dumps(rec) + "\n")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    spec = yaml.safe_load(SPEC.read_text())
    out = {
        "benchmark": "bench_real_sweeps", "spec": str(SPEC.relative_to(ROOT)), "num_samples": spec["num_samples"],
        "target_alpha": spec["objective"]["target_alpha"], "min_test_accuracy": spec["objective"]["min_test_accuracy"],
        "tolerance": TOLERANCE, "asha": ARMS["tpe_asha"]["scheduler"],
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_avg_at_end": os.getloadavg()[0]},
        **summarize(runs, sorted({r["seed"] for r in runs})),
    }
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    for arm, a in out["arms"].items():
        print(f"{arm:9s} seeds {a['seeds']}: wall {a['median_wall_s']:.0f} s, steps {a['median_steps']:.0f}, "
              f"final regret {a['median_final_regret']:.3f} {a['final_regret']}, first |a-t|<=0.1 "
              f"{a['median_first_hit']:g} {a['first_hit']}")
    x = out["asha_vs_fifo"]
    print(f"ASHA / FIFO: wall {x['median_wall_ratio']:.2f}x, steps {x['median_steps_ratio']:.2f}x, "
          f"regret diff {x['regret_diff']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
