"""The node-building kernel (refgrad.kernel) as a node class defined at run time sees it.

``install`` and ``Node.__init_subclass__`` run when a node class is created, so most of their
work happens at import time; the classes here are made inside the tests, so every store the
kernel's constructors make is checked on nodes built while a test runs.
"""

from __future__ import annotations

import math

import pytest

from refgrad import Value, apply, grad
from refgrad.micrograd.engine import Value as MicrogradValue
from refgrad.ops import registry


def _forms(x: Value, y: Value) -> list[tuple[Value, str, Value, Value | None]]:
    """Every operator form: (node, op name, first operand node, second operand node or None)."""
    return [
        (x + y, "add", x, y),
        (x - y, "sub", x, y),
        (x * y, "mul", x, y),
        (x / y, "div", x, y),
        (x**y, "vpow", x, y),
        (-x, "neg", x, None),
        (abs(x), "abs", x, None),
        (x.abs(), "abs", x, None),
        (x.exp(), "exp", x, None),
        (x.log(), "log", x, None),
        (x.tanh(), "tanh", x, None),
        (x.sigmoid(), "sigmoid", x, None),
        (x.relu(), "relu", x, None),
    ]


def test_a_value_subclass_made_at_run_time_builds_complete_nodes() -> None:
    class Tagged(Value):
        pass

    x, y = Tagged(1.5, label="x"), Tagged(0.5)
    assert type(x) is Tagged
    assert type(y) is Tagged
    assert (x.data, x.label, x.op, x.params) == (1.5, "x", None, ())
    assert y.label is None
    for node, op, first, second in _forms(x, y):
        assert type(node) is Tagged
        assert node.op is registry[op]
        assert node.params == ()
        assert node.label is None
        operands = (first,) if second is None else (first, second)
        assert node.inputs == operands
        assert node._position > y._position  # pyright: ignore[reportPrivateUsage]  # built after its inputs
    power = x**2.0
    assert (power.op, power.params) == (registry["pow"], (2.0,))
    out = x * y + x
    grads = out.backward()
    assert (grads[x], grads[y]) == (1.5, 1.5)
    (first,) = grad(x * x * x, [x], create_graph=True)
    assert first.data == pytest.approx(3 * 1.5**2)
    (curvature,) = grad(first, [x])
    assert curvature == pytest.approx(6 * 1.5)


def test_reflected_operators_build_with_the_number_first() -> None:
    x = Value(2.0)
    for node, op, expected in (
        (3.0 + x, "add", 5.0),
        (3.0 - x, "sub", 1.0),
        (3.0 * x, "mul", 6.0),
        (3.0 / x, "div", 1.5),
        (3.0**x, "vpow", 9.0),
    ):
        assert node.op is registry[op]
        assert node.params == ()
        assert node.data == expected
        constant, second = node.inputs
        assert (constant.data, second) == (3.0, x)


def test_a_micrograd_subclass_made_at_run_time_has_its_own_constructors() -> None:
    class Traced(MicrogradValue):
        pass

    x, y = Traced(1.5, label="x"), Traced(0.5)
    assert type(x) is Traced
    assert type(y) is Traced
    assert (x.data, x.grad, x.label, x._op) == (1.5, 0.0, "x", "")  # pyright: ignore[reportPrivateUsage]
    out = x * y + 3.0 * x
    assert type(out) is Traced
    assert out.label == ""
    assert out.grad == 0.0
    assert out._op == "+"  # pyright: ignore[reportPrivateUsage]
    out.backward()
    assert (x.grad, y.grad) == (3.5, 1.5)

    # A subclass of that subclass is installed in turn, on the same surface.
    class Deeper(Traced):
        pass

    deep = Deeper(2.0)
    assert type(deep) is Deeper
    z = deep * 4.0
    assert type(z) is Deeper
    assert z.data == 8.0
    with pytest.raises(TypeError, match=r"cannot combine a .*Traced with a refgrad\.Value"):
        Traced(1.0) + Value(1.0)  # type: ignore[operator]


def test_apply_on_numbers_alone_makes_a_value() -> None:
    node = apply(registry["exp"], 1.0)
    assert type(node) is Value
    assert node.data == math.e
    product = apply(registry["mul"], 2.0, 3.0)
    assert (type(product), product.data) == (Value, 6.0)


def test_apply_keeps_the_first_nodes_class_and_makes_its_constants() -> None:
    m = MicrogradValue(2.0)
    node = apply(registry["mul"], 3.0, m)
    assert type(node) is MicrogradValue
    constant, second = node.inputs
    assert type(constant) is MicrogradValue
    assert (constant.data, second) == (3.0, m)
    node.backward()
    assert m.grad == 3.0


def test_apply_names_both_surfaces_when_they_are_mixed() -> None:
    with pytest.raises(TypeError, match="cannot combine") as raised:
        apply(registry["mul"], MicrogradValue(1.0), Value(2.0))
    assert str(raised.value) == (
        "input 1 of 'mul': cannot combine a refgrad.micrograd.engine.Value with a refgrad.Value in one graph"
    )
