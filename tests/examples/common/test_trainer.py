"""The training loop: every method end to end, resume, atomic checkpoints, early stopping."""

import json
import math
import os
import sys

import pytest
import torch

from examples.common.checkpoint import atomic_torch_save, load_checkpoint
from examples.common.cli import METHODS, build_parser, parse_args, train_config
from examples.common.data import build_loaders
from examples.common.methods import build_method
from examples.common.task import TaskSpec
from examples.common.trainer import (
    TrackStopper,
    TrainConfig,
    fit,
    restart_cosine,
    run_experiment,
    schedule_factor,
)
from tests.examples._helpers.outputs import assert_accuracy_matches_predictions
from tests.examples._helpers.tiny_models import tiny_model

TASK = TaskSpec("classification", num_classes=3)


def _args(tmp_path, *extra):
    argv = ["--out", str(tmp_path), "--batch-size", "16", "--lr", "0.01", "--no-progress", *extra]
    return train_config(parse_args(build_parser("test"), argv))


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_and_writes_metrics(tmp_path, tiny_data, method):
    args = _args(tmp_path, "--method", method, "--max-epochs", "2")
    metrics = run_experiment(args, build_model=tiny_model, datasets=tiny_data, task=TASK)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["method"] == method
    assert_accuracy_matches_predictions(tmp_path, on_disk)
    assert "macro_f1" in on_disk["test"]
    assert metrics["test"] == on_disk["test"]
    assert (tmp_path / "importance.png").stat().st_size > 0
    assert (tmp_path / "checkpoint.pt").exists()
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())
    stages = {"ensemble": 1, "uni_pre_frozen": 2, "uni_pre_finetuned": 2}.get(method, 1)
    assert len(on_disk["stages"]) == stages
    assert len(on_disk["importance"]["val_history"]) == 2 * stages
    if on_disk["test_unimodal"] is not None:
        em = on_disk["error_matrix"]
        assert sum(map(sum, em["counts"])) == 24


def test_mcr_logs_its_terms_and_training_importance(tmp_path, tiny_data):
    args = _args(tmp_path, "--method", "mcr", "--max-epochs", "1", "--strategy", "independent")
    metrics = run_experiment(args, build_model=tiny_model, datasets=tiny_data, task=TASK)
    assert metrics["method_options"]["strategy"] == "independent"
    assert "mcr/mipd" in metrics["history"][0]["train"]
    assert metrics["importance"]["train_history"][0] is not None


def test_smoke_limits_batches_and_epochs(tmp_path, tiny_data):
    args = _args(
        tmp_path, "--method", "joint", "--max-epochs", "50", "--smoke", "--batch-size", "4"
    )
    metrics = run_experiment(args, build_model=tiny_model, datasets=tiny_data, task=TASK)
    assert metrics["stages"][0]["epochs_run"] == 2


def test_resume_continues_at_next_epoch_with_same_result(tmp_path, tiny_data):
    full = tmp_path / "full"
    run_experiment(
        _args(full, "--method", "joint", "--max-epochs", "4", "--patience", "10"),
        build_model=tiny_model,
        datasets=tiny_data,
        task=TASK,
    )
    part = tmp_path / "part"
    run_experiment(
        _args(part, "--method", "joint", "--max-epochs", "2", "--patience", "10"),
        build_model=tiny_model,
        datasets=tiny_data,
        task=TASK,
    )
    assert load_checkpoint(part / "checkpoint.pt")["stage_done"] is True
    # pretend the 2-epoch run was interrupted after its second epoch: mark the stage unfinished
    ckpt = load_checkpoint(part / "checkpoint.pt")
    ckpt["stage_done"] = False
    atomic_torch_save(ckpt, part / "checkpoint.pt")
    resumed = run_experiment(
        _args(part, "--method", "joint", "--max-epochs", "4", "--patience", "10", "--resume"),
        build_model=tiny_model,
        datasets=tiny_data,
        task=TASK,
    )
    epochs = [h["epoch"] for h in resumed["history"]]
    assert epochs == [0, 1, 2, 3]
    reference = json.loads((full / "metrics.json").read_text())
    assert [h["train"]["loss"] for h in resumed["history"]] == pytest.approx(
        [h["train"]["loss"] for h in reference["history"]], rel=1e-5
    )
    assert resumed["test"] == pytest.approx(reference["test"])


def test_resume_without_checkpoint_raises(tmp_path, tiny_data):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        run_experiment(
            _args(tmp_path, "--method", "joint", "--resume"),
            build_model=tiny_model,
            datasets=tiny_data,
            task=TASK,
        )


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "ck.pt"
    atomic_torch_save({"v": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_torch_save({"v": 2, "bad": Unpicklable()}, path)
    assert load_checkpoint(path)["v"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left behind


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes need Python 3.11")
def test_a_failed_save_says_where_and_how_much_disk_is_free(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    atomic_torch_save({"v": 1}, path)

    def full_disk(obj, handle):  # what torch.save does when the disk fills up mid-file
        handle.write(b"x" * 3 * 2**20)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1 vs 0")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(RuntimeError, match="unexpected pos") as caught:
        atomic_torch_save({"v": 2}, path)
    (note,) = caught.value.__notes__
    assert note.startswith(f"while writing {path}: 3.0 MiB written before the error, ")
    assert "MiB free on that disk; the previous ck.pt is untouched" in note
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]

    with pytest.raises(RuntimeError) as caught:
        atomic_torch_save({"v": 2}, tmp_path / "new.pt")
    assert caught.value.__notes__[0].endswith("; nothing was written")
    monkeypatch.undo()
    assert load_checkpoint(path)["v"] == 1


def test_atomic_save_uses_os_replace(tmp_path, monkeypatch):
    calls = []
    real = os.replace

    def spy(src, dst):
        calls.append((os.path.dirname(src), str(dst)))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    atomic_torch_save({"v": 3}, tmp_path / "x.pt")
    assert calls == [(str(tmp_path), str(tmp_path / "x.pt"))]


def test_track_stopper_keeps_each_tracks_best_state():
    module = torch.nn.ModuleDict({"a": torch.nn.Linear(1, 1), "b": torch.nn.Linear(1, 1)})
    stopper = TrackStopper({"a": ("a.",), "b": ("b.",)}, "max", patience=2)
    module["a"].weight.data.fill_(1.0)
    module["b"].weight.data.fill_(1.0)
    stopper.update(0, {"a": 0.5, "b": 0.9}, module)
    module["a"].weight.data.fill_(2.0)
    module["b"].weight.data.fill_(2.0)
    assert stopper.update(1, {"a": 0.7, "b": 0.1}, module) == ["a"]
    assert not stopper.done()
    stopper.update(2, {"a": 0.6, "b": 0.1}, module)
    assert not stopper.done()  # a has waited 1 epoch only
    stopper.update(3, {"a": 0.6, "b": float("nan")}, module)
    assert stopper.done()
    stopper.restore(module)
    assert module["a"].weight.item() == 2.0 and module["b"].weight.item() == 1.0
    assert stopper.best_epoch == {"a": 1, "b": 0}


def test_early_stopping_stops_after_patience(tiny_data):
    method = build_method("joint", tiny_model(), TASK)
    loaders = build_loaders(tiny_data, batch_size=16, seed=0)
    config = TrainConfig(max_epochs=50, patience=1, lr=1e-12, progress=False, importance=False)
    result = fit(method, loaders, config)  # lr ~ 0: validation never improves after epoch 0
    assert result.stages[0]["epochs_run"] == 2


def test_ensemble_unimodal_models_equal_separate_training(tiny_data):
    """Each unimodal model of the ensemble is what training it alone gives."""
    torch.manual_seed(0)
    method = build_method("ensemble", tiny_model(), TASK)
    encoder_a = {k: v.clone() for k, v in method.model.encoders["a"].state_dict().items()}
    head_a = {k: v.clone() for k, v in method.uni.heads["a"].state_dict().items()}
    loaders = build_loaders(tiny_data, batch_size=16, seed=3)
    config = TrainConfig(
        max_epochs=3, patience=10, lr=0.01, weight_decay=0.0, progress=False, importance=False
    )
    result = fit(method, loaders, config)
    best = result.stages[0]["best_epoch"]["a"]

    # modality a alone, same init, same batches, same optimizer
    alone = build_method("ensemble", tiny_model(), TASK)
    alone.model.encoders["a"].load_state_dict(encoder_a)
    alone.uni.heads["a"].load_state_dict(head_a)
    params = [*alone.model.encoders["a"].parameters(), *alone.uni.heads["a"].parameters()]
    opt = torch.optim.Adam(params, lr=0.01, weight_decay=0.0)
    train = loaders["train"]
    for epoch in range(best + 1):
        train.sampler.sampler.set_epoch(epoch)
        for batch in train:
            z = alone.model.encoders["a"](batch["a"])
            loss = TASK.loss(alone.uni.heads["a"](z), batch["label"])
            opt.zero_grad()
            loss.backward()
            opt.step()
    for p, q in zip(
        method.model.encoders["a"].parameters(), alone.model.encoders["a"].parameters()
    ):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_schedule_warmup_and_cosine():
    cfg = TrainConfig(scheduler="cosine", warmup_epochs=1.0)
    assert schedule_factor(cfg, 0, 100, 10) == pytest.approx(0.1)
    assert schedule_factor(cfg, 10, 100, 10) == pytest.approx(1.0)
    assert schedule_factor(cfg, 100, 100, 10) == pytest.approx(0.0, abs=1e-9)
    assert schedule_factor(TrainConfig(), 57, 100, 10) == 1.0


@pytest.mark.parametrize(("period", "mult"), [(4, 2), (3, 1), (1, 2), (5, 2)])
def test_restart_cosine_equals_torch_warm_restarts(period, mult):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    torch_schedule = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        opt, T_0=period, T_mult=mult
    )
    for step in range(3000):
        torch_schedule.step(step)
        assert restart_cosine(step, period, mult) == pytest.approx(
            opt.param_groups[0]["lr"], abs=1e-12
        ), step
    with pytest.raises(ValueError, match="period >= 1"):
        restart_cosine(3, 0, 2)


def test_restart_cosine_restarts_at_every_cycle_boundary():
    # cycles of 1, 3, 9, 27, 81 steps start at 0, 1, 4, 13, 40, 121; torch's floating-point
    # logarithm puts step 121 at the end of the previous cycle (rate 0), not at a restart
    starts = [0, 1, 4, 13, 40, 121, 364]
    assert [restart_cosine(s, 1, 3) for s in starts] == [1.0] * len(starts)
    assert restart_cosine(120, 1, 3) == pytest.approx(0.5 * (1 + math.cos(math.pi * 80 / 81)))


def _released_rates(base_lr, warmup_steps, steps):
    """The learning rate of each optimizer step under the released control flow, written
    plainly: the optimizer starts at the base rate; after optimizer step k (1-based) the
    scheduler holds the base rate while k < warmup_steps, else calls
    CosineAnnealingWarmRestarts(T_0=4, T_mult=2).step(k); step k + 1 uses that rate."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=base_lr)
    after = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=4, T_mult=2)
    rates = []
    for k in range(1, steps + 1):
        rates.append(opt.param_groups[0]["lr"])  # used by optimizer step k
        if k < warmup_steps:
            for group in opt.param_groups:
                group["lr"] = base_lr
        else:
            after.step(k)
    return rates


def test_cosine_restarts_schedule_follows_the_released_warmup_and_restarts():
    cfg = TrainConfig(scheduler="cosine_restarts", warmup_steps=40, lr=1e-3)
    released = _released_rates(1e-3, 40, 600)
    ours = [cfg.lr * schedule_factor(cfg, s, 10**6, 25) for s in range(600)]
    assert ours == pytest.approx(released, abs=1e-15)
    assert ours[:40] == [1e-3] * 40  # the warm-up holds the rate, it does not ramp
    # after the warm-up the cycles continue from the absolute step: step 40 is 12 steps into
    # the cycle [28, 60), not the start of a cycle
    assert schedule_factor(cfg, 40, 10**6, 25) == pytest.approx(
        0.5 * (1 + math.cos(math.pi * 12 / 32))
    )


def test_cosine_restarts_set_the_rate_of_every_training_step(tiny_data):
    cfg = TrainConfig(
        method="joint",
        scheduler="cosine_restarts",
        warmup_steps=3,
        max_epochs=2,
        patience=5,
        lr=0.01,
        progress=False,
        importance=False,
    )
    method = build_method("joint", tiny_model(), TASK)
    loaders = build_loaders(tiny_data, batch_size=16, seed=0)
    steps_per_epoch = len(loaders["train"])
    result = fit(method, loaders, cfg)
    for record in result.history:  # the rate of each epoch's last step
        last = (record["epoch"] + 1) * steps_per_epoch - 1
        expected = 0.01 * restart_cosine(last, 4, 2) if last >= 3 else 0.01
        assert all(lr == pytest.approx(expected) for lr in record["lr"].values())


def test_config_validation():
    with pytest.raises(ValueError, match="max_epochs"):
        TrainConfig(max_epochs=0)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="'cosine_restarts', got 'step'"):
        TrainConfig(scheduler="step")
    with pytest.raises(ValueError, match="warmup_steps, not warmup_epochs"):
        TrainConfig(scheduler="cosine_restarts", warmup_epochs=1.0)
    with pytest.raises(ValueError, match="warmup_steps only with scheduler 'cosine_restarts'"):
        TrainConfig(scheduler="cosine", warmup_steps=10)
    with pytest.raises(ValueError, match="restart_period >= 1"):
        TrainConfig(scheduler="cosine_restarts", restart_period=0)


def test_run_experiment_needs_data(tmp_path):
    with pytest.raises(ValueError, match="datasets or loaders"):
        run_experiment(_args(tmp_path), build_model=tiny_model, task=TASK)


@pytest.mark.parametrize("method", ["joint", "mcr"])
def test_bf16_autocast_trains_with_finite_loss(tmp_path, tiny_data, method):
    args = _args(tmp_path, "--method", method, "--max-epochs", "1", "--amp", "bf16")
    metrics = run_experiment(args, build_model=tiny_model, datasets=tiny_data, task=TASK)
    assert metrics["config"]["amp"] == "bf16"
    assert all(math.isfinite(v) for v in metrics["history"][0]["train"].values())


def test_atomic_files_get_umask_permissions(tmp_path):
    from examples.common.checkpoint import atomic_write_json

    old = os.umask(0o022)
    try:
        atomic_write_json({"a": 1}, tmp_path / "m.json")
    finally:
        os.umask(old)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 1}
