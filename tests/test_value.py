"""The node: construction, immutability, identity, operators and their registry entries."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refgrad import Value, registry
from refgrad.ops import ADD, DIV, MUL, POW, SUB, VPOW, OpSpec

finite_floats = st.floats(allow_nan=False, allow_infinity=False)


@given(finite_floats)
def test_leaf_holds_the_float_it_was_given(x: float) -> None:
    """A leaf's data is exactly the float it was built from, and it has no op and no inputs."""
    node = Value(x)
    assert node.data == x
    assert type(node.data) is float
    assert node.op is None
    assert node.inputs == ()
    assert node.params == ()
    assert node.label is None


@given(st.integers(min_value=-(2**60), max_value=2**60))
def test_int_leaf_is_converted_to_float(n: int) -> None:
    """Integers are real numbers: they become the nearest float."""
    node = Value(n)
    assert type(node.data) is float
    assert node.data == float(n)


def test_other_real_numbers_are_accepted() -> None:
    """Any numbers.Real but bool is a valid leaf (Fraction here)."""
    assert Value(Fraction(1, 4)).data == 0.25


@pytest.mark.parametrize("bad", ["1.0", None, 1 + 2j, True, False, [1.0], object()])
def test_non_numbers_raise_type_error(bad: object) -> None:
    """str, None, complex, bool and containers are refused with a TypeError naming the type."""
    with pytest.raises(TypeError, match=type(bad).__name__):
        Value(bad)  # type: ignore[arg-type]  # deliberately wrong input


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 10**400])
def test_non_finite_numbers_raise_value_error(bad: float) -> None:
    """NaN, infinities and integers too large for a float are refused with a ValueError."""
    with pytest.raises(ValueError, match=r"finite|too large"):
        Value(bad)


def test_label_must_be_a_string() -> None:
    """A label is a str or None."""
    assert Value(1.0, label="w").label == "w"
    with pytest.raises(TypeError, match="label"):
        Value(1.0, label=3)  # type: ignore[arg-type]  # deliberately wrong input


@pytest.mark.parametrize("name", ["data", "op", "params", "label", "inputs", "grad", "anything", "_first"])
def test_every_attribute_assignment_raises(name: str) -> None:
    """Nodes are immutable: setting or deleting any attribute raises AttributeError."""
    node = Value(2.0) * Value(3.0)
    with pytest.raises(AttributeError):
        setattr(node, name, 1.0)
    with pytest.raises(AttributeError):
        delattr(node, name)
    assert node.data == 6.0


def test_there_is_no_grad_attribute() -> None:
    """Gradients are returned, never stored: a node has no grad."""
    x = Value(1.0)
    assert not hasattr(x, "grad")
    assert not hasattr(x * x, "grad")


def test_nodes_hash_and_compare_by_identity() -> None:
    """Two equal constants are two nodes; a node equals only itself."""
    a, b = Value(1.0), Value(1.0)
    assert a != b
    assert a == a  # noqa: PLR0124  # identity is the point
    assert len({a, b}) == 2
    assert hash(a) != hash(b)


def test_order_comparisons_and_truth_are_refused() -> None:
    """No silent ordering or truthiness: compare .data explicitly."""
    a, b = Value(1.0), Value(2.0)
    with pytest.raises(TypeError):
        _ = a < b  # type: ignore[operator]  # deliberately unsupported
    with pytest.raises(TypeError, match="truth value"):
        bool(a)


def test_copies_are_the_same_node() -> None:
    """An immutable node is its own copy."""
    x = Value(3.0) + 1
    assert copy.copy(x) is x
    assert copy.deepcopy(x) is x


def test_square_has_two_edges_to_the_same_node() -> None:
    """x * x records both operands: the inputs are a tuple, not a set."""
    x = Value(3.0)
    y = x * x
    assert y.inputs == (x, x)
    assert y.op is MUL


_CONSTANT_CASES: list[tuple[Callable[[Value], Value], OpSpec, int, float]] = [
    (lambda x: 2 * x, MUL, 0, 2.0),
    (lambda x: x * 2, MUL, 1, 2.0),
    (lambda x: x - 1, SUB, 1, 1.0),
    (lambda x: 1 - x, SUB, 0, 1.0),
    (lambda x: 10.0 / x, DIV, 0, 10.0),
    (lambda x: x / 4, DIV, 1, 4.0),
    (lambda x: 1 + x, ADD, 0, 1.0),
    (lambda x: 2**x, VPOW, 0, 2.0),
]


@pytest.mark.parametrize(("build", "op", "constant_position", "constant"), _CONSTANT_CASES)
def test_numbers_on_either_side_become_constant_leaves(
    build: object, op: object, constant_position: int, constant: float
) -> None:
    """A number next to an operator is wrapped as a fresh constant leaf, in its operand position."""
    x = Value(3.0)
    assert callable(build)
    y = build(x)
    assert isinstance(y, Value)
    assert y.op is op
    leaf = y.inputs[constant_position]
    assert leaf is not x
    assert leaf.op is None
    assert leaf.data == constant
    assert y.inputs[1 - constant_position] is x


def test_power_with_a_number_is_pow_with_a_static_exponent() -> None:
    """x ** 3 is op pow with params (3.0,) and a single input; x ** y is vpow."""
    x, y = Value(2.0), Value(3.0)
    cube = x**3
    assert cube.op is POW
    assert cube.params == (3.0,)
    assert cube.inputs == (x,)
    assert cube.data == 8.0
    both = x**y
    assert both.op is VPOW
    assert both.inputs == (x, y)
    assert both.data == 8.0


def test_unsupported_operands_raise_type_error() -> None:
    """Strings, None and bools are not numbers for the operators either."""
    x = Value(1.0)
    for bad in ("a", None, True, 1j):
        with pytest.raises(TypeError):
            _ = x + bad  # type: ignore[operator]  # deliberately wrong input
        with pytest.raises(TypeError):
            _ = bad * x  # type: ignore[operator]  # deliberately wrong input
    with pytest.raises(TypeError):
        _ = x ** "2"  # type: ignore[operator]  # deliberately wrong input


def test_nan_constant_in_an_operator_raises_value_error() -> None:
    """A NaN next to an operator is refused like a NaN leaf."""
    with pytest.raises(ValueError, match="finite"):
        _ = Value(1.0) + math.nan


def test_every_method_and_operator_dispatches_to_its_registry_entry() -> None:
    """Each operator and method builds a node whose op is the registry entry of that name."""
    x, y = Value(0.5), Value(2.0)
    built = {
        "add": x + y,
        "sub": x - y,
        "mul": x * y,
        "div": x / y,
        "neg": -x,
        "pow": x**2,
        "vpow": x**y,
        "exp": x.exp(),
        "log": x.log(),
        "tanh": x.tanh(),
        "sigmoid": x.sigmoid(),
        "relu": x.relu(),
        "abs": x.abs(),
    }
    assert set(built) == set(registry.names)
    for name, node in built.items():
        spec = registry[name]
        assert node.op is spec
        assert node.data == spec.forward(*(i.data for i in node.inputs), *node.params)
    assert abs(-x).op is registry["abs"]


def test_numpy_scalars_defer_to_value_operators() -> None:
    """numpy scalars on the left produce a Value, not an object array."""
    x = Value(2.0)
    product = np.float64(3.0) * x
    assert isinstance(product, Value)
    assert product.data == 6.0
    assert isinstance(np.int64(2) + x, Value)  # type: ignore[operator]  # numpy's stubs omit the deferral


def test_repr_shows_data_op_and_label() -> None:
    """repr names the data, the op and the label, and never recurses into inputs."""
    a = Value(-4.0, label="a")
    assert repr(a) == "Value(data=-4.0, label='a')"
    assert repr(a * 2) == "Value(data=-8.0, op='mul')"
