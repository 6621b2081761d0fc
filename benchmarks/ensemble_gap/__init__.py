"""Where the ensemble's advantage over MCR comes from, and whether a fusion-side remedy keeps it
(docs/examples/ensemble-gap.md): :mod:`~benchmarks.ensemble_gap.protocol` (settings, trials,
one training run), :mod:`~benchmarks.ensemble_gap.remedies` (diagnostics and remedies on a
trained model's outputs), :mod:`~benchmarks.ensemble_gap.analysis` (per seed, pooled, the
rule), :mod:`~benchmarks.ensemble_gap.report` (tables), :mod:`~benchmarks.ensemble_gap.run`
(the command line, on :func:`benchmarks.harness.sweep.run_sweep`)."""
