"""docs/architecture.md is what docs/scripts/architecture.py draws from the code now, and no
import arrow of mcr_reg/, examples/ or benchmarks/ points the wrong way."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location(
    "architecture", ROOT / "docs" / "scripts" / "architecture.py"
)
assert SPEC is not None and SPEC.loader is not None
architecture = importlib.util.module_from_spec(SPEC)
sys.modules["architecture"] = architecture  # dataclasses look their module up by name
SPEC.loader.exec_module(architecture)


def test_the_committed_page_is_what_the_script_draws_now() -> None:
    text = architecture.PAGE.read_text(encoding="utf-8")
    drawn = architecture.updated_page(text, architecture.render(architecture.build_graph()))
    assert drawn == text, "docs/architecture.md is stale: run python -m docs.scripts.architecture"


def test_no_arrow_points_the_wrong_way() -> None:
    assert architecture.wrong_arrows(architecture.build_graph()) == []


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


CLEAN = {
    "mcr_reg/__init__.py": "from mcr_reg.regularizer import MCRRegularizer\n",
    "mcr_reg/regularizer.py": "from mcr_reg import functional as F\nfrom . import _checks\n",
    "mcr_reg/_checks.py": "",
    "mcr_reg/functional/__init__.py": "from .divergence import jsd\n",
    "mcr_reg/functional/divergence.py": "import torch\n",
    "examples/__init__.py": "",
    "examples/common/__init__.py": "",
    "examples/common/trainer.py": "import mcr_reg\n",
    "examples/cremad/__init__.py": "",
    "examples/cremad/train.py": "from examples.common.trainer import fit\n",
    "benchmarks/__init__.py": "",
    "benchmarks/overhead.py": "from examples.cremad import train\nimport mcr_reg.functional\n",
}


def test_the_graph_reads_every_form_of_import(tmp_path: Path) -> None:
    graph = architecture.build_graph(_tree(tmp_path, CLEAN))
    arrows = {(a.source, a.target) for a in graph.arrows}
    assert arrows == {
        ("mcr_reg", "mcr_reg.regularizer"),
        ("mcr_reg.regularizer", "mcr_reg.functional"),  # from package import module
        ("mcr_reg.regularizer", "mcr_reg._checks"),  # relative
        ("mcr_reg.functional", "mcr_reg.functional.divergence"),  # relative, in a package
        ("examples.common.trainer", "mcr_reg"),
        ("examples.cremad.train", "examples.common.trainer"),  # from module import name
        ("benchmarks.overhead", "examples.cremad.train"),
        ("benchmarks.overhead", "mcr_reg.functional"),  # import a.b
    }
    assert architecture.wrong_arrows(graph) == []


def test_the_layers_of_named_units() -> None:
    layer = {
        unit: architecture.named_layer(unit)
        for unit in (
            "mcr_reg.functional",
            "mcr_reg",
            "mcr_reg.regularizer",
            "mcr_reg.terms",
            "examples",
            "examples.common",
            "examples.av_common",
            "examples.cremad",
            "benchmarks.harness",
        )
    }
    assert [v.key for v in layer.values()] == [
        *["core", "api", "api", "api"],
        *["kit", "kit", "kit", "pipelines", "benchmarks"],
    ]
    assert architecture.named_layer("mcr_reg._heads") is None  # decided by its imports
    with pytest.raises(ValueError, match="expected a module of mcr_reg, examples, benchmarks"):
        architecture.named_layer("tests.docs")


def test_a_private_module_stands_on_the_floor_of_what_it_imports(tmp_path: Path) -> None:
    files = {
        **CLEAN,
        "mcr_reg/_leaf.py": "import torch\n",
        "mcr_reg/_shim.py": "from mcr_reg._bridge import x\n",
        "mcr_reg/_bridge.py": "from mcr_reg.regularizer import MCRRegularizer\n",
    }
    graph = architecture.build_graph(_tree(tmp_path, files))
    assert graph.layers["mcr_reg._checks"].key == "core"
    assert graph.layers["mcr_reg._leaf"].key == "core"
    assert graph.layers["mcr_reg._bridge"].key == "api"
    assert graph.layers["mcr_reg._shim"].key == "api"  # through another private module
    assert architecture.wrong_arrows(graph) == []


@pytest.mark.parametrize(
    ("files", "found"),
    [
        (
            {"mcr_reg/cost.py": "from examples.common import trainer\n"},
            "mcr_reg.cost -> examples.common.trainer (package public API imports training kit)",
        ),
        (
            {"examples/common/data.py": "import benchmarks.overhead\n"},
            "examples.common.data -> benchmarks.overhead (training kit imports benchmarks)",
        ),
        (
            {"examples/ave/train.py": "from examples.cremad.train import main\n"},
            "examples.ave.train -> examples.cremad.train (a pipeline imports another pipeline)",
        ),
        (
            {"mcr_reg/functional/game.py": "from mcr_reg.regularizer import MCRRegularizer\n"},
            "mcr_reg.functional.game -> mcr_reg.regularizer "
            "(package core imports package public API)",
        ),
        (
            {
                "mcr_reg/functional/game.py": "from mcr_reg._bridge import x\n",
                "mcr_reg/_bridge.py": "from mcr_reg.regularizer import MCRRegularizer\n",
            },
            "mcr_reg.functional.game -> mcr_reg._bridge (package core imports package public API)",
        ),
        (
            {
                "examples/common/config.py": "def f():\n    from examples.common.trainer import fit\n",
                "examples/common/trainer.py": "import mcr_reg\nfrom . import config\n",
            },
            "examples.common.config -> examples.common.trainer (an import cycle)\n"
            "examples.common.trainer -> examples.common.config (an import cycle)",
        ),
    ],
    ids=[
        "package-to-kit",
        "kit-to-benchmarks",
        "pipeline-to-pipeline",
        "maths-to-api",
        "maths-to-api-through-a-private-module",
        "cycle",
    ],
)
def test_a_wrong_way_arrow_is_found(tmp_path: Path, files: dict[str, str], found: str) -> None:
    graph = architecture.build_graph(_tree(tmp_path, {**CLEAN, **files}))
    assert architecture.wrong_arrows(graph) == found.split("\n")


def test_the_page_is_rewritten_between_its_markers_only() -> None:
    begin, end = architecture.BEGIN, architecture.END
    page = f"# Title\n\nprose\n\n{begin}\nold\n{end}\n\nafter\n"
    assert architecture.updated_page(page, f"{begin}\nnew\n{end}") == (
        f"# Title\n\nprose\n\n{begin}\nnew\n{end}\n\nafter\n"
    )
    with pytest.raises(ValueError, match=r"expected architecture\.md to hold the markers"):
        architecture.updated_page("# no markers\n", "block")


def test_the_diagram_marks_a_wrong_way_arrow(tmp_path: Path) -> None:
    files = {**CLEAN, "examples/common/data.py": "import benchmarks.overhead\n"}
    graph = architecture.build_graph(_tree(tmp_path, files))
    drawn = "\n".join(architecture.mermaid(graph))
    assert "n_examples_common -. wrong way .-> n_benchmarks_overhead" in drawn
    assert "n_benchmarks_overhead --> n_examples_cremad" in drawn
    assert "kit -. wrong way .-> benchmarks" in "\n".join(architecture.floors(graph))
