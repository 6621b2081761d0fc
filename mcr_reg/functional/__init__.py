"""The mathematics of MCR as plain functions, one family per module.

Each function computes one piece of the paper (Kontras et al., "Balancing Multimodal Training
Through Game-Theoretic Regularization"); :class:`mcr_reg.MCRRegularizer` and the terms of
:mod:`mcr_reg.terms` only hold settings and call these. Equation numbers refer to that paper.

Modules: :mod:`~mcr_reg.functional.divergence` (JSD, binary JSD, squared error),
:mod:`~mcr_reg.functional.latents` (feature axis, pooling), :mod:`~mcr_reg.functional.contrastive`
(L_Con), :mod:`~mcr_reg.functional.ceb` (L_CEB), :mod:`~mcr_reg.functional.subsets` (subsets,
permutations, row masks), :mod:`~mcr_reg.functional.game` (strategy factor, head share, gradient
scaling), :mod:`~mcr_reg.functional.rows` (the game's gather of the stacked rows),
:mod:`~mcr_reg.functional.head_share` (how the head's parameters get their share) and
:mod:`~mcr_reg.functional.mipd_loss` (L_MIPD). ``import mcr_reg.functional as F`` gives every public
name here.

Conventions:

* Latents are batch-first. Terms that need one vector per sample *pool* a latent by the mean over
  every axis that is neither the batch axis nor the feature axis (:func:`pool_latent`).
* Divergences are computed in at least float32 from logits in log space; float64 stays float64.
* Sampling functions take an explicit ``generator`` and ``device`` and leave the global RNG alone.
"""

from mcr_reg.functional.ceb import ceb_reconstruction
from mcr_reg.functional.contrastive import contrastive_ntxent, supervised_contrastive
from mcr_reg.functional.divergence import (
    Divergence,
    DivergenceFn,
    binary_jensen_shannon,
    divergence_fn,
    jensen_shannon,
    multilabel_jensen_shannon,
    squared_error,
)
from mcr_reg.functional.game import (
    STRATEGIES,
    HeadGradient,
    head_factors,
    scale_grad,
    strategy_factor,
)
from mcr_reg.functional.latents import feature_axis_of, pool_latent
from mcr_reg.functional.mipd_loss import mipd
from mcr_reg.functional.subsets import (
    MAX_MODALITIES_FOR_ALL,
    SubsetSpec,
    enumerate_subsets,
    permutation_row_mask,
    sample_permutations,
    sample_subsets,
)

__all__ = [
    "MAX_MODALITIES_FOR_ALL",
    "STRATEGIES",
    "Divergence",
    "DivergenceFn",
    "HeadGradient",
    "SubsetSpec",
    "binary_jensen_shannon",
    "ceb_reconstruction",
    "contrastive_ntxent",
    "divergence_fn",
    "enumerate_subsets",
    "feature_axis_of",
    "head_factors",
    "jensen_shannon",
    "mipd",
    "multilabel_jensen_shannon",
    "permutation_row_mask",
    "pool_latent",
    "sample_permutations",
    "sample_subsets",
    "scale_grad",
    "squared_error",
    "strategy_factor",
    "supervised_contrastive",
]
