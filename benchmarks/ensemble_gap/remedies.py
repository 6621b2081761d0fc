"""Where an ensemble's advantage over a fused prediction comes from, and fusion-side remedies.

Plain functions on a trained model's outputs (logits, latents, labels); nothing here trains a
network. Diagnostics: per-modality reliance of a linear fusion head
(:func:`concat_head_shares`, :func:`spread_reliance`), error overlap of two predictors
(:func:`error_overlap`), calibration (:func:`expected_calibration_error`,
:func:`negative_log_likelihood`). Remedies, each applied after training and fitted on the
validation split at most: :func:`fused_and_unimodal_heads`, :func:`refit_fusion_head`,
:func:`temperature_scaled_combination`. The protocol that uses them is
docs/examples/ensemble-gap.md.

Example:
    >>> import torch
    >>> fused = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    >>> heads = [torch.tensor([[1.0, 0.0], [1.0, 0.0]])]
    >>> fused_and_unimodal_heads(fused, heads).argmax(-1).tolist()
    [0, 0]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_logits(name: str, logits: Tensor) -> None:
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(f"expected {name} as (N, C) logits with C >= 2, got {tuple(logits.shape)}")


def _check_labels(labels: Tensor, n: int, num_classes: int) -> None:
    if labels.dim() != 1 or labels.shape[0] != n:
        raise ValueError(f"expected labels of shape ({n},), got {tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"expected labels in [0, {num_classes - 1}], got values from {int(labels.min())} "
            f"to {int(labels.max())}"
        )


def _check_same_shape(name: str, tensors: Sequence[Tensor]) -> None:
    if not tensors:
        raise ValueError(f"expected at least one tensor in {name}, got none")
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"expected {name} of one shape, got {sorted(shapes)}")


# --------------------------------------------------------------------------- predictors
def average_probabilities(logits: Sequence[Tensor]) -> Tensor:
    """The mean of the predictors' class probabilities (the ensemble's rule).

    Args:
        logits: ``(N, C)`` logits (or log-probabilities) of each predictor.

    Returns:
        ``(N, C)`` probabilities, float32.

    Example:
        >>> average_probabilities([torch.zeros(1, 2), torch.tensor([[0.0, 100.0]])]).tolist()
        [[0.25, 0.75]]
    """
    _check_same_shape("logits", list(logits))
    for x in logits:
        _check_logits("logits", x)
    return torch.stack([x.float().softmax(dim=-1) for x in logits]).mean(dim=0)


def accuracy(probs: Tensor, labels: Tensor) -> float:
    """Fraction of rows whose largest entry is at the label (probabilities or logits)."""
    _check_logits("probs", probs)
    _check_labels(labels, probs.shape[0], probs.shape[1])
    return float((probs.argmax(dim=-1) == labels).float().mean())


# --------------------------------------------------------------------------- reliance
def concat_head_shares(weight: Tensor, bias: Tensor, latents: Sequence[Tensor]) -> list[Tensor]:
    """Each modality's share of a linear fusion head's logits: ``W_m z_m + b / M``.

    A head ``W [z_1; ...; z_M] + b`` on concatenated latents gives logits that are exactly the
    sum of the shares.

    Args:
        weight: ``(C, D_1 + ... + D_M)`` weight of the head.
        bias: ``(C,)`` bias.
        latents: ``(N, D_m)`` latent of each modality, in the head's order.

    Returns:
        ``(N, C)`` share of each modality.

    Raises:
        ValueError: if the widths do not add up to the weight's or the batch sizes differ.

    Example:
        >>> w, b = torch.tensor([[1.0, 2.0]]), torch.tensor([2.0])
        >>> [s.tolist() for s in concat_head_shares(w, b, [torch.ones(1, 1), torch.ones(1, 1)])]
        [[[2.0]], [[3.0]]]
    """
    if weight.dim() != 2 or bias.shape != (weight.shape[0],):
        raise ValueError(
            f"expected weight (C, D) and bias (C,), got {tuple(weight.shape)} and "
            f"{tuple(bias.shape)}"
        )
    if not latents or any(z.dim() != 2 for z in latents):
        raise ValueError(
            f"expected one (N, D_m) latent per modality, got {[tuple(z.shape) for z in latents]}"
        )
    widths = [z.shape[1] for z in latents]
    if sum(widths) != weight.shape[1] or len({z.shape[0] for z in latents}) != 1:
        raise ValueError(
            f"expected latents of one batch size whose widths add up to {weight.shape[1]}, got "
            f"{[tuple(z.shape) for z in latents]}"
        )
    blocks = torch.split(weight.float(), widths, dim=1)
    share_bias = bias.float() / len(latents)
    return [z.float() @ w.T + share_bias for z, w in zip(latents, blocks, strict=True)]  # (N, C)


def spread_reliance(shares: Sequence[Tensor]) -> Tensor:
    """How much each additive part of a prediction moves it, as fractions summing to 1.

    For each row, the spread of a part is the L2 norm of the part centred over the classes
    (a constant shift changes no prediction); the fraction of a part is its spread divided by
    the sum of the spreads, averaged over the rows (rows where every spread is zero are
    left out).

    Args:
        shares: ``(N, C)`` parts (logit shares, or centred log-probabilities).

    Returns:
        ``(M,)`` mean fraction of each part.

    Example:
        >>> r = spread_reliance([torch.tensor([[1.0, -1.0]]), torch.tensor([[3.0, 0.0]])])
        >>> [round(v, 4) for v in r.tolist()]
        [0.4, 0.6]
    """
    _check_same_shape("shares", list(shares))
    for s in shares:
        _check_logits("shares", s)
    spreads = torch.stack(
        [(s.float() - s.float().mean(dim=-1, keepdim=True)).norm(dim=-1) for s in shares], dim=1
    )  # (N, M)
    total = spreads.sum(dim=1)
    keep = total > 0
    if not bool(keep.any()):
        return torch.full((len(shares),), float("nan"))
    return (spreads[keep] / total[keep, None]).mean(dim=0)


# --------------------------------------------------------------------------- errors
def error_overlap(correct_a: Tensor, correct_b: Tensor) -> dict[str, int]:
    """Counts of the points where both, only ``a`` or only ``b`` are wrong.

    Args:
        correct_a: ``(N,)`` bool, whether predictor ``a`` is right on each point.
        correct_b: ``(N,)`` bool, the same for ``b``.

    Returns:
        ``{"n", "both_wrong", "only_a_wrong", "only_b_wrong"}``.

    Example:
        >>> error_overlap(torch.tensor([True, False, False]), torch.tensor([False, False, True]))
        {'n': 3, 'both_wrong': 1, 'only_a_wrong': 1, 'only_b_wrong': 1}
    """
    if correct_a.shape != correct_b.shape or correct_a.dim() != 1:
        raise ValueError(
            f"expected two (N,) masks of one length, got {tuple(correct_a.shape)} and "
            f"{tuple(correct_b.shape)}"
        )
    a, b = correct_a.bool(), correct_b.bool()
    return {
        "n": int(a.numel()),
        "both_wrong": int((~a & ~b).sum()),
        "only_a_wrong": int((~a & b).sum()),
        "only_b_wrong": int((a & ~b).sum()),
    }


# --------------------------------------------------------------------------- calibration
def expected_calibration_error(probs: Tensor, labels: Tensor, *, bins: int = 15) -> float:
    """Expected calibration error of the top-class probability (Guo et al., ICML 2017).

    The rows are put into ``bins`` equal-width bins of their largest probability (``(0, 1]``);
    ECE = sum over bins of (share of rows in the bin) x |accuracy - mean confidence| there.

    Args:
        probs: ``(N, C)`` class probabilities.
        labels: ``(N,)`` class indices.
        bins: number of bins.

    Example:
        >>> p = torch.tensor([[0.9, 0.1], [0.9, 0.1]])
        >>> round(expected_calibration_error(p, torch.tensor([0, 1])), 4)
        0.4
    """
    _check_logits("probs", probs)
    _check_labels(labels, probs.shape[0], probs.shape[1])
    if bins < 1:
        raise ValueError(f"expected bins >= 1, got {bins}")
    conf, pred = probs.float().max(dim=-1)
    right = (pred == labels).float()
    index = (conf * bins).ceil().long().clamp(1, bins) - 1  # bin (k/B, (k+1)/B] -> k
    ece = torch.zeros((), dtype=torch.float64)
    for k in range(bins):
        in_bin = index == k
        if bool(in_bin.any()):
            gap = (right[in_bin].mean() - conf[in_bin].mean()).abs().double()
            ece += gap * in_bin.double().mean()
    return float(ece)


def negative_log_likelihood(probs: Tensor, labels: Tensor) -> float:
    """Mean ``-log p(label)`` of class probabilities (clamped at 1e-12)."""
    _check_logits("probs", probs)
    _check_labels(labels, probs.shape[0], probs.shape[1])
    return float(-probs.float().gather(1, labels[:, None]).clamp_min(1e-12).log().mean())


# --------------------------------------------------------------------------- remedies
def fused_and_unimodal_heads(fused: Tensor, heads: Sequence[Tensor]) -> Tensor:
    """Remedy (a): the mean of the probabilities of the fused prediction and each unimodal
    head, equal weights: ``(softmax(f) + sum_m softmax(h_m)) / (M + 1)``.

    Args:
        fused: ``(N, C)`` fused logits.
        heads: ``(N, C)`` logits of each unimodal head.

    Returns:
        ``(N, C)`` probabilities.
    """
    if not heads:
        raise ValueError("expected at least one unimodal head's logits, got none")
    return average_probabilities([fused, *heads])


def fit_logistic_regression(
    features: Tensor, labels: Tensor, *, num_classes: int, l2: float = 1e-3, max_iter: int = 200
) -> Callable[[Tensor], Tensor]:
    """A multinomial logistic regression on standardised features, as a function of new rows.

    The features are standardised with their own mean and standard deviation; the weights
    (and bias) start at zero and minimise ``cross-entropy + l2 * ||W||^2`` (bias not
    penalised) by full-batch L-BFGS in float64: a convex problem, so no seed is needed.

    Args:
        features: ``(N, D)`` rows to fit on.
        labels: ``(N,)`` their classes.
        num_classes: number of classes.
        l2: weight of the squared-weight penalty.
        max_iter: L-BFGS iterations.

    Returns:
        A function ``(K, D) -> (K, C)`` logits (float32).
    """
    if features.dim() != 2:
        raise ValueError(f"expected (N, D) features, got {tuple(features.shape)}")
    _check_labels(labels, features.shape[0], num_classes)
    x = features.detach().double()
    centre, scale = x.mean(dim=0), x.std(dim=0).clamp_min(1e-6)
    ones = torch.ones(x.shape[0], 1, dtype=torch.float64)
    design = torch.cat([(x - centre) / scale, ones], dim=1)  # (N, D + 1), last column: bias
    theta = torch.zeros(design.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    solver = torch.optim.LBFGS([theta], max_iter=max_iter, line_search_fn="strong_wolfe")

    def objective() -> Tensor:
        solver.zero_grad()
        value = F.cross_entropy(design @ theta, labels) + l2 * theta[:-1].pow(2).sum()
        value.backward()
        return value

    with torch.enable_grad():
        solver.step(objective)
    fitted = theta.detach()

    def predict(rows: Tensor) -> Tensor:
        if rows.dim() != 2 or rows.shape[1] != x.shape[1]:
            raise ValueError(f"expected (K, {x.shape[1]}) rows, got {tuple(rows.shape)}")
        z = (rows.detach().double() - centre) / scale
        return (z @ fitted[:-1] + fitted[-1]).float()  # (K, D) @ (D, C)

    return predict


def refit_fusion_head(
    fit_latents: Sequence[Tensor],
    fit_labels: Tensor,
    apply_latents: Sequence[Tensor],
    *,
    num_classes: int,
    l2: float = 1e-3,
    max_iter: int = 200,
) -> Tensor:
    """Remedy (b): a new linear fusion head on frozen latents, fitted on held-out rows.

    :func:`fit_logistic_regression` on the concatenated latents ``fit_latents`` (the
    validation split in the protocol), applied to ``apply_latents`` (the test split).

    Args:
        fit_latents: ``(N, D_m)`` latent of each modality to fit on.
        fit_labels: ``(N,)`` their classes.
        apply_latents: ``(K, D_m)`` latent of each modality to predict.
        num_classes: number of classes.

    Returns:
        ``(K, C)`` logits of the refitted head.
    """
    if len(fit_latents) != len(apply_latents) or not fit_latents:
        raise ValueError(
            f"expected the same modalities to fit and apply, got {len(fit_latents)} and "
            f"{len(apply_latents)} latents"
        )
    predict = fit_logistic_regression(
        torch.cat([z.float() for z in fit_latents], dim=1),
        fit_labels,
        num_classes=num_classes,
        l2=l2,
        max_iter=max_iter,
    )
    return predict(torch.cat([z.float() for z in apply_latents], dim=1))


def fit_temperature(logits: Tensor, labels: Tensor, *, max_iter: int = 100) -> float:
    """The temperature ``T > 0`` minimising the NLL of ``softmax(logits / T)`` (Guo et al.,
    ICML 2017), by L-BFGS on ``log T`` from 0 (``T = 1``).

    Example:
        >>> x = torch.tensor([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [0.0, 4.0]])
        >>> fit_temperature(x, torch.tensor([0, 1, 1, 0])) > 10   # right half the time
        True
    """
    _check_logits("logits", logits)
    _check_labels(labels, logits.shape[0], logits.shape[1])
    x = logits.detach().double()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    solver = torch.optim.LBFGS([log_t], max_iter=max_iter, line_search_fn="strong_wolfe")

    def objective() -> Tensor:
        solver.zero_grad()
        value = F.cross_entropy(x / log_t.exp(), labels)
        value.backward()
        return value

    with torch.enable_grad():
        solver.step(objective)
    return float(log_t.detach().exp())


def temperature_scaled_combination(
    fit_logits: Sequence[Tensor], fit_labels: Tensor, apply_logits: Sequence[Tensor]
) -> Tensor:
    """Remedy (c): each predictor calibrated by its own temperature (:func:`fit_temperature`
    on the ``fit`` rows, the validation split in the protocol), then the mean of the
    calibrated probabilities on the ``apply`` rows.

    Args:
        fit_logits: ``(N, C)`` logits of each predictor on the rows to fit on.
        fit_labels: ``(N,)`` their classes.
        apply_logits: ``(K, C)`` logits of the same predictors, in the same order.

    Returns:
        ``(K, C)`` probabilities.
    """
    if len(fit_logits) != len(apply_logits) or not fit_logits:
        raise ValueError(
            f"expected the same predictors to fit and apply, got {len(fit_logits)} and "
            f"{len(apply_logits)}"
        )
    temps = [fit_temperature(x, fit_labels) for x in fit_logits]
    return average_probabilities([x.float() / t for x, t in zip(apply_logits, temps, strict=True)])


__all__ = [
    "accuracy",
    "average_probabilities",
    "concat_head_shares",
    "error_overlap",
    "expected_calibration_error",
    "fit_logistic_regression",
    "fit_temperature",
    "fused_and_unimodal_heads",
    "negative_log_likelihood",
    "refit_fusion_head",
    "spread_reliance",
    "temperature_scaled_combination",
]
