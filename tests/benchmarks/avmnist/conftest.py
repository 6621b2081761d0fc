"""The tiny AV-MNIST source of the pipeline's tests, for the benchmark's."""

from tests.examples.avmnist.conftest import avmnist_root

__all__ = ["avmnist_root"]
