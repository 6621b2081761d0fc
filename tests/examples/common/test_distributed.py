"""The loop under torch.distributed: 2 CPU processes (gloo) agree with each other."""

import gc
import json

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from examples.common.cli import build_parser, parse_args, train_config
from examples.common.task import TaskSpec
from examples.common.trainer import run_experiment
from tests.examples._helpers.outputs import assert_accuracy_matches_predictions
from tests.examples._helpers.tiny_models import tiny_model, tiny_split


def _worker(rank: int, world: int, init_file: str, out: str, method: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        data = {"train": tiny_split(48, 0), "val": tiny_split(24, 1), "test": tiny_split(24, 2)}
        argv = [
            "--out",
            out,
            "--method",
            method,
            "--max-epochs",
            "2",
            "--batch-size",
            "8",
            "--lr",
            "0.01",
            "--no-progress",
        ]
        args = train_config(parse_args(build_parser("ddp"), argv))
        built = []

        def build():
            built.append(tiny_model())
            return built[-1]

        run_experiment(
            args, build_model=build, datasets=data, task=TaskSpec("classification", num_classes=3)
        )
        # every rank must end with identical weights (same gradients, same modulation)
        mine = [p.detach().clone() for p in built[0].parameters()]
        gathered = [None, None]
        dist.all_gather_object(gathered, mine)
        same = all(torch.equal(a, b) for a, b in zip(gathered[0], gathered[1]))
        torch.save(same, f"{out}/rank{rank}.same")
    finally:
        gc.collect()  # free DDP wrappers (reference cycles holding the group) before teardown
        dist.destroy_process_group()


@pytest.mark.ddp
@pytest.mark.parametrize("method", ["ogm_ge", "mlb", "mcr"])
def test_two_process_training_writes_one_metrics_file(tmp_path, method):
    out = tmp_path / "run"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(out), method), nprocs=2, join=True)
    metrics = json.loads((out / "metrics.json").read_text())
    assert_accuracy_matches_predictions(out, metrics)  # predictions gathered from both ranks
    assert len(json.loads((out / "test_predictions.json").read_text())["labels"]) == 24
    if method != "ogm_ge":  # methods with unimodal heads: the error matrix counts every
        # test sample exactly once, gathered from the two ranks' shards
        assert sum(map(sum, metrics["error_matrix"]["counts"])) == 24
    assert torch.load(out / "rank0.same") is True
    assert torch.load(out / "rank1.same") is True
