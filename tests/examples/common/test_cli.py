"""Flags, config files and their precedence."""

import json

import pytest

from examples.common.cli import METHODS, build_parser, load_config, parse_args, train_config
from examples.common.trainer import TrainConfig, restart_cosine, schedule_factor


def test_defaults_without_config(tmp_path):
    args = parse_args(build_parser("x"), ["--out", str(tmp_path)])
    assert args.method == "mcr" and args.strategy == "greedy"
    assert args.method_options == {}
    assert args.resume is False and args.smoke is False


def test_config_then_cli_precedence(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(
        json.dumps(
            {
                "lr": 0.5,
                "batch_size": 7,
                "method": "ogm_ge",
                "method_options": {"ogm_ge": {"alpha": 0.3}, "mcr": {"mipd_weight": 0.2}},
            }
        )
    )
    args = parse_args(build_parser("x"), ["--config", str(cfg), "--lr", "0.1"])
    assert args.lr == 0.1  # command line wins
    assert args.batch_size == 7  # config beats the default
    assert args.method == "ogm_ge"
    assert args.method_options == {"alpha": 0.3}


def test_default_config_and_method_option_override(tmp_path):
    cfg = tmp_path / "d.json"
    cfg.write_text(
        json.dumps({"method_options": {"mcr": {"mipd_weight": 0.2, "num_permutations": 4}}})
    )
    parser = build_parser("x", default_config=cfg)
    args = parse_args(
        parser, ["--method-option", "mipd_weight=0.5", "--method-option", "perturbation=noise"]
    )
    assert args.method_options == {
        "mipd_weight": 0.5,
        "num_permutations": 4,
        "perturbation": "noise",
    }


def test_unknown_config_key_raises(tmp_path):
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"learning_rate": 1.0}))
    with pytest.raises(ValueError, match="unknown keys"):
        parse_args(build_parser("x"), ["--config", str(cfg)])


def test_missing_config_and_bad_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_config(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        load_config(bad)


def test_method_option_needs_equals():
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_args(build_parser("x"), ["--method-option", "alpha"])


def test_all_methods_are_choices():
    parser = build_parser("x")
    for m in METHODS:
        assert parse_args(parser, ["--method", m]).method == m
    with pytest.raises(SystemExit):
        parse_args(parser, ["--method", "nope"])


def test_train_config_is_built_once_from_the_flags(tmp_path):
    from examples.common.cli import build_parser, parse_args, train_config
    from examples.common.config import TrainConfig

    parser = build_parser("t")
    parser.add_argument("--views", default="a,b")  # a pipeline's own flag
    argv = ["--out", str(tmp_path), "--method", "mcr", "--strategy", "independent"]
    config = train_config(parse_args(parser, [*argv, "--batch-size", "8"]))
    assert isinstance(config, TrainConfig)
    assert config.method_options["strategy"] == "independent"  # folded in by the CLI
    assert (config.batch_size, config.out, config.resume) == (8, tmp_path, False)
    assert config.flags["views"] == "a,b" and "_default_config" not in config.flags
    joint = train_config(parse_args(parser, ["--method", "joint", "--strategy", "greedy"]))
    assert "strategy" not in joint.method_options  # joint has no strategy to set


def test_method_and_strategy_names_have_one_source():
    from examples.common.cli import METHODS, STRATEGIES
    from examples.common.methods import METHOD_CLASSES
    from mcr_reg.functional import STRATEGIES as PACKAGE_STRATEGIES
    from mcr_reg.functional import strategy_factor

    assert tuple(METHOD_CLASSES) == METHODS
    assert STRATEGIES is PACKAGE_STRATEGIES
    assert [strategy_factor(s) for s in STRATEGIES] == [-1.0, 0.0, 1.0]


@pytest.mark.parametrize(("pipeline", "patience"), [("cremad", 100), ("ave", 150)])
def test_released_configs_use_the_released_schedule(pipeline, patience):
    """The authors' CREMA-D / AVE configs: scheduler ``cosanneal`` (780 warm-up steps at the
    base rate, then warm restarts T_0 = 4, T_mult = 2), ``max_epoch`` 1500, ``n_steps_stop``
    100 / 150 validation rounds."""
    values = load_config(f"examples/{pipeline}/configs/resnet18.json")
    keys = ("scheduler", "warmup_steps", "restart_period", "restart_mult", "max_epochs")
    assert [values[k] for k in keys] == ["cosine_restarts", 780, 4, 2, 1500]
    assert values["patience"] == patience and "warmup_epochs" not in values
    cfg = TrainConfig(**{k: values[k] for k in (*keys, "patience")})
    assert schedule_factor(cfg, 779, 0, 100) == 1.0
    assert schedule_factor(cfg, 780, 0, 100) == restart_cosine(780, 4, 2) < 1.0


def test_schedule_flags_reach_the_config(tmp_path):
    argv = [
        "--out",
        str(tmp_path),
        "--scheduler",
        "cosine_restarts",
        "--warmup-steps",
        "5",
        "--restart-period",
        "3",
        "--restart-mult",
        "1",
    ]
    cfg = train_config(parse_args(build_parser("x"), argv))
    assert (cfg.scheduler, cfg.warmup_steps, cfg.restart_period, cfg.restart_mult) == (
        "cosine_restarts",
        5,
        3,
        1,
    )
