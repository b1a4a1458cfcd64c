"""The numbers each reproduction reports, computed from trial records (in-process or from a sweep).

One section per reproduction of ``docs/reproductions.md``; the trend tests
(``tests/reproductions``) assert on these measures, the figure script
(``benchmarks/reproductions.py``) plots and prints them. λmax/λ+ is ``1 / mp_soft_rank`` (the MP
soft rank is λ+/λmax), so it comes straight from the logged per-layer metric.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from benchmarks.repro_records import TrialRecord

__all__ = [
    "PHASE_NAMES",
    "bulk_ks",
    "departure_step",
    "final_table",
    "first_step",
    "log_frobenius",
    "multi_step_table",
    "one_step_scan",
    "one_step_table",
    "onset_lr",
    "predicted_critical_lr",
    "predicted_ratio",
    "ratio",
    "spearman",
    "timeline",
]


def _phase_names() -> dict[int, str]:
    from htsweep.analysis.phases import PHASE_CODES

    return {int(v): k for k, v in PHASE_CODES.items()}


PHASE_NAMES: dict[int, str] = _phase_names()
"""Phase code (as logged to MLflow) → phase name."""


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation of two equally long sequences (NaN pairs dropped)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    return float(stats.spearmanr(x[keep], y[keep]).statistic) if keep.sum() >= 3 else math.nan


def ratio(record: TrialRecord, layer: str, step: int | None = None) -> float:
    """λmax/λ+ of ``layer`` at ``step`` (default: the last monitoring step)."""
    soft = record.last(f"mp_soft_rank/{layer}") if step is None else record.at(f"mp_soft_rank/{layer}", step)
    return 1.0 / soft if soft > 0 else math.nan


def _phase(record: TrialRecord, layer: str, step: int | None = None) -> str:
    key = f"phase_code/{layer}"
    code = record.last(key) if step is None else record.at(key, step)
    return PHASE_NAMES.get(int(code), "") if math.isfinite(code) else ""


# --------------------------------------------------------------------------- 1. spikes to heavy tails
def one_step_table(records: Iterable[TrialRecord], layer: str = "fc1") -> pd.DataFrame:
    """After ONE step: λmax/λ+, spikes, teacher overlap ``sim`` and KTA per (optimizer, lr).

    Columns ``optimizer, lr, ratio, n_spikes, sim, sim0, kta, kta0, ridge_test_loss,
    ridge_test_loss0, phase`` (``…0``: at initialization).
    """
    out = []
    for r in records:
        out.append({"optimizer": r.params["optimizer"], "lr": float(r.params["lr"]), "ratio": ratio(r, layer, 1),
                    "n_spikes": r.at(f"n_spikes/{layer}", 1), "sim": r.at("sim", 1), "sim0": r.at("sim", 0),
                    "kta": r.at("kta", 1), "kta0": r.at("kta", 0), "ridge_test_loss": r.at("ridge_test_loss", 1),
                    "ridge_test_loss0": r.at("ridge_test_loss", 0), "phase": _phase(r, layer, 1)})
    return pd.DataFrame(out).sort_values(["optimizer", "lr"], ignore_index=True)


def multi_step_table(records: Iterable[TrialRecord], layer: str = "fc1") -> pd.DataFrame:
    """After the LAST step: PL_Alpha_Hill, PL_Alpha_KS, λmax/λ+, ridge test loss and KTA per (optimizer, lr).

    Columns ``optimizer, lr, steps, alpha_hill, alpha_hill0, alpha, ratio, n_spikes, ridge_test_loss,
    ridge_test_loss0, kta, phase``.
    """
    out = []
    for r in records:
        out.append({"optimizer": r.params["optimizer"], "lr": float(r.params["lr"]), "steps": int(r.series(f"alpha_hill/{layer}").index[-1]),
                    "alpha_hill": r.last(f"alpha_hill/{layer}"), "alpha_hill0": r.first(f"alpha_hill/{layer}"),
                    "alpha": r.last(f"alpha/{layer}"), "ratio": ratio(r, layer),
                    "n_spikes": r.last(f"n_spikes/{layer}"), "ridge_test_loss": r.last("ridge_test_loss"),
                    "ridge_test_loss0": r.first("ridge_test_loss"), "kta": r.last("kta"),
                    "phase": _phase(r, layer)})
    return pd.DataFrame(out).sort_values(["optimizer", "lr"], ignore_index=True)


def onset_lr(table: pd.DataFrame, optimizer: str, threshold: float = 1.1) -> float:
    """The smallest grid lr from which on every larger lr has ``ratio > threshold`` (NaN if none)."""
    rows = table[table["optimizer"] == optimizer].sort_values("lr")
    above = (rows["ratio"] > threshold).to_numpy()
    if not above.any() or not above[-1]:
        return math.nan
    first = len(above) - int(np.argmin(above[::-1])) if not above.all() else 0
    return float(rows["lr"].iloc[first])


def first_step(config: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """The student's initial first-layer weight and its first GD and FB-Adam update directions.

    Parameters
    ----------
    config : mapping
        The ``TrainConfig`` of the trials (model ``student``, dataset ``teacher_student``); the
        model is initialized exactly as in the trials (same seed).

    Returns
    -------
    (W0, G, U) : tensors of shape (h, d), float64
        ``G`` is the full-batch gradient of the mean-squared loss, ``U = G / (|G| + ε)`` Adam's
        bias-corrected first step ``m̂ / (√v̂ + ε)``; one step of lr η gives ``W0 − η G`` or
        ``W0 − η U`` exactly.
    """
    import torch.nn.functional as F

    from htsweep.trainers.train import TrainConfig, Trainer

    trainer = Trainer(TrainConfig.from_dict({**config, "steps": 1}))
    model, data = trainer.model, trainer.data
    model.zero_grad()
    F.mse_loss(model(data.x_train), data.y_train).backward()
    grad = model.fc1.weight.grad.detach().double()
    return model.fc1.weight.detach().double().clone(), grad, grad / (grad.abs() + 1e-8)


def predicted_critical_lr(config: Mapping[str, Any]) -> dict[str, float]:
    """Where one step of GD / FB-Adam should create an outlier, from the gradient at initialization.

    The first full-batch gradient ``G`` of the student's first layer (``W`` of shape ``(h, d)``,
    entries N(0, 1)) is close to rank one, ``G ≈ s u vᵀ`` with ``s = ‖G‖_op``. ``W − η G`` is then a
    spiked matrix of strength ``θ = η s / √h`` (``σ = 1``, ``N = h``), which has an outlier iff
    ``θ > (d/h)^(1/4)`` (BBP; :func:`analysis.marchenko_pastur.bbp_outlier`), i.e. for
    ``η > η_c = (h d)^(1/4) / s``. FB-Adam's first step is ``η U`` with ``U = G / (|G| + ε)``
    (sign-like, ``‖U‖_op ≲ √(h d)``), so its threshold is ``(h d)^(1/4) / ‖U‖_op``.

    Parameters
    ----------
    config : mapping
        The ``TrainConfig`` of the trials (see :func:`first_step`).

    Returns
    -------
    dict
        ``gd``, ``adam`` (the thresholds), ``grad_op_norm`` (s), ``adam_op_norm`` (‖U‖_op),
        ``grad_rank_one`` / ``adam_rank_one`` (σ₁² / Σσ², 1 for an exactly rank-one step), ``h``,
        ``d``, and ``ba_large`` = ``d √h``, Ba et al.'s large-step scale ``η = Θ(√N)`` in this
        parametrization (their ``W`` is ours over ``√d`` and their step is ``η√N`` times a gradient
        that is ``√(N/d)``-times smaller, so ``η_ours = d · η_theirs``).
    """
    import torch

    _, grad, adam_dir = first_step(config)
    h, d = grad.shape
    sv_g, sv_u = torch.linalg.svdvals(grad), torch.linalg.svdvals(adam_dir)
    edge = (h * d) ** 0.25
    return {"gd": edge / float(sv_g[0]), "adam": edge / float(sv_u[0]), "grad_op_norm": float(sv_g[0]),
            "adam_op_norm": float(sv_u[0]), "grad_rank_one": float(sv_g[0] ** 2 / (sv_g ** 2).sum()),
            "adam_rank_one": float(sv_u[0] ** 2 / (sv_u ** 2).sum()), "h": h, "d": d,
            "ba_large": d * math.sqrt(h)}


def one_step_scan(config: Mapping[str, Any], lrs: Mapping[str, Sequence[float]]) -> pd.DataFrame:
    """λmax/λ+ and spikes of ``W0 − η·step`` on a fine lr grid, without training (the exact first step).

    Parameters
    ----------
    config : mapping
        As for :func:`first_step`.
    lrs : mapping
        ``{"sgd": [...], "adam": [...]}`` learning rates per optimizer.

    Returns
    -------
    pandas.DataFrame
        Columns ``optimizer, lr, ratio, n_spikes``.
    """
    from htsweep.analysis.analyze import analyze_matrix

    w0, grad, adam_dir = first_step(config)
    out = []
    for opt, direction in (("sgd", grad), ("adam", adam_dir)):
        for lr in lrs.get(opt, ()):
            row = analyze_matrix((w0 - lr * direction).numpy(), device="cpu")
            out.append({"optimizer": opt, "lr": float(lr), "ratio": row["lambda_max"] / row["lambda_plus"],
                        "n_spikes": row["n_spikes"]})
    return pd.DataFrame(out)


def predicted_ratio(lr: float, op_norm: float, h: int, d: int) -> float:
    """λmax/λ+ after one step ``W0 − lr·(op_norm · u vᵀ)`` by the BBP formula (1 below the threshold)."""
    from htsweep.analysis.marchenko_pastur import bbp_outlier, mp_edges

    n, m = max(h, d), min(h, d)
    q = n / m
    return bbp_outlier(lr * op_norm / math.sqrt(n), q) / mp_edges(1.0, q)[1]


# --------------------------------------------------------------------------- 2./3. final values over a grid
def final_table(records: Iterable[TrialRecord], param: str, keys: Sequence[str]) -> pd.DataFrame:
    """One row per record: ``param`` and the last measured value of each key, sorted by ``param``.

    ``keys`` are logged metric names (``stable_rank/fc1``, ``test_acc`` ...); ``ratio/<layer>``
    gives λmax/λ+ and ``phase/<layer>`` the phase name.
    """
    out = []
    for r in records:
        row: dict[str, Any] = {param: r.params[param]}
        for key in keys:
            head, _, layer = key.partition("/")
            row[key] = ratio(r, layer) if head == "ratio" else _phase(r, layer) if head == "phase" else r.last(key)
        out.append(row)
    return pd.DataFrame(out).sort_values(param, ignore_index=True)


def log_frobenius(record: TrialRecord, layer: str, step: int | None = None) -> float:
    """log10 ‖W‖²_F = log10(N Σλ) of ``layer`` at ``step`` (default: last), from its ESD."""
    total = float(np.clip(record.esd(layer, step), 0.0, None).sum()) * int(record.layers[layer]["n"])
    return math.log10(total) if total > 0 else -math.inf


# --------------------------------------------------------------------------- 4. phases over training time
def timeline(record: TrialRecord, layers: Sequence[str], key: str = "ratio") -> pd.DataFrame:
    """Steps × layers table of ``key`` (``ratio`` = λmax/λ+, or a logged per-layer metric name)."""
    data = {}
    for layer in layers:
        if key == "ratio":
            soft = record.series(f"mp_soft_rank/{layer}")
            data[layer] = 1.0 / soft
        else:
            data[layer] = record.series(f"{key}/{layer}")
    return pd.DataFrame(data)


def departure_step(record: TrialRecord, layer: str, threshold: float = 1.5) -> float:
    """The first monitoring step at which λmax/λ+ of ``layer`` reaches ``threshold`` (inf if never)."""
    series = 1.0 / record.series(f"mp_soft_rank/{layer}")
    hit = series[series >= threshold]
    return float(hit.index[0]) if len(hit) else math.inf


# --------------------------------------------------------------------------- 5. linear-width spectra
def bulk_ks(record: TrialRecord, layer: str) -> float:
    """Two-sample KS distance between the ESD at the first and at the last monitoring step."""
    steps = record.steps
    return float(stats.ks_2samp(record.esd(layer, steps[0]), record.esd(layer, steps[-1])).statistic)
