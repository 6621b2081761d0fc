"""What ``subsets="sampled"`` does to accuracy and time on the six views of UCI mfeat
(docs/performance.md): :mod:`~benchmarks.sampled_subsets.protocol` (arms, runs, the rule),
:mod:`~benchmarks.sampled_subsets.report` (the table), :mod:`~benchmarks.sampled_subsets.run`
(the command line, on :func:`benchmarks.harness.sweep.run_sweep`)."""
