"""An example user package: a small residual CNN and an augmented Dataset, swept by htsweep."""
