"""Trainer tests run single-threaded (the `one_torch_thread` fixture of tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _single_threaded(one_torch_thread):
    yield
