"""The methods' building blocks against their formulas."""

import itertools
import math

import pytest
import torch
from torch import nn

from examples.common.data import build_loaders
from examples.common.methods import METHOD_CLASSES, build_method, shapley_responses
from examples.common.methods.base import unimodal_outputs_from_fusion
from examples.common.methods.mmcosine import CosineFusionHead
from examples.common.methods.modulation import discrepancy_ratios
from examples.common.methods.unimodal import average_outputs
from examples.common.model import MultimodalModel
from examples.common.task import TaskSpec
from examples.common.trainer import TrainConfig, default_optimizer
from tests.examples._helpers.tiny_models import tiny_model

TASK = TaskSpec("classification", num_classes=3)


class MLPHead(nn.Module):
    def __init__(self, dims, out):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(sum(dims), 6), nn.Tanh(), nn.Linear(6, out))

    def forward(self, *zs):
        return self.net(torch.cat(zs, dim=-1))


def _three_modality_model():
    enc = {m: nn.Linear(2, 3) for m in ("a", "b", "c")}
    return MultimodalModel(enc, MLPHead([3, 3, 3], 4), {m: 3 for m in enc})


def test_registry_holds_the_ten_methods():
    assert sorted(METHOD_CLASSES) == sorted(
        [
            "joint",
            "multiloss",
            "ensemble",
            "uni_pre_frozen",
            "uni_pre_finetuned",
            "ogm_ge",
            "agm",
            "mlb",
            "mmcosine",
            "mcr",
        ]
    )
    with pytest.raises(ValueError, match="unknown method"):
        build_method("nope", tiny_model(), TASK)
    with pytest.raises(ValueError, match="unknown options"):
        build_method("ogm_ge", tiny_model(), TASK, {"beta": 1})


def test_concat_head_decomposition_sums_to_output():
    model = tiny_model()
    batch = {"a": torch.randn(5, 4), "b": torch.randn(5, 5)}
    out, z = model(batch)
    shares = unimodal_outputs_from_fusion(model, z)
    torch.testing.assert_close(shares["a"] + shares["b"], out)
    w = model.fusion_head.linear.weight
    torch.testing.assert_close(shares["a"], z["a"] @ w[:, :8].T + model.fusion_head.linear.bias / 2)


def test_shapley_efficiency_and_reference_formula():
    torch.manual_seed(0)
    model = _three_modality_model()
    z = {m: torch.randn(4, 3) for m in ("a", "b", "c")}
    resp = shapley_responses(model, z)
    full = model.fuse(z)
    torch.testing.assert_close(sum(resp.values()), full, rtol=1e-5, atol=1e-5)

    def v(keep):
        return model.fusion_head(*[z[n] if n in keep else torch.zeros_like(z[n]) for n in "abc"])

    empty = v(set())
    for m in "abc":  # plain average over the 3! orderings
        phi = torch.zeros_like(full)
        for order in itertools.permutations("abc"):
            before = set(order[: order.index(m)])
            phi += v(before | {m}) - v(before)
        phi /= math.factorial(3)
        torch.testing.assert_close(resp[m], phi + empty / 3, rtol=1e-5, atol=1e-5)


def test_discrepancy_ratio_two_and_three_modalities():
    torch.testing.assert_close(
        discrepancy_ratios(torch.tensor([2.0, 1.0])), torch.tensor([2.0, 0.5])
    )
    torch.testing.assert_close(
        discrepancy_ratios(torch.tensor([3.0, 1.0, 2.0])), torch.tensor([2.0, 0.4, 1.0])
    )


def _one_step(method, batch):
    groups = method.param_groups(method.stages[0])
    opt = default_optimizer(groups, TrainConfig(lr=0.01))
    method.begin_stage(method.stages[0])
    out = method.training_step(batch, method.stages[0])
    opt.zero_grad()
    out.loss.backward()
    method.before_optimizer_step(opt, method.stages[0])
    return out, opt


def test_ogm_ge_coefficient_follows_formula():
    torch.manual_seed(0)
    method = build_method("ogm_ge", tiny_model(), TASK, {"alpha": 0.7, "ge": False})
    batch = {"a": torch.randn(8, 4), "b": torch.randn(8, 5), "label": torch.randint(0, 3, (8,))}
    _out, opt = _one_step(method, batch)
    with torch.no_grad():
        _, z = method.model(batch)
        shares = unimodal_outputs_from_fusion(method.model, z)
    s = [float(shares[m].softmax(-1)[torch.arange(8), batch["label"]].sum()) for m in ("a", "b")]
    rho = [s[0] / s[1], s[1] / s[0]]
    expected = [1 - math.tanh(0.7 * r) if r > 1 else 1.0 for r in rho]
    scales = {g["name"]: g["lr_scale"] for g in opt.param_groups}
    assert [scales["encoder:a"], scales["encoder:b"]] == pytest.approx(expected, rel=1e-5)
    assert min(expected) < 1.0 and max(expected) == 1.0
    assert scales["fusion"] == 1.0


def test_ogm_ge_noise_changes_only_encoder_gradients():
    torch.manual_seed(0)
    batch = {"a": torch.randn(8, 4), "b": torch.randn(8, 5), "label": torch.randint(0, 3, (8,))}
    grads = {}
    for ge in (False, True):
        torch.manual_seed(1)
        method = build_method("ogm_ge", tiny_model(), TASK, {"ge": ge})
        _one_step(method, batch)
        grads[ge] = {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}
    for name in grads[False]:
        same = torch.equal(grads[False][name], grads[True][name])
        assert same == (not name.startswith("model.encoders")), name


def test_mlb_speeds_up_the_lagging_modality():
    torch.manual_seed(0)
    method = build_method("mlb", tiny_model(), TASK, {"alpha": 1.0})
    batch = {"a": torch.randn(8, 4), "b": torch.randn(8, 5), "label": torch.randint(0, 3, (8,))}
    out, opt = _one_step(method, batch)
    scales = {g["name"]: g["lr_scale"] for g in opt.param_groups}
    a, b = scales["encoder:a"], scales["encoder:b"]
    assert 0 < min(a, b) < 1 < max(a, b) < 2
    assert float(out.terms["coeff/a"]) == pytest.approx(a)


def test_agm_coefficients_favour_the_weaker_modality():
    torch.manual_seed(0)
    method = build_method("agm", tiny_model(), TASK, {"alpha": 2.0, "momentum": 0.0})
    y = torch.randint(0, 3, (16,))
    a = torch.nn.functional.one_hot(y, 4).float() * 5  # strongly informative
    batch = {"a": a, "b": torch.randn(16, 5), "label": y}
    with torch.no_grad():  # make modality a the strong one through its share of the head
        method.model.encoders["a"][0].weight.copy_(torch.eye(8, 4) * 3)
        w = method.model.fusion_head.linear.weight
        w.zero_()
        w[:3, :3] = torch.eye(3) * 3
    out = method.training_step(batch, "joint")
    assert float(out.terms["coeff/b"]) > 1.0 > float(out.terms["coeff/a"])


def test_cosine_head_is_scale_invariant_in_features():
    head = CosineFusionHead([3, 2], 4, scale=10.0)
    za, zb = torch.randn(5, 3), torch.randn(5, 2)
    torch.testing.assert_close(head(za, zb), head(7 * za, 0.1 * zb))
    assert head(za, zb).abs().max() <= 20.0 + 1e-5


def test_mmcosine_replaces_the_fusion_head():
    method = build_method("mmcosine", tiny_model(), TASK, {"scale": 4.0})
    assert isinstance(method.model.fusion_head, CosineFusionHead)
    assert method.model.fusion_head.scale == 4.0


def test_ensemble_average_is_mean_probability():
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    combined = average_outputs(TASK, [a, b])
    torch.testing.assert_close(combined.exp(), (a.softmax(-1) + b.softmax(-1)) / 2)


def test_uni_pre_frozen_trains_only_the_fusion_head_in_joint_stage(tiny_data):
    method = build_method("uni_pre_frozen", tiny_model(), TASK)
    method.begin_stage("joint")
    names = [n for g in method.param_groups("joint") for n in [g["name"]]]
    assert names == ["fusion"]
    before = {n: p.clone() for n, p in method.model.encoders.named_parameters()}
    loaders = build_loaders(tiny_data, batch_size=16, seed=0)
    opt = default_optimizer(method.param_groups("joint"), TrainConfig(lr=0.1))
    for batch in loaders["train"]:
        out = method.training_step(batch, "joint")
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    for n, p in method.model.encoders.named_parameters():
        assert torch.equal(p, before[n])


def test_uni_pre_finetuned_scales_encoder_lr():
    method = build_method("uni_pre_finetuned", tiny_model(), TASK, {"finetune_lr_scale": 0.25})
    method.begin_stage("joint")
    scales = {g["name"]: g["lr_scale"] for g in method.param_groups("joint")}
    assert scales == {"encoder:a": 0.25, "encoder:b": 0.25, "fusion": 1.0}


def test_mcr_gradients_reach_encoders_and_own_parameters():
    method = build_method(
        "mcr", tiny_model(), TASK, {"unimodal_weight": 0.5, "num_permutations": 4}
    )
    method.set_seed(0)
    batch = {"a": torch.randn(8, 4), "b": torch.randn(8, 5), "label": torch.randint(0, 3, (8,))}
    out = method.training_step(batch, "joint")
    out.loss.backward()
    for name, p in method.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert out.importance.shape == (2,)
    fused, uni = method.heads(method.encode(batch), "joint")
    assert fused.shape == (8, 3) and sorted(uni) == ["a", "b"]


def test_regression_task_runs_through_modulation_methods():
    task = TaskSpec(
        "regression",
        metric_fn=lambda o, y: {"mse": float(((o.reshape(-1) - y) ** 2).mean())},
        monitor="mae",
        monitor_mode="min",
    )
    batch = {"a": torch.randn(8, 4), "b": torch.randn(8, 5), "label": torch.randn(8)}
    for name in ("ogm_ge", "agm", "mlb", "ensemble"):
        method = build_method(name, tiny_model(1), task)
        out = method.training_step(batch, method.stages[0])
        assert torch.isfinite(out.loss)


def _fit_mcr(tmp_path, tiny_data, options, *, max_epochs, interrupt=None, resume=False):
    """Train MCR on the tiny data with a checkpoint; ``interrupt=(stage, epoch)`` raises there."""
    from examples.common.trainer import fit, seed_everything

    seed_everything(0)
    method = build_method("mcr", tiny_model(), TASK, {"num_permutations": 4, **options})
    method.set_seed(0)
    if interrupt is not None:

        def begin_epoch(stage, epoch):
            if (stage, epoch) == interrupt:
                raise KeyboardInterrupt

        method.begin_epoch = begin_epoch
    loaders = build_loaders(tiny_data, batch_size=16, seed=0)
    config = TrainConfig(max_epochs=max_epochs, patience=10, lr=0.01, progress=False)
    result = fit(method, loaders, config, checkpoint_path=tmp_path / "ckpt.pt", resume=resume)
    return method, result


@pytest.mark.parametrize(
    ("init", "interrupt"), [("scratch", ("joint", 2)), ("unimodal", ("joint", 1))]
)
def test_mcr_resume_reproduces_the_uninterrupted_run(tmp_path, tiny_data, init, interrupt):
    options = {"init": init}
    _, reference = _fit_mcr(tmp_path / "full", tiny_data, options, max_epochs=3)
    with pytest.raises(KeyboardInterrupt):
        _fit_mcr(tmp_path / "part", tiny_data, options, max_epochs=3, interrupt=interrupt)
    _, resumed = _fit_mcr(tmp_path / "part", tiny_data, options, max_epochs=3, resume=True)
    assert [(h["stage"], h["epoch"]) for h in resumed.history] == [
        (h["stage"], h["epoch"]) for h in reference.history
    ]
    for got, want in zip(resumed.history, reference.history, strict=True):
        assert sorted(got["train"]) == sorted(want["train"])
        for key, value in want["train"].items():  # mcr/mipd depends on the permutations drawn
            assert got["train"][key] == pytest.approx(value, rel=1e-6, abs=1e-9), key


def test_mcr_generator_state_is_in_the_state_dict():
    method = build_method("mcr", tiny_model(), TASK, {"num_permutations": 4})
    method.set_seed(3)
    assert method.state_dict()["mcr._extra_state"]["generators"] == {}  # nothing drawn yet
    assert "_extra_state" not in method.state_dict()  # MCR owns its randomness, not the method
    batch = {"a": torch.randn(8, 4), "b": torch.randn(8, 5), "label": torch.randint(0, 3, (8,))}
    method.training_step(batch, "joint")
    state = method.state_dict()
    after_one = float(method.training_step(batch, "joint").terms["mcr/mipd"])
    other = build_method("mcr", tiny_model(), TASK, {"num_permutations": 4})
    other.set_seed(99)
    other.load_state_dict(state)
    assert float(other.training_step(batch, "joint").terms["mcr/mipd"]) == pytest.approx(
        after_one, rel=1e-6
    )
    with pytest.raises(TypeError, match="uint8"):
        other.mcr.set_extra_state({"seed": 0, "generators": {"cpu": torch.zeros(3)}})


def test_mcr_unimodal_init_trains_two_stages(tmp_path, tiny_data):
    method, result = _fit_mcr(
        tmp_path, tiny_data, {"init": "unimodal", "finetune_lr_scale": 0.5}, max_epochs=2
    )
    assert [s["name"] for s in result.stages] == ["unimodal", "joint"]
    uni, joint = result.history[:2], result.history[2:]
    assert all(h["stage"] == "unimodal" and "uni/a" in h["train"] for h in uni)
    assert all(h["stage"] == "joint" and "mcr/mipd" in h["train"] for h in joint)
    # unimodal stage: one early-stopping track per modality, only encoders and their heads
    assert set(result.stages[0]["best_epoch"]) == {"a", "b"}
    method.begin_stage("unimodal")
    names = {g["name"] for g in method.param_groups("unimodal")}
    assert names == {"encoder:a", "encoder:b", "method"}
    # the unimodal models train at lr / finetune_lr_scale, with MCR's own unimodal heads
    uni_groups = method.param_groups("unimodal")
    assert {g["name"]: g["lr_scale"] for g in uni_groups} == {
        "encoder:a": 2.0,
        "encoder:b": 2.0,
        "method": 2.0,
    }
    head_ids = {id(p) for p in method.mcr.unimodal.heads.parameters()}
    assert {id(p) for g in uni_groups if g["name"] == "method" for p in g["params"]} == head_ids
    # joint stage: the whole model at lr, those same unimodal heads inside MCR's parameters
    method.begin_stage("joint")
    groups = method.param_groups("joint")
    assert {g["name"]: g["lr_scale"] for g in groups} == {
        "encoder:a": 1.0,
        "encoder:b": 1.0,
        "fusion": 1.0,
        "method": 1.0,
    }
    joint_method_ids = {id(p) for g in groups if g["name"] == "method" for p in g["params"]}
    assert head_ids <= joint_method_ids


def test_mcr_unimodal_init_stage_one_does_not_touch_the_fusion_head(tiny_data):
    method = build_method("mcr", tiny_model(), TASK, {"init": "unimodal"})
    method.set_seed(0)
    method.begin_stage("unimodal")
    before = [p.clone() for p in method.model.fusion_head.parameters()]
    enc_before = [p.clone() for p in method.model.encoders.parameters()]
    opt = default_optimizer(method.param_groups("unimodal"), TrainConfig(lr=0.1))
    for batch in build_loaders(tiny_data, batch_size=16, seed=0)["train"]:
        out = method.training_step(batch, "unimodal")
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, method.model.fusion_head.parameters()))
    assert not all(
        torch.equal(a, b) for a, b in zip(enc_before, method.model.encoders.parameters())
    )
    fused, uni = method.heads(method.encode(batch), "unimodal")
    probs = torch.stack([o.softmax(-1) for o in uni.values()]).mean(0)
    assert torch.allclose(fused.exp(), probs, atol=1e-6)


def test_mcr_rejects_bad_init_options():
    with pytest.raises(ValueError, match="init"):
        build_method("mcr", tiny_model(), TASK, {"init": "pretrained"})
    with pytest.raises(ValueError, match="finetune_lr_scale"):
        build_method("mcr", tiny_model(), TASK, {"finetune_lr_scale": -1})
    with pytest.raises(ValueError, match="unimodal_weight > 0"):
        build_method("mcr", tiny_model(), TASK, {"init": "unimodal", "unimodal_weight": 0.0})


def test_mcr_unimodal_init_keeps_the_pretrained_heads(tiny_data):
    """The unimodal stage's heads are the joint stage's unimodal-term heads: after the first
    stage they hold trained weights (not a fresh initialisation) and MCR's term uses them."""
    method = build_method("mcr", tiny_model(), TASK, {"init": "unimodal", "num_permutations": 4})
    method.set_seed(0)
    fresh = [p.detach().clone() for p in method.mcr.unimodal.heads.parameters()]
    method.begin_stage("unimodal")
    opt = default_optimizer(method.param_groups("unimodal"), TrainConfig(lr=0.05))
    batch = next(iter(build_loaders(tiny_data, batch_size=16, seed=0)["train"]))
    out = method.training_step(batch, "unimodal")
    opt.zero_grad()
    out.loss.backward()
    opt.step()
    trained = [p.detach().clone() for p in method.mcr.unimodal.heads.parameters()]
    assert not all(torch.equal(a, b) for a, b in zip(fresh, trained))
    method.begin_stage("joint")
    fused, uni = method.heads(method.encode(batch), "joint")
    from mcr_reg.functional import pool_latent

    latents = method.encode(batch)
    expected = method.mcr.unimodal.heads[0](pool_latent(latents["a"]))
    torch.testing.assert_close(uni["a"], expected)
    joint_out = method.mcr(latents, batch["label"], fused)
    torch.testing.assert_close(joint_out.unimodal_logits[0], expected)
