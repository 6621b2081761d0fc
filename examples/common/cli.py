"""Command-line flags and JSON config files shared by every example's ``train.py``.

Precedence: built-in defaults < the JSON config (``--config`` or the pipeline's default
config) < flags given on the command line. A config file is a flat JSON object whose keys are
the flag names with ``_`` for ``-`` (``"max_epochs": 100``), plus an optional
``"method_options"`` object mapping a method name to its hyper-parameters::

    {"lr": 1e-4, "weight_decay": 1e-4, "batch_size": 32,
     "method_options": {"mcr": {"mipd_weight": 0.1, "unimodal_weight": 0.01}}}

``--method-option KEY=VALUE`` (repeatable) overrides one hyper-parameter of the chosen method.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from examples.common.config import TrainConfig
from examples.common.methods import METHOD_CLASSES
from mcr_reg.functional import STRATEGIES

#: The ``--method`` choices, in table order (defined once, by the method registry).
METHODS: tuple[str, ...] = tuple(METHOD_CLASSES)


def build_parser(
    description: str, *, default_config: Path | str | None = None
) -> argparse.ArgumentParser:
    """An argument parser with the flags every example shares.

    Args:
        description: shown by ``--help``.
        default_config: JSON config loaded when ``--config`` is not given (the pipeline's
            released hyper-parameters). Read by :func:`parse_args`.

    Returns:
        The parser; pipelines may add their own flags before calling :func:`parse_args`.
    """
    p = argparse.ArgumentParser(description=description)
    p.set_defaults(_default_config=str(default_config) if default_config else None)
    p.add_argument("--data-root", type=Path, default=None, help="data set directory")
    p.add_argument("--out", type=Path, default=Path("runs/default"), help="output directory")
    p.add_argument("--method", choices=METHODS, default="mcr", help="training method")
    p.add_argument(
        "--strategy", choices=STRATEGIES, default="greedy", help="MCR game strategy (mcr only)"
    )
    p.add_argument("--config", type=Path, default=None, help="JSON config file")
    p.add_argument("--max-epochs", type=int, default=100, help="epoch cap per stage")
    p.add_argument(
        "--patience",
        type=int,
        default=10,
        help="early-stopping patience: validation rounds (one per epoch) without improvement",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--optimizer", choices=("adam", "adamw"), default="adam")
    p.add_argument("--grad-clip", type=float, default=None, help="max gradient norm")
    p.add_argument(
        "--scheduler",
        choices=("none", "cosine", "cosine_restarts"),
        default="none",
        help="learning-rate schedule (cosine_restarts: the released recipe, warm restarts)",
    )
    p.add_argument("--warmup-epochs", type=float, default=0.0, help="linear warm-up (none, cosine)")
    p.add_argument(
        "--warmup-steps",
        type=int,
        default=0,
        help="optimizer steps at the base rate before the restarts (cosine_restarts)",
    )
    p.add_argument(
        "--restart-period", type=int, default=4, help="T_0 of cosine_restarts, optimizer steps"
    )
    p.add_argument("--restart-mult", type=int, default=2, help="T_mult of cosine_restarts")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument(
        "--amp", choices=("none", "bf16", "fp16"), default="none", help="mixed-precision training"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument(
        "--smoke", action="store_true", help="2 epochs of 2 batches: checks the pipeline runs"
    )
    p.add_argument("--no-progress", action="store_true", help="hide tqdm progress bars")
    p.add_argument(
        "--unimodal-reference",
        type=Path,
        default=None,
        help="test_predictions.json of a run with unimodal models (e.g. --method ensemble): "
        "the Figure-5 error matrix of this run is computed against those unimodal predictions",
    )
    p.add_argument(
        "--method-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="hyper-parameter of the chosen method (JSON value), repeatable",
    )
    p.set_defaults(method_options={})
    return p


def load_config(path: Path | str) -> dict[str, Any]:
    """Read a JSON config file into a dict.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it is not valid JSON or not a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"config file {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object in {path}, got {type(data).__name__}")
    return data


def _parse_method_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ValueError(f"expected --method-option KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # plain strings need no quotes: perturbation=noise
    return key.strip(), value


def parse_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
) -> argparse.Namespace:
    """Parse flags with config-file defaults underneath the command line.

    After parsing, ``args.method_options`` is the dict of hyper-parameters for
    ``args.method`` (config ``method_options[method]`` updated by ``--method-option``).

    Raises:
        ValueError: if the config holds a key that is not a flag of ``parser``.
    """
    first, _ = parser.parse_known_args(argv)
    config_path = first.config or first._default_config
    all_method_options: dict[str, dict[str, Any]] = {}
    if config_path is not None:
        config = load_config(config_path)
        all_method_options = config.pop("method_options", {}) or {}
        if not isinstance(all_method_options, dict):
            raise ValueError(
                f"expected 'method_options' to be an object in {config_path}, got "
                f"{type(all_method_options).__name__}"
            )
        known = {a.dest for a in parser._actions}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"unknown keys {unknown} in config {config_path}")
        for key in ("data_root", "out", "config"):
            if config.get(key) is not None:
                config[key] = Path(config[key])
        parser.set_defaults(**config)
    args = parser.parse_args(argv)
    options = dict(all_method_options.get(args.method, {}) or {})
    for text in args.method_option:
        key, value = _parse_method_option(text)
        options[key] = value
    args.method_options = options
    args.config_path = str(config_path) if config_path else None
    return args


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The one place where parsed flags become the run's :class:`TrainConfig`.

    ``--strategy`` is folded into the method options of a method that has a ``strategy``
    hyper-parameter (``mcr``), so nothing below the command line names a method. The whole
    command line is kept in ``flags`` (recorded in ``metrics.json``).
    """
    options = dict(args.method_options)
    if "strategy" in METHOD_CLASSES[args.method].option_defaults():
        options["strategy"] = args.strategy
    return TrainConfig(
        method=args.method,
        method_options=options,
        max_epochs=args.max_epochs,
        patience=args.patience,
        lr=args.lr,
        weight_decay=args.weight_decay,
        optimizer=args.optimizer,
        grad_clip=args.grad_clip,
        scheduler=args.scheduler,
        warmup_epochs=args.warmup_epochs,
        warmup_steps=args.warmup_steps,
        restart_period=args.restart_period,
        restart_mult=args.restart_mult,
        device=args.device,
        seed=args.seed,
        smoke=args.smoke,
        progress=not args.no_progress,
        amp=args.amp,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        out=args.out,
        resume=args.resume,
        unimodal_reference=args.unimodal_reference,
        flags={k: v for k, v in vars(args).items() if not k.startswith("_")},
    )
