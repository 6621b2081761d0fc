"""The multi-view benchmark (docs/examples/multiview.md) on the pipeline of examples/multiview:
:mod:`~benchmarks.multiview.protocol` (plan and command line), :mod:`~benchmarks.multiview.view_sets`,
:mod:`~benchmarks.multiview.jobs` (one run and the choice of a trial), :mod:`~benchmarks.multiview.summary`
and :mod:`~benchmarks.multiview.stats` (paired tests), :mod:`~benchmarks.multiview.results` (the typed
result), :mod:`~benchmarks.multiview.report`, :mod:`~benchmarks.multiview.combine` (joining runs),
:mod:`~benchmarks.multiview.cost` (its cost benchmark) and :mod:`~benchmarks.multiview.run` (on
:func:`benchmarks.harness.sweep.run_sweep`)."""
