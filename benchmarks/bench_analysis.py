"""Speed and agreement of the analysis engine against the reference packages, single-threaded.

1. ``fit_power_law`` vs ``powerlaw.Fit(..., parameter_ranges={"alpha": [1, 20]})`` on the same
   ESDs (512², 1024², 4096×1024; Gaussian and Student-t entries): speed ratio, alpha difference,
   same-xmin check.
2. ``analyze_model`` (batched ESD + power-law + MP fits + metrics + phase) vs
   ``weightwatcher.WeightWatcher(model=model).analyze(mp_fit=True)`` on one random MLP
   (1024², 1024², 1024², 4096×1024): speed ratio and per-layer alphas; and ``analyze_model`` vs the
   bare eigenvalue computation (float64 Gram matrix + ``torch.linalg.eigvalsh`` per layer).

Run ``python benchmarks/bench_analysis.py`` (``--quick`` for small sizes). It prints a table and
writes ``benchmarks/results/bench_analysis.json``. Without weightwatcher installed (the ``bench``
extra) that comparison is skipped with a message.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import single_thread_env  # noqa: E402

single_thread_env()  # before numpy / torch are imported

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import Benchmark, best_time, is_xslow, safe_import  # noqa: E402

from analysis import analyze_model, esd, fit_power_law  # noqa: E402

torch.set_num_threads(1)

RESULTS = Path(__file__).resolve().parent / "results" / "bench_analysis.json"
PL_SHAPES = [(512, 512), (1024, 1024), (4096, 1024)]
MLP_SHAPES = [(1024, 1024), (1024, 1024), (1024, 1024), (4096, 1024)]  # (out, in) of each Linear


def make_esd(kind: str, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """ESD of a seeded matrix: 'gaussian' (MP-like) or 'student_t' (3 dof, heavy-tailed)."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal(shape) if kind == "gaussian" else rng.standard_t(3.0, size=shape)
    return esd(W, device="cpu")


def make_mlp(shapes: list[tuple[int, int]], seed: int = 0) -> torch.nn.Module:
    """Random (PyTorch default init) MLP whose Linear weights have the given (out, in) shapes."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(*[torch.nn.Linear(i, o) for o, i in shapes])


def bare_eigvalsh(model: torch.nn.Module) -> list[np.ndarray]:
    """The irreducible work: float64 Gram matrix WᵀW/N and eigvalsh, one layer at a time."""
    out = []
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            W = module.weight.detach().to(torch.float64)
            if W.shape[0] < W.shape[1]:
                W = W.T
            out.append(torch.linalg.eigvalsh(W.T @ W / W.shape[0]).numpy())
    return out


def powerlaw_fit(eigs: np.ndarray) -> tuple[float, float]:
    """(alpha, xmin) from the powerlaw package with the alpha clip lifted."""
    import powerlaw

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        fit = powerlaw.Fit(eigs, parameter_ranges={"alpha": [1, 20]}, verbose=0)
        return float(fit.power_law.alpha), float(fit.xmin)


def weightwatcher_analyze(model: torch.nn.Module) -> Any:
    """WeightWatcher's analysis with the MP fit, quietly."""
    import weightwatcher

    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return weightwatcher.WeightWatcher(model=model).analyze(mp_fit=True)


class PowerLawFitBench(Benchmark):
    """Our vectorized CSN fit vs powerlaw.Fit on the same ESD."""

    params = [["gaussian", "student_t"], PL_SHAPES]
    param_names = ["entries", "shape"]

    def setup(self, kind: str, shape: tuple[int, int]) -> None:
        self.eigs = make_esd(kind, shape)

    def time_ours(self, kind: str, shape: tuple[int, int]) -> None:
        fit_power_law(self.eigs, min_tail=3)

    def time_powerlaw(self, kind: str, shape: tuple[int, int]) -> None:
        powerlaw_fit(self.eigs)


class AnalyzeModelBench(Benchmark):
    """Full per-layer analysis of a random MLP vs WeightWatcher and vs bare eigvalsh."""

    params: list[list[Any]] = [[tuple(MLP_SHAPES)]]
    param_names = ["layers"]

    def setup(self, shapes: tuple[tuple[int, int], ...]) -> None:
        self.model = make_mlp(list(shapes))

    def time_analyze_model(self, shapes: Any) -> None:
        analyze_model(self.model, device="cpu")

    def time_bare_eigvalsh(self, shapes: Any) -> None:
        bare_eigvalsh(self.model)

    def time_weightwatcher(self, shapes: Any) -> None:
        if safe_import("weightwatcher") is None:
            raise NotImplementedError("weightwatcher not installed")
        weightwatcher_analyze(self.model)


def run_powerlaw(shapes: list[tuple[int, int]], repeat: int) -> list[dict[str, Any]]:
    rows = []
    bench = PowerLawFitBench()
    for kind in PowerLawFitBench.params[0]:
        for shape in shapes:
            bench.setup(kind, shape)
            eigs = bench.eigs
            ours_fit = fit_power_law(eigs, min_tail=3)
            t_ours = best_time(lambda k=kind, s=shape: bench.time_ours(k, s), repeat=repeat, min_total=0.2)
            t0 = time.perf_counter()
            ref_alpha, ref_xmin = powerlaw_fit(eigs)
            t_ref = time.perf_counter() - t0
            rows.append({
                "entries": kind, "shape": list(shape), "n_eigs": int(eigs.size),
                "t_ours_s": t_ours, "t_powerlaw_s": t_ref, "speedup": t_ref / t_ours,
                "alpha_ours": ours_fit.alpha, "alpha_powerlaw": ref_alpha,
                "alpha_abs_diff": abs(ours_fit.alpha - ref_alpha),
                "xmin_ours": ours_fit.xmin, "xmin_powerlaw": ref_xmin,
                "same_xmin": bool(np.isclose(ours_fit.xmin, ref_xmin, rtol=1e-12)),
            })
    return rows


def run_model(shapes: list[tuple[int, int]], repeat: int) -> dict[str, Any]:
    bench = AnalyzeModelBench()
    bench.setup(tuple(shapes))
    df = analyze_model(bench.model, device="cpu")  # warm-up (imports, caches) + results
    t_ours = best_time(lambda: bench.time_analyze_model(None), repeat=repeat)
    t_bare = best_time(lambda: bench.time_bare_eigvalsh(None), repeat=repeat)
    eigs = bare_eigvalsh(bench.model)
    out: dict[str, Any] = {
        "layers": [list(s) for s in shapes],
        "t_analyze_model_s": t_ours,
        "t_bare_eigvalsh_s": t_bare,
        "analyze_over_bare": t_ours / t_bare,
        "per_layer": [
            {"name": str(r["name"]), "n_eigs": int(e.size), "alpha_ours": float(r["alpha"]),
             "phase": str(r["phase"]), "n_spikes": int(r["n_spikes"])}
            for r, e in zip(df.to_dict("records"), eigs, strict=True)
        ],
    }
    if safe_import("weightwatcher") is None:
        out["weightwatcher"] = "skipped: weightwatcher is not installed (pip install 'htsweep[bench]')"
        return out
    ww = None
    t_ww = float("inf")
    for _ in range(min(2, repeat)):  # WeightWatcher is slow: best of at most two runs
        t0 = time.perf_counter()
        ww = weightwatcher_analyze(bench.model)
        t_ww = min(t_ww, time.perf_counter() - t0)
    out["t_weightwatcher_mp_fit_s"] = t_ww
    out["speedup_vs_weightwatcher"] = t_ww / t_ours
    for row, ww_alpha in zip(out["per_layer"], ww["alpha"].tolist(), strict=True):
        row["alpha_weightwatcher"] = float(ww_alpha)
        row["alpha_abs_diff"] = abs(float(ww_alpha) - row["alpha_ours"])
    return out


def print_table(pl_rows: list[dict[str, Any]], model: dict[str, Any]) -> None:
    print("\n== power-law fit: ours vs powerlaw.Fit (alpha range [1, 20]), 1 thread ==")
    print(f"{'entries':<10}{'shape':>12}{'ours ms':>10}{'powerlaw s':>12}{'speedup':>10}"
          f"{'alpha ours':>12}{'alpha ref':>11}{'|diff|':>10}{'same xmin':>11}")
    for r in pl_rows:
        shape = f"{r['shape'][0]}x{r['shape'][1]}"
        print(f"{r['entries']:<10}{shape:>12}{1e3 * r['t_ours_s']:>10.2f}{r['t_powerlaw_s']:>12.2f}"
              f"{r['speedup']:>9.0f}x{r['alpha_ours']:>12.4f}{r['alpha_powerlaw']:>11.4f}"
              f"{r['alpha_abs_diff']:>10.1e}{str(r['same_xmin']):>11}")
    print("\n== analyze_model on an MLP " + " ".join(f"{o}x{i}" for o, i in model["layers"]) + " ==")
    print(f"analyze_model     {model['t_analyze_model_s']:8.2f} s")
    print(f"bare eigvalsh     {model['t_bare_eigvalsh_s']:8.2f} s   -> analyze/bare = "
          f"{model['analyze_over_bare']:.2f}x (target <= 1.5x)")
    if "t_weightwatcher_mp_fit_s" in model:
        print(f"weightwatcher     {model['t_weightwatcher_mp_fit_s']:8.2f} s   -> speedup "
              f"{model['speedup_vs_weightwatcher']:.1f}x (target >= 20x)")
    else:
        print(model["weightwatcher"])
    print(f"{'layer':<8}{'alpha ours':>12}{'alpha ww':>10}{'|diff|':>10}{'phase':>20}")
    for r in model["per_layer"]:
        ww_alpha = r.get("alpha_weightwatcher", float("nan"))
        diff = r.get("alpha_abs_diff", float("nan"))
        print(f"{r['name']:<8}{r['alpha_ours']:>12.3f}{ww_alpha:>10.3f}{diff:>10.1e}{r['phase']:>20}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run both comparisons, print the table and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats (best of)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    pl_shapes = [(128, 128), (256, 128)] if args.quick else PL_SHAPES
    mlp_shapes = [(256, 256), (512, 256)] if args.quick else MLP_SHAPES
    if is_xslow() and not args.quick:
        pl_shapes = [*pl_shapes, (4096, 4096)]
    pl_rows = run_powerlaw(pl_shapes, args.repeat) if safe_import("powerlaw") else []
    model = run_model(mlp_shapes, args.repeat)
    results = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                    "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()},
        "quick": args.quick,
        "power_law": pl_rows,
        "analyze_model": model,
    }
    print_table(pl_rows, model)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(f"\nwrote {args.out}")
    return results


if __name__ == "__main__":
    main()
