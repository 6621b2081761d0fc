"""Linear probe of a latent: how much class information an encoder's frozen latent holds.

A benchmark compares the probe accuracy of an encoder trained inside a multimodal model with
that of the same encoder trained alone; the difference says whether joint training left the
encoder under-trained (modality competition). Not to be confused with
:mod:`mcr_reg.probe`, the package's check that MCR's gradient survives a training step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def linear_probe(
    train_z: Tensor,
    train_y: Tensor,
    test_z: Tensor,
    test_y: Tensor,
    *,
    num_classes: int,
    l2: float = 1e-3,
    max_iter: int = 200,
    dtype: torch.dtype = torch.float64,
) -> float:
    """Test accuracy of a multinomial logistic regression fitted on frozen latents.

    The latents are standardised with the training statistics; the weights start at zero and
    are fitted by L-BFGS on ``cross-entropy + l2 * ||W||^2``, a convex problem, so the result
    needs no seed.

    Args:
        train_z: ``(N, D)`` training latents.
        train_y: ``(N,)`` their classes.
        test_z: ``(M, D)`` test latents.
        test_y: ``(M,)`` their classes.
        num_classes: number of classes.
        l2: weight of the squared-weight penalty.
        max_iter: L-BFGS iterations.
        dtype: the precision the probe is fitted and scored in.

    Returns:
        The accuracy on the test latents, in [0, 1].
    """
    a, b = standardised(train_z, test_z, dtype)
    probe = nn.Linear(a.shape[1], num_classes).to(dtype)
    nn.init.zeros_(probe.weight)
    nn.init.zeros_(probe.bias)
    opt = torch.optim.LBFGS(probe.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(probe(a), train_y) + l2 * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return float((probe(b).argmax(-1) == test_y).to(dtype).mean())


def standardised(
    train_z: Tensor, test_z: Tensor, dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor]:
    """``train_z`` and ``test_z`` (detached, in ``dtype``) standardised with the training
    mean and standard deviation, for a probe.

    Raises:
        ValueError: unless both are ``(N, D)`` matrices of the same width.
    """
    if train_z.dim() != 2 or test_z.dim() != 2 or train_z.shape[1] != test_z.shape[1]:
        raise ValueError(
            f"expected (N, D) and (M, D) latents, got {tuple(train_z.shape)} and "
            f"{tuple(test_z.shape)}"
        )
    train_z, test_z = train_z.detach().to(dtype), test_z.detach().to(dtype)
    mu, sd = train_z.mean(0), train_z.std(0).clamp_min(1e-6)
    return (train_z - mu) / sd, (test_z - mu) / sd
