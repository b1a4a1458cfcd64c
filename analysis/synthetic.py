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
    ``λ_j = λ+ (K / j)^(1/(a-1))``, ``j = 1..K``, ``a`` = ``tail_alpha`` [5.0] {4.5…7.0}: the
    top of the ESD is a tail of density exponent ``a`` (the paper's α ≈ 4–6) that runs
    continuously into the bulk edge, with no gap — the edge "decays" into the tail. ``top_ratio``
    [None] replaces the top position ``K^(1/(a-1))`` (in units of λ+) when given; the graded
    strengths that then fall below the edge are sub-threshold spikes that deform the bulk. The
    noise may itself be moderately heavy: Student-t entries with ``noise_df`` [None] {None half
    the time, else 5…12} degrees of freedom (scaled to unit variance).
``heavy_tailed``
    iid heavy-tailed entries with tail index ``mu`` [2.0] {1.0…``MU_MAX`` = 2.25}: ``dist``
    ['pareto'] {'pareto', 'student_t'}; Pareto entries are ``±U^(-1/μ)``, Student-t has ``μ``
    degrees of freedom. ``make`` accepts any μ in [0.5, 10]. The ESD tail is a power law with
    ``α ≈ 1 + μ/2`` [1]_ (Sec. 3.2). For ``μ > 2`` the variance is finite and the heavy tail shows
    only through a few Fréchet-distributed outliers and a soft (non-Tracy–Widom) bulk edge whose
    number and size shrink relative to M as μ grows; how many there are depends on the number of
    entries N·M. The sampled range stops at 2.25: beyond it the power-law fit of a finite matrix
    reads α ≈ 3.5–6 (μ = 2.5 at M = 512) and λmax is only 2–3 λ+, i.e. the ESD no longer shows
    the heavy-tailed signature ("no good λ+, λmax ≫ λ+, α ≈ 2–4", [1]_ Table 7) — from its
    eigenvalues such a matrix is a bulk with a few graded outliers. Recall beyond the range is
    measured in ``benchmarks/bench_phases.py`` ("heavy_grid").
``rank_collapse``
    Rank ``r = rank_frac · M`` [0.3] {0.1…0.7} product of Gaussians (entries of variance ``σ²``)
    plus optional small noise ``noise`` [0.0] {0 a third of the time, else log-uniform 1e-4…3e-3}
    relative to ``σ``, so that ``(1 - rank_frac) · M`` eigenvalues are (near) zero.

Further constructions (:func:`make_family`, :data:`FAMILIES`) test the classifier on inputs its
phase families do not cover — nuisance deformations of pure noise, many spikes, graded bleeding
with far spikes, power-law population covariances, PyTorch initializations and a few
multiplicative (population-covariance) variants of the phases. Each states the phase it should
get (:data:`FAMILY_PHASE`); :func:`sample_family_params` draws from the ranges given there.

``scale_deformed`` (random_like)
    Gaussian noise whose rows or columns (``axis`` ['cols'] {'rows', 'cols'}) are scaled by
    ``U[1 - delta, 1 + delta]``, ``delta`` [0.2] {0…0.2}. The ESD is a deformed MP law: a sharp
    square-root edge somewhat beyond the iid ``λ+``.
``lognormal_norms`` (random_like)
    Rows or columns scaled by ``exp(s z)``, ``z ~ N(0, 1)``, ``s`` [0.1] {0.03…0.15}.
``ar1_correlated`` (random_like)
    AR(1)-correlated columns or rows: ``x_j = ρ x_{j-1} + √(1-ρ²) g_j``, ``rho`` [0.2] {0…0.2}.
``torch_init`` (random_like)
    A freshly initialized PyTorch weight (``init`` ['linear_default'], one of
    :data:`TORCH_INITS`; ``sparsity`` [0.5] for 'sparse'), read as an ``(n, m)`` = (out, in)
    matrix. 'orthogonal', 'eye' and 'dirac' give a point-mass ESD (all eigenvalues equal).
``iid_other`` (random_like)
    iid entries of another law with finite fourth moment: ``dist`` ['laplace'] {'laplace',
    'logistic', 'student_t8'}.
``many_spikes`` (bulk_plus_spikes)
    ``k`` [12] {1…max(1, ⌊0.04 M⌋)} spikes whose outliers sit at ``ratio · λ+`` with ratios drawn
    log-uniformly from [``ratio_lo``, ``ratio_hi``] [2.5, 12] — clearly separated from the edge.
``graded_bleed`` (bulk_decay)
    A graded mass of ``K = max(frac · M, 8)`` outliers, ``frac`` [0.1] {0.05…0.15}, running from the
    edge into a decaying tail (positions ``λ+ (K/j)^(1/(a-1))``, ``tail_alpha`` [5.0] {4.5…7.0}),
    plus ``n_far`` [2] {0…4} far spikes at ``far_ratio`` λ+ drawn log-uniformly from [5, 20].
``powerlaw_population`` (heavy_tailed for a ≲ 3.3)
    ``W = G · C^(1/2)`` with population eigenvalues ``c_j ∝ j^(-1/(a-1))`` (``a`` [3.0]
    {1.8…3.3}): a population spectrum of density exponent ``a``, hence an ESD tail of exponent ≈
    a. Larger ``a`` (up to 8 and beyond) moves it through bulk_decay toward deformed noise; the
    benchmark's monotonicity sweep uses that.
``spiked_population`` (bulk_plus_spikes)
    The multiplicative spiked model ``W = G Σ^(1/2)``, ``Σ = I + Σ_k (ℓ_k - 1) v_k v_kᵀ``, with
    ``k`` [3] {1…5} population spikes whose outliers sit at ``ratio`` λ+ {2.5…12}.
``shelf_population`` (bleeding_out)
    The same with ``k`` [3] {1…4} equal population spikes just past the BBP threshold: outliers at
    ``λ+ (1 + excess)``, ``excess`` [0.25] {max(0.08, 10 s_TW/λ+)…0.5}.
``graded_population`` (bulk_decay)
    A population covariance with ``K = frac · M`` graded eigenvalues above the BBP threshold
    (``frac`` [0.2] {0.12…0.3}, density exponent ``tail_alpha`` [5.5] {4.5…7.0}) on an identity
    bulk.
``powerlaw_spectrum`` (heavy_tailed)
    ``W = √N · U diag(s) Vᵀ + noise · G`` with Haar ``U, V``, singular values ``s_j² ∝ j^(-1/(a-1))``
    (``a`` [2.5] {1.8…3.3}) and weak Gaussian noise ``noise`` [0.05] {0.01…0.1} (relative to the
    signal's rms entry): "W_rand small, Δ strongly correlated".

All randomness comes from ``seed`` (an int, SeedSequence or Generator); nothing global is seeded.

References
----------
.. [1] Martin & Mahoney, "Implicit Self-Regularization in Deep Neural Networks" (2018), Table 7 and
       Sec. 5 (``shared/papers/implicit-self-regularization.txt``).

Examples
--------
>>> from htsweep.analysis.synthetic import make
>>> W = make("bulk_plus_spikes", 400, 200, seed=0, k=2)
>>> W.shape
(400, 200)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from htsweep.analysis._validation import Interval, Options, check_random_state, validate
from htsweep.analysis.marchenko_pastur import _edges, _tw, bbp_strength
from htsweep.analysis.phases import PHASES

__all__ = ["FAMILIES", "FAMILY_PHASE", "MU_MAX", "TORCH_INITS", "make", "make_family", "sample_family_params",
           "sample_params", "trained_like"]

#: Upper end of the tail index μ sampled for ``heavy_tailed`` (see the module docstring).
MU_MAX: float = 2.25


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
            "tail_alpha": float(g.uniform(4.5, 7.0)),
            "noise_df": None if g.uniform() < 0.5 else float(g.uniform(5.0, 12.0)),
        }
    if phase == "heavy_tailed":
        return {"sigma": sigma, "mu": float(g.uniform(1.0, MU_MAX)), "dist": str(g.choice(["pareto", "student_t"]))}
    return {
        "sigma": sigma,
        "rank_frac": float(g.uniform(0.1, 0.7)),
        "noise": 0.0 if g.uniform() < 1 / 3 else float(10.0 ** g.uniform(-4.0, np.log10(3e-3))),
    }


# --------------------------------------------------------------------------- further constructions


#: Freshly initialized PyTorch weights accepted by the ``torch_init`` family.
TORCH_INITS: tuple[str, ...] = (
    "linear_default", "conv2d_default", "embedding_default", "kaiming_normal", "kaiming_uniform",
    "xavier_normal", "xavier_uniform", "trunc_normal", "normal", "uniform", "sparse", "orthogonal",
    "eye", "dirac",
)

#: Each construction of :func:`make_family` and the phase it should be given.
FAMILY_PHASE: dict[str, str] = {
    "scale_deformed": "random_like",
    "lognormal_norms": "random_like",
    "ar1_correlated": "random_like",
    "torch_init": "random_like",
    "iid_other": "random_like",
    "many_spikes": "bulk_plus_spikes",
    "graded_bleed": "bulk_decay",
    "powerlaw_population": "heavy_tailed",
    "spiked_population": "bulk_plus_spikes",
    "shelf_population": "bleeding_out",
    "graded_population": "bulk_decay",
    "powerlaw_spectrum": "heavy_tailed",
}
FAMILIES: tuple[str, ...] = tuple(FAMILY_PHASE)


def _along(G: np.ndarray, factors: np.ndarray, axis: str) -> np.ndarray:
    """Scale the rows (``axis='rows'``, factors of shape (n,)) or columns of ``G``."""
    if axis == "rows":
        return G * factors[:, None]
    if axis == "cols":
        return G * factors[None, :]
    raise ValueError(f"make_family: parameter 'axis' must be 'rows' or 'cols'; got {axis!r}")


def _n_along(n: int, m: int, axis: str) -> int:
    if axis not in ("rows", "cols"):
        raise ValueError(f"make_family: parameter 'axis' must be 'rows' or 'cols'; got {axis!r}")
    return n if axis == "rows" else m


def _scale_deformed(n: int, m: int, rng: np.random.Generator, delta: float = 0.2, axis: str = "cols") -> np.ndarray:
    delta = _check("delta", delta, 0.0, 0.9)
    k = _n_along(n, m, axis)
    return _along(rng.standard_normal((n, m)), rng.uniform(1.0 - delta, 1.0 + delta, size=k), axis)


def _lognormal_norms(n: int, m: int, rng: np.random.Generator, s: float = 0.1, axis: str = "rows") -> np.ndarray:
    s = _check("s", s, 0.0, 2.0)
    k = _n_along(n, m, axis)
    return _along(rng.standard_normal((n, m)), np.exp(s * rng.standard_normal(k)), axis)


def _ar1_correlated(n: int, m: int, rng: np.random.Generator, rho: float = 0.2, axis: str = "cols") -> np.ndarray:
    rho = _check("rho", rho, 0.0, 0.99)
    _n_along(n, m, axis)
    G = rng.standard_normal((n, m)) if axis == "cols" else rng.standard_normal((m, n))
    out = np.empty_like(G)
    out[:, 0] = G[:, 0]
    a = np.sqrt(1.0 - rho * rho)
    for j in range(1, G.shape[1]):  # stationary AR(1) along the axis: unit variance, lag-1 correlation ρ
        out[:, j] = rho * out[:, j - 1] + a * G[:, j]
    return out if axis == "cols" else out.T.copy()


def _torch_init(n: int, m: int, rng: np.random.Generator, init: str = "linear_default",
                sparsity: float = 0.5) -> np.ndarray:
    import torch
    from torch import nn

    if init not in TORCH_INITS:
        raise ValueError(f"make_family: parameter 'init' must be one of {list(TORCH_INITS)}; got {init!r}")
    sparsity = _check("sparsity", sparsity, 0.0, 0.95)
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    out, inp = n, m
    if init == "linear_default":
        w = torch.empty(out, inp)
        nn.init.kaiming_uniform_(w, a=5**0.5, generator=gen)  # what nn.Linear.reset_parameters does
        return w.double().numpy()
    if init in ("conv2d_default", "dirac"):
        k = 3 if inp % 9 == 0 else 1  # reshaped (out, in·k·k) kernel; 1×1 when m is not a multiple of 9
        w = torch.empty(out, inp // (k * k), k, k)
        if init == "dirac":
            nn.init.dirac_(w)
        else:
            nn.init.kaiming_uniform_(w, a=5**0.5, generator=gen)
        return w.reshape(out, -1).double().numpy()
    w = torch.empty(out, inp)
    if init == "embedding_default":
        nn.init.normal_(w, generator=gen)
    elif init == "kaiming_normal":
        nn.init.kaiming_normal_(w, nonlinearity="relu", generator=gen)
    elif init == "kaiming_uniform":
        nn.init.kaiming_uniform_(w, nonlinearity="relu", generator=gen)
    elif init == "xavier_normal":
        nn.init.xavier_normal_(w, generator=gen)
    elif init == "xavier_uniform":
        nn.init.xavier_uniform_(w, generator=gen)
    elif init == "trunc_normal":
        nn.init.trunc_normal_(w, std=0.02, a=-0.04, b=0.04, generator=gen)  # truncated at 2σ
    elif init == "normal":
        nn.init.normal_(w, std=0.02, generator=gen)
    elif init == "uniform":
        nn.init.uniform_(w, -0.05, 0.05, generator=gen)
    elif init == "sparse":
        nn.init.sparse_(w, sparsity=sparsity, std=0.01, generator=gen)
    elif init == "orthogonal":
        nn.init.orthogonal_(w, generator=gen)
    else:  # eye
        nn.init.eye_(w)
    return w.double().numpy()


def _iid_other(n: int, m: int, rng: np.random.Generator, dist: str = "laplace") -> np.ndarray:
    if dist == "laplace":
        return rng.laplace(size=(n, m))
    if dist == "logistic":
        return rng.logistic(size=(n, m))
    if dist == "student_t8":
        return rng.standard_t(8.0, size=(n, m))
    raise ValueError(f"make_family: parameter 'dist' must be 'laplace', 'logistic' or 'student_t8'; got {dist!r}")


def _spikes_at(n: int, m: int, rng: np.random.Generator, ratios: np.ndarray) -> np.ndarray:
    """Unit-variance noise plus additive spikes whose outliers sit at ``ratios · λ+`` (N ≥ M)."""
    q = n / m
    lp = _edges(1.0, q)[1]
    thetas = np.array([bbp_strength(max(float(r), 1.0) * lp, q) for r in ratios])
    return _spiked(rng, n, m, thetas, rng.standard_normal((n, m)))


def _many_spikes(n: int, m: int, rng: np.random.Generator, k: int = 12, ratio_lo: float = 2.5,
                 ratio_hi: float = 12.0) -> np.ndarray:
    k = _check_k(k, m)
    lo = _check("ratio_lo", ratio_lo, 1.0, 1e4)
    hi = _check("ratio_hi", ratio_hi, lo, 1e4)
    return _spikes_at(n, m, rng, np.exp(rng.uniform(np.log(lo), np.log(hi), size=k)))


def _graded_bleed(n: int, m: int, rng: np.random.Generator, frac: float = 0.1, tail_alpha: float = 5.0,
                  n_far: int = 2, far_lo: float = 5.0, far_hi: float = 20.0) -> np.ndarray:
    frac = _check("frac", frac, 0.005, 0.5)
    a = _check("tail_alpha", tail_alpha, 1.5, 20.0)
    if isinstance(n_far, bool) or not isinstance(n_far, (int, np.integer)) or not 0 <= n_far <= 20:
        raise ValueError(f"make_family: parameter 'n_far' must be an int in [0, 20]; got {n_far!r}")
    lo = _check("far_lo", far_lo, 1.0, 1e4)
    hi = _check("far_hi", far_hi, lo, 1e4)
    kk = min(max(int(round(frac * m)), 8), m // 2)
    graded = (kk / np.arange(1, kk + 1)) ** (1.0 / (a - 1.0))  # λ+ (K/j)^(1/(a-1)): from the edge up
    far = np.exp(rng.uniform(np.log(lo), np.log(hi), size=int(n_far)))
    return _spikes_at(n, m, rng, np.concatenate([graded, far]))


def _powerlaw_population(n: int, m: int, rng: np.random.Generator, a: float = 3.0) -> np.ndarray:
    a = _check("a", a, 1.05, 100.0)
    c = np.arange(1, m + 1) ** (-1.0 / (a - 1.0))
    return rng.standard_normal((n, m)) * np.sqrt(c / c.mean())[rng.permutation(m)]


def _population(rng: np.random.Generator, n: int, m: int, ells: np.ndarray) -> np.ndarray:
    """``G Σ^(1/2)`` with ``Σ = I + Σ_k (ℓ_k - 1) v_k v_kᵀ`` (random orthonormal ``v_k``)."""
    v = _unit_columns(rng, m, ells.size)
    root = np.eye(m) + (v * (np.sqrt(ells) - 1.0)) @ v.T
    return rng.standard_normal((n, m)) @ root


def _population_ell(ratio: np.ndarray, q: float) -> np.ndarray:
    """Population spike ``ℓ`` whose sample outlier sits at ``ratio · λ+``: ``λ = ℓ (1 + c/(ℓ - 1))``."""
    c = 1.0 / q
    lam = np.maximum(ratio, 1.0) * _edges(1.0, q)[1]
    # ℓ² - (λ + 1 - c) ℓ + λ = 0, upper root (ℓ ≥ 1 + √c)
    b = lam + 1.0 - c
    return 0.5 * (b + np.sqrt(np.maximum(b * b - 4.0 * lam, 0.0)))


def _spiked_population(n: int, m: int, rng: np.random.Generator, k: int = 3, ratio: float = 4.0) -> np.ndarray:
    k = _check_k(k, m)
    r = _check("ratio", ratio, 1.0, 1e4)
    ratios = np.geomspace(r, r**0.7, k) if k > 1 else np.array([r])
    return _population(rng, n, m, _population_ell(ratios, n / m))


def _shelf_population(n: int, m: int, rng: np.random.Generator, k: int = 3, excess: float = 0.25) -> np.ndarray:
    k = _check_k(k, m)
    ex = _check("excess", excess, 0.0, 10.0)
    return _population(rng, n, m, _population_ell(np.full(k, 1.0 + ex), n / m))


def _graded_population(n: int, m: int, rng: np.random.Generator, frac: float = 0.2,
                       tail_alpha: float = 5.5) -> np.ndarray:
    frac = _check("frac", frac, 0.01, 0.5)
    a = _check("tail_alpha", tail_alpha, 1.5, 20.0)
    kk = min(max(int(round(frac * m)), 8), m // 2)
    ells = _population_ell((kk / np.arange(1, kk + 1)) ** (1.0 / (a - 1.0)), n / m)
    return _population(rng, n, m, ells)


def _powerlaw_spectrum(n: int, m: int, rng: np.random.Generator, a: float = 2.5, noise: float = 0.05) -> np.ndarray:
    a = _check("a", a, 1.05, 100.0)
    noise = _check("noise", noise, 0.0, 1.0)
    s2 = np.arange(1, m + 1) ** (-1.0 / (a - 1.0))
    s2 = s2 / s2.mean()  # signal entries of unit rms
    u = _unit_columns(rng, n, m)
    v = _unit_columns(rng, m, m)
    signal = np.sqrt(n) * (u * np.sqrt(s2)[rng.permutation(m)]) @ v.T
    return signal + noise * rng.standard_normal((n, m))


_FAMILY_BUILDERS = {
    "scale_deformed": (_scale_deformed, True),
    "lognormal_norms": (_lognormal_norms, True),
    "ar1_correlated": (_ar1_correlated, True),
    "torch_init": (_torch_init, True),
    "iid_other": (_iid_other, False),
    "many_spikes": (_many_spikes, False),
    "graded_bleed": (_graded_bleed, False),
    "powerlaw_population": (_powerlaw_population, False),
    "spiked_population": (_spiked_population, False),
    "shelf_population": (_shelf_population, False),
    "graded_population": (_graded_population, False),
    "powerlaw_spectrum": (_powerlaw_spectrum, False),
}


@validate(
    {
        "family": [Options(FAMILIES)],
        "n": [Interval(int, 2, None)],
        "m": [Interval(int, 2, None)],
        "seed": ["random_state"],
    }
)
def make_family(family: str, n: int, m: int, seed: Any = None, **params: Any) -> np.ndarray:
    """Draw an ``n × m`` matrix of one of the further constructions (module docstring).

    Parameters
    ----------
    family : str
        One of :data:`FAMILIES`; :data:`FAMILY_PHASE` gives the phase it should get.
    n, m : int
        Shape of the result. The deformation families (``scale_deformed``, ``lognormal_norms``,
        ``ar1_correlated``) and ``torch_init`` use the shape as given (``axis`` picks rows or
        columns; ``torch_init`` reads it as (out_features, in_features)); the others build the
        ``N × M`` matrix (``N = max(n, m)``) and transpose it when ``n < m``.
    seed : None, int, SeedSequence or numpy.random.Generator
        The only source of randomness.
    **params
        The construction's parameters; unknown names raise ``TypeError``.

    Returns
    -------
    ndarray of shape (n, m), float64

    Examples
    --------
    >>> make_family("many_spikes", 400, 200, seed=0, k=6).shape
    (400, 200)
    """
    builder, as_given = _FAMILY_BUILDERS[family]
    import inspect

    allowed = set(list(inspect.signature(builder).parameters)[3:])
    extra = set(params) - allowed
    if extra:
        raise TypeError(f"make_family: family {family!r} takes parameters {sorted(allowed)}; got unknown {sorted(extra)}")
    rng = check_random_state(seed)
    if as_given:
        return np.asarray(builder(n, m, rng, **params), dtype=np.float64)
    big, small = max(n, m), min(n, m)
    W = builder(big, small, rng, **params)
    return W if n >= m else W.T.copy()


@validate(
    {
        "family": [Options(FAMILIES)],
        "n": [Interval(int, 2, None)],
        "m": [Interval(int, 2, None)],
        "rng": ["random_state"],
    }
)
def sample_family_params(family: str, n: int, m: int, rng: Any = None) -> dict[str, Any]:
    """Draw one parameter set of a :func:`make_family` construction from its documented ranges.

    Parameters
    ----------
    family : str
        One of :data:`FAMILIES`.
    n, m : int
        Shape of the matrix the parameters are for.
    rng : None, int or numpy.random.Generator

    Returns
    -------
    dict
        Keyword arguments for :func:`make_family`.
    """
    g = check_random_state(rng)
    small, q = min(n, m), max(n, m) / min(n, m)
    axis = str(g.choice(["rows", "cols"]))
    if family == "scale_deformed":
        return {"delta": float(g.uniform(0.0, 0.2)), "axis": axis}
    if family == "lognormal_norms":
        return {"s": float(g.uniform(0.03, 0.15)), "axis": axis}
    if family == "ar1_correlated":
        return {"rho": float(g.uniform(0.0, 0.2)), "axis": axis}
    if family == "torch_init":
        return {"init": str(g.choice(TORCH_INITS)), "sparsity": float(g.uniform(0.1, 0.9))}
    if family == "iid_other":
        return {"dist": str(g.choice(["laplace", "logistic", "student_t8"]))}
    if family == "many_spikes":
        return {"k": int(g.integers(1, max(1, int(0.04 * small)) + 1)), "ratio_lo": 2.5, "ratio_hi": 12.0}
    if family == "graded_bleed":
        return {"frac": float(g.uniform(0.05, 0.15)), "tail_alpha": float(g.uniform(4.5, 7.0)),
                "n_far": int(g.integers(0, 5))}
    if family in ("powerlaw_population", "powerlaw_spectrum"):
        p = {"a": float(g.uniform(1.8, 3.3))}
        if family == "powerlaw_spectrum":
            p["noise"] = float(g.uniform(0.01, 0.1))
        return p
    if family == "spiked_population":
        return {"k": int(g.integers(1, 6)), "ratio": float(np.exp(g.uniform(np.log(2.5), np.log(12.0))))}
    if family == "shelf_population":
        lp = _edges(1.0, q)[1]
        lo = min(max(0.08, 10.0 * _tw(1.0, q, small) / lp), 0.45)
        return {"k": int(g.integers(1, max(1, min(4, small // 16)) + 1)), "excess": float(g.uniform(lo, 0.5))}
    return {"frac": float(g.uniform(0.12, 0.3)), "tail_alpha": float(g.uniform(4.5, 7.0))}  # graded_population


@validate({"n": [Interval(int, 2, None)], "m": [Interval(int, 2, None)], "seed": ["random_state"],
           "top_ratio": [Interval(float, 1.0, None)], "scale": [Interval(float, 0.0, None, closed="neither")]})
def trained_like(n: int, m: int, seed: Any = None, *, top_ratio: float = 20.0, scale: float = 0.02) -> np.ndarray:
    """A float32 ``n × m`` matrix with the heavy-tailed spectrum of a trained LLM projection, made cheaply.

    Gaussian entries times power-law column scales ``c_j = (K / (2j))^γ`` (``K = min(n, m)``, γ
    set so that the top scale is ``top_ratio`` times the median one, as the top singular values of
    trained projections are ~10–30× their bulk), then rotated on the ``K`` side by a dense
    orthogonal matrix (a Kronecker product of two QR factors of about √K × √K, applied twice with
    column permutations) so that the singular vectors are not the coordinate axes. λmax/λmedian
    comes out at ~500–1000 for ``top_ratio`` 20–30 and a square matrix reaches down to ~1e-9 λmax.
    Costs O(n·m·√m), not the O(n·m²) of a Haar-random factor: seconds at 11008 × 4096.

    Parameters
    ----------
    n, m : int
        Shape; the scales and rotation act on the smaller side.
    seed : None, int or numpy.random.Generator
    top_ratio : float, default=20.0
    scale : float, default=0.02
        Entry scale (rms of the median column).

    Examples
    --------
    >>> W = trained_like(512, 256, seed=0)
    >>> W.shape, W.dtype
    ((512, 256), dtype('float32'))
    """
    rng = check_random_state(seed)
    wide = n < m
    rows, k = (m, n) if wide else (n, m)
    gamma = np.log(top_ratio) / np.log(max(k / 2.0, 2.0))
    cols = ((k / (2.0 * np.arange(1, k + 1))) ** gamma * scale).astype(np.float32)
    import torch

    W = torch.from_numpy(rng.standard_normal((rows, k), dtype=np.float32) * cols)
    a = 1 << (int(np.log2(k)) // 2)
    while k % a:
        a //= 2
    b = k // a
    qa = torch.from_numpy(np.linalg.qr(rng.standard_normal((a, a)))[0].astype(np.float32))
    qb = torch.from_numpy(np.linalg.qr(rng.standard_normal((b, b)))[0].astype(np.float32))
    for _ in range(2):
        # W ← W (qa ⊗ qb)ᵀ, then a column permutation: a dense orthogonal rotation of the columns
        W = (qa @ (W.reshape(rows, a, b) @ qb.T)).reshape(rows, k)
        W = W[:, torch.from_numpy(rng.permutation(k))]
    return np.ascontiguousarray((W.T if wide else W).numpy())
