"""Every Python code block of the documentation runs as printed, so the docs cannot rot.

Each block runs alone, in a fresh namespace (what a reader who copies that one block gets), in
a temporary working directory, with torch's global RNG restored afterwards. No block builds on
the blocks before it: a step-by-step page repeats its few set-up lines in each block instead.
A block that uses a deprecated spelling of the package's API fails (the warning is an error).
A ``text`` block that a page announces as a block's output ("What it printed for us:", "the call
stops with:") must be what the nearest Python block above it prints, whitespace aside.
Blocks with a directive (see :mod:`tests.docs.blocks`) get their own tests: ``requires`` blocks
run (alone) when the module is importable; ``run: torchrun`` blocks are launched as scripts
with two gloo processes; ``skip`` blocks are compiled and skipped with their reason.
"""

from __future__ import annotations

import contextlib
import doctest
import importlib.util
import io
import os
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.docs.blocks import (
    DOCTEST_LANGS,
    PYTHON_LANGS,
    ROOT,
    Block,
    executable,
    markdown_files,
    parse_blocks,
)

PAGES = {p: executable(parse_blocks(p)) for p in markdown_files()}
PLAIN = [b for bs in PAGES.values() for b in bs if b.directive is None]
SPECIAL = [b for bs in PAGES.values() for b in bs if b.directive is not None]


def _run_block(block: Block, namespace: dict[str, Any]) -> None:
    if block.lang in DOCTEST_LANGS:
        test = doctest.DocTestParser().get_doctest(
            block.code, namespace, block.where, str(block.path), block.line - 1
        )
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        runner.run(test, clear_globs=False)
        if runner.failures:
            pytest.fail(f"{runner.failures} doctest example(s) failed in {block.where}")
        return
    # pad with newlines so that tracebacks show the Markdown file's own line numbers
    code = compile("\n" * (block.line - 1) + block.code, str(block.path), "exec")
    exec(code, namespace)


def _run_alone(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run ``block`` alone; what it printed."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict[str, Any] = {"__name__": "__main__"}
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # a page teaches the current API: a deprecation of the package's fails the block
        warnings.filterwarnings("error", ".*(MCRRegularizer|mcr_reg)", DeprecationWarning)
        try:
            with contextlib.redirect_stdout(io.StringIO()) as printed:
                _run_block(block, namespace)
        except Exception as err:
            raise AssertionError(f"code block at {block.where} failed: {err!r}") from err
    return printed.getvalue()


def test_the_documentation_has_runnable_blocks() -> None:
    """Guards the collector itself: the pages that must teach by example do."""
    with_python = {p.name for p, bs in PAGES.items() if bs}
    for page in ("quickstart.md", "semantics.md", "concepts.md", "monitoring.md", "faq.md"):
        assert page in with_python, f"docs/{page} lost its Python examples"
    assert sum(len(bs) for bs in PAGES.values()) >= 15


def test_directives_are_known_and_few() -> None:
    """Skips need a reason and must stay rare; `run:` supports torchrun only."""
    skips = [b for b in SPECIAL if b.kind == "skip"]
    assert len(skips) <= 3, [b.where for b in skips]
    for b in SPECIAL:
        if b.kind == "run":
            assert shlex.split(b.directive[1])[0] == "torchrun", b.where  # type: ignore[index]


def _block_id(block: Block) -> str:
    return block.where.replace(os.sep, "/")


@pytest.mark.parametrize("block", PLAIN, ids=_block_id)
def test_code_block_runs_as_printed(
    block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run_alone(block, tmp_path, monkeypatch)


def _special_id(block: Block) -> str:
    return f"{block.kind}:{block.where.replace(os.sep, '/')}"


@pytest.mark.parametrize(
    "block", [b for b in SPECIAL if b.kind in ("skip", "requires")], ids=_special_id
)
def test_special_blocks(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Compile every such block; run ``requires`` blocks where their module exists."""
    compile(block.code, block.where, "exec")
    kind, arg = block.directive  # type: ignore[misc]
    if kind == "skip":
        pytest.skip(f"{block.where}: {arg}")
    if importlib.util.find_spec(arg) is None:
        pytest.skip(f"{block.where} needs {arg}, which is not installed (syntax checked)")
    _run_alone(block, tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.ddp
@pytest.mark.parametrize("block", [b for b in SPECIAL if b.kind == "run"], ids=_special_id)
def test_torchrun_blocks(block: Block, tmp_path: Path) -> None:
    """Launch the block as a script under torchrun (CPU, gloo), exactly as the page says."""
    args = shlex.split(block.directive[1])[1:]  # type: ignore[index]
    if "--standalone" not in args:
        args.insert(0, "--standalone")
    script = tmp_path / "snippet.py"
    script.write_text(block.code, encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", *args, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"{block.where} under torchrun:\n{proc.stdout}\n{proc.stderr}"


#: The sentence before a ``text`` block that presents it as the output of the block above.
_ANNOUNCES_OUTPUT = re.compile(r"\b(printed|prints|stops with|warns|raises)\b.*:\s*$", re.I)


def _announced_outputs() -> list[tuple[Block, Block, str]]:
    """``(python block, text block, announcing line)`` for every output a page quotes."""
    found = []
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        blocks = parse_blocks(page)
        for i, block in enumerate(blocks):
            if block.lang != "text":
                continue
            before = [line for line in lines[: block.line - 2] if line.strip()]
            if not before or not _ANNOUNCES_OUTPUT.search(before[-1]):
                continue
            above = [b for b in blocks[:i] if b.lang in PYTHON_LANGS and b.directive is None]
            assert above, f"{block.where} quotes an output, but no Python block is above it"
            found.append((above[-1], block, before[-1]))
    return found


OUTPUTS = _announced_outputs()


def test_the_quoted_outputs_are_found() -> None:
    assert {b.path.name for _, b, _ in OUTPUTS} >= {"integration.md", "monitoring.md"}


@pytest.mark.parametrize(
    ("block", "quoted", "announcing"), OUTPUTS, ids=[_block_id(q) for _, q, _ in OUTPUTS]
)
def test_a_quoted_output_is_what_the_block_prints(
    block: Block, quoted: Block, announcing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    named = re.search(r"torch (\d+\.\d+\.\d+)", announcing)
    if named and not torch.__version__.startswith(named[1]):
        pytest.skip(f"{quoted.where} is the output under torch {named[1]}, not {torch.__version__}")
    printed = " ".join(_run_alone(block, tmp_path, monkeypatch).split())
    assert " ".join(quoted.code.split()) in printed, (
        f"{quoted.where} is not what {block.where} prints now:\n{printed}"
    )
