"""MCR under automatic mixed precision: finite, float32 where it matters, close to float32.

The fusion head and the encoders run in the autocast dtype; MCR computes its divergences and the
contrastive loss in float32 (docs/semantics.md, "Mixed precision"), so the loss and every gradient must stay finite
and match a float32 step within the precision of the autocast dtype. CUDA cases skip without a
GPU (the CPU cases run everywhere; benchmarks/gpu_check.py runs the same comparison on a card).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from mcr_reg import MCRRegularizer
from mcr_reg import functional as MF
from mcr_reg.terms import CEB, MIPD, Unimodal
from tests.mcr_reg.helpers import Toy

BATCH, CLASSES = 12, 4
#: ||g_amp - g_fp32|| / ||g_fp32|| allowed per gradient tensor
TOLERANCE = {torch.bfloat16: 5e-2, torch.float16: 1e-2}

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param(
        "cuda",
        id="cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
        ],
    ),
]


def _run(
    device: str, autocast: torch.dtype | None, *, head_scale: float = 1.0
) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
    """One loss + backward of a 3-modality model with every MCR term on; fixed seeds."""
    torch.manual_seed(0)
    model = Toy([5, 7, 3], [8, 8, 8], CLASSES).to(device)
    with torch.no_grad():
        model.head.net[-1].weight.mul_(head_scale)
    mcr = MCRRegularizer(
        model.head,
        num_classes=CLASSES,
        latent_dims=(8, 8, 8),
        mipd=MIPD(weight=1.0, num_permutations=6),
        ceb=CEB(weight=1.0),
        unimodal=Unimodal(weight=0.1),
    ).to(device)
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(BATCH, d, generator=g).to(device) for d in (5, 7, 3)]
    y = (torch.arange(BATCH) % CLASSES).to(device)
    perms = MF.sample_permutations(6, 3, BATCH, generator=g).to(device)
    enabled = autocast is not None
    with torch.autocast(device_type=device, dtype=autocast or torch.bfloat16, enabled=enabled):
        zs = model.encode(xs)
        logits = model.head(*zs)
        out = mcr(zs, y, logits, permutations=perms)
        loss = F.cross_entropy(logits.float(), y) + out.loss
    loss.backward()
    grads = {f"model.{n}": p.grad for n, p in model.named_parameters()}
    grads |= {f"mcr.{n}": p.grad for n, p in mcr.named_parameters()}
    assert all(g is not None for g in grads.values())
    if head_scale > 1:
        assert float(logits.detach().abs().max()) > 500  # the regime under test
    return loss.detach(), grads, dict(out.terms)  # type: ignore[arg-type]


def _relative(a: Tensor, b: Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-12))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_autocast_matches_float32(device: str, dtype: torch.dtype) -> None:
    loss32, grads32, terms32 = _run(device, None)
    loss, grads, terms = _run(device, dtype)
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    assert all(bool(torch.isfinite(g).all()) for g in grads.values())
    assert all(t.dtype == torch.float32 for t in terms.values())
    tol = TOLERANCE[dtype]
    assert abs(float(loss) - float(loss32)) <= tol * abs(float(loss32))
    assert sorted(terms) == sorted(terms32)
    for name, t32 in terms32.items():
        assert abs(float(terms[name]) - float(t32)) <= tol * abs(float(t32)) + 1e-4, name
    for name, g32 in grads32.items():
        err = _relative(grads[name], g32)
        assert err <= tol, f"{name}: relative error {err:.3g} > {tol}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_autocast_with_huge_latents_stays_finite(device: str, dtype: torch.dtype) -> None:
    """A head whose logits reach thousands: nothing overflows inside MCR, whose divergences
    are computed in float32 from log-probabilities."""
    loss, grads, terms = _run(device, dtype, head_scale=3000.0)
    assert torch.isfinite(loss)
    assert all(bool(torch.isfinite(t)) for t in terms.values())
    assert all(bool(torch.isfinite(g).all()) for g in grads.values())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fp16_grad_scaler_step_on_cuda() -> None:
    torch.manual_seed(0)
    model = Toy([5, 7], [8, 8], CLASSES).cuda()
    mcr = MCRRegularizer(model.head, num_classes=CLASSES, latent_dims=(8, 8)).cuda()
    opt = torch.optim.Adam([*model.parameters(), *mcr.parameters()], lr=1e-3)
    scaler = torch.amp.GradScaler("cuda")
    xs = [torch.randn(BATCH, 5, device="cuda"), torch.randn(BATCH, 7, device="cuda")]
    y = (torch.arange(BATCH) % CLASSES).cuda()
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(3):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16):
            zs = model.encode(xs)
            logits = model.head(*zs)
            loss = F.cross_entropy(logits.float(), y) + mcr(zs, y, logits).loss
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
