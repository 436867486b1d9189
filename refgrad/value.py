"""The node: an immutable scalar that remembers the op that made it.

A :class:`Value` holds a finite float (``data``), the registry entry that
computed it (``op``, ``None`` for a leaf), its operands (``inputs``, a tuple, so
``x * x`` has two edges), the op's static parameters (``params``) and an
optional ``label``. Nothing about it ever changes, and it holds no gradient:
differentiation returns gradients instead of writing them into nodes.

Every operator and method dispatches to an entry of :mod:`refgrad.ops`; this
module holds no forward formula and no derivative of its own.

A node can only be built from nodes that already exist, so the graph is acyclic
and creation order is a topological order. Each node records its place in that
order (a process-wide counter), which is all reverse mode needs to schedule its
work without recursion.
"""

from __future__ import annotations

import itertools
import math
import numbers
import operator
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Final, NoReturn, TypeGuard, cast

from refgrad.errors import DomainError
from refgrad.ops import ABS, ADD, DIV, EXP, LOG, MUL, NEG, POW, RELU, SIGMOID, SUB, TANH, VPOW, OpSpec, Params

if TYPE_CHECKING:
    from refgrad.autodiff import Gradients

__all__ = [
    "Value",
    "apply",
    "as_count",
    "as_finite_float",
    "evaluate",
    "forward_binary",
    "forward_unary",
    "is_bool_like",
    "is_real_number",
    "not_a_number",
    "shown",
    "type_name",
]

_creation_counter: Final = itertools.count()
# next() on itertools.count is atomic under the GIL, so concurrent threads still
# get distinct, increasing positions.
_next_position: Final = _creation_counter.__next__
_isfinite: Final = math.isfinite


def is_real_number(x: object) -> TypeGuard[float | numbers.Real]:
    """Whether ``x`` is a real number refgrad accepts: any :class:`numbers.Real` but ``bool``."""
    if type(x) is float or type(x) is int:
        return True  # the common cases, without the slow ABC check
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def type_name(x: object) -> str:
    """The name of ``x``'s type for an error message, qualified where a short name would mislead.

    Both surfaces have a class called ``Value``, so either is spelled out
    (``refgrad.Value``, ``refgrad.micrograd.engine.Value``): never "must be a
    Value, got Value".
    """
    kind = type(x)
    if kind is Value:
        return "refgrad.Value"
    if kind.__name__ == "Value":
        return f"{kind.__module__}.{kind.__qualname__}"
    return kind.__name__


def shown(x: object, limit: int = 80) -> str:
    """``repr(x)`` cut to ``limit`` characters for an error message; never raises.

    An int of more than 4300 digits has no ``repr`` (Python refuses to convert
    it) and a hostile object's ``__repr__`` may raise: neither may replace the
    error being reported.
    """
    try:
        text = repr(x)
    except Exception:  # any failure of someone else's __repr__ must not hide our error
        if isinstance(x, int):
            return f"<an int of {x.bit_length()} bits>"
        return f"<{type_name(x)} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_bool_like(x: object) -> bool:
    """Whether ``x`` is a ``bool`` or NumPy's ``bool_`` (no bool subclass, but the same mistake)."""
    kind = type(x)
    return isinstance(x, bool) or (kind.__module__ == "numpy" and kind.__name__ in ("bool", "bool_"))


def not_a_number(x: object, what: str) -> TypeError:
    """The ``TypeError`` for ``x`` given as ``what`` where a real number is needed, with a hint for bool and Decimal."""
    if is_bool_like(x):
        return TypeError(
            f"{what} must be a real number (int or float), got a bool ({x!r}); "
            "refgrad does not treat True and False as numbers: write 1.0 or 0.0"
        )
    if type(x).__name__ == "Decimal":
        return TypeError(
            f"{what} must be a real number (int or float), got Decimal: {shown(x)}; "
            "Decimal is not a numbers.Real (it does not mix with float): convert it with float()"
        )
    return TypeError(f"{what} must be a real number (int or float), got {type_name(x)}: {shown(x)}")


def as_finite_float(x: object, what: str) -> float:
    """``x`` as a finite float, or a ``TypeError``/``ValueError`` naming ``what``.

    Accepts every real number (``int``, ``float``, ``fractions.Fraction``,
    NumPy's real scalars: anything registered as :class:`numbers.Real`) except
    ``bool``, which is almost always a mistake in arithmetic. A number beyond
    the float range is a ``ValueError``, as are NaN and infinity; a tiny one
    rounds to the nearest float (possibly ``0.0``), as ``float()`` does.
    """
    if type(x) is float:
        value = x
    elif is_real_number(x):
        try:
            value = float(x)
        except OverflowError:
            raise ValueError(f"{what} is too large for a float: {shown(x)}") from None
        except Exception as error:  # a numbers.Real whose __float__ fails is still not a number we can use
            raise TypeError(f"{what}: float() of the {type_name(x)} {shown(x)} failed: {error!r}") from error
        if not _isfinite(value):
            raise ValueError(f"{what} must be finite (within the float range), got {type_name(x)}: {shown(x)}")
        return value
    else:
        raise not_a_number(x, what)
    if not _isfinite(value):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return value


def as_count(x: object, what: str, minimum: int | None = 1) -> int:
    """``x`` as an int of at least ``minimum`` (a size or a seed; ``None``: any), or an error naming ``what``.

    Accepts ``int`` and NumPy's integer scalars (anything registered as
    :class:`numbers.Integral`) but not ``bool``; a count beyond ``sys.maxsize``
    (in size) could never be the length of a Python sequence and is a ``ValueError``.
    """
    if type(x) is not int:
        if is_bool_like(x) or not isinstance(x, numbers.Integral):
            raise TypeError(f"{what} must be an int, got {type_name(x)}: {shown(x)}")
        try:
            x = operator.index(x)
        except Exception as error:  # an Integral whose __index__ fails is not a count we can use
            raise TypeError(f"{what}: operator.index() of the {type_name(x)} {shown(x)} failed: {error!r}") from error
    if minimum is not None and x < minimum:
        raise ValueError(f"{what} must be at least {minimum}, got {shown(x)}")
    if abs(x) > sys.maxsize:
        raise ValueError(f"{what} is too large: {shown(x)} is beyond sys.maxsize")
    return x


def _describe_call(op: OpSpec, args: tuple[float, ...], params: Params) -> str:
    operands = [repr(a) for a in args]
    operands += [f"{name}={value!r}" for name, value in zip(op.params, params, strict=True)]
    return f"{op.name}({', '.join(operands)})"


def _forward_domain_error(op: OpSpec, args: tuple[float, ...], params: Params) -> DomainError:
    return DomainError(
        f"{_describe_call(op, args, params)} is not a finite real number; "
        f"{op.name} is defined for {op.domain.description}"
    )


def evaluate(op: OpSpec, args: tuple[float, ...], params: Params = ()) -> float:
    """Run ``op``'s float forward on ``args``; :class:`DomainError` if the result is not finite."""
    try:
        raw: object = op.forward(*args, *params)
    except (ArithmeticError, ValueError):
        raise _forward_domain_error(op, args, params) from None
    if type(raw) is not float:
        raise TypeError(f"forward of op {op.name!r} returned {type(raw).__name__}, not float")
    result = raw
    if not _isfinite(result):
        raise _forward_domain_error(op, args, params)
    return result


def forward_binary(op: OpSpec, x: float, y: float) -> float:
    """:func:`evaluate` for a two-operand registry op: the hot path of graph building.

    Registry forwards return floats on floats, so only finiteness is checked.
    """
    try:
        result = op.forward(x, y)
    except (ArithmeticError, ValueError):
        raise _forward_domain_error(op, (x, y), ()) from None
    if not _isfinite(result):
        raise _forward_domain_error(op, (x, y), ())
    return result


def forward_unary(op: OpSpec, x: float, params: Params) -> float:
    """:func:`evaluate` for a one-operand registry op (``params`` are its static parameters)."""
    try:
        result = op.forward(x, *params)
    except (ArithmeticError, ValueError):
        raise _forward_domain_error(op, (x,), params) from None
    if not _isfinite(result):
        raise _forward_domain_error(op, (x,), params)
    return result


class Value:
    """An immutable node of a scalar expression graph.

    ``Value(x)`` makes a leaf from a real number (``TypeError`` for anything
    else, including ``bool``; ``ValueError`` for NaN and infinity). Operators
    (``+ - * / **``, unary ``-``, ``abs()``) and the methods ``exp``, ``log``,
    ``tanh``, ``sigmoid``, ``relu`` and ``abs`` build new nodes; a number on
    either side of an operator becomes a constant leaf. Nodes hash and compare
    by identity: two equal constants are two nodes.
    """

    # Operands are stored inline (_first, _second) rather than as a tuple: one
    # garbage-collected object per node instead of two halves the work Python's
    # cyclic collector does on a large live graph, and saves 56 bytes a node.
    if not TYPE_CHECKING:  # type checkers see the read-only properties below instead
        __slots__ = ("_first", "_position", "_second", "data", "label", "op", "params")

    # numpy defers to our reflected operators instead of building object arrays.
    __array_ufunc__: ClassVar[None] = None

    if TYPE_CHECKING:
        # Read-only to type checkers; at run time these are the slots above,
        # filled in once (by __new__ or _make_node) and refused afterwards.
        @property
        def data(self) -> float:
            """The node's value, a finite float."""
            ...

        @property
        def op(self) -> OpSpec | None:
            """The registry entry that computed this node; ``None`` for a leaf."""
            ...

        @property
        def params(self) -> Params:
            """The op's static parameters (``(3.0,)`` for ``x ** 3``), else ``()``."""
            ...

        @property
        def label(self) -> str | None:
            """An optional name, shown by ``repr`` and graph pictures."""
            ...

        @property
        def _first(self) -> Value | None:
            """The first operand; ``None`` for a leaf."""
            ...

        @property
        def _second(self) -> Value | None:
            """The second operand; ``None`` for a leaf or a one-operand op."""
            ...

        @property
        def _position(self) -> int:
            """Place in creation order, a topological order of every graph."""
            ...

    @property
    def inputs(self) -> tuple[Value, ...]:
        """The operands, in order: ``()`` for a leaf, ``(x, x)`` for ``x * x``."""
        first = self._first
        if first is None:
            return ()
        second = self._second
        return (first,) if second is None else (first, second)

    def __new__(cls, data: float | numbers.Real, label: str | None = None) -> Value:
        """A leaf holding ``data``, optionally named ``label``."""
        value = as_finite_float(data, "Value data")
        if label is not None and not isinstance(label, str):
            raise TypeError(f"Value label must be a str or None, got {type_name(label)}")
        return _leaf(value, label)

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

    # Arithmetic: each operator is one registry entry. Numbers become constant leaves.
    def __add__(self, other: Value | float) -> Value:
        other_node = other if type(other) is Value else _coerce(other)
        if other_node is None:
            return NotImplemented
        return _binary(ADD, self, other_node)

    def __radd__(self, other: float) -> Value:
        other_node = _coerce(other)
        if other_node is None:
            return NotImplemented
        return _binary(ADD, other_node, self)

    def __sub__(self, other: Value | float) -> Value:
        other_node = other if type(other) is Value else _coerce(other)
        if other_node is None:
            return NotImplemented
        return _binary(SUB, self, other_node)

    def __rsub__(self, other: float) -> Value:
        other_node = _coerce(other)
        if other_node is None:
            return NotImplemented
        return _binary(SUB, other_node, self)

    def __mul__(self, other: Value | float) -> Value:
        other_node = other if type(other) is Value else _coerce(other)
        if other_node is None:
            return NotImplemented
        return _binary(MUL, self, other_node)

    def __rmul__(self, other: float) -> Value:
        other_node = _coerce(other)
        if other_node is None:
            return NotImplemented
        return _binary(MUL, other_node, self)

    def __truediv__(self, other: Value | float) -> Value:
        other_node = other if type(other) is Value else _coerce(other)
        if other_node is None:
            return NotImplemented
        return _binary(DIV, self, other_node)

    def __rtruediv__(self, other: float) -> Value:
        other_node = _coerce(other)
        if other_node is None:
            return NotImplemented
        return _binary(DIV, other_node, self)

    def __pow__(self, exponent: Value | float) -> Value:
        """``x ** c`` for a number ``c`` (op ``pow``); ``x ** y`` for a node ``y`` (op ``vpow``)."""
        if isinstance(exponent, Value):
            return _binary(VPOW, self, exponent)
        if not is_real_number(exponent):
            if is_bool_like(exponent):
                raise not_a_number(exponent, "exponent")
            return NotImplemented
        return _unary(POW, self, (as_finite_float(exponent, "exponent"),))

    def __rpow__(self, base: float) -> Value:
        """``c ** y`` for a number ``c``: op ``vpow`` with ``c`` as a constant leaf."""
        base_node = _coerce(base)
        if base_node is None:
            return NotImplemented
        return _binary(VPOW, base_node, self)

    def __neg__(self) -> Value:
        return _unary(NEG, self, ())

    def __pos__(self) -> Value:
        return self

    def __abs__(self) -> Value:
        return _unary(ABS, self, ())

    def exp(self) -> Value:
        """``e ** self`` (op ``exp``)."""
        return _unary(EXP, self, ())

    def log(self) -> Value:
        """Natural logarithm (op ``log``); :class:`DomainError` unless ``self.data > 0``."""
        return _unary(LOG, self, ())

    def tanh(self) -> Value:
        """Hyperbolic tangent (op ``tanh``)."""
        return _unary(TANH, self, ())

    def sigmoid(self) -> Value:
        """Logistic sigmoid ``1 / (1 + exp(-self))`` (op ``sigmoid``)."""
        return _unary(SIGMOID, self, ())

    def relu(self) -> Value:
        """``max(self, 0)`` (op ``relu``; its derivative at 0 is 0, as in PyTorch)."""
        return _unary(RELU, self, ())

    def abs(self) -> Value:
        """``|self|`` (op ``abs``; its derivative at 0 is 0, as in PyTorch)."""
        return _unary(ABS, self, ())

    def backward(self) -> Gradients:
        """d self / d node for every node ``self`` depends on, as an immutable mapping.

        Nothing is written into any node; looking up a node ``self`` does not
        depend on gives ``0.0``. See :func:`refgrad.grad` for a tuple aligned
        with chosen inputs.
        """
        from refgrad.autodiff import gradients  # the differentiation layer sits below this one

        return gradients(self)


if TYPE_CHECKING:

    class _Building:
        """What type checkers see of a node under construction: a writable record."""

        data: float
        op: OpSpec | None
        params: Params
        label: str | None
        _first: Value | None
        _second: Value | None
        _position: int

else:

    class _Building(Value):
        """Value's writable twin: a node is filled in as a _Building, then becomes a Value.

        The twin adds no slots, so Python allows switching an instance's class
        between the two. Filling slots with plain attribute stores and switching
        the class is several times faster than writing each slot through its
        descriptor, and graph building is refgrad's hot path.
        """

        __slots__ = ()
        # Both halves of the type's attribute-store slot must be object's own, or
        # every store would go through a slow Python-level dispatch.
        __setattr__ = object.__setattr__
        __delattr__ = object.__delattr__


_new_node: Final = object.__new__
# object's own __class__ setter: the one write a finished node's __setattr__ would refuse.
_become: Final = cast("Callable[[_Building, type[Value]], None]", object.__dict__["__class__"].__set__)


def _make_node(data: float, op: OpSpec, first: Value, second: Value | None, params: Params) -> Value:
    node = _new_node(_Building)
    node.data = data
    node.op = op
    node.params = params
    node.label = None
    node._first = first
    node._second = second
    node._position = _next_position()
    _become(node, Value)  # same slots, so Python allows the switch; from here on it is immutable
    return node  # type: ignore[return-value]  # _become made it a Value


def _leaf(data: float, label: str | None) -> Value:
    node = _new_node(_Building)
    node.data = data
    node.op = None
    node.params = ()
    node.label = label
    node._first = None
    node._second = None
    node._position = _next_position()
    _become(node, Value)
    return node  # type: ignore[return-value]  # _become made it a Value


def _coerce(x: object) -> Value | None:
    """``x`` itself if it is a node, a constant leaf if it is a number, else ``None``.

    ``None`` makes an operator return ``NotImplemented``, leaving the other
    operand's reflected method its turn. A bool raises at once: nothing else
    would give a clearer message (numpy's own bool even blames ``Value``).
    """
    if isinstance(x, Value):
        return x
    if is_real_number(x):
        return _leaf(as_finite_float(x, "operand"), None)
    if is_bool_like(x):
        raise not_a_number(x, "operand")
    return None


def _binary(op: OpSpec, x: Value, y: Value) -> Value:
    return _make_node(forward_binary(op, x.data, y.data), op, x, y, ())


def _unary(op: OpSpec, x: Value, params: Params) -> Value:
    return _make_node(forward_unary(op, x.data, params), op, x, None, params)


def apply(op: OpSpec, *inputs: Value | float, params: Params = ()) -> Value:
    """Apply any registry entry (or an op of your own) to nodes.

    ``apply(registry["mul"], x, y)`` is ``x * y``. Numbers among ``inputs``
    become constant leaves. This is how an op outside the built-in operators
    gets into a graph: reverse and forward mode need nothing else from it.
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
    nodes: list[Value] = []
    for position, item in enumerate(inputs):
        if isinstance(item, Value):
            nodes.append(item)
        elif is_real_number(item):
            nodes.append(_leaf(as_finite_float(item, f"input {position} of {op.name!r}"), None))
        elif is_bool_like(item):
            raise not_a_number(item, f"input {position} of {op.name!r}")
        else:
            raise TypeError(f"input {position} of {op.name!r} must be a Value or a real number, got {type_name(item)}")
    checked_params = tuple(
        as_finite_float(p, f"parameter {name!r} of {op.name!r}") for name, p in zip(op.params, params, strict=True)
    )
    data = evaluate(op, tuple(node.data for node in nodes), checked_params)
    return _make_node(data, op, nodes[0], nodes[1] if len(nodes) == 2 else None, checked_params)
