"""micrograd's ``Value``, drop-in: mutable ``data`` and ``grad``, ``backward()`` filling ``.grad``.

Change ``from micrograd.engine import Value`` to
``from refgrad.micrograd.engine import Value`` and micrograd code runs as
before. Forward values and derivatives come from refgrad's op registry (no
second copy of any rule), and nodes hold no closures, so building a graph makes
no reference cycles for the garbage collector to chase.

Beyond micrograd it has ``exp``, ``log``, ``tanh``, ``sigmoid``, ``abs`` and
``Value ** Value``. Three deliberate differences: results outside an op's domain
raise :class:`refgrad.DomainError` instead of producing NaN or infinity; a
second ``backward()`` adds this pass's gradients to ``.grad`` exactly as PyTorch
does (micrograd re-propagates the intermediate nodes' accumulated ``.grad``, so
its leaves over-count on deep graphs); and numbers are checked as everywhere in
refgrad, so ``Value(True)``, ``x * False`` and ``x.data = "1"`` raise
``TypeError`` (micrograd computes with a bool as 1 or 0, and stores anything).

Nodes are mutable, like micrograd's and like PyTorch's ``.grad``: two threads
calling ``backward()`` on graphs that share nodes race on those nodes' ``grad``
(one thread's ``+=`` can overwrite the other's). Differentiate a shared graph
from several threads with :func:`refgrad.grad` on :class:`refgrad.Value` instead.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Final, cast

from refgrad.autodiff import reverse_accumulate
from refgrad.errors import DomainError
from refgrad.ops import ABS, ADD, DIV, EXP, LOG, MUL, NEG, POW, RELU, SIGMOID, SUB, TANH, VPOW, OpSpec, Params
from refgrad.value import Value as _RefgradValue
from refgrad.value import (
    as_finite_float,
    forward_binary,
    forward_unary,
    is_bool_like,
    is_real_number,
    not_a_number,
    type_name,
)

__all__ = ["Value"]

_creation_counter: Final = itertools.count()
_next_position: Final = _creation_counter.__next__


class Value:
    """A scalar and its gradient, as in micrograd (``data``, ``grad``, ``backward()``)."""

    # Operands inline, as in refgrad.Value: one garbage-collected object per node.
    __slots__ = ("_first", "_position", "_second", "data", "grad", "label", "op", "params")

    # Users may write data, grad and label; writes are checked so that a stray
    # NaN, string or int never reaches a rule. Nodes themselves are built
    # through _Building (below), which skips the check.
    _WRITABLE: ClassVar[frozenset[str]] = frozenset({"data", "grad", "label"})

    __array_ufunc__: ClassVar[None] = None

    data: float
    """The value; you may assign to it (``p.data -= lr * p.grad``)."""
    grad: float
    """d output / d self, accumulated by ``backward()``; reset it with ``grad = 0``."""
    op: OpSpec | None
    """The registry entry that computed this node; ``None`` for a leaf."""
    params: Params
    """The op's static parameters (the exponent of ``x ** 3``)."""
    label: str
    """An optional name for pictures of the graph."""
    _first: Value | None
    _second: Value | None
    _position: int

    def __init__(
        self, data: float | numbers.Real, _children: tuple[Value, ...] = (), _op: str = "", label: str = ""
    ) -> None:
        """A leaf holding ``data`` (micrograd's signature; ``_children`` and ``_op`` must stay empty)."""
        if _children or _op:
            raise TypeError("build nodes with operators; Value(data, _children, _op) is micrograd-internal")
        if not isinstance(label, str):
            raise TypeError(f"label must be a str, got {type_name(label)}")
        _write(self, "data", as_finite_float(data, "Value data"))
        _write(self, "grad", 0.0)
        _write(self, "op", None)
        _write(self, "params", ())
        _write(self, "label", label)
        _write(self, "_first", None)
        _write(self, "_second", None)
        _write(self, "_position", _next_position())

    def __setattr__(self, name: str, value: object) -> None:
        if name not in self._WRITABLE:
            raise AttributeError(f"cannot set {name!r}: only data, grad and label of a Value are writable")
        if name == "label":
            if not isinstance(value, str):
                raise TypeError(f"label must be a str, got {type_name(value)}")
            _write(self, name, value)
        else:
            _write(self, name, as_finite_float(value, f"Value.{name}"))

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete {name!r} of a Value")

    @property
    def inputs(self) -> tuple[Value, ...]:
        """The operands, in order (``a * a`` has ``(a, a)``; micrograd's ``_prev`` is a set)."""
        first = self._first
        if first is None:
            return ()
        second = self._second
        return (first,) if second is None else (first, second)

    @property
    def _prev(self) -> set[Value]:
        """micrograd's set of operands (use ``inputs`` to keep repeated edges)."""
        return set(self.inputs)

    @property
    def _op(self) -> str:
        """micrograd's op label: ``'+'``, ``'*'``, ``'ReLU'``, ... and ``''`` for a leaf."""
        if self.op is None:
            return ""
        if self.op is POW:
            return f"**{self.params[0]:g}"
        return self.op.symbol

    def __repr__(self) -> str:
        return f"Value(data={self.data}, grad={self.grad})"

    def __add__(self, other: Value | float) -> Value:
        other_node = other if type(other) is Value else _coerce(other)
        return NotImplemented if other_node is None else _binary(ADD, self, other_node)

    def __radd__(self, other: float) -> Value:
        other_node = _coerce(other)
        return NotImplemented if other_node is None else _binary(ADD, other_node, self)

    def __sub__(self, other: Value | float) -> Value:
        other_node = other if type(other) is Value else _coerce(other)
        return NotImplemented if other_node is None else _binary(SUB, self, other_node)

    def __rsub__(self, other: float) -> Value:
        other_node = _coerce(other)
        return NotImplemented if other_node is None else _binary(SUB, other_node, self)

    def __mul__(self, other: Value | float) -> Value:
        other_node = other if type(other) is Value else _coerce(other)
        return NotImplemented if other_node is None else _binary(MUL, self, other_node)

    def __rmul__(self, other: float) -> Value:
        other_node = _coerce(other)
        return NotImplemented if other_node is None else _binary(MUL, other_node, self)

    def __truediv__(self, other: Value | float) -> Value:
        other_node = other if type(other) is Value else _coerce(other)
        return NotImplemented if other_node is None else _binary(DIV, self, other_node)

    def __rtruediv__(self, other: float) -> Value:
        other_node = _coerce(other)
        return NotImplemented if other_node is None else _binary(DIV, other_node, self)

    def __pow__(self, exponent: Value | float) -> Value:
        """``x ** c`` for a number ``c`` (as micrograd), ``x ** y`` for a node ``y``."""
        if isinstance(exponent, Value):
            return _binary(VPOW, self, exponent)
        if not is_real_number(exponent):
            given: object = exponent  # anything can arrive from untyped callers
            if is_bool_like(given) or isinstance(given, _RefgradValue):
                _coerce(given)  # raises the clear TypeError for these two
            return NotImplemented
        return _unary(POW, self, (as_finite_float(exponent, "exponent"),))

    def __rpow__(self, base: float) -> Value:
        base_node = _coerce(base)
        return NotImplemented if base_node is None else _binary(VPOW, base_node, self)

    def __neg__(self) -> Value:
        return _unary(NEG, self, ())

    def __abs__(self) -> Value:
        return _unary(ABS, self, ())

    def relu(self) -> Value:
        """``max(self, 0)``, with derivative 0 at 0 (as micrograd and PyTorch)."""
        return _unary(RELU, self, ())

    def exp(self) -> Value:
        """``e ** self``."""
        return _unary(EXP, self, ())

    def log(self) -> Value:
        """Natural logarithm; :class:`refgrad.DomainError` unless ``data > 0``."""
        return _unary(LOG, self, ())

    def tanh(self) -> Value:
        """Hyperbolic tangent."""
        return _unary(TANH, self, ())

    def sigmoid(self) -> Value:
        """Logistic sigmoid."""
        return _unary(SIGMOID, self, ())

    def abs(self) -> Value:
        """``|self|``, with derivative 0 at 0 (as PyTorch)."""
        return _unary(ABS, self, ())

    def backward(self) -> None:
        """Add d self / d node to ``node.grad`` for every node ``self`` depends on."""
        for node, gradient in reverse_accumulate(self).items():
            # Sums of finite floats: written straight to the slot, past __setattr__'s check.
            # (An overflow here would only come from a .grad already near the float limit.)
            total = node.grad + gradient
            if not _isfinite(total):
                raise DomainError(f"accumulated gradient of {node!r} overflows: {node.grad!r} + {gradient!r}")
            _set_grad(node, total)


_write: Final = object.__setattr__
_set_grad: Final = cast("Callable[[Value, float], None]", Value.__dict__["grad"].__set__)
_isfinite: Final = math.isfinite


if TYPE_CHECKING:
    _Building = Value
else:

    class _Building(Value):
        """Value's unchecked twin for building nodes: same slots, plain attribute stores.

        Python allows switching an instance between classes with identical slots;
        filling a node here and then switching it to Value skips the write checks,
        which matter for users' writes, not for the engine's own.
        """

        __slots__ = ()
        __setattr__ = object.__setattr__
        __delattr__ = object.__delattr__


_new_value: Final = object.__new__
_become: Final = cast("Callable[[Value, type[Value]], None]", object.__dict__["__class__"].__set__)


def _make_node(data: float, op: OpSpec, first: Value, second: Value | None, params: Params) -> Value:
    node = _new_value(_Building)
    node.data = data
    node.grad = 0.0
    node._first = first
    node._second = second
    node.op = op
    node.params = params
    node.label = ""
    node._position = _next_position()
    _become(node, Value)  # same slots: Python allows the switch
    return node


def _leaf(data: float) -> Value:
    # A constant operand's leaf, built as _make_node builds nodes: data is already checked.
    node = _new_value(_Building)
    node.data = data
    node.grad = 0.0
    node._first = None
    node._second = None
    node.op = None
    node.params = ()
    node.label = ""
    node._position = _next_position()
    _become(node, Value)
    return node


def _coerce(x: object) -> Value | None:
    if isinstance(x, Value):
        return x
    if is_real_number(x):
        return _leaf(as_finite_float(x, "operand"))
    if is_bool_like(x):
        raise not_a_number(x, "operand")
    if isinstance(x, _RefgradValue):
        # Returning NotImplemented would end in "unsupported operand type(s): 'Value' and 'Value'".
        raise TypeError(
            "cannot combine a refgrad.micrograd.engine.Value with a refgrad.Value: "
            "the two surfaces build separate graphs; use one of them throughout"
        )
    return None


def _binary(op: OpSpec, x: Value, y: Value) -> Value:
    return _make_node(forward_binary(op, x.data, y.data), op, x, y, ())


def _unary(op: OpSpec, x: Value, params: Params) -> Value:
    return _make_node(forward_unary(op, x.data, params), op, x, None, params)
