"""One metrics row per layer: ESD → power-law fit, MP fit, spectral metrics and phase.

:func:`analyze_spectrum` is the single place where a layer's result is built, as a typed
:class:`~analysis.layer_analysis.LayerAnalysis`; its ``to_row()`` is the row. :func:`analyze_eigs`,
:func:`analyze_matrix`, :func:`analyze_layers` (batched ESDs, used by the trainer's spectral
monitor and the Ray ESD service), :func:`iter_analysis` (a layer plan streamed one layer at a
time: checkpoints of any size) and :func:`analyze_model` (a module or a checkpoint path) only get
eigenvalues and call it. Each fit runs once and is handed to the phase classifier. The row's keys
are the "metrics row" of ``docs/interfaces.md`` (names in :mod:`analysis.metric_names`); values
are floats (NaN where a fit is impossible), ints, or strings, and ``warning`` says why a fit was
impossible (``""`` when all is well).

The ESDs are computed in :data:`DEFAULT_PRECISION` (float32; see :mod:`analysis.spectrum` for when a
spectrum is redone in float64), and correlation traps (:func:`trap_metrics`) are opt-in.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from htsweep.analysis._validation import Interval, Options, validate
from htsweep.analysis.farms import FARMS_WINDOWS
from htsweep.analysis.farms import farms as farms_alphas
from htsweep.analysis.layer_analysis import LayerAnalysis
from htsweep.analysis.layers import LayerInfo, LayerMatrix, LayerPlan, plan_layers
from htsweep.analysis.marchenko_pastur import fit_marchenko_pastur, shuffle_baseline
from htsweep.analysis.metric_names import (
    FARMS_KEYS,
    LOCALIZATION_KEYS,
    ROW_KEYS,
    TAIL_LAW_KEYS,
    TRAP_KEYS,
    RowKey,
)
from htsweep.analysis.metrics import localization_metrics, spectral_metrics
from htsweep.analysis.phases import classify_phase
from htsweep.analysis.powerlaw_fit import fit_power_law, pl_alpha_hill
from htsweep.analysis.spectrum import (
    PRECISIONS,
    as_matrix,
    default_device,
    esd_layers,
    gram_eigh,
    round_off_floor,
)
from htsweep.analysis.tail_law import tail_law_row

__all__ = [
    "DEFAULT_PRECISION", "MIN_FIT_EIGS", "MONITOR_PRECISION", "ROW_KEYS", "analyze_eigs", "analyze_layers", "analyze_matrix",
    "analyze_model", "analyze_spectrum", "estimate_seconds", "iter_analysis", "json_safe", "trap_metrics",
]

#: Working precision of :func:`analyze_layers` / :func:`analyze_model` / ``htsweep analyze``
#: (:mod:`analysis.spectrum`): float32 gives the float64 alpha within 0.02 and the same phase on the
#: measured real layers (docs/interfaces.md) at 0.65× the cost (Llama block); spectra with rank-collapse
#: evidence are recomputed in float64 automatically.
DEFAULT_PRECISION = "float32"

#: Precision of the spectra monitored during training (``trainers.SpectralMonitor`` in-process and
#: the shared ESD actor): float64, so a spectrum does not depend on which layers the actor batched
#: it with, and the actor, the in-process fallback and past sweeps give the same numbers. Training
#: layers are small enough that float64 costs little there.
MONITOR_PRECISION = "float64"

#: Layers with fewer eigenvalues (M) than this get NaN fit metrics and a ``warning``. A tail fitted
#: to a couple of dozen eigenvalues (a 10-class head, say) is noise, and its alpha would drag the
#: layer averages a sweep optimizes; 32 is also where the phase classifier stops trusting an ESD.
MIN_FIT_EIGS = 32

_NAN = math.nan


_EIGS_CONSTRAINTS = {
    "eigs": ["array-like"],
    "n": [Interval(int, 1, None, closed="left")],
    "m": [Interval(int, 1, None, closed="left")],
    "name": [str],
    "xmax": [None, Options({"max"}), Interval(float, 0, None, closed="neither")],
    "precision": [Options(set(PRECISIONS))],
}


@validate({**_EIGS_CONSTRAINTS, "kind": [str], "tail_law": ["boolean"]})
def analyze_spectrum(
    eigs: Any, *, n: int, m: int, name: str = "", kind: str = "", xmax: float | str | None = None,
    precision: str = "float64", dtype: Any = None, tail_law: bool = False,
) -> LayerAnalysis:
    """Every metric computable from the eigenvalues of one layer, plus its phase, as typed fields.

    Parameters
    ----------
    eigs : array-like of shape (m,)
        Eigenvalues of X = WᵀW / N.
    n, m : int
        Matrix shape after orienting it so that n ≥ m.
    name : str, default=''
        Layer name.
    kind : str, default=''
        Layer kind (``analysis.layers.KINDS``); a ``"lora"`` layer's warning says it is low-rank
        by construction.
    xmax : float or {'max'}, optional
        Upper cutoff of the power-law fit (see :func:`~analysis.powerlaw_fit.fit_power_law`).
    precision : {'float64', 'float32'}, default='float64'
        Precision the eigenvalues were computed in. Eigenvalues below the float64 round-off floor
        (:func:`~analysis.spectrum.round_off_floor`) are zeros (left out of the tail fit, not
        counted in ``numerical_rank``); a float32 spectrum from :func:`~analysis.spectrum.esd_layers`
        has none (its unresolved eigenvalues are live and raised to ``eps32 · λmax``).
    dtype : torch or numpy dtype, optional
        Dtype the weights are stored in; float16 / bfloat16 raise the phase's rank ≤ 1 floor to
        ``eps²`` of that type (:func:`~analysis.phases.classify_phase`).
    tail_law : bool, default=False
        Add ``TAIL_LAW_KEYS``: likelihood ratios of the fitted tail's power law against the
        truncated power law, lognormal and exponential, and a verdict (:mod:`analysis.tail_law`;
        about 0.1–1 s per layer, so off by default). NaN / ``""`` without a power-law fit.

    Returns
    -------
    LayerAnalysis
        ``.to_row()`` is the metrics row; ``eigs`` is not kept.

    Raises
    ------
    ValueError
        If ``eigs`` holds NaN/Inf or ``n < m``.

    Examples
    --------
    >>> import numpy as np
    >>> W = np.random.default_rng(0).standard_normal((400, 200))
    >>> a = analyze_spectrum(np.linalg.eigvalsh(W.T @ W / 400), n=400, m=200)
    >>> a.phase.phase, a.mp.n_spikes, a.to_row()["n_spikes"]
    ('random_like', 0, 0)
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
        # eigenvalues below the round-off floor are zeros, not part of a tail
        above = x[x > round_off_floor(x.size, x[-1], "float64")] if x[-1] > 0 else x[:0]
        pl = fit_power_law(above, xmax=xmax)
        if not pl.success:
            warnings_.append(f"power-law fit failed: {pl.message}")
        alpha_hill = pl_alpha_hill(above)
    mp = fit_marchenko_pastur(x, q)
    if not mp.success and x.size >= MIN_FIT_EIGS:
        warnings_.append(f"MP fit failed: {mp.message}")
    if kind == "lora":
        warnings_.append("merged LoRA update B·A: low-rank by construction")
    phase = classify_phase(x, q=q, mp=mp, pl=pl, dtype=dtype)

    law: dict[str, Any] = {}
    if tail_law:  # the laws live on [xmin, ∞): only for an unbounded tail (xmax NaN)
        bounded = pl.success and pl.xmax == pl.xmax
        law = tail_law_row(above if pl.success else x, math.nan if bounded else pl.xmin, pl.alpha)
    metrics = spectral_metrics(x, n=n, alpha=pl.alpha)
    return LayerAnalysis(name=name, kind=kind, n=int(n), m=int(m), pl=pl, alpha_hill=float(alpha_hill), mp=mp,
                         phase=phase, warning="; ".join(warnings_), precision=precision, tail_law=law, **metrics)


@validate(_EIGS_CONSTRAINTS)
def analyze_eigs(
    eigs: Any, *, n: int, m: int, name: str = "", xmax: float | str | None = None, precision: str = "float64",
    dtype: Any = None,
) -> dict[str, Any]:
    """Every metric computable from the eigenvalues of one layer, plus its phase, as a metrics row.

    :func:`analyze_spectrum` with ``kind=""``, flattened by
    :meth:`~analysis.layer_analysis.LayerAnalysis.to_row`; parameters and errors as there.

    Returns
    -------
    dict
        The metrics row (keys ``ROW_KEYS``); ``kind`` is ``""`` here (callers fill it in).
    """
    return analyze_spectrum(eigs, n=n, m=m, name=name, xmax=xmax, precision=precision, dtype=dtype).to_row()


def _localization_row(eigs: np.ndarray, vecs: np.ndarray) -> dict[str, float]:
    """Localization of the leading eigenvector (the one of λmax)."""
    if eigs.size == 0 or not eigs[-1] > 0:
        return dict.fromkeys(LOCALIZATION_KEYS, _NAN)
    loc = localization_metrics(vecs[:, -1:])
    return {k: float(loc[k][0]) for k in LOCALIZATION_KEYS}


def _ks_two_sample(a: np.ndarray, b: np.ndarray) -> float:
    """Kolmogorov–Smirnov distance between two samples (sup of the difference of their ECDFs)."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / a.size
    fb = np.searchsorted(b, grid, side="right") / b.size
    return float(np.max(np.abs(fa - fb)))


@validate({"n_permutations": [Interval(int, 1, None, closed="left")], "rng": ["random_state"]})
def trap_metrics(W: Any, eigs: Any, *, n_permutations: int = 3, rng: Any = 0) -> dict[str, float]:
    """Correlation traps: what is left of the ESD's outliers once the entries of W are shuffled.

    Shuffling the entries (:func:`~analysis.marchenko_pastur.shuffle_baseline`) destroys every
    correlation and keeps the entry distribution, so the shuffled ESD is a Marchenko–Pastur bulk
    unless single entries are large enough to make outliers by themselves: WeightWatcher's
    *correlation traps* (its ``randomize`` option, ``num_rand_spikes``; Martin & Mahoney, Sec. 6.3).

    Parameters
    ----------
    W : array-like or torch.Tensor of shape (n_rows, n_cols)
        Any float dtype; the shuffle runs in float64 (a float64 copy of W per permutation).
    eigs : array-like of shape (M,)
        The ESD of W itself.
    n_permutations : int, default=3
    rng : None, int or numpy.random.Generator, default=0
        Seed of the permutations (fixed by default: the same row every time).

    Returns
    -------
    dict
        ``n_traps``: median over permutations of the shuffled eigenvalues above the shuffled MP
        edge plus the Tracy–Widom margin (:func:`~analysis.marchenko_pastur.fit_marchenko_pastur`);
        ``shuffle_lambda_plus`` and ``shuffle_lambda_max``: medians of that edge and of the
        largest shuffled eigenvalue; ``shuffle_distance``: KS distance between the ESD and the
        pooled shuffled ESDs (0 for a matrix with no correlations, towards 1 when learning moved
        the spectrum far from its shuffled version).
    """
    shuffled = shuffle_baseline(W, n_permutations=n_permutations, rng=rng)
    n, m = max(np.shape(W)), min(np.shape(W))
    fits = [fit_marchenko_pastur(e, n / m) for e in shuffled]
    return {
        "n_traps": int(np.median([f.n_spikes for f in fits])),
        "shuffle_lambda_plus": float(np.median([f.lambda_plus for f in fits])),
        "shuffle_lambda_max": float(np.median(shuffled[:, -1])),
        "shuffle_distance": _ks_two_sample(np.asarray(eigs, dtype=np.float64), shuffled.ravel()),
    }


_PRECISION = [Options(set(PRECISIONS))]
_FARMS_WINDOWS = [Interval(int, 1, None, closed="left")]
# on a GPU, layers of a plan are analysed together up to about this many bytes of weights
_GROUP_BYTES = 1 << 28


@validate({"name": [str], "localization": ["boolean"], "device": [None, str, torch.device],
           "precision": _PRECISION, "farms": ["boolean"], "farms_windows": _FARMS_WINDOWS, "tail_law": ["boolean"]})
def analyze_matrix(
    W: Any, *, name: str = "", localization: bool = False, device: str | torch.device | None = None,
    precision: str = DEFAULT_PRECISION, farms: bool = False, farms_windows: int = FARMS_WINDOWS,
    tail_law: bool = False,
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
    precision : {'float32', 'float64'}, default=DEFAULT_PRECISION
        Working precision (:mod:`analysis.spectrum`); the row's ``precision`` says which was used.
    farms : bool, default=False
        Add ``alpha_farms`` and ``alpha_hill_farms`` (:mod:`analysis.farms`).
    farms_windows : int, default=FARMS_WINDOWS
        FARMS window offsets per dimension (:func:`analyze_layers`).
    tail_law : bool, default=False
        Add the tail-law comparison (:func:`analyze_spectrum`).

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
    layer = LayerMatrix.from_tensor(name, "matrix", t)
    (row,) = analyze_layers([layer], device=device, localization=localization, precision=precision, farms=farms,
                           farms_windows=farms_windows, tail_law=tail_law)
    row.pop(RowKey.EIGS)
    return row


@validate({"layers": [list, tuple], "localization": ["boolean"], "device": [None, str, torch.device],
           "precision": _PRECISION, "traps": [Interval(int, 0, None, closed="left")], "farms": ["boolean"],
           "farms_windows": _FARMS_WINDOWS, "tail_law": ["boolean"]})
def analyze_layers(
    layers: list[LayerMatrix], *, device: str | torch.device | None = None, localization: bool = False,
    precision: str = DEFAULT_PRECISION, traps: int = 0, farms: bool = False, farms_windows: int = FARMS_WINDOWS,
    tail_law: bool = False,
) -> list[dict[str, Any]]:
    """Analyze many layers: batched ESDs (one ``eigvalsh`` per Gram size), then one row each.

    Parameters
    ----------
    layers : list of LayerMatrix
    device : str or torch.device, optional
        ``None``: CUDA if available.
    localization : bool, default=False
        Add eigenvector localization metrics (eigenvectors are computed per layer, unbatched;
        not for pooled conv layers, which have no single eigenbasis).
    precision : {'float32', 'float64'}, default=DEFAULT_PRECISION
        Working precision (:mod:`analysis.spectrum`); float32 spectra with rank-collapse evidence are
        redone in float64, and the row's ``precision`` says which was used.
    traps : int, default=0
        With ``k > 0``, add the correlation-trap metrics ``TRAP_KEYS`` from ``k`` shuffles of each
        matrix (:func:`trap_metrics`; NaN for pooled conv and LoRA layers). Each shuffle costs
        about one float64 analysis of the layer, so it is off by default.
    farms : bool, default=False
        Add ``FARMS_KEYS`` (``alpha_farms``, ``alpha_hill_farms``): α of the pooled ESD of square
        windows (:mod:`analysis.farms`; the windows of all layers in one batched eigensolve per
        window size). Several times the cost of the layer's own ESD, so off by default.
    farms_windows : int, default=FARMS_WINDOWS
        Window offsets per dimension (``n_windows`` of :func:`analysis.farms.farms`): the paper's 10
        cost 4–6× the layer's analysis on the CPU, 2 about 1× with ``alpha_hill_farms`` within 0.01
        (measured, :mod:`analysis.farms`).
    tail_law : bool, default=False
        Add ``TAIL_LAW_KEYS`` (:func:`analyze_spectrum`).

    Returns
    -------
    list of dict
        Metrics rows in the order of ``layers``; each also carries ``"eigs"``: the ascending
        eigenvalues, ndarray of shape (m,) (pooled conv: m times the kernel positions).

    Raises
    ------
    ValueError
        NaN/Inf weights, naming the layer.
    """
    vecs: dict[int, np.ndarray] = {}
    if localization:
        results = []
        for i, layer in enumerate(layers):
            if layer.matrix.ndim == 3:
                results.extend(esd_layers([layer], device=device, precision=precision))
                continue
            eigs, vecs[i] = gram_eigh(layer.matrix, device=device, name=layer.name, precision="float64")
            results.append((eigs, "float64"))
    else:
        results = esd_layers(layers, device=device, precision=precision)
    windowed = (farms_alphas(layers, device=device, precision=precision, n_windows=farms_windows,
                             min_eigs=MIN_FIT_EIGS, spectra=results) if farms else [])
    rows = []
    for i, (layer, (eigs, used)) in enumerate(zip(layers, results, strict=True)):
        loc: dict[str, float] = {}
        if localization:
            loc = _localization_row(eigs, vecs[i]) if i in vecs else dict.fromkeys(LOCALIZATION_KEYS, _NAN)
        trapped: dict[str, float] = {}
        if traps:
            plain = layer.matrix.ndim == 2 and layer.kind != "lora"
            trapped = (trap_metrics(layer.matrix, eigs, n_permutations=traps) if plain
                       else dict.fromkeys(TRAP_KEYS, _NAN))
        result = analyze_spectrum(eigs, n=layer.n, m=layer.m, name=layer.name, kind=layer.kind, precision=used,
                                  dtype=layer.matrix.dtype, tail_law=tail_law)
        farms_row = (dict(zip(FARMS_KEYS, (windowed[i].alpha, windowed[i].alpha_hill), strict=True))
                     if farms else {})
        result = dataclasses.replace(result, farms=farms_row, localization=loc, traps=trapped, eigs=eigs)
        rows.append(result.to_row(eigs=True))
    return rows


def iter_analysis(
    plan: LayerPlan, *, device: str | torch.device | None = None, localization: bool = False,
    precision: str = DEFAULT_PRECISION, traps: int = 0, farms: bool = False, farms_windows: int = FARMS_WINDOWS,
    tail_law: bool = False, workers: int | None = None,
    on_layer: Callable[[LayerInfo], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Analyze the layers of a plan in order and yield one row per layer as soon as it is done.

    On the CPU layers are built, analysed and dropped one at a time (``workers`` of them in
    flight); on a GPU they are grouped (weights up to about 256 MiB) for batched eigensolves. A
    checkpoint of any size is thus analysed in bounded memory, and no row is lost if a later
    layer fails.

    Parameters
    ----------
    plan : LayerPlan
        From :func:`analysis.layers.plan_layers`.
    device, localization, precision, traps, farms, farms_windows, tail_law
        As for :func:`analyze_layers`.
    workers : int, optional
        CPU only: analyse this many layers at once (default: ``torch.get_num_threads()``, i.e. all
        cores unless the process asked for fewer), each with single-threaded BLAS/LAPACK (torch
        and the BLAS are set to one thread meanwhile, then restored). One layer's eigensolve
        (which releases the GIL) then overlaps the next one's Gram, and no core waits inside a
        multi-threaded eigensolver: on 2 cores this is faster than 2 BLAS threads per layer, the
        more so on a busy machine (spinning threads burn CPU there).
    on_layer : callable, optional
        Called with each :class:`~analysis.layers.LayerInfo` before its matrix is read (progress).

    Yields
    ------
    dict
        Metrics rows with ``"eigs"``, in plan order.
    """
    kw = {"device": device, "localization": localization, "precision": precision, "traps": traps, "farms": farms,
          "farms_windows": farms_windows, "tail_law": tail_law}
    workers = torch.get_num_threads() if workers is None else int(workers)
    if default_device(device).type == "cpu" and workers > 1 and len(plan.layers) > 1:
        yield from _iter_parallel(plan, workers, on_layer, kw)
        return
    limit = _GROUP_BYTES if default_device(device).type != "cpu" else 0
    group: list[LayerMatrix] = []
    size = 0
    for info in plan.layers:
        if on_layer is not None:
            on_layer(info)
        layer = plan.matrix(info)
        group.append(layer)
        size += layer.matrix.numel() * layer.matrix.element_size()
        if size >= limit:
            yield from analyze_layers(group, **kw)
            group, size = [], 0
    if group:
        yield from analyze_layers(group, **kw)


def _iter_parallel(plan: LayerPlan, workers: int, on_layer: Callable[[LayerInfo], None] | None,
                   kw: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``workers`` single-threaded layer analyses at once; matrices are read in this thread, in order."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1), ThreadPoolExecutor(max_workers=workers) as pool:
            pending: deque[Any] = deque()
            for info in plan.layers:
                if on_layer is not None:
                    on_layer(info)
                pending.append(pool.submit(analyze_layers, [plan.matrix(info)], **kw))
                while len(pending) >= workers:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()
    finally:
        torch.set_num_threads(threads)


def estimate_seconds(plan: LayerPlan, *, precision: str = DEFAULT_PRECISION, workers: int = 1) -> float:
    """Rough wall time of analysing ``plan`` on this CPU, from timing one 2048×1024 ESD (about 0.1 s).

    The probe runs single-threaded; each layer's cost is taken proportional to
    :attr:`LayerInfo.flops` (Gram + eigensolve) and spread over ``workers``. Fits and I/O are not
    counted, and a busy machine makes everything slower, probe included.
    """
    from threadpoolctl import threadpool_limits

    probe = LayerMatrix.from_tensor("probe", "matrix", torch.randn(2048, 1024))
    info = LayerInfo("probe", "matrix", (2048, 1024), 2048, 1024, torch.float32, ())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            esd_layers([probe], device="cpu", precision=precision)  # warm-up: allocator, BLAS buffers
            t0 = time.perf_counter()
            esd_layers([probe], device="cpu", precision=precision)
            seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    total = sum(i.flops for i in plan.layers) / info.flops * seconds
    return total / max(1, min(workers, len(plan.layers)))


def analyze_model(model: torch.nn.Module | str | Path, **kw: Any) -> Any:
    """Analyze every weight matrix of a torch model or a checkpoint (file or model folder).

    Parameters
    ----------
    model : torch.nn.Module, str or Path
        A module, or anything :func:`analysis.checkpoints.open_checkpoint` reads (``.safetensors``,
        a sharded index, a Hugging Face model folder, ``.pt``/``.bin``, ``.npy``/``.npz``).
    **kw
        ``conv``, ``include``, ``exclude``, ``kinds``, ``exclude_kinds``, ``min_dim``, ``max_dim``
        and ``trust_pickle`` go to :func:`~analysis.layers.plan_layers`; ``device``,
        ``localization``, ``precision``, ``traps``, ``farms``, ``farms_windows`` and ``tail_law`` to
        :func:`analyze_layers`; ``workers`` to
        :func:`iter_analysis` (default: one layer per torch thread). ``runner``: a callable
        ``runner(plan, **those)`` yielding the rows in plan order, used instead of
        :func:`iter_analysis` (``htsweep.analyze_model(..., ray_address=...)`` passes the Ray one
        of ``htsweep.sweeps.analyze_cluster``; this package never imports Ray).

    Returns
    -------
    pandas.DataFrame
        One row per layer, columns ``ROW_KEYS`` (+ FARMS, + tail-law, + localization, + trap columns); no ``eigs``
        column. Tied parameters (a tied LM head) appear once.

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

    plan_keys = {"conv", "include", "exclude", "kinds", "exclude_kinds", "min_dim", "max_dim", "trust_pickle"}
    plan_kw = {k: kw.pop(k) for k in list(kw) if k in plan_keys}
    runner = kw.pop("runner", None) or iter_analysis
    unknown = set(kw) - {"device", "localization", "precision", "traps", "farms", "farms_windows", "tail_law",
                         "workers"}
    if unknown:
        raise TypeError(f"analyze_model: unexpected keyword argument(s) {sorted(unknown)}")
    if isinstance(model, torch.nn.Module):
        plan_kw.pop("trust_pickle", None)
    plan = plan_layers(model, **plan_kw)
    rows = []
    for row in runner(plan, **kw):
        row.pop(RowKey.EIGS, None)
        rows.append(row)
    columns = (list(ROW_KEYS) + (list(FARMS_KEYS) if kw.get("farms") else [])
               + (list(TAIL_LAW_KEYS) if kw.get("tail_law") else [])
               + (list(LOCALIZATION_KEYS) if kw.get("localization") else [])
               + (list(TRAP_KEYS) if kw.get("traps") else []))
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
