"""Figures and numbers of docs/reproductions.md, read from the finished full-size sweeps.

Each reproduction reads its sweeps (``<runs>/<spec name>``, as ``htsweep run
sweeps/examples/<spec>.yaml --workdir <runs>/<spec>`` leaves them) back from MLflow with
:func:`benchmarks.repro_records.records_from_sweep`, measures them with
``benchmarks/repro_measures.py`` (the same measures the trend tests assert on), draws its figures
into ``docs/figures/`` and prints its numbers; all numbers also go to
``benchmarks/results/reproductions.json``.

Usage::

    .venv/bin/python benchmarks/reproductions.py [--runs runs] [--out docs/figures] [--only spikes,batch,...]

Reproductions (and their sweeps): ``spikes_one_step`` (lr_spike_one_step), ``spikes_ten_steps``
(lr_spike_to_heavy_tail), ``batch`` (batch_size_phases_mnist5k), ``wd`` (weight_decay_rank),
``phases_lenet5`` / ``phases_chargpt`` (phases_over_time_*), ``width`` (linear_width_gd,
linear_width_adam). A missing or unfinished sweep is reported and skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.repro_measures import (  # noqa: E402
    bulk_ks,
    departure_step,
    final_table,
    log_frobenius,
    multi_step_table,
    one_step_scan,
    one_step_table,
    onset_lr,
    predicted_critical_lr,
    predicted_ratio,
    ratio,
    spearman,
    timeline,
)
from benchmarks.repro_records import TrialRecord, records_from_sweep, spec_setup  # noqa: E402
from htsweep.analysis.analyze import json_safe  # noqa: E402
from htsweep.analysis.plots import plot_esd  # noqa: E402

OPT_LABEL = {"sgd": "GD", "adam": "FB-Adam"}
OPT_COLOR = {"sgd": "#1f77b4", "adam": "#d62728"}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    print(f"  wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path


def _table_json(frame: Any) -> list[dict[str, Any]]:
    return json_safe(frame.to_dict(orient="records"))


def _records(runs: Path, name: str, **kwargs: Any) -> list[TrialRecord]:
    """The completed trials of sweep ``runs/name``; ``FileNotFoundError`` when there are none."""
    records = records_from_sweep(runs / name, **kwargs)
    if not records:
        raise FileNotFoundError(f"sweep {runs / name} has no completed trials yet")
    return records


# --------------------------------------------------------------------------- 1. spikes to heavy tails
def spikes_one_step(runs: Path, out: Path) -> dict[str, Any]:
    """One-step λmax/λ+ (sweep, fine scan, BBP prediction), sim and KTA vs lr."""
    plt = _plt()
    result: dict[str, Any] = {}
    one = one_step_table(_records(runs, "lr_spike_one_step", esd_steps="none"))
    base, _ = spec_setup("lr_spike_one_step")
    pred = predicted_critical_lr(base)
    result["predicted"] = pred
    result["onset_lr"] = {opt: onset_lr(one, opt) for opt in ("sgd", "adam")}
    result["one_step"] = _table_json(one)
    # the same first step on a fine grid around each predicted threshold (exact, no training)
    scan = one_step_scan(base, {"sgd": pred["gd"] * np.geomspace(0.5, 8, 13),
                                "adam": pred["adam"] * np.geomspace(0.5, 8, 13)})
    result["fine_scan"] = _table_json(scan)
    result["fine_onset_lr"] = {opt: onset_lr(scan, opt) for opt in ("sgd", "adam")}
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for opt, key, norm in (("sgd", "gd", "grad_op_norm"), ("adam", "adam", "adam_op_norm")):
        rows = one[one["optimizer"] == opt]
        c = OPT_COLOR[opt]
        axes[0].loglog(rows["lr"], rows["ratio"], "o-", color=c, label=f"{OPT_LABEL[opt]} (sweep)")
        fine = scan[scan["optimizer"] == opt]
        axes[0].loglog(fine["lr"], fine["ratio"], ".", color=c, ms=4, label=f"{OPT_LABEL[opt]} (fine scan)")
        # a rank-one model of the step holds near the threshold, not once the step swamps W0
        grid = np.geomspace(pred[key] / 3, pred[key] * 30, 100)
        axes[0].loglog(grid, [predicted_ratio(x, pred[norm], pred["h"], pred["d"]) for x in grid], "--", color=c,
                       lw=1, label=f"{OPT_LABEL[opt]} (BBP, rank-one step)")
        axes[0].axvline(pred[key], color=c, ls=":", lw=1)
        axes[1].semilogx(rows["lr"], rows["sim"], "o-", color=c, label=OPT_LABEL[opt])
        axes[2].semilogx(rows["lr"], rows["kta"], "o-", color=c, label=OPT_LABEL[opt])
    axes[0].axvline(pred["ba_large"], color="gray", ls="-.", lw=1, label="Ba et al. large step d√h")
    axes[0].axhline(1.0, color="k", lw=0.6)
    axes[0].set_ylim(0.5, None)
    axes[0].set(xlabel="learning rate η", ylabel="λmax / λ+ after one step", title="spike after one step")
    axes[1].axhline(float(one["sim0"].iloc[0]), color="k", lw=0.6, label="initialization")
    axes[1].set(xlabel="learning rate η", ylabel="sim = |⟨v₁, β⟩|", title="alignment with the teacher")
    axes[2].axhline(float(one["kta0"].iloc[0]), color="k", lw=0.6, label="initialization")
    axes[2].set(xlabel="learning rate η", ylabel="KTA (test conjugate kernel)", title="kernel-target alignment")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle(f"One full-batch step, n=2000 d={pred['d']} h={pred['h']} (dotted: predicted critical η)",
                 fontsize=10)
    _save(fig, out / "spikes_one_step.png")
    return result


def spikes_ten_steps(runs: Path, out: Path) -> dict[str, Any]:
    """PL_Alpha_Hill / PL_Alpha_KS and the ridge test loss after 10 steps vs lr; fc1 ESD over steps."""
    plt = _plt()
    recs = _records(runs, "lr_spike_to_heavy_tail", esd_steps="all")
    multi = multi_step_table(recs)
    result: dict[str, Any] = {"ten_steps": _table_json(multi)}
    fig, axes = plt.subplots(2, 2, figsize=(12, 6.4), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    for j, opt in enumerate(("sgd", "adam")):
        rows = multi[multi["optimizer"] == opt]
        ax, lo = axes[0][j], axes[1][j]
        ax.semilogx(rows["lr"], rows["alpha_hill"], "o-", color="#2c7a2c", label="PL_Alpha_Hill (xmin at median)")
        ax.semilogx(rows["lr"], rows["alpha"], "s--", color="#7a4fa0", label="PL_Alpha_KS (CSN fit)")
        ax.axhline(float(rows["alpha_hill0"].iloc[0]), color="#2c7a2c", lw=0.8, ls=":",
                   label="PL_Alpha_Hill at initialization")
        ax.set(ylabel="power-law exponent of fc1", title=f"{OPT_LABEL[opt]}: after {int(rows['steps'].iloc[0])} steps")
        ax.legend(fontsize=7)
        lo.loglog(rows["lr"], rows["ridge_test_loss"], "^-", color="#e08a00", label="after 10 steps")
        lo.axhline(float(rows["ridge_test_loss0"].iloc[0]), color="#e08a00", lw=0.8, ls=":", label="initialization")
        lo.set(xlabel="learning rate η", ylabel="test MSE (ridge readout)")
        lo.legend(fontsize=7)
    _save(fig, out / "spikes_ten_steps.png")
    _spike_evolution(recs, out / "spikes_esd_evolution.png")
    return result


def _spike_evolution(recs: Sequence[TrialRecord], path: Path) -> None:
    """fc1 ESD of one FB-Adam trial at steps 0, 1, 5, 10 (the paper's Fig. 4): spike → tail."""
    plt = _plt()
    lr = 0.3
    trial = next((r for r in recs if r.params["optimizer"] == "adam" and math.isclose(r.params["lr"], lr)), None)
    if trial is None:
        return
    steps = [s for s in (0, 1, 2, 5, 10) if s in trial.esds]
    fig, axes = plt.subplots(1, len(steps), figsize=(3.3 * len(steps), 3.2))
    for ax, step in zip(axes, steps, strict=True):
        eigs = trial.esd("fc1", step)
        ax.hist(eigs, bins=np.geomspace(max(eigs.min(), 1e-3), eigs.max() * 1.01, 60), density=True,
                color="#7a9cc6")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"step {step}: λmax/λ+ = {ratio(trial, 'fc1', step):.1f}\n"
                     f"PL_Alpha_Hill {trial.at('alpha_hill/fc1', step):.2f}", fontsize=8)
        ax.set_xlabel("eigenvalue λ")
    fig.suptitle(f"FB-Adam η = {lr}: the one-step spike spreads into a tail (fc1, log-log)", fontsize=10)
    _save(fig, path)


# --------------------------------------------------------------------------- 2. batch size
def batch(runs: Path, out: Path) -> dict[str, Any]:
    """ESD grid per batch size with the MP fit; ranks, alpha and accuracy vs batch size."""
    plt = _plt()
    recs = _records(runs, "batch_size_phases_mnist5k", esd_steps="last")
    layers = ("fc1", "fc2", "fc3")
    keys = [f"{k}/{layer}" for layer in layers for k in ("stable_rank", "mp_soft_rank", "alpha", "alpha_hill",
                                                        "n_spikes", "ratio", "phase")]
    table = final_table(recs, "batch_size", [*keys, "test_acc", "train_acc"])
    result: dict[str, Any] = {"table": _table_json(table)}
    result["spearman_b"] = {k: spearman(table["batch_size"], table[k]) for k in keys
                            if not k.startswith("phase")}
    result["spearman_b"]["test_acc"] = spearman(table["batch_size"], table["test_acc"])
    by_b = sorted(recs, key=lambda r: -r.params["batch_size"])
    fig, axes = plt.subplots(2, len(by_b), figsize=(2.5 * len(by_b), 5), squeeze=False)
    for j, r in enumerate(by_b):
        for i, layer in enumerate(("fc1", "fc2")):
            row, eigs = r.layers[layer], r.esd(layer)
            # the bulk and the first outliers; λmax (often far out) is given in the title
            shown = eigs[eigs <= 4 * row["lambda_plus"]]
            plot_esd(shown, mp=row, ax=axes[i][j])
            axes[i][j].set_xlim(0, 4 * row["lambda_plus"])
            axes[i][j].set_title(f"b={r.params['batch_size']} {layer}: λmax/λ+ {ratio(r, layer):.3g}\n"
                                 f"{int(row['n_spikes'])} spikes, {row['phase']}", fontsize=7)
            axes[i][j].legend().set_visible(False)
            axes[i][j].tick_params(labelsize=6)
            axes[i][j].set_xlabel("")
            axes[i][j].set_ylabel("")
    fig.suptitle("Final ESDs of FC1 / FC2 up to 4 λ+ (MLP3, MNIST-5k, 10 epochs each) with the MP fit (red)",
                 fontsize=10)
    _save(fig, out / "batch_size_esd_grid.png")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    b = table["batch_size"]
    for layer, style in zip(layers, ("o-", "s-", "^-"), strict=True):
        axes[0].semilogx(b, table[f"stable_rank/{layer}"], style, label=f"stable rank {layer}")
        axes[1].semilogx(b, table[f"mp_soft_rank/{layer}"], style, label=f"MP soft rank {layer}")
        axes[2].semilogx(b, table[f"alpha/{layer}"], style, label=f"α {layer}")
    tw = axes[2].twinx()
    tw.semilogx(b, table["test_acc"], "k*--", label="test accuracy")
    tw.semilogx(b, table["train_acc"], "kx:", label="train accuracy")
    tw.set_ylabel("accuracy")
    tw.legend(fontsize=7, loc="lower right")
    for ax, name in zip(axes, ("stable rank", "MP soft rank", "α (PL_Alpha_KS)"), strict=True):
        ax.set(xlabel="batch size b", ylabel=name)
        ax.legend(fontsize=7)
    fig.suptitle("Batch size: ranks and α fall as b shrinks (MM Fig. 29)", fontsize=10)
    _save(fig, out / "batch_size_ranks.png")
    return result


# --------------------------------------------------------------------------- 3. weight decay
def weight_decay(runs: Path, out: Path) -> dict[str, Any]:
    """Effective rank vs step per weight decay; final effective rank vs wd; top singular values vs step."""
    plt = _plt()
    recs = sorted(_records(runs, "weight_decay_rank", esd_steps="all"),
                  key=lambda r: r.params["weight_decay"])
    layers = ("fc1", "fc2", "fc3")
    rows = []
    for r in recs:
        row = {"weight_decay": r.params["weight_decay"], "test_acc": r.last("test_acc")}
        for layer in layers:
            row[f"effective_rank0/{layer}"] = r.first(f"effective_rank/{layer}")
            row[f"effective_rank/{layer}"] = r.last(f"effective_rank/{layer}")
            row[f"stable_rank/{layer}"] = r.last(f"stable_rank/{layer}")
            row[f"log_frobenius0/{layer}"] = log_frobenius(r, layer, r.steps[0])
            row[f"log_frobenius/{layer}"] = log_frobenius(r, layer)
            row[f"phase/{layer}"] = r.layers[layer]["phase"]
            row[f"numerical_rank/{layer}"] = r.layers[layer]["numerical_rank"]
        rows.append(row)
    result: dict[str, Any] = {"table": json_safe(rows)}
    moderate = [row for row in rows if row["weight_decay"] <= 0.1]
    result["spearman_wd"] = {layer: spearman([x["weight_decay"] for x in moderate],
                                             [x[f"effective_rank/{layer}"] for x in moderate]) for layer in layers}
    cmap = plt.get_cmap("viridis")
    colors = {r.params["weight_decay"]: cmap(i / max(1, len(recs) - 1)) for i, r in enumerate(recs)}
    fig, axes = plt.subplots(1, 5, figsize=(21, 3.9))
    shown = {0.0, 0.01, 0.1}  # the singular values of three weight decays; the norm panel has all
    for r in recs:
        wd = r.params["weight_decay"]
        for ax, layer in zip(axes[:2], ("fc1", "fc2"), strict=True):
            s = r.series(f"effective_rank/{layer}")
            ax.plot(s.index, s.to_numpy(), color=colors[wd], label=f"wd={wd:g}")
        if wd in shown:
            top = np.array([r.singular_values("fc2", step)[:5] for step in r.steps])
            axes[3].plot(r.steps, top[:, 0], color=colors[wd], lw=2, label=f"wd={wd:g}")
            axes[3].plot(r.steps, top[:, 1:], color=colors[wd], lw=0.8)
        axes[4].semilogy(r.steps, [10 ** log_frobenius(r, "fc2", st) for st in r.steps], color=colors[wd],
                         label=f"wd={wd:g}")
    for ax, layer in zip(axes[:2], ("fc1", "fc2"), strict=True):
        ax.set(xlabel="step", ylabel=f"effective rank {layer}", title=f"{layer} during training")
        ax.legend(fontsize=6)
    wds = [x["weight_decay"] for x in rows]
    xs = [w if w > 0 else min(w2 for w2 in wds if w2 > 0) / 3 for w in wds]  # wd = 0 drawn left of the rest
    for layer, style in zip(layers, ("o-", "s-", "^-"), strict=True):
        axes[2].semilogx(xs, [x[f"effective_rank/{layer}"] for x in rows], style, label=layer)
    axes[2].set(xlabel="weight decay (0 drawn at the far left)", ylabel="final effective rank",
                title="final effective rank vs weight decay")
    axes[2].legend(fontsize=7)
    axes[3].set(xlabel="step", ylabel="singular values of fc2", title="top-5 singular values of fc2 (bold: top-1)")
    axes[3].legend(fontsize=6)
    axes[4].set(xlabel="step", ylabel="‖W‖²_F of fc2", title="norm of fc2 (wd = 0.3 collapses)")
    axes[4].legend(fontsize=6)
    _save(fig, out / "weight_decay_rank.png")
    return result


# --------------------------------------------------------------------------- 4. phases over time
def phases_lenet5(runs: Path, out: Path) -> dict[str, Any]:
    """λmax/λ+ of LeNet5's FC1 / FC2 over training (three seeds) and FC1's ESD at five steps."""
    plt = _plt()
    result: dict[str, Any] = {}
    lenet = sorted(_records(runs, "phases_over_time_lenet5", esd_steps="all"), key=lambda r: r.params["seed"])
    result["lenet5"] = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for r in lenet:
        t = timeline(r, ["fc1", "fc2"])
        for ax, layer in zip(axes, ("fc1", "fc2"), strict=True):
            ax.plot(t.index, t[layer], label=f"seed {r.params['seed']}")
        result["lenet5"].append({"seed": r.params["seed"], "rho_step_ratio_fc1": spearman(t.index, t["fc1"]),
                                 "departure_fc1": departure_step(r, "fc1", 1.3),
                                 "departure_fc2": departure_step(r, "fc2", 1.3),
                                 "phases_fc1": _phase_sequence(r, "fc1"), "phases_fc2": _phase_sequence(r, "fc2"),
                                 "final_ratio": {k: ratio(r, k) for k in ("fc1", "fc2")},
                                 "test_acc": r.last("test_acc")})
    for ax, layer in zip(axes, ("fc1", "fc2"), strict=True):
        ax.axhline(1.0, color="k", lw=0.6)
        ax.set(xlabel="step", ylabel="λmax / λ+", title=f"LeNet5 {layer}")
        ax.legend(fontsize=7)
    _save(fig, out / "phases_lenet5_ratio.png")
    if lenet:
        r = lenet[0]
        picks = [r.steps[i] for i in np.unique(np.linspace(0, len(r.steps) - 1, 5).round().astype(int))]
        fig, axes = plt.subplots(1, len(picks), figsize=(3.2 * len(picks), 3))
        for ax, step in zip(axes, picks, strict=True):
            plot_esd(r.esd("fc1", step), mp=_mp_at(r, "fc1", step), ax=ax)
            ax.legend().set_visible(False)
            ax.set_title(f"step {step}: λmax/λ+ {ratio(r, 'fc1', step):.2f}", fontsize=8)
        fig.suptitle("LeNet5 FC1 ESD over training (seed 0; red: MP fit of that step)", fontsize=10)
        _save(fig, out / "phases_lenet5_fc1_esd.png")
    return result


def phases_chargpt(runs: Path, out: Path) -> dict[str, Any]:
    """λmax/λ+ of every char-GPT block matrix over training, attention vs feed-forward."""
    plt = _plt()
    r = _records(runs, "phases_over_time_chargpt", esd_steps="none")[0]
    names = [n for n in r.layers if n.startswith("blocks.")]
    t = timeline(r, names)
    blocks = sorted({".".join(n.split(".")[:2]) for n in names})
    fig, axes = plt.subplots(1, len(blocks), figsize=(5.5 * len(blocks), 3.8), sharey=True, squeeze=False)
    for ax, block in zip(axes[0], blocks, strict=True):
        for n in [n for n in names if n.startswith(block + ".")]:
            short = n.removeprefix(block + ".").removeprefix("attn.")
            ax.semilogy(t.index, t[n], ls="-" if "attn" in n else "--", label=short)
        ax.axhline(1.0, color="k", lw=0.6)
        ax.set(xlabel="step", ylabel="λmax / λ+", title=f"char-GPT {block} (solid: attention)")
        ax.legend(fontsize=7)
    _save(fig, out / "phases_chargpt_ratio.png")
    return {"layers": {n: {"departure_1.3": departure_step(r, n, 1.3), "departure_1.5": departure_step(r, n, 1.5),
                           "ratio_at": {int(s): float(t.loc[s, n]) for s in t.index[:: max(1, len(t) // 8)]},
                           "final_ratio": ratio(r, n), "phases": _phase_sequence(r, n)} for n in names},
            "test_loss": {"first": r.first("test_loss"), "last": r.last("test_loss")},
            "test_acc": {"first": r.first("test_acc"), "last": r.last("test_acc")}}


def _mp_at(record: TrialRecord, layer: str, step: int) -> dict[str, float]:
    """An MP fit of ``layer`` at ``step`` (the logged rows hold only the final fit)."""
    from htsweep.analysis.marchenko_pastur import fit_marchenko_pastur

    q = float(record.layers[layer]["q"])
    mp = fit_marchenko_pastur(record.esd(layer, step), q)
    return {"sigma2": mp.sigma2, "q": q, "lambda_plus": mp.lambda_plus}


def _phase_sequence(record: TrialRecord, layer: str) -> list[tuple[int, str]]:
    """(first step, phase) for each run of equal phases of ``layer`` over training."""
    from benchmarks.repro_measures import PHASE_NAMES

    out: list[tuple[int, str]] = []
    for step, code in record.series(f"phase_code/{layer}").items():
        name = PHASE_NAMES.get(int(code), "")
        if not out or out[-1][1] != name:
            out.append((int(step), name))
    return out


# --------------------------------------------------------------------------- 5. linear width
def width(runs: Path, out: Path) -> dict[str, Any]:
    """Initial vs final ESD of fc1 for small-lr GD, large-lr GD and Adam."""
    plt = _plt()
    gd = {r.params["lr"]: r for r in _records(runs, "linear_width_gd", esd_steps="all")}
    adam = {r.params["lr"]: r for r in _records(runs, "linear_width_adam", esd_steps="all")}
    result: dict[str, Any] = {}
    settings = [(f"GD η={lr:g}", r) for lr, r in sorted(gd.items())] + \
               [(f"Adam η={lr:g}", r) for lr, r in sorted(adam.items())]
    for label, r in settings:
        result[label] = {"ks_init_final": bulk_ks(r, "fc1"), "ratio": ratio(r, "fc1"),
                         "n_spikes": r.last("n_spikes/fc1"), "sim0": r.first("sim"), "sim": r.last("sim"),
                         "alpha0": r.first("alpha/fc1"), "alpha": r.last("alpha/fc1"),
                         "alpha_hill0": r.first("alpha_hill/fc1"), "alpha_hill": r.last("alpha_hill/fc1"),
                         "train_loss0": r.first("train_loss"), "train_loss": r.last("train_loss"),
                         "test_loss0": r.first("test_loss"), "test_loss": r.last("test_loss"),
                         "ridge_test_loss": r.last("ridge_test_loss"), "phase": r.layers["fc1"]["phase"]}
    shown = [s for s in settings if s[0] in ("GD η=10", "GD η=3000", "Adam η=0.1", "Adam η=1")] or settings[:3]
    fig, axes = plt.subplots(1, len(shown), figsize=(4.3 * len(shown), 3.6))
    for ax, (label, r) in zip(np.atleast_1d(axes), shown, strict=True):
        e0, e1 = r.esd("fc1", r.steps[0]), r.esd("fc1", r.steps[-1])
        bins = np.geomspace(max(min(e0.min(), e1.min()), 1e-3), max(e0.max(), e1.max()) * 1.01, 70)
        ax.hist(e0, bins=bins, density=True, alpha=0.55, color="#7a9cc6", label="initial")
        ax.hist(e1, bins=bins, density=True, alpha=0.55, color="#d62728", label=f"after {r.steps[-1]} steps")
        ax.set_xscale("log")
        ax.set_yscale("log")
        m = result[label]
        ax.set_title(f"{label}: KS(init, final) = {m['ks_init_final']:.3f}\nλmax/λ+ = {m['ratio']:.1f}, "
                     f"sim = {m['sim']:.2f}, α {m['alpha0']:.1f}→{m['alpha']:.1f}", fontsize=8)
        ax.set_xlabel("eigenvalue λ of fc1")
        ax.legend(fontsize=7)
    fig.suptitle("Linear-width two-layer net (n=2000, d=1000, h=1500): initial vs final ESD", fontsize=10)
    _save(fig, out / "linear_width_esd.png")
    return result


REPRODUCTIONS: dict[str, Callable[[Path, Path], dict[str, Any]]] = {
    "spikes_one_step": spikes_one_step, "spikes_ten_steps": spikes_ten_steps, "batch": batch, "wd": weight_decay,
    "phases_lenet5": phases_lenet5, "phases_chargpt": phases_chargpt, "width": width,
}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, default=ROOT / "runs", help="directory holding the sweep directories")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    p.add_argument("--only", default=",".join(REPRODUCTIONS), help="comma-separated subset of "
                   + ", ".join(REPRODUCTIONS))
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "reproductions.json")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.json.read_text()) if args.json.is_file() else {}
    for name in args.only.split(","):
        print(f"[{name}]")
        try:
            results[name] = REPRODUCTIONS[name](args.runs, args.out)
        except FileNotFoundError as exc:
            print(f"  skipped: {exc}")
            continue
        print(json.dumps(json_safe(results[name]), indent=1)[:4000])
    args.json.write_text(json.dumps(json_safe(results), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
