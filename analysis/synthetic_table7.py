"""Synthetic families written from the seed's Table 7 definitions (issue 23), kept apart from the tuning bed.

:mod:`analysis.synthetic` holds the families the phase classifier v1–v3 was tuned on. The
constructions here were written *before* classifier v4 from the operational definitions of
Martin & Mahoney [1]_ (Table 7, Sec. 5.1–5.5), not from any classifier's features, so the
benchmark can report on them separately (``benchmarks/bench_phases.py``, suites ``table7`` and
``table7_final``; the second is drawn with its own seed and is not looked at while tuning).
Conventions as in :mod:`analysis.synthetic`: ``N = max(n, m)``, ``M = min(n, m)``, ``Q = N/M``,
eigenvalues of ``WᵀW / N``, unit-variance noise, BBP outliers placed at ``ratio · λ+``.

``decay_additive`` (bulk_decay)
    An MP bulk that keeps most of the mass and a clean edge, plus a *graded heavy-tailed
    eigenmass* above ``λ+`` — ``K = frac·M`` additive BBP spikes ({``frac`` 0.03…0.12}) whose
    outliers sit at ``λ+ · X_j`` with ``X_j`` iid Pareto of density exponent ``a`` ({2.2…4.0},
    clipped at ``cap`` = 12) — and ``n_far`` ({1…3}) far spikes 2–5× above the top of the mass.
    Table 7: "Heavy-Tailed eigenmass above λ+; some spikes; edge above λ+ is not concave".
``decay_population`` (bulk_decay)
    The same picture built the second way: a population covariance ``Σ = I + Σ (ℓ_j - 1) v_j v_jᵀ``
    whose ``K`` spiked eigenvalues put their sample outliers at the same Pareto positions, plus
    ``n_far`` far population spikes (multiplicative instead of additive).
``powerlaw_population_iid`` (monotone sweep only)
    ``W = G C^(1/2)`` with iid population variances ``c_j = U_j^(-1/(a-1))`` (Pareto of density
    exponent ``a``), normalized to mean 1. ``U`` and ``G`` are drawn before ``a`` is used, so one
    seed gives the same matrices along a sweep of ``a`` (common random numbers): heavier tails
    (smaller ``a``) must never get an earlier phase.
``cols_pm20``, ``ar1_rho015``, ``lognormal_rows_s03``, ``uniform_entries``, ``torch_init`` (random_like)
    Deformed noise at the issue's settings: column scales ``U[0.8, 1.2]`` (or two-point ±20 %,
    ``two_point``), AR(1) columns or rows with ``ρ = 0.15``, row norms ``exp(0.3 z)`` of the matrix
    *as given* (``(out, in)``: the rows are the M side when ``n < m``), iid uniform entries, and
    every PyTorch init of :data:`analysis.synthetic.TORCH_INITS`. ``bleeding_out`` is tolerated,
    ``bulk_decay``/``heavy_tailed`` never.
``spikes_additive``, ``spikes_population`` (bulk_plus_spikes)
    An MP bulk plus ``k`` = 1 … 4 %·M separated spikes whose outliers sit log-uniformly in
    [``lo``, ``hi``] λ+ ({2.2…30}), additive (``G + √N Σ θ u vᵀ``) or multiplicative
    (population spikes).

References
----------
.. [1] Martin & Mahoney, "Implicit Self-Regularization in Deep Neural Networks" (2018), Table 7,
       Sec. 5 (``shared/papers/implicit-self-regularization.txt``).

Examples
--------
>>> from htsweep.analysis.synthetic_table7 import make_table7
>>> make_table7("decay_additive", 600, 300, seed=0).shape
(600, 300)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from htsweep.analysis._validation import Interval, Options, check_random_state, validate
from htsweep.analysis.synthetic import (
    TORCH_INITS,
    _ar1_correlated,
    _check,
    _check_k,
    _lognormal_norms,
    _population,
    _population_ell,
    _random_like,
    _spikes_at,
    _torch_init,
)

__all__ = ["TABLE7_FAMILIES", "TABLE7_PHASE", "make_table7", "sample_table7_params"]

#: Each family and the phase Table 7 gives it (``None``: judged by monotonicity only).
TABLE7_PHASE: dict[str, str | None] = {
    "decay_additive": "bulk_decay",
    "decay_population": "bulk_decay",
    "powerlaw_population_iid": None,
    "cols_pm20": "random_like",
    "ar1_rho015": "random_like",
    "lognormal_rows_s03": "random_like",
    "uniform_entries": "random_like",
    "torch_init": "random_like",
    "spikes_additive": "bulk_plus_spikes",
    "spikes_population": "bulk_plus_spikes",
}
TABLE7_FAMILIES: tuple[str, ...] = tuple(TABLE7_PHASE)


def _pareto_mass(rng: np.random.Generator, m: int, frac: float, a: float, cap: float, n_far: int) -> np.ndarray:
    """Outlier positions (units of λ+): ``frac·M`` iid Pareto(a) ≥ 1, clipped at ``cap``, and far spikes."""
    kk = min(max(int(round(frac * m)), 4), m // 3)
    mass = np.minimum(rng.uniform(size=kk) ** (-1.0 / (a - 1.0)), cap)
    far = mass.max() * rng.uniform(2.0, 5.0, size=n_far)
    return np.concatenate([mass, far])


def _decay_additive(n: int, m: int, rng: np.random.Generator, frac: float = 0.08, a: float = 3.0,
                    cap: float = 12.0, n_far: int = 2) -> np.ndarray:
    frac, a, cap = _check("frac", frac, 0.005, 0.3), _check("a", a, 1.5, 20.0), _check("cap", cap, 1.5, 1e3)
    n_far = int(_check("n_far", n_far, 0, 10))
    return _spikes_at(n, m, rng, _pareto_mass(rng, m, frac, a, cap, n_far))


def _decay_population(n: int, m: int, rng: np.random.Generator, frac: float = 0.08, a: float = 3.0,
                      cap: float = 12.0, n_far: int = 2) -> np.ndarray:
    frac, a, cap = _check("frac", frac, 0.005, 0.3), _check("a", a, 1.5, 20.0), _check("cap", cap, 1.5, 1e3)
    n_far = int(_check("n_far", n_far, 0, 10))
    return _population(rng, n, m, _population_ell(_pareto_mass(rng, m, frac, a, cap, n_far), n / m))


def _powerlaw_population_iid(n: int, m: int, rng: np.random.Generator, a: float = 3.0) -> np.ndarray:
    a = _check("a", a, 1.05, 100.0)
    u = rng.uniform(size=m)
    g = rng.standard_normal((n, m))
    c = u ** (-1.0 / (a - 1.0))
    return g * np.sqrt(c / c.mean())


def _cols_pm20(n: int, m: int, rng: np.random.Generator, two_point: bool = False) -> np.ndarray:
    scale = rng.choice([0.8, 1.2], size=m) if two_point else rng.uniform(0.8, 1.2, size=m)
    return rng.standard_normal((n, m)) * scale[None, :]


def _ar1_rho015(n: int, m: int, rng: np.random.Generator, axis: str = "cols") -> np.ndarray:
    return _ar1_correlated(n, m, rng, rho=0.15, axis=axis)


def _lognormal_rows_s03(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    return _lognormal_norms(n, m, rng, s=0.3, axis="rows")


def _uniform_entries(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    return _random_like(n, m, rng, dist="uniform")


def _torch_init_t7(n: int, m: int, rng: np.random.Generator, init: str = "kaiming_normal") -> np.ndarray:
    return _torch_init(n, m, rng, init=init, sparsity=0.3)


def _spikes_additive(n: int, m: int, rng: np.random.Generator, k: int = 3, lo: float = 2.2,
                     hi: float = 30.0) -> np.ndarray:
    k, lo = _check_k(k, m), _check("lo", lo, 1.5, 1e4)
    hi = _check("hi", hi, lo, 1e4)
    return _spikes_at(n, m, rng, np.exp(rng.uniform(np.log(lo), np.log(hi), size=k)))


def _spikes_population(n: int, m: int, rng: np.random.Generator, k: int = 3, lo: float = 2.2,
                       hi: float = 30.0) -> np.ndarray:
    k, lo = _check_k(k, m), _check("lo", lo, 1.5, 1e4)
    hi = _check("hi", hi, lo, 1e4)
    ratios = np.exp(rng.uniform(np.log(lo), np.log(hi), size=k))
    return _population(rng, n, m, _population_ell(ratios, n / m))


# builder, and whether it reads the shape as given (True) or builds N × M and transposes
_BUILDERS = {
    "decay_additive": (_decay_additive, False),
    "decay_population": (_decay_population, False),
    "powerlaw_population_iid": (_powerlaw_population_iid, False),
    "cols_pm20": (_cols_pm20, True),
    "ar1_rho015": (_ar1_rho015, True),
    "lognormal_rows_s03": (_lognormal_rows_s03, True),
    "uniform_entries": (_uniform_entries, True),
    "torch_init": (_torch_init_t7, True),
    "spikes_additive": (_spikes_additive, False),
    "spikes_population": (_spikes_population, False),
}


@validate({"family": [Options(TABLE7_FAMILIES)], "n": [Interval(int, 2, None)], "m": [Interval(int, 2, None)],
           "seed": ["random_state"]})
def make_table7(family: str, n: int, m: int, seed: Any = None, **params: Any) -> np.ndarray:
    """Draw an ``n × m`` matrix of a Table-7 family (module docstring); ``TABLE7_PHASE`` gives its phase.

    Parameters
    ----------
    family : str
        One of :data:`TABLE7_FAMILIES`.
    n, m : int
        Shape of the result. The noise families use it as given (``(out, in)`` for ``torch_init``,
        rows of the matrix as given for ``lognormal_rows_s03``); the others build ``N × M`` and
        transpose when ``n < m``.
    seed : None, int, SeedSequence or numpy.random.Generator
        The only source of randomness.
    **params
        The family's parameters; unknown names raise ``TypeError``.

    Returns
    -------
    ndarray of shape (n, m), float64
    """
    import inspect

    builder, as_given = _BUILDERS[family]
    allowed = set(list(inspect.signature(builder).parameters)[3:])
    extra = set(params) - allowed
    if extra:
        raise TypeError(f"make_table7: family {family!r} takes parameters {sorted(allowed)}; got unknown {sorted(extra)}")
    rng = check_random_state(seed)
    if as_given:
        return np.asarray(builder(n, m, rng, **params), dtype=np.float64)
    W = builder(max(n, m), min(n, m), rng, **params)
    return W if n >= m else W.T.copy()


@validate({"family": [Options(TABLE7_FAMILIES)], "n": [Interval(int, 2, None)], "m": [Interval(int, 2, None)],
           "rng": ["random_state"]})
def sample_table7_params(family: str, n: int, m: int, rng: Any = None) -> dict[str, Any]:
    """One parameter set of a Table-7 family from the ranges in braces (module docstring)."""
    g = check_random_state(rng)
    small = min(n, m)
    if family in ("decay_additive", "decay_population"):
        return {"frac": float(g.uniform(0.03, 0.12)), "a": float(g.uniform(2.2, 4.0)), "n_far": int(g.integers(1, 4))}
    if family == "powerlaw_population_iid":
        return {"a": float(g.uniform(1.8, 8.0))}
    if family == "cols_pm20":
        return {"two_point": bool(g.uniform() < 0.5)}
    if family == "ar1_rho015":
        return {"axis": str(g.choice(["rows", "cols"]))}
    if family == "torch_init":
        return {"init": str(g.choice(TORCH_INITS))}
    if family in ("spikes_additive", "spikes_population"):
        return {"k": int(g.integers(1, max(1, int(0.04 * small)) + 1)), "lo": 2.2, "hi": 30.0}
    return {}
