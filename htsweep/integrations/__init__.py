"""Spectral monitoring inside training loops that are not htsweep's own.

- :mod:`htsweep.integrations.pytorch`: :class:`~htsweep.integrations.pytorch.SpectralMonitor`,
  ``monitor(model, step)`` in any loop (also ``htsweep.SpectralMonitor``);
- :mod:`htsweep.integrations.lightning`: ``SpectralCallback`` for ``lightning.Trainer``
  (extra ``htsweep[lightning]``);
- :mod:`htsweep.integrations.transformers`: ``SpectralCallback`` for ``transformers.Trainer``
  (extra ``htsweep[transformers]``).

Each module imports its framework only when it is imported itself. All of them analyze through
``trainers.monitor.SpectralMonitor.analyze`` and log the same names: the aggregates and per-layer
series of ``analysis.aggregate.spectral_aggregates`` (``alpha/<layer>``, ``phase_code/<layer>``,
``alpha_mean``, ...) and, where MLflow is the logger, the ``phase.<layer>`` tags of
``services.tracking.spectral_tags``.
"""
