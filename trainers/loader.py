"""Deterministic, resumable batches of a ``DatasetPair`` through ``torch.utils.data.DataLoader``.

Order and randomness are functions of ``(seed, epoch, batch)`` only:

* the batch sampler shuffles epoch ``e`` with a generator seeded from ``(seed, e)``, and can start
  an epoch at any batch, so a checkpoint needs only ``(epoch, batch)``;
* each batch carries its own seed, and the items of a batch are read with torch, numpy and
  python ``random`` seeded from it (:class:`_SeededItems`). A Dataset's random augmentation is
  then the same whatever ``num_workers`` is, whichever worker reads the batch, and whether or not
  the run was killed and resumed in between; the trainer's torch stream (dropout) is left untouched.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, get_worker_info

from htsweep.trainers.datasets import DatasetPair

__all__ = ["LoaderBatcher", "device_batches", "eval_loader"]

_EVAL_EPOCH = -1  # the seed stream of evaluation reads, apart from every training epoch


class _Batch(list):
    """Indices of one batch, with the seed its items are read under (pickles to workers with it)."""

    seed: int = 0


_MASK = 2**64 - 1


def _batch_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed mixed from the three words (splitmix64 rounds: nearby inputs, unrelated seeds).

    Epoch -1 is evaluation, index -1 the epoch's permutation. Pure integer arithmetic: a few
    microseconds, against ~100 for ``np.random.SeedSequence``.
    """
    h = 0x9E3779B97F4A7C15
    for word in (seed, epoch, index):
        h = (h ^ (word & _MASK)) * 0xBF58476D1CE4E5B9 & _MASK
        h = (h ^ (h >> 27)) * 0x94D049BB133111EB & _MASK
        h ^= h >> 31
    return h >> 32


class _EpochBatches:
    """Batch sampler: epoch ``epoch`` in shuffled (or given) order, starting at batch ``start``."""

    def __init__(self, n: int, batch_size: int, seed: int, *, shuffle: bool, indices: torch.Tensor | None = None):
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.indices = indices
        self.epoch = self.start = 0

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[_Batch]:
        epoch, start = self.epoch, self.start
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(_batch_seed(self.seed, epoch, -1)))
        else:
            order = self.indices if self.indices is not None else torch.arange(self.n)
        for b in range(start, len(self)):
            batch = _Batch(order[b * self.batch_size:(b + 1) * self.batch_size].tolist())
            batch.seed = _batch_seed(self.seed, epoch, b)
            yield batch


class _SeededItems:
    """Reads a batch of ``dataset`` items under the batch's seed, restoring the caller's RNG states after."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[i]

    def __getitems__(self, batch: _Batch) -> list[Any]:
        # In the trainer's own process (num_workers=0) torch's CPU stream is put back after the
        # reads, so dropout draws the same numbers whatever num_workers is. numpy's and python's
        # global streams are left as the reads leave them (the loop draws from neither, and saving
        # numpy's state costs more than reading a small batch).
        in_trainer = get_worker_info() is None
        cpu = torch.default_generator.get_state() if in_trainer else None
        # the CPU generator only: torch.manual_seed would also queue a lazy CUDA seeding, which
        # records a stack trace on every call (~1 ms)
        torch.default_generator.manual_seed(batch.seed)
        random.seed(batch.seed)
        np.random.seed(batch.seed)  # noqa: NPY002  (user transforms may use the legacy global RNG)
        try:
            return [self.dataset[i] for i in batch]
        finally:
            if cpu is not None:
                torch.default_generator.set_state(cpu)


def _loader(dataset: Any, sampler: _EpochBatches, *, num_workers: int, pin_memory: bool,
            persistent_workers: bool) -> DataLoader:
    return DataLoader(_SeededItems(dataset), batch_sampler=sampler, num_workers=num_workers, pin_memory=pin_memory,
                      persistent_workers=persistent_workers and num_workers > 0,
                      # a private generator: the loader's per-iterator base seed must not draw from torch's
                      generator=torch.Generator().manual_seed(sampler.seed))


def _to_device(x: torch.Tensor, y: torch.Tensor, device: torch.device, regression: bool,
               non_blocking: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if x.is_floating_point() and x.dtype != torch.float32:
        x = x.float()  # numpy items arrive as float64
    if regression and y.dtype != torch.float32:
        y = y.float()
    return x.to(device, non_blocking=non_blocking), y.to(device, non_blocking=non_blocking)


class LoaderBatcher:
    """Training batches of ``data.train`` through a ``DataLoader``, with ``Batcher``'s contract.

    Parameters
    ----------
    data : DatasetPair
    batch_size : int
        Capped at the number of training items; an epoch's last batch may be smaller.
    seed : int
        Seeds the order of every epoch and each batch's item reads.
    device : torch.device
        Where ``next`` puts the batch.
    num_workers : int, default=0
        DataLoader worker processes (0: read items in this process).
    pin_memory : bool, default=False
        Page-locked host batches, copied to the GPU without blocking.
    persistent_workers : bool, default=True
        Keep workers alive across epochs (with ``num_workers > 0``).
    """

    def __init__(self, data: DatasetPair, batch_size: int, seed: int, *, device: torch.device | str = "cpu",
                 num_workers: int = 0, pin_memory: bool = False, persistent_workers: bool = True):
        self.data, self.device = data, torch.device(device)
        self.batch_size = min(int(batch_size), data.n_train)
        self.sampler = _EpochBatches(data.n_train, self.batch_size, seed, shuffle=True)
        self.loader = _loader(data.train, self.sampler, num_workers=num_workers, pin_memory=pin_memory,
                              persistent_workers=persistent_workers)
        self.steps_per_epoch = len(self.sampler)
        self.regression = data.task == "regression"
        self.non_blocking = pin_memory and self.device.type == "cuda"
        self.epoch = self.pos = 0
        self._it: Iterator[Any] | None = None

    def next(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """The next batch ``(x, y, epoch_done)`` on ``device``; ``epoch_done`` is True for an epoch's last batch."""
        if self._it is None:
            self.sampler.epoch, self.sampler.start = self.epoch, self.pos
            self._it = iter(self.loader)
        x, y = next(self._it)
        self.pos += 1
        done = self.pos >= self.steps_per_epoch
        if done:
            self.epoch, self.pos, self._it = self.epoch + 1, 0, None
        return (*_to_device(x, y, self.device, self.regression, self.non_blocking), done)

    def state_dict(self) -> dict[str, Any]:
        """Epoch and batches taken in it: all a resumed run needs to continue the same sample order."""
        return {"loader": "dataloader", "epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()``'s position (the next ``next`` restarts the DataLoader there).

        Raises
        ------
        ValueError
            ``state`` was written by the in-memory ``Batcher`` (a checkpoint of ``loader='memory'``).
        """
        if state.get("loader") != "dataloader":
            raise ValueError("the checkpoint was written with loader='memory'; resume it with loader='memory'")
        self.epoch, self.pos, self._it = int(state["epoch"]), int(state["pos"]), None


def eval_loader(dataset: Any, *, batch_size: int, seed: int, indices: torch.Tensor | None = None,
                num_workers: int = 0, pin_memory: bool = False, persistent_workers: bool = False) -> DataLoader:
    """A DataLoader over ``dataset`` (its items ``indices`` when given), in order, each pass the same.

    Items are read under fixed seeds, so a random transform gives the same evaluation every time;
    with ``persistent_workers`` the workers stay up between evaluations.
    """
    n = len(indices) if indices is not None else len(dataset)
    sampler = _EpochBatches(n, batch_size, seed, shuffle=False, indices=indices)
    sampler.epoch = _EVAL_EPOCH
    return _loader(dataset, sampler, num_workers=num_workers, pin_memory=pin_memory,
                   persistent_workers=persistent_workers)


def device_batches(loader: DataLoader, device: torch.device, *, regression: bool,
                   non_blocking: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The ``(x, y)`` batches of one pass over ``loader``, on ``device`` (float32 inputs; float targets
    for ``regression``)."""
    for x, y in loader:
        yield _to_device(x, y, device, regression, non_blocking)
