"""The shipped heavy-tailed / deformed-noise reference ESDs (issue 23): reproducible, and shaped as the physics says."""

from __future__ import annotations

import numpy as np
import pytest

from htsweep.analysis.marchenko_pastur import mp_quantile
from htsweep.analysis.rmt_references import (
    LEVELS,
    LOGNORMAL_S,
    PARETO_MU,
    POPULATION_A,
    Q_GRID,
    reference_log_quantiles,
    simulate_references,
    snap_q,
)


def test_shipped_table_is_the_seeded_simulation():
    # the .npz is what simulate_references gives at the fixed seeds (float32 storage)
    fresh = simulate_references(1.5)
    shipped = reference_log_quantiles(1.5)
    assert shipped.names == fresh.names
    np.testing.assert_array_equal(shipped.heavy, fresh.heavy)
    np.testing.assert_allclose(shipped.log_q, fresh.log_q, atol=1e-5)


def test_snap_q_and_bad_q():
    assert snap_q(1.0) == 1.0 and snap_q(2.2) == 2.0 and snap_q(2.3) == 2.5 and snap_q(500.0) == Q_GRID[-1]
    for bad in (0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="q must be"):
            snap_q(bad)
    with pytest.raises(ValueError, match="Q_GRID"):
        simulate_references(1.7)


def test_heavier_tails_spread_the_esd_further():
    # log-quantile spread (levels 0.02-0.98) falls as μ (Pareto) or a (population) grows, rises with s
    refs = reference_log_quantiles(2.0)
    spread = dict(zip(refs.names, refs.log_q[:, -1] - refs.log_q[:, 0], strict=True))
    for family, grid in (("pareto(mu=", PARETO_MU), ("population(a=", POPULATION_A)):
        s = [spread[f"{family}{v:g})"] for v in grid]
        assert all(a > b for a, b in zip(s, s[1:], strict=False)), (family, s)
    s = [spread[f"lognormal(s={v:g})"] for v in LOGNORMAL_S]
    assert all(a < b for a, b in zip(s, s[1:], strict=False)), s
    assert refs.heavy.sum() == len(PARETO_MU) + len(POPULATION_A) and np.all(np.median(refs.log_q, axis=1) == 0)


def test_mild_lognormal_reference_is_close_to_marchenko_pastur():
    # closed form: s = 0.1 column scales barely deform MP(1, Q) (population relative variance 4 %):
    # mean absolute log-quantile residual, after the best offset, of a few percent, growing with s;
    # every heavy-tailed reference is further from MP than the mildest deformation
    def dist(row, mp):
        d = row - mp
        return float(np.mean(np.abs(d - np.median(d))))

    for q in (1.0, 2.0, 4.0):
        refs = reference_log_quantiles(q)
        mp = np.log(mp_quantile(LEVELS, 1.0, q))
        d = [dist(refs.log_q[refs.names.index(f"lognormal(s={v:g})")], mp) for v in LOGNORMAL_S]
        assert d[0] < 0.04 and all(a < b for a, b in zip(d, d[1:], strict=False)), (q, d)
        assert min(dist(row, mp) for row in refs.log_q[refs.heavy]) > d[0], q
        assert dist(refs.log_q[refs.names.index("pareto(mu=1)")], mp) > 0.3, q
