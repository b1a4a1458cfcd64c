"""LayerAnalysis (the typed per-layer result) and analysis.metric_names (the row and report keys)."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from htsweep.analysis import LayerAnalysis, analyze_eigs, analyze_layers, analyze_spectrum, synthetic
from htsweep.analysis.aggregate import spectral_aggregates
from htsweep.analysis.analyze import json_safe
from htsweep.analysis.layers import LayerMatrix
from htsweep.analysis.metric_names import (
    ALPHA_AGGREGATE_KEYS,
    FARMS_KEYS,
    LOCALIZATION_KEYS,
    MODEL_AGGREGATE_KEYS,
    PER_LAYER_KEYS,
    ROW_KEYS,
    TAIL_LAW_KEYS,
    TRAP_KEYS,
    ReportKey,
    RowKey,
    is_spectral_key,
    per_layer_key,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "interfaces.md"


def _documented_row_keys() -> tuple[list[str], list[str], list[str]]:
    """(row keys, localization keys, trap keys) as the "metrics row" section of interfaces.md lists them."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("### The metrics row", 1)[1].split("\n### ", 1)[0]
    listed = section.split("`LayerAnalysis.to_row(", 1)[1]
    row_list = re.search(r"\n\n`(name, kind.*?)` \(`warning`", listed, flags=re.S).group(1)
    loc_list = re.search(r"Localization adds `([^`]+)`", listed).group(1)
    traps = re.search(r"`traps=k` adds `(n_traps)`.*?`(shuffle_lambda_plus)`,\s*`(shuffle_lambda_max)`,"
                      r"\s*`(shuffle_distance)`", listed, flags=re.S).groups()

    def split(keys: str) -> list[str]:
        return [k.strip() for k in keys.replace("\n", " ").split(",")]

    return split(row_list), split(loc_list), list(traps)


@pytest.fixture(scope="module")
def spiked() -> tuple[np.ndarray, LayerAnalysis]:
    W = synthetic.make("bulk_plus_spikes", 400, 200, seed=3, k=2)
    eigs = np.linalg.eigvalsh(W.T @ W / 400)
    return eigs, analyze_spectrum(eigs, n=400, m=200, name="fc", kind="linear")


def test_to_row_has_exactly_the_documented_keys_in_order(spiked):
    doc_row, doc_loc, doc_traps = _documented_row_keys()
    assert list(ROW_KEYS) == doc_row
    assert list(LOCALIZATION_KEYS) == doc_loc and list(TRAP_KEYS) == doc_traps
    _, result = spiked
    assert list(result.to_row()) == doc_row
    assert list(result.to_row(eigs=True)) == [*doc_row, RowKey.EIGS]


def test_to_row_values_are_the_typed_fields(spiked):
    eigs, a = spiked
    row = a.to_row()
    assert (row["name"], row["kind"], row["n"], row["m"], row["q"]) == ("fc", "linear", 400, 200, 2.0)
    assert row["alpha"] == a.pl.alpha == a.alpha and row["D"] == a.pl.D and row["xmin"] == a.pl.xmin
    assert row["n_tail"] == a.pl.n_tail and row["alpha_sigma"] == a.pl.sigma
    assert row["alpha_hill"] == a.alpha_hill
    assert row["sigma2"] == a.mp.sigma2 and row["lambda_plus"] == a.mp.lambda_plus
    assert row["n_spikes"] == a.mp.n_spikes == 2 and row["mp_soft_rank"] == a.mp.soft_rank
    assert row["mp_ks"] == a.mp.ks_bulk
    assert row["phase"] == a.phase.phase == "bulk_plus_spikes" and row["phase_confidence"] == a.phase.confidence
    assert row["lambda_max"] == a.lambda_max == float(eigs.max())
    assert row["stable_rank"] == a.stable_rank and row["log_alpha_norm"] == a.log_alpha_norm
    assert row["warning"] == a.warning == "" and row["precision"] == a.precision == "float64"
    ints = {"n", "m", "n_tail", "n_spikes", "numerical_rank"}
    strs = {"name", "kind", "phase", "warning", "precision"}
    assert {k for k, v in row.items() if type(v) is int} == ints
    assert {k for k, v in row.items() if type(v) is str} == strs
    assert all(type(v) is float for k, v in row.items() if k not in ints | strs)


def test_to_row_round_trips_through_json(spiked):
    _, a = spiked
    row = a.to_row()
    back = json.loads(json.dumps(json_safe(row), allow_nan=False))
    assert list(back) == list(row)
    for key, value in row.items():
        assert back[key] == (None if isinstance(value, float) and not math.isfinite(value) else value), key


def test_analyze_eigs_and_analyze_layers_are_to_row_of_the_typed_result(spiked):
    eigs, a = spiked
    assert analyze_eigs(eigs, n=400, m=200, name="fc") == dataclasses.replace(a, kind="").to_row()
    W = torch.as_tensor(synthetic.make("heavy_tailed", 240, 120, seed=1))
    layer = LayerMatrix.from_tensor("h", "linear", W)
    (row,) = analyze_layers([layer], device="cpu", precision="float64", localization=True, traps=1)
    assert list(row) == [*ROW_KEYS, *LOCALIZATION_KEYS, *TRAP_KEYS, RowKey.EIGS]
    typed = analyze_spectrum(row["eigs"], n=240, m=120, name="h", kind="linear")
    assert {k: row[k] for k in ROW_KEYS} == typed.to_row()


def test_small_and_lora_layers_carry_their_warnings():
    small = analyze_spectrum(np.linspace(0.1, 1.0, 8), n=20, m=8, name="head", kind="linear")
    assert math.isnan(small.alpha) and math.isnan(small.alpha_hill) and small.warning.startswith("too small")
    lora = analyze_spectrum(np.linspace(0.1, 1.0, 8), n=20, m=8, kind="lora")
    assert lora.warning.endswith("; merged LoRA update B·A: low-rank by construction")


def test_layer_analysis_is_frozen(spiked):
    _, a = spiked
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.name = "other"  # type: ignore[misc]


def test_row_key_names_cover_every_row_key_once():
    names = {v for k, v in vars(RowKey).items() if k.isupper()}
    assert names == {*ROW_KEYS, *FARMS_KEYS, *TAIL_LAW_KEYS, *LOCALIZATION_KEYS, *TRAP_KEYS, RowKey.EIGS}
    assert len(ROW_KEYS + FARMS_KEYS + TAIL_LAW_KEYS + LOCALIZATION_KEYS + TRAP_KEYS) == len(names) - 1


def test_reported_metric_names_are_pinned():
    # MLflow histories and Optuna attributes of existing sweeps are stored under these strings
    assert MODEL_AGGREGATE_KEYS == ("alpha_mean", "alpha_median", "alpha_weighted_mean", "alpha_last",
                                    "frac_heavy_tailed", "stable_rank_mean", "mp_soft_rank_mean", "phase_code")
    assert PER_LAYER_KEYS == ("alpha", "alpha_hill", "stable_rank", "mp_soft_rank", "effective_rank", "n_spikes")
    assert ALPHA_AGGREGATE_KEYS == {"mean": "alpha_mean", "median": "alpha_median", "last": "alpha_last"}
    assert (ReportKey.PHASE, ReportKey.LAYER_PHASE_TAG_PREFIX, ReportKey.PHASE_STEP_TAG) == ("phase", "phase.", "phase_step")
    assert (ReportKey.ALPHA_AGG, ReportKey.HEADLINE_ALPHA, ReportKey.OBJECTIVE) == ("alpha_agg", "alpha", "objective")
    reported = [v for k, v in vars(ReportKey).items() if k.isupper()]
    assert len(reported) == len(set(reported))


def test_spectral_aggregates_produce_exactly_the_named_keys(spiked):
    _, a = spiked
    rows = [a.to_row(), dataclasses.replace(a, name="block/fc2").to_row()]
    per_layer = [per_layer_key(k, name) for name in ("fc", "block/fc2") for k in (*PER_LAYER_KEYS, ReportKey.PHASE_CODE)]
    assert set(spectral_aggregates(rows)) == {*MODEL_AGGREGATE_KEYS, *per_layer}
    assert all(is_spectral_key(k) for k in spectral_aggregates(rows))
    assert not any(is_spectral_key(k) for k in (*ROW_KEYS, ReportKey.TEST_ACC, ReportKey.ALPHA_AGG, "lr_factor/fc"))
