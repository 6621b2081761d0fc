"""AV-MNIST: degraded MNIST images paired with spoken digits (FSDD), from the original files."""
