"""Alpha-guided per-layer learning rates: the ``AlphaBalance`` callback.

Every time the ``SpectralMonitor`` analyzes the weights (``on_monitor``, every ``spectral_every``
steps), ``AlphaBalance`` reads each layer's power-law exponent from ``trainer.spectral`` and sets a
per-layer learning-rate factor through ``Trainer.set_lr_factors``. From the next optimizer step on,
layer ``i`` trains at ``lr_i(t) = schedule(t) · f_i``: the factor multiplies whatever the lr
schedule gives (constant, cosine, step), and works with every optimizer, since each layer is its
own optimizer parameter group. HT-SR reads a large α as an under-trained layer (a light-tailed,
random-like spectrum) and a small α as a well- or over-trained one, so large-α layers get the
large factors.

Methods (``f_min``/``f_max`` = ``min_factor``/``max_factor``; α over the balanced layers):

``tempbalance``
    TempBalance's linear map (Zhou et al. 2023, the ``tb_linear_map`` assignment of the paper's
    code): ``f_i = f_min + (α_i − α_min) / (α_max − α_min) · (f_max − f_min)``, scale-free in α.
    The layer with the smallest α gets ``f_min``, the largest ``f_max``; with one layer, or all α
    equal, every factor is the midpoint ``(f_min + f_max) / 2``. ``target`` is not used.
``tempbalance_rank``
    The same linear map over the layers' α *ranks* instead of their values:
    ``f_i = f_min + (r_i − 1) / (n − 1) · (f_max − f_min)`` (ties share their mean rank), so one
    outlying α cannot squeeze the other layers together.
``proportional``
    A proportional controller toward ``target``: ``f_i = clip(1 + gain · (α_i − target), f_min,
    f_max)``. Layers above the target train faster, layers below it slower, a layer at the target
    at the scheduled lr.

Which α: ``metric='alpha_hill'`` (default) is PL_Alpha_Hill, the Hill estimate with xmin at the
median eigenvalue (``analysis.pl_alpha_hill``), the quantity TempBalance uses; ``metric='alpha'``
is the Clauset–Shalizi–Newman maximum-likelihood fit (``analysis.fit_power_law``);
``metric='alpha_farms'`` is that fit on the pooled ESD of square windows (``analysis.farms``), which
does not grow with the layer's aspect ratio (the callback turns the monitor's ``farms`` on). Only dense and
convolutional layers are balanced (TempBalance balances ``Linear``/``Conv2d``); embeddings and all
other parameters keep factor 1. Like TempBalance, the first and last of these layers are left out
by default (``exclude_first``/``exclude_last``), and so is every layer whose α is not finite at a
step (too few eigenvalues for a fit: it keeps the factor it had). PL_Alpha_Hill of a random layer
grows with its aspect ratio Q (about 2.1 at Q = 1, 3.2 at Q = 3), so a layer with a large Q reads
as under-trained partly by shape, under every method. ``docs/reproductions.md`` compares the
methods with plain training.

References
----------
Zhou, Pang, Liu, Martin, Mahoney & Yang (2023), "Temperature Balancing, Layer-wise Weight Analysis,
and Neural Network Training", NeurIPS 2023.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import rankdata

from htsweep.analysis._validation import Interval, check_value
from htsweep.analysis.metric_names import RowKey
from htsweep.trainers.callbacks import Callback
from htsweep.trainers.models import _check_choice, _did_you_mean
from htsweep.trainers.monitor import SpectralMonitor

if TYPE_CHECKING:
    from torch import nn

    from htsweep.trainers.train import Trainer

__all__ = ["BALANCED_KINDS", "FACTOR_PREFIX", "METHODS", "METRICS", "AlphaBalance", "AlphaBalanceConfig",
           "group_alphas", "layer_factors"]

METHODS: tuple[str, ...] = ("tempbalance", "tempbalance_rank", "proportional")
METRICS: tuple[str, ...] = ("alpha_hill", "alpha", "alpha_farms")

# A right bound of inf (not None) keeps inf itself out: Interval leaves unbounded sides open-ended.
_POSITIVE = Interval(float, 0.0, math.inf, closed="neither")
_SETTING_CONSTRAINTS: dict[str, list[Any]] = {
    "target": [_POSITIVE],
    "min_factor": [Interval(float, 0.0, 1.0, closed="right")],
    "max_factor": [Interval(float, 1.0, math.inf, closed="left")],
    "gain": [_POSITIVE],
    "exclude_first": ["boolean"],
    "exclude_last": ["boolean"],
}
BALANCED_KINDS = frozenset({"linear", "conv1d", "conv2d", "attn_q", "attn_k", "attn_v", "attn_out"})
"""Layer kinds (``LayerMatrix.kind``) whose learning rate is balanced."""
FACTOR_PREFIX = "lr_factor/"
"""``callback_metrics`` key prefix of each balanced layer's factor (``lr_factor/<layer>``)."""

_KERNEL_SUFFIX = re.compile(r"\[[0-9,]*\]$")


@dataclass(frozen=True)
class AlphaBalanceConfig:
    """Settings of alpha-guided per-layer learning rates (``TrainConfig.alpha_balance``).

    Parameters
    ----------
    target : float, default=2.0
        The α the ``proportional`` controller steers toward (> 0).
    method : {'tempbalance', 'tempbalance_rank', 'proportional'}, default='tempbalance'
        How α becomes a factor (see the module docstring).
    min_factor : float, default=0.5
        Smallest factor, in (0, 1] (TempBalance's ``lr_min_ratio``).
    max_factor : float, default=1.5
        Largest factor, >= 1 (TempBalance's ``lr_max_ratio``).
    metric : {'alpha_hill', 'alpha', 'alpha_farms'}, default='alpha_hill'
        PL_Alpha_Hill, the CSN power-law α, or the FARMS α of the metrics row.
    gain : float, default=0.5
        Factor change per unit of ``α − target`` (``proportional`` only; > 0).
    exclude_first, exclude_last : bool, default=True
        Keep the first / last balanceable layer at factor 1, as TempBalance does.
    """

    target: float = 2.0
    method: str = "tempbalance"
    min_factor: float = 0.5
    max_factor: float = 1.5
    metric: str = "alpha_hill"
    gain: float = 0.5
    exclude_first: bool = True
    exclude_last: bool = True

    def __post_init__(self) -> None:
        _check_choice("alpha_balance.method", self.method, METHODS)
        _check_choice("alpha_balance.metric", self.metric, METRICS)
        for name, specs in _SETTING_CONSTRAINTS.items():
            check_value(f"alpha_balance.{name}", getattr(self, name), specs, error=ValueError)
        for name, kind in (("target", float), ("min_factor", float), ("max_factor", float), ("gain", float),
                           ("exclude_first", bool), ("exclude_last", bool)):
            # built-in types keep to_dict() JSON-safe when numpy scalars came in
            object.__setattr__(self, name, kind(getattr(self, name)))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> AlphaBalanceConfig:
        """Build from a mapping (a spec's ``train.alpha_balance``), rejecting unknown keys.

        Raises
        ------
        ValueError
            Not a mapping, an unknown key (with the closest valid one), or an invalid value; the
            message names ``alpha_balance.<key>``.
        """
        if isinstance(values, AlphaBalanceConfig):
            return values
        if not isinstance(values, Mapping):
            raise ValueError(f"alpha_balance must be a mapping of settings, got {type(values).__name__}")
        valid = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in valid:
                raise ValueError(f"unknown setting alpha_balance.{key}{_did_you_mean(key, valid)}; "
                                 f"valid: {', '.join(valid)}")
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        """All settings as a plain dict (defaults filled in)."""
        return dataclasses.asdict(self)


def layer_factors(alphas: Mapping[str, float], config: AlphaBalanceConfig, *,
                  current: Mapping[str, float] | None = None) -> dict[str, float]:
    """Map the balanced layers' α to learning-rate factors.

    Parameters
    ----------
    alphas : mapping of str to float
        Layer (parameter-group) name → α; NaN for a layer without a fit.
    config : AlphaBalanceConfig
    current : mapping of str to float, optional
        The factors in effect; a layer with a non-finite α keeps its own (default 1).

    Returns
    -------
    dict of str to float
        A factor in ``[min_factor, max_factor]`` for every key of ``alphas``.

    Examples
    --------
    >>> cfg = AlphaBalanceConfig(min_factor=0.5, max_factor=1.5)
    >>> layer_factors({"fc1": 2.0, "fc2": 3.0, "fc3": 4.0}, cfg)
    {'fc1': 0.5, 'fc2': 1.0, 'fc3': 1.5}
    """
    lo, hi = config.min_factor, config.max_factor
    current = current or {}
    out = {name: float(current.get(name, 1.0)) for name in alphas}
    finite = {name: float(a) for name, a in alphas.items() if a is not None and math.isfinite(a)}
    if not finite:
        return out
    names, values = list(finite), np.array(list(finite.values()), dtype=np.float64)
    if config.method == "proportional":
        mapped = np.clip(1.0 + config.gain * (values - config.target), lo, hi)
    else:
        if config.method == "tempbalance_rank":
            score, low, span = rankdata(values), 1.0, float(len(values) - 1)
        else:
            score, low, span = values, float(values.min()), float(values.max() - values.min())
        position = (score - low) / span if span > 0 else np.full(len(score), 0.5)
        mapped = np.clip(lo + position * (hi - lo), lo, hi)  # lo + 1·(hi − lo) may round past hi
    out.update(zip(names, (float(f) for f in mapped), strict=True))
    return out


def _group_of(row_name: str, groups: set[str]) -> str | None:
    if row_name in groups:
        return row_name
    base = _KERNEL_SUFFIX.sub("", row_name)  # conv='kernel' rows "conv1[0,1]" belong to "conv1"
    return base if base in groups else None


def group_alphas(rows: Sequence[Mapping[str, Any]], groups: Sequence[str], config: AlphaBalanceConfig) -> dict[str, float]:
    """α of every balanced parameter group, from a snapshot's metrics rows.

    Parameters
    ----------
    rows : sequence of dict
        Metrics rows (``name``, ``kind`` and ``config.metric``).
    groups : sequence of str
        Parameter-group names in module order (``Trainer.lr_factors``' keys).
    config : AlphaBalanceConfig
        ``metric`` picks the α; ``exclude_first``/``exclude_last`` drop the first / last group
        that holds a balanceable layer.

    Returns
    -------
    dict of str to float
        Group → mean α of its rows (a conv layer analyzed per kernel position has several), NaN
        when none is finite; in group order.
    """
    known = set(groups)
    found: dict[str, list[float]] = {}
    for row in rows:
        group = _group_of(str(row.get(RowKey.NAME, "")), known)
        if group is None or row.get(RowKey.KIND) not in BALANCED_KINDS:
            continue
        value = row.get(config.metric)
        value = float(value) if isinstance(value, int | float) else math.nan
        found.setdefault(group, []).append(value)
    ordered = [g for g in groups if g in found]
    if config.exclude_first:
        ordered = ordered[1:]
    if config.exclude_last:
        ordered = ordered[:-1]
    out = {}
    for g in ordered:
        finite = [v for v in found[g] if math.isfinite(v)]
        out[g] = float(np.mean(finite)) if finite else math.nan
    return out


class AlphaBalance(Callback):
    """Set per-layer learning-rate factors from the layers' α after every spectral analysis.

    Enable it with ``TrainConfig(alpha_balance={...})``: the trainer then gives every layer its own
    optimizer parameter group and appends this callback after the others, so it runs after the
    ``SpectralMonitor``. It observes ``trainer.spectral`` in ``on_monitor``, signals the factors
    through ``trainer.set_lr_factors`` (in effect from the next step) and publishes them as
    ``lr_factor/<layer>`` in ``trainer.callback_metrics``, so every later report carries the
    factors in effect.

    Parameters
    ----------
    config : AlphaBalanceConfig or mapping, optional
        Default ``AlphaBalanceConfig()``.

    Attributes
    ----------
    history : list of dict
        One ``{"step": k, <layer>: factor, ...}`` per update (saved in checkpoints).
    """

    def __init__(self, config: AlphaBalanceConfig | Mapping[str, Any] | None = None):
        self.config = AlphaBalanceConfig.from_dict(config or {})
        self.history: list[dict[str, float]] = []

    def on_fit_start(self, trainer: Trainer, model: nn.Module) -> None:
        """Check for per-layer parameter groups and a ``SpectralMonitor`` that runs first."""
        mine = [i for i, cb in enumerate(trainer.callbacks) if isinstance(cb, AlphaBalance)]
        if len(mine) > 1:
            raise ValueError("more than one AlphaBalance callback; TrainConfig.alpha_balance adds the only one")
        if not trainer.lr_factors:
            raise ValueError("AlphaBalance needs per-layer optimizer parameter groups; enable it with "
                             "TrainConfig(alpha_balance={...}) instead of passing the callback")
        monitors = [cb for cb in trainer.callbacks[:mine[0]] if isinstance(cb, SpectralMonitor)]
        if not monitors:
            raise ValueError("AlphaBalance needs a SpectralMonitor earlier in the callback list "
                             "(it reads the monitor's per-layer alpha)")
        if self.config.metric == RowKey.ALPHA_FARMS:
            for monitor in monitors:
                monitor.farms = True

    def on_monitor(self, trainer: Trainer, model: nn.Module, step: int) -> None:
        """Turn this step's per-layer α into factors and signal them to the trainer."""
        snapshot = trainer.spectral
        if snapshot is None or snapshot.step != step:
            raise RuntimeError(f"AlphaBalance: no spectral snapshot for step {step}; "
                               "the SpectralMonitor must run before it")
        alphas = group_alphas(snapshot.rows, list(trainer.lr_factors), self.config)
        factors = layer_factors(alphas, self.config, current=trainer.lr_factors)
        trainer.set_lr_factors(factors)
        # every group, balanced or not (excluded layers and "other" at their factor, usually 1)
        trainer.callback_metrics.update({f"{FACTOR_PREFIX}{name}": f for name, f in trainer.lr_factors.items()})
        self.history.append({"step": step, **factors})

    def state_dict(self) -> dict[str, Any]:
        return {"history": [dict(h) for h in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = [dict(h) for h in state.get("history", [])]
