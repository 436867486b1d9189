"""The node-building kernel that :class:`refgrad.Value` and the micrograd surface share.

:class:`Node` holds what both kinds of node are made of (a float, the registry
entry that computed it, its operands and the op's parameters) and every
operator, each dispatching to one registry entry. The two surfaces subclass it
and differ only in what a node holds besides (the micrograd surface's ``grad``)
and in what a user may change (nothing, in refgrad's). :func:`install` gives a
subclass its node constructors.

Building nodes is refgrad's hot path, so a node is filled in as an instance of a
writable twin class with the same slots and then switched to its real class:
plain attribute stores are several times faster than writing each slot through
its descriptor, and the finished node refuses writes from then on. For the same
reason :func:`install` gives each kind its own copy of the operators that take a
node of the same kind (``x + y``, ``x * y``, ``x.relu()``, ...): each copy is made
from one registry entry, holds that entry's forward, and builds the node in its
own body, without a call for the operand check, the forward or the construction.
"""

from __future__ import annotations

import functools
import itertools
import math
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Final, Protocol, Self, TypeVar, cast

from refgrad.errors import DomainError
from refgrad.numeric import as_finite_float, is_bool_like, is_real_number, not_a_number, type_name
from refgrad.ops import ABS, ADD, DIV, EXP, LOG, MUL, NEG, POW, RELU, SIGMOID, SUB, TANH, VPOW, OpSpec, Params

__all__ = ["Node", "evaluate", "forward_binary", "forward_unary", "install"]

_creation_counter: Final = itertools.count()
# next() on itertools.count is atomic under the GIL, so concurrent threads still
# get distinct, increasing positions.
_next_position: Final = _creation_counter.__next__
_isfinite: Final = math.isfinite


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


class Node:
    """A node of a scalar expression graph: a float, the op that made it, its operands.

    Not used directly: :class:`refgrad.Value` and
    :class:`refgrad.micrograd.engine.Value` are its two kinds. Operators build
    nodes of the left operand's kind; a number on either side becomes a constant
    leaf; a node of the other kind is a ``TypeError`` (the two build separate graphs).
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
        # filled in once by the constructors install() makes.
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
        def _first(self) -> Self | None:
            """The first operand; ``None`` for a leaf."""
            ...

        @property
        def _second(self) -> Self | None:
            """The second operand; ``None`` for a leaf or a one-operand op."""
            ...

        @property
        def _position(self) -> int:
            """Place in creation order (one counter for both kinds): a topological order of every graph."""
            ...

        # What install() puts on each kind: its surface (the class install() was called for, which
        # its subclasses share) and its constructors (functions, called through the instance or class).
        @property
        def _surface(self) -> type[Node]: ...
        def _make(
            self, data: float, op: OpSpec, first: Node, second: Node | None = None, params: Params = (), /
        ) -> Self: ...
        def _constant(self, data: float, /) -> Self: ...
        @classmethod
        def _new_leaf(cls, data: float, label: str | None, /) -> Self: ...

    def __init_subclass__(cls, **kwargs: object) -> None:
        """A subclass of an installed kind (a user's own node class) gets constructors of its own."""
        super().__init_subclass__(**kwargs)
        # install() sets _install_options after the class exists, so here it can only be inherited.
        inherited = getattr(cls, "_install_options", None)
        if inherited is not None and not cls.__dict__.get("_writable_twin", False):
            label, grad = inherited
            install(cls, label=label, grad=grad, surface=False)

    @property
    def inputs(self) -> tuple[Self, ...]:
        """The operands, in order: ``()`` for a leaf, ``(x, x)`` for ``x * x``."""
        first = self._first
        if first is None:
            return ()
        second = self._second
        return (first,) if second is None else (first, second)

    def _operand(self, x: object) -> Node | None:
        """``x`` as an operand: a node of this surface as it is, a number as a constant leaf; ``None`` if neither.

        ``None`` makes an operator return ``NotImplemented``, leaving the other
        operand's reflected method its turn. A bool raises at once: nothing else
        would give a clearer message (numpy's own bool even blames ``Value``).
        """
        if type(x) is type(self):
            return x
        if is_real_number(x):
            return self._constant(as_finite_float(x, "operand"))
        if is_bool_like(x):
            raise not_a_number(x, "operand")
        if isinstance(x, self._surface):
            # A node of the same surface but another class (a user's subclass, or its base): an
            # operand as it is; the result is of this node's class.
            return x
        if isinstance(x, Node):
            # Returning NotImplemented would end in "unsupported operand type(s): 'Value' and 'Value'".
            raise TypeError(
                f"cannot combine a {type_name(self)} with a {type_name(x)}: "
                "the two surfaces build separate graphs; use one of them throughout"
            )
        return None

    def _binary(self, op: OpSpec, other: object) -> Self:
        """``self op other``, ``other`` a node or a number; ``NotImplemented`` for anything else."""
        y = self._operand(other)
        if y is None:
            return cast("Self", NotImplemented)  # what the operator returns, to Python
        return self._make(forward_binary(op, self.data, y.data), op, self, y)

    def _reflected(self, op: OpSpec, other: object) -> Self:
        """``other op self``, ``other`` a number (Python calls reflected operators with the number first)."""
        x = self._operand(other)
        if x is None:
            return cast("Self", NotImplemented)
        return self._make(forward_binary(op, x.data, self.data), op, x, self)

    def _unary(self, op: OpSpec) -> Self:
        return self._make(forward_unary(op, self.data, ()), op, self)

    # Arithmetic: each operator is one registry entry. Those in _FAST_OPERATORS (below the class) get,
    # in every kind install() sets up, a faster copy made from the same entry.
    def __add__(self, other: Self | float) -> Self:
        return self._binary(ADD, other)

    def __radd__(self, other: float) -> Self:
        return self._reflected(ADD, other)

    def __sub__(self, other: Self | float) -> Self:
        return self._binary(SUB, other)

    def __rsub__(self, other: float) -> Self:
        return self._reflected(SUB, other)

    def __mul__(self, other: Self | float) -> Self:
        return self._binary(MUL, other)

    def __rmul__(self, other: float) -> Self:
        return self._reflected(MUL, other)

    def __truediv__(self, other: Self | float) -> Self:
        return self._binary(DIV, other)

    def __rtruediv__(self, other: float) -> Self:
        return self._reflected(DIV, other)

    def __pow__(self, exponent: Self | float) -> Self:
        """``x ** c`` for a number ``c`` (op ``pow``); ``x ** y`` for a node ``y`` (op ``vpow``)."""
        if is_real_number(exponent):
            c = as_finite_float(exponent, "exponent")
            return self._make(forward_unary(POW, self.data, (c,)), POW, self, None, (c,))
        if is_bool_like(exponent):
            raise not_a_number(exponent, "exponent")
        y = self._operand(exponent)  # a node; the other kind's node raises
        if y is None:
            return NotImplemented
        return self._make(forward_binary(VPOW, self.data, y.data), VPOW, self, y)

    def __rpow__(self, base: float) -> Self:
        """``c ** y`` for a number ``c``: op ``vpow`` with ``c`` as a constant leaf."""
        x = self._operand(base)
        if x is None:
            return NotImplemented
        return self._make(forward_binary(VPOW, x.data, self.data), VPOW, x, self)

    def __neg__(self) -> Self:
        return self._unary(NEG)

    def __abs__(self) -> Self:
        return self._unary(ABS)

    def exp(self) -> Self:
        """``e ** self`` (op ``exp``)."""
        return self._unary(EXP)

    def log(self) -> Self:
        """Natural logarithm (op ``log``); :class:`refgrad.DomainError` unless ``self.data > 0``."""
        return self._unary(LOG)

    def tanh(self) -> Self:
        """Hyperbolic tangent (op ``tanh``)."""
        return self._unary(TANH)

    def sigmoid(self) -> Self:
        """Logistic sigmoid ``1 / (1 + exp(-self))`` (op ``sigmoid``)."""
        return self._unary(SIGMOID)

    def relu(self) -> Self:
        """``max(self, 0)`` (op ``relu``; its derivative at 0 is 0, as in PyTorch)."""
        return self._unary(RELU)

    def abs(self) -> Self:
        """``|self|`` (op ``abs``; its derivative at 0 is 0, as in PyTorch)."""
        return self._unary(ABS)


_FAST_OPERATORS: Final[dict[str, OpSpec]] = {
    "__add__": ADD,
    "__sub__": SUB,
    "__mul__": MUL,
    "__truediv__": DIV,
    "__neg__": NEG,
    "__abs__": ABS,
    "abs": ABS,
    "exp": EXP,
    "log": LOG,
    "tanh": TANH,
    "sigmoid": SIGMOID,
    "relu": RELU,
}
"""The operators :func:`install` gives each kind a fast copy of, with the entry each applies.

A fast copy takes two nodes of exactly its kind (one, for a one-operand op) in its
own body and leaves everything else (numbers, other classes, the other surface,
calls through ``super()``) to :class:`Node`'s method of the same name, which must
apply the same entry (``tests/test_kernel.py`` checks that they build the same node)."""

NodeT = TypeVar("NodeT", bound=Node)
NodeT_co = TypeVar("NodeT_co", bound=Node, covariant=True)


class Leaf(Protocol[NodeT_co]):
    """The leaf constructor :func:`install` returns."""

    def __call__(self, data: float, label: str | None, /) -> NodeT_co:
        """A leaf holding ``data`` (already checked) and ``label``."""
        ...


if TYPE_CHECKING:

    class _Record:
        """What type checkers see of a node under construction: a writable record."""

        data: float
        grad: float
        op: OpSpec | None
        params: Params
        label: str | None
        _first: object
        _second: object
        _position: int

else:
    # At run time a node under construction is an instance of its kind's writable twin; the record
    # above is only what type checkers see of it (run-time checkers see any object).
    _Record = object


_new_node: Final = object.__new__
# object's own __class__ setter: the one write a finished node's __setattr__ would refuse.
_become: Final = cast("Callable[[_Record, type[Node]], None]", object.__dict__["__class__"].__set__)


def _writable_twin(kind: type[Node]) -> type[_Record]:
    """``kind``'s writable twin: no slots of its own, so Python allows switching a node's class between the two.

    Both halves of the type's attribute-store slot are object's own, or every
    store would go through a slow Python-level dispatch.
    """
    namespace = {
        "__slots__": (),
        "__setattr__": object.__setattr__,
        "__delattr__": object.__delattr__,
        "_writable_twin": True,
    }
    return cast("type[_Record]", type(f"_Building{kind.__name__}", (kind,), namespace))


def install(kind: type[NodeT], *, label: str | None, grad: bool = False, surface: bool = True) -> Leaf[NodeT]:
    """Give ``kind``, a subclass of :class:`Node`, its node constructors; return its leaf constructor.

    Every node ``kind`` builds gets ``label`` (``None`` or ``""``) and, with
    ``grad``, a ``grad`` of ``0.0`` (the micrograd surface's one slot beyond
    :class:`Node`'s). ``surface``: ``kind`` starts a surface of its own (its
    subclasses, installed the same way when they are defined, belong to it).
    The leaf constructor ``leaf(data, label)`` takes data already checked.
    """
    building = _writable_twin(kind)
    new, become, position = _new_node, _become, _next_position
    default_label = label

    def make(  # noqa: PLR0917  # called positionally
        receiver: object,
        data: float,
        op: OpSpec | None = None,
        first: NodeT | None = None,
        second: NodeT | None = None,
        params: Params = (),
    ) -> NodeT:
        # make(receiver, data) alone is a leaf.
        node = new(building)
        node.data = data
        if grad:
            node.grad = 0.0
        node.op = op
        node.params = params
        node.label = default_label
        node._first = first
        node._second = second
        node._position = position()
        become(node, kind)  # same slots, so Python allows the switch; from here on it is the real kind
        return node  # type: ignore[return-value]  # become() made it a NodeT

    def leaf(data: float, label: str | None) -> NodeT:
        node = make(None, data)
        if label is not None:
            _relabel(node, label)
        return node

    # Plain functions, so that node._make(...) is a method call (the fastest call there is): the node
    # they are called through arrives as `receiver`, unused.
    kind._make = make  # type: ignore[method-assign,assignment]
    kind._constant = make  # type: ignore[method-assign,assignment]  # _constant(data): make with defaults, a leaf
    kind._new_leaf = staticmethod(leaf)  # type: ignore[method-assign]  # called through the class
    kind._install_options = (label, grad)  # type: ignore[attr-defined]  # read by Node.__init_subclass__
    if surface:
        kind._surface = kind  # type: ignore[assignment]  # a class attribute its subclasses share
    for name, op in _FAST_OPERATORS.items():
        general = getattr(Node, name)
        current = getattr(kind, name)
        if current is not general and current not in _fast_copies:
            continue  # the class, or a base class of the user's, defines this operator itself: it stays
        fast = _fast_binary if op.arity == 2 else _fast_unary
        copy: Callable[..., object] = fast(kind, building, op, default_label, general, grad=grad)
        # help() and inspect.signature() show the general method's docstring and signature (__wrapped__).
        functools.update_wrapper(copy, general)
        copy.__qualname__ = f"{kind.__qualname__}.{name}"
        _fast_copies.add(copy)
        setattr(kind, name, copy)
    return leaf


_fast_copies: Final[weakref.WeakSet[Callable[..., object]]] = weakref.WeakSet()
"""The operators install() made: a subclass gets its own in their place, but never in place of one of its own."""


def _fast_binary(
    kind: type[Node],
    building: type[_Record],
    op: OpSpec,
    label: str | None,
    general: Callable[..., object],
    *,
    grad: bool,
) -> Callable[[Node, object], object]:
    """``kind``'s copy of the operator ``general`` for ``op``, two nodes of ``kind`` built in one body.

    Everything :func:`forward_binary` and ``make`` do, in the same order, written out: this is
    the engine's hot path, and each call saved is a fifth of a node's cost.
    """
    forward, new, become, isfinite, position = op.forward, _new_node, _become, _isfinite, _next_position

    def operator(self: Node, other: object) -> object:
        if type(other) is not kind or type(self) is not kind:
            # A number, another class or surface (or a call through super() from a subclass): the
            # general method's body, which takes any object (the method's own annotation does not).
            return self._binary(op, other)
        x = self.data
        y = other.data
        try:
            data = forward(x, y)
        except (ArithmeticError, ValueError):
            raise _forward_domain_error(op, (x, y), ()) from None
        if not isfinite(data):
            raise _forward_domain_error(op, (x, y), ())
        node = new(building)
        node.data = data
        if grad:
            node.grad = 0.0
        node.op = op
        node.params = ()
        node.label = label
        node._first = self
        node._second = other
        node._position = position()
        become(node, kind)
        return node

    return operator


def _fast_unary(
    kind: type[Node],
    building: type[_Record],
    op: OpSpec,
    label: str | None,
    general: Callable[..., object],
    *,
    grad: bool,
) -> Callable[[Node], object]:
    """``kind``'s copy of the one-operand method ``general`` for ``op`` (see :func:`_fast_binary`)."""
    forward, new, become, isfinite, position = op.forward, _new_node, _become, _isfinite, _next_position

    def method(self: Node) -> object:
        if type(self) is not kind:  # called through super() from a subclass, or unbound on another node
            return general(self)
        x = self.data
        try:
            data = forward(x)
        except (ArithmeticError, ValueError):
            raise _forward_domain_error(op, (x,), ()) from None
        if not isfinite(data):
            raise _forward_domain_error(op, (x,), ())
        node = new(building)
        node.data = data
        if grad:
            node.grad = 0.0
        node.op = op
        node.params = ()
        node.label = label
        node._first = self
        node._second = None
        node._position = position()
        become(node, kind)
        return node

    return method


_relabel: Final = cast("Callable[[Node, str], None]", Node.__dict__["label"].__set__)
