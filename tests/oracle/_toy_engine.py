"""A micrograd-style engine written afresh for the oracle's tests, with switchable bugs.

``ToyValue`` supports every registry op with PyTorch's conventions (relu'(0) = 0,
abs'(0) = 0, d/dx x ** 0 = 0, and at a zero base d/dx x ** y = 0 for y = 0 and
d/dy x ** y = 0 for y >= 0). It knows nothing of refgrad: forwards come from
``math``, derivatives are written out below, and its backward is micrograd's
(a topological order, then each node pushes ``grad`` into its children), but for the nodes
inside the graph starting each pass from 0, as torch's accumulation does.

Each subclass plants one bug; the oracle must catch every one of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

Rule = Callable[[], tuple[float, ...]]


class ToyValue:
    """A scalar with ``data``, ``grad`` and ``backward()``; operators and methods as in micrograd."""

    bug: ClassVar[str] = ""

    def __init__(self, data: float, children: tuple[ToyValue, ...] = (), rule: Rule | None = None) -> None:
        self.data = float(data)
        self.grad = 0.0
        self.children = children
        # Partials are computed in backward, not here: a forward that is in the
        # domain must not fail because a derivative would be infinite.
        self.rule = rule

    @classmethod
    def _lift(cls, other: ToyValue | float) -> ToyValue:
        return other if isinstance(other, ToyValue) else cls(other)

    def _make(self, data: float, children: tuple[ToyValue, ...], rule: Rule) -> ToyValue:
        return type(self)(data, children, rule)

    def __add__(self, other: ToyValue | float) -> ToyValue:
        o = self._lift(other)
        return self._make(self.data + o.data, (self, o), lambda: (1.0, 1.0))

    def __radd__(self, other: float) -> ToyValue:
        return self._lift(other) + self

    def __sub__(self, other: ToyValue | float) -> ToyValue:
        o = self._lift(other)
        return self._make(self.data - o.data, (self, o), lambda: (1.0, -1.0))

    def __rsub__(self, other: float) -> ToyValue:
        return self._lift(other) - self

    def __mul__(self, other: ToyValue | float) -> ToyValue:
        o = self._lift(other)
        return self._make(self.data * o.data, (self, o), lambda: (o.data, self.data))

    def __rmul__(self, other: float) -> ToyValue:
        return self._lift(other) * self

    def __truediv__(self, other: ToyValue | float) -> ToyValue:
        o = self._lift(other)
        # -(x / y) / y, not -x / (y * y): y * y underflows for |y| < 1e-162 (the oracle caught that).
        return self._make(self.data / o.data, (self, o), lambda: (1.0 / o.data, -(self.data / o.data) / o.data))

    def __rtruediv__(self, other: float) -> ToyValue:
        return self._lift(other) / self

    def __neg__(self) -> ToyValue:
        return self._make(-self.data, (self,), lambda: (-1.0,))

    def __pow__(self, exponent: ToyValue | float) -> ToyValue:
        if isinstance(exponent, ToyValue):
            return self._vpow(exponent)
        c = float(exponent)
        return self._make(
            math.pow(self.data, c), (self,), lambda: (0.0 if c == 0.0 else c * math.pow(self.data, c - 1),)
        )

    def __rpow__(self, base: float) -> ToyValue:
        return self._lift(base)._vpow(self)

    def _vpow(self, exponent: ToyValue) -> ToyValue:
        x, y = self, exponent
        out = math.pow(x.data, y.data)

        def rule() -> tuple[float, float]:
            d_base = 0.0 if y.data == 0.0 else y.data * math.pow(x.data, y.data - 1)
            d_exponent = 0.0 if x.data == 0.0 and y.data >= 0.0 else out * math.log(x.data)
            return d_base, d_exponent

        return self._make(out, (x, y), rule)

    def exp(self) -> ToyValue:
        """e ** self."""
        out = math.exp(self.data)
        return self._make(out, (self,), lambda: (out,))

    def log(self) -> ToyValue:
        """Natural logarithm."""
        return self._make(math.log(self.data), (self,), lambda: (1.0 / self.data,))

    def tanh(self) -> ToyValue:
        """Hyperbolic tangent."""
        t = math.tanh(self.data)
        if self.bug == "tanh":
            return self._make(t, (self,), lambda: (1.0 - t,))
        return self._make(t, (self,), lambda: (1.0 - t * t,))

    def sigmoid(self) -> ToyValue:
        """Logistic sigmoid."""
        s = 1.0 / (1.0 + math.exp(-self.data)) if self.data >= 0 else math.exp(self.data) / (1.0 + math.exp(self.data))
        return self._make(s, (self,), lambda: (s * (1.0 - s),))

    def relu(self) -> ToyValue:
        """max(self, 0)."""
        x = self.data
        if self.bug == "relu-kink":
            return self._make(max(x, 0.0), (self,), lambda: (1.0 if x >= 0.0 else 0.0,))
        return self._make(max(x, 0.0), (self,), lambda: (1.0 if x > 0.0 else 0.0,))

    def abs(self) -> ToyValue:
        """|self|."""
        x = self.data
        return self._make(abs(x), (self,), lambda: (1.0 if x > 0.0 else -1.0 if x < 0.0 else 0.0,))

    def zero_grad(self) -> None:
        """Set ``grad`` to 0 on this node and every node it depends on."""
        stack: list[ToyValue] = [self]
        seen: set[int] = set()
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            node.grad = 0.0
            if self.bug != "zero-self":
                stack.extend(node.children)

    def backward(self) -> None:
        """Fill ``grad`` of every node this one depends on (micrograd's algorithm, without recursion).

        Unlike micrograd's, the nodes inside the graph start each pass from 0 (the ``"stale"`` bug
        leaves them as an earlier pass left them, as micrograd does).
        """
        order: list[ToyValue] = []
        seen: set[int] = set()
        stack: list[tuple[ToyValue, bool]] = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in node.children)
        if self.bug != "stale":
            # As torch: each pass adds its own gradients to the leaves; the nodes inside start from 0, so
            # that gradients an earlier pass left there are not passed on again.
            for node in order:
                if node.rule is not None:
                    node.grad = 0.0
        self.grad = 1.0
        sweep = order if self.bug == "order" else list(reversed(order))
        for node in sweep:
            if node.rule is None:
                continue
            for child, partial in zip(node.children, node.rule(), strict=True):
                if self.bug == "accumulate":
                    child.grad = partial * node.grad
                else:
                    child.grad += partial * node.grad


class WrongTanh(ToyValue):
    """tanh' computed as 1 - t instead of 1 - t**2."""

    bug = "tanh"


class NoAccumulation(ToyValue):
    """A node's gradient is overwritten, not added to, when it feeds several nodes."""

    bug = "accumulate"


class WrongOrder(ToyValue):
    """Backward visits nodes in topological order instead of reverse topological order."""

    bug = "order"


class ReluKink(ToyValue):
    """relu'(0) = 1: right everywhere except at the kink."""

    bug = "relu-kink"


class StaleGrads(ToyValue):
    """micrograd's own accumulation: a second backward() passes the first pass's inner gradients on again."""

    bug = "stale"


class ZeroGradSelfOnly(ToyValue):
    """``zero_grad()`` clears only the node it is called on, not what it depends on."""

    bug = "zero-self"
