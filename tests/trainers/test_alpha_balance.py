"""Alpha-guided per-layer learning rates: the mapping, the param groups, and real small training runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from htsweep.analysis.layers import extract_layers
from htsweep.trainers.alpha_balance import (
    METHODS,
    AlphaBalance,
    AlphaBalanceConfig,
    group_alphas,
    layer_factors,
)
from htsweep.trainers.callbacks import MetricsHistory
from htsweep.trainers.models import build_model
from htsweep.trainers.monitor import SpectralMonitor
from htsweep.trainers.optim import (
    OPTIMIZERS,
    OTHER_GROUP,
    SCHEDULES,
    build_optimizer,
    build_scheduler,
    layer_param_groups,
    scaled_lr,
)
from htsweep.trainers.train import TrainConfig, Trainer

# ---------------------------------------------------------------------------------------- mapping


def test_tempbalance_is_linear_in_alpha_between_the_extremes():
    cfg = AlphaBalanceConfig(min_factor=0.5, max_factor=1.5)
    # closed form f = 0.5 + (a - 2) / (5 - 2): 2 -> 0.5, 3 -> 0.8333, 5 -> 1.5
    out = layer_factors({"a": 3.0, "b": 2.0, "c": 5.0}, cfg)
    assert_allclose([out["a"], out["b"], out["c"]], [0.5 + 1 / 3, 0.5, 1.5], rtol=1e-12)


def test_tempbalance_rank_is_linear_in_rank():
    cfg = AlphaBalanceConfig(method="tempbalance_rank", min_factor=0.5, max_factor=1.5)
    # ranks 2, 1, 4, 3 of 4 -> 0.5 + (r - 1) / 3; the outlier 9.0 does not squeeze the others
    out = layer_factors({"a": 2.1, "b": 2.0, "c": 9.0, "d": 2.2}, cfg)
    assert_allclose([out[k] for k in "abcd"], [0.5 + 1 / 3, 0.5, 1.5, 0.5 + 2 / 3], rtol=1e-12)
    tied = layer_factors({"a": 2.0, "b": 2.0, "c": 3.0}, cfg)  # mean ranks 1.5, 1.5, 3
    assert_allclose([tied["a"], tied["b"], tied["c"]], [0.75, 0.75, 1.5], rtol=1e-12)


def test_proportional_controller_and_clipping():
    cfg = AlphaBalanceConfig(method="proportional", target=2.0, gain=0.5, min_factor=0.5, max_factor=1.5)
    out = layer_factors({"at": 2.0, "above": 2.6, "below": 1.8, "far": 9.0, "low": 0.1}, cfg)
    # 1 + 0.5 (a - 2), clipped to [0.5, 1.5]
    assert_allclose([out[k] for k in ("at", "above", "below", "far", "low")], [1.0, 1.3, 0.9, 1.5, 0.5], rtol=1e-12)


def test_degenerate_and_missing_alphas():
    cfg = AlphaBalanceConfig(min_factor=0.5, max_factor=2.0)
    assert layer_factors({"only": 3.0}, cfg) == {"only": 1.25}  # midpoint
    assert layer_factors({"a": 2.0, "b": 2.0}, cfg) == {"a": 1.25, "b": 1.25}
    out = layer_factors({"a": 2.0, "b": math.nan, "c": 4.0}, cfg, current={"b": 0.7})
    assert out == {"a": 0.5, "b": 0.7, "c": 2.0}  # no fit: keeps the factor in effect
    assert layer_factors({"a": math.nan}, cfg) == {"a": 1.0}


@pytest.mark.parametrize("method", METHODS)
def test_factors_stay_within_bounds(method):
    rng = np.random.default_rng(1234)
    for _ in range(200):
        lo, hi = rng.uniform(0.05, 1.0), rng.uniform(1.0, 6.0)
        cfg = AlphaBalanceConfig(method=method, min_factor=lo, max_factor=hi, gain=rng.uniform(0.1, 10),
                                 target=rng.uniform(1, 4))
        alphas = {f"l{i}": a for i, a in enumerate(rng.uniform(1.0, 8.0, size=rng.integers(1, 9)))}
        values = np.array(list(layer_factors(alphas, cfg).values()))
        assert np.all(values >= lo) and np.all(values <= hi)


def test_group_alphas_follows_tempbalance_layer_selection():
    rows = [{"name": "emb", "kind": "embedding", "alpha_hill": 9.0},
            {"name": "fc1", "kind": "linear", "alpha_hill": 3.0, "alpha": 5.0},
            {"name": "conv[0,0]", "kind": "conv2d", "alpha_hill": 2.0, "alpha": 4.0},
            {"name": "conv[0,1]", "kind": "conv2d", "alpha_hill": 4.0, "alpha": math.nan},
            {"name": "fc2", "kind": "linear", "alpha_hill": math.nan},
            {"name": "head", "kind": "linear", "alpha_hill": 2.5}]
    groups = ["emb", "fc1", "conv", "fc2", "head", OTHER_GROUP]
    # default: first and last balanceable layer left out; embeddings never balanced; kernel rows averaged
    got = group_alphas(rows, groups, AlphaBalanceConfig())
    assert list(got) == ["conv", "fc2"] and got["conv"] == 3.0 and math.isnan(got["fc2"])
    got = group_alphas(rows, groups, AlphaBalanceConfig(exclude_first=False, exclude_last=False, metric="alpha"))
    assert list(got) == ["fc1", "conv", "fc2", "head"]
    assert got["fc1"] == 5.0 and got["conv"] == 4.0 and math.isnan(got["fc2"]) and math.isnan(got["head"])


# ---------------------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"min_factor": 0.0}, r"^alpha_balance\.min_factor must be a float in \(0, 1\]; got 0\.0\.$"),
        ({"min_factor": 1.2}, r"^alpha_balance\.min_factor must be a float in \(0, 1\]; got 1\.2\.$"),
        ({"max_factor": 0.9}, r"^alpha_balance\.max_factor must be a float in \[1, inf\); got 0\.9\.$"),
        ({"max_factor": math.inf}, r"^alpha_balance\.max_factor must be a float in \[1, inf\); got inf\.$"),
        ({"target": -1}, r"^alpha_balance\.target must be a float in \(0, inf\); got -1\.$"),
        ({"gain": math.inf}, r"^alpha_balance\.gain must be a float in \(0, inf\); got inf\.$"),
        ({"gain": "big"}, r"^alpha_balance\.gain must be a float in \(0, inf\); got 'big'\.$"),
        ({"gain": True}, r"^alpha_balance\.gain must be a float in \(0, inf\); got True\.$"),
        ({"method": "tb"}, r"^unknown alpha_balance\.method 'tb'; choose one of 'tempbalance', 'tempbalance_rank', "
                           r"'proportional'$"),
        ({"metric": "alpha_ks"}, r"^unknown alpha_balance\.metric 'alpha_ks' \(did you mean 'alpha'\?\); "
                                 r"choose one of 'alpha_hill', 'alpha', 'alpha_farms'$"),
        ({"exclude_first": "no"}, r"^alpha_balance\.exclude_first must be a bool; got 'no'\.$"),
        ({"max_facter": 2}, r"unknown setting alpha_balance\.max_facter \(did you mean 'max_factor'\?\)"),
    ],
)
def test_settings_errors_name_the_field(settings, match):
    with pytest.raises(ValueError, match=match):
        AlphaBalanceConfig.from_dict(settings)
    with pytest.raises(ValueError, match=match):
        TrainConfig(steps=1, alpha_balance=settings)


def test_train_config_stores_the_filled_in_settings():
    cfg = TrainConfig(steps=1, alpha_balance={"method": "proportional", "gain": 2})
    assert cfg.alpha_balance == {**AlphaBalanceConfig().to_dict(), "method": "proportional", "gain": 2.0}
    assert TrainConfig(steps=1).alpha_balance is None
    with pytest.raises(ValueError, match="alpha_balance must be a mapping of settings, got list"):
        TrainConfig(steps=1, alpha_balance=[1])


# ---------------------------------------------------------------------------------------- param groups


@pytest.mark.parametrize(("model", "kwargs"), [("mlp3", {"in_features": 20, "width": 16}), ("lenet5", {}),
                                               ("char_gpt", {"vocab_size": 11, "n_layer": 1, "n_embd": 8,
                                                             "n_head": 2, "block_size": 8})])
def test_layer_groups_are_named_like_the_analyzed_layers(model, kwargs):
    net = build_model(model, **kwargs)
    groups = layer_param_groups(net)
    names = [g["name"] for g in groups if g["name"] != OTHER_GROUP]
    assert names == [layer.name for layer in extract_layers(net, min_dim=1)]
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in net.parameters()) and len(set(ids)) == len(ids)


def test_scaled_lr_composes_with_every_schedule_and_optimizer():
    net = build_model("mlp3", in_features=6, width=8)
    factors = {"fc1": 2.0, "fc3": 0.25}
    for opt_name in OPTIMIZERS:
        for schedule in SCHEDULES:
            opt = build_optimizer(opt_name, layer_param_groups(net), lr=0.1)
            sched = build_scheduler(schedule, opt, total_steps=9, step_size=2, gamma=0.5)
            twin = build_optimizer(opt_name, net.parameters(), lr=0.1)
            twin_sched = build_scheduler(schedule, twin, total_steps=9, step_size=2, gamma=0.5)
            for _ in range(9):
                scheduled = twin.param_groups[0]["lr"]
                with scaled_lr(opt, factors):
                    inside = {g["name"]: g["lr"] for g in opt.param_groups}
                assert inside == {g["name"]: scheduled * factors.get(g["name"], 1.0) for g in opt.param_groups}
                assert all(g["lr"] == scheduled for g in opt.param_groups)  # restored exactly
                opt.step(), sched.step(), twin.step(), twin_sched.step()


# ---------------------------------------------------------------------------------------- training


def _config(seed: int, alpha_balance: dict | None, **kw) -> TrainConfig:
    """MLP3 (width 128) on scikit-learn digits: fc1 is 64 x 128 (Q = 2), so it starts with the largest α."""
    values = dict(model="mlp3", dataset="digits", steps=150, batch_size=32, lr=0.05, optimizer="sgd",
                  eval_every=0, spectral_every=50, eval_at_start=True, seed=seed, device="cpu",
                  model_kwargs={"width": 128})
    return TrainConfig(alpha_balance=alpha_balance, **{**values, **kw})


def _run(seed: int, alpha_balance: dict | None, *, callbacks=(), **kw) -> Trainer:
    trainer = Trainer(_config(seed, alpha_balance, **kw), [SpectralMonitor(), *callbacks])
    trainer.fit()
    return trainer


def _alphas(trainer: Trainer) -> dict[str, float]:
    return {r["name"]: r["alpha_hill"] for r in trainer.spectral.rows if math.isfinite(r["alpha_hill"])}


@pytest.fixture(scope="module")
def plain_runs():
    # A module fixture is set up before the autouse one-thread fixture: pin the threads here too.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {seed: _alphas(_run(seed, None)) for seed in (0, 1)}
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("seed", [0, 1])
def test_controller_moves_an_under_trained_layer_toward_the_target_faster(plain_runs, seed):
    # fc1's PL_Alpha_Hill starts near 2.9 (Q = 2) and is still ~2.6-2.8 after 150 plain SGD steps
    # (seeds 0-2: 2.61, 2.79, 2.65); with its lr raised while alpha > 2 it ends ~0.3 closer to 2
    # (2.33, 2.46, 2.38). The margin asserted is a third of that.
    target = 2.0
    balanced = _alphas(_run(seed, {"method": "proportional", "target": target, "gain": 4.0, "min_factor": 0.25,
                                   "max_factor": 4.0, "exclude_first": False}))
    plain = plain_runs[seed]
    assert plain["fc1"] > target + 0.3  # the layer is under-trained without help
    assert abs(balanced["fc1"] - target) < abs(plain["fc1"] - target) - 0.1


@pytest.mark.parametrize("seed", [0, 1])
def test_tempbalance_narrows_the_alpha_spread(plain_runs, seed):
    # max - min of the three fitted layers' alpha: 0.53, 0.74, 0.53 plain vs 0.19, 0.33, 0.21 (seeds 0-2)
    balanced = _alphas(_run(seed, {"min_factor": 0.25, "max_factor": 4.0, "exclude_first": False}))
    spread = {k: max(a.values()) - min(a.values()) for k, a in (("plain", plain_runs[seed]), ("tb", balanced))}
    assert spread["tb"] < 0.6 * spread["plain"]


@pytest.mark.parametrize(("optimizer", "schedule"), [("sgd", "step"), ("momentum", "cosine"), ("adam", "constant"),
                                                   ("adamw", "step")])
def test_factors_within_bounds_with_every_optimizer_and_schedule(optimizer, schedule):
    # (every optimizer x schedule pair is covered without training by the scaled_lr test above)
    lr = 0.05 if optimizer in ("sgd", "momentum") else 2e-3
    hist = MetricsHistory(keys=["lr"])
    kw = dict(steps=24, spectral_every=6, eval_every=6, optimizer=optimizer, schedule=schedule, lr=lr,
              lr_step_size=8, model_kwargs={"width": 48}, eval_samples=64)
    trainer = _run(0, {"method": "proportional", "gain": 3.0, "min_factor": 0.6, "max_factor": 1.7,
                       "exclude_first": False}, callbacks=[hist], **kw)
    ab = next(cb for cb in trainer.callbacks if isinstance(cb, AlphaBalance))
    assert len(ab.history) == 5  # steps 0, 6, 12, 18, 24
    factors = np.array([[h[k] for k in ("fc1", "fc2", "fc3")] for h in ab.history])
    assert np.all(factors >= 0.6) and np.all(factors <= 1.7) and np.any(factors != 1.0)
    assert set(trainer.lr_factors) == {"fc1", "fc2", "fc3", "fc4"} and trainer.lr_factors["fc4"] == 1.0
    # the factors never leak into the schedule: the reported (scheduled) lr is the plain run's
    plain_hist = MetricsHistory(keys=["lr"])
    _run(0, None, callbacks=[plain_hist], **kw)
    assert [r["lr"] for r in hist.history] == [r["lr"] for r in plain_hist.history]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_identity_factors_reproduce_plain_training_exactly(optimizer):
    # Per-layer parameter groups change nothing by themselves: factors pinned at 1 give the plain run.
    kw = dict(steps=12, spectral_every=4, optimizer=optimizer, lr=0.05 if "sgd" in optimizer else 2e-3,
              weight_decay=1e-3, model_kwargs={"width": 32})
    plain = _run(0, None, **kw)
    pinned = _run(0, {"min_factor": 1.0, "max_factor": 1.0}, **kw)
    for key, value in plain.model.state_dict().items():
        assert torch.equal(value, pinned.model.state_dict()[key]), key


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_a_factor_scales_the_layer_update(optimizer):
    # First step from the same weights and batch: every optimizer's update is linear in the lr.
    kw = dict(steps=1, spectral_every=0, eval_at_start=False, optimizer=optimizer, lr=0.01, weight_decay=1e-2,
              model_kwargs={"width": 32})
    updates = {}
    for factor in (1.0, 3.0):
        trainer = Trainer(_config(0, {}, **kw), [SpectralMonitor()])
        before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        trainer.set_lr_factors({"fc2": factor})
        trainer.fit()  # the only monitoring (and factor update) comes after the step
        updates[factor] = {k: v - before[k] for k, v in trainer.model.state_dict().items()}
    # float32 differences of weights ~0.1 resolve updates ~1e-3 to ~1e-5 relative
    assert_allclose(updates[3.0]["fc2.weight"], 3.0 * updates[1.0]["fc2.weight"], rtol=1e-3, atol=1e-7)
    assert torch.equal(updates[3.0]["fc1.weight"], updates[1.0]["fc1.weight"])


def test_resume_mid_training_is_bit_identical(tmp_path):
    ab = {"method": "tempbalance", "exclude_first": False}
    kw = dict(steps=40, spectral_every=10, eval_every=10, eval_at_start=False, optimizer="momentum",
              schedule="cosine", model_kwargs={"width": 48}, data_kwargs={"max_train": 400}, eval_samples=128)
    hist_a = MetricsHistory()
    a = _run(0, ab, callbacks=[hist_a], checkpoint_dir=str(tmp_path), checkpoint_every=15, **kw)
    torch.manual_seed(999)  # a fresh process state
    hist_b = MetricsHistory()
    b = Trainer(_config(0, ab, **kw), [SpectralMonitor(), hist_b])
    b.fit(resume_from=tmp_path / "step_15.pt")  # between the updates at steps 10 and 20
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    ab_a, ab_b = (next(cb for cb in t.callbacks if isinstance(cb, AlphaBalance)) for t in (a, b))
    assert ab_b.history == ab_a.history and len(ab_a.history) == 4  # steps 10, 20, 30, 40
    assert b.lr_factors == a.lr_factors
    assert repr(hist_b.history) == repr(hist_a.history)  # repr: exact floats, and NaN (fc4's alpha) equals NaN
    assert any(k.startswith("lr_factor/") for k in hist_a.history[-1])


def test_alpha_farms_metric_turns_the_monitor_farms_on_and_balances_by_it():
    monitor = SpectralMonitor()
    trainer = Trainer(_config(0, {"metric": "alpha_farms"}, steps=50), [monitor])
    trainer.fit()
    assert monitor.farms
    rows = {r["name"]: r for r in trainer.spectral.rows}
    assert all(math.isfinite(rows[n]["alpha_hill_farms"]) for n in ("fc1", "fc2", "fc3"))
    assert trainer.callback_metrics["alpha_farms_mean"] == pytest.approx(
        np.nanmean([r["alpha_farms"] for r in trainer.spectral.rows]))
    # fc2 is the only balanced layer (first and last excluded): it has a factor from its FARMS α
    alphas = group_alphas(trainer.spectral.rows, list(trainer.lr_factors), trainer.callbacks[-1].config)
    assert list(alphas) == ["fc2", "fc3"] and alphas["fc2"] == rows["fc2"]["alpha_farms"]


def test_misuse_fails_early(tmp_path):
    base = dict(model="mlp3", dataset="digits", steps=2, device="cpu", model_kwargs={"width": 8})
    with pytest.raises(ValueError, match="AlphaBalance needs per-layer optimizer parameter groups"):
        Trainer(TrainConfig(**base), [SpectralMonitor(), AlphaBalance()]).fit()
    with pytest.raises(ValueError, match="AlphaBalance needs a SpectralMonitor earlier"):
        Trainer(TrainConfig(alpha_balance={}, **base)).fit()
    with pytest.raises(ValueError, match="more than one AlphaBalance"):
        Trainer(TrainConfig(alpha_balance={}, **base), [SpectralMonitor(), AlphaBalance()]).fit()
    trainer = Trainer(TrainConfig(alpha_balance={}, **base), [SpectralMonitor()])
    with pytest.raises(ValueError, match=r"no parameter group 'fc9'; groups: fc1, fc2, fc3, fc4"):
        trainer.set_lr_factors({"fc9": 1.0})
    with pytest.raises(ValueError, match=r"^lr factor of 'fc1' must be a float in \(0, inf\); got -1\.$"):
        trainer.set_lr_factors({"fc1": -1})
    with pytest.raises(ValueError, match=r"^lr factor of 'fc1' must be a float in \(0, inf\); got nan\.$"):
        trainer.set_lr_factors({"fc1": math.nan})
    path = trainer.save_checkpoint(tmp_path / "ab.pt")
    with pytest.raises(ValueError, match=r"was made with alpha_balance=\{.*\}, this trainer has alpha_balance=None"):
        Trainer(TrainConfig(**base)).load_checkpoint(path)
