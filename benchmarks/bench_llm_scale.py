"""``htsweep analyze DIR`` on a Llama-shaped checkpoint (1.1 B or 7 B): wall, CPU, peak RSS, ratio to the float32 floor.

The benchmark writes the checkpoint itself, as a Hugging Face folder of sharded bfloat16
``.safetensors`` with ``model.safetensors.index.json`` and ``config.json``: TinyLlama-1.1B shapes
(``--size 1.1b``: 22 blocks, hidden 2048, MLP 5632, 32 query / 4 key-value heads of 64, vocabulary
32000, untied head; 2.2 GB) or Llama-2-7B shapes (``--size 7b``: 32 blocks, hidden 4096, MLP 11008,
32 heads, no grouped-query attention, vocabulary 32000, untied head; 13.5 GB). Every matrix has the
heavy-tailed singular spectrum of a trained projection (``analysis.synthetic.trained_like``, top
column scale 20× the median: λmax/λmedian of several hundred), not iid noise: ``POOL`` = 4
generated matrices per shape (about 3 s of CPU per 11008×4096 one), each written matrix one of
them with rows and columns randomly permuted (same spectrum, different data). The folder is always removed at the end (also on error or
Ctrl-C); check the free disk space first (``--tmp`` picks the place).

Then it runs the command line in a child process (``python -m htsweep.sweeps.cli analyze DIR
--json``, default precision, ``--threads`` cores: one layer per core) and reads that child's own
resource usage (``os.wait4``): wall time, user + system CPU time, peak RSS. It also times
``--list`` (planning from the headers alone) and measures the **float32 floor**: for one matrix of
each shape, read from the checkpoint, the smallest single-threaded CPU time of a bare float32
Gram (one matmul) + ``torch.linalg.eigvalsh``; the floor of the model is Σ count × that time, and
the ratio is the analysis's CPU time over it (CPU times: the machine may be shared). ``--ray``
also runs the layers as tasks on a private local Ray (``sweeps.analyze_cluster``, as many CPUs as
``--threads``) and reports the overhead per layer against the local run.

With ``--lock FILE`` the measured part (not the writing) runs holding ``flock`` on FILE, so that
benchmarks of others sharing the machine do not run at the same time. The machine's load average
is recorded next to the times: on a shared machine the wall time is inflated, the CPU time much
less.

Run ``python benchmarks/bench_llm_scale.py [--size 1.1b|7b]`` (``--quick``: 2 small blocks,
seconds). It prints a summary and writes ``benchmarks/results/bench_llm_scale.json`` (1.1 B) or
``bench_llm_scale_7b.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
SIZES = {
    "1.1b": {"n_layer": 22, "d": 2048, "ffn": 5632, "heads": 32, "kv_heads": 4, "vocab": 32000},
    "7b": {"n_layer": 32, "d": 4096, "ffn": 11008, "heads": 32, "kv_heads": 32, "vocab": 32000},
}
QUICK = {"n_layer": 2, "d": 256, "ffn": 704, "heads": 4, "kv_heads": 2, "vocab": 1000}
#: top column scale of the generated matrices over the median one (analysis.synthetic.trained_like)
TOP_RATIO = 20.0
#: distinct generated matrices per shape; the others are row/column permutations of them
POOL = 4


def tensor_shapes(cfg: dict[str, int]) -> dict[str, tuple[int, ...]]:
    """State-dict keys and shapes of a Llama model (Hugging Face naming), in module order."""
    d, ffn, hd = cfg["d"], cfg["ffn"], cfg["d"] // cfg["heads"]
    kv = cfg["kv_heads"] * hd
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (cfg["vocab"], d)}
    for i in range(cfg["n_layer"]):
        p = f"model.layers.{i}."
        shapes.update({
            p + "self_attn.q_proj.weight": (d, d), p + "self_attn.k_proj.weight": (kv, d),
            p + "self_attn.v_proj.weight": (kv, d), p + "self_attn.o_proj.weight": (d, d),
            p + "mlp.gate_proj.weight": (ffn, d), p + "mlp.up_proj.weight": (ffn, d),
            p + "mlp.down_proj.weight": (d, ffn),
            p + "input_layernorm.weight": (d,), p + "post_attention_layernorm.weight": (d,),
        })
    shapes["model.norm.weight"] = (d,)
    shapes["lm_head.weight"] = (cfg["vocab"], d)
    return shapes


def write_checkpoint(folder: Path, cfg: dict[str, int], shard_bytes: int = 1 << 30, seed: int = 0,
                     pool: int = POOL) -> int:
    """Write heavy-tailed bfloat16 weights as sharded safetensors + index + config; return the parameter count.

    ``pool`` matrices of each shape are generated (``trained_like``); every matrix written is one
    of them with its rows and columns randomly permuted (the same spectrum, different data), so
    a 7 B checkpoint costs seconds of generation per shape instead of hours on a loaded machine.
    """
    from safetensors.torch import save_file

    from htsweep.analysis.synthetic import trained_like

    gen = torch.Generator().manual_seed(seed)
    bases: dict[tuple[int, ...], list[torch.Tensor]] = {}

    def matrix(shape: tuple[int, ...]) -> torch.Tensor:
        if len(bases.setdefault(shape, [])) < pool:
            W = trained_like(*shape, seed=seed + 1000 * len(bases) + len(bases[shape]), top_ratio=TOP_RATIO)
            bases[shape].append(torch.from_numpy(W).to(torch.bfloat16))
            del W
        base = bases[shape][int(torch.randint(len(bases[shape]), (1,), generator=gen))]
        rows = torch.randperm(shape[0], generator=gen)
        cols = torch.randperm(shape[1], generator=gen)
        return base[rows][:, cols]

    shapes = tensor_shapes(cfg)
    shards: list[list[str]] = [[]]
    size = 0
    for key, shape in shapes.items():
        nbytes = 2 * int(torch.Size(shape).numel())
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(key)
        size += nbytes
    weight_map = {}
    for i, keys in enumerate(shards, start=1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        tensors = {}
        for key in keys:
            shape = shapes[key]
            if len(shape) == 1:
                tensors[key] = torch.ones(shape, dtype=torch.bfloat16)
            else:
                tensors[key] = matrix(shape)
            weight_map[key] = name
        save_file(tensors, folder / name, metadata={"format": "pt"})
        del tensors
    n_params = sum(int(torch.Size(s).numel()) for s in shapes.values())
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 2 * n_params}, "weight_map": weight_map}, indent=1))
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": cfg["d"],
        "intermediate_size": cfg["ffn"], "num_hidden_layers": cfg["n_layer"], "num_attention_heads": cfg["heads"],
        "num_key_value_heads": cfg["kv_heads"], "vocab_size": cfg["vocab"], "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }, indent=1))
    return n_params


def measured(args: list[str], workdir: Path) -> dict[str, Any]:
    """Run ``python -m htsweep.sweeps.cli ARGS``: output, wall time, CPU time and peak RSS of that child alone.

    The child's own resource usage comes from ``os.wait4``; its output goes to files (a pipe
    would have to be drained while waiting).
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out_path, err_path = workdir / "stdout.txt", workdir / "stderr.txt"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "htsweep.sweeps.cli", *args], cwd=ROOT, env=env, stdout=out,
                                stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"returncode": proc.returncode, "stdout": out_path.read_text(), "stderr": err_path.read_text(),
            "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_gb": usage.ru_maxrss * 1024 / 1e9}  # Linux reports KiB


@contextlib.contextmanager
def locked(path: Path | None) -> Iterator[None]:
    """Hold ``flock`` on ``path`` inside the block (nothing when None)."""
    if path is None:
        yield
        return
    with open(path, "a") as fh:
        print(f"waiting for {path} ...", flush=True)
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def float32_floor(folder: Path, repeat: int = 2) -> dict[str, Any]:
    """Single-threaded CPU seconds of a bare float32 Gram + eigvalsh, per matrix shape of the checkpoint.

    One matrix of each (N, M) is read from the files (as ``htsweep analyze`` reads it) and timed
    ``repeat`` times; the floor of the model is Σ count × the smallest time. Runs in this process
    with torch and the BLAS at one thread.
    """
    from threadpoolctl import threadpool_limits

    from htsweep.analysis.layers import plan_layers

    plan = plan_layers(folder)
    by_shape: dict[tuple[int, int], list[Any]] = {}
    for info in plan.layers:
        by_shape.setdefault((info.n, info.m), []).append(info)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    per_shape = []
    try:
        with threadpool_limits(1):
            for (n, m), infos in by_shape.items():
                W = plan.matrix(infos[0]).matrix.float()
                W = W.T if W.shape[0] < W.shape[1] else W
                best = float("inf")
                for _ in range(repeat):
                    c0 = time.process_time()
                    torch.linalg.eigvalsh(W.T @ W / W.shape[0])
                    best = min(best, time.process_time() - c0)
                per_shape.append({"n": n, "m": m, "count": len(infos), "cpu_s": best})
                del W
    finally:
        torch.set_num_threads(threads)
    return {"per_shape": per_shape, "cpu_s": sum(p["count"] * p["cpu_s"] for p in per_shape)}


#: Llama-2-70B: 80 blocks, hidden 8192, MLP 28672, 64 query heads and 8 key/value heads of 128, vocabulary 32000
LLAMA_70B = {"n_layer": 80, "d": 8192, "ffn": 28672, "heads": 64, "kv_heads": 8, "vocab": 32000}
#: the clusters the projection is written for: nodes × cores per node
PROJECTED_CLUSTERS = ((1, 16), (4, 16), (16, 16))


def matrix_counts(cfg: dict[str, int]) -> dict[tuple[int, int], int]:
    """(N, M) → number of matrices of that shape in a Llama model of ``cfg``."""
    counts: dict[tuple[int, int], int] = {}
    for shape in tensor_shapes(cfg).values():
        if len(shape) == 2:
            key = (max(shape), min(shape))
            counts[key] = counts.get(key, 0) + 1
    return counts


def projection(per_shape: list[dict[str, Any]], cpu_over_floor: float, overhead_per_layer_s: float) -> dict[str, Any]:
    """Single-core seconds of the float32 floor per matrix as ``a·N·M² + b·M³`` (Gram + eigensolve),
    least squares on the measured shapes; then the analysis of 7 B and 70 B on a few clusters.

    Wall time on ``nodes × cores``: (floor × ``cpu_over_floor`` + Ray overhead per layer) summed over
    the layers, divided by the cores (one layer per core; the biggest layer bounds it from below).
    Reading the checkpoint from shared storage is not included.
    """
    import numpy as np

    A = np.array([[p["n"] * p["m"] ** 2, p["m"] ** 3] for p in per_shape], dtype=float)
    y = np.array([p["cpu_s"] for p in per_shape])
    (a, b), *_ = np.linalg.lstsq(A, y, rcond=None)
    out: dict[str, Any] = {"a_s_per_NM2": float(a), "b_s_per_M3": float(b), "models": {}}
    for name, cfg in (("7b", SIZES["7b"]), ("70b", LLAMA_70B)):
        counts = matrix_counts(cfg)
        per = {k: (a * k[0] * k[1] ** 2 + b * k[1] ** 3) * cpu_over_floor + overhead_per_layer_s for k in counts}
        total = sum(per[k] * c for k, c in counts.items())
        out["models"][name] = {
            "layers": sum(counts.values()), "cpu_s": total, "biggest_layer_s": max(per.values()),
            "wall_s": {f"{nodes}x{cores}": max(total / (nodes * cores), max(per.values()))
                       for nodes, cores in PROJECTED_CLUSTERS},
        }
    return out


def ray_overhead(folder: Path, cpus: int, include: str | None) -> dict[str, Any]:
    """The layers (``include``: a name glob) as Ray tasks on a private local Ray vs the local run, same CPUs."""
    import ray

    from htsweep.analysis.analyze import iter_analysis
    from htsweep.analysis.layers import plan_layers
    from htsweep.sweeps.analyze_cluster import LayerTiming, iter_analysis_ray

    plan = plan_layers(folder, include=include)
    t0 = time.perf_counter()
    local = [r["alpha"] for r in iter_analysis(plan, workers=cpus)]
    t_local = time.perf_counter() - t0
    temp = tempfile.mkdtemp(prefix="htsr-bench-", dir="/tmp")
    ray.init(num_cpus=cpus, include_dashboard=False, _temp_dir=temp, log_to_driver=False, configure_logging=False)
    try:
        list(iter_analysis_ray(plan_layers(folder, include=include)))  # warm-up: workers start, import htsweep
        timing = LayerTiming()
        remote = [r["alpha"] for r in iter_analysis_ray(plan_layers(folder, include=include), timing=timing)]
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    n = len(plan.layers)
    return {"cpus": cpus, "include": include, "n_layers": n, "wall_local_s": t_local, "wall_ray_s": timing.wall_s,
            "task_s_total": sum(timing.task_s), "overhead_per_layer_s": timing.overhead_per_layer_s,
            "extra_wall_per_layer_s": (timing.wall_s - t_local) / n,
            "same_alphas": local == remote}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Write the checkpoint, analyze it through the CLI, print and save the numbers, remove the files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="1.1b")
    parser.add_argument("--quick", action="store_true", help="2 small blocks instead of the full model")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="cores for the analysis")
    parser.add_argument("--ray", nargs="?", const="*", default=None, metavar="GLOB",
                        help="also run the layers (those matching GLOB) as tasks on a local Ray vs locally")
    parser.add_argument("--lock", type=Path, default=None, help="flock this file for the measured part")
    parser.add_argument("--tmp", type=Path, default=None, help="where to write the checkpoint (default: system tmp)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else SIZES[args.size]
    out = args.out or RESULTS / ("bench_llm_scale.json" if args.size == "1.1b" else f"bench_llm_scale_{args.size}.json")

    scratch = Path(tempfile.mkdtemp(prefix="htsweep-llm-", dir=args.tmp))
    folder = scratch / "model"
    folder.mkdir()
    try:
        t0 = time.perf_counter()
        # written by a child process, so that this one stays small (a child forked from it starts
        # with its resident pages) and the measured child's peak RSS is its own
        writer = multiprocessing.get_context("spawn").Process(target=write_checkpoint, args=(folder, cfg))
        writer.start()
        writer.join()
        if writer.exitcode != 0:
            raise SystemExit(f"writing the checkpoint failed (exit code {writer.exitcode})")
        n_params = sum(int(torch.Size(s).numel()) for s in tensor_shapes(cfg).values())
        t_write = time.perf_counter() - t0
        disk = sum(f.stat().st_size for f in folder.iterdir())
        print(f"wrote {n_params / 1e9:.3f} B parameters ({disk / 1e9:.2f} GB, "
              f"{len(list(folder.glob('*.safetensors')))} shards) in {t_write:.0f} s to {folder}", flush=True)
        with locked(args.lock):
            listing = measured(["analyze", str(folder), "--list", "--json"], scratch)
            load_before = os.getloadavg()
            run = measured(["analyze", str(folder), "--json", "--threads", str(args.threads)], scratch)
            load_after = os.getloadavg()
            floor = float32_floor(folder)
            ray = ray_overhead(folder, args.threads, args.ray) if args.ray else None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if run["returncode"] != 0:
        raise SystemExit(f"htsweep analyze failed ({run['returncode']}): {run['stderr'][-2000:]}")
    rows = [json.loads(line) for line in run["stdout"].splitlines() if line.strip()]
    phases: dict[str, int] = {}
    for r in rows:
        phases[r["phase"]] = phases.get(r["phase"], 0) + 1
    precisions: dict[str, int] = {}
    for r in rows:
        precisions[r["precision"]] = precisions.get(r["precision"], 0) + 1
    results = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                    "load_average_before": load_before, "load_average_after": load_after,
                    "shared": "the machine was shared with other jobs: wall times are inflated, read the CPU times"},
        "quick": args.quick,
        "size": "quick" if args.quick else args.size,
        "config": cfg,
        "weights": (f"bfloat16, analysis.synthetic.trained_like(top_ratio={TOP_RATIO}), {POOL} per shape, "
                    "each matrix one of them with rows and columns permuted"),
        "n_params": n_params,
        "checkpoint_bytes": disk,
        "t_write_s": t_write,
        "list": {"wall_s": listing["wall_s"], "cpu_s": listing["cpu_s"], "n_layers": len(listing["stdout"].splitlines())},
        "analyze": {"threads": args.threads, "wall_s": run["wall_s"], "cpu_s": run["cpu_s"],
                    "peak_rss_gb": run["peak_rss_gb"], "n_layers": len(rows), "phases": phases,
                    "precision": precisions,
                    "stderr_summary": [ln for ln in run["stderr"].splitlines() if ln.startswith("Large model")]},
        "float32_floor": floor,
        "cpu_over_floor": run["cpu_s"] / floor["cpu_s"],
        "targets": {"wall_s": 900 if args.size == "7b" else 120, "peak_rss_gb": 3.0, "cpu_over_floor": 1.15},
    }
    if ray is not None:
        results["ray"] = ray
    if not args.quick:
        results["projection"] = projection(floor["per_shape"], results["cpu_over_floor"],
                                           ray["overhead_per_layer_s"] if ray is not None else 0.0)
    print(f"--list: {listing['wall_s']:.1f} s wall for {results['list']['n_layers']} layers")
    print(f"analyze: {run['wall_s']:.0f} s wall, {run['cpu_s']:.0f} s CPU on {args.threads} thread(s), peak RSS "
          f"{run['peak_rss_gb']:.2f} GB, {len(rows)} layers, phases {phases}, precision {precisions}")
    print(f"float32 floor: {floor['cpu_s']:.0f} s CPU; analyze CPU / floor = {results['cpu_over_floor']:.3f}")
    if ray is not None:
        print(f"Ray ({ray['cpus']} CPUs): {ray['wall_ray_s']:.1f} s wall vs {ray['wall_local_s']:.1f} s local, "
              f"overhead {ray['overhead_per_layer_s'] * 1e3:.0f} ms per layer, same alphas {ray['same_alphas']}")
    print(f"load average before/after: {load_before[0]:.1f} / {load_after[0]:.1f} on {os.cpu_count()} CPUs")
    for line in results["analyze"]["stderr_summary"]:
        print(line)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not args.quick or not out.is_file():
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
