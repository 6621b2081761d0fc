"""Multi-label heads (task="multilabel"): one logit per label, (B, L) 0/1 targets. MIPD's
divergence is the per-label Bernoulli JSD averaged over labels; the game's gradients are checked
against the float64 reference by the exactness suite (tests/mcr_reg/test_exactness.py, which
draws this task too); here: the divergence, the loop, the unimodal and contrastive terms, and the
messages for labels of another shape."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcr_reg import MCRRegularizer
from mcr_reg import functional as MF
from mcr_reg._tasks import TASKS
from mcr_reg.terms import MIPD, Unimodal
from tests.mcr_reg import reference as R

B, L, D = 6, 4, 5


class Tagger(nn.Module):
    """Two encoders and a late fusion that outputs one logit per label."""

    def __init__(self) -> None:
        super().__init__()
        self.audio, self.video = nn.Linear(3, D), nn.Linear(7, D)
        self.fusion = nn.Linear(2 * D, L)

    def fuse(self, za: Tensor, zv: Tensor) -> Tensor:
        return self.fusion(torch.cat([za, zv], dim=-1))  # type: ignore[no-any-return]


def _batch() -> tuple[list[Tensor], Tensor]:
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(B, 3, generator=g), torch.randn(B, 7, generator=g)]
    labels = (torch.rand(B, L, generator=g) > 0.5).float()
    return xs, labels


def test_the_divergence_is_the_mean_over_labels_of_the_bernoulli_jsd() -> None:
    p, q = torch.randn(5, L, dtype=torch.float64), torch.randn(5, L, dtype=torch.float64)
    got = MF.multilabel_jensen_shannon(p, q)
    for row in range(5):
        expected = R.divergence("multilabel_jsd", p[row : row + 1], q[row : row + 1])
        torch.testing.assert_close(got[row], expected, rtol=1e-12, atol=1e-15)
    assert float(got.max()) <= float(torch.log(torch.tensor(2.0)))


def test_a_multilabel_loop_trains_with_every_term() -> None:
    torch.manual_seed(0)
    model = Tagger()
    mcr = MCRRegularizer(model.fuse, task="multilabel", num_classes=L, latent_dims=(D, D),
                         unimodal=Unimodal(weight=0.1), seed=0)  # fmt: skip
    xs, labels = _batch()
    za, zv = model.audio(xs[0]), model.video(xs[1])
    logits = model.fuse(za, zv)
    out = mcr([za, zv], labels, logits)
    (F.binary_cross_entropy_with_logits(logits, labels) + out.loss).backward()
    assert sorted(out.terms) == ["contrastive", "mipd", "unimodal"]
    assert all(torch.isfinite(v) for v in out.terms.values())
    assert model.audio.weight.grad is not None and model.video.weight.grad is not None
    assert out.unimodal_logits is not None and out.unimodal_logits[0].shape == (B, L)
    expected_uni = sum(F.binary_cross_entropy_with_logits(u, labels) for u in out.unimodal_logits)
    torch.testing.assert_close(out.terms["unimodal"], expected_uni.detach())


def test_collaborative_mipd_is_the_plain_loss_of_the_definition() -> None:
    torch.manual_seed(1)
    model = Tagger().double()
    xs, labels = _batch()
    xs = [x.double() for x in xs]
    perms = MF.sample_permutations(2, 2, B, generator=torch.Generator().manual_seed(3))
    mcr = MCRRegularizer(model.fuse, strategy="collaborative", task="multilabel", num_classes=L,
                         mipd=MIPD(weight=1.0), contrastive=False, unimodal=False)  # fmt: skip
    zs = [model.audio(xs[0]), model.video(xs[1])]
    mcr(zs, labels, permutations=perms).loss.backward()
    got = model.audio.weight.grad.clone()  # type: ignore[union-attr]
    model.zero_grad()
    zs = [model.audio(xs[0]), model.video(xs[1])]
    rows = R.permuted_rows(zs, perms)
    plain = sum(
        R.subset_loss(model.fuse, zs, s, rows, 2, "multilabel_jsd")
        for s in MF.enumerate_subsets(2, "all")
    )
    plain.backward()  # type: ignore[union-attr]
    torch.testing.assert_close(got, model.audio.weight.grad, rtol=1e-10, atol=1e-13)


def test_label_vectors_are_the_contrastive_classes() -> None:
    labels = torch.tensor([[1, 0, 1], [1, 0, 1], [0, 0, 0], [0, 1, 1]])
    classes = TASKS["multilabel"].classes(labels).tolist()
    assert classes[0] == classes[1] and len({classes[0], classes[2], classes[3]}) == 3
    many = torch.zeros(4, 70, dtype=torch.long)  # beyond the label vectors of 62-bit ids
    many[0, 65] = many[1, 65] = 1
    many[2, 3] = 1
    ids = TASKS["multilabel"].classes(many).tolist()
    assert ids[0] == ids[1] and len(set(ids)) == 3


def test_labels_of_another_shape_or_value_get_a_clear_message() -> None:
    model = Tagger()
    mcr = MCRRegularizer(model.fuse, task="multilabel", num_classes=L, unimodal=False)
    xs, labels = _batch()
    zs = [model.audio(xs[0]), model.video(xs[1])]
    with pytest.raises(ValueError, match=r"multi-label targets of shape \(6, L\)"):
        mcr(zs, labels[:, 0])
    with pytest.raises(ValueError, match=r"expected 4 label columns \(num_classes\)"):
        mcr(zs, labels[:, :3])
    with pytest.raises(ValueError, match="values 0 or 1"):
        mcr(zs, labels * 2)


def test_classification_with_label_vectors_points_to_the_multilabel_task() -> None:
    model = Tagger()
    mcr = MCRRegularizer(model.fuse, num_classes=L, unimodal=False)
    xs, labels = _batch()
    with pytest.raises(ValueError, match="task='multilabel'"):
        mcr([model.audio(xs[0]), model.video(xs[1])], labels.long())
