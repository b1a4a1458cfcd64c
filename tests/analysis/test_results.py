"""The fit, classification and layer results: frozen dataclasses whose repr is one aligned block."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from htsweep.analysis.analyze import analyze_spectrum
from htsweep.analysis.layer_analysis import LayerAnalysis
from htsweep.analysis.marchenko_pastur import MPFit, fit_marchenko_pastur
from htsweep.analysis.phases import PhaseResult, classify_phase
from htsweep.analysis.powerlaw_fit import PowerLawFit, fit_power_law
from htsweep.analysis.synthetic import make


def _power_law_fit() -> PowerLawFit:
    tail = (1.0 - np.random.default_rng(0).random(500)) ** (-1.0 / 1.5)  # Pareto, alpha = 2.5
    return fit_power_law(tail)


def _mp_fit() -> MPFit:
    W = np.random.default_rng(0).standard_normal((300, 100))
    return fit_marchenko_pastur(np.linalg.eigvalsh(W.T @ W / 300), q=3.0)


def _phase_result() -> PhaseResult:
    return classify_phase(make("bulk_decay", 800, 400, seed=8))


def _layer_analysis() -> LayerAnalysis:
    W = make("heavy_tailed", 400, 200, seed=2)
    return analyze_spectrum(np.linalg.eigvalsh(W.T @ W / 400), n=400, m=200, name="fc: 1", kind="linear")


# (build, class, field to try to overwrite, keys the repr must show in this order)
CASES = [
    (_power_law_fit, PowerLawFit, "alpha", ("alpha", "sigma", "xmin", "xmax", "D", "n_tail", "success", "message")),
    (_mp_fit, MPFit, "sigma2", ("sigma2", "q", "lambda_minus", "lambda_plus", "tw_margin", "n_spikes",
                                "soft_rank", "ks_bulk", "success", "message")),
    (_phase_result, PhaseResult, "phase", ("phase", "confidence")),
    (_layer_analysis, LayerAnalysis, "pl", ("name", "kind", "shape", "alpha", "alpha_hill", "n_spikes", "lambda_plus",
                                            "phase", "confidence", "warning", "precision")),
]


@pytest.mark.parametrize(("build", "cls", "attr", "keys"), CASES, ids=[c[1].__name__ for c in CASES])
def test_result_is_frozen_and_its_repr_is_aligned(build, cls, attr, keys):
    result = build()
    assert type(result) is cls and dataclasses.is_dataclass(result)
    before = getattr(result, attr)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(result, attr, before)
    text = repr(result)
    assert text.startswith(f"{cls.__name__}(\n") and text.endswith("\n)")
    lines = text.splitlines()[1:-1]
    assert len({line.index(":") for line in lines}) == 1, text  # one column of colons
    shown = [line.split(":", 1)[0].strip() for line in lines]
    assert shown[:len(keys)] == list(keys), shown
    if cls is PhaseResult:  # the classifier's evidence follows, the rule last but for a warning
        assert "rule" in shown and shown[-1] in ("rule", "warning")
