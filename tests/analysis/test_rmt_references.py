"""The shipped heavy-tailed / deformed-noise reference ESDs (issue 23): reproducible, and shaped as the physics says."""

from __future__ import annotations

import numpy as np
import pytest

from htsweep.analysis.marchenko_pastur import mp_quantile
from htsweep.analysis.rmt_references import (
    LEVELS,
    LOGNORMAL_S,
    M_GRID,
    NOISE_SIDES,
    PARETO_MU,
    POPULATION_A,
    Q_GRID,
    reference_log_quantiles,
    simulate_references,
    simulate_tops,
    snap_m,
    snap_q,
)


def _dist(row, model):
    d = row - model
    return float(np.mean(np.abs(d - np.median(d))))


def test_shipped_table_is_the_seeded_simulation():
    # the .npz is what simulate_references gives at the fixed seeds (float32 storage), tops included
    fresh = simulate_references(1.5, 64)
    shipped = reference_log_quantiles(1.5, 64)
    assert shipped.names == fresh.names and shipped.m == fresh.m == 64
    np.testing.assert_array_equal(shipped.heavy, fresh.heavy)
    np.testing.assert_allclose(shipped.log_q, fresh.log_q, atol=1e-5)
    np.testing.assert_allclose(shipped.top, fresh.top, atol=1e-5)  # nan for the heavy-tailed references
    assert np.isnan(shipped.top[shipped.heavy]).all() and np.isfinite(shipped.top[~shipped.heavy]).all()


def test_snap_q_snap_m_and_bad_input():
    assert snap_q(1.0) == 1.0 and snap_q(2.2) == 2.0 and snap_q(2.3) == 2.5 and snap_q(500.0) == Q_GRID[-1]
    assert snap_m(64) == 64 and snap_m(384) == 512 and snap_m(360) == 256 and snap_m(8192) == M_GRID[-1]
    for bad in (0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="q must be"):
            snap_q(bad)
    with pytest.raises(ValueError, match="m must be"):
        snap_m(0)
    with pytest.raises(ValueError, match="Q_GRID"):
        simulate_references(1.7)
    with pytest.raises(ValueError, match="M_GRID"):
        simulate_tops(1.5, 100)


def test_off_grid_q_is_moved_by_the_mp_quantile_shift():
    # closed form: s = 0.1 column scales are nearly MP, so at Q = 1.1 (between grid points 1 and 1.25,
    # where the lower MP edge moves fast) the moved reference must match MP(1, 1.1) as closely as the
    # on-grid reference matches MP at its own Q, while the raw grid row would be far off
    row = reference_log_quantiles(1.1).log_q[reference_log_quantiles(1.1).names.index("lognormal_cols(s=0.1)")]
    raw = reference_log_quantiles(1.0).log_q[reference_log_quantiles(1.0).names.index("lognormal_cols(s=0.1)")]
    mp = np.log(mp_quantile(LEVELS, 1.0, 1.1))
    assert _dist(row, mp) < 0.04 < 0.1 < _dist(raw, mp), (_dist(row, mp), _dist(raw, mp))
    assert np.all(np.median(reference_log_quantiles(1.1).log_q, axis=1) == 0)


def test_deformed_noise_tops_grow_with_the_deformation_and_with_m():
    # λmax of log-normal column-scale noise: above the MP edge, further for larger s; and at Q = 4,
    # where the MP edge is narrow, further for larger M (the largest of M log-normal population
    # variances grows with M; measured 1.95 at M = 64 → 2.51 at M = 2048 for s = 0.3)
    for q in (1.0, 4.0):
        lp_over_median = np.log((1 + q ** -0.5) ** 2 / mp_quantile(0.5, 1.0, q))
        for m in (64, 2048):
            refs = reference_log_quantiles(q, m)
            tops = [refs.top[refs.names.index(f"lognormal_cols(s={s:g})")] for s in LOGNORMAL_S]
            assert all(a < b for a, b in zip(tops, tops[1:], strict=False)), (q, m, tops)
            assert abs(tops[0] - lp_over_median) < 0.15, (q, m, tops[0], lp_over_median)  # s = 0.1 ≈ MP edge
    top = [reference_log_quantiles(4.0, m).top[reference_log_quantiles(4.0, m).names.index("lognormal_cols(s=0.3)")]
           for m in M_GRID]
    assert top[-1] > top[0] + 0.3, top


def test_heavier_tails_spread_the_esd_further():
    # log-quantile spread (levels 0.02-0.98) falls as μ (Pareto) or a (population) grows, rises with s
    refs = reference_log_quantiles(2.0)
    spread = dict(zip(refs.names, refs.log_q[:, -1] - refs.log_q[:, 0], strict=True))
    for family, grid in (("pareto(mu=", PARETO_MU), ("population(a=", POPULATION_A)):
        s = [spread[f"{family}{v:g})"] for v in grid]
        assert all(a > b for a, b in zip(s, s[1:], strict=False)), (family, s)
    for side in NOISE_SIDES:
        s = [spread[f"lognormal_{side}(s={v:g})"] for v in LOGNORMAL_S]
        assert all(a < b for a, b in zip(s, s[1:], strict=False)), (side, s)
    assert refs.heavy.sum() == len(PARETO_MU) + len(POPULATION_A) and np.all(np.median(refs.log_q, axis=1) == 0)


def test_mild_lognormal_reference_is_close_to_marchenko_pastur():
    # closed form: s = 0.1 column scales barely deform MP(1, Q) (population relative variance 4 %):
    # mean absolute log-quantile residual, after the best offset, of a few percent, growing with s;
    # every heavy-tailed reference is further from MP than the mildest deformation
    dist = _dist
    for q in (1.0, 2.0, 4.0):
        refs = reference_log_quantiles(q)
        mp = np.log(mp_quantile(LEVELS, 1.0, q))
        d = [dist(refs.log_q[refs.names.index(f"lognormal_cols(s={v:g})")], mp) for v in LOGNORMAL_S]
        assert d[0] < 0.04 and all(a < b for a, b in zip(d, d[1:], strict=False)), (q, d)
        assert min(dist(row, mp) for row in refs.log_q[refs.heavy]) > d[0], q
        assert dist(refs.log_q[refs.names.index("pareto(mu=1)")], mp) > 0.3, q


def test_row_and_column_deformations_agree_at_q1_and_part_beyond():
    # closed form: at Q = 1 the nonzero eigenvalues of WᵀW and WWᵀ coincide, so log-normal scales of the
    # rows and of the columns give the same ESD (up to seed noise); at Q = 4 the N = 4M row scales
    # average out over each eigenvector and deform the ESD less than M column scales do
    for s in LOGNORMAL_S:
        refs = reference_log_quantiles(1.0)
        cols, rows = (refs.log_q[refs.names.index(f"lognormal_{side}(s={s:g})")] for side in NOISE_SIDES)
        assert _dist(cols, rows) < 0.03, (s, _dist(cols, rows))  # seed noise: 0.016-0.023 measured
    refs = reference_log_quantiles(4.0)
    cols, rows = (refs.log_q[refs.names.index(f"lognormal_{side}(s=0.3)")] for side in NOISE_SIDES)
    mp = np.log(mp_quantile(LEVELS, 1.0, 4.0))
    assert _dist(rows, mp) < _dist(cols, mp) and _dist(cols, rows) > 0.08, (_dist(rows, mp), _dist(cols, mp))
