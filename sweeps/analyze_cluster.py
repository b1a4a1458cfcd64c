"""Layer analysis spread over a Ray cluster: ``htsweep analyze PATH --address`` and ``analyze_model(..., ray_address=)``.

Each layer of a :class:`~analysis.layers.LayerPlan` becomes one Ray task (1 CPU, and a share of a
GPU when the cluster has GPUs: the task then diagonalizes on its GPU), running the same
:func:`~analysis.analyze.analyze_layers` as the local run, single-threaded like each local worker,
so a row is the same to the last bit. Rows come back in plan order as soon as each one and those
before it are done, with at most ``2 × cluster CPUs`` tasks in flight.

Where the weights come from:

- **a checkpoint (path)**: the driver plans the layers from the files' headers; the plan (metadata
  and per-layer recipes, no tensor data, pickled once into the object store) goes to every task,
  and each task reads only the tensors of its own layer from the files. The path must therefore
  name the same files on every node: shared storage (NFS, Lustre, a bucket mounted at the same
  path), or a copy of the checkpoint at that path on every node (each task opens only the shards
  holding its layer's tensors);
- **a module or state dict in memory**: the driver builds each matrix and ships it with its task.

``analysis`` never imports Ray (DESIGN.md); it only takes the runner this module provides.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from htsweep.analysis.farms import FARMS_WINDOWS
from htsweep.analysis.layers import LayerInfo, LayerMatrix, LayerPlan

__all__ = ["GPU_PER_LAYER", "LayerTiming", "iter_analysis_ray", "ray_runner"]

#: GPU share a layer task asks for when the cluster has GPUs (four layers share one GPU).
GPU_PER_LAYER = 0.25


class LayerTiming:
    """Seconds per layer of the last :func:`iter_analysis_ray` run: in the task vs seen by the driver.

    ``task_s[i]``: time layer ``i`` took inside its task (reading its tensors + the analysis);
    ``wall_s``: wall time of the whole run. ``overhead_per_layer_s`` = (wall · concurrency −
    Σ task_s) / layers: scheduling, serialization and idle slots per layer.
    """

    def __init__(self) -> None:
        self.task_s: list[float] = []
        self.wall_s = 0.0
        self.concurrency = 1

    @property
    def overhead_per_layer_s(self) -> float:
        n = max(1, len(self.task_s))
        return (self.wall_s * self.concurrency - sum(self.task_s)) / n


def _analyze_one(plan: LayerPlan | None, info: LayerInfo | None, layer: LayerMatrix | None,
                 kw: dict[str, Any]) -> tuple[list[dict[str, Any]], float]:
    """Body of one layer task: read the layer (from the files, or as shipped), analyse it single-threaded."""
    import ray
    import torch
    from threadpoolctl import threadpool_limits

    from htsweep.analysis.analyze import analyze_layers

    t0 = time.perf_counter()
    device = "cuda" if ray.get_gpu_ids() else "cpu"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            if layer is None:
                layer = plan.matrix(info)  # type: ignore[union-attr, arg-type]
            rows = analyze_layers([layer], device=device, **kw)
    finally:
        torch.set_num_threads(threads)
    return rows, time.perf_counter() - t0


def _cluster_gpus(ray: Any) -> float:
    try:
        return float(ray.cluster_resources().get("GPU", 0.0))
    except Exception:  # noqa: BLE001 - a cluster whose resources cannot be read has no GPU we can count on
        return 0.0


def iter_analysis_ray(
    plan: LayerPlan, *, localization: bool = False, precision: str | None = None, traps: int = 0,
    farms: bool = False, farms_windows: int = FARMS_WINDOWS, tail_law: bool = False,
    on_layer: Callable[[LayerInfo], None] | None = None,
    timing: LayerTiming | None = None,
    device: Any = None, workers: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Analyse the layers of ``plan`` as Ray tasks on the connected cluster; rows in plan order.

    Parameters
    ----------
    plan : LayerPlan
    localization, precision, traps, farms, farms_windows, tail_law
        As for :func:`analysis.analyze.analyze_layers` (``precision`` None: its default).
    on_layer : callable, optional
        Called with each :class:`~analysis.layers.LayerInfo` when its task is submitted (progress).
    timing : LayerTiming, optional
        Filled with the per-layer task times and the run's wall time.
    device, workers
        Ignored (accepted so that this is a drop-in runner for :func:`analysis.analyze.iter_analysis`):
        each task picks its GPU when it was given one, else the CPU, and the cluster sets the
        concurrency.

    Yields
    ------
    dict
        Metrics rows with ``"eigs"``, in plan order, identical to the local run's.

    Raises
    ------
    ValueError
        A layer's own error (NaN/Inf weights, an unreadable file), one line, as locally.
    RuntimeError
        Ray is not initialized.
    """
    import ray

    from htsweep.analysis.analyze import DEFAULT_PRECISION

    if not ray.is_initialized():
        raise RuntimeError("iter_analysis_ray needs a connected Ray: ray.init(address=...) first")
    kw = {"localization": localization, "precision": precision or DEFAULT_PRECISION, "traps": traps, "farms": farms,
          "farms_windows": farms_windows, "tail_law": tail_law}
    gpu = GPU_PER_LAYER if _cluster_gpus(ray) > 0 else 0.0
    task = ray.remote(num_cpus=1, num_gpus=gpu, max_retries=2)(_analyze_one)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    window = 2 * cpus
    plan_ref = ray.put(plan) if plan.checkpoint is not None else None
    timing = timing if timing is not None else LayerTiming()
    timing.concurrency = cpus
    t0 = time.perf_counter()
    pending: deque[Any] = deque()
    infos = iter(plan.layers)

    def submit(info: LayerInfo) -> None:
        if on_layer is not None:
            on_layer(info)
        if plan_ref is not None:
            pending.append(task.remote(plan_ref, info, None, kw))
        else:
            pending.append(task.remote(None, None, plan.matrix(info), kw))

    try:
        for info in infos:
            submit(info)
            if len(pending) >= window:
                break
        while pending:
            try:
                rows, seconds = ray.get(pending.popleft())
            except ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, ValueError):
                    raise ValueError(str(cause).splitlines()[0]) from None
                raise
            timing.task_s.append(seconds)
            next_info = next(infos, None)
            if next_info is not None:
                submit(next_info)
            yield from rows
    finally:
        for ref in pending:  # stopped early (an error, or the consumer stopped): cancel the rest
            ray.cancel(ref)
        timing.wall_s = time.perf_counter() - t0


def ray_runner(address: str | None) -> Callable[..., Iterator[dict[str, Any]]]:
    """A runner for :func:`analysis.analyze.analyze_model` that joins ``address`` for the run.

    ``address``: ``"auto"`` (the cluster this machine belongs to), ``"HOST:PORT"``, or None / ``"local"``
    for a private local Ray. A process already connected to Ray keeps its connection.
    """
    from htsweep.sweeps.lifecycle import own_ray

    def run(plan: LayerPlan, **kw: Any) -> Iterator[dict[str, Any]]:
        with own_ray(None if address == "local" else address):
            yield from iter_analysis_ray(plan, **kw)

    return run
