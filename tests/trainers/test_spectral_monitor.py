"""SpectralMonitor, SpectralSnapshot, spectral_aggregates and model_phase."""

from __future__ import annotations

import math

import numpy as np
import pytest
from trainers_testutils import Recorder, boring_data

from trainers.monitor import (
    SpectralMonitor,
    SpectralSnapshot,
    is_spectral_key,
    model_phase,
    spectral_aggregates,
)
from trainers.train import TrainConfig, Trainer


def _row(name, kind, phase, alpha, **kw):
    return {"name": name, "kind": kind, "phase": phase, "alpha": alpha, "alpha_hill": alpha + 0.5,
            "alpha_weighted": 2 * alpha, "stable_rank": 10.0, "mp_soft_rank": 0.5, "n_spikes": 1, **kw}


def test_model_phase_majority_of_dense_layers():
    rows = [_row("conv1", "conv2d", "heavy_tailed", 2.0), _row("fc1", "linear", "bulk_decay", 4.0),
            _row("fc2", "linear", "bulk_decay", 4.5), _row("fc3", "linear", "random_like", 7.0)]
    assert model_phase(rows) == "bulk_decay"  # the conv layer does not vote


def test_model_phase_ties_go_to_the_later_phase():
    rows = [_row("fc1", "linear", "random_like", 6.0), _row("fc2", "linear", "heavy_tailed", 3.0)]
    assert model_phase(rows) == "heavy_tailed"


def test_model_phase_without_linear_layers_uses_all():
    rows = [_row("conv1", "conv2d", "bleeding_out", 5.0), _row("emb", "embedding", "bleeding_out", 5.0)]
    assert model_phase(rows) == "bleeding_out"
    assert model_phase([]) == ""


def test_layers_too_small_to_fit_do_not_vote():
    rows = [_row("fc1", "linear", "heavy_tailed", 3.0, m=64), _row("fc2", "linear", "random_like", math.nan,
            m=2, warning="too small for a power-law fit (M=2 < 32)"), _row("fc3", "linear", "random_like",
            math.nan, m=2, warning="too small for a power-law fit (M=2 < 32)")]
    assert model_phase(rows) == "heavy_tailed"
    only_small = [dict(r, kind="linear") for r in rows[1:]]
    assert model_phase(only_small) == "random_like"  # with nothing fitted, the small layers still decide
    assert math.isnan(spectral_aggregates(only_small)["alpha_last"])


def test_rank_collapsed_layers_vote_although_their_fit_failed():
    # Real rows: two 256x128 dense layers of rank 8 and one random layer. The collapsed layers'
    # power-law fits fail (a warning), but their phase must still decide the model's phase.
    from analysis.analyze import analyze_matrix

    rng = np.random.default_rng(0)
    low_rank = [rng.standard_normal((256, 8)) @ rng.standard_normal((8, 128)) for _ in range(2)]
    rows = [dict(analyze_matrix(W, name=f"fc{i}", device="cpu"), kind="linear") for i, W in enumerate(low_rank)]
    rows.append(dict(analyze_matrix(rng.standard_normal((256, 128)), name="fc9", device="cpu"), kind="linear"))
    assert [r["phase"] for r in rows] == ["rank_collapse", "rank_collapse", "random_like"]
    assert model_phase(rows) == "rank_collapse"


def test_spectral_aggregates():
    from analysis.phases import PHASE_CODES

    rows = [_row("conv1", "conv2d", "heavy_tailed", 2.0), _row("fc1", "linear", "bulk_decay", 4.0),
            _row("fc2", "linear", "bulk_decay", math.nan)]
    agg = spectral_aggregates(rows)
    assert agg["alpha_mean"] == pytest.approx(3.0)  # NaN skipped
    assert agg["alpha_median"] == pytest.approx(3.0)
    assert agg["alpha_weighted_mean"] == pytest.approx(6.0)
    assert agg["alpha_last"] == 4.0  # fc2 (the last linear layer) has no fit, so fc1 stands in
    assert agg["frac_heavy_tailed"] == pytest.approx(1 / 3)
    assert agg["phase_code"] == PHASE_CODES["bulk_decay"]
    assert agg["alpha/fc1"] == 4.0 and agg["alpha_hill/conv1"] == 2.5 and agg["n_spikes/fc2"] == 1.0
    assert agg["phase_code/conv1"] == PHASE_CODES["heavy_tailed"]
    assert {"stable_rank/fc1", "mp_soft_rank/fc2", "effective_rank/fc1", "stable_rank_mean",
            "mp_soft_rank_mean"} <= set(agg)
    assert all(isinstance(v, float) for v in agg.values())
    assert math.isnan(spectral_aggregates([])["alpha_mean"])


def test_snapshot_helpers():
    snap = SpectralSnapshot(3, [{**_row("fc1", "linear", "random_like", 5.0), "eigs": np.arange(3.0)}])
    assert snap.names == ["fc1"] and snap.layer("fc1")["alpha"] == 5.0
    assert list(snap.eigs()["fc1"]) == [0.0, 1.0, 2.0]
    assert "eigs" not in snap.to_frame().columns
    with pytest.raises(KeyError, match="no layer 'fc9' in the snapshot; layers: fc1"):
        snap.layer("fc9")


class _FakeAnalyzer:
    def __init__(self):
        self.calls = []

    def __call__(self, layers, step):
        self.calls.append((step, [lm.name for lm in layers]))
        return [_row(lm.name, lm.kind, "random_like", 5.0, eigs=np.ones(lm.m)) for lm in layers]


def test_monitor_with_a_custom_analyzer_feeds_on_report():
    fake, rec = _FakeAnalyzer(), Recorder()
    mon = SpectralMonitor(fake)
    cfg = TrainConfig(model="mlp3", dataset="digits", steps=4, batch_size=32, eval_every=2, spectral_every=2,
                      model_kwargs={"width": 8})
    trainer = Trainer(cfg, [mon, rec], data=boring_data())
    trainer.fit()
    assert fake.calls == [(2, ["fc1", "fc2", "fc3", "fc4"]), (4, ["fc1", "fc2", "fc3", "fc4"])]
    assert isinstance(trainer.spectral, SpectralSnapshot) and trainer.spectral.step == 4
    assert rec.reports[-1]["alpha/fc2"] == 5.0 and rec.reports[-1]["alpha_mean"] == 5.0
    assert mon.n_calls == 2 and mon.state_dict()["last_step"] == 4


def test_monitor_argument_errors():
    with pytest.raises(ValueError, match="conv must be 'reshape' or 'kernel', got 'flat'"):
        SpectralMonitor(conv="flat")
    with pytest.raises(TypeError, match="analyzer must be callable"):
        SpectralMonitor(analyzer=3)


def test_default_in_process_analyzer_on_a_real_model():
    mon = SpectralMonitor()
    cfg = TrainConfig(model="lenet5", dataset="digits", steps=3, batch_size=32, eval_every=0, spectral_every=0,
                      data_kwargs={"max_train": 200})
    out = Trainer(cfg, [mon]).fit()
    names = mon.last.names
    assert names == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert mon.last.layer("fc1")["eigs"].shape == (120,)
    for key in ("alpha_mean", "phase_code", "alpha/fc1", "phase_code/fc2", "stable_rank_mean"):
        assert key in out, key
    assert 0 <= out["phase_code"] <= 5


def test_is_spectral_key_matches_exactly_what_spectral_aggregates_produces():
    rows = [_row("fc1", "linear", "heavy_tailed", 3.0, m=64), _row("block.0/fc2", "linear", "bulk_decay", 4.0, m=64)]
    assert all(is_spectral_key(k) for k in spectral_aggregates(rows))
    for other in ("test_acc", "train_loss", "lr", "step", "sim", "alpha", "stable_rank"):
        assert not is_spectral_key(other), other


class _PoisonWeights(Recorder):
    """Writes an Inf into fc2's weights after step 2 (the loss of step 2 was computed before: finite)."""

    def __init__(self) -> None:
        super().__init__()
        self.losses: list[float] = []

    def on_train_step_end(self, trainer, model, step, loss):
        super().on_train_step_end(trainer, model, step, loss)
        self.losses.append(loss)
        if step == 2:
            import torch

            with torch.no_grad():
                model.fc2.weight[0, 0] = float("inf")


def test_non_finite_weights_at_a_monitoring_step_are_a_divergence():
    fake, poison = _FakeAnalyzer(), _PoisonWeights()
    cfg = TrainConfig(model="mlp3", dataset="digits", steps=6, batch_size=32, eval_every=2, spectral_every=2,
                      model_kwargs={"width": 8})
    trainer = Trainer(cfg, [SpectralMonitor(fake), poison], data=boring_data())
    # The same exception a non-finite loss raises, so the sweep records the same "diverged" outcome.
    with pytest.raises(FloatingPointError, match=r"^non-finite weights in layer fc2 at step 2$"):
        trainer.fit()
    assert fake.calls == []  # the analyzer never saw the Inf
    assert poison.losses and all(math.isfinite(v) for v in poison.losses)
    assert poison.calls[-1] == ("on_exception", 2) and isinstance(poison.exceptions[0], FloatingPointError)
