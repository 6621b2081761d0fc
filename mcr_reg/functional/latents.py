"""Latent layouts: the feature axis of a batch-first latent, and its pooled ``(B, D)`` form."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from mcr_reg._checks import (
    shape_of,
)


def feature_axis_of(z: Tensor, feature_axis: int | Literal["auto"] = "auto") -> int:
    """The feature axis of a batch-first latent, as a non-negative index.

    ``"auto"``: the last axis for ``(B, D)`` and ``(B, T, D)``; axis 1 (channels) for latents of
    four or more axes such as ``(B, C, H, W)`` or ``(B, C, T, H, W)``.
    """
    if z.dim() < 2:
        raise ValueError(f"expected a latent with batch and feature axes, got shape {shape_of(z)}")
    if feature_axis == "auto":
        return z.dim() - 1 if z.dim() <= 3 else 1
    axis = feature_axis % z.dim()
    if axis == 0:
        raise ValueError("the feature axis cannot be the batch axis 0")
    return axis


def pool_latent(z: Tensor, feature_axis: int | Literal["auto"] = "auto") -> Tensor:
    """Mean over every axis that is neither the batch axis nor the feature axis.

    Args:
        z: a batch-first latent, e.g. ``(B, D)``, ``(B, T, D)`` or ``(B, C, H, W)``.
        feature_axis: see :func:`feature_axis_of`.

    Returns:
        ``(B, D)``.

    Example:
        >>> import torch
        >>> pool_latent(torch.ones(4, 7, 16)).shape
        torch.Size([4, 16])
        >>> pool_latent(torch.ones(4, 8, 5, 5)).shape
        torch.Size([4, 8])
    """
    axis = feature_axis_of(z, feature_axis)
    if z.dim() == 2:
        return z
    z = z.movedim(axis, -1)
    return z.flatten(1, -2).mean(dim=1)
