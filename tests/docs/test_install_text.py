"""What the README and the docs tell a new user to type agrees with the repository.

The package is not published: no page may give ``pip install mcr-reg`` as a command to run.
The README opens with two commands (the main job, the tests) whose pins, extras and test
command are the ones ``.ci/run`` uses; a workflow runs ``.ci/run``; the quick subset the README
offers keeps the package's exactness tests; what the documented commands write is ignored by
git.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.blocks import ROOT, markdown_files, parse_blocks

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    tomllib = pytest.importorskip("tomli", reason="needs tomli on Python 3.10")

README = ROOT / "README.md"
CI_SCRIPT = ROOT / ".ci" / "run"
WORKFLOWS = ROOT / ".github" / "workflows"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SHELL_LANGS = {"bash", "sh", "shell", "console", "text", ""}

#: ``pip install mcr-reg`` or ``pip install "mcr-reg[plot]"``: the package from an index.
FROM_INDEX = re.compile(r"pip install\s+['\"]?mcr-reg\b")
PINS = re.compile(r"\b(torch(?:vision)?)==([\w.+]+)")
QUICK_SUBSET = 'python -m pytest -m "not slow"'


def _shell_blocks(path: Path) -> list[str]:
    return [b.code for b in parse_blocks(path) if b.lang in SHELL_LANGS]


def _paragraphs_outside_code(path: Path) -> list[str]:
    text = re.sub(
        r"^(`{3,}|~{3,}).*?^\1\s*$", "", path.read_text(encoding="utf-8"), flags=re.M | re.S
    )
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


def _readme_commands() -> list[str]:
    blocks = [b for b in parse_blocks(README) if b.lang == "bash"]
    assert len(blocks) >= 2, "the README must open with two bash commands (main job, tests)"
    return [blocks[0].code.strip(), blocks[1].code.strip()]


def _pins(text: str) -> dict[str, str]:
    return dict(PINS.findall(text))


def _extras(command: str) -> set[str]:
    found = re.findall(r"pip install (?:--?[\w-]+ )*-e \"?\.\[([\w,-]+)\]\"?", command)
    return {e for group in found for e in group.split(",")}


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_gives_pip_install_mcr_reg_as_a_command(page: Path) -> None:
    """A command block never installs the unpublished package from an index; prose may name
    ``pip install mcr-reg`` only in a paragraph that says a release is what gives it."""
    for code in _shell_blocks(page):
        assert not FROM_INDEX.search(code), f"{page.name}: a command block runs {code!r}"
    for paragraph in _paragraphs_outside_code(page):
        if FROM_INDEX.search(paragraph):
            assert "release" in paragraph, (
                f"{page.name}: `pip install mcr-reg` named without saying it needs a release:\n"
                f"{paragraph}"
            )


def test_readme_says_the_package_is_installed_from_the_repository() -> None:
    head = README.read_text(encoding="utf-8").split("```", 1)[0]
    assert "not on PyPI" in head and "from this repository" in head


def test_install_page_clones_the_project_repository() -> None:
    text = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    clone = re.search(r"git clone (\S+)", text)
    assert clone, "docs/index.md must show how to get the repository"
    source = PYPROJECT["project"]["urls"]["Source"]
    assert clone.group(1).removesuffix(".git") == source
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    for code in _shell_blocks(ROOT / "docs" / "index.md"):
        assert _extras(code) <= extras, code


def test_the_readme_commands_start_fresh_and_use_ci_pins_and_test_command() -> None:
    main_job, tests = _readme_commands()
    ci = CI_SCRIPT.read_text(encoding="utf-8")
    for command in (main_job, tests):
        assert command.startswith("python3 -m venv .venv && . .venv/bin/activate && "), command
        assert _pins(command) == _pins(ci) and set(_pins(ci)) == {"torch", "torchvision"}
        assert _extras(command) <= set(PYPROJECT["project"]["optional-dependencies"]), command
    assert "python -m benchmarks.multiview " in main_job
    assert tests.endswith("&& python -m pytest")
    assert re.search(r"^python -m pytest$", ci, flags=re.M), ".ci/run must run the README's command"
    assert _extras(tests) == _extras(ci), "CI installs other extras than the README's test command"


def test_cpu_only_alternative_uses_the_same_pins() -> None:
    text = README.read_text(encoding="utf-8")
    lines = [p for p in _paragraphs_outside_code(README) if "download.pytorch.org/whl/cpu" in p]
    assert len(lines) == 1, "the README offers one CPU-only install line"
    assert "not the tested path" in lines[0]
    assert _pins(lines[0]) == _pins(_readme_commands()[1])
    assert text.index("download.pytorch.org/whl/cpu") > text.index(_readme_commands()[1])


def test_readme_offers_the_quick_subset_with_its_duration() -> None:
    text = README.read_text(encoding="utf-8")
    assert QUICK_SUBSET in text
    assert any(
        m.split(":")[0] == "slow" for m in PYPROJECT["tool"]["pytest"]["ini_options"]["markers"]
    )
    around = text[text.index("The whole suite") : text.index(QUICK_SUBSET) + 600]
    assert len(re.findall(r"\d+ min", around)) >= 2, "say how long the suite and the subset take"


def _collected(*args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {line for line in proc.stdout.splitlines() if "::" in line}


def test_quick_subset_keeps_the_exactness_tests() -> None:
    """The gradient rule against its formula, gradcheck and DDP against one process are all in
    ``-m "not slow"``: nobody may mark them slow and so drop them from the quick check."""
    exactness = [
        "tests/mcr_reg/test_game.py",
        "tests/mcr_reg/test_functional.py",
        "tests/mcr_reg/test_distributed.py",
    ]
    everything = _collected(*exactness)
    assert len(everything) >= 20
    assert _collected(*shlex.split(QUICK_SUBSET)[3:], *exactness) == everything


def test_a_workflow_runs_the_ci_script() -> None:
    yaml = pytest.importorskip("yaml", reason="needs PyYAML (installed with the docs extra)")
    running = []
    for path in sorted(WORKFLOWS.glob("*.yml")):
        flow = yaml.safe_load(path.read_text(encoding="utf-8"))
        triggers = flow.get("on", flow.get(True))  # YAML 1.1 reads the key `on` as True
        steps = [s for job in flow["jobs"].values() for s in job.get("steps", [])]
        if any(".ci/run" in str(s.get("run", "")) for s in steps):
            running.append(path.name)
            assert "push" in triggers and "pull_request" in triggers, path.name
    assert running, "no workflow in .github/workflows runs .ci/run"


def test_what_the_documented_commands_write_is_ignored() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    written = set()
    for page in markdown_files():
        for code in _shell_blocks(page):
            for path in re.findall(r"(?:--out|-d)\s+([\w./$-]+)", code):
                # absolute and shell-variable paths and placeholders in capitals (DIR, OUT.json) are the
                # reader's; benchmarks/results/ holds committed measurements that the benchmark
                # commands rewrite on purpose
                if path.split("/")[0].split(".")[0].isupper() or path.startswith(("/", "$")):
                    continue
                if path.split("/")[0] != "benchmarks":
                    written.add(path.split("/")[0])
    assert {"runs", "data"} <= written
    assert written <= ignored, f"documented outputs not in .gitignore: {written - ignored}"


#: A count of the suite's tests ("1,351 tests", "1,173 of the suite's 1,351 tests", "760 passed"):
#: true on the day it was measured, wrong after the next test is added.
TEST_COUNT = re.compile(r"\b\d[\d,]*\s+(?:of the suite's\s+\d[\d,]*\s+)?(?:tests|passed)\b")


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_states_how_many_tests_there_are(page: Path) -> None:
    """Say which tests a command runs (the quick path leaves out the runs marked ``slow``),
    never how many: a count rots with the next test added."""
    text = re.sub(r"\s+", " ", page.read_text(encoding="utf-8"))
    assert not TEST_COUNT.findall(text), (
        f"{page.name} states a test count: {TEST_COUNT.findall(text)}"
    )


def test_a_test_count_is_recognised() -> None:
    for stated in ("1,173 of the suite's 1,351 tests", "671 tests", "760 passed"):
        assert TEST_COUNT.search(stated), stated
    assert not TEST_COUNT.search("6 of 180 test accuracies moved by 1 to 7 test items")
