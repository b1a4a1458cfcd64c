"""``htsweep analyze DIR`` on a 1.1 B-parameter Llama-shaped checkpoint: wall time, CPU time, peak RSS.

The benchmark writes the checkpoint itself: TinyLlama-1.1B shapes (22 blocks, hidden 2048, MLP
5632, 32 query heads and 4 key/value heads of 64, vocabulary 32000, untied head), random
bfloat16 weights (std 0.02), as a Hugging Face folder of sharded ``.safetensors`` with
``model.safetensors.index.json`` and ``config.json``: about 2.2 GB, in a temporary folder that is
always removed at the end (also on error or Ctrl-C). Then it runs the command line in a child
process (``python -m htsweep.sweeps.cli analyze DIR --json``, all cores, default precision) and reads that
child's own resource usage (``os.wait4``): wall time, user + system CPU time, peak RSS. It also
times ``--list`` (planning from the headers alone).

Run ``python benchmarks/bench_llm_scale.py`` (``--quick``: 2 small blocks, seconds). It prints a
summary and writes ``benchmarks/results/bench_llm_scale.json``. The machine's load average is
recorded next to the times: on a shared machine the wall time is inflated, the CPU time much less.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "bench_llm_scale.json"
TINYLLAMA = {"n_layer": 22, "d": 2048, "ffn": 5632, "heads": 32, "kv_heads": 4, "vocab": 32000}
QUICK = {"n_layer": 2, "d": 256, "ffn": 704, "heads": 4, "kv_heads": 2, "vocab": 1000}


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


def write_checkpoint(folder: Path, cfg: dict[str, int], shard_bytes: int = 1 << 30, seed: int = 0) -> int:
    """Write random bfloat16 weights as sharded safetensors + index + config; return the parameter count."""
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
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
                tensors[key] = (torch.randn(shape, generator=gen) * 0.02).to(torch.bfloat16)
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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Write the checkpoint, analyze it through the CLI, print and save the numbers, remove the files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 small blocks instead of TinyLlama-1.1B")
    parser.add_argument("--tmp", type=Path, default=None, help="where to write the checkpoint (default: system tmp)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else TINYLLAMA

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
        listing = measured(["analyze", str(folder), "--list", "--json"], scratch)
        load_before = os.getloadavg()
        run = measured(["analyze", str(folder), "--json"], scratch)
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if run["returncode"] != 0:
        raise SystemExit(f"htsweep analyze failed ({run['returncode']}): {run['stderr'][-2000:]}")
    rows = [json.loads(line) for line in run["stdout"].splitlines() if line.strip()]
    phases: dict[str, int] = {}
    for r in rows:
        phases[r["phase"]] = phases.get(r["phase"], 0) + 1
    results = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                    "load_average_before": load_before, "load_average_after": load_after},
        "quick": args.quick,
        "config": cfg,
        "n_params": n_params,
        "checkpoint_bytes": disk,
        "t_write_s": t_write,
        "list": {"wall_s": listing["wall_s"], "cpu_s": listing["cpu_s"], "n_layers": len(listing["stdout"].splitlines())},
        "analyze": {"wall_s": run["wall_s"], "cpu_s": run["cpu_s"], "peak_rss_gb": run["peak_rss_gb"],
                    "n_layers": len(rows), "phases": phases,
                    "precision": sorted({r["precision"] for r in rows}),
                    "stderr_summary": [ln for ln in run["stderr"].splitlines() if ln.startswith("Large model")]},
        "targets": {"wall_s": 120, "peak_rss_gb": 3.0},
    }
    print(f"--list: {listing['wall_s']:.1f} s wall for {results['list']['n_layers']} layers")
    print(f"analyze: {run['wall_s']:.0f} s wall, {run['cpu_s']:.0f} s CPU, peak RSS {run['peak_rss_gb']:.2f} GB, "
          f"{len(rows)} layers, phases {phases}")
    print(f"load average before/after: {load_before[0]:.1f} / {load_after[0]:.1f} on {os.cpu_count()} CPUs")
    for line in results["analyze"]["stderr_summary"]:
        print(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.quick or not args.out.is_file():
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
