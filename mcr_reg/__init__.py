"""mcr-reg: the Multimodal Competition Regularizer (MCR) for PyTorch.

Kontras et al., "Balancing Multimodal Training Through Game-Theoretic Regularization".

>>> from mcr_reg import MCRRegularizer
"""

from mcr_reg import functional
from mcr_reg._version import __version__
from mcr_reg.calls import FusionCall
from mcr_reg.capture import Composed, Concatenated, FusionInputs
from mcr_reg.diagnostics import ImportanceTracker
from mcr_reg.probe import GradientPath, GradientPathReport, check_gradient_path
from mcr_reg.regularizer import MCROutput, MCRRegularizer

__all__ = [
    "Composed",
    "Concatenated",
    "FusionCall",
    "FusionInputs",
    "GradientPath",
    "GradientPathReport",
    "ImportanceTracker",
    "MCROutput",
    "MCRRegularizer",
    "__version__",
    "check_gradient_path",
    "functional",
]
