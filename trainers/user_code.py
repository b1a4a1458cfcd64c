"""The user's own code, named in a spec by import path (``"pkg.module:factory"``).

A spec may name a model, a dataset or a training loop by where it lives instead of by a registered
name. :func:`resolve` imports it, :func:`call_factory` calls it with the keyword arguments its
signature accepts; every failure is a :class:`UserCodeError` whose one-line message names the spec
field and the cause, so the CLI can print it and exit before any trial starts.

Examples
--------
>>> resolve("collections:OrderedDict", field="model").__name__
'OrderedDict'
>>> resolve("os.path.join", field="model").__name__
'join'
>>> is_import_path("mlp3"), is_import_path("torchvision.models:resnet18")
(False, True)
>>> def factory(width, n_classes=2):
...     return (width, n_classes)
>>> call_factory(factory, {"width": 8}, {"n_classes": 10, "vocab_size": 65}, field="model")
(8, 10)
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["UserCodeError", "is_import_path", "resolve", "call_factory"]

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED = rf"{_IDENT}(?:\.{_IDENT})*"
# "pkg.module:attr.sub" (module, then attribute path) or "pkg.module.attr" (last dot splits).
_PATH_RE = re.compile(rf"^(?:{_DOTTED}:{_DOTTED}|{_IDENT}(?:\.{_IDENT})+)$")


class UserCodeError(ValueError):
    """User code named in a spec cannot be imported, found, called or used; one-line message."""


def is_import_path(value: Any) -> bool:
    """True when ``value`` reads as ``"pkg.module:attr"`` or ``"pkg.module.attr"``, not a registered name.

    Registered model and dataset names contain neither ``:`` nor ``.``.
    """
    return isinstance(value, str) and bool(_PATH_RE.match(value))


def _split(path: str) -> tuple[str, str]:
    if ":" in path:
        module, attr = path.split(":", 1)
    else:
        module, attr = path.rsplit(".", 1)
    return module, attr


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def resolve(path: str, *, field: str) -> Any:
    """Import the object at ``path`` (``"pkg.module:attr"`` or ``"pkg.module.attr"``).

    Parameters
    ----------
    path : str
        Module path, then ``:`` (or a last ``.``), then the attribute; the attribute may itself be
        dotted (``"pkg.mod:Class.build"``).
    field : str
        The spec field that named it (``"model"``, ``"dataset"``, ``"trainable"``), for the message.

    Returns
    -------
    object
        The attribute.

    Raises
    ------
    UserCodeError
        ``path`` is malformed, its module is not found, importing it raised, or the attribute is
        missing. The message is one line and starts with ``field``.
    """
    if not is_import_path(path):
        raise UserCodeError(f"{field}: {path!r} is not an import path; write 'package.module:name'")
    module_name, attr = _split(path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only "the module itself (or a parent package) is absent" is not-found; a missing import
        # *inside* the user's module is that module raising.
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise UserCodeError(
                f"{field}: cannot import {path!r}: no module named {missing!r} (the spec's folder and the "
                f"working directory are importable; is the package there or installed?)") from None
        raise UserCodeError(f"{field}: importing {module_name!r} raised {_one_line(exc)}") from None
    except Exception as exc:  # the user's module raised while importing
        raise UserCodeError(f"{field}: importing {module_name!r} raised {_one_line(exc)}") from None
    obj: Any = module
    owner = module_name
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            names = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserCodeError(f"{field}: {owner!r} has no attribute {part!r}{hint}") from None
        owner = f"{owner}.{part}"
    return obj


def _accepted(fn: Callable[..., Any]) -> set[str] | None:
    """Names ``fn`` accepts by keyword, or ``None`` when its signature cannot be read."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def call_factory(fn: Callable[..., Any], kwargs: Mapping[str, Any], available: Mapping[str, Any], *,
                 field: str) -> Any:
    """Call ``fn(**kwargs, **{name: available[name] for the names its signature accepts})``.

    Parameters
    ----------
    fn : callable
        The user's factory (a function or a class).
    kwargs : mapping
        The spec's own arguments (``model_kwargs``, ``data_kwargs``); always passed, and they win
        over ``available``.
    available : mapping
        Values htsweep can supply (``n_classes``, ``in_channels``, ``seed`` ...). Each is passed only
        when ``fn`` names it as a parameter; a ``**kwargs`` catch-all does not count, since it
        usually forwards to a constructor that would refuse unknown names
        (``torchvision.models.resnet18(**kwargs)`` → ``ResNet``).
    field : str
        The spec field, for the message.

    Raises
    ------
    UserCodeError
        ``fn`` is not callable or raised (the message has the exception's type and text, one line).
    """
    if not callable(fn):
        raise UserCodeError(f"{field}: {getattr(fn, '__name__', fn)!r} is not callable "
                            f"(got {type(fn).__name__})")
    accepted = _accepted(fn) or set()
    call = {k: v for k, v in available.items() if k in accepted and k not in kwargs}
    call.update(kwargs)
    name = getattr(fn, "__qualname__", getattr(fn, "__name__", repr(fn)))
    try:
        return fn(**call)
    except Exception as exc:
        raise UserCodeError(f"{field}: {name}({', '.join(sorted(call))}) raised {_one_line(exc)}") from None
