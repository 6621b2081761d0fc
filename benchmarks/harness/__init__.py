"""The one harness every accuracy and cost benchmark runs on: job spec -> train -> typed result
-> report.

* :mod:`~benchmarks.harness.sweep`: :func:`~benchmarks.harness.sweep.run_sweep`, the run loop
  (``{key: job}`` in, ``{key: result}`` out; stored runs are loaded, the rest trained in worker
  processes under a progress bar).
* :mod:`~benchmarks.harness.store`: where finished runs are kept so a stopped benchmark
  resumes (JSON per run, or ``torch.save`` per run for results holding tensors).
* :mod:`~benchmarks.harness.fit`: one training run of a method to early stopping, scored.
* :mod:`~benchmarks.harness.tuning`: the shared tuning grid, budgets and the choice of a trial
  on validation accuracy.
* :mod:`~benchmarks.harness.paired_stats`: paired comparisons over seeds (sign and Wilcoxon
  tests, one rule for ties).
* :mod:`~benchmarks.harness.result_files`: typed results (dataclasses) to and from JSON,
  reading a versioned ``results.json`` back, the command line of a report module.
* :mod:`~benchmarks.harness.progress`: the progress bar and per-group lines.
* :mod:`~benchmarks.harness.timing`: interleaved timing of training steps (cost benchmarks).

Provenance (command, commit, versions, machine) is :mod:`examples.common.provenance`, which the
training kit's reports use too. How to add a benchmark: docs/benchmarks.md.
"""
