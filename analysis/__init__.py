"""Spectral analysis of weight matrices: ESDs, power-law and Marchenko–Pastur fits, metrics, phases.

Pure numerics (numpy, scipy, torch, powerlaw); never imports ray or mlflow, so it works on any
torch model or matrix on its own.

Examples
--------
>>> import numpy as np
>>> from htsweep import analysis
>>> W = np.random.default_rng(0).standard_normal((300, 100))
>>> analysis.esd(W, device="cpu").shape
(100,)
"""

from htsweep.analysis import synthetic
from htsweep.analysis.aggregate import is_spectral_key, model_phase, spectral_aggregates
from htsweep.analysis.analyze import (
    analyze_eigs,
    analyze_layers,
    analyze_matrix,
    analyze_model,
    analyze_spectrum,
)
from htsweep.analysis.checkpoints import open_checkpoint
from htsweep.analysis.layer_analysis import LayerAnalysis
from htsweep.analysis.layers import LayerMatrix, extract_layers, load_matrices, plan_layers
from htsweep.analysis.marchenko_pastur import (
    MPFit,
    fit_marchenko_pastur,
    mp_density,
    mp_edges,
    shuffle_baseline,
)
from htsweep.analysis.phases import PHASE_CODES, PHASES, PhaseResult, classify_phase
from htsweep.analysis.powerlaw_fit import (
    PowerLawFit,
    compare_tails,
    fit_power_law,
    hill_estimator,
    pl_alpha_hill,
)
from htsweep.analysis.spectrum import esd, esd_batch

__all__ = [
    "PHASES",
    "PHASE_CODES",
    "LayerAnalysis",
    "LayerMatrix",
    "MPFit",
    "PhaseResult",
    "PowerLawFit",
    "analyze_eigs",
    "analyze_layers",
    "analyze_matrix",
    "analyze_model",
    "analyze_spectrum",
    "classify_phase",
    "compare_tails",
    "esd",
    "esd_batch",
    "extract_layers",
    "fit_marchenko_pastur",
    "fit_power_law",
    "hill_estimator",
    "is_spectral_key",
    "load_matrices",
    "model_phase",
    "mp_density",
    "mp_edges",
    "open_checkpoint",
    "pl_alpha_hill",
    "plan_layers",
    "shuffle_baseline",
    "spectral_aggregates",
    "synthetic",
]
