"""``python -m benchmarks.sampled_subsets``: see :mod:`benchmarks.sampled_subsets.run`."""

from benchmarks.sampled_subsets.run import main

if __name__ == "__main__":
    main()
