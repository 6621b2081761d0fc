"""Speed and memory measurements of MCR (see docs/performance.md).

Run from the repository root:

* ``python -m benchmarks.overhead``: step time and peak memory of joint training, MCR, MCR with
  input-space perturbations and the modulation baselines, plus MCR's cost as P and M grow.
* ``python -m benchmarks.gpu_check``: a three-minute readiness check on a CUDA machine
  (``--device cpu --quick`` is a dry run of everything but the CUDA-only parts).
"""
