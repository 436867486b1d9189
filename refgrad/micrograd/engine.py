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

import math
import numbers
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Final, cast

from refgrad.errors import DomainError
from refgrad.kernel import Node, install
from refgrad.numeric import as_finite_float, type_name
from refgrad.ops import POW
from refgrad.reverse import reverse_accumulate

__all__ = ["Value"]


class Value(Node):
    """A scalar and its gradient, as in micrograd (``data``, ``grad``, ``backward()``).

    Its operators are :class:`refgrad.kernel.Node`'s, shared with :class:`refgrad.Value`.
    """

    __slots__ = ("grad",)

    # Users may write data, grad and label; writes are checked so that a stray
    # NaN, string or int never reaches a rule. Nodes themselves are built
    # through the kernel's writable twin, which skips the check.
    _WRITABLE: ClassVar[frozenset[str]] = frozenset({"data", "grad", "label"})

    if TYPE_CHECKING:

        @property
        def data(self) -> float:
            """The value; you may assign to it (``p.data -= lr * p.grad``)."""
            ...

        @data.setter
        def data(self, value: float) -> None: ...  # checked by __setattr__

    grad: float
    """d output / d self, accumulated by ``backward()``; reset it with ``grad = 0``."""
    label: str
    """An optional name for pictures of the graph."""

    def __new__(
        cls, data: float | numbers.Real, _children: tuple[Value, ...] = (), _op: str = "", label: str = ""
    ) -> Value:
        """A leaf holding ``data`` (micrograd's signature; ``_children`` and ``_op`` must stay empty)."""
        if _children or _op:
            raise TypeError("build nodes with operators; Value(data, _children, _op) is micrograd-internal")
        if not isinstance(label, str):
            raise TypeError(f"label must be a str, got {type_name(label)}")
        return cls._new_leaf(as_finite_float(data, "Value data"), label or None)

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
install(Value, label="", grad=True)
