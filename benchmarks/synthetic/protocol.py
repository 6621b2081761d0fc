"""What the synthetic benchmark runs: its methods, the data regimes, the MCR ablations and the
premise threshold of the ``undertrained`` regime (docs/examples/synthetic.md)."""

from __future__ import annotations

from typing import Any

from benchmarks.harness.tuning import VARIANTS
from benchmarks.synthetic.generator import SyntheticSpec
from examples.common.cli import METHODS

#: Every benchmark key, in table order.
BENCHMARK_METHODS: tuple[str, ...] = (*METHODS, *VARIANTS)

#: Ablations at the most imbalanced point (paper Tables 2-4), as MCR option overrides.
ABLATIONS: dict[str, dict[str, dict[str, Any]]] = {
    "strategy": {
        "collaborative": {"strategy": "collaborative"},
        "independent": {"strategy": "independent"},
        "greedy": {"strategy": "greedy"},
    },
    "components": {
        "none": {"mipd_weight": 0.0, "contrastive_weight": 0.0},
        "mipd": {"contrastive_weight": 0.0},
        "con": {"mipd_weight": 0.0},
        "mipd+con": {},
        "mipd+con+ceb": {"ceb_weight": 1.0},
        "mipd+con, no unimodal term": {"unimodal_weight": 0.0},
    },
    "perturbation": {
        "noise": {"perturbation": "noise"},
        "zero": {"perturbation": "zero"},
        "permutation": {"perturbation": "permutation"},
    },
    # the package's head-gradient and contrastive rules against the alternatives
    "rules": {
        "mean head gradient, NT-Xent (defaults)": {},
        "summed head gradient": {"head_gradient": "sum"},
        "SupCon contrastive": {"contrastive": "supcon"},
        "summed head gradient, SupCon": {"head_gradient": "sum", "contrastive": "supcon"},
    },
}


#: The data regimes (generator settings; the sweep sets u1, s and u2 on top).
#:
#: ``fusion``: the first benchmark. The slow modality 1 (tanh-folded, 64-d) is learnt about as
#: well jointly as alone; joint training loses to the ensemble at the fusion (docs).
#: ``undertrained``: modality 1 (lifted to 128 dimensions, latent noise 0.5) additionally
#: carries 56 loud label-free nuisance factors (std 12) that an encoder has to learn to
#: suppress (slow: a linear probe of a random encoder's latent is near chance), and modality 2
#: is lifted to 2048 dimensions, enough to memorise the 2000 training points within a few
#: epochs. Joint training fits the training set through modality 2 first and modality 1's
#: encoder stops improving.
REGIMES: dict[str, SyntheticSpec] = {
    "fusion": SyntheticSpec(),
    "undertrained": SyntheticSpec(
        input_dims=(128, 2048),
        noise=(0.5, 1.0),
        nuisance_dims=(56, 0),
        nuisance_std=(12.0, 0.0),
    ),
}

#: A seed's premise of the ``undertrained`` regime holds when the joint model's slow-encoder
#: probe is at least this far (accuracy, fraction) below the unimodal model's.
PREMISE_GAP = 0.03
