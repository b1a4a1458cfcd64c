"""Mask credentials in URIs and free text before they reach MLflow, ``sweep.json``, logs or errors.

A tracking URI, an Optuna storage URL or a Tune ``storage_path`` may carry a password
(``postgresql://user:secret@host/db``, ``http://user:secret@mlflow:5000``) or a token in its query
string (``...?password=secret``, ``&X-Amz-Signature=...``). :func:`redact` keeps everything needed to
tell stores apart (scheme, user, host, port, path) and replaces only the secret with ``***``.

Examples
--------
>>> redact("postgresql://mlflow:s3cret@10.0.0.5:5432/mlflow")
'postgresql://mlflow:***@10.0.0.5:5432/mlflow'
>>> redact("cannot reach http://u:p@host:5000 (refused); token=abc123")
'cannot reach http://u:***@host:5000 (refused); token=***'
>>> redact("sqlite:////home/me/runs/q/mlflow.db")
'sqlite:////home/me/runs/q/mlflow.db'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MASK", "is_redacted", "redact", "redact_mapping"]

MASK = "***"

# scheme://user:password@  (the password ends at the last '@' before the host)
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<secret>[^@\s/]+)(?=@)")
# key=value where the key names a secret (query strings, DSNs, env-style text)
_KEYVALUE = re.compile(
    r"(?P<head>\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|secret[_-]?key|"
    r"x-amz-signature|x-amz-credential|x-amz-security-token|sig|signature)=)(?P<secret>[^&\s;,'\"]+)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with every URI password and every ``secret=value`` pair masked as ``***``.

    Parameters
    ----------
    text : str
        A URI, an error message, a log line ...

    Returns
    -------
    str
        The same text; only the secrets are replaced.
    """
    if not isinstance(text, str) or not text:
        return text
    out = _USERINFO.sub(lambda m: m.group("head") + MASK, text)
    return _KEYVALUE.sub(lambda m: m.group("head") + MASK, out)


def is_redacted(text: str | None) -> bool:
    """Whether ``text`` went through :func:`redact` and lost a secret."""
    return isinstance(text, str) and MASK in text and redact(text) == text


def redact_mapping(values: Any) -> Any:
    """A deep copy of a JSON-like structure (dicts, lists, strings) with every string redacted."""
    if isinstance(values, str):
        return redact(values)
    if isinstance(values, Mapping):
        return {k: redact_mapping(v) for k, v in values.items()}
    if isinstance(values, list | tuple):
        return type(values)(redact_mapping(v) for v in values)
    return values
