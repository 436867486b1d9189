"""Reverse mode on floats: the loop below the node that both surfaces' ``backward()`` run.

It visits the nodes an output depends on in reverse creation order, which is a
reverse topological order, so every node's cotangent is complete before it is
passed on. Finding those nodes is an explicit-stack walk, never recursion, so
graphs a million nodes deep are fine. It reads nodes only through
:class:`refgrad.kernel.Node` and ops only through their registry entries.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence, Sized
from operator import attrgetter
from typing import Final

from refgrad.errors import DomainError
from refgrad.kernel import Node, NodeT
from refgrad.ops import OpSpec

__all__ = [
    "backward_domain_error",
    "malformed_at",
    "malformed_rule",
    "reverse_accumulate",
    "reverse_topological",
    "rule_failure",
]

_by_position: Final = attrgetter("_position")
_isfinite: Final = math.isfinite


def reverse_topological(output: NodeT) -> list[NodeT]:
    """Every node ``output`` depends on (itself included), latest-created first."""
    seen = {output}
    stack = [output]
    mark = seen.add
    push = stack.append
    pop = stack.pop
    while stack:
        node = pop()
        first = node._first
        if first is None:
            continue
        if first not in seen:
            mark(first)
            push(first)
        second = node._second
        if second is not None and second not in seen:
            mark(second)
            push(second)
    # Creation order is topological; sorting by it is linear-time on the long
    # monotone runs that graphs produce (timsort merges runs).
    return sorted(seen, key=_by_position, reverse=True)


def _describe(node: Node) -> str:
    op = node.op
    assert op is not None  # only called for nodes made by an op
    operands = [repr(inp.data) for inp in node.inputs]
    operands += [f"{name}={value!r}" for name, value in zip(op.params, node.params, strict=True)]
    return f"{op.name}({', '.join(operands)})"


def backward_domain_error(node: Node, cause: str) -> DomainError:
    """The :class:`DomainError` for differentiating through ``node``: the op, its operands, ``cause``, its partials."""
    op = node.op
    assert op is not None
    formulas = ", ".join(op.partial_formulas)
    return DomainError(
        f"backward through {_describe(node)} = {node.data!r}: {cause}; its partial derivatives are ({formulas})"
    )


def malformed_rule(op: OpSpec, partials: object, operands: int) -> ValueError | None:
    """The error for a rule that did not return one partial derivative per operand (``None`` if it did).

    A programming error in the op's entry, not a point outside its domain: the same
    ``ValueError``, naming the op, in reverse mode, forward mode and under ``create_graph``.
    """
    if isinstance(partials, Sized):
        count = len(partials)
        if count == operands:
            return None
        got = f"{count} partial derivative(s)"
    else:
        got = "no tuple"  # the same words whether the bare answer is a float or a node
    return ValueError(
        f"malformed rule: the partials of op {op.name!r} returned {got} for its {operands} operand(s); "
        "a rule returns a tuple with one partial derivative per operand"
    )


def malformed_at(node: Node) -> ValueError | None:
    """The malformed-rule error for ``node``'s op, if its rule there is malformed (it is called again to see)."""
    op = node.op
    assert op is not None
    operands = node.inputs
    try:
        partials = op.partials(tuple(inp.data for inp in operands), node.data, node.params)
    except (ArithmeticError, ValueError, TypeError):
        return None
    return malformed_rule(op, partials, len(operands))


def rule_failure(node: Node, error: Exception) -> ValueError:
    """What a rule's failure at ``node`` (a float pass) means: a malformed rule, or a partial outside the domain.

    Called only once a pass has failed: the rule is called again, to tell the two apart.
    """
    malformed = malformed_at(node)
    if malformed is not None:
        return malformed
    return backward_domain_error(node, f"a partial derivative is not a finite real number ({error})")


def reverse_accumulate(output: NodeT, *, required: Iterable[NodeT] | None = None) -> dict[NodeT, float]:
    """d output / d node for every node ``output`` depends on, as floats.

    The engine's one reverse-mode loop, shared by :class:`Value` and the
    micrograd surface. Raises :class:`DomainError` naming the op whose partial
    derivative is not finite, or the first op that passed on a non-finite
    gradient: to any node, or, when ``required`` is given, to one of those
    nodes (a constant's gradient that overflows does not spoil the others).
    """
    order = reverse_topological(output)
    grads: dict[NodeT, float] = {output: 1.0}
    accumulated = grads.get
    node = output
    try:
        for node in order:
            x = node._first
            if x is None:
                continue  # a leaf: nothing to pass on
            cotangent = grads[node]
            op = node.op
            assert op is not None
            y = node._second
            # Unpacking checks that the rule returned one partial per operand
            # (a ValueError, told apart from a domain error below).
            if y is None:
                (dx,) = op.partials((x.data,), node.data, node.params)
                grads[x] = accumulated(x, 0.0) + cotangent * dx
            else:
                dx, dy = op.partials((x.data, y.data), node.data, node.params)
                grads[x] = accumulated(x, 0.0) + cotangent * dx
                # Read back: for x * x the first contribution is already in.
                grads[y] = accumulated(y, 0.0) + cotangent * dy
    except (ArithmeticError, ValueError) as error:
        raise rule_failure(node, error) from None
    except TypeError:  # a rule that returned a bare number (not a tuple), or something else gone wrong
        malformed = malformed_at(node)
        if malformed is None:
            raise
        raise malformed from None
    # One C-speed pass instead of a check per edge; the rare failure is then
    # traced to the first node (in processing order) that received a bad value.
    checked = grads.values() if required is None else [grads.get(node, 0.0) for node in required]
    if not all(map(_isfinite, checked)):
        raise _first_non_finite(order, grads)
    return grads


def _first_non_finite(order: Sequence[NodeT], grads: Mapping[NodeT, float]) -> DomainError:
    # A node's cotangent is final once processed, so the first node in the order
    # whose inputs received a non-finite gradient identifies the culprit op. The
    # seed is 1.0, so some op passed the non-finite value on: next() finds it.
    culprit = next(node for node in order if not all(_isfinite(grads[inp]) for inp in node.inputs))
    return backward_domain_error(culprit, "the gradient it passes on is not finite")
