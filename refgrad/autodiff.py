"""Differentiation, driven entirely by the registry's partial-derivative rules.

Reverse mode (:func:`grad`, :meth:`refgrad.Value.backward`) runs the float loop
of :mod:`refgrad.reverse`, below the node. With ``create_graph=True`` the same
rules are called on nodes instead of floats and the gradients are graphs
themselves, walked in the same reverse creation order.

Forward mode (:func:`jvp`) runs the same rules in creation order.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Final, Literal, cast, overload

from refgrad.errors import DomainError
from refgrad.numeric import as_finite_float, type_name
from refgrad.reverse import (
    backward_domain_error,
    malformed_at,
    malformed_rule,
    reverse_accumulate,
    reverse_topological,
    rule_failure,
)
from refgrad.value import Gradients, Value, gradients

__all__ = ["Gradients", "grad", "gradients", "hessian", "jvp", "nodes"]

_isfinite: Final = math.isfinite


def nodes(output: Value) -> tuple[Value, ...]:
    """Every node ``output`` depends on, itself included, in creation (topological) order.

    Operands come before the nodes that use them, so a single pass in this
    order can evaluate, count or draw the graph without recursion.
    """
    if not isinstance(output, Value):
        raise TypeError(f"output must be a Value, got {type_name(output)}")
    order = reverse_topological(output)
    order.reverse()
    return tuple(order)


def _as_inputs(inputs: object, what: str) -> tuple[Value, ...]:
    if isinstance(inputs, Value):
        return (inputs,)
    if isinstance(inputs, str | bytes) or not isinstance(inputs, Iterable):
        raise TypeError(f"{what} must be a Value or an iterable of Values, got {type_name(inputs)}")
    nodes: list[Value] = []
    for position, item in enumerate(cast(Iterable[object], inputs)):
        if not isinstance(item, Value):
            raise TypeError(f"{what}[{position}] must be a Value, got {type_name(item)}")
        nodes.append(item)
    return tuple(nodes)


def _depending_on(order: Sequence[Value], inputs: tuple[Value, ...]) -> set[Value]:
    """The nodes of ``order`` (latest first) that are among ``inputs`` or depend on one of them."""
    found = set(inputs)
    for node in reversed(order):  # creation order: operands before the nodes that use them
        if node not in found and any(inp in found for inp in node.inputs):
            found.add(node)
    return found


def _reverse_accumulate_graph(output: Value, required: tuple[Value, ...]) -> dict[Value, Value]:
    """Like :func:`reverse_accumulate`, but every gradient is itself a node.

    The same partial-derivative rules, called on nodes: the result can be
    differentiated again, to any order. Only nodes that depend on ``required``
    pass gradients on (as in torch, a branch that does not lead to an input is
    never differentiated, so a partial that does not exist there does not matter).
    """
    order = reverse_topological(output)
    relevant = _depending_on(order, required)
    grads: dict[Value, Value] = {output: Value(1.0)}
    for node in order:
        inputs = node.inputs
        if not inputs or node not in relevant:
            continue
        op = node.op
        assert op is not None
        cotangent = grads[node]
        try:
            # A rule builds its node partials with its operands' own operators: refgrad nodes here.
            partials = cast("tuple[Value | float, ...]", op.partials(inputs, node, node.params))
        except (ArithmeticError, ValueError) as error:
            raise backward_domain_error(node, f"a partial derivative is not a finite real number ({error})") from None
        malformed = malformed_rule(op, partials, len(inputs))
        if malformed is not None:
            raise malformed
        for inp, partial in zip(inputs, partials, strict=True):
            if inp not in relevant:
                continue
            # A partial of exactly 1.0 (add, sub's first input) passes the cotangent on unchanged.
            contribution = cotangent if isinstance(partial, float) and partial == 1.0 else cotangent * partial
            previous = grads.get(inp)
            grads[inp] = contribution if previous is None else previous + contribution
    return grads


@overload
def grad(
    output: Value, inputs: Value | Iterable[Value], *, create_graph: Literal[False] = False
) -> tuple[float, ...]: ...
@overload
def grad(output: Value, inputs: Value | Iterable[Value], *, create_graph: Literal[True]) -> tuple[Value, ...]: ...
@overload
def grad(
    output: Value, inputs: Value | Iterable[Value], *, create_graph: bool
) -> tuple[float, ...] | tuple[Value, ...]: ...
def grad(
    output: Value, inputs: Value | Iterable[Value], *, create_graph: bool = False
) -> tuple[float, ...] | tuple[Value, ...]:
    """d output / d input for each of ``inputs``, as a tuple aligned with them.

    Like ``torch.autograd.grad``: an input ``output`` does not depend on gets
    ``0.0``, a repeated input gets its gradient at each position. With
    ``create_graph=True`` the gradients are nodes, so they can be
    differentiated again (to any order).
    """
    if not isinstance(output, Value):
        raise TypeError(f"output must be a Value, got {type_name(output)}")
    nodes = _as_inputs(inputs, "inputs")
    if not isinstance(create_graph, bool):
        raise TypeError(f"create_graph must be a bool, got {type_name(create_graph)}")
    if create_graph:
        graph_grads = _reverse_accumulate_graph(output, nodes)
        return tuple(graph_grads[node] if node in graph_grads else Value(0.0) for node in nodes)
    float_grads = reverse_accumulate(output, required=nodes)
    return tuple(float_grads.get(node, 0.0) for node in nodes)


def jvp(output: Value, inputs: Value | Iterable[Value], tangents: float | Iterable[float]) -> float:
    """The directional derivative of ``output`` along ``tangents`` (forward mode).

    Sum over i of d output / d inputs[i] * tangents[i], computed by pushing
    tangents through the graph in creation order with the registry's partials;
    no backward pass.
    """
    if not isinstance(output, Value):
        raise TypeError(f"output must be a Value, got {type_name(output)}")
    nodes = _as_inputs(inputs, "inputs")
    if isinstance(tangents, str | bytes):
        raise TypeError(f"tangents must be a number or an iterable of numbers, got {type_name(tangents)}")
    # One more than needed is enough to tell that there are too many (and an endless iterator ends).
    raw = (tangents,) if not isinstance(tangents, Iterable) else tuple(itertools.islice(tangents, len(nodes) + 1))
    if len(raw) != len(nodes):
        given = f"more than {len(nodes)}" if len(raw) > len(nodes) else str(len(raw))
        raise ValueError(f"jvp needs one tangent per input: {len(nodes)} inputs, {given} tangents")
    tangent: dict[Value, float] = {}
    for position, (node, t) in enumerate(zip(nodes, raw, strict=True)):
        tangent[node] = tangent.get(node, 0.0) + as_finite_float(t, f"tangents[{position}]")
    order = reverse_topological(output)
    order.reverse()
    current = output
    try:
        for current in order:
            operands = current.inputs
            if not any(inp in tangent for inp in operands):
                # A leaf, or a node no input reaches: only a tangent it was given, and its
                # partials need not exist.
                continue
            op = current.op
            assert op is not None
            partials = op.partials(tuple(inp.data for inp in operands), current.data, current.params)
            total = 0.0
            for inp, partial in zip(operands, partials, strict=True):
                incoming = tangent.get(inp)
                if incoming is not None:
                    total += partial * incoming
            # An input computed from another input (y = 2 * x, both given) adds its own tangent to
            # what reaches it, so the result is sum_i grad(output, inputs)[i] * tangents[i], as in
            # reverse mode, where x's gradient includes the path through y.
            tangent[current] = tangent.get(current, 0.0) + total
    except (ArithmeticError, ValueError) as error:
        raise rule_failure(current, error) from None
    except TypeError:  # as in reverse mode
        malformed = malformed_at(current)
        if malformed is None:
            raise
        raise malformed from None
    result = tangent.get(output, 0.0)
    if not _isfinite(result):
        raise DomainError(f"jvp of {output!r} is not finite ({result!r})")
    return result


def hessian(output: Value, inputs: Value | Iterable[Value]) -> tuple[tuple[float, ...], ...]:
    """The matrix of second derivatives d2 output / d inputs[i] d inputs[j]."""
    if not isinstance(output, Value):
        raise TypeError(f"output must be a Value, got {type_name(output)}")
    nodes = _as_inputs(inputs, "inputs")
    first = grad(output, nodes, create_graph=True)
    return tuple(grad(g, nodes) for g in first)
