"""Sweep specs, Ray Tune + Optuna wiring toward a target alpha, reports and the `htsweep` CLI."""
