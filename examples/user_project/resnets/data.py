"""scikit-learn's 8×8 handwritten digits (they ship with scikit-learn: no download) as map-style
Datasets, the training split with augmentation (random shifts by up to one pixel, pixel noise).

htsweep calls ``digits`` with the spec's ``data_kwargs`` (plus ``seed``, which it names) and
streams the items through a DataLoader, so the augmentation runs on every read; it seeds each
batch's reads, so a run is reproducible and resumes mid-epoch exactly.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


class DigitImages(Dataset):
    """Images ``(1, 8, 8)`` scaled to [0, 1] with their labels; ``augment`` shifts and perturbs each read."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, augment: bool = False, noise: float = 0.05):
        self.images, self.targets = images, labels
        self.augment, self.noise = augment, noise

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i]
        if self.augment:
            dy, dx = torch.randint(0, 3, (2,)).tolist()  # crop the 10×10 zero-padded image at an offset
            x = F.pad(x, (1, 1, 1, 1))[:, dy:dy + 8, dx:dx + 8]
            x = x + self.noise * torch.randn_like(x)
        return x, int(self.targets[i])


def digits(*, seed: int = 0, test_fraction: float = 0.25, augment: bool = True,
           noise: float = 0.05) -> tuple[DigitImages, DigitImages]:
    """The dataset factory a spec names: ``dataset: "resnets.data:digits"``; a seeded train/test split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images / 16.0, dtype=torch.float32).unsqueeze(1)
    labels = torch.tensor(bunch.target, dtype=torch.long)
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(labels)))
    n_test = round(len(labels) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return (DigitImages(images[train], labels[train], augment=augment, noise=noise),
            DigitImages(images[test], labels[test]))
