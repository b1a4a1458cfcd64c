"""Expected ``htsweep analyze`` time of Llama-2-7B and -70B on N nodes, from measured per-matrix costs.

For one heavy-tailed bfloat16 matrix of each shape (``analysis.synthetic.trained_like``, as in
``bench_llm_scale.py``): the single-threaded CPU time of the bare float32 floor (Gram matmul +
``torch.linalg.eigvalsh``) and of the full default analysis (``analyze_layers``: float32 ESD,
fits, metrics, phase). The per-layer overhead of running layers as Ray tasks is measured on a
private local Ray (2 CPUs, 16 small layers, after a warm-up run). Then
``bench_llm_scale.projection`` fits the floor as ``a·N·M² + b·M³`` and projects 7 B and 70 B on
1, 4 and 16 nodes of 16 cores (compute only: reading the checkpoint from shared storage is not
included). Run ``python benchmarks/bench_llm_projection.py``; writes
``benchmarks/results/bench_llm_projection.json``. CPU times: the machine may be shared.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import single_thread_env  # noqa: E402

single_thread_env()  # before numpy / torch are imported

import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
from bench_llm_scale import TOP_RATIO, projection  # noqa: E402

from htsweep.analysis.analyze import analyze_layers  # noqa: E402
from htsweep.analysis.layers import LayerMatrix  # noqa: E402
from htsweep.analysis.synthetic import trained_like  # noqa: E402

torch.set_num_threads(1)

RESULTS = Path(__file__).resolve().parent / "results" / "bench_llm_projection.json"
#: (N, M): Llama-2-7B's q/k/v/o, MLP and embedding; a 70 B key/value projection for the M-dependence
SHAPES = [(4096, 4096), (11008, 4096), (32000, 4096), (8192, 1024)]


def per_shape() -> list[dict[str, Any]]:
    out = []
    for n, m in SHAPES:
        W = torch.from_numpy(trained_like(n, m, seed=1, top_ratio=TOP_RATIO)).to(torch.bfloat16)
        Wf = W.float()
        c0 = time.process_time()
        torch.linalg.eigvalsh(Wf.T @ Wf / n)
        floor = time.process_time() - c0
        del Wf
        c0 = time.process_time()
        (row,) = analyze_layers([LayerMatrix.from_tensor("w", "linear", W)], device="cpu")
        analysis = time.process_time() - c0
        out.append({"n": n, "m": m, "cpu_s": floor, "analyze_cpu_s": analysis, "precision": row["precision"],
                    "phase": row["phase"]})
        print(out[-1], flush=True)
    return out


def ray_overhead() -> dict[str, Any]:
    import ray

    from htsweep.analysis.layers import plan_layers
    from htsweep.sweeps.analyze_cluster import LayerTiming, iter_analysis_ray

    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(256, 256) for _ in range(16)])
    temp = tempfile.mkdtemp(prefix="htsr-proj-", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False, configure_logging=False)
    try:
        list(iter_analysis_ray(plan_layers(model)))  # warm-up: the workers start and import htsweep
        timing = LayerTiming()
        list(iter_analysis_ray(plan_layers(model), timing=timing))
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    return {"cpus": 2, "n_layers": len(timing.task_s), "wall_s": timing.wall_s, "task_s_total": sum(timing.task_s),
            "overhead_per_layer_s": timing.overhead_per_layer_s}


def main() -> dict[str, Any]:
    load_before = os.getloadavg()
    shapes = per_shape()
    ratio = sum(s["analyze_cpu_s"] for s in shapes) / sum(s["cpu_s"] for s in shapes)
    ray = ray_overhead()
    results = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                    "load_average_before": load_before, "load_average_after": os.getloadavg(),
                    "shared": "the machine was shared with other jobs: read the CPU times"},
        "per_shape": shapes, "analyze_over_floor": ratio, "ray": ray,
        "projection": projection(shapes, ratio, ray["overhead_per_layer_s"]),
    }
    for name, model in results["projection"]["models"].items():
        walls = ", ".join(f"{k}: {v / 60:.1f} min" for k, v in model["wall_s"].items())
        print(f"{name}: {model['layers']} layers, {model['cpu_s'] / 3600:.2f} CPU-hours; {walls}")
    print(f"analysis / floor {ratio:.2f}; Ray overhead {ray['overhead_per_layer_s'] * 1e3:.0f} ms per layer")
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return results


if __name__ == "__main__":
    main()
