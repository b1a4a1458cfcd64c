"""The Table-7 families (issue 23): shapes, determinism, and that each builds the ESD it says."""

from __future__ import annotations

import numpy as np
import pytest

from htsweep.analysis.marchenko_pastur import mp_edges
from htsweep.analysis.spectrum import esd
from htsweep.analysis.synthetic_table7 import TABLE7_FAMILIES, TABLE7_PHASE, make_table7, sample_table7_params


@pytest.mark.parametrize("family", TABLE7_FAMILIES)
def test_shape_orientation_and_seed(family):
    p = sample_table7_params(family, 150, 60, rng=3)
    a = make_table7(family, 150, 60, seed=5, **p)
    assert a.shape == (150, 60) and a.dtype == np.float64
    np.testing.assert_array_equal(a, make_table7(family, 150, 60, seed=5, **p))
    assert make_table7(family, 60, 150, seed=5, **p).shape == (60, 150)


def test_phases_are_known_and_unknown_params_rejected():
    assert set(TABLE7_PHASE.values()) <= {None, "random_like", "bulk_plus_spikes", "bulk_decay"}
    with pytest.raises(TypeError, match="unknown"):
        make_table7("decay_additive", 100, 50, seed=0, mu=2.0)
    with pytest.raises(ValueError, match="'a'"):
        make_table7("decay_additive", 100, 50, seed=0, a=1.0)


@pytest.mark.parametrize("family", ["decay_additive", "decay_population"])
def test_decay_keeps_most_mass_in_the_bulk_and_puts_a_graded_mass_and_far_spikes_above(family):
    n, m, frac = 1200, 400, 0.08
    lam = esd(make_table7(family, n, m, seed=11, frac=frac, a=3.0, n_far=2))
    lp = mp_edges(1.0, n / m)[1]
    above = lam[lam > 1.05 * lp]
    # the bulk holds most of the mass; the mass above λ+ is about frac·M (some sit just under it)
    assert 0.5 * frac * m <= above.size <= 1.3 * frac * m + 2
    top = np.sort(above)[::-1]
    assert top[1] >= 2.0 * top[2] / 1.2  # two far spikes, separated from the mass below them
    assert np.quantile(lam, 0.5) == pytest.approx(np.quantile(esd(make_table7("uniform_entries", n, m, seed=1)), 0.5),
                                                  rel=0.1)


def test_iid_population_sweep_uses_common_random_numbers():
    # the same seed for every a: the population variances only get more unequal as a falls
    lams = [esd(make_table7("powerlaw_population_iid", 600, 300, seed=2, a=a)) for a in (2.0, 4.0, 8.0)]
    spread = [lam[-1] / np.median(lam) for lam in lams]
    assert spread[0] > spread[1] > spread[2]


def test_spike_families_put_k_outliers_well_above_the_edge():
    n, m, k = 1000, 500, 12
    for family in ("spikes_additive", "spikes_population"):
        lam = esd(make_table7(family, n, m, seed=4, k=k, lo=3.0, hi=10.0))
        lp = mp_edges(1.0, n / m)[1]
        assert int(np.sum(lam > 2.0 * lp)) == k, family
