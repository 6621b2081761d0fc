"""Walks over autograd graphs: which leaf tensors an output depends on."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from torch import Tensor


def graph_leaves(
    roots: Iterable[Tensor], *, stops: Iterable[Tensor] = (), max_nodes: int | None = None
) -> Iterator[Tensor]:
    """The leaf tensors (those autograd accumulates a gradient into) that the graphs of ``roots``
    reach, each once, lazily. The walk does not pass the nodes that produced ``stops``, and
    ends after ``max_nodes`` nodes when given."""
    stopped = {id(t.grad_fn) for t in stops if t.grad_fn is not None}
    stack: list[Any] = [t.grad_fn for t in roots if t.grad_fn is not None]
    seen: set[int] = set()
    found: set[int] = set()
    while stack and (max_nodes is None or len(seen) < max_nodes):
        node = stack.pop()
        if node is None or id(node) in seen or id(node) in stopped:
            continue
        seen.add(id(node))
        variable = getattr(node, "variable", None)  # AccumulateGrad nodes hold their leaf
        if isinstance(variable, Tensor) and id(variable) not in found:
            found.add(id(variable))
            yield variable
        stack.extend(next_node for next_node, _ in node.next_functions)
