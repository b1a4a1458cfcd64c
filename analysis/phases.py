"""The 5+1 phases of training: an explainable classifier over scale-free spectral features.

Martin & Mahoney [1]_ (Table 7) name six shapes of a layer's ESD — RANDOM-LIKE, BLEEDING-OUT,
BULK+SPIKES, BULK-DECAY, HEAVY-TAILED and RANK-COLLAPSE — but label them by eye. This module turns
their operational definitions into a short decision procedure over features that do not depend on
the overall scale of ``W`` (everything is relative to the fitted bulk edge ``λ+`` or is a fraction
or an exponent), so one set of thresholds serves every size and aspect ratio.

Features (all in ``PhaseResult.evidence``)
    ``zero_frac``, ``zero_gap_decades``
        The largest gap (in decades) between consecutive sorted eigenvalues that has at least
        ``max(3, 5 %·M)`` eigenvalues above it, and the fraction of eigenvalues below that gap.
    ``n_spikes``, ``spike_ratio``, ``edge_gap``
        From :func:`analysis.marchenko_pastur.fit_marchenko_pastur`: eigenvalues above ``λ+`` plus
        the Tracy–Widom margin, ``λ_max / λ+`` (= 1 / MP soft rank), and the smallest spike over
        ``λ+``.
    ``bulk_ks_norm``
        KS distance of the bulk to the fitted MP law times ``M / ln M``. For a true MP bulk the
        eigenvalues are rigid and this stays near 0.5 (≲ 0.8) for every M ≥ 32 and Q ∈ [1, 10].
    ``tail_alpha``
        Density exponent of the top half of the spikes (at least 3 eigenvalues) from the
        rank-size slope ``λ_(j) ∝ j^(-1/(α-1))``: ≈ 1 + μ/2 ∈ [1.5, 2.25] for iid entries of tail
        index μ ≤ 2.5 with many outliers, ≳ 4 for a bulk whose edge decays into a steep tail (the
        paper's α ≈ 4–6) — and also for μ ≳ 2.5 at moderate size, whose few outliers are
        compressed toward ``λ+`` by the BBP map (hence ``tail_mu`` and ``spike_frac`` below).
        ``tail_alpha_hill`` is the Hill estimate (:func:`analysis.powerlaw_fit.hill_estimator`)
        over the same eigenvalues, for reference.
    ``alpha``, ``D``
        The power-law fit (:func:`analysis.powerlaw_fit.fit_power_law`), reported as evidence
        only: on spectra with an MP bulk its KS-chosen ``xmin`` often lands on the bulk edge, so
        the decision uses ``tail_alpha`` instead.
    ``spike_spread``
        ``ln(λ_max / smallest spike) / ln(λ_max / λ+)``: near 0 for a shelf or for separated spikes,
        near 1 when the outliers fill the whole range from the edge up (a tail).
    ``edge_tw``
        Mean position of the three largest *bulk* eigenvalues (those below the spike margin), in
        Tracy–Widom units ``s_TW`` from ``λ+``. An MP bulk is rigid and its edge follows TW/Airy
        statistics: the top three sit at ≈ −1.2, −3.7, −5.2, mean ≈ −3.4 (≤ −1.5 in 99 % of the
        random-like, bleeding-out and bulk-plus-spikes spectra of the benchmark, at every M and Q).
        Entries with a tail index μ < 4 replace the TW edge by Fréchet-like fluctuations [1]_
        (Sec. 3.2): sub-threshold large entries push the top of the bulk up, ``edge_tw`` ≳ −1.
    ``tail_mu``
        Tail index of the outliers from Fréchet order statistics (≥ 3 spikes): each spike is mapped
        back to its BBP strength ``θ²`` (the inverse of ``λ = σ²(1+θ²)(1+c/θ²)``), and the
        rank–size slope of ``ln θ²_(j)`` on ``ln j`` is ``2/μ`` for iid entries of index μ (a large
        entry ``w`` acts as a spike of strength ``θ² ≈ w²/(Nσ²)`` and ``w_(j) ∝ j^(-1/μ)``). Unlike
        ``tail_alpha`` it is not distorted by the BBP compression of near-threshold outliers toward
        ``λ+``; the bulk-decay family gives ``tail_mu`` ≳ 3.1.
    ``spike_frac``
        ``n_spikes / M``. For μ > 2 the number of outliers grows more slowly than M (the density
        above ``λ+`` vanishes, [1]_ Sec. 3.2), so a heavy tail with μ ∈ (2, 4) leaves only a few
        percent of the eigenvalues above the edge, while a decaying bulk moves a finite fraction
        (≳ 5 %) out of it.

Decision procedure (thresholds are the :class:`PhaseClassifier` parameters)
    1. ``zero_frac >= zero_frac_min`` and ``zero_gap_decades >= zero_gap_min`` → ``rank_collapse``
       (an all-zero spectrum too); so does ``deep_zero_frac >= zero_frac_min`` with a gap of
       ``deep_gap_decades >= deep_gap_min`` and any number of eigenvalues above it.
    2. No spikes and an MP bulk (``bulk_ks_norm <= bulk_ks_max``) → ``random_like``.
    3. Heavy eigenmass above ``λ+`` — many spikes (``n_spikes > few_spikes_max``), or at least 3
       spikes filling the range above the edge (``spike_spread >= spread_min``), or a bulk that
       is not MP (``bulk_ks_norm > bulk_ks_max``): the *tail split* — ``heavy_tailed`` if the tail
       is a shallow power law (``tail_alpha < tail_alpha_max``, the paper's 2 ≲ α ≲ 4) or, with
       at least 3 spikes, its Fréchet index is small (``tail_mu < tail_mu_max``) or the spikes
       are a vanishing fraction of the spectrum (``spike_frac < spike_frac_max``); else
       ``bulk_decay``.
    4. A few spikes (1 to ``few_spikes_max``) on a bulk that passes the KS test but whose edge is
       soft (``edge_tw >= edge_tw_min``): ``heavy_tailed`` with fewer than 3 spikes, the tail
       split of step 3 otherwise. (With no spike at all the edge is not consulted: step 2 decides.)
    5. A few spikes on an MP bulk with a TW edge: ``bulk_plus_spikes`` if
       ``λ_max / λ+ >= spike_ratio_min`` (clear outliers well above the edge), else
       ``bleeding_out`` (a shelf just past ``λ+``).

Confidence is the smallest, over the decisions taken, of ``1 - ½·exp(-2 d)`` where ``d`` is the
log-distance of the feature to its threshold in units of that threshold's tolerance (for
``edge_tw``, which can be negative, the distance in TW units): 0.5 on a boundary, → 1 far from
all of them. Matrices with ``min(N, M) < 32`` keep their label but their
confidence is capped at 0.3 and ``evidence["warning"]`` says why.

References
----------
.. [1] Martin & Mahoney, "Implicit Self-Regularization in Deep Neural Networks" (2018), Sec. 5
       and Table 7 (``shared/papers/implicit-self-regularization.txt``).

Examples
--------
>>> from analysis.synthetic import make
>>> from analysis.phases import classify_phase
>>> classify_phase(make("random_like", 600, 300, seed=1)).phase
'random_like'
>>> classify_phase(make("bulk_plus_spikes", 600, 300, seed=1, k=3, ratio=6.0)).phase
'bulk_plus_spikes'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analysis._validation import Interval, validate
from analysis.marchenko_pastur import TW_MARGIN_K, MPFit, _bbp_theta2, fit_marchenko_pastur
from analysis.powerlaw_fit import PowerLawFit, fit_power_law, hill_estimator

__all__ = ["PHASES", "PHASE_CODES", "PhaseClassifier", "PhaseResult", "classify_phase"]

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

SMALL_DIM = 32
_SMALL_CONF = 0.3


@dataclass(frozen=True, repr=False)
class PhaseResult:
    """Result of :func:`classify_phase`.

    Attributes
    ----------
    phase : str
        One of :data:`PHASES`.
    confidence : float
        In [0, 1]; 0.5 means a feature sits on a decision threshold.
    evidence : dict
        The features, the thresholds they were compared with (``evidence["thresholds"]``), the
        path of decisions (``evidence["rule"]``) and ``evidence["warning"]`` ("" when none).
    """

    phase: str
    confidence: float
    evidence: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def code(self) -> int:
        """Integer code of the phase (:data:`PHASE_CODES`)."""
        return PHASE_CODES[self.phase]

    def __repr__(self) -> str:
        keys = ("n_spikes", "spike_ratio", "bulk_ks_norm", "tail_alpha", "alpha", "zero_frac")
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


def _conf(value: float, threshold: float, tol: float) -> float:
    """1 - ½ exp(-2 |ln(value/threshold)| / ln(tol)): 0.5 at the threshold."""
    if not (np.isfinite(value) and value > 0 and threshold > 0):
        return 0.5
    d = abs(math.log(value / threshold)) / math.log(tol)
    return 1.0 - 0.5 * math.exp(-2.0 * d)


def _conf_lin(value: float, threshold: float, scale: float) -> float:
    """1 - ½ exp(-2 |value - threshold| / scale): for features that can be negative."""
    if not np.isfinite(value):
        return 0.5
    return 1.0 - 0.5 * math.exp(-2.0 * abs(value - threshold) / scale)


def _zero_gap(lam: np.ndarray, min_above: int) -> tuple[float, float]:
    """(fraction below, decades) of the widest log-gap with at least ``min_above`` eigenvalues above."""
    m = lam.size
    top = lam[-1]
    if top <= 0:
        return 1.0, math.inf
    floor = top * 1e-18
    logl = np.log10(np.maximum(lam, floor))
    gaps = np.diff(logl)  # gaps[i]: between lam[i] and lam[i+1], i + 1 eigenvalues below
    usable = m - 1 - min_above + 1  # i + 1 <= m - min_above
    if usable <= 0:
        return 0.0, 0.0
    g = gaps[:usable]
    i = int(np.argmax(g))
    return (i + 1) / m, float(g[i])


def _rank_size_alpha(lam: np.ndarray, k: int) -> float:
    """Density exponent from the least-squares slope of ``ln λ_(j)`` on ``ln j``, ``j = 1..k``.

    For a power-law tail ``ρ(λ) ∝ λ^(-α)`` the order statistics fall as ``λ_(j) ∝ j^(-1/(α-1))``,
    so ``α = 1 + 1/slope``. Over the few top spikes it is steadier than the Hill estimate.
    """
    slope = _rank_size_slope(lam[::-1][:k])
    if math.isnan(slope):
        return slope
    return 1.0 + 1.0 / slope if slope > 0 else float("inf")


def _rank_size_slope(top: np.ndarray) -> float:
    """Least-squares slope ``s`` of ``ln v_(j) = const - s ln j`` for values in descending order.

    NaN for fewer than 3 values or a non-positive smallest one.
    """
    k = top.size
    if k < 3 or top[-1] <= 0:
        return float("nan")
    x = np.log(np.arange(1, k + 1))
    y = np.log(top)
    xc = x - x.mean()
    return -float(xc @ (y - y.mean())) / float(xc @ xc)


def _frechet_mu(theta2: np.ndarray) -> float:
    """Tail index ``μ`` from the rank–size slope of the spike strengths: ``θ²_(j) ∝ j^(-2/μ)``.

    A large iid entry ``w`` of a heavy-tailed matrix acts as a rank-one spike of strength
    ``θ² ≈ w² / (N σ²)``; the top entries are Fréchet order statistics, ``w_(j) ∝ j^(-1/μ)``, so
    the BBP-inverted strengths of the outliers fall as ``j^(-2/μ)`` whatever ``N``, ``M`` and the
    compression of near-threshold outliers toward ``λ+``.
    """
    slope = _rank_size_slope(theta2)
    if math.isnan(slope):
        return slope
    return 2.0 / slope if slope > 0 else float("inf")


class PhaseClassifier:
    """Rule-based 5+1 phase classifier (sklearn-style; :func:`classify_phase` is the usual entry).

    Parameters
    ----------
    zero_frac_min : float, default=0.1
        Smallest fraction of (near-)zero eigenvalues that counts as rank collapse.
    zero_gap_min : float, default=1.5
        The zero cluster must be separated from the rest by a gap of at least this many decades,
        with at least ``max(3, 5 % M)`` eigenvalues above it (so a few strong spikes over a bulk
        are not mistaken for a collapse).
    deep_gap_min : float, default=6.0
        A gap of at least this many decades counts however few eigenvalues lie above it: the mass
        below sits at the numerical noise floor, i.e. the layer kept only a handful of directions
        (the extreme collapse of [1]_, Sec. 5.6). No spike over a live bulk is 10⁶× larger.
    few_spikes_max : int, default=8
        At most this many spikes make "a few" outliers (``K ≪ M`` in [1]_, Sec. 5.2–5.3).
    spread_min : float, default=0.78
        With at least 3 spikes, a ``spike_spread`` (log-span of the spikes over the log-span
        from ``λ+`` to ``λ_max``) from this value up means the outliers fill the range above the
        edge continuously (a decaying bulk or a heavy tail), not a shelf or separated spikes.
    bulk_ks_max : float, default=0.85
        Largest ``KS · M / ln M`` of the bulk to the MP fit that still counts as an MP bulk.
    tail_alpha_max : float, default=3.8
        Tails with a (rank–size) density exponent below this are ``heavy_tailed``.
    spike_ratio_min : float, default=2.2
        ``λ_max / λ+`` from which outliers are "well above" the edge (``bulk_plus_spikes``).
    tail_mu_max : float, default=3.1
        With at least 3 spikes, a Fréchet tail index of the spike strengths below this means
        ``heavy_tailed`` (the bulk-decay family stays above ≈ 3.1).
    spike_frac_max : float, default=0.04
        With at least 3 spikes, a spike fraction ``n_spikes / M`` below this means a heavy tail
        with μ > 2 (few outliers), not a decaying bulk (a finite fraction leaves the bulk).
    edge_tw_min : float, default=-1.2
        Mean TW position of the three largest bulk eigenvalues from which the edge is "soft"
        (not Tracy–Widom): an MP edge gives ≈ −3.4.

    Examples
    --------
    >>> from analysis.synthetic import make
    >>> clf = PhaseClassifier(spike_ratio_min=2.0)
    >>> clf.predict([make("bleeding_out", 512, 256, seed=0, k=3)])
    ['bleeding_out']
    """

    def __init__(
        self,
        *,
        zero_frac_min: float = 0.1,
        zero_gap_min: float = 1.5,
        deep_gap_min: float = 6.0,
        few_spikes_max: int = 8,
        spread_min: float = 0.78,
        bulk_ks_max: float = 0.85,
        tail_alpha_max: float = 3.8,
        spike_ratio_min: float = 2.2,
        tail_mu_max: float = 3.1,
        spike_frac_max: float = 0.04,
        edge_tw_min: float = -1.2,
    ) -> None:
        self.zero_frac_min = zero_frac_min
        self.zero_gap_min = zero_gap_min
        self.deep_gap_min = deep_gap_min
        self.few_spikes_max = few_spikes_max
        self.spread_min = spread_min
        self.bulk_ks_max = bulk_ks_max
        self.tail_alpha_max = tail_alpha_max
        self.spike_ratio_min = spike_ratio_min
        self.tail_mu_max = tail_mu_max
        self.spike_frac_max = spike_frac_max
        self.edge_tw_min = edge_tw_min

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters (the thresholds), as a dict."""
        return {k: getattr(self, k) for k in _PARAM_NAMES}

    def set_params(self, **params: Any) -> PhaseClassifier:
        """Set thresholds by name; returns ``self``."""
        for k, v in params.items():
            if k not in _PARAM_NAMES:
                raise ValueError(f"PhaseClassifier: unknown parameter {k!r}; valid: {list(_PARAM_NAMES)}")
            setattr(self, k, v)
        return self

    def fit(self, X: Any = None, y: Any = None) -> PhaseClassifier:
        """No calibration is learned (the thresholds are fixed); validates them and returns ``self``."""
        _check_params(self.get_params())
        self.classes_ = np.array(PHASES)
        return self

    def classify(
        self, eigs_or_W: Any, *, q: float | None = None, mp: MPFit | None = None, pl: PowerLawFit | None = None
    ) -> PhaseResult:
        """Classify one matrix or spectrum; see :func:`classify_phase` for the parameters."""
        _check_params(self.get_params())
        lam, q, n, m = _spectrum(eigs_or_W, q)
        return _decide(lam, q, n, m, mp, pl, self.get_params())

    def predict(self, X: Any, *, q: Any = None) -> list[str]:
        """Phase names for a sequence of matrices (or of spectra with ``q`` a matching sequence)."""
        qs = [None] * len(X) if q is None else list(np.broadcast_to(np.asarray(q, dtype=float), (len(X),)))
        return [self.classify(x, q=qq).phase for x, qq in zip(X, qs, strict=True)]


_PARAM_NAMES = (
    "zero_frac_min",
    "zero_gap_min",
    "deep_gap_min",
    "few_spikes_max",
    "spread_min",
    "bulk_ks_max",
    "tail_alpha_max",
    "spike_ratio_min",
    "tail_mu_max",
    "spike_frac_max",
    "edge_tw_min",
)
_PARAM_TABLE = {
    "zero_frac_min": [Interval(float, 0.0, 1.0, "neither")],
    "zero_gap_min": [Interval(float, 0.0, None, "neither")],
    "deep_gap_min": [Interval(float, 0.0, None, "neither")],
    "few_spikes_max": [Interval(int, 0, None)],
    "spread_min": [Interval(float, 0.0, 1.0)],
    "bulk_ks_max": [Interval(float, 0.0, None, "neither")],
    "tail_alpha_max": [Interval(float, 1.0, None, "neither")],
    "spike_ratio_min": [Interval(float, 1.0, None, "neither")],
    "tail_mu_max": [Interval(float, 0.0, None, "neither")],
    "spike_frac_max": [Interval(float, 0.0, 1.0)],
    "edge_tw_min": [Interval(float, None, None)],
}


@validate(_PARAM_TABLE)
def _check_thresholds(
    *, zero_frac_min: float, zero_gap_min: float, deep_gap_min: float, few_spikes_max: int, spread_min: float,
    bulk_ks_max: float, tail_alpha_max: float, spike_ratio_min: float, tail_mu_max: float,
    spike_frac_max: float, edge_tw_min: float,
) -> None:
    """Raise ``ValueError``/``TypeError`` naming the first threshold outside its range."""


def _check_params(params: dict[str, Any]) -> None:
    _check_thresholds(**params)


def _spectrum(eigs_or_W: Any, q: float | None) -> tuple[np.ndarray, float, int | None, int]:
    """Sorted eigenvalues, Q, N (None if unknown) and M from a matrix or a spectrum."""
    arr = eigs_or_W
    is_tensor = hasattr(arr, "detach") and hasattr(arr, "ndim")
    ndim = arr.ndim if (is_tensor or isinstance(arr, np.ndarray)) else np.ndim(arr)
    if ndim == 2:
        from analysis.esd import esd

        shape = tuple(int(s) for s in arr.shape)
        n, m = max(shape), min(shape)
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


def _decide(
    lam: np.ndarray, q: float, n: int | None, m: int, mp: MPFit | None, pl: PowerLawFit | None,
    t: dict[str, Any],
) -> PhaseResult:
    lam = np.clip(lam, 0.0, None)
    ev: dict[str, Any] = {"m": m, "n": n, "q": q, "thresholds": dict(t)}
    warning = ""
    if min(m, n or m) < SMALL_DIM:
        warning = f"matrix too small for a reliable phase (min dim {min(m, n or m)} < {SMALL_DIM})"
    confs: list[float] = []
    rule: list[str] = []

    def done(phase: str) -> PhaseResult:
        conf = min(confs) if confs else 0.5
        if warning:
            conf = min(conf, _SMALL_CONF)
        ev["rule"] = "; ".join(rule)
        ev["warning"] = warning
        return PhaseResult(phase, float(np.clip(conf, 0.0, 1.0)), ev)

    # 1. rank collapse: a separated cluster of (near-)zero eigenvalues
    zf, zg = _zero_gap(lam, max(3, int(math.ceil(0.05 * m))))
    ev["zero_frac"], ev["zero_gap_decades"] = zf, zg
    if lam[-1] <= 0.0:
        rule.append("all eigenvalues are zero")
        confs.append(1.0)
        return done("rank_collapse")
    dzf, dzg = _zero_gap(lam, 1)
    ev["deep_zero_frac"], ev["deep_gap_decades"] = dzf, dzg
    if dzg >= t["deep_gap_min"] and dzf >= t["zero_frac_min"]:
        rule.append(f"{m - round(dzf * m)} eigenvalue(s) above a gap of {dzg:.3g} >= {t['deep_gap_min']} decades; "
                    f"zero_frac {dzf:.3g} >= {t['zero_frac_min']}")
        confs.append(min(_conf(dzf, t["zero_frac_min"], 1.5), _conf(dzg, t["deep_gap_min"], 1.5)))
        return done("rank_collapse")
    collapsed = zf >= t["zero_frac_min"] and zg >= t["zero_gap_min"]
    c_frac = _conf(zf, t["zero_frac_min"], 1.5) if zf > 0 else 1.0
    c_gap = _conf(zg, t["zero_gap_min"], 1.5) if zg > 0 else 1.0
    if collapsed:
        rule.append(f"zero_frac {zf:.3g} >= {t['zero_frac_min']} and gap {zg:.3g} >= {t['zero_gap_min']} decades")
        confs.append(min(c_frac, c_gap))
        return done("rank_collapse")
    # not collapsed: at least one condition fails; the most clearly failing one sets the confidence
    failing = [c for ok, c in ((zf >= t["zero_frac_min"], c_frac), (zg >= t["zero_gap_min"], c_gap)) if not ok]
    confs.append(max(failing))

    # 2. Marchenko–Pastur bulk and spikes
    if mp is None:
        mp = fit_marchenko_pastur(lam, q=q)
    if not mp.success:
        warning = warning or f"MP fit failed: {mp.message}"
        rule.append("no MP fit")
        confs.append(0.3)
        return done("random_like")
    k = int(mp.n_spikes)
    ratio = float(lam[-1] / mp.lambda_plus)
    ks_norm = float(mp.ks_bulk * m / math.log(max(m, 3)))
    ev.update(
        sigma2=float(mp.sigma2), lambda_plus=float(mp.lambda_plus), lambda_max=float(lam[-1]),
        n_spikes=k, spike_frac=k / m, spike_ratio=ratio, mp_soft_rank=float(mp.soft_rank),
        bulk_ks=float(mp.ks_bulk), bulk_ks_norm=ks_norm,
        edge_gap=float(mp.spikes[0] / mp.lambda_plus) if k else float("nan"),
    )
    if pl is None:
        pl = fit_power_law(lam)
    ev["alpha"], ev["D"] = float(pl.alpha), float(pl.D)
    k_tail = int(min(max(k // 2, 3), m - 1))
    tail_alpha = _rank_size_alpha(lam, k_tail)
    ev["tail_alpha"] = tail_alpha
    ev["tail_alpha_hill"] = float(hill_estimator(lam, k=k_tail)) if m > 4 else float("nan")
    spread = 0.0
    if k >= 2 and ratio > 1.0:
        spread = float(math.log(lam[-1] / mp.spikes[0]) / math.log(ratio))
    ev["spike_spread"] = spread

    # soft edge: mean position of the three largest bulk eigenvalues, in Tracy–Widom units from λ+
    s_tw = float(mp.tw_margin / TW_MARGIN_K)
    nb = m - k
    edge_tw = float(np.mean(lam[nb - 3 : nb] - mp.lambda_plus) / s_tw) if nb >= 3 and s_tw > 0 else float("nan")
    ev["edge_tw"] = edge_tw
    # Fréchet tail index of the outliers: rank–size slope of their BBP strengths θ²
    tail_mu = _frechet_mu(_bbp_theta2(lam[::-1][:k], float(mp.sigma2), q)) if k >= 3 else float("nan")
    ev["tail_mu"] = tail_mu

    def tail_split(why: str) -> PhaseResult:
        # heavy_tailed if any of the tail tests says so (the spike-count tests need >= 3 spikes)
        rule.append(why)
        tests = [
            ("tail_alpha", tail_alpha, t["tail_alpha_max"], 1.25, True),
            ("tail_mu", tail_mu, t["tail_mu_max"], 1.25, k >= 3),
            ("spike_frac", k / m, t["spike_frac_max"], 1.5, k >= 3),
        ]
        used = [(n, v, thr, _conf(v, thr, tol)) for n, v, thr, tol, ok in tests if ok and np.isfinite(v)]
        hits = [u for u in used if u[1] < u[2]]
        if hits:
            confs.append(max(c for *_, c in hits))
            rule.append(", ".join(f"{n} {v:.3g} < {thr}" for n, v, thr, _ in hits))
            return done("heavy_tailed")
        confs.append(min((c for *_, c in used), default=0.5))
        rule.append(", ".join(f"{n} {v:.3g} >= {thr}" for n, v, thr, _ in used))
        return done("bulk_decay")

    bad_bulk = ks_norm > t["bulk_ks_max"]
    c_bulk = _conf(ks_norm, t["bulk_ks_max"], 1.3)
    if k == 0 and not bad_bulk:
        rule.append("no eigenvalue above λ+ + TW margin and an MP bulk")
        confs.append(c_bulk)
        return done("random_like")

    many = k > t["few_spikes_max"]
    continuum = k >= 3 and spread >= t["spread_min"]
    c_many = _conf(k + 0.5, t["few_spikes_max"] + 0.5, 1.5)
    c_cont = _conf(spread, t["spread_min"], 1.3) if k >= 3 else 1.0
    if many or continuum or bad_bulk:
        why = []
        if many:
            why.append(f"{k} spikes > {t['few_spikes_max']}")
        if continuum:
            why.append(f"spikes spread {spread:.3g} >= {t['spread_min']} from the edge up")
        if bad_bulk:
            why.append(f"bulk KS·M/lnM {ks_norm:.3g} > {t['bulk_ks_max']}")
        confs.append(max(c_many if many else 0.0, c_cont if continuum else 0.0, c_bulk if bad_bulk else 0.0))
        return tail_split("heavy mass above λ+ (" + ", ".join(why) + ")")

    c_soft = _conf_lin(edge_tw, t["edge_tw_min"], 1.0)
    if edge_tw >= t["edge_tw_min"]:
        confs.append(c_soft)
        why = f"{k} spike(s) on a soft (not Tracy–Widom) edge: edge_tw {edge_tw:.3g} >= {t['edge_tw_min']}"
        if k >= 3:
            return tail_split(why)
        rule.append(why)
        return done("heavy_tailed")

    rule.append(f"{k} spike(s) on an MP bulk")
    confs.append(min(c_many, c_cont, c_bulk, c_soft))
    confs.append(_conf(ratio, t["spike_ratio_min"], 1.2))
    if ratio >= t["spike_ratio_min"]:
        rule.append(f"λmax/λ+ {ratio:.3g} >= {t['spike_ratio_min']}")
        return done("bulk_plus_spikes")
    rule.append(f"λmax/λ+ {ratio:.3g} < {t['spike_ratio_min']}")
    return done("bleeding_out")


_DEFAULT = PhaseClassifier()


def classify_phase(
    eigs_or_W: Any, *, q: float | None = None, mp: MPFit | None = None, pl: PowerLawFit | None = None
) -> PhaseResult:
    """Label a weight matrix (or its ESD) with one of the 5+1 phases, with confidence and evidence.

    Parameters
    ----------
    eigs_or_W : array-like of shape (M,) or (n_rows, n_cols), or torch.Tensor
        Eigenvalues of ``WᵀW / N`` (any order), or the matrix itself, whose ESD is then computed
        with :func:`analysis.esd.esd` and ``Q`` taken from its shape.
    q : float, optional
        Aspect ratio ``Q = N / M >= 1``; required with eigenvalues, checked against the shape with
        a matrix.
    mp : MPFit, optional
        A Marchenko–Pastur fit of the same spectrum (skips refitting).
    pl : PowerLawFit, optional
        A power-law fit of the same spectrum (skips refitting).

    Returns
    -------
    PhaseResult
        ``phase`` (a name in :data:`PHASES`), ``confidence`` in [0, 1] and ``evidence``.

    Raises
    ------
    ValueError
        Eigenvalues without ``q``, ``q < 1``, NaN/Inf values, or input that is neither 1-D nor 2-D.

    Notes
    -----
    Deterministic. The cost beyond the fits is O(M) (one gap scan, a Hill estimate and two
    rank–size regressions over the spikes); with ``mp`` and ``pl`` given it is negligible next to
    the eigendecomposition.
    """
    return _DEFAULT.classify(eigs_or_W, q=q, mp=mp, pl=pl)
