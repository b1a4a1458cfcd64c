"""The user's dataset by import path: ``dataset: "pkg.module:factory"``.

The factory is called with ``data_kwargs`` (plus ``seed`` when its signature names it) and returns
a ``(train, test)`` pair of map-style ``torch.utils.data.Dataset`` s yielding ``(x, y)``, which
:func:`trainers.datasets.from_datasets` checks and describes, or a ready ``DataBundle`` /
``DatasetPair``. Whatever is wrong is a one-line :class:`UserCodeError` starting ``dataset:``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from htsweep.trainers.data import DataBundle
from htsweep.trainers.datasets import DatasetPair, from_datasets
from htsweep.trainers.user_code import UserCodeError, call_factory, resolve

__all__ = ["load_user_dataset"]


def _describe(value: Any) -> str:
    if isinstance(value, tuple | list):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def load_user_dataset(path: str, *, data_kwargs: Mapping[str, Any] | None = None, seed: int = 0,
                      task: str | None = None, data_dir: str | None = None) -> DataBundle | DatasetPair:
    """Build the user's dataset from the factory at ``path``.

    Parameters
    ----------
    path : str
        ``"package.module:factory"``.
    data_kwargs : mapping, optional
        The spec's ``data_kwargs``, passed as keyword arguments.
    seed : int, default=0
        Passed as ``seed`` when the factory names it.
    data_dir : str, optional
        The config's ``data_dir``, passed as ``data_dir`` when set and the factory names it.
    task : {'classification', 'regression', 'language_model'}, optional
        Overrides the task inferred from the targets (must match a returned bundle's).

    Returns
    -------
    DatasetPair or DataBundle

    Raises
    ------
    UserCodeError
        The path does not import, the factory raised, or it returned something else than a pair
        of map-style Datasets of ``(x, y)`` items (or a bundle); one line naming the cause.

    Examples
    --------
    >>> pair = load_user_dataset("htsweep.trainers.data:digits", data_kwargs={"test_fraction": 0.5}, seed=1)
    >>> pair.task, pair.n_classes, pair.input_shape
    ('classification', 10, (1, 8, 8))
    """
    factory = resolve(path, field="dataset")
    available = {"seed": seed, **({"data_dir": data_dir} if data_dir is not None else {})}
    out = call_factory(factory, dict(data_kwargs or {}), available, field="dataset")
    if isinstance(out, DataBundle | DatasetPair):
        if task is not None and out.task != task:
            raise UserCodeError(f"dataset: {path} returned {out.task} data, but the spec sets task: {task}")
        return out
    if not (isinstance(out, tuple | list) and len(out) == 2):
        raise UserCodeError(f"dataset: {path} must return a (train, test) pair of map-style Datasets (or a "
                            f"DataBundle); it returned {_describe(out)}")
    try:
        return from_datasets(out[0], out[1], name=path, task=task)
    except ValueError as exc:
        raise UserCodeError(f"dataset: {path}: {' '.join(str(exc).split())}") from None
