"""One metrics row per layer: ESD → power-law fit, MP fit, spectral metrics and phase.

:func:`analyze_eigs` is the single place where a row is built; :func:`analyze_matrix`,
:func:`analyze_layers` (batched ESDs, used by the trainer's spectral monitor and the Ray ESD
service) and :func:`analyze_model` only get eigenvalues and call it. Each fit runs once and is
handed to the phase classifier. The row's keys are the "metrics row" of ``docs/interfaces.md``;
values are floats (NaN where a fit is impossible), ints, or strings, and ``warning`` says why a
fit was impossible (``""`` when all is well).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from analysis._validation import Interval, Options, validate
from analysis.esd import as_matrix, esd, esd_batch, gram_eigh
from analysis.layers import LayerMatrix, extract_layers
from analysis.marchenko_pastur import fit_marchenko_pastur
from analysis.metrics import localization_metrics, spectral_metrics
from analysis.phases import classify_phase
from analysis.powerlaw_fit import fit_power_law, pl_alpha_hill

__all__ = [
    "MIN_FIT_EIGS", "ROW_KEYS", "analyze_eigs", "analyze_layers", "analyze_matrix", "analyze_model", "json_safe",
]

#: Layers with fewer eigenvalues (M) than this get NaN fit metrics and a ``warning``. A tail fitted
#: to a couple of dozen eigenvalues (a 10-class head, say) is noise, and its alpha would drag the
#: layer averages a sweep optimizes; 32 is also where the phase classifier stops trusting an ESD.
MIN_FIT_EIGS = 32

#: Keys of a metrics row, in order (localization adds ``LOCALIZATION_KEYS``).
ROW_KEYS = (
    "name", "kind", "n", "m", "q", "lambda_max", "alpha", "alpha_hill", "D", "xmin", "xmax", "n_tail",
    "alpha_sigma", "sigma2", "lambda_plus", "n_spikes", "mp_soft_rank", "mp_ks", "stable_rank",
    "matrix_entropy", "effective_rank", "log_frobenius_norm", "log_spectral_norm", "alpha_weighted",
    "log_alpha_norm", "numerical_rank", "phase", "phase_confidence", "warning",
)
LOCALIZATION_KEYS = ("vector_entropy", "localization_ratio", "participation_ratio")

_NAN = math.nan


@validate({
    "eigs": ["array-like"],
    "n": [Interval(int, 1, None, closed="left")],
    "m": [Interval(int, 1, None, closed="left")],
    "name": [str],
    "xmax": [None, Options({"max"}), Interval(float, 0, None, closed="neither")],
})
def analyze_eigs(eigs: Any, *, n: int, m: int, name: str = "", xmax: float | str | None = None) -> dict[str, Any]:
    """Every metric computable from the eigenvalues of one layer, plus its phase.

    Parameters
    ----------
    eigs : array-like of shape (m,)
        Eigenvalues of X = WᵀW / N.
    n, m : int
        Matrix shape after orienting it so that n ≥ m.
    name : str, default=''
        Layer name copied into the row.
    xmax : float or {'max'}, optional
        Upper cutoff of the power-law fit (see :func:`~analysis.powerlaw_fit.fit_power_law`).

    Returns
    -------
    dict
        The metrics row (keys ``ROW_KEYS``); ``kind`` is ``""`` here (callers fill it in).

    Raises
    ------
    ValueError
        If ``eigs`` holds NaN/Inf or ``n < m``.
    """
    x = np.sort(np.asarray(eigs, dtype=np.float64).ravel())
    if not np.isfinite(x).all():
        raise ValueError(f"layer {name!r}: eigenvalues contain NaN/Inf")
    if n < m:
        raise ValueError(f"layer {name!r}: expected n >= m, got n={n}, m={m}")
    x = np.clip(x, 0.0, None)
    q = n / m
    warnings_: list[str] = []

    if x.size < MIN_FIT_EIGS:
        warnings_.append(f"too small for a power-law fit (M={x.size} < {MIN_FIT_EIGS})")
        pl = fit_power_law(x, min_tail=MIN_FIT_EIGS)  # fails cleanly: fewer than min_tail values
        alpha_hill = _NAN
    else:
        # eigenvalues below the eigvalsh noise floor are zeros, not part of a tail
        above = x[x > x.size * np.finfo(np.float64).eps * x[-1]] if x[-1] > 0 else x[:0]
        pl = fit_power_law(above, xmax=xmax)
        if not pl.success:
            warnings_.append(f"power-law fit failed: {pl.message}")
        alpha_hill = pl_alpha_hill(above)
    mp = fit_marchenko_pastur(x, q)
    if not mp.success and x.size >= MIN_FIT_EIGS:
        warnings_.append(f"MP fit failed: {mp.message}")
    phase = classify_phase(x, q=q, mp=mp, pl=pl)

    metrics = spectral_metrics(x, n=n, alpha=pl.alpha)
    row: dict[str, Any] = {
        "name": name,
        "kind": "",
        "n": int(n),
        "m": int(m),
        "q": float(q),
        "lambda_max": metrics["lambda_max"],
        "alpha": float(pl.alpha),
        "alpha_hill": float(alpha_hill),
        "D": float(pl.D),
        "xmin": float(pl.xmin),
        "xmax": float(pl.xmax),
        "n_tail": int(pl.n_tail),
        "alpha_sigma": float(pl.sigma),
        "sigma2": float(mp.sigma2),
        "lambda_plus": float(mp.lambda_plus),
        "n_spikes": int(mp.n_spikes),
        "mp_soft_rank": float(mp.soft_rank),
        "mp_ks": float(mp.ks_bulk),
        "stable_rank": metrics["stable_rank"],
        "matrix_entropy": metrics["matrix_entropy"],
        "effective_rank": metrics["effective_rank"],
        "log_frobenius_norm": metrics["log_frobenius_norm"],
        "log_spectral_norm": metrics["log_spectral_norm"],
        "alpha_weighted": metrics["alpha_weighted"],
        "log_alpha_norm": metrics["log_alpha_norm"],
        "numerical_rank": int(metrics["numerical_rank"]),
        "phase": str(phase.phase),
        "phase_confidence": float(phase.confidence),
        "warning": "; ".join(warnings_),
    }
    return row


def _localization_row(eigs: np.ndarray, vecs: np.ndarray) -> dict[str, float]:
    """Localization of the leading eigenvector (the one of λmax)."""
    if eigs.size == 0 or not eigs[-1] > 0:
        return dict.fromkeys(LOCALIZATION_KEYS, _NAN)
    loc = localization_metrics(vecs[:, -1:])
    return {k: float(loc[k][0]) for k in LOCALIZATION_KEYS}


@validate({"name": [str], "localization": ["boolean"], "device": [None, str, torch.device]})
def analyze_matrix(
    W: Any, *, name: str = "", localization: bool = False, device: str | torch.device | None = None
) -> dict[str, Any]:
    """Analyze one weight matrix.

    Parameters
    ----------
    W : array-like or torch.Tensor of shape (n_rows, n_cols)
    name : str, default=''
    localization : bool, default=False
        Also diagonalize for eigenvectors and add ``vector_entropy``, ``localization_ratio``
        and ``participation_ratio`` of the leading eigenvector.
    device : str or torch.device, optional
        ``None``: CUDA if available.

    Returns
    -------
    dict
        The metrics row, ``kind="matrix"``. Matrices with fewer than ``MIN_FIT_EIGS`` columns
        (after orienting) get NaN fit metrics and a ``warning``.

    Raises
    ------
    ValueError
        Non-2-D input or NaN/Inf entries.

    Examples
    --------
    >>> import numpy as np
    >>> row = analyze_matrix(np.random.default_rng(0).standard_normal((400, 200)), device="cpu")
    >>> row["n"], row["m"], row["n_spikes"]
    (400, 200, 0)
    """
    t = as_matrix(W, name=name)
    n, m = max(t.shape), min(t.shape)
    if localization:
        eigs, vecs = gram_eigh(t, device=device, name=name)
    else:
        eigs = esd(t, device=device, name=name)
    row = analyze_eigs(eigs, n=n, m=m, name=name)
    row["kind"] = "matrix"
    if localization:
        row.update(_localization_row(eigs, vecs))
    return row


@validate({"layers": [list, tuple], "localization": ["boolean"], "device": [None, str, torch.device]})
def analyze_layers(
    layers: list[LayerMatrix], *, device: str | torch.device | None = None, localization: bool = False
) -> list[dict[str, Any]]:
    """Analyze many layers: batched ESDs (one ``eigvalsh`` per distinct shape), then one row each.

    Parameters
    ----------
    layers : list of LayerMatrix
    device : str or torch.device, optional
        ``None``: CUDA if available.
    localization : bool, default=False
        Add eigenvector localization metrics (eigenvectors are computed per layer, unbatched).

    Returns
    -------
    list of dict
        Metrics rows in the order of ``layers``; each also carries ``"eigs"``: the ascending
        eigenvalues, ndarray of shape (m,).

    Raises
    ------
    ValueError
        NaN/Inf weights, naming the layer.
    """
    if localization:
        pairs = [gram_eigh(layer.matrix, device=device, name=layer.name) for layer in layers]
        eig_list = [p[0] for p in pairs]
    else:
        eig_list = esd_batch(layers, device=device)
    rows = []
    for i, (layer, eigs) in enumerate(zip(layers, eig_list, strict=True)):
        row = analyze_eigs(eigs, n=layer.n, m=layer.m, name=layer.name)
        row["kind"] = layer.kind
        if localization:
            row.update(_localization_row(eigs, pairs[i][1]))
        row["eigs"] = eigs
        rows.append(row)
    return rows


def analyze_model(model: torch.nn.Module, **kw: Any) -> Any:
    """Analyze every weight matrix of a torch model.

    Parameters
    ----------
    model : torch.nn.Module
    **kw
        ``conv`` and ``min_dim`` go to :func:`~analysis.layers.extract_layers`; ``device`` and
        ``localization`` to :func:`analyze_layers`.

    Returns
    -------
    pandas.DataFrame
        One row per layer, columns ``ROW_KEYS`` (+ localization columns); no ``eigs`` column.

    Examples
    --------
    >>> import torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> df = analyze_model(torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Linear(32, 4)), device="cpu")
    >>> list(df["name"]), list(df["m"])
    (['0', '1'], [32, 4])
    """
    import pandas as pd

    extract_kw = {k: kw.pop(k) for k in ("conv", "min_dim") if k in kw}
    unknown = set(kw) - {"device", "localization"}
    if unknown:
        raise TypeError(f"analyze_model: unexpected keyword argument(s) {sorted(unknown)}")
    layers = extract_layers(model, **extract_kw)
    rows = analyze_layers(layers, **kw)
    for row in rows:
        row.pop("eigs", None)
    columns = list(ROW_KEYS) + (list(LOCALIZATION_KEYS) if kw.get("localization") else [])
    return pd.DataFrame(rows, columns=columns)


def json_safe(value: Any) -> Any:
    """``value`` (a metrics row, or dicts / lists of them) with only strict-JSON types.

    NaN and ±Inf become ``None``, numpy scalars become Python numbers, anything else unknown
    becomes its ``str``; dict keys become strings.

    Examples
    --------
    >>> json_safe({"alpha": float("nan"), "n": np.int64(3), "eigs": [np.float64(0.5)]})
    {'alpha': None, 'n': 3, 'eigs': [0.5]}
    """
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
