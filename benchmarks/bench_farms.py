"""FARMS: cost per layer next to today's analysis, and the aspect-ratio acceptance numbers.

For each layer shape, in one process and single-threaded: the CPU time (user + sys) of
``analyze_matrix`` (float32, all fits and the phase: today's per-layer analysis) and of the FARMS
addition (``analysis.farms.farms``: windows, batched window ESDs, pooled fits), and their ratio.
Then the acceptance study of issue 26: iid Gaussian and Student-t (ν = 1.5) matrices of
1000 × {1000, 2000, 4000, 8000}: the spread (max − min) over Q of α, PL_Alpha_Hill, alpha_farms
and alpha_hill_farms. On square layers within the window size (one window: the layer itself), what
FARMS adds to ``analyze_matrix`` now that it reuses the layer's spectrum, next to the window
eigensolve it no longer does.

``python benchmarks/bench_farms.py`` writes ``benchmarks/results/bench_farms.json``;
``--sections reuse`` (any of ``cost wide acceptance windows_sweep reuse``) reruns only those and
keeps the file's other sections.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import single_thread_env  # noqa: E402

single_thread_env()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from htsweep.analysis import analyze_matrix  # noqa: E402
from htsweep.analysis.farms import farms  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "bench_farms.json"
COST_SHAPES = [(784, 256), (2048, 512), (1000, 1000), (4000, 1000), (8000, 1000)]
# a layer wider than the window in both dimensions gets up to 100 windows of 2000×2000: measured as
# one window's ESD (the cost is that × the window count) next to the full layer's analysis
WIDE_SHAPE = (4096, 4096)
ACCEPT_COLS = (1000, 2000, 4000, 8000)
# fewer offsets per dimension than the paper's 10: cost and how far the α's move
SWEEP_WINDOWS = (2, 3, 5, 10)
SWEEP_SHAPES = [(2048, 512), (8000, 1000)]
# square layers up to the window size: FARMS' one window is the layer (attention projections)
REUSE_SHAPES = [(512, 512), (768, 768), (1000, 1000), (2000, 2000)]


def _cpu(fn) -> float:
    """Smallest CPU time (user + sys) of ``fn()`` over 2 runs (the box is shared: CPU time, not wall)."""
    best = float("inf")
    for _ in range(2):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def cost() -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for shape in COST_SHAPES:
        W = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
        analyze_matrix(W, device="cpu")  # warm-up
        base = _cpu(lambda W=W: analyze_matrix(W, device="cpu"))
        (res,) = farms([W], device="cpu")
        extra = _cpu(lambda W=W: farms([W], device="cpu"))
        out.append({"shape": list(shape), "analyze_s": base, "farms_s": extra, "farms_over_analyze": extra / base,
                    "n_windows": res.n_windows, "window": list(res.window)})
        print(f"{shape}: analyze {base:.3f} s, farms {extra:.3f} s ({extra / base:.1f}×), "
              f"{res.n_windows} windows of {res.window}", flush=True)
    return out


def wide() -> dict:
    """One 2000×2000 window's ESD × the window count of a 4096² layer, vs that layer's analysis."""
    from htsweep.analysis.farms import windows
    from htsweep.analysis.spectrum import esd_layers

    rng = np.random.default_rng(1)
    W = torch.from_numpy(rng.standard_normal(WIDE_SHAPE).astype(np.float32))
    n_windows = len(windows(W))
    window = windows(W)[0]
    per_window = _cpu(lambda: esd_layers([window], device="cpu", precision="float32"))
    base = _cpu(lambda: analyze_matrix(W, device="cpu"))
    out = {"shape": list(WIDE_SHAPE), "n_windows": n_windows, "window_esd_s": per_window, "analyze_s": base,
           "farms_estimate_s": n_windows * per_window, "farms_over_analyze_estimate": n_windows * per_window / base}
    print(f"{WIDE_SHAPE}: analyze {base:.1f} s; {n_windows} windows × {per_window:.2f} s "
          f"= {n_windows * per_window:.0f} s ({n_windows * per_window / base:.0f}×)", flush=True)
    return out


def windows_sweep() -> dict:
    """FARMS with ``n_windows`` offsets per dimension: CPU time over the analysis' and the α's, on
    Gaussian and Student-t (ν = 1.5) layers of ``SWEEP_SHAPES``; the 4096² layer's window count and
    estimated cost (one 2000² window's ESD, as in :func:`wide`); the acceptance spreads over Q."""
    from htsweep.analysis.farms import windows

    rng = np.random.default_rng(2)
    out: dict = {"n_windows": list(SWEEP_WINDOWS), "layers": [], "wide": {}, "spread": {}}
    for shape in SWEEP_SHAPES:
        for name, W in (("gaussian", rng.standard_normal(shape)), ("student_t_1.5", rng.standard_t(1.5, size=shape))):
            W = torch.from_numpy(W.astype(np.float32))
            base = _cpu(lambda W=W: analyze_matrix(W, device="cpu"))
            row = {"shape": list(shape), "entries": name, "analyze_s": base}
            for k in SWEEP_WINDOWS:
                (res,) = farms([W], device="cpu", n_windows=k)
                row[str(k)] = {"over_analyze": _cpu(lambda W=W, k=k: farms([W], device="cpu", n_windows=k)) / base,
                               "alpha_farms": res.alpha, "alpha_hill_farms": res.alpha_hill}
            out["layers"].append(row)
            print(shape, name, {k: round(row[str(k)]["over_analyze"], 2) for k in SWEEP_WINDOWS},
                  {k: round(row[str(k)]["alpha_hill_farms"], 3) for k in SWEEP_WINDOWS}, flush=True)
    W = torch.zeros(WIDE_SHAPE)
    out["wide"] = {str(k): len(windows(W, n_windows=k)) for k in SWEEP_WINDOWS}
    for name, draw in (("gaussian", lambda s: rng.standard_normal(s)),
                       ("student_t_1.5", lambda s: rng.standard_t(1.5, size=s))):
        mats = [draw((1000, c)).astype(np.float32) for c in ACCEPT_COLS]
        out["spread"][name] = {}
        for k in SWEEP_WINDOWS:
            res = farms(mats, device="cpu", n_windows=k)
            out["spread"][name][str(k)] = {"alpha_farms": float(np.ptp([r.alpha for r in res])),
                                           "alpha_hill_farms": float(np.ptp([r.alpha_hill for r in res]))}
        print(name, out["spread"][name], flush=True)
    return out


def acceptance() -> dict:
    rng = np.random.default_rng(0)
    out = {}
    for name, draw in (("gaussian", lambda s: rng.standard_normal(s)),
                       ("student_t_1.5", lambda s: rng.standard_t(1.5, size=s))):
        rows = [analyze_matrix(draw((1000, c)).astype(np.float32), device="cpu", farms=True) for c in ACCEPT_COLS]
        keys = ("alpha", "alpha_hill", "alpha_farms", "alpha_hill_farms")
        out[name] = {"q": [c / 1000 for c in ACCEPT_COLS], **{k: [r[k] for r in rows] for k in keys},
                     **{f"{k}_spread": float(np.ptp([r[k] for r in rows])) for k in keys}}
        print(name, {k: round(out[name][f"{k}_spread"], 3) for k in keys}, flush=True)
    return out


def reuse() -> list[dict]:
    """Square layers ≤ 2000: CPU time FARMS adds to ``analyze_matrix`` (the layer's spectrum reused,
    only the pooled fits left) vs the window's own eigensolve (``farms([W])``, what it cost before)."""
    rng = np.random.default_rng(3)
    out = []
    for shape in REUSE_SHAPES:
        W = torch.from_numpy(rng.standard_t(3.0, size=shape).astype(np.float32))
        analyze_matrix(W, device="cpu", farms=True)  # warm-up
        base = _cpu(lambda W=W: analyze_matrix(W, device="cpu"))
        with_farms = _cpu(lambda W=W: analyze_matrix(W, device="cpu", farms=True))
        windowed = _cpu(lambda W=W: farms([W], device="cpu"))
        out.append({"shape": list(shape), "analyze_s": base, "analyze_farms_s": with_farms,
                    "added_over_analyze": (with_farms - base) / base, "window_esd_farms_s": windowed,
                    "window_esd_over_analyze": windowed / base})
        print(f"{shape}: analyze {base:.3f} s, with farms {with_farms:.3f} s (+{(with_farms - base) / base:.2f}×); "
              f"farms with its own eigensolve {windowed:.3f} s ({windowed / base:.2f}×)", flush=True)
    return out


SECTIONS = {"cost": cost, "wide": wide, "acceptance": acceptance, "windows_sweep": windows_sweep, "reuse": reuse}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", nargs="*", default=list(SECTIONS), choices=list(SECTIONS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    result = json.loads(OUT.read_text(encoding="utf-8")) if OUT.exists() else {}
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                         "note": "shared 2-core box; CPU time (user + sys), single-threaded"}
    for name in args.sections:
        result[name] = SECTIONS[name]()
    OUT.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
