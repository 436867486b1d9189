"""Engines that misbehave in every way the oracle must survive (``--engine _misbehaving_engines:CLASS``).

Each is the correct :class:`_toy_engine.ToyValue` with one misbehaviour,
triggered only on some inputs (a negative product, say), as real bugs are: the
oracle's probe, which runs each op once on small positive numbers, then sees a
working op, and the random run must find the misbehaviour, report it with its
name and shrink it. The misbehaviours:

* raising inside an op, or inside ``backward``;
* producing a node whose ``.data`` is not a float, or is NaN;
* changing a node's ``.data`` in place, in an op or in ``backward``;
* forgetting to set ``.grad`` (the attribute is missing);
* calling ``sys.exit`` or ``os._exit``;
* looping forever, or waiting forever on a lock it holds (a deadlock).
"""

from __future__ import annotations

import math
import os
import sys
import threading

from _toy_engine import ToyValue


class RaisesInOp(ToyValue):
    """``x * y`` raises RuntimeError when the product is negative."""

    def __mul__(self, other: ToyValue | float) -> ToyValue:
        """Multiply, or fail on a negative product."""
        product = super().__mul__(other)
        if product.data < 0.0:
            raise RuntimeError("planted failure in mul")
        return product


class RaisesInBackward(ToyValue):
    """``backward`` raises KeyError when the output is negative."""

    def backward(self) -> None:
        """Backward, or fail when the output is negative."""
        if self.data < 0.0:
            raise KeyError("planted failure in backward")
        super().backward()


class ReturnsNonFloat(ToyValue):
    """``x + y`` holds a string in ``.data`` when the sum is negative."""

    def __add__(self, other: ToyValue | float) -> ToyValue:
        """Add; a negative sum comes back as text."""
        total = super().__add__(other)
        if total.data < 0.0:
            total.data = str(total.data)  # type: ignore[assignment]  # the planted bug
        return total


class ReturnsNaN(ToyValue):
    """``x * y`` is NaN when the product is negative (without raising)."""

    def __mul__(self, other: ToyValue | float) -> ToyValue:
        """Multiply; a negative product comes back as NaN."""
        product = super().__mul__(other)
        if product.data < 0.0:
            product.data = math.nan
        return product


class MutatesInOp(ToyValue):
    """``x * y`` zeroes its left operand's ``.data`` when the product is negative."""

    def __mul__(self, other: ToyValue | float) -> ToyValue:
        """Multiply, then overwrite the left operand."""
        product = super().__mul__(other)
        if product.data < 0.0:
            self.data = 0.0
        return product


class MutatesInBackward(ToyValue):
    """``backward`` halves every leaf's ``.data`` when the output is negative."""

    def backward(self) -> None:
        """Backward, then change the leaves in place."""
        super().backward()
        if self.data < 0.0:
            stack: list[ToyValue] = [self]
            while stack:
                node = stack.pop()
                if not node.children:
                    node.data /= 2.0
                stack.extend(node.children)


class ForgetsGrad(ToyValue):
    """``backward`` deletes ``.grad`` from the nodes when the output is negative."""

    def backward(self) -> None:
        """Backward, then drop the gradients."""
        super().backward()
        if self.data < 0.0:
            stack: list[ToyValue] = [self]
            while stack:
                node = stack.pop()
                if "grad" in vars(node):
                    del node.grad
                stack.extend(node.children)


class CallsSysExit(ToyValue):
    """``backward`` calls ``sys.exit(3)`` when the output is negative."""

    def backward(self) -> None:
        """Backward, or exit."""
        if self.data < 0.0:
            sys.exit(3)
        super().backward()


class CallsOsExit(ToyValue):
    """``backward`` calls ``os._exit(7)`` (no clean-up, no exception) when the output is negative."""

    def backward(self) -> None:
        """Backward, or end the process at once."""
        if self.data < 0.0:
            os._exit(7)
        super().backward()


class LoopsForever(ToyValue):
    """``backward`` never returns when the output is negative."""

    def backward(self) -> None:
        """Backward, or spin."""
        spins = 0
        while self.data < 0.0:
            spins += 1
        super().backward()


class Deadlocks(ToyValue):
    """``backward`` takes a lock it already holds when the output is negative: a hang that uses no processor."""

    def backward(self) -> None:
        """Backward, or wait forever."""
        if self.data < 0.0:
            lock = threading.Lock()
            with lock:
                lock.acquire()  # not reentrant: never returns
        super().backward()


class Chatty(ToyValue):
    """A correct engine that prints on every op and reads its stdin in backward: the worker must not care."""

    def __add__(self, other: ToyValue | float) -> ToyValue:
        """Add, and say so."""
        print("adding", self.data, other)  # the point: output on the worker's stdout
        return super().__add__(other)

    def backward(self) -> None:
        """Read stdin (empty in the worker), then backward."""
        sys.stdin.read()
        super().backward()
