"""The conformance suite: MCR added to stand-ins for published multimodal codebases
(``tests/integration/clients.py``; the table in docs/integration.md).

For every stand-in: the lines a user adds are counted (set-up lines plus one line in the step, no
model edit unless the stand-in says so), the encoders' gradients after one step equal a
reference computed by hand, training runs, and each plausible mistake stops or warns with a
message that names the cause and the fix.
"""

from __future__ import annotations

import inspect
import math
import re
import warnings
from collections.abc import Callable

import pytest
import torch

from tests.integration import clients
from tests.integration.clients import CLIENTS, UNSUPPORTED, Client

BY_NAME = {client.name: client for client in CLIENTS}


def _marked(function: Callable[..., object], marker: str) -> list[str]:
    return [line for line in inspect.getsource(function).splitlines() if marker in line]


def _added(client: Client) -> tuple[list[str], list[str]]:
    """(set-up lines, step lines) marked ``# added`` in the stand-in's set-up, step and model."""
    sources: list[Callable[..., object]] = [client.step]
    setup = client.setup
    if setup.__name__ == "<lambda>":  # a set-up shared by two stand-ins: the shared function
        setup = clients.multibench_setup
    if setup is clients.pareto_setup:  # the loop of tests/integration/loops.py
        from tests.integration import loops

        setup, step_fn = loops.pareto_setup, loops.pareto_step
        return _marked(setup, "# added"), _marked(step_fn, "# added")
    sources.append(setup)
    model = type(client.setup()["model"])
    step_lines = _marked(client.step, "# added")
    if hasattr(model, "training_step"):  # a LightningModule: its step is training_step
        step_lines += _marked(model.training_step, "# added")
        set_up = [ln for ln in _marked(model, "# added") if ln not in step_lines]
    else:
        set_up = _marked(setup, "# added")
    return set_up, step_lines


def test_there_are_at_least_eight_codebases_of_several_families() -> None:
    repositories = {client.repository for client in CLIENTS} | set(UNSUPPORTED)
    assert len(repositories) >= 7 and len(CLIENTS) + len(UNSUPPORTED) >= 8
    families = " ".join(client.family for client in CLIENTS)
    for family in ("late fusion", "list-input", "low-rank", "cross-modal", "gradient modulation",
                   "gated", "Lightning", "regression", "multi-label"):  # fmt: skip
        assert family in families, family


@pytest.mark.parametrize("name", list(BY_NAME))
def test_the_lines_a_user_adds(name: str) -> None:
    client = BY_NAME[name]
    set_up, step = _added(client)
    assert len(step) == client.step_lines == 1, step
    assert len(set_up) == client.set_up_lines, set_up
    edits = sum(len(_marked(obj, "# edit")) for obj in (clients.LowRankFusion, clients.LMFEdited))
    if client.edit_lines:
        assert edits == client.edit_lines
    # the model classes the other stand-ins use are as published: no line mentions MCR
    for cls in (clients.MMDL, clients.ListConcat, clients.ListLowRankTensorFusion, clients.MulTLike,
                clients.CrossModalFusion, clients.AVClassifier, clients.TupleConcatFusion,
                clients.BimodalGMU, clients.LMFAsPublished):  # fmt: skip
        assert "mcr" not in inspect.getsource(cls).lower(), cls


@pytest.mark.parametrize("name", list(BY_NAME))
def test_the_encoders_gradients_equal_the_reference(name: str) -> None:
    client = BY_NAME[name]
    state = client.setup()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the audit's advice on a modulation loop
        client.step(state)
    got = clients.encoder_grads(client.encoders(state))
    want = client.reference()
    assert len(got) == len(want) > 0
    for i, (g, w) in enumerate(zip(got, want)):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6, msg=f"{name}: gradient {i}")
    assert any(float(g.abs().sum()) > 0 for g in got)
    # MCR changed them: the same step without MCR gives other gradients
    plain = client.setup(with_mcr=False)
    client.step(plain)
    assert not all(
        torch.allclose(g, p) for g, p in zip(got, clients.encoder_grads(client.encoders(plain)))
    )


@pytest.mark.parametrize("name", list(BY_NAME))
def test_training_runs_and_a_correct_loop_is_silent_but_for_the_modulation_advice(
    name: str,
) -> None:
    client = BY_NAME[name]
    state = client.setup()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(4):
            client.step(state)
            state["optimizer"].step()
    messages = [str(w.message) for w in caught]
    if "modulation" in client.family or "Pareto" in client.family:
        assert len(messages) == 1 and "check_gradient_path" in messages[0], messages
    else:
        assert messages == [], messages
    params = [p for m in client.encoders(state) for p in m.parameters()]
    assert all(math.isfinite(float(p.detach().abs().sum())) for p in params)


MISTAKES = {
    "the fusion module as the head": (TypeError, r"(?s)signature is .*forward\(modalities.*FusionCall\(\)\.of.*def fused\(z1, z2\)"),
    "the fusion module recorded without its head": (ValueError, r"returned \(8, 12\), not the prediction .*then=classifier"),
    "captured.latents of a list call": (RuntimeError, r"0: list; pass this object itself to MCR, mcr\(fusion_inputs, y\)"),
    "a subnet recorded (no fusion module as published)": (ValueError, r"found 0; .*inline code of forward .*smallest model edit.*'When the fusion is inline code'"),
    "sequence-first latents passed as they are": (ValueError, r"latent '0' of shape \(5, 8, 8\) has its axis 0 of size 5, but the labels' batch is 8, the size of its axis 1.*layout="),
    "a padding mask that fits both sequences": (ValueError, r"\[2\]: Tensor \(8, 7\) carry the batch axis .*follows=\{'\[2\]': .*per_sample=\('\[2\]',\)"),
    "the tuple-returning module without output=": (TypeError, r"returned a tuple of 3 .*output=2"),
    "multi-label targets": (ValueError, r"multi-label targets .*task='multilabel' and num_classes=L"),
}  # fmt: skip
WARNED = {
    "frozen pretrained embeddings": r"latents \['0', '1'\] require no gradient.*frozen encoder",
    "a single-modality step": r"latents \['1'\] require no gradient",
}


@pytest.mark.parametrize(
    "mistake",
    [(c.name, m) for c in CLIENTS for m in c.mistakes]
    + [(r, "multi-label targets") for r in UNSUPPORTED],
    ids=lambda pair: pair[1],
)
def test_each_plausible_mistake_gets_a_clear_message(mistake: tuple[str, str]) -> None:
    owner, what = mistake
    run = BY_NAME[owner].mistakes[what] if owner in BY_NAME else UNSUPPORTED[owner][1]
    if what in WARNED:
        with pytest.warns(RuntimeWarning, match=WARNED[what]):
            run()
        return
    error, pattern = MISTAKES[what]
    with pytest.raises(error, match=pattern):
        run()


def test_the_docs_table_lists_every_codebase() -> None:
    from pathlib import Path

    page = (Path(__file__).parents[2] / "docs" / "integration.md").read_text()
    table = page[page.index("## Conformance suite") :]
    for client in CLIENTS:
        row = next(
            (ln for ln in table.splitlines() if client.repository in ln and client.family in ln),
            None,
        )
        assert row is not None, client.name
        assert re.search(rf"\| {client.set_up_lines} \+ {client.step_lines}", row), row
    for repository, (family, _) in UNSUPPORTED.items():
        assert repository in table and family in table
