"""The node: an immutable scalar that remembers the op that made it.

A :class:`Value` holds a finite float (``data``), the registry entry that
computed it (``op``, ``None`` for a leaf), its operands (``inputs``, a tuple, so
``x * x`` has two edges), the op's static parameters (``params``) and an
optional ``label``. Nothing about it ever changes, and it holds no gradient:
:meth:`Value.backward` returns the gradients instead of writing them into nodes.

The operators (``+ - * / **``, ``exp``, ``tanh``, ...) are the node-building
kernel's, :class:`refgrad.kernel.Node`, which the micrograd surface shares; each
dispatches to one entry of :mod:`refgrad.ops`, so this module holds no forward
formula and no derivative of its own. Reverse mode is :mod:`refgrad.reverse`.

A node can only be built from nodes that already exist, so the graph is acyclic
and creation order is a topological order. Each node records its place in that
order (a process-wide counter), which is all reverse mode needs to schedule its
work without recursion.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, NoReturn, overload

from refgrad.kernel import Node, NodeT, evaluate, install
from refgrad.numeric import as_finite_float, is_bool_like, is_real_number, not_a_number, type_name
from refgrad.ops import OpSpec, Params
from refgrad.reverse import reverse_accumulate

__all__ = ["Gradients", "Value", "apply", "gradients"]


class Value(Node):
    """An immutable node of a scalar expression graph.

    ``Value(x)`` makes a leaf from a real number (``TypeError`` for anything
    else, including ``bool``; ``ValueError`` for NaN and infinity). Operators
    (``+ - * / **``, unary ``-``, ``abs()``) and the methods ``exp``, ``log``,
    ``tanh``, ``sigmoid``, ``relu`` and ``abs`` build new nodes; a number on
    either side of an operator becomes a constant leaf. Nodes hash and compare
    by identity: two equal constants are two nodes.
    """

    __slots__ = ()

    if TYPE_CHECKING:

        @property
        def label(self) -> str | None:
            """An optional name, shown by ``repr`` and graph pictures."""
            ...

    def __new__(cls, data: float | numbers.Real, label: str | None = None) -> Value:
        """A leaf holding ``data``, optionally named ``label``."""
        value = as_finite_float(data, "Value data")
        if label is not None and not isinstance(label, str):
            raise TypeError(f"Value label must be a str or None, got {type_name(label)}")
        return cls._new_leaf(value, label)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"Value is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"Value is immutable: cannot delete {name!r}")

    def __copy__(self) -> Value:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Value:
        return self

    def __bool__(self) -> NoReturn:
        raise TypeError("a Value has no truth value; compare its .data instead")

    def __repr__(self) -> str:
        parts = [f"data={self.data!r}"]
        if self.op is not None:
            parts.append(f"op={self.op.name!r}")
        if self.label is not None:
            parts.append(f"label={self.label!r}")
        return f"Value({', '.join(parts)})"

    def __pos__(self) -> Value:
        return self

    def backward(self) -> Gradients:
        """d self / d node for every node ``self`` depends on, as an immutable mapping.

        Nothing is written into any node; looking up a node ``self`` does not
        depend on gives ``0.0``. See :func:`refgrad.grad` for a tuple aligned
        with chosen inputs.
        """
        return Gradients._adopt(reverse_accumulate(self))


_leaf = install(Value, label=None)


class Gradients(Mapping[Value, float]):
    """d output / d node for the nodes an output depends on; immutable.

    Returned by :meth:`Value.backward`. Looking up any other node gives
    ``0.0``, since the output does not depend on it. Iteration visits the
    nodes the output depends on, output first, in the order reverse mode first
    passed each a gradient.
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


@overload
def apply(op: OpSpec, *inputs: float, params: Params = ()) -> Value: ...
@overload
def apply(op: OpSpec, *inputs: NodeT | float, params: Params = ()) -> NodeT: ...
def apply(op: OpSpec, *inputs: Node | float, params: Params = ()) -> Node:
    """Apply any registry entry (or an op of your own) to nodes.

    ``apply(registry["mul"], x, y)`` is ``x * y``. Numbers among ``inputs``
    become constant leaves. This is how an op outside the built-in operators
    gets into a graph: reverse and forward mode need nothing else from it. The
    nodes may be :class:`Value` s or the micrograd surface's (not a mix); the
    result is of the first node's class (a :class:`Value` if there is none).
    """
    if not isinstance(op, OpSpec):
        raise TypeError(f"apply() needs an OpSpec, got {type_name(op)}")
    if op.arity not in (1, 2):
        raise ValueError(f"op {op.name!r} has arity {op.arity}; refgrad nodes take one or two operands")
    if len(inputs) != op.arity:
        raise TypeError(f"op {op.name!r} takes {op.arity} input(s), got {len(inputs)}")
    if not isinstance(params, tuple):
        raise TypeError(f"params must be a tuple of numbers, got {type_name(params)}")
    if len(params) != len(op.params):
        raise TypeError(f"op {op.name!r} takes parameters {op.params}, got {len(params)} value(s)")
    kind = next((item for item in inputs if isinstance(item, Node)), None)
    nodes: list[Node] = []
    for position, item in enumerate(inputs):
        where = f"input {position} of {op.name!r}"
        if isinstance(item, Node):
            if kind is not None and not isinstance(item, kind._surface):
                raise TypeError(f"{where}: cannot combine a {type_name(kind)} with a {type_name(item)} in one graph")
            nodes.append(item)
        elif is_real_number(item):
            data = as_finite_float(item, where)
            nodes.append(_leaf(data, None) if kind is None else kind._constant(data))
        elif is_bool_like(item):
            raise not_a_number(item, where)
        else:
            raise TypeError(f"{where} must be a Value or a real number, got {type_name(item)}")
    checked_params = tuple(
        as_finite_float(p, f"parameter {name!r} of {op.name!r}") for name, p in zip(op.params, params, strict=True)
    )
    data = evaluate(op, tuple(node.data for node in nodes), checked_params)
    first = kind if kind is not None else nodes[0]
    return first._make(data, op, nodes[0], nodes[1] if len(nodes) == 2 else None, checked_params)
