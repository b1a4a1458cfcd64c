"""Throughput and latency of the shared ESD actor: batched vs one matrix at a time.

asv-style classes (``params``/``param_names``/``setup``/``time_*``); ``python
benchmarks/bench_actor.py`` runs them on a private local Ray, prints a table and writes
``benchmarks/results/bench_actor.json``.

* ``ActorThroughput``: 8 callers (driver threads, standing in for 8 trials) each send 32 small
  layers (4 shapes from 64×32 to 128×64) at once. ``batched``: each caller sends its 32 layers in
  one request (one ``ray.put`` per matrix) and the actor merges concurrent requests into batches,
  one batched ``eigvalsh`` per shape. ``one_at_a_time``: each caller sends one layer per request
  and the actor analyzes one matrix per batch (``max_batch=1``). Target: batched ≥ 3× faster.
  ``per_layer_requests`` (one layer per request, actor batching on) separates the two effects:
  per-request overhead vs the actor's cross-request batching.
* ``RoundTrip``: one caller, one request of 1 or 32 layers: latency per request and per layer,
  next to in-process ``analysis.analyze_layers`` on the same layers.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Benchmark, best_time  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bench_actor.json"
N_CALLERS = 8
N_LAYERS = 32
SHAPES = [(64, 32), (96, 48), (128, 64), (100, 50)]


def _layers(seed: int, n: int = N_LAYERS) -> list:
    """``n`` seeded small layers cycling through ``SHAPES`` (Gaussian and Student-t entries)."""
    from htsweep.analysis.layers import LayerMatrix

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        r, c = SHAPES[i % len(SHAPES)]
        w = rng.standard_t(3, size=(r, c)) if i % 2 else rng.standard_normal((r, c))
        out.append(LayerMatrix.from_tensor(f"c{seed}.l{i}", "linear", torch.tensor(w, dtype=torch.float32)))
    return out


def _actor(max_batch: int) -> tuple[Any, str]:
    from htsweep.services.esd_actor import get_esd_service

    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    handle = get_esd_service("esd", namespace=namespace, num_cpus=1, max_batch=max_batch)
    import ray

    ray.get(handle.ping.remote(), timeout=120)
    return handle, namespace


class ActorThroughput(Benchmark):
    """8 callers × 32 small layers through one actor."""

    params = [["batched", "per_layer_requests", "one_at_a_time"]]
    param_names = ["mode"]

    def setup(self, mode: str) -> None:
        from htsweep.services.esd_actor import ActorAnalyzer

        self.callers = [_layers(seed) for seed in range(N_CALLERS)]
        self.handle, self.namespace = _actor(1 if mode == "one_at_a_time" else 1024)
        self.analyzer = ActorAnalyzer(self.handle, fallback=False)
        self.pool = ThreadPoolExecutor(N_CALLERS)
        self.time_round(mode)  # warm-up: worker imports, first batch

    def teardown(self, mode: str) -> None:
        from htsweep.services.esd_actor import shutdown_esd_service

        self.pool.shutdown()
        shutdown_esd_service("esd", namespace=self.namespace)

    def _call(self, mode: str, layers: list) -> int:
        if mode == "batched":
            return len(self.analyzer(layers, 0))
        return sum(len(self.analyzer([layer], 0)) for layer in layers)

    def time_round(self, mode: str) -> None:
        """Every caller's 32 layers analyzed, callers concurrent."""
        done = sum(self.pool.map(lambda layers: self._call(mode, layers), self.callers))
        assert done == N_CALLERS * N_LAYERS


class RoundTrip(Benchmark):
    """One caller, one request: latency of the actor vs in-process analysis."""

    params = [[1, N_LAYERS]]
    param_names = ["n_layers"]

    def setup(self, n_layers: int) -> None:
        from htsweep.services.esd_actor import ActorAnalyzer

        self.layers = _layers(100, n_layers)
        self.handle, self.namespace = _actor(1024)
        self.analyzer = ActorAnalyzer(self.handle, fallback=False)
        self.analyzer(self.layers, 0)

    def teardown(self, n_layers: int) -> None:
        from htsweep.services.esd_actor import shutdown_esd_service

        shutdown_esd_service("esd", namespace=self.namespace)

    def time_actor(self, n_layers: int) -> None:
        """One request through the actor (object store in, rows out)."""
        self.analyzer(self.layers, 0)

    def time_in_process(self, n_layers: int) -> None:
        """The same analysis in the caller's process."""
        from htsweep.analysis.analyze import analyze_layers

        analyze_layers(self.layers, device="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description="ESD actor benchmark")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the private local Ray")
    args = parser.parse_args()
    import ray

    temp_dir = tempfile.mkdtemp(prefix="htsb-", dir="/tmp")
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False,
             configure_logging=False)
    torch.set_num_threads(1)
    try:
        throughput: dict[str, Any] = {}
        for mode in ActorThroughput.params[0]:
            bench = ActorThroughput()
            bench.setup(mode)
            try:
                t = best_time(lambda b=bench, m=mode: b.time_round(m), repeat=args.repeats)
                stats = ray.get(bench.handle.stats.remote())
            finally:
                bench.teardown(mode)
            n = N_CALLERS * N_LAYERS
            throughput[mode] = {"round_s": t, "matrices_per_s": n / t, "ms_per_matrix": 1e3 * t / n,
                                "actor_batch_size_mean": stats["batch_size_mean"],
                                "actor_batch_size_max": stats["batch_size_max"],
                                "actor_compute_ms_per_matrix": 1e3 * stats["time_per_matrix_s"]}
            r = throughput[mode]
            print(f"{mode:18s} {N_CALLERS} callers x {N_LAYERS} layers: {t:6.3f} s/round  "
                  f"{r['matrices_per_s']:7.1f} matrices/s  batch mean {r['actor_batch_size_mean']:6.1f} "
                  f"max {r['actor_batch_size_max']:4d}  compute {r['actor_compute_ms_per_matrix']:.2f} ms/matrix",
                  flush=True)
        speedup = throughput["one_at_a_time"]["round_s"] / throughput["batched"]["round_s"]
        print(f"batched speedup: {speedup:.2f}x (target >= 3x)")

        latency: list[dict[str, Any]] = []
        for n_layers in RoundTrip.params[0]:
            bench = RoundTrip()
            bench.setup(n_layers)
            try:
                t_actor = best_time(lambda b=bench, k=n_layers: b.time_actor(k), repeat=max(5, args.repeats))
                t_local = best_time(lambda b=bench, k=n_layers: b.time_in_process(k), repeat=max(5, args.repeats))
            finally:
                bench.teardown(n_layers)
            latency.append({"n_layers": n_layers, "actor_ms": 1e3 * t_actor,
                            "actor_ms_per_layer": 1e3 * t_actor / n_layers, "in_process_ms": 1e3 * t_local,
                            "in_process_ms_per_layer": 1e3 * t_local / n_layers})
            r = latency[-1]
            print(f"round trip {n_layers:3d} layer(s): actor {r['actor_ms']:7.2f} ms "
                  f"({r['actor_ms_per_layer']:.2f} ms/layer)  in-process {r['in_process_ms']:7.2f} ms "
                  f"({r['in_process_ms_per_layer']:.2f} ms/layer)", flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)

    out = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                       "ray": ray.__version__, "torch": torch.__version__, "ray_num_cpus": args.num_cpus,
                       "device": "cpu"},
           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "setup": {"callers": N_CALLERS, "layers_per_caller": N_LAYERS, "shapes": SHAPES,
                     "repeats": args.repeats},
           "throughput": throughput, "batched_speedup": speedup, "target_speedup": 3.0,
           "round_trip": latency}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
