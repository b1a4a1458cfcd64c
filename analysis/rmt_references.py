"""Cached reference ESDs of heavy-tailed random matrices, for whole-ESD model comparison (issue 23).

Martin & Mahoney [1]_ (Table 7) call a layer HEAVY-TAILED when its "ESD [is] better described by
heavy-tailed RMT than Gaussian RMT": there is no good MP edge, and the spectrum as a whole looks
like that of a matrix with heavy-tailed entries. To compare a layer against that model we need the
ESD of such matrices at the layer's aspect ratio ``Q``. No closed form exists for finite ``N``
(and for ``μ < 2`` not even a simple one for ``N → ∞``), so the references are simulated at fixed
seeds on a grid of ``Q`` (:func:`simulate_references`) and shipped precomputed in
``rmt_references.npz`` next to this module (88 kB; rebuilt by :func:`write_table`, checked against a fresh simulation in the tests). A call
loads the table once per process and then costs nothing: the monitor never simulates.

Two heavy-tailed reference families, as the issue asks, and deformed noise on either side of the matrix:

``pareto``
    iid entries ``±U^(-1/μ)`` (Pareto tail index ``μ``), the matrices of MM Sec. 3.2; ESD tail
    exponent ``α ≈ 1 + μ/2`` for ``μ < 2``, MP bulk plus Fréchet outliers for ``μ > 2``.
``population``
    ``W = G C^(1/2)`` with a power-law population spectrum ``c_j ∝ j^(-1/(a-1))`` (density
    exponent ``a``): strongly correlated columns, the multiplicative way to a heavy tail.
``lognormal_cols``, ``lognormal_rows`` (deformed noise, not heavy-tailed)
    ``W = G D`` with log-normal scales ``D = exp(s z)`` (``s`` up to 0.3) of the ``M`` columns (unequal
    population variances), or ``W = D G`` with them on the ``N`` rows (unequal sample weights, as
    row norms of an ``(out, in)`` weight with ``out > in`` are): the deformed Marchenko–Pastur laws
    of noise whose variances spread over a factor of a few, as initializers and data pipelines
    leave them. The two sides agree at ``Q = 1`` and part as ``Q`` grows (at ``Q = 1.5`` an
    ``s = 0.2`` column reference fits ``s = 0.3`` row noise no better than a heavy-tailed one).
    Their ESDs have a soft but concave edge and no scale-free tail; they are the noise models a
    graded mass above ``λ+`` must beat.

Each reference is stored as its log-quantile function on :data:`LEVELS` (levels 0.02–0.98 of
the pooled spectra of :data:`N_SEEDS` matrices with ``M =`` :data:`M_REF`), centred to median
zero, so that comparing it with a layer's ESD only needs one interpolation of the layer's sorted
log-eigenvalues and a fitted offset (the overall scale). The extreme top 2 % is left out: it
depends on ``M`` (the largest of more entries is larger), the bulk shape does not (measured: from
``M`` = 256 to 2048 the population references move by ``D`` ≤ 0.015, the seed-to-seed level).

The deformed-noise references also carry their **top**, ``log λmax`` in the same centred
coordinates, on a grid of sizes :data:`M_GRID` (the largest population variance of ``M``
log-normal scales grows with ``M``). MM's random-like phase is an MP law "with appropriate λ+"
whose ``λmax ≈ λ+`` is sharp (Table 7): a deformed-noise model explains a layer only when it also
predicts the layer's largest eigenvalue, not only its quantiles.

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

from htsweep.analysis.marchenko_pastur import mp_quantile

__all__ = ["LEVELS", "LOGNORMAL_S", "M_GRID", "M_REF", "N_SEEDS", "NOISE_SIDES", "PARETO_MU", "POPULATION_A", "Q_GRID", "References",
           "TOP_MIN_DRAWS", "TOP_POOL", "reference_log_quantiles", "simulate_references", "simulate_tops", "snap_m", "snap_q",
           "write_table"]

#: Quantile levels at which references and layers are compared (the extreme 2 % at each end left out).
LEVELS: np.ndarray = np.linspace(0.02, 0.98, 97)
LEVELS.setflags(write=False)
#: Size (M) and number of the simulated matrices pooled into one reference.
M_REF = 256
N_SEEDS = 3
#: Sizes at which the deformed-noise tops are simulated (a layer's M is snapped to the nearest in log),
#: each the mean of ``max(TOP_MIN_DRAWS, TOP_POOL // M)`` matrices (one draw's log λmax has an sd of
#: 0.1–0.16 at M ≥ 1024).
M_GRID: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
TOP_POOL = 1024
TOP_MIN_DRAWS = 4
#: Aspect ratios at which references are simulated; a layer's Q is snapped to the nearest (in log).
Q_GRID: tuple[float, ...] = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.5, 8.0, 10.0, 14.0, 20.0)
#: Tail indices of the iid-Pareto references (μ < 2: infinite variance, MM's "very heavy-tailed").
PARETO_MU: tuple[float, ...] = (0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25)
#: Density exponents of the power-law population references.
POPULATION_A: tuple[float, ...] = (1.5, 1.75, 2.0, 2.5, 3.0)
#: Log-normal column-scale spreads of the deformed-noise references: up to 0.3, the strongest
#: deformation noise must be allowed (issue 23: log-normal norms s = 0.3, a relative population
#: variance e^(4s²) − 1 = 0.43). At s = 0.4 (0.9) the reference also fitted the ESDs of trained
#: transformer layers (16 of MiniLM's 36 encoder matrices) better than an MP bulk + mass.
LOGNORMAL_S: tuple[float, ...] = (0.1, 0.2, 0.3)
#: Which side of the ``N × M`` matrix carries the log-normal scales: the M columns or the N rows.
NOISE_SIDES: tuple[str, ...] = ("cols", "rows")
_SEED = 23_0617
_TABLE = Path(__file__).with_name("rmt_references.npz")


@dataclass(frozen=True)
class References:
    """Reference ESDs at one aspect ratio ``q``: names, kinds, centred log-quantiles on :data:`LEVELS`,
    and the deformed-noise tops at grid size ``m``."""

    q: float
    names: tuple[str, ...]
    heavy: np.ndarray  # (n_refs,) bool: a heavy-tailed reference (else deformed noise)
    log_q: np.ndarray  # (n_refs, LEVELS.size), each row of median 0
    top: np.ndarray  # (n_refs,) mean log λmax at the grid M, same coordinates; nan for heavy-tailed references
    m: int = M_REF  # the grid M of ``top``


def snap_q(q: float) -> float:
    """The grid aspect ratio nearest to ``q`` in log scale (``q`` beyond the grid snaps to its end)."""
    if not (math.isfinite(q) and q >= 1.0):
        raise ValueError(f"snap_q: q must be a finite float >= 1 (Q = N/M); got {q!r}")
    grid = np.log(np.asarray(Q_GRID))
    return float(Q_GRID[int(np.argmin(np.abs(grid - math.log(q))))])


def snap_m(m: int) -> int:
    """The grid size nearest to ``m`` in log scale (beyond the grid: its end)."""
    if not (isinstance(m, int | np.integer) and m >= 1):
        raise ValueError(f"snap_m: m must be a positive int (the smaller dimension M); got {m!r}")
    return int(M_GRID[int(np.argmin(np.abs(np.log(np.asarray(M_GRID)) - math.log(m))))])


def _pareto(rng: np.random.Generator, n: int, m: int, mu: float) -> np.ndarray:
    return rng.uniform(size=(n, m)) ** (-1.0 / mu) * rng.choice(np.array([-1.0, 1.0]), size=(n, m))


def _population(rng: np.random.Generator, n: int, m: int, a: float) -> np.ndarray:
    c = np.arange(1, m + 1, dtype=np.float64) ** (-1.0 / (a - 1.0))
    return rng.standard_normal((n, m)) * np.sqrt(c / c.mean())


def _lognormal(rng: np.random.Generator, n: int, m: int, s: float, side: str) -> np.ndarray:
    if side == "cols":
        return rng.standard_normal((n, m)) * np.exp(s * rng.standard_normal(m))
    return rng.standard_normal((n, m)) * np.exp(s * rng.standard_normal(n))[:, None]


def _noise_names() -> list[tuple[str, float]]:
    return [(side, s) for side in NOISE_SIDES for s in LOGNORMAL_S]


def _log_quantiles(spectra: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """Pooled log-quantiles of ``spectra`` (eigenvalues of ``WᵀW / N``) on :data:`LEVELS`, centred to
    median zero, and the mean log λmax in the same coordinates."""
    pooled = [lam / np.median(lam) for lam in spectra]  # each matrix on its own scale: only the shape is pooled
    top = float(np.mean([math.log(p.max()) for p in pooled]))
    lam = np.sort(np.concatenate(pooled))
    logs = np.log(np.maximum(lam, lam[-1] * 1e-12))
    p = (np.arange(lam.size) + 0.5) / lam.size
    out = np.interp(LEVELS, p, logs)
    centre = float(np.median(out))
    return out - centre, top - centre


def _esd(W: np.ndarray) -> np.ndarray:
    return np.linalg.eigvalsh(W.T @ W / W.shape[0])


def simulate_references(qg: float, mg: int = M_REF) -> References:
    """Simulate the references at grid aspect ratio ``qg``, with the deformed-noise tops at grid size
    ``mg`` (fixed seeds: the same result everywhere).

    ``N_SEEDS`` matrices of ``M_REF`` columns per reference; about a second per ``Q`` on one core
    (plus :func:`simulate_tops`).
    """
    if qg not in Q_GRID:
        raise ValueError(f"simulate_references: q must be one of Q_GRID {Q_GRID}; got {qg!r}")
    rng = np.random.default_rng([_SEED, int(round(100 * qg))])
    n = int(round(qg * M_REF))
    names, rows = [], []
    for mu in PARETO_MU:
        names.append(f"pareto(mu={mu:g})")
        rows.append(_log_quantiles([_esd(_pareto(rng, n, M_REF, mu)) for _ in range(N_SEEDS)])[0])
    for a in POPULATION_A:
        names.append(f"population(a={a:g})")
        rows.append(_log_quantiles([_esd(_population(rng, n, M_REF, a)) for _ in range(N_SEEDS)])[0])
    heavy = np.ones(len(names), dtype=bool)
    for side, s in _noise_names():
        names.append(f"lognormal_{side}(s={s:g})")
        rows.append(_log_quantiles([_esd(_lognormal(rng, n, M_REF, s, side)) for _ in range(N_SEEDS)])[0])
    heavy = np.concatenate([heavy, np.zeros(len(_noise_names()), dtype=bool)])
    top = np.concatenate([np.full(int(heavy.sum()), np.nan), simulate_tops(qg, mg)])
    return _frozen(References(qg, tuple(names), heavy, np.vstack(rows), top, mg))


def simulate_tops(qg: float, mg: int) -> np.ndarray:
    """Mean log λmax of the deformed-noise references (one per side and :data:`LOGNORMAL_S`) at grid
    ``qg``, ``mg``, in the centred coordinates of their log-quantiles at that size;
    ``max(TOP_MIN_DRAWS, TOP_POOL // mg)`` matrices each."""
    if qg not in Q_GRID or mg not in M_GRID:
        raise ValueError(f"simulate_tops: (q, m) must be on Q_GRID {Q_GRID} x M_GRID {M_GRID}; got {(qg, mg)!r}")
    rng = np.random.default_rng([_SEED, int(round(100 * qg)), mg])
    n, k = int(round(qg * mg)), max(TOP_MIN_DRAWS, TOP_POOL // mg)
    spectra: list[list[np.ndarray]] = [[] for _ in _noise_names()]
    for _ in range(k):
        # float32 and one Gaussian draw shared by every side and s (common random numbers): the
        # tops at M = 2048, Q = 20 cost seconds instead of minutes; λmax / median to 1e-6
        g = rng.standard_normal((n, mg), dtype=np.float32)
        z = {"cols": rng.standard_normal(mg), "rows": rng.standard_normal(n)}
        gram = g.T @ g
        for i, (side, s) in enumerate(_noise_names()):
            d = np.exp(s * z[side]).astype(np.float32)
            if side == "cols":
                a = gram * d[:, None] * d[None, :]
            else:
                h = g * d[:, None]
                a = h.T @ h
            spectra[i].append(np.linalg.eigvalsh(a).astype(np.float64))
    return np.array([_log_quantiles(sp)[1] for sp in spectra])


def _frozen(refs: References) -> References:
    for a in (refs.heavy, refs.log_q, refs.top):
        a.setflags(write=False)
    return refs


def _grid_row(qg: float) -> tuple[References, np.ndarray]:
    refs = simulate_references(qg)  # its tops are those at M_REF (simulate_tops is seeded per (Q, M))
    return refs, np.array([refs.top[~refs.heavy] if mg == refs.m else simulate_tops(qg, mg) for mg in M_GRID])


def write_table(path: Path = _TABLE, workers: int = 1) -> None:
    """Simulate every grid ``Q`` (and ``M`` for the tops) and write the shipped table (float32).

    ``workers`` processes share the grid (about 25 CPU-minutes in all, most of it the tops at
    ``M`` = 2048); the result does not depend on it.
    """
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            rows = list(pool.map(_grid_row, Q_GRID[::-1]))[::-1]  # largest Q (slowest) first
    else:
        rows = [_grid_row(qg) for qg in Q_GRID]
    refs, tops = [r for r, _ in rows], np.array([t for _, t in rows])
    np.savez_compressed(path, q_grid=np.asarray(Q_GRID), m_grid=np.asarray(M_GRID), levels=LEVELS,
                        names=np.asarray(refs[0].names), heavy=refs[0].heavy,
                        log_q=np.stack([r.log_q for r in refs]).astype(np.float32), top=tops.astype(np.float32))


@lru_cache(maxsize=1)
def _load_table() -> dict[tuple[float, int], References]:
    with np.load(_TABLE) as z:
        names = tuple(str(n) for n in z["names"])
        if (tuple(z["q_grid"]) != Q_GRID or tuple(z["m_grid"]) != M_GRID or not np.array_equal(z["levels"], LEVELS)
                or len(names) != z["log_q"].shape[1]):
            raise RuntimeError(f"{_TABLE.name} does not match the grids of rmt_references.py; rebuild it with "
                               "htsweep.analysis.rmt_references.write_table()")
        heavy, log_q, tops = z["heavy"].astype(bool), z["log_q"].astype(np.float64), z["top"].astype(np.float64)
    n_heavy = int(heavy.sum())
    return {(qg, mg): _frozen(References(qg, names, heavy.copy(), log_q[i].copy(),
                                         np.concatenate([np.full(n_heavy, np.nan), tops[i, j]]), mg))
            for i, qg in enumerate(Q_GRID) for j, mg in enumerate(M_GRID)}


def reference_log_quantiles(q: float, m: int = M_REF) -> References:
    """The reference ESDs at aspect ratio ``q`` (tops at the grid size nearest ``m``), from the shipped
    table (loaded once).

    The table holds the grid ``Q`` nearest ``q``; its rows are moved to ``q`` by the exact shift of
    the Marchenko–Pastur log-quantiles between the two, ``ln F⁻¹_MP(Q=q) − ln F⁻¹_MP(Q=Q_grid)``,
    and centred again. Without it the snap alone would cost more than the fits it is compared with:
    near ``Q = 1`` the lower MP edge ``(1 − 1/√Q)²`` moves fast (``D`` 0.19 between ``Q`` 1.1 and 1.0,
    0.05 between 1.8 and 2.0); with it every reference family stays within its seed-to-seed
    spread (``D`` ≤ 0.04 at ``Q`` 1.05, 1.1, 1.8, 3.3).
    """
    q = float(q)
    refs = _load_table()[(snap_q(q), snap_m(m))]
    shifted = refs.log_q + (_mp_log_quantiles(q) - _mp_log_quantiles(refs.q))
    centre = np.median(shifted, axis=1)
    # λmax follows the MP edge λ+ ∝ (1 + 1/√Q)²
    edge_shift = 2.0 * math.log((1.0 + q ** -0.5) / (1.0 + refs.q ** -0.5))
    return _frozen(References(q, refs.names, refs.heavy, shifted - centre[:, None], refs.top + edge_shift - centre,
                              refs.m))


@lru_cache(maxsize=512)
def _mp_log_quantiles(q: float) -> np.ndarray:
    # cached: every classification needs it at the grid Q and the layer's Q, and a model's layers
    # share a few aspect ratios (read-only, so the cached array cannot be changed by a caller)
    out = np.log(np.maximum(mp_quantile(LEVELS, 1.0, q), 1e-300))
    out.setflags(write=False)
    return out
