"""Cached reference ESDs of heavy-tailed random matrices, for whole-ESD model comparison (issue 23).

Martin & Mahoney [1]_ (Table 7) call a layer HEAVY-TAILED when its "ESD [is] better described by
heavy-tailed RMT than Gaussian RMT": there is no good MP edge, and the spectrum as a whole looks
like that of a matrix with heavy-tailed entries. To compare a layer against that model we need the
ESD of such matrices at the layer's aspect ratio ``Q``. No closed form exists for finite ``N``
(and for ``μ < 2`` not even a simple one for ``N → ∞``), so the references are simulated at fixed
seeds on a grid of ``Q`` (:func:`simulate_references`) and shipped precomputed in
``rmt_references.npz`` next to this module (76 kB; rebuilt by :func:`write_table`, checked against a fresh simulation in the tests). A call
loads the table once per process and then costs nothing: the monitor never simulates.

Two heavy-tailed reference families, as the issue asks, and one family of deformed noise:

``pareto``
    iid entries ``±U^(-1/μ)`` (Pareto tail index ``μ``), the matrices of MM Sec. 3.2; ESD tail
    exponent ``α ≈ 1 + μ/2`` for ``μ < 2``, MP bulk plus Fréchet outliers for ``μ > 2``.
``population``
    ``W = G C^(1/2)`` with a power-law population spectrum ``c_j ∝ j^(-1/(a-1))`` (density
    exponent ``a``): strongly correlated columns, the multiplicative way to a heavy tail.
``lognormal`` (deformed noise, not heavy-tailed)
    ``W = G D`` with log-normal column scales ``D = exp(s z)`` (``s`` up to 0.4): the deformed
    Marchenko–Pastur law of noise whose population variances spread over a factor of a few (rows
    or columns of unequal norm, as initializers and data pipelines leave them). Its ESD has a
    soft but concave edge and no scale-free tail; it is the noise model a graded mass above
    ``λ+`` must beat.

Each reference is stored as its log-quantile function on :data:`LEVELS` (levels 0.02–0.98 of
the pooled spectra of :data:`N_SEEDS` matrices with ``M =`` :data:`M_REF`), centred to median
zero, so that comparing it with a layer's ESD only needs one interpolation of the layer's sorted
log-eigenvalues and a fitted offset (the overall scale). The extreme top 2 % is left out: it
depends on ``M`` (the largest of more entries is larger), the bulk shape does not.

References
----------
.. [1] Martin & Mahoney, "Implicit Self-Regularization in Deep Neural Networks" (2018), Sec. 3.2
       and Table 7 (``shared/papers/implicit-self-regularization.txt``).

Examples
--------
>>> refs = reference_log_quantiles(2.0)
>>> refs.log_q.shape == (len(refs.names), LEVELS.size)
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["LEVELS", "LOGNORMAL_S", "M_REF", "N_SEEDS", "PARETO_MU", "POPULATION_A", "Q_GRID", "References",
           "reference_log_quantiles", "simulate_references", "snap_q", "write_table"]

#: Quantile levels at which references and layers are compared (the extreme 2 % at each end left out).
LEVELS: np.ndarray = np.linspace(0.02, 0.98, 97)
LEVELS.setflags(write=False)
#: Size (M) and number of the simulated matrices pooled into one reference.
M_REF = 256
N_SEEDS = 3
#: Aspect ratios at which references are simulated; a layer's Q is snapped to the nearest (in log).
Q_GRID: tuple[float, ...] = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.5, 8.0, 10.0, 14.0, 20.0)
#: Tail indices of the iid-Pareto references (μ < 2: infinite variance, MM's "very heavy-tailed").
PARETO_MU: tuple[float, ...] = (0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25)
#: Density exponents of the power-law population references.
POPULATION_A: tuple[float, ...] = (1.5, 1.75, 2.0, 2.5, 3.0)
#: Log-normal column-scale spreads of the deformed-noise references.
LOGNORMAL_S: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4)
_SEED = 23_0617
_TABLE = Path(__file__).with_name("rmt_references.npz")


@dataclass(frozen=True)
class References:
    """Reference ESDs at one aspect ratio: names, kinds and centred log-quantiles on :data:`LEVELS`."""

    q: float
    names: tuple[str, ...]
    heavy: np.ndarray  # (n_refs,) bool: a heavy-tailed reference (else deformed noise)
    log_q: np.ndarray  # (n_refs, LEVELS.size), each row of median 0


def snap_q(q: float) -> float:
    """The grid aspect ratio nearest to ``q`` in log scale (``q`` beyond the grid snaps to its end)."""
    if not (math.isfinite(q) and q >= 1.0):
        raise ValueError(f"snap_q: q must be a finite float >= 1 (Q = N/M); got {q!r}")
    grid = np.log(np.asarray(Q_GRID))
    return float(Q_GRID[int(np.argmin(np.abs(grid - math.log(q))))])


def _pareto(rng: np.random.Generator, n: int, m: int, mu: float) -> np.ndarray:
    return rng.uniform(size=(n, m)) ** (-1.0 / mu) * rng.choice(np.array([-1.0, 1.0]), size=(n, m))


def _population(rng: np.random.Generator, n: int, m: int, a: float) -> np.ndarray:
    c = np.arange(1, m + 1, dtype=np.float64) ** (-1.0 / (a - 1.0))
    return rng.standard_normal((n, m)) * np.sqrt(c / c.mean())


def _lognormal(rng: np.random.Generator, n: int, m: int, s: float) -> np.ndarray:
    return rng.standard_normal((n, m)) * np.exp(s * rng.standard_normal(m))


def _log_quantiles(mats: list[np.ndarray]) -> np.ndarray:
    """Pooled log-quantiles of the ESDs of ``mats`` on :data:`LEVELS`, centred to median zero."""
    pooled = []
    for W in mats:
        lam = np.linalg.eigvalsh(W.T @ W / W.shape[0])
        pooled.append(lam / np.median(lam))  # each matrix on its own scale: only the shape is pooled
    lam = np.sort(np.concatenate(pooled))
    logs = np.log(np.maximum(lam, lam[-1] * 1e-12))
    p = (np.arange(lam.size) + 0.5) / lam.size
    out = np.interp(LEVELS, p, logs)
    return out - np.median(out)


def simulate_references(qg: float) -> References:
    """Simulate the references at grid aspect ratio ``qg`` (fixed seeds: the same result everywhere).

    ``N_SEEDS`` matrices of ``M_REF`` columns per reference; about a second per ``Q`` on one core.
    """
    if qg not in Q_GRID:
        raise ValueError(f"simulate_references: q must be one of Q_GRID {Q_GRID}; got {qg!r}")
    rng = np.random.default_rng([_SEED, int(round(100 * qg))])
    n = int(round(qg * M_REF))
    names, rows = [], []
    for mu in PARETO_MU:
        names.append(f"pareto(mu={mu:g})")
        rows.append(_log_quantiles([_pareto(rng, n, M_REF, mu) for _ in range(N_SEEDS)]))
    for a in POPULATION_A:
        names.append(f"population(a={a:g})")
        rows.append(_log_quantiles([_population(rng, n, M_REF, a) for _ in range(N_SEEDS)]))
    heavy = np.ones(len(names), dtype=bool)
    for s in LOGNORMAL_S:
        names.append(f"lognormal(s={s:g})")
        rows.append(_log_quantiles([_lognormal(rng, n, M_REF, s) for _ in range(N_SEEDS)]))
    heavy = np.concatenate([heavy, np.zeros(len(LOGNORMAL_S), dtype=bool)])
    log_q = np.vstack(rows)
    log_q.setflags(write=False)
    heavy.setflags(write=False)
    return References(qg, tuple(names), heavy, log_q)


def write_table(path: Path = _TABLE) -> None:
    """Simulate every grid ``Q`` and write the shipped table (float32 log-quantiles)."""
    refs = [simulate_references(qg) for qg in Q_GRID]
    np.savez_compressed(path, q_grid=np.asarray(Q_GRID), levels=LEVELS, names=np.asarray(refs[0].names),
                        heavy=refs[0].heavy, log_q=np.stack([r.log_q for r in refs]).astype(np.float32))


@lru_cache(maxsize=1)
def _load_table() -> dict[float, References]:
    with np.load(_TABLE) as z:
        names = tuple(str(n) for n in z["names"])
        if tuple(z["q_grid"]) != Q_GRID or not np.array_equal(z["levels"], LEVELS) or len(names) != z["log_q"].shape[1]:
            raise RuntimeError(f"{_TABLE.name} does not match the grids of rmt_references.py; rebuild it with "
                               "htsweep.analysis.rmt_references.write_table()")
        heavy, log_q = z["heavy"].astype(bool), z["log_q"].astype(np.float64)
    heavy.setflags(write=False)
    log_q.setflags(write=False)
    return {qg: References(qg, names, heavy, log_q[i]) for i, qg in enumerate(Q_GRID)}


def reference_log_quantiles(q: float) -> References:
    """The reference ESDs at the grid aspect ratio nearest ``q``, from the shipped table (loaded once)."""
    return _load_table()[snap_q(float(q))]

