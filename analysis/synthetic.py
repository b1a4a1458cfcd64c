"""Synthetic weight matrices for each of the 5+1 phases of training (the classifier's test bed).

Every generator follows the "noise plus signal" model of Martin & Mahoney [1]_ (Eqn. 13,
``W ≃ W_rand + Δ_sig``), with the conventions of :mod:`analysis.marchenko_pastur`: ``N = max(n, m)``,
``M = min(n, m)``, ``c = M / N = 1/Q``, eigenvalues of ``WᵀW / N``, noise of element-wise scale
``σ`` (``sigma``), spikes of strength ``θ`` in units of ``σ`` added as ``√N θ σ u vᵀ`` with
orthonormal ``u, v``. A rank-one spike leaves the bulk iff ``θ > c^(1/4) = (M/N)^(1/4)``
(the BBP threshold) and then sits at ``λ = σ²(1 + θ²)(1 + c/θ²)`` (:func:`bbp_outlier`).

Parameter families (``make(phase, n, m, seed, **params)``; defaults in brackets; the ranges
sampled by :func:`sample_params` — the benchmark suite — in braces):

``random_like``
    iid entries of variance ``σ²``. ``sigma`` [1.0] {log-uniform 1e-2…1e2},
    ``dist`` ['normal'] {'normal', 'uniform', 'rademacher'}.
``bleeding_out``
    A shelf of ``k`` [3] {1…min(6, M/16)} equal spikes just past the BBP threshold. Strength as
    ``excess`` [0.25]: the outliers' predicted position is ``λ+ (1 + excess)``; {``excess``
    uniform in [max(0.08, 10 s_TW/λ+), 0.5]} where ``s_TW`` is the Tracy–Widom scale, i.e. at
    least 10 TW units (so it is distinguishable from the TW fluctuations of ``λ_max``) and at most
    half of ``λ+`` past the edge. Equivalently ``strength = θ / c^(1/4)`` may be given instead
    (≈ 1.3–2.0 for these excesses).
``bulk_plus_spikes``
    ``k`` [3] {1…5} spikes well above threshold: outlier positions ``λ+ · ratio`` with ``ratio``
    [4.0] {log-uniform 2.5…12}, the ``k`` ratios spread geometrically between ``ratio`` and
    ``ratio^0.7`` (so the smallest is still ≥ 1.9 λ+). ``strength`` (θ / c^(1/4)) may be given
    instead of ``ratio``.
``bulk_decay``
    ``K = max(frac · M, 16)`` (at most M/2) graded spikes, ``frac`` [0.25] {0.15…0.35}, whose
    predicted positions decay as a power law from the top down to the bulk edge,
    ``λ_j = λ+ (K / j)^(1/(a-1))``, ``j = 1..K``, ``a`` = ``tail_alpha`` [5.0] {4.0…6.5}: the
    top of the ESD is a tail of density exponent ``a`` (the paper's α ≈ 4–6) that runs
    continuously into the bulk edge, with no gap — the edge "decays" into the tail. ``top_ratio``
    [None] replaces the top position ``K^(1/(a-1))`` (in units of λ+) when given; the graded
    strengths that then fall below the edge are sub-threshold spikes that deform the bulk. The
    noise may itself be moderately heavy: Student-t entries with ``noise_df`` [None] {None half
    the time, else 5…12} degrees of freedom (scaled to unit variance).
``heavy_tailed``
    iid heavy-tailed entries with tail index ``mu`` [2.0] {1.0…``MU_MAX`` = 2.75}: ``dist``
    ['pareto'] {'pareto', 'student_t'}; Pareto entries are ``±U^(-1/μ)``, Student-t has ``μ``
    degrees of freedom. ``make`` accepts any μ in [0.5, 10]. The ESD tail is a power law with
    ``α ≈ 1 + μ/2`` [1]_ (Sec. 3.2). For ``μ > 2`` the variance is finite and the heavy tail shows
    only through a few Fréchet-distributed outliers and a soft (non-Tracy–Widom) bulk edge whose
    number and size shrink relative to M as μ grows; how many there are depends on the number of
    entries N·M. The sampled range stops at 2.75 because that is as far as
    :func:`analysis.phases.classify_phase` keeps ≥ 93 % recall on each benchmark suite (which mix
    sizes down to M = 48; at M ≤ 100 alone it is lower). Measured recall beyond it
    (``benchmarks/bench_phases.py``, "heavy_grid"; ``docs/phases.md``): μ = 3.0 is recognized at
    M ≥ 256 in ≈ 90–100 % of the matrices, at M = 64–128 in roughly 40–75 %; μ = 3.5 only about
    half the time even at M = 512–1024, because such a matrix often has no outlier at all and an
    edge that passes for Tracy–Widom — from its eigenvalues it is then indistinguishable from
    ``random_like``/``bleeding_out``.
``rank_collapse``
    Rank ``r = rank_frac · M`` [0.3] {0.1…0.7} product of Gaussians (entries of variance ``σ²``)
    plus optional small noise ``noise`` [0.0] {0 a third of the time, else log-uniform 1e-4…3e-3}
    relative to ``σ``, so that ``(1 - rank_frac) · M`` eigenvalues are (near) zero.

All randomness comes from ``seed`` (an int, SeedSequence or Generator); nothing global is seeded.

References
----------
.. [1] Martin & Mahoney, "Implicit Self-Regularization in Deep Neural Networks" (2018), Table 7 and
       Sec. 5 (``shared/papers/implicit-self-regularization.txt``).

Examples
--------
>>> from analysis.synthetic import make
>>> W = make("bulk_plus_spikes", 400, 200, seed=0, k=2)
>>> W.shape
(400, 200)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from analysis._validation import Interval, Options, check_random_state, validate
from analysis.marchenko_pastur import _edges, _tw, bbp_strength
from analysis.phases import PHASES

__all__ = ["MU_MAX", "make", "sample_params"]

#: Upper end of the tail index μ sampled for ``heavy_tailed`` (see the module docstring).
MU_MAX: float = 2.75


_ALLOWED: dict[str, set[str]] = {
    "random_like": {"sigma", "dist"},
    "bleeding_out": {"sigma", "k", "excess", "strength"},
    "bulk_plus_spikes": {"sigma", "k", "ratio", "strength"},
    "bulk_decay": {"sigma", "frac", "tail_alpha", "top_ratio", "noise_df"},
    "heavy_tailed": {"sigma", "mu", "dist"},
    "rank_collapse": {"sigma", "rank_frac", "noise"},
}


@validate(
    {
        "phase": [Options(PHASES)],
        "n": [Interval(int, 2, None)],
        "m": [Interval(int, 2, None)],
        "seed": ["random_state"],
    }
)
def make(phase: str, n: int, m: int, seed: Any = None, **params: Any) -> np.ndarray:
    """Draw an ``n × m`` matrix of the named phase.

    Parameters
    ----------
    phase : {'random_like', 'bleeding_out', 'bulk_plus_spikes', 'bulk_decay', 'heavy_tailed', 'rank_collapse'}
    n, m : int
        Shape of the result; ``N = max(n, m)`` and ``M = min(n, m)`` enter the formulas.
    seed : None, int, SeedSequence or numpy.random.Generator
        The only source of randomness.
    **params
        The family's parameters (module docstring); unknown names raise ``TypeError``.

    Returns
    -------
    ndarray of shape (n, m), float64

    Raises
    ------
    TypeError
        For a parameter the family does not have.
    ValueError
        For a parameter outside its range.
    """
    extra = set(params) - _ALLOWED[phase]
    if extra:
        raise TypeError(
            f"make: phase {phase!r} takes parameters {sorted(_ALLOWED[phase])}; got unknown {sorted(extra)}"
        )
    rng = check_random_state(seed)
    big, small = max(n, m), min(n, m)
    sigma = float(params.pop("sigma", 1.0))
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"make: parameter 'sigma' must be a positive float; got {sigma!r}")
    W = _BUILDERS[phase](big, small, rng, **params) * sigma
    return W if n >= m else W.T.copy()


# --------------------------------------------------------------------------- builders (N >= M)


def _check(name: str, value: float, lo: float, hi: float) -> float:
    v = float(value)
    if not (lo <= v <= hi):
        raise ValueError(f"make: parameter {name!r} must be in [{lo:g}, {hi:g}]; got {value!r}")
    return v


def _check_k(k: Any, m: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= m // 2:
        raise ValueError(f"make: parameter 'k' must be an int in [1, {m // 2}]; got {k!r}")
    return int(k)


def _unit_columns(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """``k`` orthonormal columns in R^n (QR of a Gaussian matrix)."""
    qmat, r = np.linalg.qr(rng.standard_normal((n, k)))
    return qmat * np.sign(np.diag(r))


def _spiked(rng: np.random.Generator, n: int, m: int, thetas: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """``noise + √N Σ θ_j u_j v_jᵀ`` (unit-variance noise, θ in units of σ)."""
    k = thetas.size
    u = _unit_columns(rng, n, k)
    v = _unit_columns(rng, m, k)
    return noise + np.sqrt(n) * (u * thetas) @ v.T


def _random_like(n: int, m: int, rng: np.random.Generator, dist: str = "normal") -> np.ndarray:
    if dist == "normal":
        return rng.standard_normal((n, m))
    if dist == "uniform":
        return rng.uniform(-np.sqrt(3.0), np.sqrt(3.0), size=(n, m))
    if dist == "rademacher":
        return rng.choice(np.array([-1.0, 1.0]), size=(n, m))
    raise ValueError(f"make: parameter 'dist' must be one of 'normal', 'uniform', 'rademacher'; got {dist!r}")


def _bleeding_out(
    n: int, m: int, rng: np.random.Generator, k: int = 3, excess: float | None = None,
    strength: float | None = None,
) -> np.ndarray:
    k = _check_k(k, m)
    q = n / m
    if strength is not None and excess is not None:
        raise ValueError("make: give 'excess' or 'strength', not both")
    if strength is not None:
        theta = _check("strength", strength, 0.0, 1e3) * (m / n) ** 0.25
    else:
        ex = _check("excess", 0.25 if excess is None else excess, 0.0, 10.0)
        theta = bbp_strength(_edges(1.0, q)[1] * (1.0 + ex), q)
    return _spiked(rng, n, m, np.full(k, theta), rng.standard_normal((n, m)))


def _bulk_plus_spikes(
    n: int, m: int, rng: np.random.Generator, k: int = 3, ratio: float | None = None,
    strength: float | None = None,
) -> np.ndarray:
    k = _check_k(k, m)
    q = n / m
    if strength is not None and ratio is not None:
        raise ValueError("make: give 'ratio' or 'strength', not both")
    if strength is not None:
        top = _check("strength", strength, 0.0, 1e4) * (m / n) ** 0.25
        thetas = top * np.geomspace(1.0, 0.7, k) if k > 1 else np.array([top])
    else:
        r = _check("ratio", 4.0 if ratio is None else ratio, 1.0, 1e6)
        lp = _edges(1.0, q)[1]
        ratios = np.geomspace(r, r**0.7, k) if k > 1 else np.array([r])
        thetas = np.array([bbp_strength(lp * x, q) for x in ratios])
    return _spiked(rng, n, m, thetas, rng.standard_normal((n, m)))


def _bulk_decay(
    n: int, m: int, rng: np.random.Generator, frac: float = 0.25, tail_alpha: float = 5.0,
    top_ratio: float | None = None, noise_df: float | None = None,
) -> np.ndarray:
    frac = _check("frac", frac, 0.01, 0.5)
    a = _check("tail_alpha", tail_alpha, 1.5, 20.0)
    q = n / m
    kk = min(max(int(round(frac * m)), 16), m // 2)
    lp = _edges(1.0, q)[1]
    decay = np.arange(1, kk + 1) ** (-1.0 / (a - 1.0))
    top = kk ** (1.0 / (a - 1.0)) if top_ratio is None else _check("top_ratio", top_ratio, 1.0, 1e4)
    targets = lp * top * decay
    c4 = (m / n) ** 0.25
    # above the edge: invert the BBP map; below it: graded sub-threshold strengths
    thetas = np.array([bbp_strength(t, q) if t >= lp else c4 * np.sqrt(t / lp) for t in targets])
    if noise_df is None:
        noise = rng.standard_normal((n, m))
    else:
        df = _check("noise_df", noise_df, 2.5, 1e6)
        noise = rng.standard_t(df, size=(n, m)) * np.sqrt((df - 2.0) / df)
    return _spiked(rng, n, m, thetas, noise)


def _heavy_tailed(n: int, m: int, rng: np.random.Generator, mu: float = 2.0, dist: str = "pareto") -> np.ndarray:
    mu = _check("mu", mu, 0.5, 10.0)
    if dist == "pareto":
        x = rng.uniform(size=(n, m)) ** (-1.0 / mu)
        return x * rng.choice(np.array([-1.0, 1.0]), size=(n, m))
    if dist == "student_t":
        return rng.standard_t(mu, size=(n, m))
    raise ValueError(f"make: parameter 'dist' must be 'pareto' or 'student_t'; got {dist!r}")


def _rank_collapse(
    n: int, m: int, rng: np.random.Generator, rank_frac: float = 0.3, noise: float = 0.0
) -> np.ndarray:
    rank_frac = _check("rank_frac", rank_frac, 0.0, 0.95)
    noise = _check("noise", noise, 0.0, 0.1)
    r = max(1, int(round(rank_frac * m)))
    W = rng.standard_normal((n, r)) @ rng.standard_normal((r, m)) / np.sqrt(r)
    if noise > 0:
        W += noise * rng.standard_normal((n, m))
    return W


_BUILDERS = {
    "random_like": _random_like,
    "bleeding_out": _bleeding_out,
    "bulk_plus_spikes": _bulk_plus_spikes,
    "bulk_decay": _bulk_decay,
    "heavy_tailed": _heavy_tailed,
    "rank_collapse": _rank_collapse,
}


# --------------------------------------------------------------------------- random parameter sets


@validate(
    {
        "phase": [Options(PHASES)],
        "n": [Interval(int, 2, None)],
        "m": [Interval(int, 2, None)],
        "rng": ["random_state"],
    }
)
def sample_params(phase: str, n: int, m: int, rng: Any = None) -> dict[str, Any]:
    """Draw one parameter set of the family ``phase`` for an ``n × m`` matrix (ranges in braces above).

    Parameters
    ----------
    phase : str
        One of :data:`analysis.phases.PHASES`.
    n, m : int
        Shape of the matrix the parameters are for (spike ranges depend on ``M`` and ``Q``).
    rng : None, int or numpy.random.Generator
        Source of randomness.

    Returns
    -------
    dict
        Keyword arguments for :func:`make`.

    Examples
    --------
    >>> p = sample_params("heavy_tailed", 512, 256, rng=0)
    >>> sorted(p)
    ['dist', 'mu', 'sigma']
    """
    g = check_random_state(rng)
    big, small = max(n, m), min(n, m)
    q = big / small
    sigma = float(10.0 ** g.uniform(-2.0, 2.0))
    if phase == "random_like":
        return {"sigma": sigma, "dist": str(g.choice(["normal", "uniform", "rademacher"]))}
    if phase == "bleeding_out":
        lp = _edges(1.0, q)[1]
        lo = min(max(0.08, 10.0 * _tw(1.0, q, small) / lp), 0.45)
        k = int(g.integers(1, max(1, min(6, small // 16)) + 1))
        return {"sigma": sigma, "k": k, "excess": float(g.uniform(lo, 0.5))}
    if phase == "bulk_plus_spikes":
        return {
            "sigma": sigma,
            "k": int(g.integers(1, 6)),
            "ratio": float(np.exp(g.uniform(np.log(2.5), np.log(12.0)))),
        }
    if phase == "bulk_decay":
        return {
            "sigma": sigma,
            "frac": float(g.uniform(0.15, 0.35)),
            "tail_alpha": float(g.uniform(4.0, 6.5)),
            "noise_df": None if g.uniform() < 0.5 else float(g.uniform(5.0, 12.0)),
        }
    if phase == "heavy_tailed":
        return {"sigma": sigma, "mu": float(g.uniform(1.0, MU_MAX)), "dist": str(g.choice(["pareto", "student_t"]))}
    return {
        "sigma": sigma,
        "rank_frac": float(g.uniform(0.1, 0.7)),
        "noise": 0.0 if g.uniform() < 1 / 3 else float(10.0 ** g.uniform(-4.0, np.log10(3e-3))),
    }
