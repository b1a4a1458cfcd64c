"""Spectral analysis of weight matrices: ESDs, power-law and Marchenko–Pastur fits, metrics, phases.

Pure numerics (numpy, scipy, torch, powerlaw); never imports ray or mlflow, so it works on any
torch model or matrix on its own.
"""
