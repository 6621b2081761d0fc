"""``python -m benchmarks.ensemble_gap``: see :mod:`benchmarks.ensemble_gap.run`."""

from benchmarks.ensemble_gap.run import main

if __name__ == "__main__":
    main()
