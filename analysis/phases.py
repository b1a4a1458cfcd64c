"""The 5+1 phases of training: an explainable classifier that follows the random-matrix physics.

Martin & Mahoney [1]_ (Table 7, Sec. 5) name six shapes of a layer's ESD — RANDOM-LIKE,
BLEEDING-OUT, BULK+SPIKES, BULK-DECAY, HEAVY-TAILED and RANK-COLLAPSE — but label them by eye. This
module turns their operational definitions into a short decision procedure over scale-free
features of the eigenvalues (ratios to a fitted bulk edge, fractions of M, exponents), so one set
of thresholds serves every size, aspect ratio and overall scale. It needs the eigenvalues only
(the monitor / Ray-actor path); a matrix is accepted for convenience.

The physics each step rests on
    * **Noise has a sharp square-root edge.** iid noise gives the Marchenko–Pastur (MP) law, whose
      largest eigenvalue sits within Tracy–Widom (TW) fluctuations, ``O(M^(-2/3))``, of ``λ+``.
      Noise that is not iid — rows or columns of unequal scale, correlated columns, any standard
      initializer — is a *deformed* MP law: still a square-root edge with TW fluctuations, only
      further out. So besides the robust MP fit (``σ²``, ``λ+``) the classifier fits the edge ``E``
      to the top half of the spectrum itself (an affine map of the MP(1, Q) quantiles,
      ``λ ≈ a + s·u_Q(p)`` over levels 0.5–0.95), and tolerates it up to ``E_max``, the edge of
      the moment-matched MP law of a noise whose population covariance has relative variance
      ``deform_max``: ``E_max = σ²(1 + √(1/Q + deform_max))²``. Nothing beyond ``E`` by more than
      4 TW units (and ``edge_tol``·E) means no learned structure.
    * **Spikes are separated.** A rank-k signal gives k outliers (BBP) with a gap below them; a
      decaying bulk or a heavy tail is a graded mass that runs continuously from the edge up. The
      outliers over ``λ+`` are *detached* when the lowest one sits ``1 + detach_min`` times above
      the bulk top or far apart compared with the spacings among the lowest outliers; otherwise
      they are *attached*, and the largest of the normalized log-spacings ``j·ln(λ_(j)/λ_(j+1))``
      among the top few (iid in a continuous tail, Rényi) splits off separated far spikes when it
      is ``gap_factor`` times their median.
    * **Bulk decay and heavy tails move a mass out of the bulk, and it reaches beyond what
      deformation explains.** An attached mass of at least ``max(mass_min, mass_frac · M)``
      eigenvalues is a decaying bulk or a heavy tail when it reaches ``reach_min · E_max``, or
      when it passes ``E_max`` and lifts the top half of the spectrum with it: the edge fitted to
      the top half then overshoots ``E_max`` (``edge_pull >= pull_min``), which no tolerated
      deformation does — a graded mass is convex above the bulk (MM Table 7: "edge above λ+ is
      not concave"), deformed noise keeps its concave square-root edge. A mass whose CSN power-law
      exponent is ``>= decay_alpha_max`` is that sharp edge, not a tail. Anything else is
      bleeding-out (or spikes, if the largest outlier is far).
    * **Heavy-tailed means no scale** ([1]_ Table 7: "no good λ+, λmax ≫ λ+"). Of those,
      ``heavy_tailed`` needs a shallow tail — density exponent of the attached mass (Theil–Sen
      rank–size slope over its top half, robust to a few stray points) below ``tail_alpha_max``,
      the paper's α ≈ 2–4, and the CSN α below ``csn_alpha_max`` — and a mass whose top reaches
      ``heavy_ratio_min · λ+`` (a small MP soft rank; separated spikes above the mass do not
      count); otherwise ``bulk_decay`` (α ≳ 4, a bulk that still fits, possibly some far spikes).
    * **Rank collapse** is a separated mass of (near-)zero eigenvalues. A matrix with no spectrum
      to speak of (all zero, constant, rank ≤ 1, fewer than ``min_m`` eigenvalues) is
      ``undetermined`` — not a phase, with the reason in ``evidence["warning"]``. A point-mass ESD
      (all eigenvalues equal: orthogonal, identity or Dirac init) carries no learned structure and
      is ``random_like`` with a warning.

Decision procedure (thresholds are the :class:`PhaseClassifier` parameters)
    0. ``M < min_m``, ``λmax <= 0``, or at most one eigenvalue above ``rank_tol · λmax`` →
       ``undetermined``. An ESD narrower than ``point_mass_tol`` of the MP width → ``random_like``
       (warning); so is a point mass over exact zeros (a Dirac conv kernel reshaped to
       ``(out, in·k·k)``: rank-deficient by construction, not collapsed by training).
    1. ``zero_frac >= zero_frac_min`` and ``zero_gap_decades >= zero_gap_min`` (at least
       ``max(3, 5 %·M)`` eigenvalues above the gap), or a gap of ``deep_gap_min`` decades with any
       number above it → ``rank_collapse``.
    2. No eigenvalue beyond ``E`` + margin → ``random_like``.
    3. An attached mass of ≥ ``max(mass_min, mass_frac · M)`` outliers reaching
       ``reach_min · E_max`` (or past ``E_max`` with ``edge_pull >= pull_min``), whose CSN α is
       below ``decay_alpha_max`` → *tail split*: ``heavy_tailed`` if its exponent is
       ``< tail_alpha_max``, the CSN α ``< csn_alpha_max`` and its top ``>= heavy_ratio_min · λ+``,
       else ``bulk_decay``.
    4. Otherwise the outliers are spikes: ``bulk_plus_spikes`` if ``λmax/E >= spike_ratio_min``
       (well above the edge) and deformed noise does not explain the ESD and its top, else
       ``bleeding_out`` (just past it).

Model comparison (issue 23; :mod:`analysis.rmt_references`)
    Past the bulk stage every spectrum is also fitted as a whole by three competing random-matrix
    models, each scored by ``D``, the mean absolute residual between its log-quantiles and the
    ESD's over levels 0.02–0.98 after the best offset (an L1 Wasserstein distance of the
    log-ESDs, overall scale fitted): **MP bulk + mass** (MP(σ², Q) quantiles for the bulk's share
    of the levels, a Pareto mass with MLE exponent above λ+; score ``ln D + mass_penalty·(f −
    mass_free)`` with ``f`` the fraction above λ+, and admissible only while ``f <= mass_max`` and
    ``D <= good_fit_max``: a good λ+ holding most of the mass), **heavy-tailed RMT** (the best of
    the cached iid-Pareto(μ) and power-law-population references at the layer's Q; score ``ln D``)
    and **deformed noise** (the best log-normal reference, scales s ≤ 0.3 on the M columns or on
    the N rows; score ``ln D + deform_penalty``; admissible only with ``D <= good_fit_max`` and a
    top that the reference predicts: the layer's ``ln λmax`` at most ``noise_top_tol`` above the
    reference's, simulated at the layer's M — Table 7's random-like is MP "with appropriate λ+"
    and a sharp ``λmax ≈ λ+``). The references are moved from the nearest grid Q to the layer's Q
    by the exact MP log-quantile shift. ``evidence["fits"]`` holds each model's ``D``, reference
    and score, ``evidence["model_vote"]`` the best admissible model and
    ``evidence["model_vote_confidence"]`` its softmax weight ``exp(-S/T)/Σ exp(-S/T)`` at
    ``T = score_temperature``. Deformed noise wins when it fits about as well as heavy-tailed RMT
    (``D`` within ``noise_tie``) and better than an *admissible* MP bulk + mass (score); an
    inadmissible one (no good λ+) cannot block it. Below M = 256 its ``good_fit_max`` grows by
    ``√(256/M)`` (the quantiles of fewer eigenvalues scatter more than the references'). The vote decides (``compare_models=True``, the default since v4; v5 today): deformed
    noise → ``random_like`` wherever the rules found a decaying mass or spikes well above the edge
    (noise whose top the reference predicts has neither); ``heavy_tailed`` additionally needs
    heavy-tailed RMT to beat an admissible MP bulk + mass, else ``bulk_decay``.
    ``compare_models=False`` gives v3's labels (rules only; the fits stay evidence).

Confidence starts from the *margin*: the smallest, over the decisions taken, of ``1 - ½·exp(-2 d)``,
where ``d`` is the log-distance of the deciding feature to its threshold in units of that
threshold's tolerance (0.5 on a boundary, → 1 far from every boundary; the model vote's softmax
weight for the decisions it takes), shrunk toward 0.5 by ``√(M/256)`` below M = 256 (features of
few eigenvalues are noisy); ``evidence["margin_confidence"]``. The stated confidence is that margin
through a Platt map, ``σ(conf_slope · logit(c) + conf_offset)``, fitted by log-loss to how often
labels at each margin were right on the benchmark suites read while designing the classifier
(``benchmarks/bench_phases.py --fit-calibration``): a label on a boundary is still right more often
than not, so the raw margin understated it (stated 0.53 → right 87 %, 0.85 → 99 %). Matrices with
``min(N, M) < 32`` keep their label but their confidence is capped at 0.3 and
``evidence["warning"]`` says why; ``undetermined`` has confidence 0.

References
----------
.. [1] Martin & Mahoney, "Implicit Self-Regularization in Deep Neural Networks" (2018), Sec. 3, 5,
       6.3 and Table 7 (``shared/papers/implicit-self-regularization.txt``).

Examples
--------
>>> from htsweep.analysis.synthetic import make
>>> from htsweep.analysis.phases import classify_phase
>>> classify_phase(make("random_like", 600, 300, seed=1)).phase
'random_like'
>>> classify_phase(make("bulk_plus_spikes", 600, 300, seed=1, k=3, ratio=6.0)).phase
'bulk_plus_spikes'
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from htsweep.analysis._validation import Interval, make_constraint
from htsweep.analysis.marchenko_pastur import MPFit, _edges, _tw, _unit_quantile, fit_marchenko_pastur
from htsweep.analysis.powerlaw_fit import PowerLawFit, fit_power_law
from htsweep.analysis.rmt_references import LEVELS, reference_log_quantiles

__all__ = ["CLASSIFIER_VERSION", "PHASES", "PHASE_CODES", "UNDETERMINED", "UNDETERMINED_CODE", "PhaseClassifier",
           "PhaseResult", "classify_phase"]

#: The default classifier's version (v4: v3's rules with the tail split decided by the whole-ESD
#: model comparison; v5: row- and column-side deformed noise, which also overrules spikes it explains,
#: a decisive comparison over the tail exponent, and a calibrated confidence); MLflow runs carry it
#: as the ``phase_classifier`` tag next to the labels.
CLASSIFIER_VERSION = "v5"

#: The 5+1 phases, in the order of increasing self-regularization (then rank collapse).
PHASES: tuple[str, ...] = (
    "random_like",
    "bleeding_out",
    "bulk_plus_spikes",
    "bulk_decay",
    "heavy_tailed",
    "rank_collapse",
)
#: Phase name → integer code 0..5 (the order of :data:`PHASES`), for numeric logging.
PHASE_CODES: dict[str, int] = {name: i for i, name in enumerate(PHASES)}
#: The result for a matrix with no spectrum to classify (not a phase; it does not vote).
UNDETERMINED = "undetermined"
#: Its numeric code in logged metrics (``phase_code``).
UNDETERMINED_CODE = -1

SMALL_DIM = 32
_SMALL_CONF = 0.3
_FULL_CONF_M = 256  # below this many eigenvalues the confidence is shrunk toward 0.5
_EDGE_WINDOW = (0.5, 0.95)  # quantile levels of the deformation-tolerant edge fit
_TW_K = 4.0  # outliers lie 4 TW units beyond the fitted edge (P(TW1 > 4) ≈ 1e-4)


def _t(default: Any, constraint: Interval, tol: float | None, doc: str) -> Any:
    """A threshold: default, allowed range, confidence tolerance (a factor), meaning."""
    return field(default=default, metadata={"constraint": constraint, "tol": tol, "doc": doc})


@dataclass(frozen=True, repr=False)
class PhaseResult:
    """Result of :func:`classify_phase`.

    Attributes
    ----------
    phase : str
        One of :data:`PHASES`, or :data:`UNDETERMINED` (``"undetermined"``).
    confidence : float
        In [0, 1]; 0.5 means a feature sits on a decision threshold (0 for ``undetermined``).
    evidence : dict
        The features, the thresholds they were compared with (``evidence["thresholds"]``), the
        path of decisions (``evidence["rule"]``) and ``evidence["warning"]`` ("" when none).
    """

    phase: str
    confidence: float
    evidence: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def code(self) -> int:
        """Integer code of the phase (:data:`PHASE_CODES`; :data:`UNDETERMINED_CODE` = -1)."""
        return PHASE_CODES.get(self.phase, UNDETERMINED_CODE)

    def __repr__(self) -> str:
        keys = ("n_outliers", "n_attached", "spike_ratio", "edge_ratio", "attached_reach", "tail_alpha", "alpha",
                "zero_frac")
        rows = [("phase", self.phase), ("confidence", f"{self.confidence:.3f}")]
        for k in keys:
            v = self.evidence.get(k)
            if v is not None:
                rows.append((k, f"{v:.4g}" if isinstance(v, float) else str(v)))
        rows.append(("rule", repr(self.evidence.get("rule", ""))))
        if self.evidence.get("warning"):
            rows.append(("warning", repr(self.evidence["warning"])))
        width = max(len(k) for k, _ in rows)
        return "PhaseResult(\n" + "\n".join(f"  {k.rjust(width)}: {v}" for k, v in rows) + "\n)"


_F = Interval(float, 0.0, None, "neither")


@dataclass(eq=False)
class PhaseClassifier:
    """Rule-based 5+1 phase classifier (sklearn-style; :func:`classify_phase` is the usual entry).

    Every parameter is a threshold of the decision procedure (module docstring); the dataclass
    fields are the one table of names, defaults, allowed ranges and confidence tolerances
    (``dataclasses.fields(PhaseClassifier)``, metadata ``constraint``/``tol``/``doc``).

    Parameters
    ----------
{parameters}
    Examples
    --------
    >>> from htsweep.analysis.synthetic import make
    >>> clf = PhaseClassifier(spike_ratio_min=2.5)
    >>> clf.predict([make("bleeding_out", 512, 256, seed=0, k=3)])
    ['bleeding_out']
    """

    min_m: int = _t(16, Interval(int, 4, None), None,
                    "Fewer eigenvalues than this: ``undetermined`` (too small to classify).")
    rank_tol: float = _t(1e-10, Interval(float, 0.0, 1.0, "neither"), None,
                         "Eigenvalues at or below ``rank_tol · λmax`` are numerical zeros for the rank ≤ 1 test "
                         "(raised to eps² for float16/bfloat16 weights).")
    point_mass_tol: float = _t(0.05, Interval(float, 0.0, 1.0, "neither"), 2.0,
                               "An ESD narrower than this fraction of the iid MP width is a point mass.")
    zero_frac_min: float = _t(0.1, Interval(float, 0.0, 1.0, "neither"), 1.5,
                              "Rank collapse: smallest fraction of (near-)zero eigenvalues.")
    zero_gap_min: float = _t(1.5, _F, 1.5,
                             "Rank collapse: gap (decades) below at least ``max(3, 5 %·M)`` eigenvalues.")
    deep_gap_min: float = _t(6.0, _F, 1.5, "Rank collapse: a gap this deep (decades) with any number above it.")
    deform_max: float = _t(0.17, Interval(float, 0.0, None), None,
                           "Deformed noise tolerated: the fitted edge may reach ``E_max = σ²(1 + √(1/Q + "
                           "deform_max))²``, the moment-matched MP edge of a population covariance of this "
                           "relative variance; beyond it is structure.")
    edge_tol: float = _t(0.04, Interval(float, 0.0, 1.0), None,
                         "Smallest margin beyond the fitted edge, as a fraction of it (4 TW units when larger).")
    gap_factor: float = _t(3.0, Interval(float, 1.0, None), None,
                           "A normalized log-spacing this many times the median is a gap (bulk to detached "
                           "outliers, or an attached mass to the separated spikes above it).")
    detach_min: float = _t(0.3, _F, None,
                           "Outliers whose lowest sits ``1 + detach_min`` times above the bulk top are detached.")
    mass_min: int = _t(4, Interval(int, 1, None), 1.5, "Smallest attached mass (eigenvalues) of a decay or tail.")
    mass_frac: float = _t(0.02, Interval(float, 0.0, 1.0), 1.5, "... and as a fraction of M.")
    reach_min: float = _t(1.3, Interval(float, 1.0, None), 1.25,
                          "An attached mass reaching ``reach_min · E_max`` is a decaying bulk or heavy tail.")
    pull_min: float = _t(1.1, Interval(float, 0.0, None, "neither"), 1.1,
                         "... so is one past ``E_max`` that lifts the top half of the bulk: fitted edge / "
                         "``E_max`` at least this (deformed noise stays below 1).")
    decay_alpha_max: float = _t(9.0, Interval(float, 1.0, None, "neither"), 1.25,
                                "A mass whose CSN α is this steep or steeper is a sharp (deformed-noise) edge, "
                                "not a decaying tail.")
    tail_alpha_max: float = _t(4.0, Interval(float, 1.0, None, "neither"), 1.5,
                               "Heavy-tailed: the mass's rank-size tail exponent is below this (bound +½ per "
                               "decade of reach, +1 at most) ...")
    heavy_ratio_min: float = _t(2.5, Interval(float, 1.0, None), 1.5,
                                "... the top of the mass reaches this many λ+ (a small MP soft rank) ...")
    csn_alpha_max: float = _t(6.0, Interval(float, 1.0, None, "neither"), 1.25,
                              "... and the CSN power-law α is below this (MM: α ≈ 2–4).")
    compare_models: bool = _t(True, bool, None,
                              "The whole-ESD model comparison decides the tail split (v4, issue 23: deformed "
                              "noise → random_like; heavy_tailed only where heavy-tailed RMT beats an admissible "
                              "MP bulk + mass). False: the v3 labels, with the comparison as evidence only.")
    mass_penalty: float = _t(4.0, _F, None,
                             "Model comparison: the MP + mass model's score ``ln D`` pays this much per unit of "
                             "mass fraction above λ+ beyond ``mass_free`` (Table 7: the bulk of a decaying "
                             "bulk still holds most of the mass).")
    mass_free: float = _t(0.1, Interval(float, 0.0, 1.0), None,
                          "... the fraction of eigenvalues above λ+ that an MP + mass model carries for free.")
    mass_max: float = _t(0.15, Interval(float, 0.0, 1.0), None,
                         "An MP bulk + mass model is admissible only while the bulk holds all but this fraction "
                         "of the eigenvalues (Table 7: most of the mass stays in the bulk).")
    good_fit_max: float = _t(0.075, _F, None,
                             "A good λ+ exists (an MP bulk + mass can beat heavy-tailed RMT) only when that model "
                             "fits the whole ESD to a mean log-quantile residual D at most this.")
    deform_penalty: float = _t(0.5, _F, None,
                               "The deformed-noise model (log-normal row or column scales, cached reference) "
                               "beats an admissible MP + mass model only when its ``ln D`` is lower by this much "
                               "(it must also fit better than heavy-tailed RMT).")
    decisive_min: float = _t(0.95, Interval(float, 0.5, 1.0), None,
                             "Heavy-tailed RMT's softmax weight against an MP bulk + mass from which the "
                             "comparison is decisive: a steep rank-size tail exponent (a noisy statistic of a "
                             "few dozen eigenvalues) no longer vetoes ``heavy_tailed`` (1: it always may).")
    noise_tie: float = _t(1.25, Interval(float, 1.0, None), None,
                          "Deformed noise fits as well as heavy-tailed RMT when its D is at most this many times "
                          "heavy-tailed RMT's (about the seed-to-seed spread of D): the tie goes to the simpler "
                          "model, noise.")
    noise_top_tol: float = _t(0.7, _F, None,
                              "A deformed-noise reference explains the ESD only if the layer's log λmax exceeds "
                              "the reference's (simulated at the layer's M, after the fitted offset) by at most "
                              "this (Table 7: random-like has a sharp λmax ≈ λ+).")
    score_temperature: float = _t(0.25, Interval(float, 0.0, None, "neither"), None,
                                  "Temperature of the softmax over the competing models' penalized scores "
                                  "(the model-comparison confidence).")
    spike_ratio_min: float = _t(2.0, Interval(float, 1.0, None, "neither"), 1.25,
                                "``λmax / E`` from which outliers are well above the edge (``bulk_plus_spikes``).")
    conf_slope: float = _t(1.02, Interval(float, 0.0, None, "neither"), None,
                           "Calibration: slope of the Platt map from the margin confidence's logit to the stated "
                           "confidence's (1 and ``conf_offset`` 0: the raw margin).")
    conf_offset: float = _t(1.422, Interval(float, None, None), None,
                            "Calibration: offset of the Platt map (fitted with ``conf_slope``).")

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters (the thresholds), as a dict."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def set_params(self, **params: Any) -> PhaseClassifier:
        """Set thresholds by name; returns ``self``."""
        names = [f.name for f in dataclasses.fields(self)]
        for k, v in params.items():
            if k not in names:
                raise ValueError(f"PhaseClassifier: unknown parameter {k!r}; valid: {names}")
            setattr(self, k, v)
        return self

    def fit(self, X: Any = None, y: Any = None) -> PhaseClassifier:
        """No calibration is learned (the thresholds are fixed); validates them and returns ``self``."""
        self._check()
        self.classes_ = np.array(PHASES)
        return self

    def _check(self) -> None:
        for name, c in _CONSTRAINTS.items():
            v = getattr(self, name)
            if not c.is_satisfied_by(v):
                kind = TypeError if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                    else ValueError
                raise kind(f"PhaseClassifier: parameter {name!r} must be {c}; got {v!r}")

    def classify(
        self, eigs_or_W: Any, *, q: float | None = None, mp: MPFit | None = None, pl: PowerLawFit | None = None,
        dtype: Any = None,
    ) -> PhaseResult:
        """Classify one matrix or spectrum; see :func:`classify_phase` for the parameters."""
        self._check()
        lam, q, n, m = _spectrum(eigs_or_W, q)
        t = self.get_params()
        if dtype is None and getattr(eigs_or_W, "ndim", 1) == 2:
            dtype = eigs_or_W.dtype
        t["rank_tol"] = max(t["rank_tol"], _storage_floor(dtype))
        return _decide(lam, q, n, m, mp, pl, t)

    def predict(self, X: Any, *, q: Any = None) -> list[str]:
        """Phase names for a sequence of matrices (or of spectra with ``q`` a matching sequence)."""
        qs = [None] * len(X) if q is None else list(np.broadcast_to(np.asarray(q, dtype=float), (len(X),)))
        return [self.classify(x, q=qq).phase for x, qq in zip(X, qs, strict=True)]


_TOL = {f.name: f.metadata["tol"] for f in dataclasses.fields(PhaseClassifier)}
_CONSTRAINTS = {f.name: make_constraint(f.metadata["constraint"]) for f in dataclasses.fields(PhaseClassifier)}


def _parameters_doc() -> str:
    """The numpydoc Parameters entries, from the one table (the fields and their metadata)."""
    import textwrap

    out = []
    for f in dataclasses.fields(PhaseClassifier):
        out.append(f"    {f.name} : {f.type}, default={f.default!r}")
        out.extend(textwrap.wrap(f.metadata["doc"], 96, initial_indent=" " * 8, subsequent_indent=" " * 8))
    return "\n".join(out)


PhaseClassifier.__doc__ = (PhaseClassifier.__doc__ or "").replace("{parameters}", _parameters_doc())


def _storage_floor(dtype: Any) -> float:
    """Relative eigenvalue floor left by rounding weights to ``dtype``: ``eps²`` (0 when unknown).

    Rounding a rank-one matrix to float16 / bfloat16 adds entrywise errors of relative size eps,
    hence eigenvalues of about ``eps² λmax / M`` that are not rank; float32 and wider stay below
    the default ``rank_tol``.
    """
    if dtype is None:
        return 0.0
    import torch

    finfo = torch.finfo if isinstance(dtype, torch.dtype) else np.finfo
    try:
        return float(finfo(dtype).eps) ** 2
    except (TypeError, ValueError):  # not a floating-point dtype
        return 0.0


def _conf(value: float, threshold: float, tol: float) -> float:
    """1 - ½ exp(-2 |ln(value/threshold)| / ln(tol)): 0.5 at the threshold, → 1 far from it."""
    if not (np.isfinite(value) and value > 0 and threshold > 0):
        return 0.5
    d = abs(math.log(value / threshold)) / math.log(tol)
    return 1.0 - 0.5 * math.exp(-2.0 * d)


def _zero_gap(lam: np.ndarray, min_above: int) -> tuple[float, float]:
    """(fraction below, decades) of the widest log-gap with at least ``min_above`` eigenvalues above."""
    m = lam.size
    logl = np.log10(np.maximum(lam, lam[-1] * 1e-18))
    gaps = np.diff(logl)  # gaps[i]: between lam[i] and lam[i+1], i + 1 eigenvalues below
    usable = m - min_above
    if usable <= 0:
        return 0.0, 0.0
    i = int(np.argmax(gaps[:usable]))
    return (i + 1) / m, float(gaps[i])


def _edge_fit(lam: np.ndarray, q: float) -> float:
    """Deformation-tolerant bulk edge ``E = a + s·(1 + 1/√Q)²`` of ``λ ≈ a + s·u_Q(p)`` over levels 0.5–0.95.

    ``u_Q`` is the MP(1, Q) quantile function; ``E = a + s·(1 + 1/√Q)²``. For iid noise ``a ≈ 0``
    and ``s ≈ σ²``; a deformed (non-iid) noise bulk keeps its square-root edge and only widens.
    """
    m = lam.size
    p = (np.arange(m) + 0.5) / m
    keep = (p >= _EDGE_WINDOW[0]) & (p <= _EDGE_WINDOW[1])
    if keep.sum() < 2:
        keep[m // 2:] = True
    u = _unit_quantile(p[keep], q)
    y = lam[keep]
    uc = u - u.mean()
    den = float(uc @ uc)
    s = float(uc @ (y - y.mean())) / den if den > 0 else 0.0
    a = float(y.mean()) - s * float(u.mean())
    return a + s * _edges(1.0, q)[1]


def _split_attached(out_desc: np.ndarray, below: float, gap_factor: float,
                    detach_min: float) -> tuple[int, int, float]:
    """Split the outliers (largest first) into separated spikes on top and a mass attached to the edge.

    The normalized log-spacings ``w_j = j·ln(x_j / x_(j+1))`` of a continuous power-law tail are
    iid (exponential for a random tail, constant for an exactly graded one; Rényi), so a spacing
    more than ``gap_factor`` times their median is a gap. ``below`` is the largest eigenvalue that
    is not an outlier. The outliers are *detached* from the bulk — spikes or a shelf, nothing
    attached — when the lowest one sits more than ``1 + detach_min`` times above ``below`` or its
    spacing to it is a gap; otherwise the largest gap among the top few (``max(4, k/8)``), if it
    is one, splits off the separated spikes above it. Returns ``(n_attached, n_separated)``.
    """
    k = out_desc.size
    abs_gap = float(out_desc[-1] / below) / (1.0 + detach_min) if below > 0 else math.inf
    if k < 3:
        return 0, k, max(abs_gap, 1.0 + 1e-9)
    steps = np.log(out_desc / np.append(out_desc[1:], below))  # steps[-1]: lowest outlier to the bulk
    local = float(np.median(steps[-min(6, k):-1]))  # the steps among the lowest outliers
    rel_gap = float(steps[-1] / (2.0 * gap_factor * local)) if local > 0 else math.inf
    detach = max(abs_gap, rel_gap)
    if detach > 1.0:
        return 0, k, detach
    w = np.arange(1, k + 1) * steps
    med = float(np.median(w[:-1]))
    if med <= 0:
        return k, 0, detach
    top = w[: min(max(4, k // 8), k - 1)] / med  # a few separated spikes at most (MM: "some spikes")
    i = int(np.argmax(top))
    if top[i] > gap_factor:
        return k - (i + 1), i + 1, detach
    return k, 0, detach


def _tail_alpha(att_desc: np.ndarray) -> float:
    """Density exponent of the top half of the attached mass from its rank–size slope.

    ``λ_(j) ∝ j^(-1/(α-1))`` for a tail of density exponent α; the slope is the Theil–Sen median
    of pairwise slopes (robust to a few stray points at the top), over the top half (≥ 5 points,
    at most 200) of the attached outliers.
    """
    k = att_desc.size
    if k < 3 or att_desc[-1] <= 0:
        return float("nan")
    top = att_desc[: min(max(min(k, 5), (k + 1) // 2), 200)]
    x = np.log(np.arange(1, top.size + 1))
    y = np.log(top)
    i, j = np.triu_indices(top.size, 1)
    slope = -float(np.median((y[j] - y[i]) / (x[j] - x[i])))
    return 1.0 + 1.0 / slope if slope > 0 else float("inf")


def _spectrum(eigs_or_W: Any, q: float | None) -> tuple[np.ndarray, float, int | None, int]:
    """Sorted eigenvalues, Q, N (None if unknown) and M from a matrix or a spectrum."""
    arr = eigs_or_W
    is_tensor = hasattr(arr, "detach") and hasattr(arr, "ndim")
    ndim = arr.ndim if (is_tensor or isinstance(arr, np.ndarray)) else np.ndim(arr)
    if ndim == 2:
        from htsweep.analysis.spectrum import esd

        shape = tuple(int(s) for s in arr.shape)
        n, m = max(shape), min(shape)
        if m == 0:
            raise ValueError(f"classify_phase: empty matrix of shape {shape}")
        lam = np.sort(esd(arr))
        if q is not None and not math.isclose(float(q), n / m, rel_tol=1e-6):
            raise ValueError(f"classify_phase: q={q!r} disagrees with the matrix shape {shape} (Q={n / m:g})")
        return lam, n / m, n, m
    if ndim != 1:
        raise ValueError(f"classify_phase: expected eigenvalues (1-D) or a matrix (2-D); got {ndim}-D input")
    if q is None:
        raise ValueError("classify_phase: q (= N/M >= 1) is required when eigenvalues are given")
    if isinstance(q, bool) or not isinstance(q, (int, float, np.integer, np.floating)) or not float(q) >= 1.0:
        raise ValueError(f"classify_phase: q must be a float >= 1 (Q = N/M); got {q!r}")
    lam = np.sort(np.asarray(arr, dtype=np.float64))
    if lam.size == 0:
        raise ValueError("classify_phase: empty spectrum")
    if not np.all(np.isfinite(lam)):
        raise ValueError("classify_phase: eigenvalues contain NaN or Inf")
    m = lam.size
    return lam, float(q), int(round(float(q) * m)), m


class _Path:
    """The decisions taken: rule text and confidences, then the result."""

    def __init__(self, ev: dict[str, Any]):
        self.ev, self.rule, self.confs, self.warning = ev, [], [], ""

    def add(self, text: str, conf: float | None = None) -> None:
        self.rule.append(text)
        if conf is not None:
            self.confs.append(conf)

    def undetermined(self, why: str) -> PhaseResult:
        """No phase: ``why`` is both the warning and the rule."""
        self.warning = why
        self.add(why)
        return self.done(UNDETERMINED)

    def done(self, phase: str) -> PhaseResult:
        conf = min(self.confs) if self.confs else 0.5
        # features measured on fewer eigenvalues are noisier: shrink toward 0.5 below M = 256
        conf = 0.5 + (conf - 0.5) * min(1.0, math.sqrt(self.ev["m"] / _FULL_CONF_M))
        self.ev["margin_confidence"] = conf
        t = self.ev["thresholds"]
        c = min(max(conf, 1e-9), 1.0 - 1e-12)
        conf = 1.0 / (1.0 + math.exp(-(t["conf_slope"] * math.log(c / (1.0 - c)) + t["conf_offset"])))
        if phase == UNDETERMINED:
            conf = 0.0
        elif self.ev.get("small"):
            conf = min(conf, _SMALL_CONF)
        self.ev["rule"] = "; ".join(self.rule)
        self.ev["warning"] = self.warning
        return PhaseResult(phase, float(np.clip(conf, 0.0, 1.0)), self.ev)


@dataclass(frozen=True)
class _Bulk:
    """The fitted bulk: MP edge ``λ+``, the deformation-tolerant edge ``E`` and its cap ``E_max``."""

    lp: float
    sigma2: float
    edge: float
    edge_fit: float
    edge_cap: float
    tw1: float
    lmax: float


@dataclass(frozen=True)
class _Mass:
    """The outliers over ``λ+`` split into separated spikes and a mass attached to the edge."""

    out_desc: np.ndarray  # outliers, largest first
    below: float  # largest eigenvalue that is not an outlier
    n_att: int
    detach: float
    reach: float  # top of the attached mass / E_max
    tail_alpha: float
    need: float  # smallest mass of a decay or tail

    @property
    def att(self) -> np.ndarray:
        return self.out_desc[self.out_desc.size - self.n_att:]


def _decide(
    lam: np.ndarray, q: float, n: int | None, m: int, mp: MPFit | None, pl: PowerLawFit | None,
    t: dict[str, Any],
) -> PhaseResult:
    lam = np.clip(lam, 0.0, None)
    path = _Path({"m": m, "n": n, "q": q, "thresholds": dict(t)})
    done = _degenerate(path, lam, q, n, m, t) or _rank_collapse(path, lam, m, t)
    if done:
        return done
    if mp is None:
        mp = fit_marchenko_pastur(lam, q=q)
    bulk = _bulk(path, lam, q, m, mp, pl, t)
    if isinstance(bulk, PhaseResult):
        return bulk
    mass = _mass(path, lam, m, bulk, t)
    fits = _competing_fits(path, lam, q, bulk, t)
    return _tail_split(path, bulk, mass, fits, t) or _spikes(path, bulk, fits, t)


def _degenerate(path: _Path, lam: np.ndarray, q: float, n: int | None, m: int, t: dict[str, Any]) -> PhaseResult | None:
    """Step 0: nothing to classify (``undetermined``), or a point mass (``random_like``)."""
    ev, lmax = path.ev, float(lam[-1])
    if m < t["min_m"]:
        return path.undetermined(f"too small to classify (M={m} < {t['min_m']})")
    if lmax <= 0.0:
        return path.undetermined("all eigenvalues are zero (an all-zero matrix)")
    ev["numerical_rank"] = int(np.count_nonzero(lam > t["rank_tol"] * lmax))
    if ev["numerical_rank"] <= 1:
        return path.undetermined("rank <= 1: a single nonzero eigenvalue (e.g. a constant matrix or a constant "
                                 "row/column)")
    if min(m, n or m) < SMALL_DIM:
        ev["small"] = True
        path.warning = f"matrix too small for a reliable phase (min dim {min(m, n or m)} < {SMALL_DIM})"
    lm1, lp1 = _edges(1.0, q)
    width = (lmax - float(lam[0])) / (float(lam.mean()) * (lp1 - lm1))
    ev["width_vs_mp"] = width
    if width < t["point_mass_tol"]:
        path.warning = ("point-mass ESD: all eigenvalues (nearly) equal, as for an orthogonal or identity "
                        "init; no MP bulk, no learned structure")
        path.add(f"ESD width {width:.3g} < {t['point_mass_tol']} of the MP width (point mass)",
                 _conf(width, t["point_mass_tol"], _TOL["point_mass_tol"]))
        return path.done("random_like")
    # exact zeros under a point mass: a Dirac / identity kernel reshaped to (out, in·k·k) is rank-deficient
    # by construction (only the centre tap is set), an init rather than a collapse of a trained spectrum
    nz = lam[lam > t["rank_tol"] * lmax]
    nz_width = (lmax - float(nz[0])) / (float(nz.mean()) * (lp1 - lm1))
    if nz.size < m and nz_width < t["point_mass_tol"]:
        path.warning = (f"point mass on the {nz.size} nonzero eigenvalues, {m - nz.size} exact zeros: a structurally "
                        "rank-deficient init (e.g. a Dirac conv kernel); no MP bulk, no learned structure")
        path.add(f"nonzero ESD width {nz_width:.3g} < {t['point_mass_tol']} of the MP width (point mass over zeros)",
                 _conf(nz_width, t["point_mass_tol"], _TOL["point_mass_tol"]))
        return path.done("random_like")
    return None


def _rank_collapse(path: _Path, lam: np.ndarray, m: int, t: dict[str, Any]) -> PhaseResult | None:
    """Step 1: a separated cluster of (near-)zero eigenvalues."""
    zf, zg = _zero_gap(lam, max(3, int(math.ceil(0.05 * m))))
    dzf, dzg = _zero_gap(lam, 1)
    path.ev.update(zero_frac=zf, zero_gap_decades=zg, deep_zero_frac=dzf, deep_gap_decades=dzg)
    c_frac = _conf(zf, t["zero_frac_min"], _TOL["zero_frac_min"]) if zf > 0 else 1.0
    c_gap = _conf(zg, t["zero_gap_min"], _TOL["zero_gap_min"]) if zg > 0 else 1.0
    if dzg >= t["deep_gap_min"] and dzf >= t["zero_frac_min"]:
        path.add(f"{m - round(dzf * m)} eigenvalue(s) above a gap of {dzg:.3g} >= {t['deep_gap_min']} decades; "
                 f"zero_frac {dzf:.3g} >= {t['zero_frac_min']}",
                 min(_conf(dzf, t["zero_frac_min"], 1.5), _conf(dzg, t["deep_gap_min"], 1.5)))
        return path.done("rank_collapse")
    if zf >= t["zero_frac_min"] and zg >= t["zero_gap_min"]:
        path.add(f"zero_frac {zf:.3g} >= {t['zero_frac_min']} and gap {zg:.3g} >= {t['zero_gap_min']} decades",
                 min(c_frac, c_gap))
        return path.done("rank_collapse")
    path.confs.append(max(c for ok, c in ((zf >= t["zero_frac_min"], c_frac), (zg >= t["zero_gap_min"], c_gap))
                          if not ok))
    return None


def _bulk(path: _Path, lam: np.ndarray, q: float, m: int, mp: MPFit, pl: PowerLawFit | None,
          t: dict[str, Any]) -> _Bulk | PhaseResult:
    """Step 2: the MP fit and the deformation-tolerant edge; ``random_like`` if nothing lies beyond it."""
    if not mp.success:
        path.warning = path.warning or f"MP fit failed: {mp.message}"
        path.add("no MP fit", 0.3)
        return path.done("random_like")
    if pl is None:
        pl = fit_power_law(lam)
    lp, lmin, sigma2, lmax = float(mp.lambda_plus), float(mp.lambda_minus), float(mp.sigma2), float(lam[-1])
    edge_fit = _edge_fit(lam, q)
    # Deformed noise widens the edge; tolerated up to the edge of the moment-matched MP law of a
    # population of relative variance deform_max: σ²(1 + √(c + v))² (E tr S² / M = 1 + v + c).
    edge_cap = max(sigma2 * (1.0 + math.sqrt(1.0 / q + t["deform_max"])) ** 2, lp)
    edge = float(np.clip(edge_fit, lp, edge_cap))
    tw1 = _tw(1.0, q, m)
    s_tw = sigma2 * (edge - lmin) / (lp - lmin) * tw1  # TW scale of the widened bulk
    margin = max(_TW_K * s_tw, t["edge_tol"] * edge)
    cut = edge + margin
    k_edge = int(np.count_nonzero(lam > cut))
    path.ev.update(
        sigma2=sigma2, lambda_plus=lp, lambda_max=lmax, n_spikes=int(mp.n_spikes),
        mp_soft_rank=float(mp.soft_rank), bulk_ks=float(mp.ks_bulk), alpha=float(pl.alpha), D=float(pl.D),
        edge=edge, edge_fit=edge_fit, edge_max=edge_cap, edge_margin=margin, deformation=edge / lp - 1.0,
        n_beyond_edge=k_edge, spike_ratio=lmax / lp, edge_ratio=lmax / edge,
    )
    if k_edge == 0:
        # how far below the outlier line λmax stays, in units of the margin
        path.add(f"no eigenvalue beyond the (deformation-tolerant) bulk edge: λmax {lmax / edge:.3g}·E, "
                 f"E = {edge / lp:.3g}·λ+, margin {margin / edge:.2%}",
                 _conf(max(cut - lmax, 1e-300) + margin, margin, 2.0 ** 0.5))
        path.ev.update(n_outliers=0, n_attached=0, n_separated=0, attached_reach=1.0, tail_alpha=float("nan"))
        return path.done("random_like")
    return _Bulk(lp, sigma2, edge, edge_fit, edge_cap, tw1, lmax)


def _mass(path: _Path, lam: np.ndarray, m: int, bulk: _Bulk, t: dict[str, Any]) -> _Mass:
    """The outliers over the iid edge, split into separated spikes and an attached mass."""
    cut_mp = bulk.lp + max(0.5 * _TW_K * bulk.sigma2 * bulk.tw1, 0.5 * t["edge_tol"] * bulk.lp)
    out_desc = lam[lam > cut_mp][::-1]
    k = int(out_desc.size)
    below = float(lam[-k - 1]) if k < m else 0.0
    n_att, n_sep, detach = _split_attached(out_desc, below, t["gap_factor"], t["detach_min"])
    att = out_desc[n_sep:]
    mass = _Mass(out_desc, below, n_att, detach, reach=float(att[0] / bulk.edge_cap) if n_att else 1.0,
                 tail_alpha=_tail_alpha(att), need=max(t["mass_min"], t["mass_frac"] * m))
    path.ev.update(n_outliers=k, outlier_frac=k / m, n_attached=n_att, n_separated=n_sep,
                   attached_reach=mass.reach, tail_alpha=mass.tail_alpha, mass_needed=mass.need, detachment=detach,
                   edge_pull=bulk.edge_fit / bulk.edge_cap)
    return mass


@dataclass(frozen=True)
class _Fits:
    """Whole-ESD fits of the competing models: L1 log-quantile distance ``D`` and penalized score ``S``."""

    d_mass: float  # MP bulk + Pareto mass above λ+ (random-like … bulk-decay)
    d_heavy: float  # best heavy-tailed reference (heavy-tailed)
    d_deformed: float  # best admissible log-normal deformed-noise reference (random-like); inf if none
    scores: dict[str, float]
    mass_ok: bool  # the MP bulk + mass model is admissible (a good λ+ holding most of the mass)
    tie: float = 1.0  # deformed noise within this factor of heavy-tailed RMT's D counts as fitting as well

    @property
    def noise_fits_as_heavy(self) -> bool:
        """Deformed noise fits at least as well as heavy-tailed RMT (``D``; a tie within ``tie`` goes to
        the simpler model, noise)."""
        return self.d_deformed <= self.tie * self.d_heavy

    @property
    def noise_beats_mass(self) -> bool:
        """Deformed noise beats the MP bulk + mass on the penalized score, or that model is inadmissible."""
        return not self.mass_ok or self.scores["deformed_noise"] < self.scores["mp_mass"]

    @property
    def noise_best(self) -> bool:
        """Deformed noise beats every admissible competitor."""
        return self.noise_fits_as_heavy and self.noise_beats_mass

    def prob(self, model: str, among: tuple[str, ...], temperature: float) -> float:
        """Softmax weight of ``model`` among ``among`` at ``temperature`` (lower score, higher weight)."""
        s = np.array([self.scores[k] for k in among])
        w = np.exp(-(s - s.min()) / temperature)
        return float(w[among.index(model)] / w.sum())


def _l1_log_quantile(y: np.ndarray, model: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean absolute log-quantile residual after the best offset (the overall scale): an L1 Wasserstein
    distance between the log-ESDs over :data:`rmt_references.LEVELS`; vectorized over model rows.
    Also returns the offsets."""
    d = y - model
    off = np.median(d, axis=-1, keepdims=True)
    return np.mean(np.abs(d - off), axis=-1), off[..., 0]


def _competing_fits(path: _Path, lam: np.ndarray, q: float, bulk: _Bulk, t: dict[str, Any]) -> _Fits:
    """Fit the whole ESD with each competing random-matrix model (module docstring, "Model comparison")."""
    m = lam.size
    logs = np.log(np.maximum(lam, lam[-1] * 1e-12))
    y = np.interp(LEVELS, (np.arange(m) + 0.5) / m, logs)
    refs = reference_log_quantiles(q, m)
    d_ref, off = _l1_log_quantile(y[None, :], refs.log_q)
    # Deformed noise is an MP law "with appropriate λ+" whose λmax ≈ λ+ is sharp (Table 7): the
    # reference must also predict the layer's largest eigenvalue (its top, simulated at the layer's M).
    top_excess = logs[-1] - off - refs.top
    # a layer of fewer than 256 eigenvalues (the references' M) scatters its quantiles by ∝ 1/√M more
    d_max = t["good_fit_max"] * max(1.0, math.sqrt(_FULL_CONF_M / m))
    noise_ok = ~refs.heavy & (top_excess <= t["noise_top_tol"]) & (d_ref <= d_max)
    i_h = int(np.argmin(np.where(refs.heavy, d_ref, np.inf)))
    i_d = int(np.argmin(np.where(noise_ok if noise_ok.any() else ~refs.heavy, d_ref, np.inf)))
    # MP(σ², Q) for the bulk's share of the levels, a Pareto mass (MLE exponent) from λ+ above it
    out = lam[lam > bulk.lp]
    f = out.size / m
    model = np.log(bulk.sigma2 * np.maximum(_unit_quantile(np.minimum(LEVELS / (1.0 - f), 1.0), q), 1e-300))
    if out.size >= 2:
        top = LEVELS > 1.0 - f
        model[top] = math.log(bulk.lp) + np.log(f / (1.0 - LEVELS[top])) * float(np.sum(np.log(out / bulk.lp))) / out.size
    d_mass = float(_l1_log_quantile(y, model)[0])
    d_heavy, d_def = float(d_ref[i_h]), float(d_ref[i_d]) if noise_ok.any() else math.inf
    tiny = 1e-12
    scores = {"mp_mass": math.log(d_mass + tiny) + t["mass_penalty"] * (f - t["mass_free"]),
              "heavy_tailed_rmt": math.log(d_heavy + tiny),
              "deformed_noise": math.log(d_def + tiny) + t["deform_penalty"]}
    path.ev["fits"] = {"mp_mass": {"D": d_mass, "mass_fraction": f, "score": scores["mp_mass"]},
                       "heavy_tailed_rmt": {"D": d_heavy, "reference": refs.names[i_h],
                                            "score": scores["heavy_tailed_rmt"]},
                       "deformed_noise": {"D": float(d_ref[i_d]), "reference": refs.names[i_d],
                                          "top_excess": float(top_excess[i_d]), "admissible": bool(noise_ok.any()),
                                          "score": scores["deformed_noise"]}}
    fits = _Fits(d_mass, d_heavy, d_def, scores, mass_ok=d_mass <= t["good_fit_max"] and f <= t["mass_max"],
                 tie=t["noise_tie"])
    vote = min(scores, key=scores.get)
    if fits.noise_best:
        vote = "deformed_noise"
    elif vote != "heavy_tailed_rmt" and not fits.mass_ok:
        vote = "heavy_tailed_rmt"  # no admissible MP bulk + mass: no good λ+
    path.ev.update(model_vote=vote, model_vote_confidence=fits.prob(vote, tuple(scores), t["score_temperature"]))
    return fits


def _tail_split(path: _Path, bulk: _Bulk, mass: _Mass, fits: _Fits, t: dict[str, Any]) -> PhaseResult | None:
    """Step 3: an attached mass that deformation does not explain is a decaying bulk or a heavy tail."""
    csn = path.ev["alpha"]  # the CSN power-law α of the ESD, recorded by _bulk
    k, n_att, need, reach = mass.out_desc.size, mass.n_att, mass.need, mass.reach
    # not a mass: too few outliers, or outliers clearly detached from the bulk
    c_mass = _conf(n_att + 0.5, need, _TOL["mass_frac"]) if n_att else \
        max(_conf(k + 0.5, need, _TOL["mass_frac"]) if k < need else 0.5, _conf(mass.detach, 1.0, 1.5))
    c_reach = _conf(reach, t["reach_min"], _TOL["reach_min"])
    # A graded mass lifts the top half of the spectrum itself: the edge fitted there overshoots
    # the widest edge a deformed noise bulk may have (deformed noise stays below it).
    pull = path.ev["edge_pull"]
    c_pull = _conf(pull, t["pull_min"], _TOL["pull_min"])
    reached = reach >= t["reach_min"]
    pulled = pull >= t["pull_min"] and reach > 1.0
    # a decaying tail has a moderate exponent; a steeper one is a sharp (deformed-noise) edge
    steep = bool(np.isfinite(csn) and csn >= t["decay_alpha_max"])
    path.ev["steep_edge"] = steep
    c_steep = _conf(csn, t["decay_alpha_max"], _TOL["decay_alpha_max"]) if np.isfinite(csn) else 1.0
    if not (n_att >= need and (reached or pulled) and not steep):
        if n_att >= need and (reached or pulled):
            why = f"a sharp edge, not a decaying tail: CSN α {csn:.3g} >= {t['decay_alpha_max']}"
        elif n_att == 0 and mass.detach > 1.0:
            why = f"detached from the bulk: lowest {mass.out_desc[-1] / mass.below:.3g}× the bulk top"
        elif n_att < need:
            why = f"{n_att} attached < {need:.3g}"
        else:
            why = f"attached reach {reach:.3g} < {t['reach_min']}, fitted edge {pull:.3g}·E_max < {t['pull_min']}"
        path.add(f"{k} outlier(s) over λ+, spikes not a decaying mass ({why})",
                 max(c_mass if n_att < need else 0.0, min(c_reach, c_pull) if not (reached or pulled) else 0.0,
                     c_steep if steep else 0.0))
        return None
    if reached:
        path.add(f"{n_att} outliers attached to the edge (>= {need:.3g}) reaching {reach:.3g}·E_max "
                 f"(>= {t['reach_min']})", min(c_mass, max(c_reach, c_pull if pulled else 0.0)))
    else:
        path.add(f"{n_att} outliers attached to the edge (>= {need:.3g}) past E_max, and the top half "
                 f"of the bulk is lifted: fitted edge {pull:.3g}·E_max (>= {t['pull_min']})", min(c_mass, c_pull))
    path.confs.append(c_steep)  # how far the mass is from a sharp, deformed-noise edge
    sc, temp = fits.scores, t["score_temperature"]
    if t["compare_models"] and fits.noise_best:
        return _deformed_noise(path, fits, t, "but ")
    # separated spikes on top of the mass are not its tail: λ/λ+ at the top of the mass itself
    ratio = float(mass.att[0]) / bulk.lp
    # finite-size fat tails read steeper the further they reach (MM Sec. 3.2: α ≈ b + aμ), so
    # the exponent bound grows by ½ per decade of reach beyond heavy_ratio_min, by 1 at most
    a_max = t["tail_alpha_max"] + min(1.0, 0.5 * math.log10(max(1.0, ratio / t["heavy_ratio_min"])))
    path.ev.update(tail_ratio=ratio, tail_alpha_bound=a_max)
    tail_alpha = mass.tail_alpha
    c_alpha = _conf(tail_alpha, a_max, _TOL["tail_alpha_max"])
    c_ratio = _conf(ratio, t["heavy_ratio_min"], _TOL["heavy_ratio_min"])
    c_csn = _conf(csn, t["csn_alpha_max"], _TOL["csn_alpha_max"]) if np.isfinite(csn) else 1.0
    p_heavy = fits.prob("heavy_tailed_rmt", ("heavy_tailed_rmt", "mp_mass"), temp)
    # the rank-size exponent of a few dozen eigenvalues is noisy; where heavy-tailed RMT fits the
    # whole ESD decisively better than an MP bulk + mass (Table 7's own test), it is not a veto
    decisive = bool(t["compare_models"] and p_heavy >= t["decisive_min"])
    shallow = tail_alpha < a_max or decisive
    far = ratio >= t["heavy_ratio_min"]
    light = bool(np.isfinite(csn) and csn >= t["csn_alpha_max"])
    f_mass = path.ev["fits"]["mp_mass"]["mass_fraction"]
    ht_best = not t["compare_models"] or sc["heavy_tailed_rmt"] < sc["mp_mass"] or not fits.mass_ok
    pair = ("heavy_tailed_rmt", "mp_mass")
    if shallow and far and not light and ht_best:
        if tail_alpha < a_max:
            tail_text, c_tail = f"tail α {tail_alpha:.3g} < {a_max:.3g}", c_alpha
        else:  # the decisive comparison, not the exponent
            tail_text, c_tail = (f"tail α {tail_alpha:.3g} >= {a_max:.3g} but heavy-tailed RMT is decisive (weight "
                                 f"{p_heavy:.3g} >= {t['decisive_min']})", p_heavy)
        path.add(f"{tail_text}, mass top/λ+ {ratio:.3g} >= {t['heavy_ratio_min']}"
                 f" and CSN α {csn:.3g} < {t['csn_alpha_max']}", min(c_tail, c_ratio, c_csn))
        if t["compare_models"]:
            path.add(*_why_heavy_rmt(fits, f_mass, t))
        return path.done("heavy_tailed")
    why = []
    if shallow and far and not light:
        why.append(f"an MP bulk + mass fits the whole ESD better than heavy-tailed RMT (score {sc['mp_mass']:.3g} "
                   f"<= {sc['heavy_tailed_rmt']:.3g}): a good λ+ exists")
    if not shallow:
        why.append(f"tail α {tail_alpha:.3g} >= {a_max:.3g}")
    if not far:
        why.append(f"mass top/λ+ {ratio:.3g} < {t['heavy_ratio_min']}")
    if light:
        why.append(f"CSN α {csn:.3g} >= {t['csn_alpha_max']}")
    path.add(", ".join(why), max(c_alpha if not shallow else 0.0, c_ratio if not far else 0.0,
                                 c_csn if light else 0.0, fits.prob("mp_mass", pair, temp) if not ht_best else 0.0))
    # heavy-tailed RMT ruled out: of the models left, deformed noise beats an admissible MP bulk + mass
    # (or, with no good λ+, fits about as well as heavy-tailed RMT did)
    if t["compare_models"] and (fits.noise_beats_mass if fits.mass_ok else fits.noise_fits_as_heavy):
        return _deformed_noise(path, fits, t, "but with heavy-tailed RMT ruled out, ")
    return path.done("bulk_decay")


def _deformed_noise(path: _Path, fits: _Fits, t: dict[str, Any], lead: str) -> PhaseResult:
    """The vote's deformed-noise verdict: ``random_like``, with the competing fits in the rule."""
    ref = path.ev["fits"]["deformed_noise"]["reference"]
    path.add(f"{lead}deformed noise ({ref}) explains the whole ESD and its top: D {fits.d_deformed:.3g} vs MP + mass "
             f"{fits.d_mass:.3g} (score {fits.scores['deformed_noise']:.3g} vs {fits.scores['mp_mass']:.3g}), "
             f"heavy-tailed {fits.d_heavy:.3g}",
             fits.prob("deformed_noise", ("deformed_noise", "mp_mass"), t["score_temperature"]))
    return path.done("random_like")


def _why_heavy_rmt(fits: _Fits, f_mass: float, t: dict[str, Any]) -> tuple[str, float]:
    """Why the model comparison leaves heavy-tailed RMT as the best model (rule text, confidence)."""
    sc = fits.scores
    if f_mass > t["mass_max"]:
        return (f"no MP bulk holding most of the mass: {f_mass:.1%} of the eigenvalues above λ+ > "
                f"{t['mass_max']:.0%}", _conf(f_mass, t["mass_max"], 1.5))
    if fits.d_mass > t["good_fit_max"]:
        return (f"no good λ+: an MP bulk + mass fits the whole ESD to D {fits.d_mass:.3g} > {t['good_fit_max']}",
                _conf(fits.d_mass, t["good_fit_max"], 1.5))
    return (f"heavy-tailed RMT fits the whole ESD better than an MP bulk + mass: score "
            f"{sc['heavy_tailed_rmt']:.3g} < {sc['mp_mass']:.3g}",
            fits.prob("heavy_tailed_rmt", ("heavy_tailed_rmt", "mp_mass"), t["score_temperature"]))


def _spikes(path: _Path, bulk: _Bulk, fits: _Fits, t: dict[str, Any]) -> PhaseResult:
    """Step 4: spikes well above the edge (``bulk_plus_spikes``) or just past it (``bleeding_out``)."""
    r_e = bulk.lmax / bulk.edge
    c_spike = _conf(r_e, t["spike_ratio_min"], _TOL["spike_ratio_min"])
    if r_e >= t["spike_ratio_min"] and t["compare_models"] and fits.noise_best:
        return _deformed_noise(path, fits, t, f"λmax/E {r_e:.3g} >= {t['spike_ratio_min']}, but ")
    if r_e >= t["spike_ratio_min"]:
        path.add(f"λmax/E {r_e:.3g} >= {t['spike_ratio_min']}", c_spike)
        return path.done("bulk_plus_spikes")
    path.add(f"λmax/E {r_e:.3g} < {t['spike_ratio_min']}", c_spike)
    return path.done("bleeding_out")


_DEFAULT = PhaseClassifier()


def classify_phase(
    eigs_or_W: Any, *, q: float | None = None, mp: MPFit | None = None, pl: PowerLawFit | None = None,
    dtype: Any = None,
) -> PhaseResult:
    """Label a weight matrix (or its ESD) with one of the 5+1 phases, with confidence and evidence.

    Parameters
    ----------
    eigs_or_W : array-like of shape (M,) or (n_rows, n_cols), or torch.Tensor
        Eigenvalues of ``WᵀW / N`` (any order), or the matrix itself, whose ESD is then computed
        with :func:`analysis.spectrum.esd` and ``Q`` taken from its shape.
    q : float, optional
        Aspect ratio ``Q = N / M >= 1``; required with eigenvalues, checked against the shape with
        a matrix.
    mp : MPFit, optional
        A Marchenko–Pastur fit of the same spectrum (skips refitting).
    pl : PowerLawFit, optional
        A power-law fit of the same spectrum (skips refitting; reported as evidence only).
    dtype : torch or numpy dtype, optional
        The dtype the weights are stored in (taken from a matrix when one is given). For float16 /
        bfloat16 the rank ≤ 1 test ignores eigenvalues below ``eps² · λmax``: rounding a rank-one
        matrix to those types leaves that much spurious spectrum.

    Returns
    -------
    PhaseResult
        ``phase`` (a name in :data:`PHASES`, or ``"undetermined"`` with a reason in
        ``evidence["warning"]``), ``confidence`` in [0, 1] and ``evidence``.

    Raises
    ------
    ValueError
        Eigenvalues without ``q``, ``q < 1``, NaN/Inf values, or input that is neither 1-D nor 2-D.

    Notes
    -----
    Deterministic. The cost beyond the fits is O(M) (a gap scan, one small regression over the
    top half, a rank–size fit over the outliers); with ``mp`` and ``pl`` given it is negligible
    next to the eigendecomposition.
    """
    return _DEFAULT.classify(eigs_or_W, q=q, mp=mp, pl=pl, dtype=dtype)
