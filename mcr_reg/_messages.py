"""The warnings MCR gives once, with their text in one place."""

from __future__ import annotations

import os
import sys
import warnings

from torch import Tensor

_warned_generator_under_compile = [False]


def user_stacklevel() -> int:
    """The ``stacklevel`` of ``warnings.warn`` that points at the first frame outside this
    package and outside ``torch.nn``'s module-call machinery (the user's line), for a warning
    raised deep inside MCR's call."""
    package = os.path.dirname(os.path.abspath(__file__))
    torch_nn = os.path.join("torch", "nn", "modules")
    frame, level = sys._getframe(1), 1
    while frame is not None:
        where = os.path.abspath(frame.f_code.co_filename)
        if not where.startswith(package) and torch_nn not in where:
            return level
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return 1  # once per process: comptime cannot see the instance


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


def _audit_warning(text: str) -> None:
    warnings.warn(
        f"{text} (First-step audit, warned once; MCRRegularizer(audit=False) turns it off.)",
        RuntimeWarning,
        stacklevel=4,
    )


def warn_detached_latents(names: list[str]) -> None:
    _audit_warning(
        f"the latents {names} require no gradient: they were computed under torch.no_grad(), "
        "detached, or come from a frozen encoder, so MCR's terms cannot move their encoders. "
        "Pass the tensors your encoders produced in this training step, with their graph (for "
        "a model that hides them, mcr_reg.FusionInputs records the fusion call's inputs); if "
        "the encoder is frozen on purpose, this is expected."
    )


def warn_loss_not_backpropagated() -> None:
    _audit_warning(
        "optimizer.step() ran, but MCR's loss of this step took part in no backward: "
        "mcr(...).loss was added to a loss that is only logged, or computed after the backward. "
        "Add it to the loss you call backward on (in a loop that takes per-loss gradients, to "
        "the multimodal loss: docs/integration.md, 'Loops that rewrite gradients')."
    )


def warn_gradients_rewritten(count: int) -> None:
    _audit_warning(
        f"{count} of the encoders' parameters hold a gradient that changed between the "
        "backward and optimizer.step(), other than by one common factor (gradient modulation, "
        "surgery or Pareto mixing?). Whether MCR's part survives depends on which loss "
        "mcr(...).loss joins: the loss whose gradient the method takes for the encoders. "
        "Measure it once with mcr_reg.check_gradient_path(step, mcr, {name: encoder}) "
        "(docs/integration.md, 'Loops that rewrite gradients')."
    )


def warn_not_in_optimizer() -> None:
    _audit_warning(
        "an optimizer stepped the model's parameters, but none holds MCR's own parameters "
        "(its unimodal heads, projections, CEB head), which receive gradients: they never "
        "train. Add mcr.parameters() to your optimizer, or attach MCR to your model (model.mcr "
        "= mcr) before building it."
    )


def warn_grads_accumulate() -> None:
    _audit_warning(
        "in the second step the fusion head's gradients were cleared but MCR's own were "
        "accumulated onto the first step's: MCR lives beside the model, so model.zero_grad() "
        "(and gradient clipping of model.parameters()) does not reach it, and its gradients "
        "grow step after step. Attach MCR to the model (model.mcr = mcr), or call "
        "optimizer.zero_grad() on an optimizer that holds mcr.parameters()."
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


def double_backward_message(k: float) -> str:
    """Why a second-order backward through MIPD under the game is refused, and what to do."""
    return (
        f"double backward (create_graph=True) through MCR's MIPD term is not supported with the "
        f"game's gradient factors (strategy k={k:g}, or a fusion-head share c(S) != 1): the game "
        "scales each player's MIPD gradient (docs/semantics.md, 'The game'), which is not the "
        "gradient of one loss, and autograd through that scaling would give a wrong second "
        "derivative. For gradient penalties, Hessian-vector products or meta-learning, take the "
        "second-order term on a loss without MIPD (the task loss, or an MCRRegularizer with "
        "mipd_weight=0), or use strategy='collaborative' with head_gradient='mean' (k = 1: MIPD "
        "is then an ordinary loss and double backward is exact)."
    )
