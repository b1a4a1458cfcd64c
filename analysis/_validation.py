"""Parameter validation from a table of constraints, and the one random-state helper.

Public entry points of :mod:`analysis` declare, per parameter, the forms a value may take and wrap
themselves in :func:`validate`. The decorator binds the call, checks every listed parameter before
any math runs, and raises ``ValueError`` (or ``TypeError`` for a wrong type) naming the parameter,
the allowed forms and the value received. Private helpers trust their inputs and check nothing.
Settings that arrive as data rather than as parameters (``trainers.config.TrainConfig`` fields,
model constructor arguments) are checked against the same forms with :func:`check_value`, which
builds the same message.

Constraint forms accepted in a table entry (a list; a value is valid if it satisfies any one):

- ``None``: the value may be ``None``;
- a type (``int``, ``str``, ``np.ndarray``, ``torch.Tensor`` ...): ``isinstance`` check
  (``bool`` is never accepted for ``int``/``float``);
- :class:`Interval`: a real or integral number within bounds;
- :class:`Options`: one of a set of values (usually strings);
- the strings ``"array-like"``, ``"boolean"``, ``"random_state"``, ``"callable"``;
- any other :class:`Constraint` subclass instance.

Examples
--------
>>> from htsweep.analysis._validation import Interval, Options, validate
>>> @validate({"k": [Interval(int, 1, None, closed="left"), None],
...            "mode": [Options({"a", "b"})]})
... def f(x, k=None, mode="a"):
...     return k, mode
>>> f(1, k=3)
(3, 'a')
>>> f(1, k=0)
Traceback (most recent call last):
...
ValueError: f: parameter 'k' must be an int in [1, inf) or None; got 0.
"""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "Constraint",
    "Interval",
    "Options",
    "check_random_state",
    "check_value",
    "make_constraint",
    "validate",
]

F = TypeVar("F", bound=Callable[..., Any])


class Constraint:
    """Base class of a single constraint: ``is_satisfied_by(value)`` and a human description."""

    def is_satisfied_by(self, value: Any) -> bool:  # pragma: no cover - abstract
        """Return True when ``value`` satisfies the constraint."""
        raise NotImplementedError

    def __str__(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


def _is_number(value: Any, kind: type) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if kind is int:
        return isinstance(value, numbers.Integral)
    return isinstance(value, numbers.Real)


class Interval(Constraint):
    """A number within ``[left, right]`` with the given closedness.

    Parameters
    ----------
    kind : {int, float}
        ``int`` accepts integral numbers only; ``float`` accepts any real number (ints included).
    left, right : float or None
        Bounds; ``None`` means unbounded on that side.
    closed : {'both', 'left', 'right', 'neither'}, default='both'
        Which bounds belong to the interval.
    """

    def __init__(self, kind: type, left: float | None, right: float | None, closed: str = "both") -> None:
        if kind not in (int, float):
            raise TypeError(f"Interval kind must be int or float, got {kind!r}")
        if closed not in ("both", "left", "right", "neither"):
            raise ValueError(f"closed must be 'both', 'left', 'right' or 'neither', got {closed!r}")
        self.kind = kind
        self.left = left
        self.right = right
        self.closed = closed

    def is_satisfied_by(self, value: Any) -> bool:
        if not _is_number(value, self.kind):
            return False
        v = float(value)
        if np.isnan(v):
            return False
        if self.left is not None:
            if self.closed in ("both", "left") and v < self.left:
                return False
            if self.closed in ("right", "neither") and v <= self.left:
                return False
        if self.right is not None:
            if self.closed in ("both", "right") and v > self.right:
                return False
            if self.closed in ("left", "neither") and v >= self.right:
                return False
        return True

    def __str__(self) -> str:
        lo = "-inf" if self.left is None else f"{self.left:g}"
        hi = "inf" if self.right is None else f"{self.right:g}"
        lb = "[" if self.closed in ("both", "left") and self.left is not None else "("
        rb = "]" if self.closed in ("both", "right") and self.right is not None else ")"
        name = "an int" if self.kind is int else "a float"
        return f"{name} in {lb}{lo}, {hi}{rb}"


class Options(Constraint):
    """One of a fixed set of values (compared with ``==``; strings are case-sensitive)."""

    def __init__(self, options: Iterable[Any]) -> None:
        self.options = frozenset(options)

    def is_satisfied_by(self, value: Any) -> bool:
        try:
            return value in self.options
        except TypeError:  # unhashable value
            return False

    def __str__(self) -> str:
        return "one of {" + ", ".join(repr(o) for o in sorted(self.options, key=repr)) + "}"


class _NoneConstraint(Constraint):
    def is_satisfied_by(self, value: Any) -> bool:
        return value is None

    def __str__(self) -> str:
        return "None"


class _TypeConstraint(Constraint):
    def __init__(self, kind: type) -> None:
        self.kind = kind

    def is_satisfied_by(self, value: Any) -> bool:
        if self.kind in (int, float) and isinstance(value, (bool, np.bool_)):
            return False
        if self.kind is float:
            return _is_number(value, float)
        if self.kind is int:
            return _is_number(value, int)
        return isinstance(value, self.kind)

    def __str__(self) -> str:
        return f"an instance of {self.kind.__name__!r}"


class _ArrayLike(Constraint):
    def is_satisfied_by(self, value: Any) -> bool:
        if isinstance(value, (str, bytes, Mapping)) or value is None:
            return False
        return hasattr(value, "__array__") or hasattr(value, "__len__") or hasattr(value, "shape")

    def __str__(self) -> str:
        return "an array-like"


class _Boolean(Constraint):
    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, (bool, np.bool_))

    def __str__(self) -> str:
        return "a bool"


class _RandomState(Constraint):
    def is_satisfied_by(self, value: Any) -> bool:
        return (
            value is None
            or (_is_number(value, int) and int(value) >= 0)
            or isinstance(value, (np.random.Generator, np.random.RandomState, np.random.SeedSequence))
        )

    def __str__(self) -> str:
        return "a random state (None, a non-negative int, a SeedSequence or a numpy Generator)"


class _Callable(Constraint):
    def is_satisfied_by(self, value: Any) -> bool:
        return callable(value)

    def __str__(self) -> str:
        return "a callable"


_STRING_CONSTRAINTS: dict[str, Callable[[], Constraint]] = {
    "array-like": _ArrayLike,
    "boolean": _Boolean,
    "random_state": _RandomState,
    "callable": _Callable,
}


def make_constraint(spec: Any) -> Constraint:
    """Turn one table entry (``None``, a type, a string keyword or a Constraint) into a Constraint."""
    if isinstance(spec, Constraint):
        return spec
    if spec is None:
        return _NoneConstraint()
    if isinstance(spec, type):
        return _TypeConstraint(spec)
    if isinstance(spec, str) and spec in _STRING_CONSTRAINTS:
        return _STRING_CONSTRAINTS[spec]()
    raise TypeError(f"unknown constraint {spec!r}")


def _describe(constraints: list[Constraint]) -> str:
    parts = [str(c) for c in constraints]
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " or " + parts[-1]


def _short(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = f"<{type(value).__name__}>"
    return text


def validate(table: Mapping[str, list[Any]]) -> Callable[[F], F]:
    """Decorate a public function so its parameters are checked against ``table`` before it runs.

    Parameters
    ----------
    table : mapping of str to list
        Parameter name → list of allowed forms (see the module docstring). Parameters not listed
        are not checked.

    Returns
    -------
    decorator : callable
        Wraps the function; on a violation raises ``TypeError`` when no constraint accepts the
        value's type at all, else ``ValueError``, naming function, parameter, forms and value.
    """
    compiled = {name: [make_constraint(c) for c in specs] for name, specs in table.items()}

    def decorator(func: F) -> F:
        signature = inspect.signature(func)
        unknown = set(compiled) - set(signature.parameters)
        if unknown:
            raise TypeError(f"validate: {func.__qualname__} has no parameter(s) {sorted(unknown)}")

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            for name, constraints in compiled.items():
                _check(f"{func.__name__}: parameter {name!r}", bound.arguments[name], constraints, None)
            return func(*args, **kwargs)

        wrapper.__wrapped__ = func  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


def check_value(label: str, value: Any, specs: list[Any], *, error: type[Exception] | None = None) -> None:
    """Check one value against a list of table forms, outside a decorated function.

    For settings that arrive as data (a config dataclass, a constructor argument) rather than as
    a function's parameters; the message has the same shape as :func:`validate`'s.

    Parameters
    ----------
    label : str
        How the message names the value (e.g. ``"lr"``).
    value : object
    specs : list
        Allowed forms, as in a :func:`validate` table entry.
    error : exception class, optional
        Raised on a violation; default ``TypeError`` when no form accepts the value's type at all,
        else ``ValueError``.

    Examples
    --------
    >>> check_value("lr", -0.1, [Interval(float, 0, None, closed="neither")])
    Traceback (most recent call last):
    ...
    ValueError: lr must be a float in (0, inf); got -0.1.
    """
    _check(label, value, [make_constraint(c) for c in specs], error)


def _check(label: str, value: Any, constraints: list[Constraint], error: type[Exception] | None) -> None:
    if any(c.is_satisfied_by(value) for c in constraints):
        return
    message = f"{label} must be {_describe(constraints)}; got {_short(value)}."
    raise (error or _error_class(constraints, value))(message)


def _error_class(constraints: list[Constraint], value: Any) -> type[Exception]:
    """ValueError when the value has a plausible type for some constraint, TypeError otherwise."""
    for c in constraints:
        if isinstance(c, Interval) and _is_number(value, float):
            return ValueError
        if isinstance(c, Options) and isinstance(value, str):
            return ValueError
        if isinstance(c, _RandomState) and _is_number(value, int):
            return ValueError
    return TypeError


def check_random_state(rng: Any = None) -> np.random.Generator:
    """Turn ``rng`` into a :class:`numpy.random.Generator`; the only place randomness is seeded.

    Parameters
    ----------
    rng : None, int, numpy.random.SeedSequence, numpy.random.Generator or numpy.random.RandomState
        ``None`` gives fresh OS entropy; an int or SeedSequence seeds a new PCG64 generator; a
        Generator is returned as is; a legacy RandomState is wrapped around its bit generator.

    Returns
    -------
    numpy.random.Generator

    Examples
    --------
    >>> g = check_random_state(1234)
    >>> g is check_random_state(g)
    True
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, np.random.SeedSequence):
        return np.random.default_rng(rng)
    if isinstance(rng, (bool, np.bool_)):
        raise TypeError(f"rng must be None, an int, a SeedSequence or a Generator; got {rng!r}")
    if isinstance(rng, numbers.Integral):
        if int(rng) < 0:
            raise ValueError(f"rng seed must be non-negative; got {rng!r}")
        return np.random.default_rng(int(rng))
    if isinstance(rng, np.random.RandomState):
        return np.random.Generator(rng._bit_generator)  # type: ignore[attr-defined]
    raise TypeError(f"rng must be None, an int, a SeedSequence or a Generator; got {rng!r}")
