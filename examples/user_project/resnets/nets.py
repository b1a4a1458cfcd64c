"""A small residual CNN with batch norm, sized for 8×8 digit images.

htsweep calls ``tiny_resnet`` with the spec's ``model_kwargs`` plus what the data provide and
the signature names (``n_classes``, ``in_channels``) and the swept ``dropout``.
"""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """conv → BN → ReLU → conv → BN, added to the input, then ReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(out)))


class TinyResNet(nn.Module):
    """Stem conv, ``blocks`` residual blocks, global average pooling, a hidden FC layer, the classifier."""

    def __init__(self, n_classes: int, in_channels: int, width: int = 32, blocks: int = 2, hidden: int = 128,
                 dropout: float = 0.0):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(width)
        self.blocks = nn.Sequential(*(ResidualBlock(width) for _ in range(blocks)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, hidden)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(torch.relu(self.stem_bn(self.stem(x))))
        x = torch.flatten(self.pool(x), 1)
        return self.head(self.drop(torch.relu(self.fc(x))))


def tiny_resnet(n_classes: int, in_channels: int, *, width: int = 32, blocks: int = 2, hidden: int = 128,
                dropout: float = 0.0) -> TinyResNet:
    """The model factory a spec names: ``model: "resnets.nets:tiny_resnet"``."""
    return TinyResNet(n_classes, in_channels, width=width, blocks=blocks, hidden=hidden, dropout=dropout)
