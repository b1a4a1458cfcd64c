"""Trainer tests run single-threaded: colleagues' suites share the 2 cores, and oversubscribed
OpenMP threads make small CPU training runs many times slower."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
