"""The benchmark building blocks: variants, the input-space alternative, timing, statistics."""

from __future__ import annotations

import statistics

import pytest
import torch

from benchmarks.common import (
    ModelConfig,
    Variant,
    build_model,
    build_variant,
    input_space_latents,
    make_batch,
    make_step,
    mcr_alone_step,
    paired_ratios,
    quartiles,
    time_interleaved,
)
from mcr_reg import functional as MF

CPU = torch.device("cpu")
TINY = {
    "resnet18": ModelConfig.resnet18(4, (1, 32, 24), (3, 2, 32, 32)),
    "mosei": ModelConfig.mosei(4, 6, 1),
}


@pytest.mark.parametrize(
    ("spec", "key", "label"),
    [
        ("joint", "joint", "joint"),
        ("mcr:32", "mcr@32", "MCR (P=32)"),
        ("input:8", "input@8", "MCR, input-space (P=8)"),
        ("ogm_ge", "ogm_ge", "OGM-GE"),
    ],
)
def test_variant_parse(spec: str, key: str, label: str) -> None:
    v = Variant.parse(spec)
    assert (v.key, v.label) == (key, label)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("mcr", "positive integer P"),
        ("input:0", "positive integer P"),
        ("joint:3", "takes no P"),
        ("dropout", "expected a variant"),
    ],
)
def test_variant_parse_errors(spec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Variant.parse(spec)


def test_model_config_errors() -> None:
    with pytest.raises(ValueError, match="expected audio"):
        ModelConfig.resnet18(4, (32, 24), (3, 2, 32, 32))


def test_summarise_and_paired_ratios() -> None:
    values = [4.0, 1.0, 3.0, 2.0, 10.0]
    s = quartiles(values)
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    assert (s["median"], s["q1"], s["q3"]) == (3.0, q1, q3) == (3.0, 2.0, 4.0)
    one = quartiles([5.0])
    assert one["median"] == one["q1"] == one["q3"] == 5.0
    r = paired_ratios([2.0, 3.0, 8.0], [1.0, 3.0, 2.0])
    assert r["values"] == [2.0, 1.0, 4.0] and r["median"] == 2.0
    with pytest.raises(ValueError, match="at least one"):
        quartiles([])


def test_time_interleaved_runs_rounds_in_order() -> None:
    calls: list[str] = []
    steps = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    wall, cpu = time_interleaved(steps, repeats=3, steps_per_repeat=2, warmup=1, device=CPU)
    # warm-up round, then rounds that start one variant later each time
    warm, r0, r1, r2 = ["a", "b"], ["a", "a", "b", "b"], ["b", "b", "a", "a"], ["a", "a", "b", "b"]
    assert calls == [*warm, *r0, *r1, *r2]
    for times in (wall, cpu):
        assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
        assert all(t >= 0 for v in times.values() for t in v)


def test_cpu_clock_ignores_waiting() -> None:
    import time

    wall, cpu = time_interleaved(
        {"sleep": lambda: time.sleep(0.05)}, repeats=2, steps_per_repeat=1, warmup=0, device=CPU
    )
    assert min(wall["sleep"]) >= 0.05
    assert max(cpu["sleep"]) < 0.04


@pytest.mark.parametrize("name", ["resnet18", "mosei"])
def test_input_space_latents_equal_permuted_latents(name: str) -> None:
    """Re-encoding permuted inputs gives the permuted latents (train-mode BatchNorm statistics
    are invariant to a permutation; dropout is switched off by eval mode for the Transformer),
    so the input-space variant computes the same MCR loss, only more expensively."""
    config = TINY[name]
    model = build_model(config, CPU)
    if name == "mosei":
        model.eval()
    batch = make_batch(config, CPU)
    latents = model.encode(batch)
    perms = MF.sample_permutations(
        3, 2 if name == "resnet18" else 3, config.batch, generator=torch.Generator().manual_seed(0)
    )
    perturbed = input_space_latents(model, batch, perms)
    for i, m in enumerate(model.modalities):
        expected = torch.stack([latents[m][perms[p, i]] for p in range(3)])
        torch.testing.assert_close(perturbed[m], expected, rtol=1e-4, atol=1e-5)
    method = build_variant(Variant("mcr", 3), model, config)
    logits = model.fuse(latents)
    via_latents = method.mcr(latents, batch["label"], logits, permutations=perms).loss
    via_inputs = method.mcr(latents, batch["label"], logits, perturbed_latents=perturbed).loss
    torch.testing.assert_close(via_inputs, via_latents, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("spec", ["joint", "mcr:2", "input:2", "ogm_ge", "agm", "mlb"])
def test_every_variant_trains(spec: str) -> None:
    config = TINY["mosei"]
    model = build_model(config, CPU)
    batch = make_batch(config, CPU)
    before = [p.detach().clone() for p in model.parameters()]
    step = make_step(build_variant(Variant.parse(spec), model, config), lr=1e-2)
    losses = [float(step(batch)) for _ in range(2)]
    assert all(torch.isfinite(torch.tensor(losses)))
    changed = [not torch.equal(a, b) for a, b in zip(before, model.parameters())]
    assert sum(changed) >= len(changed) // 2


def test_mcr_alone_step_rows_and_gradients() -> None:
    step, rows = mcr_alone_step(3, 4, "all", batch=5, dim=6, hidden=8, device=CPU)
    assert rows == (6 + 6 * 4) * 5  # 2^3 - 2 subsets, one reference and P perturbed blocks each
    assert torch.isfinite(step())
    _, rows = mcr_alone_step(3, 4, "singletons", batch=5, dim=6, hidden=8, device=CPU)
    assert rows == (3 + 3 * 4) * 5
