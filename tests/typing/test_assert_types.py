"""Type-level tests: mypy checks these assert_type calls; at run time they only execute.

They pin what users rely on: operators with numbers on either side return Value, grad's
result type follows create_graph, and Gradients lookups are floats.
"""

from __future__ import annotations

from typing import assert_type

from refgrad import Gradients, Value, grad, hessian, jvp
from refgrad.micrograd.engine import Value as CompatValue


def test_operator_result_types() -> None:
    """Value op float, float op Value and Value op Value are all Value."""
    x = Value(2.0)
    assert_type(x + 1.0, Value)
    assert_type(1.0 + x, Value)
    assert_type(2 * x, Value)
    assert_type(x - 1, Value)
    assert_type(10.0 / x, Value)
    assert_type(x**3, Value)
    assert_type(x**x, Value)
    assert_type(2**x, Value)
    assert_type(-x, Value)
    assert_type(abs(x), Value)
    assert_type(x.relu().exp().log().tanh().sigmoid().abs(), Value)
    assert_type(x.data, float)
    assert_type(x.inputs, tuple[Value, ...])
    assert isinstance(x.relu(), Value)


def test_grad_result_follows_create_graph() -> None:
    """grad() gives floats by default and Values with create_graph=True."""
    x = Value(2.0)
    y = x * x
    assert_type(grad(y, (x,)), tuple[float, ...])
    assert_type(grad(y, (x,), create_graph=False), tuple[float, ...])
    assert_type(grad(y, (x,), create_graph=True), tuple[Value, ...])
    flag: bool = True
    assert_type(grad(y, (x,), create_graph=flag), tuple[float, ...] | tuple[Value, ...])
    assert_type(jvp(y, (x,), (1.0,)), float)
    assert_type(hessian(y, (x,)), tuple[tuple[float, ...], ...])
    assert grad(y, (x,)) == (4.0,)


def test_gradients_lookups_are_floats() -> None:
    """Gradients is a Mapping[Value, float]."""
    x = Value(2.0)
    grads = (x * x).backward()
    assert_type(grads, Gradients)
    assert_type(grads[x], float)
    assert_type(grads.get(x), float | None)
    assert grads[x] == 4.0


def test_micrograd_surface_types() -> None:
    """The micrograd surface's operators return its own Value; data and grad are floats."""
    a = CompatValue(1.0)
    assert_type(a * 2 + 1, CompatValue)
    assert_type(a.grad, float)
    assert_type(a.backward(), None)
    assert isinstance(a * 2, CompatValue)
