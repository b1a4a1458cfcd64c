"""Teacher–student metrics of the two-layer student: teacher alignment, kernel-target alignment, ridge readout.

These are the quantities of Kothapalli et al. ("From spikes to heavy tails") that say how much
of the single-index teacher the student's first layer has learned; the regression task adds
them to the evaluation metrics when the dataset has a teacher.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # trainers.data imports trainers.tasks, which imports this module
    from htsweep.trainers.data import DataBundle

__all__ = [
    "RIDGE_LAMBDA",
    "kernel_target_alignment",
    "ridge_readout_losses",
    "teacher_alignment",
    "teacher_student_metrics",
]

RIDGE_LAMBDA = 1e-2
"""Ridge penalty of the teacher–student readout refit (the paper's ``reg_lambda``)."""


@torch.no_grad()
def teacher_alignment(weight: torch.Tensor, teacher: torch.Tensor) -> float:
    """The ``sim`` metric: ``|⟨v₁, β⟩|`` for the top right singular vector ``v₁`` of ``weight``.

    Parameters
    ----------
    weight : Tensor of shape (h, d)
        First-layer weight of the student.
    teacher : Tensor of shape (d,)
        Unit teacher direction ``β``.

    Returns
    -------
    float in [0, 1]
    """
    vh = torch.linalg.svd(weight.detach().double(), full_matrices=False).Vh
    beta = teacher.detach().double().to(vh.device)
    return float((vh[0] @ beta).abs() / beta.norm())


@torch.no_grad()
def kernel_target_alignment(features: torch.Tensor, y: torch.Tensor) -> float:
    """Kernel-target alignment of the conjugate kernel ``K = Z Zᵀ`` with ``y yᵀ``.

    ``KTA = ⟨K, y yᵀ⟩_F / (‖K‖_F ‖y yᵀ‖_F) = ‖Zᵀy‖² / (‖ZᵀZ‖_F ‖y‖²)`` (Cristianini et al. 2001).

    Parameters
    ----------
    features : Tensor of shape (n, h)
        Hidden post-activations ``Z``.
    y : Tensor of shape (n,)
        Targets.
    """
    z, t = features.double(), y.double().reshape(-1)
    num = (z.T @ t).square().sum()
    den = torch.linalg.matrix_norm(z.T @ z) * t.square().sum()
    return float(num / den) if float(den) > 0 else math.nan


def ridge_readout_losses(model: nn.Module, data: DataBundle, lam: float = RIDGE_LAMBDA) -> tuple[float, float]:
    """Train/test MSE after refitting the readout by ridge regression on the hidden features.

    The second stage of the paper's two-stage procedure: ``â = argmin (1/n)‖y − Z a‖² + λ‖a‖²`` on
    the training features ``Z = σ(W x / √d)``, then the MSE of ``Z â`` on train and test.

    Returns
    -------
    (train_mse, test_mse) : tuple of float
    """
    z = model.features(data.x_train).double()
    y = data.y_train.double()
    n, h = z.shape
    gram = z.T @ z + n * lam * torch.eye(h, dtype=z.dtype, device=z.device)
    a = torch.linalg.solve(gram, z.T @ y)
    z_test = model.features(data.x_test).double()
    return float((z @ a - y).square().mean()), float((z_test @ a - data.y_test.double()).square().mean())


@torch.no_grad()
def teacher_student_metrics(model: nn.Module, data: DataBundle) -> dict[str, float]:
    """``sim, kta`` (conjugate kernel on the test set) and ``ridge_train_loss, ridge_test_loss``.

    Parameters
    ----------
    model : TwoLayerStudent
        Needs ``fc1`` and ``features``.
    data : DataBundle
        With a ``teacher`` direction.
    """
    ridge_train, ridge_test = ridge_readout_losses(model, data)
    return {"sim": teacher_alignment(model.fc1.weight, data.teacher),
            "kta": kernel_target_alignment(model.features(data.x_test), data.y_test),
            "ridge_train_loss": ridge_train, "ridge_test_loss": ridge_test}
