"""Every measurement of MCR: accuracy protocols and cost (see docs/benchmarks.md).

Run from the repository root, each as a module:

* accuracy protocols, one package each on :mod:`benchmarks.harness`: ``python -m
  benchmarks.synthetic``, ``benchmarks.multiview``, ``benchmarks.avmnist``,
  ``benchmarks.ensemble_gap``, ``benchmarks.sampled_subsets`` (and ``benchmarks.recipes``);
* step cost: ``python -m benchmarks.overhead`` (step time and peak memory of joint training,
  MCR, MCR with input-space perturbations and the modulation baselines, plus MCR's cost as P
  and M grow), ``benchmarks.step_cost``, ``benchmarks.head_share``,
  ``benchmarks.jsd_accuracy``, ``benchmarks.crossmodal_cost``;
* ``python -m benchmarks.gpu_check``: a three-minute readiness check on a CUDA machine
  (``--device cpu --quick`` is a dry run of everything but the CUDA-only parts).
"""
