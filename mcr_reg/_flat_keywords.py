"""The flat keywords of ``MCRRegularizer`` (``mipd_weight=``, ``temperature=``, ...), kept for
one release: they build the term objects and say, once per call site, how to write them now.

Deprecated in 0.3, removed in 0.4 (CHANGELOG.md).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from mcr_reg._messages import user_stacklevel
from mcr_reg.terms import CEB, MIPD, Contrastive, Term, Unimodal

#: flat keyword -> (term, its option)
FLAT_KEYWORDS: dict[str, tuple[str, str]] = {
    "mipd_weight": ("mipd", "weight"),
    "num_permutations": ("mipd", "num_permutations"),
    "subsets": ("mipd", "subsets"),
    "sampled_subsets": ("mipd", "sampled_subsets"),
    "perturbation": ("mipd", "perturbation"),
    "noise_scale": ("mipd", "noise_scale"),
    "perturbed_rows": ("mipd", "perturbed_rows"),
    "head_gradient": ("mipd", "head_gradient"),
    "detach_reference": ("mipd", "detach_reference"),
    "contrastive_weight": ("contrastive", "weight"),
    "temperature": ("contrastive", "temperature"),
    "projection_dim": ("contrastive", "projection_dim"),
    "gather_distributed": ("contrastive", "gather_distributed"),
    "ceb_weight": ("ceb", "weight"),
    "ceb_hidden_dim": ("ceb", "hidden_dim"),
    "unimodal_weight": ("unimodal", "weight"),
}
#: ``contrastive_labels`` maps labels to classes for both terms that compare classes
BOTH_CLASSES = "contrastive_labels"
TERM_TYPES: dict[str, type[Term]] = {
    "mipd": MIPD,
    "contrastive": Contrastive,
    "ceb": CEB,
    "unimodal": Unimodal,
}


def terms_from_flat(
    given: Mapping[str, Term | bool | str | None], flat: Mapping[str, Any]
) -> dict[str, Term | None]:
    """The four terms from the term arguments (``given``: a term, True for the default one,
    False or None for none) and the deprecated flat keywords ``flat``; a term whose weight is 0
    is left out. ``contrastive="ntxent"``/``"supcon"`` (a string) is the flat spelling of
    ``Contrastive(kind=...)``."""
    options: dict[str, dict[str, Any]] = {name: {} for name in TERM_TYPES}
    spelled: list[str] = []
    for key, value in flat.items():
        if key == BOTH_CLASSES:
            options["mipd"]["classes"] = options["contrastive"]["classes"] = value
        elif key in FLAT_KEYWORDS:
            term, option = FLAT_KEYWORDS[key]
            options[term][option] = value
        else:
            raise TypeError(f"MCRRegularizer() got an unexpected keyword argument {key!r}")
        spelled.append(f"{key}={value!r}")
    kind = given.get("contrastive")
    if isinstance(kind, str):
        options["contrastive"]["kind"] = kind
        spelled.append(f"contrastive={kind!r}")
    terms = {name: _term(name, given[name], options[name]) for name in TERM_TYPES}
    if spelled:
        _warn_deprecated(spelled, options)
    return terms


def _term(name: str, value: Term | bool | str | None, options: dict[str, Any]) -> Term | None:
    cls = TERM_TYPES[name]
    if isinstance(value, Term):
        if options:
            raise TypeError(
                f"MCRRegularizer got {name}={type(value).__name__}(...) and the flat keywords "
                f"for the same term ({', '.join(sorted(options))}): give the options to the "
                f"{type(value).__name__} object only"
            )
        if not isinstance(value, cls):
            raise TypeError(f"expected {name}= to be a {cls.__name__}, got {type(value).__name__}")
        term: Term | None = value
    elif (
        value is None
        or isinstance(value, bool)
        or (isinstance(value, str) and name == "contrastive")
    ):
        checked = cls(**options)  # the flat options are checked even when the term is left out
        # on when asked for, or when its flat weight is given (ceb_weight=1 with ceb=False,
        # the default; a weight of 0 leaves it out below)
        on = value is True or isinstance(value, str) or "weight" in options
        term = checked if on else None
    else:
        raise TypeError(
            f"expected {name}= to be a {cls.__name__}, True (the default term) or False "
            f"(no {name} term), got {value!r}"
        )
    return term if term is not None and term.weight > 0 else None


def _warn_deprecated(spelled: list[str], options: dict[str, dict[str, Any]]) -> None:
    new = []
    for name, opts in options.items():
        if not opts:
            continue
        if opts.get("weight", None) == 0:
            new.append(f"{name}=False")
            continue
        args = ", ".join(f"{k}={v!r}" for k, v in opts.items())
        new.append(f"{name}={TERM_TYPES[name].__name__}({args})")
    warnings.warn(
        f"MCRRegularizer({', '.join(spelled)}) uses flat keywords that are deprecated since 0.3 "
        f"and will be removed in 0.4: write MCRRegularizer(..., {', '.join(new)}) with the terms "
        "of mcr_reg.terms (MIPD, Contrastive, CEB, Unimodal)",
        DeprecationWarning,
        stacklevel=user_stacklevel(),
    )


#: the flat attributes of the regularizer -> (term, its attribute); read or written with a
#: DeprecationWarning (the weight of a term that is left out reads 0, its modules None)
FLAT_ATTRIBUTES: dict[str, tuple[str, str]] = {
    **{k: v for k, v in FLAT_KEYWORDS.items() if k not in ("subsets", "ceb_hidden_dim")},
    "subsets_spec": ("mipd", "subsets_spec"),
    "ceb_hidden_dim": ("ceb", "hidden_dim"),
    "projections": ("contrastive", "projections"),
    "ceb_head": ("ceb", "head"),
    "unimodal_heads": ("unimodal", "heads"),
}


def _warn_attribute(name: str) -> tuple[str, str]:
    term, attribute = FLAT_ATTRIBUTES[name]
    warnings.warn(
        f"MCRRegularizer.{name} is deprecated since 0.3 and will be removed in 0.4: use "
        f"mcr.{term}.{attribute} (the {term} term of mcr_reg.terms)",
        DeprecationWarning,
        stacklevel=user_stacklevel(),
    )
    return term, attribute


def read_flat_attribute(terms: Mapping[str, object], name: str) -> Any:
    term_name, attribute = _warn_attribute(name)
    term = terms.get(term_name)
    if not isinstance(term, Term):
        return 0.0 if attribute == "weight" else None
    return getattr(term, attribute)


def write_flat_attribute(terms: Mapping[str, object], name: str, value: object) -> None:
    term_name, attribute = _warn_attribute(name)
    term = terms.get(term_name)
    if not isinstance(term, Term):
        raise AttributeError(
            f"cannot set MCRRegularizer.{name}: this regularizer has no {term_name} term"
        )
    setattr(term, attribute, value)
