"""The conditional-entropy bottleneck term L_CEB (paper eq. 13): reconstruction of the latents."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mcr_reg._checks import (
    shape_of,
)
from mcr_reg.functional._common import compute_dtype


def ceb_reconstruction(reconstruction: Tensor, pooled_latents: Sequence[Tensor]) -> Tensor:
    """L_CEB of paper eq. 13: mean squared error between ``h(prediction)`` and ``[z_1..z_M]``.

    Args:
        reconstruction: the reconstruction head's output ``(B, Σ d_m)``.
        pooled_latents: the pooled latents ``(B, d_m)`` per modality (not detached: the
            encoders are pulled towards what the prediction can explain).

    Returns:
        A scalar.
    """
    target = torch.cat(list(pooled_latents), dim=-1)
    if reconstruction.shape != target.shape:
        raise ValueError(
            f"expected the reconstruction shape {shape_of(target)}, got {shape_of(reconstruction)}"
        )
    dtype = compute_dtype(target.dtype)
    return F.mse_loss(reconstruction.to(dtype), target.to(dtype))
