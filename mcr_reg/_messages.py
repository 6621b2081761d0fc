"""The warnings MCR gives once, with their text in one place."""

from __future__ import annotations

import warnings

from torch import Tensor

_warned_generator_under_compile = [False]  # once per process: comptime cannot see the instance


def _warn_generator_under_compile(ctx: object = None) -> None:
    """Called by Dynamo at trace time (``comptime``): eager Python, no graph break."""
    if _warned_generator_under_compile[0]:
        return
    _warned_generator_under_compile[0] = True
    warnings.warn(
        "MCRRegularizer(generator=...) or (seed=...) is not used under torch.compile (Dynamo "
        "cannot trace torch.Generator objects): the compiled step draws its permutations from "
        "the global RNG. Seed that (torch.manual_seed, differently per rank) for reproducible "
        "runs, or pass permutations= explicitly. (Warned once.)",
        RuntimeWarning,
        stacklevel=2,
    )


def warn_at_compile_time_that_the_generator_is_ignored() -> None:
    try:
        from torch._dynamo.comptime import comptime
    except ImportError:  # pragma: no cover - a torch without Dynamo's comptime
        return
    comptime(_warn_generator_under_compile)


def warn_batch_dependent_head() -> None:
    warnings.warn(
        "the fusion head has BatchNorm layers in training mode, whose output depends "
        "on the whole batch; MCR runs one fusion-head call per perturbation block "
        "instead of one batched call (slower). Pass batched=True to override.",
        RuntimeWarning,
        stacklevel=5,
    )


def warn_nonfinite(bad: list[str]) -> None:
    warnings.warn(
        f"latents {', '.join(bad)} hold NaN or Inf values: every MCR term that reads them is "
        "NaN. check_finite=True raises instead, at the first such batch. (Warned once.)",
        RuntimeWarning,
        stacklevel=4,
    )


def warn_not_updated(count: int) -> None:
    warnings.warn(
        f"the fusion head's parameters were updated {count} times "
        "in a row but MCR's own parameters (its unimodal heads, projections, CEB head) "
        "never, although they receive gradients: they are in no optimizer. Add "
        "mcr.parameters() to your optimizer, or attach MCR to your model (model.mcr = "
        "mcr) before building it. (Warned once.)",
        RuntimeWarning,
        stacklevel=4,
    )


def warn_logits_differ(diff: float, tol: float, dtype: object, output: object) -> None:
    warnings.warn(
        f"MCR's own unperturbed pass fusion_head(*latents) differs from the logits you "
        f"passed by up to {diff:.3g} (tolerance {tol:.2g} for "
        f"{dtype}), so MCR's terms are computed on another function than your "
        "loss. Possible causes: (1) the latents are not the inputs the fusion head was "
        "called with (e.g. encoder outputs that the fusion module re-projects): pass the "
        "fusion head's inputs (mcr_reg.FusionInputs records them); (2) output= selects "
        f"another of the head's outputs ({output!r}) than the logits your loss uses; "
        "(3) the head draws randomness or batch statistics MCR cannot see (dropout or "
        "BatchNorm outside nn.Module layers). Warned once; check_values=False turns this "
        "check off.",
        RuntimeWarning,
        stacklevel=4,
    )


def many_outputs_error(what: str, hint: str, batch: int | None) -> TypeError:
    """The fusion head returned several values and no ``output=`` selects the prediction."""
    when = (
        "in its latest call (recorded by FusionInputs)"
        if batch is None
        else f"when MCR called it with your latents with batch {batch} (stacked with their "
        "perturbed copies along the batch axis)"
    )
    return TypeError(
        f"the fusion head returned {what} {when}; MCR needs the prediction tensor alone. {hint}"
    )


class UpdateWatch:
    """Warns once when the optimizer keeps updating the fusion head but never MCR's own
    parameters although they receive gradients (``mcr.parameters()`` in no optimizer). Reads
    version counters only: no host sync."""

    def __init__(self) -> None:
        self.versions: tuple[int, int] | None = None  # MCR's own, the head's, at the last call
        self.head_updates_alone = 0  # head updates in a row that left MCR's parameters as they were
        self.warned = False

    def observe(self, own: list[Tensor], head: list[Tensor]) -> None:
        if self.warned or not own or not head:
            return
        versions = (sum(p._version for p in own), sum(p._version for p in head))
        previous, self.versions = self.versions, versions
        if previous is None:
            return
        if versions[0] != previous[0]:
            self.head_updates_alone = 0
        elif versions[1] != previous[1] and any(p.grad is not None for p in own):
            self.head_updates_alone += 1
        if self.head_updates_alone >= 3:
            self.warned = True
            warn_not_updated(self.head_updates_alone)
