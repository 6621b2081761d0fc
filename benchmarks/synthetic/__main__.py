"""``python -m benchmarks.synthetic``: see :mod:`benchmarks.synthetic.run`."""

from benchmarks.synthetic.run import main

if __name__ == "__main__":
    main()
