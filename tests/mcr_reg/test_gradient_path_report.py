"""check_gradient_path returns a typed report: per-module paths by name, and their verdicts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mcr_reg import GradientPath, GradientPathReport, MCRRegularizer, check_gradient_path


def _report(scale_audio: float) -> GradientPathReport:
    torch.manual_seed(0)
    audio, video, head = nn.Linear(4, 6), nn.Linear(5, 6), nn.Linear(12, 3)

    def fuse(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return head(torch.cat([a, v], -1))

    mcr = MCRRegularizer(fuse, num_classes=3, latent_dims=(6, 6), seed=0)
    xa, xv, y = torch.randn(8, 4), torch.randn(8, 5), torch.arange(8) % 3

    def step() -> None:
        for p in [*audio.parameters(), *video.parameters(), *head.parameters()]:
            p.grad = None
        za, zv = audio(xa), video(xv)
        logits = fuse(za, zv)
        (F.cross_entropy(logits, y) + mcr([za, zv], y, logits).loss).backward()
        for p in audio.parameters():  # a method that rescales the audio encoder's gradient
            p.grad = p.grad * scale_audio

    return check_gradient_path(step, mcr, {"audio": audio, "video": video})


def test_the_report_reads_like_a_mapping_of_typed_paths():
    report = _report(0.5)
    assert isinstance(report, GradientPathReport) and list(report) == ["audio", "video"]
    assert len(report) == 2 and all(isinstance(p, GradientPath) for p in report.values())
    assert report["audio"].cosine == pytest.approx(1.0) and report["audio"].ratio == pytest.approx(
        0.5
    )
    assert report["video"].ratio == pytest.approx(1.0)
    assert report.survives
    assert str(report).splitlines() == [report["audio"].verdict, report["video"].verdict]
    assert "GradientPathReport(" in repr(report)


def test_a_thrown_away_gradient_fails_the_whole_report():
    report = _report(0.0)
    assert not report.survives and not report["audio"].survives and report["video"].survives
    assert report["audio"].ratio < 1e-6 and not math.isnan(report["audio"].cosine)
    assert "thrown away" in str(report)


def test_an_unknown_name_says_which_modules_were_checked():
    with pytest.raises(
        KeyError, match=r"expected the name of a checked module .*'audio', 'video'.*got 'fusion'"
    ):
        _report(1.0)["fusion"]
