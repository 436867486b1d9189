"""The shape of one registry entry.

An :class:`OpSpec` is everything refgrad knows about one operation. Every
other part of the library (the node type, reverse mode, the micrograd surface,
the op table of ``python -m refgrad ops`` and the oracle) reads these fields;
none of them carries a second copy of a forward or a derivative.

Partial derivatives are written once, generically: the same rule is called with
floats (first-order gradients) and with :class:`refgrad.Value` nodes (gradients
that are graphs themselves, for higher order). A rule may return a plain float
for a partial that is locally constant (``relu``'s step, ``add``'s ones); the
differentiation code lifts it to a constant where it needs a node.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, Self, TypeVar, overload

__all__ = [
    "Domain",
    "Kink",
    "N",
    "NodeLike",
    "OpSpec",
    "Params",
    "Partials",
    "Registry",
    "Spelling",
    "log_of",
]

Params = tuple[float, ...]
"""Static parameters of one application of an op (the exponent of ``x ** 3``)."""


class NodeLike(Protocol):
    """What a rule may do with a node operand: arithmetic with nodes and floats, ``log``, its float.

    :class:`refgrad.Value` is one; so is any type with these methods. The registry
    knows nodes only through this protocol, so it sits below the node type (which
    builds its operators from the registry's entries) and imports nothing of it.
    """

    @property
    def data(self) -> float:
        """The node's float value."""
        ...

    def __add__(self, other: Self | float, /) -> Self: ...
    def __radd__(self, other: float, /) -> Self: ...
    def __sub__(self, other: Self | float, /) -> Self: ...
    def __rsub__(self, other: float, /) -> Self: ...
    def __mul__(self, other: Self | float, /) -> Self: ...
    def __rmul__(self, other: float, /) -> Self: ...
    def __truediv__(self, other: Self | float, /) -> Self: ...
    def __rtruediv__(self, other: float, /) -> Self: ...
    def __pow__(self, exponent: Self | float, /) -> Self: ...
    def __neg__(self) -> Self: ...
    def log(self) -> Self:
        """The natural logarithm, as a node."""
        ...


N = TypeVar("N", float, NodeLike)
"""A rule's number type: ``float`` for first order, a node (:class:`NodeLike`: ``refgrad.Value``) to build graphs."""


class Partials(Protocol):
    """Local partial derivatives of an op: one entry per input, in order.

    Called as ``rule(inputs, output, params)``, where ``inputs`` are the op's
    operands, ``output`` is the op's result (so that ``exp``, ``tanh`` and
    ``sigmoid`` reuse it, like JAX's ``defjvp2``) and ``params`` its static
    parameters. All of them are floats, or all are nodes.
    """

    def __call__(self, inputs: tuple[N, ...], output: N, params: Params, /) -> tuple[N | float, ...]:
        """Return d output / d inputs[i] for every i."""
        ...


@dataclass(frozen=True, slots=True)
class Domain:
    """Where an op's result is a finite real number.

    ``contains(*inputs, *params)`` is true exactly when the float forward
    succeeds with a finite result; ``description`` says the same in words and
    is quoted in every :class:`refgrad.DomainError` the op raises.
    """

    description: str
    contains: Callable[..., bool]


@dataclass(frozen=True, slots=True)
class Kink:
    """A point where an op is not differentiable in one of its inputs.

    ``input`` is the operand's position, ``at`` the point, ``convention`` the
    value refgrad (following PyTorch) uses for the derivative there.
    """

    input: int
    at: float
    convention: str


@dataclass(frozen=True, slots=True)
class Spelling:
    """How a micrograd-style ``Value`` writes an op: a Python operator or a method.

    The oracle drives micrograd-style engines by it and writes its counterexample
    scripts with it, so a printed script runs exactly what was checked.
    """

    template: str
    """Source text, with the operands as ``{0}``, ``{1}`` and the parameters as ``{p0}``:
    ``"{0} + {1}"``, ``"{0} ** {p0}"``, ``"{0}.exp()"``."""
    method: str | None = None
    """The method a class must have, for an op written as a method call (``"exp"``)."""
    builtin: str | None = None
    """A builtin function that writes the op too, through a dunder method (``abs(x)``, ``__abs__``),
    for classes without :attr:`method`."""


@dataclass(frozen=True, slots=True, eq=False)
class OpSpec:
    """One operation: its signature, forward, partial derivatives, domain and kinks.

    Compared and hashed by identity (``eq=False``): two specs are the same op
    only if they are the same object.
    """

    name: str
    """Unique name, e.g. ``"mul"``."""
    arity: int
    """Number of ``Value`` operands."""
    params: tuple[str, ...]
    """Names of the static parameters, e.g. ``("exponent",)`` for ``x ** c``."""
    forward: Callable[..., float]
    """``forward(*inputs, *params)`` on floats; may raise or overflow outside the domain."""
    partials: Partials
    """Local partial derivatives, generic over floats and nodes."""
    domain: Domain
    """Where the result is finite, with the message used in errors."""
    kinks: tuple[Kink, ...]
    """Points of non-differentiability and the convention used there (may be empty)."""
    formula: str
    """The forward as maths for people, e.g. ``"x * y"``."""
    partial_formulas: tuple[str, ...]
    """Each partial derivative as maths for people, aligned with the inputs."""
    symbol: str
    """Short label for graph pictures and micrograd's ``_op``, e.g. ``"*"``."""
    torch: str | None
    """The PyTorch function computing the same op, e.g. ``"torch.mul"``: its conventions are the ones
    refgrad follows, and the oracle checks the op against it (``refgrad.oracle.TORCH_REFERENCES``).
    ``None`` for an op of your own that PyTorch lacks; every op in :data:`refgrad.ops.registry` has one."""
    spelling: Spelling | None = None
    """How a micrograd-style ``Value`` writes the op; ``None`` for an op written only as
    :func:`refgrad.apply` (an op of your own)."""
    node_only: tuple[int, ...] = ()
    """The operands that are always nodes, never numbers: ``vpow``'s exponent (``x ** c`` with
    a number ``c`` is ``pow``, which takes ``c`` as a parameter)."""
    divides: bool = False
    """Whether a derivative of the op (of first or second order) divides by an operand, so that
    it overflows where the operand's reciprocal does."""
    constant_partials: Callable[..., bool] | None = None
    """``constant_partials(*operands, *params)``: true where a partial is a constant by convention
    (PyTorch's), not the rule's expression, so that its own derivatives are lost there: ``vpow`` at
    ``y == 0``, where d/dx is the constant 0 but d/dy of ``y * x ** (y - 1)`` is ``1 / x``."""

    def __repr__(self) -> str:
        return f"<op {self.name}>"


class Registry:
    """The ops refgrad knows, in a fixed order. Iterating yields each :class:`OpSpec`."""

    __slots__ = ("_by_name", "_specs")

    def __init__(self, specs: tuple[OpSpec, ...]) -> None:
        by_name: dict[str, OpSpec] = {}
        for spec in specs:
            if spec.name in by_name:
                raise ValueError(f"duplicate op name {spec.name!r} in registry")
            by_name[spec.name] = spec
        self._specs = specs
        self._by_name = by_name

    def __iter__(self) -> Iterator[OpSpec]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            return item in self._by_name
        return any(item is spec for spec in self._specs)

    def __getitem__(self, name: str) -> OpSpec:
        """The op called ``name``; ``KeyError`` listing the known names otherwise."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(self.unknown(name)) from None

    def unknown(self, name: object) -> str:
        """What to say of a name that is not an op here: ``no op named 'x'; known ops: add, ...``."""
        return f"no op named {name!r}; known ops: {', '.join(self._by_name)}"

    def check_name(self, name: object, where: str = "") -> None:
        """``ValueError`` (its message prefixed by ``where``) unless ``name`` is the name of an op here."""
        if not (isinstance(name, str) and name in self._by_name):
            raise ValueError(where + self.unknown(name))

    @property
    def names(self) -> tuple[str, ...]:
        """Every op's name, in registry order."""
        return tuple(self._by_name)

    def __repr__(self) -> str:
        return f"Registry({', '.join(self._by_name)})"


_Node = TypeVar("_Node", bound=NodeLike)


@overload
def log_of(x: float) -> float: ...
@overload
def log_of(x: _Node) -> _Node: ...
def log_of(x: float | _Node) -> float | _Node:
    """Natural logarithm of a float or of a node, for rules that need one."""
    if isinstance(x, float | int):
        return math.log(x)
    return x.log()
