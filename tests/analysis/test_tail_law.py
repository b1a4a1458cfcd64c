"""Tests for analysis.tail_law against the powerlaw package (with our xmin)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from htsweep.analysis.tail_law import (
    ALTERNATIVES,
    VERDICTS,
    _log_upper_gamma,
    _ratio,
    compare_laws,
    loglikelihoods,
)


def _tail(kind: str, rng: np.random.Generator, n: int = 400) -> np.ndarray:
    if kind == "power_law":
        return (1.0 - rng.random(n)) ** (-1.0 / rng.uniform(0.8, 2.0))
    if kind == "truncated_power_law":  # Pareto thinned by e^(-λx)
        x = (1.0 - rng.random(20 * n)) ** (-1.0 / rng.uniform(0.3, 1.0))
        return x[rng.random(x.size) < np.exp(-rng.uniform(0.02, 0.1) * x)][:n]
    if kind == "lognormal":
        return np.exp(rng.normal(rng.uniform(0.0, 1.0), rng.uniform(0.6, 1.2), n))
    return 1.0 + rng.exponential(rng.uniform(0.5, 3.0), n)


def _powerlaw_fit(x: np.ndarray, xmin: float):
    import powerlaw

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        fit = powerlaw.Fit(x, xmin=xmin, parameter_ranges={"alpha": [1, 20]}, verbose=0)
        compared = {alt: fit.distribution_compare("power_law", alt) for alt in ALTERNATIVES}
    params = {law: tuple(getattr(fit, law).parameters.values()) for law in ("power_law", *ALTERNATIVES)}
    return fit, compared, params


def _powerlaw_compare_at(fit, params: dict[str, tuple[float, ...]]) -> dict[str, tuple[float, float]]:
    """powerlaw's distribution_compare with every law's parameters set to ``params``.

    powerlaw's parameter ranges are open intervals (α ∈ (1, 20)) and it answers a likelihood of
    ~1e-307 at their ends, where our bounded MLE may stop (α = 1 exactly: the truncated power law
    of a lognormal tail); the ranges are lifted so that its formulas are evaluated there too."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for law, values in params.items():
            dist = getattr(fit, law)
            dist.parameter_ranges = {name: [None, None] for name in dist.parameter_names}
            dist.set_parameters(list(values))
        return {alt: fit.distribution_compare("power_law", alt) for alt in ALTERNATIVES}


def _check_against_powerlaw(kind: str, seed: int) -> None:
    """The comparison, stated precisely: (1) compare_laws' R and p equal powerlaw's
    ``distribution_compare`` at compare_laws' parameters, and (2) ours computed at powerlaw's fitted
    parameters equal its ``distribution_compare`` output, both within 1e-6 relative; (3) the two
    sets of fits differ (powerlaw's Nelder–Mead stops at tol 1e-4, ours at the MLE): ours are at
    least as likely, so our R (power law − alternative) is at most powerlaw's."""
    rng = np.random.default_rng(seed)
    x = _tail(kind, rng)
    xmin = float(np.quantile(x, 0.2))
    tail = np.sort(x[x >= xmin])
    fit, compared, params = _powerlaw_fit(x, xmin)
    ll_pl = loglikelihoods(tail, xmin, "power_law", params["power_law"])
    # the lognormal of a pure power law has no interior optimum (μ → −∞, σ → ∞): both optimizers stop
    # anywhere, and at μ ≈ −900 powerlaw's float64 pdf underflows, so that pair is not compared
    alts = [a for a in ALTERNATIVES if not (kind == "power_law" and a == "lognormal")]
    for alt in alts:  # (2)
        R, p = _ratio(ll_pl, loglikelihoods(tail, xmin, alt, params[alt]), nested=alt == "truncated_power_law")
        R_ref, p_ref = compared[alt]
        assert R == pytest.approx(R_ref, rel=1e-6, abs=1e-9), (kind, seed, alt)
        assert p == pytest.approx(p_ref, rel=1e-6, abs=1e-12), (kind, seed, alt)  # ref: 1 - cdf, 0 below 1e-16
    law = compare_laws(x, xmin=xmin)
    assert law.n_tail == tail.size and law.verdict in VERDICTS
    assert law.params["power_law"][0] == pytest.approx(params["power_law"][0], rel=1e-9)
    at_ours = _powerlaw_compare_at(fit, law.params)
    for alt in alts:  # (1)
        assert law.R[alt] == pytest.approx(at_ours[alt][0], rel=1e-6, abs=1e-9), (kind, seed, alt)
        assert law.p[alt] == pytest.approx(at_ours[alt][1], rel=1e-6, abs=1e-12), (kind, seed, alt)
    for alt in alts:  # (3)
        ours = float(np.sum(loglikelihoods(tail, xmin, alt, law.params[alt])))
        theirs = float(np.sum(loglikelihoods(tail, xmin, alt, params[alt])))
        assert ours >= theirs - 1e-7 * abs(theirs), (kind, seed, alt)
        assert law.R[alt] <= compared[alt][0] + 1e-7 * max(1.0, abs(compared[alt][0]))


KINDS = ("power_law", "truncated_power_law", "lognormal", "exponential")


@pytest.mark.parametrize("kind", KINDS)
def test_matches_powerlaw_on_a_tail(kind):
    _check_against_powerlaw(kind, 0)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_matches_powerlaw_on_twenty_tails_of_each_kind(kind):
    for seed in range(100, 120):
        _check_against_powerlaw(kind, seed)


def test_log_upper_gamma_matches_mpmath():
    """The truncated power law's normaliser ln Γ(s, z), s = 1 − α ∈ [−19, 0], against mpmath at 40
    digits (at its default 15 mpmath itself is off by 1e-5 at s = −19, z ≈ 76), integer and
    near-integer s and both sides of the series / continued-fraction switch at z = 1 included."""
    import mpmath

    near = [k + e for k in range(0, -20, -3) for e in (0.0, 1e-12, -1e-9, 1e-4, -9.99e-4, 1.001e-3, -0.5)]
    ss = sorted({min(0.0, s) for s in [*np.linspace(-19.0, 0.0, 39), *near]})
    zs = [*np.logspace(-14, 4, 37), 0.999999, 1.0, 1.000001]
    worst = 0.0
    with mpmath.workdps(40):
        for s in ss:
            for z in zs:
                ref = float(mpmath.log(mpmath.gammainc(mpmath.mpf(float(s)), mpmath.mpf(float(z)))))
                worst = max(worst, abs(_log_upper_gamma(float(s), float(z)) - ref) / max(1.0, abs(ref)))
    assert worst < 1e-12
    with pytest.raises(ValueError, match="s <= 0 and z > 0"):
        _log_upper_gamma(0.5, 1.0)


def test_verdicts_on_clear_cases():
    rng = np.random.default_rng(7)
    pareto = (1.0 - rng.random(2000)) ** (-1.0 / 1.5)
    assert compare_laws(pareto, xmin=1.0).verdict == "power_law"
    logn = np.exp(rng.normal(0.0, 0.8, 2000))
    assert compare_laws(logn, xmin=float(np.quantile(logn, 0.3))).verdict == "lognormal"
    expo = 1.0 + rng.exponential(1.0, 2000)
    law = compare_laws(expo, xmin=1.0)
    assert law.R["exponential"] < 0 and law.p["exponential"] < 1e-6 and law.verdict != "power_law"
    assert law.tpl_lambda > 0.5


def test_row_keys_of_analyze_matrix_and_the_cli(tmp_path):
    from htsweep.analysis import analyze_matrix
    from htsweep.analysis.metric_names import ROW_KEYS, TAIL_LAW_KEYS
    from htsweep.sweeps.analyze_cmd import run_analyze

    W = np.random.default_rng(3).standard_t(2.0, size=(300, 150))
    row = analyze_matrix(W, device="cpu", tail_law=True)
    assert tuple(row) == (*ROW_KEYS, *TAIL_LAW_KEYS)
    law = compare_laws(row["eigs"] if "eigs" in row else _esd(W), xmin=row["xmin"], alpha=row["alpha"])
    assert row["tail_law"] == law.verdict and row["R_lognormal"] == law.R["lognormal"]
    assert row["tpl_lambda"] == law.tpl_lambda
    small = analyze_matrix(W[:, :10], device="cpu", tail_law=True)  # no fit: empty verdict, NaNs
    assert small["tail_law"] == "" and math.isnan(small["R_exponential"])
    np.save(tmp_path / "w.npy", W)
    (cli_row,) = run_analyze(tmp_path / "w.npy", json_out=True, tail_law=True)
    assert cli_row["tail_law"] == row["tail_law"]


def test_monitor_rows_and_mlflow_tags_carry_the_verdict():
    import torch

    from htsweep.services.tracking import spectral_tags
    from htsweep.trainers.monitor import SpectralMonitor

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(200, 100), torch.nn.Linear(100, 10))
    snap = SpectralMonitor(tail_law=True).analyze(model, 3)
    rows = {r["name"]: r for r in snap.rows}
    law = compare_laws(rows["0"]["eigs"], xmin=rows["0"]["xmin"], alpha=rows["0"]["alpha"])
    assert rows["0"]["tail_law"] == law.verdict and rows["0"]["p_exponential"] == law.p["exponential"]
    assert rows["1"]["tail_law"] == ""  # 10 columns: no fit
    tags = spectral_tags(snap.rows, 3)
    assert tags["tail_law.0"] == law.verdict and "tail_law.1" not in tags


def _esd(W: np.ndarray) -> np.ndarray:
    from htsweep.analysis.spectrum import esd

    e = esd(W, device="cpu", precision="float32")
    return e[e > e.size * np.finfo(np.float32).eps * e[-1]]


def test_bad_input_is_a_one_line_error():
    with pytest.raises(ValueError, match="at least 2 distinct values"):
        compare_laws([1.0, 1.0, 1.0], xmin=0.5)
    with pytest.raises(ValueError, match="xmin"):
        compare_laws([1.0, 2.0], xmin=-1.0)
    with pytest.raises(ValueError, match="unknown law"):
        loglikelihoods(np.ones(3), 1.0, "cauchy", ())
    assert math.isfinite(compare_laws([1.0, 2.0, 3.0], xmin=1.0).R["exponential"])
