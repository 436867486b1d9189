"""Differentiation, driven entirely by the registry's partial-derivative rules.

Reverse mode (:func:`grad`, :meth:`refgrad.Value.backward`) visits the nodes an
output depends on in reverse creation order, which is a reverse topological
order, so every node's cotangent is complete before it is passed on. Finding
those nodes is an explicit-stack walk, never recursion, so graphs a million
nodes deep are fine. With ``create_graph=True`` the same rules are called on
nodes instead of floats and the gradients are graphs themselves.

Forward mode (:func:`jvp`) runs the same rules in creation order.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from operator import attrgetter
from typing import Final, Literal, NoReturn, Protocol, Self, TypeVar, cast, overload

from refgrad.errors import DomainError
from refgrad.ops import OpSpec, Params
from refgrad.value import Value, as_finite_float, type_name

__all__ = ["Gradients", "GraphNode", "grad", "gradients", "hessian", "jvp", "nodes", "reverse_accumulate"]


class GraphNode(Protocol):
    """What differentiation reads from a node: refgrad's and the micrograd surface's both fit."""

    @property
    def data(self) -> float: ...
    @property
    def op(self) -> OpSpec | None: ...
    @property
    def params(self) -> Params: ...
    # The operands, stored inline (the public ``inputs`` tuple is built from them).
    @property
    def _first(self) -> Self | None: ...
    @property
    def _second(self) -> Self | None: ...
    @property
    def _position(self) -> int: ...


NodeT = TypeVar("NodeT", bound=GraphNode)

_by_position: Final = attrgetter("_position")
_isfinite: Final = math.isfinite


def _reverse_topological(output: NodeT) -> list[NodeT]:
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


def _operands(node: NodeT) -> tuple[NodeT, ...]:
    first, second = node._first, node._second
    if first is None:
        return ()
    return (first,) if second is None else (first, second)


def nodes(output: Value) -> tuple[Value, ...]:
    """Every node ``output`` depends on, itself included, in creation (topological) order.

    Operands come before the nodes that use them, so a single pass in this
    order can evaluate, count or draw the graph without recursion.
    """
    if not isinstance(output, Value):
        raise TypeError(f"output must be a Value, got {type_name(output)}")
    order = _reverse_topological(output)
    order.reverse()
    return tuple(order)


def _describe(node: GraphNode) -> str:
    op = node.op
    assert op is not None  # only called for nodes made by an op
    operands = [repr(inp.data) for inp in _operands(node)]
    operands += [f"{name}={value!r}" for name, value in zip(op.params, node.params, strict=True)]
    return f"{op.name}({', '.join(operands)})"


def _backward_domain_error(node: GraphNode, cause: str) -> DomainError:
    op = node.op
    assert op is not None
    formulas = ", ".join(op.partial_formulas)
    return DomainError(
        f"backward through {_describe(node)} = {node.data!r}: {cause}; its partial derivatives are ({formulas})"
    )


def _malformed_rule(op: OpSpec, partials: object, operands: int) -> ValueError | None:
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


def _malformed_at(node: GraphNode) -> ValueError | None:
    """The malformed-rule error for ``node``'s op, if its rule there is malformed (it is called again to see)."""
    op = node.op
    assert op is not None
    operands = _operands(node)
    try:
        partials = op.partials(tuple(inp.data for inp in operands), node.data, node.params)
    except (ArithmeticError, ValueError, TypeError):
        return None
    return _malformed_rule(op, partials, len(operands))


def _rule_failure(node: GraphNode, error: Exception) -> ValueError:
    """What a rule's failure at ``node`` (a float pass) means: a malformed rule, or a partial outside the domain.

    Called only once a pass has failed: the rule is called again, to tell the two apart.
    """
    malformed = _malformed_at(node)
    if malformed is not None:
        return malformed
    return _backward_domain_error(node, f"a partial derivative is not a finite real number ({error})")


def reverse_accumulate(output: NodeT, *, required: Iterable[NodeT] | None = None) -> dict[NodeT, float]:
    """d output / d node for every node ``output`` depends on, as floats.

    The engine's one reverse-mode loop, shared by :class:`Value` and the
    micrograd surface. Raises :class:`DomainError` naming the op whose partial
    derivative is not finite, or the first op that passed on a non-finite
    gradient: to any node, or, when ``required`` is given, to one of those
    nodes (a constant's gradient that overflows does not spoil the others).
    """
    order = _reverse_topological(output)
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
        raise _rule_failure(node, error) from None
    except TypeError:  # a rule that returned a bare number (not a tuple), or something else gone wrong
        malformed = _malformed_at(node)
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
    culprit = next(node for node in order if not all(_isfinite(grads[inp]) for inp in _operands(node)))
    return _backward_domain_error(culprit, "the gradient it passes on is not finite")


class Gradients(Mapping[Value, float]):
    """d output / d node for the nodes an output depends on; immutable.

    Returned by :meth:`Value.backward`. Looking up any other node gives
    ``0.0``, since the output does not depend on it. Iteration visits the
    nodes the output depends on (latest-created first), output included.
    """

    __slots__ = ("_grads",)
    _grads: dict[Value, float]

    def __init__(self, grads: Mapping[Value, float]) -> None:
        """Wrap ``grads`` (copied); normally built by :meth:`Value.backward`."""
        if not isinstance(grads, Mapping):
            raise TypeError(f"Gradients needs a mapping from Values to floats, got {type_name(grads)}")
        copied: dict[Value, float] = {}
        for node, value in grads.items():
            if not isinstance(node, Value):
                raise TypeError(f"Gradients keys must be Value, got {type_name(node)}")
            copied[node] = as_finite_float(value, f"gradient of {node!r}")
        object.__setattr__(self, "_grads", copied)

    @classmethod
    def _adopt(cls, grads: dict[Value, float]) -> Gradients:
        instance = cls.__new__(cls)
        object.__setattr__(instance, "_grads", grads)
        return instance

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"Gradients are immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"Gradients are immutable: cannot delete {name!r}")

    def __getitem__(self, node: Value) -> float:
        """The gradient for ``node``; ``0.0`` if the output does not depend on it."""
        try:
            found = self._grads.get(node)
        except TypeError:  # unhashable: certainly no Value, reported below
            found = None
        if found is not None:
            return found
        if not isinstance(node, Value):
            raise TypeError(f"Gradients are looked up by Value, got {type_name(node)}")
        return 0.0

    def __contains__(self, node: object) -> bool:
        try:
            return node in self._grads
        except TypeError:  # unhashable, so no Value: not a key, as for any other non-Value
            return False

    def __iter__(self) -> Iterator[Value]:
        return iter(self._grads)

    def __len__(self) -> int:
        return len(self._grads)

    def __repr__(self) -> str:
        shown = list(self._grads.items())[:4]
        body = ", ".join(f"{node!r}: {value!r}" for node, value in shown)
        more = f", ... ({len(self._grads) - len(shown)} more)" if len(self._grads) > len(shown) else ""
        return f"Gradients({{{body}{more}}})"


def gradients(output: Value) -> Gradients:
    """d output / d node for every node ``output`` depends on (what ``output.backward()`` returns)."""
    if not isinstance(output, Value):
        raise TypeError(f"output must be a Value, got {type_name(output)}")
    return Gradients._adopt(reverse_accumulate(output))


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
    order = _reverse_topological(output)
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
            partials = op.partials(inputs, node, node.params)
        except (ArithmeticError, ValueError) as error:
            raise _backward_domain_error(node, f"a partial derivative is not a finite real number ({error})") from None
        malformed = _malformed_rule(op, partials, len(inputs))
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
    order = _reverse_topological(output)
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
        raise _rule_failure(current, error) from None
    except TypeError:  # as in reverse mode
        malformed = _malformed_at(current)
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
