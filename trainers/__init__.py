"""Models, datasets, optimizers and the training loop with spectral-monitoring callbacks.

Knows nothing of Ray or MLflow: a trial plugs its monitor and reporters in as callbacks.
"""
