"""The terms of ``L_MCR = λ_M·L_MIPD + λ_con·L_Con + λ_ceb·L_CEB + λ_uni·L_uni`` (paper eq. 6),
one ``nn.Module`` each, owning its options, parameters and validation.

``MCRRegularizer(head, mipd=MIPD(...), contrastive=Contrastive(...), ceb=CEB(...),
unimodal=Unimodal(...))`` sums the weighted terms; ``False`` leaves one out. A term of your own
is a subclass of :class:`Term` passed as ``extra_terms=[...]``.
"""

from mcr_reg.terms.base import StepInputs, Term, TermSetting
from mcr_reg.terms.ceb import CEB
from mcr_reg.terms.contrastive import Contrastive
from mcr_reg.terms.mipd import MIPD
from mcr_reg.terms.unimodal import Unimodal

__all__ = ["CEB", "MIPD", "Contrastive", "StepInputs", "Term", "TermSetting", "Unimodal"]
