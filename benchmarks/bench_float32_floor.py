"""``analyze_model`` at its default float32 vs the bare float32 floor of the same matrices, one thread.

The floor is the irreducible work: per matrix, a float32 Gram ``WᵀW/N`` (one matmul) and
``torch.linalg.eigvalsh``, nothing else. ``analyze_model`` adds the power-law, Hill and MP fits,
the metrics and the phase, and may redo a spectrum in float64 (``analysis.spectrum.needs_float64``).
Issue 24: on layers with a trained-like heavy-tailed spectrum the old redo rule fired on every
layer (2.2× the floor). Two models:

1. one Llama block (d = 2048, ffn 5632: q, k, v, o, gate, up, down) whose matrices have the
   spectrum of trained projections (``analysis.synthetic.trained_like``, top column scale 25× the
   median: λmax/λmedian ≈ 600–1000);
2. the MLP of ``bench_analysis.py`` (3×1024² + 4096×1024, PyTorch default init).

Per model: best-of-``repeat`` wall and CPU (user+sys) times of ``analyze_model`` (float32 default),
of the bare float32 floor and of ``analyze_model(precision="float64")``, interleaved in one process
so that load on a shared machine hits all alike; per layer α, PL_Alpha_Hill and phase at float32
vs the float64 reference, and which precision each row used. Target: ≤ 1.15× the floor,
|Δα| ≤ 0.02 and the same phase on every layer.

Run ``python benchmarks/bench_float32_floor.py`` (``--quick``: small sizes). Writes
``benchmarks/results/bench_float32_floor.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import single_thread_env  # noqa: E402

single_thread_env()  # before numpy / torch are imported

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from htsweep.analysis import analyze_model  # noqa: E402
from htsweep.analysis.synthetic import trained_like  # noqa: E402

torch.set_num_threads(1)

RESULTS = Path(__file__).resolve().parent / "results" / "bench_float32_floor.json"
LLAMA_SHAPES = {"q_proj": (2048, 2048), "k_proj": (2048, 2048), "v_proj": (2048, 2048), "o_proj": (2048, 2048),
                "gate_proj": (5632, 2048), "up_proj": (5632, 2048), "down_proj": (2048, 5632)}  # (out, in)
MLP_SHAPES = [(1024, 1024), (1024, 1024), (1024, 1024), (4096, 1024)]
TOP_RATIO = 25.0


def heavy_llama_block(shapes: dict[str, tuple[int, int]], seed: int = 0) -> torch.nn.Module:
    """Linear layers (no bias) whose weights are ``trained_like`` matrices of the given (out, in) shapes."""
    block = torch.nn.Module()
    for i, (name, (out, inp)) in enumerate(shapes.items()):
        lin = torch.nn.Linear(inp, out, bias=False)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(trained_like(out, inp, seed=seed + i, top_ratio=TOP_RATIO)))
        block.add_module(name, lin)
    return block


def random_mlp(shapes: list[tuple[int, int]], seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(*[torch.nn.Linear(i, o) for o, i in shapes])


def bare_float32(model: torch.nn.Module) -> None:
    """The floor: float32 Gram (one matmul) + eigvalsh per Linear weight."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            W = module.weight.detach().float()
            W = W.T if W.shape[0] < W.shape[1] else W
            torch.linalg.eigvalsh(W.T @ W / W.shape[0])


def timed(fn: Any) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def run(label: str, model: torch.nn.Module, repeat: int) -> dict[str, Any]:
    """Interleaved best-of-``repeat`` times and the float32-vs-float64 rows of one model."""
    runs = {"analyze_float32": lambda: analyze_model(model, device="cpu"),
            "bare_float32": lambda: bare_float32(model),
            "analyze_float64": lambda: analyze_model(model, device="cpu", precision="float64")}
    for fn in runs.values():
        fn()  # warm-up: imports, allocator, BLAS buffers
    best: dict[str, list[float]] = {k: [np.inf, np.inf] for k in runs}
    for _ in range(repeat):
        for key, fn in runs.items():
            wall, cpu = timed(fn)
            best[key] = [min(best[key][0], wall), min(best[key][1], cpu)]
    df32 = analyze_model(model, device="cpu")
    df64 = analyze_model(model, device="cpu", precision="float64")
    layers = []
    for r32, r64 in zip(df32.to_dict("records"), df64.to_dict("records"), strict=True):
        layers.append({"name": r32["name"], "n": int(r32["n"]), "m": int(r32["m"]),
                       "precision": r32["precision"], "alpha_float32": r32["alpha"], "alpha_float64": r64["alpha"],
                       "alpha_hill_float32": r32["alpha_hill"], "alpha_hill_float64": r64["alpha_hill"],
                       "phase_float32": r32["phase"], "phase_float64": r64["phase"],
                       "sigma2_rel_diff": abs(r32["sigma2"] / r64["sigma2"] - 1.0)})
    out = {
        "model": label,
        "times": {k: {"wall_s": v[0], "cpu_s": v[1]} for k, v in best.items()},
        "ratio_wall": best["analyze_float32"][0] / best["bare_float32"][0],
        "ratio_cpu": best["analyze_float32"][1] / best["bare_float32"][1],
        "float64_ratio_cpu": best["analyze_float64"][1] / best["bare_float32"][1],
        "max_alpha_abs_diff": max(abs(x["alpha_float32"] - x["alpha_float64"]) for x in layers),
        "max_alpha_hill_abs_diff": max(abs(x["alpha_hill_float32"] - x["alpha_hill_float64"]) for x in layers),
        "same_phase": sum(x["phase_float32"] == x["phase_float64"] for x in layers),
        "redone_in_float64": sum(x["precision"] == "float64" for x in layers),
        "layers": layers,
    }
    print(f"{label}: analyze_model float32 {best['analyze_float32'][1]:.2f} s CPU "
          f"({best['analyze_float32'][0]:.2f} s wall), bare float32 floor {best['bare_float32'][1]:.2f} s CPU "
          f"({best['bare_float32'][0]:.2f} s wall): {out['ratio_cpu']:.3f}× CPU, {out['ratio_wall']:.3f}× wall; "
          f"float64 analysis {out['float64_ratio_cpu']:.2f}× the floor; max |Δα| {out['max_alpha_abs_diff']:.1e}, "
          f"max |Δα_hill| {out['max_alpha_hill_abs_diff']:.1e}, same phase {out['same_phase']}/{len(layers)}, "
          f"redone in float64 {out['redone_in_float64']}/{len(layers)}", flush=True)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="quarter-size block and MLP, 1 repeat")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    div = 4 if args.quick else 1
    llama = {k: (o // div, i // div) for k, (o, i) in LLAMA_SHAPES.items()}
    mlp = [(o // div, i // div) for o, i in MLP_SHAPES]
    repeat = 1 if args.quick else args.repeat
    load_before = os.getloadavg()
    results = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                    "threads": torch.get_num_threads(), "load_average_before": load_before},
        "quick": args.quick,
        "top_ratio": TOP_RATIO,
        "llama_block": run(f"heavy-tailed Llama block {llama}", heavy_llama_block(llama), repeat),
        "mlp": run(f"MLP {mlp} (default init)", random_mlp(mlp), repeat),
        "target_ratio": 1.15,
    }
    results["machine"]["load_average_after"] = os.getloadavg()
    print(f"load average before/after: {load_before[0]:.1f} / {results['machine']['load_average_after'][0]:.1f} "
          f"on {os.cpu_count()} CPUs (ratios from CPU times are the ones to read on a shared machine)")
    if not args.quick or not args.out.is_file():
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
