"""``python -m benchmarks.multiview``: see :mod:`benchmarks.multiview.run`."""

from benchmarks.multiview.run import main

if __name__ == "__main__":
    main()
