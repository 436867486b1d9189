"""Engines in the styles people publish, written afresh for the report card's tests.

* ``LectureValue``: the lecture notebook's style: tanh from exp, division as ``x * y ** -1``,
  subtraction as ``x + (-y)``, a recursive topological sort, no ``__rsub__``/``__rtruediv__``.
  Right everywhere it is defined, fragile at edges (tanh beyond |x| = 355, ``x ** 0`` at 0,
  tiny divisors, deep graphs).
* ``ManyBugs``: three defects at once: tanh's derivative ``1 - t``, ``c - x`` computing ``x - c``,
  and a ``relu`` that returns nothing.
* ``EagerRules``: local derivatives computed in the forward pass (right, and so it passes).
* ``BreadthFirst``: backward walks nodes in breadth-first order from the output, so a node reached
  early passes its gradient on before every consumer has added to it.
* ``TanhOff``: tanh's derivative off by a relative 2e-15, which only the exact reference resolves.

The corpus's correct engine, :class:`_toy_engine.ToyValue`, accumulates as torch does; its
``StaleGrads`` and ``ZeroGradSelfOnly`` accumulate as micrograd does, or clear too little.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

from _toy_engine import ToyValue

Backward = Callable[[], None]


class LectureValue:
    """The lecture's Value: ``data``, ``grad``, a closure per node, recursive ``backward``."""

    def __init__(self, data: float, children: tuple[LectureValue, ...] = ()) -> None:
        self.data = data
        self.grad = 0.0
        self._backward: Backward = lambda: None
        self._prev = set(children)

    def __add__(self, other: LectureValue | float) -> LectureValue:
        other = other if isinstance(other, LectureValue) else LectureValue(other)
        out = LectureValue(self.data + other.data, (self, other))

        def backward() -> None:
            self.grad += out.grad
            other.grad += out.grad

        out._backward = backward
        return out

    def __radd__(self, other: float) -> LectureValue:
        return self + other

    def __mul__(self, other: LectureValue | float) -> LectureValue:
        other = other if isinstance(other, LectureValue) else LectureValue(other)
        out = LectureValue(self.data * other.data, (self, other))

        def backward() -> None:
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad

        out._backward = backward
        return out

    def __rmul__(self, other: float) -> LectureValue:
        return self * other

    def __pow__(self, other: float) -> LectureValue:
        assert isinstance(other, int | float), "only int/float powers"
        out = LectureValue(self.data**other, (self,))

        def backward() -> None:
            self.grad += other * self.data ** (other - 1) * out.grad

        out._backward = backward
        return out

    def __truediv__(self, other: LectureValue | float) -> LectureValue:
        other = other if isinstance(other, LectureValue) else LectureValue(other)
        return self * other**-1

    def __neg__(self) -> LectureValue:
        return self * -1

    def __sub__(self, other: LectureValue | float) -> LectureValue:
        return self + (-other)

    def exp(self) -> LectureValue:
        out = LectureValue(math.exp(self.data), (self,))

        def backward() -> None:
            self.grad += out.data * out.grad

        out._backward = backward
        return out

    def tanh(self) -> LectureValue:
        e = math.exp(2 * self.data)
        t = (e - 1) / (e + 1)
        out = LectureValue(t, (self,))

        def backward() -> None:
            self.grad += (1 - t**2) * out.grad

        out._backward = backward
        return out

    def backward(self) -> None:
        topo: list[LectureValue] = []
        visited: set[LectureValue] = set()

        def build(node: LectureValue) -> None:
            if node not in visited:
                visited.add(node)
                for child in node._prev:
                    build(child)
                topo.append(node)

        build(self)
        self.grad = 1.0
        for node in reversed(topo):
            node._backward()


class ForgetsOutGrad(LectureValue):
    """exp's backward adds its local derivative alone, without ``* out.grad``: right alone, wrong inside anything."""

    def exp(self) -> LectureValue:
        out = LectureValue(math.exp(self.data), (self,))

        def backward() -> None:
            self.grad += out.data  # the planted bug: the gradient arriving at out is not multiplied in

        out._backward = backward
        return out


class ManyBugs(ToyValue):
    """Three defects: tanh' as 1 - t, ``c - x`` as ``x - c``, and a relu that returns nothing."""

    def tanh(self) -> ToyValue:
        t = math.tanh(self.data)
        return self._make(t, (self,), lambda: (1.0 - t,))

    def __rsub__(self, other: float) -> ToyValue:
        return self - other

    def relu(self) -> ToyValue:  # type: ignore[return]  # the planted bug: no return statement
        self._make(max(self.data, 0.0), (self,), lambda: (1.0 if self.data > 0.0 else 0.0,))


class EagerRules(ToyValue):
    """Local derivatives computed while building each node, not in backward: the same numbers."""

    def __mul__(self, other: ToyValue | float) -> ToyValue:
        o = self._lift(other)
        partials = (o.data, self.data)
        return self._make(self.data * o.data, (self, o), lambda: partials)

    def tanh(self) -> ToyValue:
        t = math.tanh(self.data)
        partials = (1.0 - t * t,)
        return self._make(t, (self,), lambda: partials)


class BreadthFirst(ToyValue):
    """backward() visits nodes breadth-first from the output instead of in reverse topological order."""

    def backward(self) -> None:
        self.grad = 1.0
        queue: deque[ToyValue] = deque([self])
        seen = {id(self)}
        while queue:
            node = queue.popleft()
            if node.rule is None:
                continue
            for child, partial in zip(node.children, node.rule(), strict=True):
                child.grad += partial * node.grad
                if id(child) not in seen:
                    seen.add(id(child))
                    queue.append(child)


class SetOrder(ToyValue):
    """backward() visits the nodes in the iteration order of a set (by address): right on some runs, not others."""

    def backward(self) -> None:
        nodes: set[ToyValue] = set()
        stack: list[ToyValue] = [self]
        while stack:
            node = stack.pop()
            if node not in nodes:
                nodes.add(node)
                stack.extend(node.children)
        self.grad = 1.0
        for node in nodes:
            if node.rule is not None:
                for child, partial in zip(node.children, node.rule(), strict=True):
                    child.grad += partial * node.grad


def make_value(data: float) -> ToyValue:
    """A factory function making leaves, instead of the class itself (``--engine _corpus:make_value``)."""
    return ToyValue(data)


class ExpByPower(ToyValue):
    """exp computed as ``math.e ** x``: right, but a few ulps off, more so for large x."""

    def exp(self) -> ToyValue:
        out = math.e**self.data
        return self._make(out, (self,), lambda: (out,))


TANH_SLIP: float = 2e-15
"""How far (relatively) :class:`TanhOff`'s tanh derivative is from the right one: about 9 to 18 ulps."""


class TanhOff(ToyValue):
    """tanh's derivative ``(1 - t * t) * (1 + 2e-15)``: an inaccurate rule that torch's error model cannot see."""

    def tanh(self) -> ToyValue:
        t = math.tanh(self.data)
        return self._make(t, (self,), lambda: ((1.0 - t * t) * (1.0 + TANH_SLIP),))
