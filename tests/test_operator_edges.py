"""Operators at their edges, on both node types: non-numbers on either side, reflected forms,
subclasses, labels, and the micrograd surface's accumulated gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from refgrad import DomainError, Value, jvp
from refgrad.micrograd.engine import Value as CompatValue
from refgrad.ops import MUL

# Typed Any: the point is to hand the operators operands their annotations exclude.
_OPERATORS: list[Callable[[Any, Any], object]] = [
    lambda left, right: left + right,
    lambda left, right: left - right,
    lambda left, right: left * right,
    lambda left, right: left / right,
    lambda left, right: left**right,
]


@pytest.mark.parametrize("node_type", [Value, CompatValue])
@pytest.mark.parametrize("apply_operator", _OPERATORS)
def test_a_non_number_on_either_side_is_a_type_error(
    node_type: type[Value] | type[CompatValue], apply_operator: Callable[[Any, Any], object]
) -> None:
    """x op "a" and "a" op x raise TypeError for + - * / ** on both node types (never a str node)."""
    x = node_type(2.0)
    with pytest.raises(TypeError):
        apply_operator(x, "a")
    with pytest.raises(TypeError):
        apply_operator("a", x)


@pytest.mark.parametrize("node_type", [Value, CompatValue])
def test_reflected_operators_put_the_number_first(node_type: type[Value] | type[CompatValue]) -> None:
    """2 - x, 2 * x, 2 / x and 2 ** x compute with the number as the left operand."""
    x = node_type(4.0)
    assert (2 - x).data == -2.0
    assert (2 * x).data == 8.0
    assert (2 / x).data == 0.5
    assert (2**x).data == 16.0
    assert (2 + x).data == 6.0


def test_abs_of_either_node_type() -> None:
    """abs() of a node is op abs, for both node types."""
    assert abs(Value(-3.0)).data == 3.0
    assert abs(CompatValue(-3.0)).data == 3.0


def test_a_subclass_of_the_micrograd_value_is_an_operand_as_it_is() -> None:
    """An instance of a Value subclass is used as the node it is, not copied into a new leaf."""

    class Named(CompatValue):
        """A user's own node type, as micrograd code sometimes has."""

    x, y = CompatValue(2.0), Named(3.0, label="y")
    assert type(y) is Named
    assert y.label == "y"
    assert y.grad == 0.0
    # The result is of the left operand's class (operators are typed with Self).
    results: tuple[CompatValue, ...] = (x * y, x - y, x + y, x / y, 2.0 * y, y * 2.0)
    for result in results:
        assert y in result.inputs
    assert type(x * y) is CompatValue
    assert type(y * y) is Named
    assert type(y.tanh()) is Named
    z = x * y
    z.backward()
    assert y.grad == 2.0


def test_the_micrograd_surface_checks_labels() -> None:
    """label must be a str, when made and when set; a leaf has no inputs."""
    with pytest.raises(TypeError, match=r"^label must be a str, got int$"):
        CompatValue(1.0, label=3)  # type: ignore[arg-type]  # deliberately wrong type
    x = CompatValue(1.0, label="x")
    with pytest.raises(TypeError, match=r"^label must be a str, got NoneType$"):
        x.label = None  # type: ignore[assignment]  # deliberately wrong type
    x.label = "renamed"
    assert x.label == "renamed"
    assert x.inputs == ()


def test_accumulating_past_the_largest_float_is_a_domain_error() -> None:
    """backward() adds to .grad; a sum that overflows raises DomainError naming the node, not inf."""
    x = CompatValue(1.0)
    y = x * 1e307
    x.grad = 1.79e308
    with pytest.raises(DomainError, match=r"^accumulated gradient of Value\(data=1\.0, grad=1\.79e\+308\) overflows"):
        y.backward()


def test_a_directional_derivative_that_overflows_is_a_domain_error() -> None:
    """jvp with a huge tangent through a huge partial is infinite: DomainError saying so, not inf."""
    x = Value(1.0)
    y = x * 1e300
    assert jvp(y, [x], [1.0]) == 1e300
    with pytest.raises(DomainError, match=r"^jvp of Value\(data=1e\+300, op='mul'\) is not finite \(inf\)$"):
        jvp(y, [x], [1e300])


def test_an_op_spec_shows_its_name() -> None:
    """repr of a registry entry is <op name>."""
    assert repr(MUL) == "<op mul>"
    assert math.isfinite(MUL.forward(2.0, 3.0))
