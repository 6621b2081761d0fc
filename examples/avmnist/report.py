"""Write ``results.md`` and the plots of an AV-MNIST benchmark again from its ``results.json``.

    python -m examples.avmnist.report runs/avmnist-quick/results.json --out runs/avmnist-quick

No training: the tables and figures come from the stored results only.
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as a file: make the repository root importable
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from examples.avmnist.run import markdown, plot


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("results", type=Path, help="a results.json written by examples.avmnist.run")
    p.add_argument("--out", type=Path, required=True, help="folder for results.md and the plots")
    args = p.parse_args(argv)
    try:
        result = json.loads(args.results.read_text())
    except (OSError, ValueError) as err:
        raise SystemExit(
            f"{args.results}: expected a results.json of the benchmark: {err}"
        ) from None
    if not isinstance(result, dict) or "methods" not in result or "paired" not in result:
        raise SystemExit(
            f"{args.results}: expected the keys 'methods' and 'paired', got another file"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(markdown(result))
    plot(result, args.out)
    print(f"wrote {args.out}/results.md, accuracy.png and probes.png")


if __name__ == "__main__":
    main()
