"""The README's benchmark table, rendered from the committed ``benchmarks/results/*.json``.

``python benchmarks/readme_table.py`` (``make bench-table``, also the last step of ``make bench``)
rewrites the lines between the README's ``<!-- bench-table:start -->`` and
``<!-- bench-table:end -->`` markers; ``--check`` only reports whether they are current.
``tests/test_readme_bench_table.py`` fails when the README and the JSON files disagree, so a
re-run benchmark cannot leave a stale number behind.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["END", "README", "RESULTS", "START", "load_results", "readme_section", "render_table",
           "replace_section"]

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
START, END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"
# bench_analysis.json records the WeightWatcher version since it was added to its "machine";
# the results committed before that were measured with this one.
WEIGHTWATCHER_UNRECORDED = "0.7.7"

Results = Mapping[str, Any]


def load_results(directory: Path = RESULTS) -> dict[str, Results]:
    """Every ``<name>.json`` in ``directory``, by ``name``."""
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(directory.glob("*.json"))}


def _sci(x: float) -> str:
    """Two significant digits in e-notation without the exponent's padding: 6.4e-4."""
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _bound(x: float) -> str:
    """An upper bound with one significant digit: 3.9e-14 → 4e-14."""
    exponent = math.floor(math.log10(x))
    return f"{math.ceil(x / 10 ** exponent)}e{exponent}"


def _pct(fraction: float) -> str:
    """A percentage to 0.1, without a trailing .0: 0.944 → 94.4, 1.0 → 100."""
    return f"{100 * fraction:.1f}".removesuffix(".0")


def _shape(shape: Sequence[int]) -> str:
    n, m = shape
    return f"{n}²" if n == m else f"{n}×{m}"


def _shapes(shapes: Sequence[Sequence[int]]) -> str:
    """Runs of equal shapes as ``count×shape``, joined by +: 3×1024² + 4096×1024."""
    runs: list[list[Any]] = []
    for shape in shapes:
        if runs and runs[-1][1] == list(shape):
            runs[-1][0] += 1
        else:
            runs.append([1, list(shape)])
    return " + ".join(_shape(shape) if count == 1 else f"{count}×{_shape(shape)}" for count, shape in runs)


def _weightwatcher(analysis: Results) -> str:
    return f"WeightWatcher {analysis['machine'].get('weightwatcher') or WEIGHTWATCHER_UNRECORDED}"


def _power_law(r: Mapping[str, Results]) -> tuple[str, str]:
    fits = r["bench_analysis"]["power_law"]
    shapes = ", ".join(dict.fromkeys(_shape(f["shape"]) for f in fits))
    speedups = [f["speedup"] for f in fits]
    same = sum(bool(f["same_xmin"]) for f in fits)
    xmin = "same xmin" if same == len(fits) else f"same xmin on {same}/{len(fits)}"
    return (f"`fit_power_law` vs `powerlaw.Fit` ({shapes})",
            f"{round(min(speedups), -1):.0f}–{round(max(speedups), -1):.0f}× faster, {xmin}, "
            f"Δα ≤ {_bound(max(f['alpha_abs_diff'] for f in fits))}")


def _analyze_vs_bare(r: Mapping[str, Results]) -> tuple[str, str]:
    model = r["bench_analysis"]["analyze_model"]
    return (f"`analyze_model` (float32, all fits and the phase) vs bare float64 Gram + `eigvalsh` "
            f"(MLP {_shapes(model['layers'])})", f"{model['analyze_over_bare']:.2f}× the time")


def _analyze_vs_weightwatcher(r: Mapping[str, Results]) -> tuple[str, str]:
    analysis = r["bench_analysis"]
    return (f"`analyze_model` vs {_weightwatcher(analysis)} `analyze(mp_fit=True)`, same MLP",
            f"{analysis['analyze_model']['speedup_vs_weightwatcher']:.1f}× faster")


def _llama_block(r: Mapping[str, Results]) -> tuple[str, str]:
    analysis = r["bench_analysis"]
    block = analysis["llama_block"]
    return (f"one Llama block (d = {block['d']}, ffn {block['ffn']}, {len(block['per_layer'])} matrices) "
            f"vs {_weightwatcher(analysis)} `analyze()`",
            f"{block['speedup_float32_vs_weightwatcher']:.1f}× faster at float32 "
            f"({block['speedup_float64_vs_weightwatcher']:.1f}× at float64); "
            f"max \\|α₃₂ − α₆₄\\| = {_sci(block['max_alpha_abs_diff'])}")


def _precision(r: Mapping[str, Results]) -> tuple[str, str]:
    precision = r["bench_analysis"]["precision"]
    layers = precision["layers"]
    same = sum(layer["phase_float32"] == layer["phase_float64"] for layer in layers)
    return (f"float32 vs float64 on {len(layers)} real layers "
            "(MiniLM, trained MLP3 / teacher–student / char-GPT, GPT-2)",
            f"max \\|Δα\\| = {_sci(precision['max_alpha_abs_diff'])}, same phase {same}/{len(layers)}")


def _float32_floor(r: Mapping[str, Results]) -> tuple[str, str]:
    floor = r["bench_float32_floor"]
    block, mlp = floor["llama_block"], floor["mlp"]
    n_block, n_mlp = len(block["layers"]), len(mlp["layers"])
    d = block["layers"][0]["m"]
    return (f"`analyze_model` (float32 default, all fits and the phase) vs the bare float32 Gram + `eigvalsh` of the "
            f"same matrices, one thread: heavy-tailed Llama block (d = {d}, {n_block} matrices) / MLP",
            f"{block['ratio_cpu']:.2f}× / {mlp['ratio_cpu']:.2f}× the CPU time; max \\|α₃₂ − α₆₄\\| = "
            f"{_sci(max(block['max_alpha_abs_diff'], mlp['max_alpha_abs_diff']))}, same phase "
            f"{block['same_phase'] + mlp['same_phase']}/{n_block + n_mlp}, "
            f"{block['redone_in_float64'] + mlp['redone_in_float64']} redone in float64")


#: The model each ``bench_llm_scale.py --size`` writes the shapes of.
_LLM_SHAPES = {"1.1b": "TinyLlama-1.1B", "7b": "Llama-2-7B"}


def _llm_scale(scale: Results) -> tuple[str, str]:
    analyze = scale["analyze"]
    return (f"`htsweep analyze DIR` on a {scale['n_params'] / 1e9:.2f} B-parameter {_LLM_SHAPES[scale['size']]}-shaped "
            f"bf16 checkpoint ({scale['checkpoint_bytes'] / 1e9:.1f} GB, heavy-tailed trained-like layers, "
            f"{analyze['threads']} threads on {scale['machine']['cpus']} cores)",
            f"{analyze['wall_s']:.0f} s wall, {analyze['peak_rss_gb']:.2f} GB peak RSS, CPU "
            f"{scale['cpu_over_floor']:.2f}× the bare float32 Gram + eigvalsh floor; {analyze['n_layers']} layers, "
            f"{analyze['precision'].get('float64', 0)} redone in float64")


def _llm_projection(r: Mapping[str, Results]) -> tuple[str, str]:
    proj = r["bench_llm_projection"]
    models = proj["projection"]["models"]

    def walls(name: str) -> str:
        return ", ".join(f"{k.replace('x', ' × ')} cores {v / 60:.1f} min" for k, v in models[name]["wall_s"].items())

    return ("expected `htsweep analyze` time from measured per-matrix costs (float32 floor fitted as a·N·M² + b·M³, "
            f"analysis {proj['analyze_over_floor']:.2f}× it, Ray {proj['ray']['overhead_per_layer_s'] * 1e3:.0f} ms "
            "per layer; compute only, no checkpoint I/O)",
            f"Llama-2-7B {models['7b']['cpu_s'] / 3600:.2f} CPU-h ({walls('7b')}); "
            f"70B {models['70b']['cpu_s'] / 3600:.1f} CPU-h ({walls('70b')})")


def _actor(r: Mapping[str, Results]) -> tuple[str, str]:
    actor = r["bench_actor"]
    setup = actor["setup"]
    return (f"ESD actor, {setup['callers']} callers × {setup['layers_per_caller']} layers, batched vs one at a time",
            f"{actor['batched_speedup']:.1f}×")


def _phases(r: Mapping[str, Results]) -> tuple[str, str]:
    suites = {suite["name"]: suite for suite in r["bench_phases"]["suites"]}
    heldout, nuisance, spikes = suites["heldout_v5"], suites["nuisance"], suites["many_spikes"]
    worst = min(heldout["per_phase_accuracy"].items(), key=lambda kv: kv[1])
    return (f"phase classifier (v5, the default), fresh held-out split ({heldout['n_matrices']} matrices, seed "
            f"{heldout['seed']}, fixed before any v5 change; rerun once after a fix found on it) / nuisance noise / many spikes",
            f"{_pct(heldout['accuracy'])} % (lowest phase: {worst[0]} {_pct(worst[1])} %)"
            f" / {_pct(nuisance['accuracy'])} % ({_pct(nuisance['forbidden_rate'])} % decay or heavy)"
            f" / {_pct(spikes['accuracy'])} % ([docs/phases.md](docs/phases.md))")


def _phases_v4_v5(r: Mapping[str, Results]) -> tuple[str, str]:
    v5 = {suite["name"]: suite for suite in r["bench_phases"]["suites"]}
    v4 = {suite["name"]: suite for suite in r["bench_phases_v4_fresh"]["suites"]}
    t7, t7_v4 = v5["table7_v5"], v4["table7_v5"]
    noise = t7["per_construction"]["table7:lognormal_rows_s03"]["labels"]
    noise_v4 = t7_v4["per_construction"]["table7:lognormal_rows_s03"]["labels"]
    ms = [suite["seconds"]["classify_ms_per_matrix"] for suite in r["bench_phases"]["suites"]]
    minilm = r["bench_phases"]["real_layers"]["minilm_encoder"]["default"]

    def forbidden(labels: Mapping[str, int]) -> int:
        return labels.get("bulk_decay", 0) + labels.get("heavy_tailed", 0)

    return ("phase classifier, v4 vs v5 (the default) on the fresh Table-7 split (seed "
            f"{t7['seed']}) / fresh held-out split; log-normal row-norm noise (s = 0.3) called decay or heavy; cost",
            f"{_pct(t7_v4['accuracy'])} % vs {_pct(t7['accuracy'])} % / {_pct(v4['heldout_v5']['accuracy'])} % vs "
            f"{_pct(v5['heldout_v5']['accuracy'])} %; {forbidden(noise_v4)} vs {forbidden(noise)} of "
            f"{sum(noise.values())} (MiniLM's 36 encoder matrices: {minilm.get('random_like', 0)} random_like); "
            f"{min(ms):.2f}–{max(ms):.2f} ms per matrix with the MP and power-law fits passed in")


def _farms(r: Mapping[str, Results]) -> tuple[str, str]:
    farms = r["bench_farms"]
    narrow = [c for c in farms["cost"] if c["n_windows"] > 1]
    ratios = [c["farms_over_analyze"] for c in narrow]
    gauss, heavy, wide = farms["acceptance"]["gaussian"], farms["acceptance"]["student_t_1.5"], farms["wide"]
    text = (f"{min(ratios):.1f}–{max(ratios):.1f}× the analysis' CPU time on layers with M < 2000 "
            f"({_shapes([c['shape'] for c in narrow])}: 10 windows); ≈ {wide['farms_over_analyze_estimate']:.0f}× "
            f"on {_shape(wide['shape'])} ({wide['n_windows']} windows of 2000², from one window's cost)")
    text += (f"; spread over Q = 1…8 of α_hill FARMS {gauss['alpha_hill_farms_spread']:.3f} vs PL_Alpha_Hill "
             f"{gauss['alpha_hill_spread']:.2f} (Gaussian), α FARMS {heavy['alpha_farms_spread']:.2f} (Student-t ν = 1.5)")
    sweep = farms.get("windows_sweep")
    if sweep:
        for k in (2, 3):
            over = [layer[str(k)]["over_analyze"] for layer in sweep["layers"]]
            moved = max(abs(layer[str(k)]["alpha_hill_farms"] - layer["10"]["alpha_hill_farms"]) for layer in sweep["layers"])
            n_wide = sweep["wide"][str(k)]
            text += (f"; with {k} offsets per dimension instead of 10: {min(over):.2f}–{max(over):.2f}× "
                     f"(α_hill FARMS within {moved:.2f} of the 10-offset value), {_shape(wide['shape'])} "
                     f"{n_wide} windows ≈ {n_wide * wide['window_esd_s'] / wide['analyze_s']:.1f}×")
    reused = farms.get("reuse")
    if reused:
        own = [c["window_esd_over_analyze"] for c in reused]
        text += (f"; square layers ≤ 2000 ({_shapes([c['shape'] for c in reused])}: the one window is the layer) "
                 f"reuse the layer's spectrum: FARMS adds ≤ {max(c['added_over_analyze'] for c in reused):.2f}× "
                 f"(its own window eigensolve: {min(own):.2f}–{max(own):.2f}×)")
    return ("FARMS α (`farms=True`) vs the per-layer analysis, and its aspect-ratio bias", text)


def _tail_law(r: Mapping[str, Results]) -> tuple[str, str]:
    cases = r["bench_tail_law"]["cases"]
    esd = [c for c in cases if c["case"].startswith("esd_")]
    synth = [c for c in cases if not c["case"].startswith("esd_")]
    same = sum(bool(c["same_signs"]) for c in cases)

    def times(cs: list[Results]) -> str:
        return f"{min(c['ours_s'] for c in cs):.2f}–{max(c['ours_s'] for c in cs):.2f} s"

    return ("tail-law tests (`tail_law=True`) vs `powerlaw.Fit` + 3 × `distribution_compare`, same xmin",
            f"{times(esd)} per layer on ESD tails of {min(c['n_tail'] for c in esd)}–{max(c['n_tail'] for c in esd)} eigenvalues "
            f"({min(c['speedup'] for c in esd):.1f}–{max(c['speedup'] for c in esd):.1f}× faster than powerlaw); "
            f"{min(c['speedup'] for c in synth):.1f}–{max(c['speedup'] for c in synth):.1f}× faster on "
            f"2000-point tails; same sign of every R on {same}/{len(cases)}")


def _monitoring(r: Mapping[str, Results]) -> tuple[str, str]:
    overheads = [run["overhead_pct"] for run in r["bench_training"]["train_and_monitor"]]
    return ("spectral monitoring overhead during training",
            f"{min(overheads):.2g}–{max(overheads):.2g} % of wall time at the example cadences")


def _loader(r: Mapping[str, Results]) -> tuple[str, str]:
    b = r["bench_loader"]
    cases = {c["case"].split(":")[0]: c["cpu"] for c in b["cases"]}
    auto = cases["auto"]
    return (f"built-in loop vs a plain PyTorch loop: same {b['model']}, data and batch {b['batch_size']} "
            f"({b['device'].upper()}, no monitoring)",
            f"{cases['dataloader']['overhead_pct']:+.1f} % time per step with a DataLoader (augmented Dataset), "
            f"{cases['memory']['overhead_pct']:+.1f} % in memory (CPU-time medians, target ≤ 5 %); in memory "
            f"{auto['htsweep_median'] / auto['reference_median']:.2g}× the DataLoader's steps/s on fixed tensors "
            "(`loader: auto`)")


def _session(r: Mapping[str, Results]) -> tuple[str, str]:
    b = r["bench_session"]
    sync = b["sync"]
    return (f"your own loop through the sweep's session API vs the same loop without it (monitoring off, "
            f"`report` every {b['report_every']} steps to MLflow on sqlite)",
            f"{b['report_share_pct']:.1f} % of the loop's CPU time ({b['report_cpu_ms']:.1f} ms per `session.report`, "
            f"{b['report_thread_ms']:.2f} ms of it in the training thread; metrics journaled and sent every "
            f"{b['flush_interval_s']:g} s by a background thread, at {b['ms_per_step_plain']:.1f} ms/step; target ≤ 2 %); "
            f"{sync['report_share_pct']:.1f} % ({sync['report_cpu_ms']:.1f} ms per call) writing each report "
            f"before the loop goes on (`TrackingConfig(flush_interval=0)`)")


def _seeds(rows: Sequence[Results], arm: str) -> int:
    return min(x["seeds"] for x in rows if x["arm"] == arm)


def _search(r: Mapping[str, Results]) -> tuple[str, str]:
    bench = r["bench_search"]
    rows = bench["rows"]
    default = bench["default_arm"]

    def medians(arm: str) -> str:
        cells = []
        for land in dict.fromkeys(x["landscape"] for x in rows):
            for target in bench["targets"]:
                x = next(x for x in rows if (x["landscape"], x["target"], x["floor"], x["arm"])
                         == (land, target, bench["floors"][0], arm))
                m = x["median_first_hit"]
                cells.append(f">{x['budget']}" if not math.isfinite(m) else f"{m:.0f}")
        return "/".join(cells)

    lands = " and ".join(dict.fromkeys(x["landscape"] for x in rows))
    return (f"trials to the first feasible \\|α − target\\| ≤ {bench['tolerance']:g} on tabular benchmarks of real "
            f"training ({lands}; α* = {'/'.join(f'{t:g}' for t in bench['targets'])}, test acc ≥ "
            f"{bench['floors'][0]:g}; median over {_seeds(rows, default)} seeds, random {_seeds(rows, 'random')})",
            f"default `{default}`: {medians(default)} vs random {medians('random')} vs penalized TPE "
            f"{medians('tpe_penalty')} vs GP {medians('gp_constraint')} "
            f"({min(x['seeds'] for x in rows if x['arm'] == 'gp_constraint' and x['floor'] == bench['floors'][0])} seeds, "
            f"{bench['budget_gp']} trials) (CIs, regret, hypervolume: `benchmarks/results/bench_search.json`)")


def _real_sweeps(r: Mapping[str, Results]) -> tuple[str, str]:
    b = r["bench_real_sweeps"]
    arms, asha = b["arms"], b["asha_vs_fifo"]

    def hits(arm: str) -> str:
        return "/".join(str(h) if h <= b["num_samples"] else f">{b['num_samples']}" for h in arms[arm]["first_hit"])

    return (f"real sweeps of `{b['spec']}` ({b['num_samples']} trials, α* = {b['target_alpha']:g}, test acc ≥ "
            f"{b['min_test_accuracy']:g}; {len(arms['tpe']['seeds'])} seeds per arm, the real trainer)",
            f"final regret (best feasible \\|α − target\\|, median): default TPE {arms['tpe']['median_final_regret']:.2f} vs "
            f"random {arms['random']['median_final_regret']:.2f}; trials to a feasible \\|α − target\\| ≤ "
            f"{b['tolerance']:g} per seed: TPE {hits('tpe')}, random {hits('random')}; ASHA (grace "
            f"{b['asha']['grace_period']}, factor {b['asha']['reduction_factor']:g}) vs FIFO, same sampler: "
            f"{asha['median_steps_ratio']:.2f}× the training steps, {asha['median_wall_ratio']:.2f}× the wall time, "
            f"final regret {arms['tpe_asha']['median_final_regret']:.2f} vs {arms['tpe']['median_final_regret']:.2f} "
            f"(`benchmarks/results/bench_real_sweeps.json`)")


ROWS: tuple[Callable[[Mapping[str, Results]], tuple[str, str]], ...] = (
    _power_law, _analyze_vs_bare, _analyze_vs_weightwatcher, _llama_block, _float32_floor, _precision,
    lambda r: _llm_scale(r["bench_llm_scale"]), lambda r: _llm_scale(r["bench_llm_scale_7b"]),
    _llm_projection, _actor, _phases, _phases_v4_v5, _monitoring, _farms, _tail_law, _loader, _session, _search, _real_sweeps,
)


def render_table(results: Mapping[str, Results] | None = None) -> str:
    """The markdown table (no trailing newline) from ``results`` (default: the committed JSON)."""
    results = load_results() if results is None else results
    lines = ["| benchmark | result |", "| --- | --- |"]
    lines += [f"| {benchmark} | {result} |" for benchmark, result in (row(results) for row in ROWS)]
    return "\n".join(lines)


def _bounds(text: str) -> tuple[int, int]:
    """Where the section between the markers starts and ends in ``text``."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"the README needs exactly one {START} ... {END} section")
    return text.index(START) + len(START), text.index(END)


def readme_section(text: str) -> str:
    """The table between the markers, without the surrounding newlines."""
    start, end = _bounds(text)
    return text[start:end].strip("\n")


def replace_section(text: str, table: str) -> str:
    """``text`` with the section between the markers replaced by ``table``."""
    start, end = _bounds(text)
    return f"{text[:start]}\n{table}\n{text[end:]}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the README's table is not current")
    args = parser.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    new = replace_section(text, render_table())
    if args.check:
        if new != text:
            print(f"{README.name}: the benchmark table is stale; run `make bench-table`", file=sys.stderr)
            return 1
        return 0
    if new != text:
        README.write_text(new, encoding="utf-8")
        print(f"{README.name}: benchmark table updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
