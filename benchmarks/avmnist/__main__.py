"""``python -m benchmarks.avmnist``: see :mod:`benchmarks.avmnist.run`."""

from benchmarks.avmnist.run import main

if __name__ == "__main__":
    main()
