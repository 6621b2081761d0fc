"""The AV-MNIST benchmark (docs/examples/avmnist.md) on the pipeline of examples/avmnist:
:mod:`~benchmarks.avmnist.protocol` (methods, trials, budget, one run, the comparisons),
:mod:`~benchmarks.avmnist.report` (tables, plots, redrawing and joining results),
:mod:`~benchmarks.avmnist.run` (the command line, on
:func:`benchmarks.harness.sweep.run_sweep`)."""
