"""The typed result of analysing one layer, and its one conversion to the documented metrics row.

:class:`LayerAnalysis` keeps what :func:`analysis.analyze.analyze_spectrum` computed for one
layer — identity, the power-law and Marchenko–Pastur fits, the phase and the eigenvalue metrics —
as typed fields. :meth:`LayerAnalysis.to_row` flattens it into the metrics-row dict of
``docs/interfaces.md``: the form that crosses process and storage boundaries (Ray, the DataFrame,
MLflow, JSON), so that dict's keys and values are exactly what they were before this type existed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from htsweep.analysis.marchenko_pastur import MPFit
from htsweep.analysis.metric_names import RowKey
from htsweep.analysis.phases import PhaseResult
from htsweep.analysis.powerlaw_fit import PowerLawFit

__all__ = ["LayerAnalysis"]


@dataclass(frozen=True)
class LayerAnalysis:
    """One layer's spectral analysis.

    Attributes
    ----------
    name, kind : str
        Layer name and kind (``analysis.layers.KINDS``; ``""`` for bare eigenvalues).
    n, m : int
        Shape after orienting so that N ≥ M.
    pl : PowerLawFit
        Power-law fit of the tail (failed, with NaNs, for fewer than ``MIN_FIT_EIGS`` eigenvalues).
    alpha_hill : float
        PL_Alpha_Hill (:func:`analysis.powerlaw_fit.pl_alpha_hill`); NaN when too small.
    mp : MPFit
        Marchenko–Pastur fit of the bulk.
    phase : PhaseResult
        The classifier's phase, confidence and evidence.
    lambda_max, stable_rank, matrix_entropy, effective_rank, log_frobenius_norm, \
log_spectral_norm, alpha_weighted, log_alpha_norm : float
        Eigenvalue metrics (:func:`analysis.metrics.spectral_metrics`; norms on the ν² = N·λ scale).
    numerical_rank : int
        Eigenvalues above the round-off floor of ``precision``.
    warning : str
        Why a fit was impossible, ``""`` when all is well.
    precision : str
        ``"float32"`` or ``"float64"``: what the ESD was computed in.
    farms : mapping
        ``FARMS_KEYS`` → value (:mod:`analysis.farms`), when asked for (else empty).
    tail_law : mapping
        ``TAIL_LAW_KEYS`` → value (:mod:`analysis.tail_law`), when asked for (else empty).
    localization : mapping
        ``LOCALIZATION_KEYS`` → value, when asked for (else empty).
    traps : mapping
        ``TRAP_KEYS`` → value, when asked for (else empty).
    eigs : ndarray of shape (m,) or None
        The ascending eigenvalues, when kept (not compared, not shown).
    """

    name: str
    kind: str
    n: int
    m: int
    pl: PowerLawFit
    alpha_hill: float
    mp: MPFit
    phase: PhaseResult
    lambda_max: float
    stable_rank: float
    matrix_entropy: float
    effective_rank: float
    log_frobenius_norm: float
    log_spectral_norm: float
    alpha_weighted: float
    log_alpha_norm: float
    numerical_rank: int
    warning: str = ""
    precision: str = "float64"
    farms: Mapping[str, float] = field(default_factory=dict)
    tail_law: Mapping[str, Any] = field(default_factory=dict)
    localization: Mapping[str, float] = field(default_factory=dict)
    traps: Mapping[str, float] = field(default_factory=dict)
    eigs: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def q(self) -> float:
        """Aspect ratio Q = N / M."""
        return self.n / self.m

    @property
    def alpha(self) -> float:
        """The power-law exponent (``pl.alpha``; NaN when no fit)."""
        return float(self.pl.alpha)

    def to_row(self, *, eigs: bool = False) -> dict[str, Any]:
        """The metrics row: keys ``ROW_KEYS`` in order, then FARMS, tail-law, localization and trap keys if any.

        Parameters
        ----------
        eigs : bool, default=False
            Also carry ``"eigs"`` (last), as the rows of ``analyze_layers`` do.
        """
        pl, mp = self.pl, self.mp
        row: dict[str, Any] = {
            RowKey.NAME: self.name,
            RowKey.KIND: self.kind,
            RowKey.N: int(self.n),
            RowKey.M: int(self.m),
            RowKey.Q: float(self.q),
            RowKey.LAMBDA_MAX: self.lambda_max,
            RowKey.ALPHA: float(pl.alpha),
            RowKey.ALPHA_HILL: float(self.alpha_hill),
            RowKey.D: float(pl.D),
            RowKey.XMIN: float(pl.xmin),
            RowKey.XMAX: float(pl.xmax),
            RowKey.N_TAIL: int(pl.n_tail),
            RowKey.ALPHA_SIGMA: float(pl.sigma),
            RowKey.SIGMA2: float(mp.sigma2),
            RowKey.LAMBDA_PLUS: float(mp.lambda_plus),
            RowKey.N_SPIKES: int(mp.n_spikes),
            RowKey.MP_SOFT_RANK: float(mp.soft_rank),
            RowKey.MP_KS: float(mp.ks_bulk),
            RowKey.STABLE_RANK: self.stable_rank,
            RowKey.MATRIX_ENTROPY: self.matrix_entropy,
            RowKey.EFFECTIVE_RANK: self.effective_rank,
            RowKey.LOG_FROBENIUS_NORM: self.log_frobenius_norm,
            RowKey.LOG_SPECTRAL_NORM: self.log_spectral_norm,
            RowKey.ALPHA_WEIGHTED: self.alpha_weighted,
            RowKey.LOG_ALPHA_NORM: self.log_alpha_norm,
            RowKey.NUMERICAL_RANK: int(self.numerical_rank),
            RowKey.PHASE: str(self.phase.phase),
            RowKey.PHASE_CONFIDENCE: float(self.phase.confidence),
            RowKey.WARNING: self.warning,
            RowKey.PRECISION: self.precision,
            **self.farms,
            **self.tail_law,
            **self.localization,
            **self.traps,
        }
        if eigs:
            row[RowKey.EIGS] = self.eigs
        return row

    def __repr__(self) -> str:
        rows = [
            ("name", repr(self.name)),
            ("kind", self.kind),
            ("shape", f"{self.n}×{self.m}"),
            ("alpha", f"{self.pl.alpha:.4g}"),
            ("alpha_hill", f"{self.alpha_hill:.4g}"),
            ("n_spikes", str(self.mp.n_spikes)),
            ("lambda_plus", f"{self.mp.lambda_plus:.4g}"),
            ("phase", self.phase.phase),
            ("confidence", f"{self.phase.confidence:.3f}"),
            ("warning", repr(self.warning)),
            ("precision", self.precision),
        ]
        width = max(len(k) for k, _ in rows)
        return "LayerAnalysis(\n" + "\n".join(f"  {k.rjust(width)}: {v}" for k, v in rows) + "\n)"
