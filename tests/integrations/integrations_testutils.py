"""Helpers shared by the integrations tests."""

from __future__ import annotations


def metric_steps(client, run_id: str, key: str) -> list[int]:
    """The steps at which ``key`` was logged to ``run_id``, in order."""
    return sorted(m.step for m in client.get_metric_history(run_id, key))
