"""GPU readiness of MCR in one script (about a minute on a recent card; at most three).

Checks, in order, and writes one JSON file (schema ``mcr-reg/gpu-check/1``) plus a summary:

1. ``agreement``: MCR's loss, terms and gradients (latents, fusion head, MCR's own heads) on the
   device in float32 agree with a float64 CPU reference, with explicit permutations.
2. ``sync_free`` (CUDA only): after one warm-up step, MCR alone and a full training step with
   MCR (forward and backward, ``check_values=False``, permutations drawn by MCR's private
   generator on the device) run under ``torch.cuda.set_sync_debug_mode("error")``: any host
   synchronisation raises.
3. ``autocast``: under bf16 and fp16 autocast the loss and gradients are finite and the
   gradients match float32 within a tolerance; one training step of each model under autocast
   is finite.
4. ``timing``: step time (interleaved rounds) and peak memory (``torch.cuda.max_memory_allocated``)
   of joint training, MCR and MCR with input-space perturbations on the ResNet-18 model at full
   CREMA-D shapes and on the MOSEI Transformer (see :mod:`benchmarks.overhead`).

Usage::

    python -m benchmarks.gpu_check                       # on a CUDA machine
    python -m benchmarks.gpu_check --device cpu --quick  # dry run of everything but CUDA-only parts

The exit status is 1 when a check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmarks.common import (
    ConcatMLPHead,
    ModelConfig,
    Variant,
    build_model,
    build_variant,
    environment,
    make_batch,
    make_step,
)
from benchmarks.overhead import bench_model, clock_name
from examples.common.provenance import provenance
from mcr_reg import MCRRegularizer
from mcr_reg import functional as MF
from mcr_reg.terms import CEB, MIPD, Unimodal

SCHEMA = "mcr-reg/gpu-check/1"
#: relative tolerances on gradients (norm of the difference / norm of the float32 gradient)
AUTOCAST_TOLERANCE = {"bfloat16": 5e-2, "float16": 1e-2}
AGREEMENT_RTOL = 1e-4


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a dry run")
    p.add_argument("--quick", action="store_true", help="tiny shapes, few repeats")
    p.add_argument("--no-timing", action="store_true", help="skip the timing section")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_check.json"))
    return p.parse_args(argv)


# --------------------------------------------------------------------------- helpers


class _Check:
    """Collects the status, details and duration of one named check."""

    def __init__(self, report: dict[str, Any], name: str) -> None:
        self.entry: dict[str, Any] = {"status": "ok", "details": {}}
        report["checks"][name] = self.entry
        self.name = name

    @contextlib.contextmanager
    def run(self) -> Iterator[dict[str, Any]]:
        start = time.perf_counter()
        try:
            yield self.entry["details"]
        except Exception as err:  # a failed check is reported, the others still run
            self.entry["status"] = "failed"
            self.entry["error"] = f"{type(err).__name__}: {err}"
            self.entry["traceback"] = traceback.format_exc(limit=6)
        finally:
            self.entry["seconds"] = round(time.perf_counter() - start, 3)


def _toy_problem(
    device: torch.device, dtype: torch.dtype, *, seed: int = 0
) -> tuple[list[Tensor], Tensor, ConcatMLPHead, MCRRegularizer, Tensor]:
    """Three latents, a fusion head and MCR with every term on, identical for every call."""
    m, batch, dim, classes, draws = 3, 16, 32, 5, 8
    g = torch.Generator().manual_seed(seed)
    zs = [torch.randn(batch, dim, generator=g, dtype=torch.float64) for _ in range(m)]
    labels = torch.randint(0, classes, (batch,), generator=g)
    perms = MF.sample_permutations(draws, m, batch, generator=g)
    torch.manual_seed(seed)
    head = ConcatMLPHead(m, dim, 64, classes).double()
    mcr = MCRRegularizer(
        head,
        num_classes=classes,
        latent_dims=(dim,) * m,
        mipd=MIPD(num_permutations=draws),
        ceb=CEB(weight=1.0),
        unimodal=Unimodal(weight=0.1),
    ).double()
    head.to(device, dtype)  # in place: MCR calls this very head
    mcr.to(device, dtype)
    leaves = [z.to(device, dtype).requires_grad_() for z in zs]
    return leaves, labels.to(device), head, mcr, perms.to(device)


def _loss_and_grads(
    device: torch.device, dtype: torch.dtype, autocast: torch.dtype | None = None
) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
    zs, labels, head, mcr, perms = _toy_problem(device, dtype)
    ctx = (
        torch.autocast(device_type=device.type, dtype=autocast)
        if autocast is not None
        else contextlib.nullcontext()
    )
    with ctx:
        logits = head(*zs)
        out = mcr(zs, labels, logits, permutations=perms)
        loss = F.cross_entropy(logits.float(), labels) + out.loss
    loss.backward()
    grads = {f"latent{i}": z.grad for i, z in enumerate(zs)}
    grads.update({f"head.{n}": p.grad for n, p in head.named_parameters()})
    grads.update({f"mcr.{n}": p.grad for n, p in mcr.named_parameters()})
    values = {f"term.{k}": v for k, v in out.terms.items()} | {"importance": out.importance}
    return loss.detach(), {k: v.detach() for k, v in grads.items() if v is not None}, values


def _relative_error(a: Tensor, b: Tensor) -> float:
    a64, b64 = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a64 - b64).norm() / b64.norm().clamp_min(1e-30))


def _all_finite(tensors: dict[str, Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors.values())


@contextlib.contextmanager
def _no_tf32() -> Iterator[None]:
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


# --------------------------------------------------------------------------- checks


def check_agreement(device: torch.device, details: dict[str, Any]) -> None:
    """Float32 on ``device`` against a float64 CPU reference (TF32 off)."""
    with _no_tf32():
        ref_loss, ref_grads, ref_values = _loss_and_grads(torch.device("cpu"), torch.float64)
        loss, grads, values = _loss_and_grads(device, torch.float32)
    if sorted(grads) != sorted(ref_grads):
        raise AssertionError(f"gradients reached {sorted(grads)}, expected {sorted(ref_grads)}")
    errors = {"loss": _relative_error(loss, ref_loss)}
    errors.update({k: _relative_error(grads[k], ref_grads[k]) for k in ref_grads})
    errors.update({k: _relative_error(values[k], ref_values[k]) for k in ref_values})
    details["relative_errors"] = errors
    details["tolerance"] = AGREEMENT_RTOL
    worst = max(errors, key=lambda k: errors[k])
    details["worst"] = [worst, errors[worst]]
    if errors[worst] > AGREEMENT_RTOL:
        raise AssertionError(
            f"{worst} differs from the float64 CPU reference by {errors[worst]:.2e} "
            f"(relative), expected <= {AGREEMENT_RTOL}"
        )


def _small_configs(quick: bool) -> list[ModelConfig]:
    if quick:
        return [
            ModelConfig.resnet18(4, (1, 32, 24), (3, 2, 32, 32)),
            ModelConfig.mosei(4, 6, 1),
        ]
    return [
        ModelConfig.resnet18(8, (1, 128, 94), (3, 3, 112, 112)),
        ModelConfig.mosei(8, 50, 5),
    ]


def check_sync_free(device: torch.device, quick: bool, details: dict[str, Any]) -> None:
    """Forward and backward with MCR under ``set_sync_debug_mode("error")`` (CUDA only)."""
    if device.type != "cuda":
        details["skipped"] = "needs CUDA (torch.cuda.set_sync_debug_mode)"
        return

    def under_debug_mode(fn: Callable[[], None]) -> None:
        torch.cuda.synchronize(device)
        torch.cuda.set_sync_debug_mode("error")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        torch.cuda.synchronize(device)

    # MCR alone: private generator on the device, no value checks
    zs, labels, head, _, _ = _toy_problem(device, torch.float32)
    mcr = MCRRegularizer(
        head,
        num_classes=5,
        latent_dims=(32, 32, 32),
        check_values=False,
        ceb=CEB(weight=1.0),
        unimodal=Unimodal(weight=0.1),
    ).to(device)

    def mcr_alone() -> None:
        logits = head(*zs)
        out = mcr(zs, labels, logits)
        (F.cross_entropy(logits, labels) + out.loss).backward()

    mcr_alone()  # warm-up: creates the private generator
    under_debug_mode(mcr_alone)
    details["mcr_alone"] = "no host synchronisation"
    for config in _small_configs(quick):
        model = build_model(config, device)
        batch = make_batch(config, device)
        method = build_variant(Variant("mcr", 32), model, config)
        step = make_step(method)
        step(batch)  # warm-up step: optimizer state, generators, cuDNN plans

        def forward_backward(method: Any = method, batch: Any = batch) -> None:
            out = method.training_step(batch, "joint")
            out.loss.backward()

        under_debug_mode(forward_backward)
        details[f"{config.name}_training_step"] = "no host synchronisation"


def check_autocast(device: torch.device, quick: bool, details: dict[str, Any]) -> None:
    """bf16/fp16 autocast: finite and close to float32 on the toy problem; finite model steps."""
    with _no_tf32():
        loss32, grads32, _ = _loss_and_grads(device, torch.float32)
    failures = []
    for dtype in (torch.bfloat16, torch.float16):
        name = str(dtype).removeprefix("torch.")
        loss, grads, values = _loss_and_grads(device, torch.float32, autocast=dtype)
        entry: dict[str, Any] = {
            "loss": float(loss),
            "loss_float32": float(loss32),
            "finite": bool(torch.isfinite(loss))
            and _all_finite(grads)
            and _all_finite({k: v for k, v in values.items() if k != "importance"}),
            "grad_relative_errors": {k: _relative_error(grads[k], grads32[k]) for k in grads32},
            "tolerance": AUTOCAST_TOLERANCE[name],
        }
        worst = max(entry["grad_relative_errors"].values())
        entry["worst_grad_relative_error"] = worst
        if not entry["finite"]:
            failures.append(f"{name}: non-finite loss or gradients")
        elif worst > AUTOCAST_TOLERANCE[name]:
            failures.append(f"{name}: gradient relative error {worst:.3g} > {entry['tolerance']}")
        steps = {}
        for config in _small_configs(True):
            model = build_model(config, device)
            batch = make_batch(config, device)
            method = build_variant(Variant("mcr", 8), model, config)
            method.train()
            with torch.autocast(device_type=device.type, dtype=dtype):
                out = method.training_step(batch, "joint")
            out.loss.backward()
            ok = bool(torch.isfinite(out.loss)) and all(
                bool(torch.isfinite(p.grad).all())
                for p in method.parameters()
                if p.grad is not None
            )
            steps[config.name] = {"loss": float(out.loss.detach()), "finite": ok}
            if not ok:
                failures.append(f"{name}: non-finite training step on {config.name}")
        entry["training_steps"] = steps
        details[name] = entry
    if failures:
        raise AssertionError("; ".join(failures))


def timing(device: torch.device, quick: bool) -> dict[str, Any]:
    """Joint, MCR and input-space MCR at full shapes (tiny with ``quick``) on ``device``."""
    if quick:
        configs = [
            (ModelConfig.resnet18(4, (1, 32, 24), (3, 2, 32, 32)), ["joint", "mcr:4", "input:4"]),
            (ModelConfig.mosei(4, 6, 1), ["joint", "mcr:4", "input:4"]),
        ]
    else:
        configs = [
            (
                ModelConfig.resnet18(32, (1, 257, 188), (3, 3, 224, 224)),
                ["joint", "mcr:32", "mcr:8", "input:8"],
            ),
            (ModelConfig.mosei(32, 50, 5), ["joint", "mcr:32", "input:32"]),
        ]
    args = argparse.Namespace(
        repeats=2 if quick else 10,
        steps=1 if quick else 3,
        warmup=1 if quick else 2,
        no_memory=device.type != "cuda",
    )
    out: dict[str, Any] = {
        "repeats": args.repeats,
        "steps_per_repeat": args.steps,
        "warmup_rounds": args.warmup,
        "clock": clock_name(device),
        "memory": "torch.cuda.max_memory_allocated" if device.type == "cuda" else "skipped on CPU",
        "models": {},
    }
    for config, specs in configs:
        variants = [Variant.parse(s) for s in specs]
        out["models"][config.name] = bench_model(config, variants, args, device)
    return out


# --------------------------------------------------------------------------- main


def summary(report: dict[str, Any]) -> str:
    lines = [
        f"GPU check on {report['meta']['environment'].get('gpu', report['meta']['environment']['device'])}"
    ]
    for name, entry in report["checks"].items():
        status = entry["status"]
        if entry["details"].get("skipped"):
            status = f"skipped ({entry['details']['skipped']})"
        lines.append(f"  {name:10s} {status}" + (f": {entry['error']}" if "error" in entry else ""))
    timing_result = report.get("timing")
    if isinstance(timing_result, dict) and "models" in timing_result:
        for model, res in timing_result["models"].items():
            for v in res["variants"].values():
                mem = v.get("memory")
                mem_text = (
                    f", {mem['step_bytes'] / 2**20:.0f} MiB (x{mem['vs_joint']:.2f})" if mem else ""
                )
                lines.append(
                    f"  {model:8s} {v['label']:26s} {v['time_s']['median'] * 1e3:8.2f} ms "
                    f"(x{v['time_vs_joint']['median']:.3f} joint){mem_text}"
                )
    lines.append("OK" if report["ok"] else "FAILED")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "expected a CUDA device, but torch.cuda.is_available() is False; "
            "run with --device cpu for a dry run"
        )
    started = time.time()
    command = "python -m benchmarks.gpu_check " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "meta": {
            "command": command.strip(),
            "quick": args.quick,
            "environment": environment(device),
            "tf32": {
                "matmul": torch.backends.cuda.matmul.allow_tf32,
                "cudnn": torch.backends.cudnn.allow_tf32,
            },
        },
        "checks": {},
    }
    with _Check(report, "agreement").run() as details:
        check_agreement(device, details)
    with _Check(report, "sync_free").run() as details:
        check_sync_free(device, args.quick, details)
    with _Check(report, "autocast").run() as details:
        check_autocast(device, args.quick, details)
    if not args.no_timing:
        try:
            report["timing"] = timing(device, args.quick)
        except Exception as err:
            report["timing"] = {
                "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc(limit=6),
            }
    report["ok"] = all(c["status"] == "ok" for c in report["checks"].values()) and not (
        isinstance(report.get("timing"), dict) and "error" in report["timing"]
    )
    report["meta"]["wall_s"] = round(time.time() - started, 1)
    report["provenance"] = provenance(started, arguments=argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=_json_default))
    print(summary(report))
    print(f"wrote {args.out} in {report['meta']['wall_s']} s")
    return report


def _json_default(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return str(value)


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
