"""Sweep specifications: the YAML a user writes, validated with pydantic.

A spec names the model and dataset, the fixed training settings, the search space (as data), the
monitoring cadence, the objective ("optimize toward a target alpha"), and how the sweep runs
(samples, concurrency, scheduler, sampler, resources, storage). :meth:`SweepSpec.from_yaml` turns a
file into a validated :class:`SweepSpec` or raises :class:`SpecError` whose message names every
offending field and what is wrong with it.

Examples
--------
>>> spec = SweepSpec.from_yaml("sweeps/examples/quickstart.yaml")  # doctest: +SKIP
>>> spec.objective.target_alpha  # doctest: +SKIP
2.0
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
    with_config,
)
from typing_extensions import TypedDict

__all__ = [
    "AUTO_SAMPLER",
    "TRAIN_FIELDS",
    "SpecError",
    "SweepSpec",
    "Choice",
    "Grid",
    "Uniform",
    "LogUniform",
    "IntRange",
    "ObjectiveSpec",
    "AlphaBalanceSettings",
]

#: Settings of ``trainers.train.TrainConfig`` a spec may fix or search (docs/interfaces.md).
#: ``model_kwargs.<key>`` / ``data_kwargs.<key>`` / ``optimizer_kwargs.<key>`` / ``alpha_balance.<key>``
#: reach into the nested dicts.
#: (``checkpoint_dir``/``checkpoint_every`` are left out: Ray Tune owns a trial's checkpoints.)
TRAIN_FIELDS: tuple[str, ...] = (
    "batch_size", "lr", "optimizer", "momentum", "weight_decay", "dropout", "schedule",
    "lr_step_size", "lr_gamma", "epochs", "steps", "eval_every", "spectral_every", "eval_at_start",
    "eval_samples", "grad_clip", "seed", "device", "threads", "model_kwargs", "data_kwargs",
    "optimizer_kwargs", "data_dir", "alpha_balance", "loader", "num_workers", "pin_memory",
    "persistent_workers", "precision", "channels_last", "compile",
)
_NESTED = ("model_kwargs", "data_kwargs", "optimizer_kwargs", "alpha_balance")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class SpecError(ValueError):
    """A sweep spec is invalid; the message lists each field and its problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- search domains
_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _yaml_floats(values: list[Any]) -> list[Any]:
    # PyYAML reads ``1e-3`` (no dot) as a string; a user writing it means the number.
    return [float(v) if isinstance(v, str) and _FLOAT_RE.match(v) else v for v in values]


class Choice(_Strict):
    """Pick one of ``values`` (Optuna categorical)."""

    type: Literal["choice"]
    values: list[int | float | str | bool | None] = Field(min_length=1)

    @field_validator("values")
    @classmethod
    def _numbers(cls, v: list[Any]) -> list[Any]:
        v = _yaml_floats(v)
        if len(set(map(repr, v))) != len(v):
            raise ValueError(f"values must be distinct (got {v})")
        return v


class Grid(_Strict):
    """Try every one of ``values`` (Optuna ``GridSampler``; every searched field must be a grid)."""

    type: Literal["grid"]
    values: list[int | float | str | bool | None] = Field(min_length=1)

    _numbers = field_validator("values")(Choice._numbers.__func__)


class Uniform(_Strict):
    """A float drawn uniformly from ``[low, high]``."""

    type: Literal["uniform"]
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be smaller than high ({self.high})")
        return self


class LogUniform(Uniform):
    """A float drawn log-uniformly from ``[low, high]``, ``low > 0``."""

    type: Literal["loguniform"]  # type: ignore[assignment]

    @field_validator("low")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError(f"must be > 0 for a log scale (got {v})")
        return v


class IntRange(_Strict):
    """An integer from ``[low, high]`` (inclusive), optionally on a log scale."""

    type: Literal["int"]
    low: int
    high: int
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be smaller than high ({self.high})")
        if self.log and self.low < 1:
            raise ValueError(f"low must be >= 1 for a log scale (got {self.low})")
        return self


Domain = Annotated[Choice | Grid | Uniform | LogUniform | IntRange, Field(discriminator="type")]


# --------------------------------------------------------------------------- train.alpha_balance
# TypedDicts keep ``train`` a plain dict while pydantic checks ``train.alpha_balance.<key>`` and
# names it in errors. The bounds mirror ``trainers.alpha_balance.AlphaBalanceConfig`` (this module
# does not import torch); tests/sweeps/test_spec_alpha_balance.py keeps the two in step.
@with_config(ConfigDict(extra="forbid"))
class AlphaBalanceSettings(TypedDict, total=False):
    """``train.alpha_balance``: alpha-guided per-layer learning rates (``trainers.alpha_balance``).

    Every key is optional (defaults in ``AlphaBalanceConfig``) and searchable as
    ``alpha_balance.<key>``.
    """

    target: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    method: Literal["tempbalance", "tempbalance_rank", "proportional"]
    min_factor: Annotated[float, Field(gt=0, le=1)]
    max_factor: Annotated[float, Field(ge=1, allow_inf_nan=False)]
    metric: Literal["alpha_hill", "alpha", "alpha_farms"]
    gain: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    exclude_first: bool
    exclude_last: bool


@with_config(ConfigDict(extra="allow"))
class _TrainSettings(TypedDict, total=False):
    # Only the structured settings are typed here; SweepSpec._train_keys checks the other keys.
    alpha_balance: AlphaBalanceSettings


_ALPHA_BALANCE = TypeAdapter(AlphaBalanceSettings)


def _check_alpha_balance_domain(key: str, domain: Any) -> None:
    """Every value a searched ``alpha_balance.<sub>`` domain can produce must be a valid setting."""
    sub = key.partition(".")[2]
    if sub not in AlphaBalanceSettings.__annotations__:
        raise ValueError(f"cannot search {key!r}; alpha_balance settings: "
                         f"{', '.join(AlphaBalanceSettings.__annotations__)}")
    values = domain.values if hasattr(domain, "values") else [domain.low, domain.high]
    for value in values:
        try:
            _ALPHA_BALANCE.validate_python({sub: value})
        except ValidationError as exc:
            raise ValueError(f"{key}: value {value!r} is not a valid setting: {exc.errors()[0]['msg']}") from None


# --------------------------------------------------------------------------- sections
class MonitorSpec(_Strict):
    """How often a trial evaluates and analyzes its spectra, and where the ESDs are computed."""

    eval_every: int = Field(50, gt=0, description="Evaluate on the test set every N steps.")
    spectral_every: int = Field(50, gt=0, description="Compute ESDs + phases every N steps (and at the end).")
    esd_actor: bool = Field(True, description="Use the shared ESD Ray actor (False: analyze in the trial).")
    conv: Literal["reshape", "kernel"] = "reshape"
    tail_law: bool = Field(False, description="Test each layer's tail against truncated power law, lognormal and "
                           "exponential (analysis.tail_law; ~0.1-1 s per layer per analysis).")
    farms: bool = Field(False, description="Add the FARMS alpha (alpha_farms, alpha_hill_farms; analysis.farms) to "
                        "every analysis: logged per layer and in the metric-vs-accuracy table. On by itself when "
                        "objective.metric or train.alpha_balance.metric is alpha_farms.")
    # analysis.farms.FARMS_WINDOWS (this module does not import torch; tests/sweeps/test_spec.py keeps them equal)
    farms_windows: int = Field(10, ge=1, description="FARMS window offsets per dimension, when FARMS is computed "
                               "(the paper's 10: 4-6x the analysis' cost on the CPU; 2: about 1x, alpha_hill_farms "
                               "within 0.01).")


class ObjectiveSpec(_Strict):
    """Optimize toward a target alpha, constrained or traded off against test error.

    ``aggregate`` picks the layer aggregate: ``mean`` / ``median`` over layers, ``last`` (the last
    dense layer) or ``layers`` (the mean over the named ``layers``). ``metric`` picks the α:
    ``alpha`` (the CSN fit of each layer's ESD) or ``alpha_farms`` (the same fit on the pooled ESD of
    square windows, ``analysis.farms``: no aspect-ratio bias; the monitor then computes it).
    """

    target_alpha: float = Field(2.0, gt=0)
    metric: Literal["alpha", "alpha_farms"] = "alpha"
    aggregate: Literal["mean", "median", "last", "layers"] = "mean"
    layers: list[str] | None = None
    min_test_accuracy: float | None = Field(None, ge=0, le=1)
    multi_objective: bool = False
    penalty: float = Field(10.0, gt=0, description="Added to |alpha - target| when a trial is infeasible.")

    @model_validator(mode="after")
    def _consistent(self) -> ObjectiveSpec:
        if self.aggregate == "layers" and not self.layers:
            raise ValueError("aggregate 'layers' needs a non-empty 'layers' list")
        if self.layers and self.aggregate != "layers":
            raise ValueError(f"'layers' is only used with aggregate: layers (got aggregate: {self.aggregate})")
        if self.multi_objective and self.min_test_accuracy is not None:
            raise ValueError("use either multi_objective (alpha error vs test error) or min_test_accuracy, not both")
        return self


class SchedulerSpec(_Strict):
    """Early stopping of poor trials: none, or ASHA on the objective."""

    type: Literal["none", "asha"] = "none"
    grace_period: int = Field(1, ge=1, description="ASHA: reports before a trial may be stopped.")
    reduction_factor: float = Field(2.0, gt=1)


#: The single-objective sampler ``sampler: auto`` picks. benchmarks/bench_search.py found no sampler
#: at half of random search's trials to a feasible |α − target| ≤ 0.1 on its two tables for every
#: target, so this stays TPE. TPE with the floor as a constraint orders trials exactly as the
#: penalized TPE did. GPSampler (50 seeds, floor 0.8) needed fewer trials than TPE for 4 of the 6
#: targets, and 0.34× random's on mlp3 at α 3. It was worse at 12 trials on lenet5, and its CPU
#: cost grows with the trials, so it was not made the default.
AUTO_SAMPLER = "tpe"


class SamplerSpec(_Strict):
    """Optuna sampler; ``None`` means ``auto`` (see :attr:`SweepSpec.sampler_type`)."""

    type: Literal["auto", "tpe", "gp", "random", "nsga2", "grid", "qmc"] | None = None
    n_startup_trials: int = Field(4, ge=0, description="TPE / GP: random trials before modelling.")
    population_size: int = Field(8, ge=2, description="NSGA-II population size.")


class ResourcesSpec(_Strict):
    """Resources per trial; fractional GPUs pack several trials on one device."""

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)


class EsdActorSpec(_Strict):
    """Resources of the shared ESD actor (its own GPU fraction on a cluster)."""

    cpu: float = Field(0.0, ge=0)
    gpu: float = Field(0.0, ge=0)


class TrackingSpec(_Strict):
    """Where MLflow records the sweep (default: ``sqlite:///<workdir>/mlflow.db``)."""

    uri: str | None = None
    experiment: str | None = None
    artifacts: str | None = Field(None, description="Artifact root for a new experiment (default <workdir>/mlartifacts).")
    figure_every: int = Field(0, ge=0, description="Log ESD PNGs every N spectral snapshots (0: only the final one).")


# --------------------------------------------------------------------------- the spec
class SweepSpec(_Strict):
    """A validated sweep specification.

    Attributes
    ----------
    name : str
        Sweep name: the Optuna study, MLflow experiment and default workdir ``runs/<name>``.
    model, dataset : str or None
        Names understood by ``trainers`` (e.g. ``"mlp3"``, ``"digits"``), or import paths of the
        user's factories (``"mynets.nets:tiny_resnet"``, ``"mydata.sets:cifar_pair"``), imported from
        the spec's folder and the working directory on the driver and every worker.
    trainable : str or None
        ``"pkg.module:train"``: the user's own loop, called as ``train(config, session)``
        (``sweeps.session``) instead of the built-in trainer; then ``model``/``dataset`` are not
        given and ``train`` / ``search`` hold whatever settings that loop reads.
    task : {'classification', 'regression', 'language_model'}, optional
        Overrides the task inferred from the user's Datasets.
    train : dict
        Fixed ``TrainConfig`` settings (``steps``, ``optimizer``, ``model_kwargs`` ...).
    search : dict of str to domain
        The search space; keys are ``TrainConfig`` fields or ``model_kwargs.<key>``.
    """

    name: str
    description: str = ""
    model: str | None = None
    dataset: str | None = None
    trainable: str | None = None
    task: Literal["classification", "regression", "language_model"] | None = None
    train: dict[str, Any] = Field(default_factory=dict)
    search: dict[str, Domain] = Field(default_factory=dict)
    monitor: MonitorSpec = MonitorSpec()
    objective: ObjectiveSpec = ObjectiveSpec()
    num_samples: int = Field(8, ge=1)
    max_concurrent_trials: int = Field(2, ge=1)
    max_failures: int = Field(1, ge=0, description="Retries of a failed trial, restored from its checkpoint.")
    scheduler: SchedulerSpec = SchedulerSpec()
    sampler: SamplerSpec = SamplerSpec()
    resources: ResourcesSpec = ResourcesSpec()
    esd_actor: EsdActorSpec = EsdActorSpec()
    tracking: TrackingSpec = TrackingSpec()
    workdir: str | None = None
    storage_path: str | None = Field(None, description="Ray Tune storage (default: the workdir; s3://... on a cluster).")
    optuna_storage: str | None = Field(None, description="Optuna storage URL (default sqlite:///<workdir>/optuna.db).")
    seed: int = 0
    ship_code: bool = Field(False, description="Upload the working directory to every Ray node (runtime_env "
                                               "working_dir), for clusters without a shared filesystem.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(f"{v!r} must start with a letter or digit and use only letters, digits, '_', '-', '.'")
        return v

    @field_validator("train")
    @classmethod
    def _train_keys(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if info.data.get("trainable"):  # the user's loop reads its own settings
            return v
        v = TypeAdapter(_TrainSettings).validate_python(v)
        for key in v:
            if key in ("model", "dataset", "task"):
                raise ValueError(f"{key!r} is set at the top level of the spec, not under train")
            if key not in TRAIN_FIELDS:
                raise ValueError(f"unknown training setting {key!r}; known: {', '.join(TRAIN_FIELDS)}")
        for key in _NESTED:
            if key in v and not isinstance(v[key], dict):
                raise ValueError(f"{key} must be a mapping (got {type(v[key]).__name__})")
        return v

    @field_validator("search")
    @classmethod
    def _search_keys(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if info.data.get("trainable"):
            return v
        for key in v:
            head, _, tail = key.partition(".")
            if tail and head not in _NESTED:
                raise ValueError(f"{key!r}: only {', '.join(f'{n}.<key>' for n in _NESTED)} may be dotted")
            if not tail and key not in TRAIN_FIELDS:
                raise ValueError(f"cannot search {key!r}; searchable: {', '.join(TRAIN_FIELDS)} or model_kwargs.<key>")
            if not tail and key in _NESTED:
                raise ValueError(f"search {key}.<key> instead of the whole {key} mapping")
            if head == "alpha_balance":
                _check_alpha_balance_domain(key, v[key])
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        if self.trainable is not None:
            if self.model is not None or self.dataset is not None:
                raise ValueError("trainable: the user's loop builds its own model and data; drop model and dataset")
        elif self.model is None or self.dataset is None:
            missing = " and ".join(k for k in ("model", "dataset") if getattr(self, k) is None)
            raise ValueError(f"{missing}: required field is missing "
                             "(or name your own training loop as trainable: 'pkg.module:train')")
        for key in self.search:
            head, _, tail = key.partition(".")
            if key in self.train or (tail and tail in self.train.get(head, {})):
                raise ValueError(f"search.{key} is also fixed under train; keep one of them")
        grids = [k for k, d in self.search.items() if isinstance(d, Grid)]
        if grids and len(grids) != len(self.search):
            others = sorted(set(self.search) - set(grids))
            raise ValueError(f"search: grid domains ({', '.join(grids)}) cannot be mixed with sampled ones "
                             f"({', '.join(others)}); use type: choice for a sampled discrete set")
        if self.sampler.type == "grid" and not grids:
            raise ValueError("sampler.type: grid needs every search domain to be type: grid")
        if grids and self.sampler.type not in (None, "auto", "grid"):
            raise ValueError(f"search uses grid domains but sampler.type is {self.sampler.type!r}; drop it or use grid")
        if self.monitor.farms_windows != MonitorSpec.model_fields["farms_windows"].default and not self.computes_farms:
            raise ValueError("monitor.farms_windows is set but nothing computes FARMS; add monitor.farms: true "
                             "(or use objective.metric / train.alpha_balance.metric alpha_farms)")
        if self.objective.multi_objective and self.scheduler.type == "asha":
            raise ValueError("scheduler.type: asha cannot stop trials of a multi_objective sweep; use none")
        if self.max_concurrent_trials > self.num_samples:
            object.__setattr__(self, "max_concurrent_trials", self.num_samples)
        return self

    # ------------------------------------------------------------------ derived
    @property
    def sampler_type(self) -> str:
        """The effective Optuna sampler name; ``auto`` (the default) picks grid for a grid, NSGA-II
        for a multi-objective sweep, else :data:`AUTO_SAMPLER`."""
        if self.sampler.type not in (None, "auto"):
            return self.sampler.type
        if any(isinstance(d, Grid) for d in self.search.values()):
            return "grid"
        return "nsga2" if self.objective.multi_objective else AUTO_SAMPLER

    @property
    def computes_farms(self) -> bool:
        """Whether the trials' analyses carry the FARMS α: asked for (``monitor.farms``), or a metric
        that steers on it (``objective.metric``, or the built-in trainer's fixed or searched
        ``alpha_balance.metric``; a user's loop reads ``train`` as its own settings)."""
        builtin = self.trainable is None
        balance = self.train.get("alpha_balance") if builtin else None
        balance = balance if isinstance(balance, dict) else {}
        searched = self.search.get("alpha_balance.metric") if builtin else None
        return (self.monitor.farms or self.objective.metric == "alpha_farms"
                or balance.get("metric") == "alpha_farms"
                or (searched is not None and "alpha_farms" in getattr(searched, "values", ())))

    @property
    def subject(self) -> str:
        """What the sweep trains, for people: ``mlp3 on digits`` or ``the loop pkg.module:train``."""
        return f"the loop {self.trainable}" if self.trainable else f"{self.model} on {self.dataset}"

    @property
    def grid_size(self) -> int:
        """Number of points of a grid search space (1 when there is no grid)."""
        return math.prod(len(d.values) for d in self.search.values() if isinstance(d, Grid))

    def with_overrides(self, **changes: Any) -> SweepSpec:
        """A re-validated copy with top-level fields (or ``objective.<field>``) replaced."""
        data = self.model_dump(mode="json")
        for key, value in changes.items():
            head, _, tail = key.partition(".")
            if tail:
                data.setdefault(head, {})[tail] = value
            else:
                data[key] = value
        return SweepSpec.from_dict(data)

    # ------------------------------------------------------------------ I/O
    @classmethod
    def from_dict(cls, data: Any, *, source: str = "spec") -> SweepSpec:
        """Validate a mapping; raise :class:`SpecError` naming each bad field.

        Parameters
        ----------
        data : mapping
            The parsed YAML document.
        source : str, default='spec'
            Shown at the start of the error message (usually the file name).

        Returns
        -------
        SweepSpec

        Raises
        ------
        SpecError
            If a field is missing, unknown, of the wrong type or inconsistent with another.
        """
        if not isinstance(data, dict):
            raise SpecError(f"{source}: a sweep spec must be a YAML mapping of fields (got {type(data).__name__})")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SpecError(_format_errors(exc, source)) from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> SweepSpec:
        """Read and validate a YAML sweep spec.

        Parameters
        ----------
        path : str or Path
            The spec file.

        Returns
        -------
        SweepSpec

        Raises
        ------
        SpecError
            If the file is missing, is not valid YAML, or fails validation.
        """
        path = Path(path)
        if not path.is_file():
            raise SpecError(f"{path}: no such spec file")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            where = ""
            mark = getattr(exc, "problem_mark", None)
            if mark is not None:
                where = f" at line {mark.line + 1}, column {mark.column + 1}"
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise SpecError(f"{path}: not valid YAML{where}: {problem}") from None
        return cls.from_dict(data, source=str(path))

    def to_yaml(self, path: str | Path) -> Path:
        """Write the spec (all defaults filled in) as YAML; returns the path."""
        path = Path(path)
        path.write_text(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))
        return path


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "union_tag_invalid":
            msg = f"unknown domain type {err['input'].get('type')!r}; use choice, grid, uniform, loguniform or int"
        elif err["type"] == "union_tag_not_found":
            msg = "a search domain needs 'type' (choice, grid, uniform, loguniform or int)"
        elif "input" in err and err["type"] not in ("value_error", "assertion_error") \
                and not isinstance(err["input"], dict | list):
            msg = f"{msg} (got {err['input']!r})"
        lines.append(f"  {loc}: {msg}" if loc else f"  {msg}")
    n = len(lines)
    return f"{source}: {n} problem{'s' if n > 1 else ''} in the sweep spec:\n" + "\n".join(lines)
