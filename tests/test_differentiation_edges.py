"""Edges of differentiation: conventions at a zero base, constants, custom ops, graph shape.

Each test pins one behaviour at a boundary the broad property tests rarely hit: PyTorch's
conventions for ``x ** y`` at ``x = 0``, outputs that do not depend on the inputs, custom ops
with static parameters or constant partials, and how much graph ``create_graph`` builds.
References are PyTorch (float64) or derivatives worked out by hand in the docstrings.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from refgrad import DomainError, Value, apply, grad, hessian, jvp, nodes
from refgrad.kernel import forward_unary
from refgrad.ops import Domain, N, OpSpec, Params, registry


def _torch_vpow_grads(base: float, exponent: float) -> tuple[float, float]:
    x = torch.tensor(base, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(exponent, dtype=torch.float64, requires_grad=True)
    dx, dy = torch.autograd.grad(x**y, (x, y))
    return dx.item(), dy.item()


@pytest.mark.parametrize("exponent", [0.0, 1.0, 1.5, 2.0, 3.0])
def test_power_at_a_zero_base_follows_pytorch(exponent: float) -> None:
    """d/dx and d/dy of x ** y at x = 0, y >= 1 or y = 0, are torch's (y * 0 ** (y - 1) and 0)."""
    x, y = Value(0.0), Value(exponent)
    assert grad(x**y, [x, y]) == _torch_vpow_grads(0.0, exponent)


@pytest.mark.parametrize("exponent", [0.25, 0.5, 0.999])
def test_power_at_a_zero_base_with_a_fractional_exponent(exponent: float) -> None:
    """At x = 0, 0 < y < 1: d/dy is 0 as in torch, and only asking for d/dx (infinite) raises."""
    x, y = Value(0.0), Value(exponent)
    assert grad(x**y, [y]) == (0.0,)
    assert _torch_vpow_grads(0.0, exponent) == (math.inf, 0.0)
    with pytest.raises(DomainError, match="the gradient it passes on is not finite"):
        grad(x**y, [x])


@pytest.mark.parametrize(("base", "exponent"), [(-2.0, 3.0), (-0.5, 2.0), (-3.0, -1.0)])
def test_power_of_a_negative_base_differentiates_in_the_base(base: float, exponent: float) -> None:
    """At x < 0 (y an integer) d/dx = y * x ** (y - 1) is finite; d/dy (log of x < 0) is not, so asking raises."""
    x, y = Value(base), Value(exponent)
    (dx,) = grad(x**y, [x])
    assert dx == pytest.approx(exponent * base ** (exponent - 1.0), rel=1e-15)
    assert dx == pytest.approx(_torch_vpow_grads(base, exponent)[0], rel=1e-15)
    with pytest.raises(DomainError):
        grad(x**y, [y])


def test_an_output_that_is_a_constant_has_zero_directional_derivative() -> None:
    """jvp of a leaf that is not among the inputs is 0.0; of an input itself, its tangent."""
    x = Value(2.0)
    assert jvp(Value(5.0), [x], [1.0]) == 0.0
    assert jvp(x, [x], [3.0]) == 3.0


def test_constant_partials_on_the_graph_path() -> None:
    """With create_graph, a partial of exactly 1.0 passes the seed on; other constants multiply it."""
    x, y = Value(3.0), Value(4.0)
    (dx,) = grad(x + y, [x], create_graph=True)
    assert nodes(dx) == (dx,)  # the seed itself: no "* 1.0" node
    assert dx.data == 1.0
    (dy,) = grad(x - y, [y], create_graph=True)
    assert dy.data == -1.0
    (doubled,) = grad(apply(DOUBLE, x), [x], create_graph=True)
    assert doubled.data == 2.0
    assert grad(apply(DOUBLE, x), [x]) == (2.0,)
    assert jvp(apply(DOUBLE, x), [x], [0.5]) == 1.0


def _double(x: float) -> float:
    return 2.0 * x


def _double_partials(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N | float, ...]:
    return (2.0,)


def _everywhere(*operands: float) -> bool:
    return True


DOUBLE = OpSpec(
    name="double",
    arity=1,
    params=(),
    forward=_double,
    partials=_double_partials,
    domain=Domain("all reals", _everywhere),
    kinks=(),
    formula="2 * x",
    partial_formulas=("2",),
    symbol="2*",
    torch=None,
)


def _scaled_add(x: float, y: float, scale: float) -> float:
    return x + scale * y


def _scaled_add_partials(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N | float, ...]:
    (scale,) = params
    return (1.0, scale)


SCALED_ADD = OpSpec(
    name="scaled_add",
    arity=2,
    params=("scale",),
    forward=_scaled_add,
    partials=_scaled_add_partials,
    domain=Domain("all reals with x + scale * y finite", _everywhere),
    kinks=(),
    formula="x + scale * y",
    partial_formulas=("1", "scale"),
    symbol="+s*",
    torch=None,
)


def test_static_parameters_reach_the_partials_of_two_input_ops() -> None:
    """x + c * y (a custom op with parameter c): d/dy is c in reverse, forward and graph mode."""
    x, y = Value(1.0), Value(2.0)
    z = apply(SCALED_ADD, x, y, params=(3.0,))
    assert z.data == 7.0
    assert grad(z, [x, y]) == (1.0, 3.0)
    assert [g.data for g in grad(z, [x, y], create_graph=True)] == [1.0, 3.0]
    assert jvp(z, [x, y], [1.0, 1.0]) == 4.0
    assert z.backward()[y] == 3.0


def _one_partial_too_many(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N | float, ...]:
    return (1.0, 1.0)


TOO_MANY = OpSpec(
    name="too_many",
    arity=1,
    params=(),
    forward=_double,
    partials=_one_partial_too_many,
    domain=Domain("all reals", _everywhere),
    kinks=(),
    formula="2 * x",
    partial_formulas=("2",),
    symbol="?",
    torch=None,
)


def _one_partial_too_few(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N | float, ...]:
    return (inputs[1],)


def _bare_partial(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N | float, ...]:
    return output  # type: ignore[return-value]  # the mistake under test: exp's partial, not in a tuple


def _every_mode(z: Value, x: Value, y: Value | None) -> dict[str, Callable[[], object]]:
    inputs = [x] if y is None else [x, y]
    return {
        "backward": z.backward,
        "grad": lambda: grad(z, inputs),
        "create_graph": lambda: grad(z, inputs, create_graph=True),
        "jvp": lambda: jvp(z, inputs, [1.0] * len(inputs)),
        "hessian": lambda: hessian(z, inputs),
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (TOO_MANY, "the partials of op 'too_many' returned 2 partial derivative(s) for its 1 operand(s)"),
        (
            dataclasses.replace(registry["mul"], name="too_few", partials=_one_partial_too_few),
            "the partials of op 'too_few' returned 1 partial derivative(s) for its 2 operand(s)",
        ),
        (
            dataclasses.replace(registry["exp"], name="bare", partials=_bare_partial),
            "the partials of op 'bare' returned no tuple for its 1 operand(s)",
        ),
    ],
    ids=["too many", "too few", "not a tuple"],
)
def test_a_malformed_rule_is_one_value_error_naming_the_op_in_every_mode(spec: OpSpec, message: str) -> None:
    """A rule without one partial per operand: the same ValueError (not a DomainError) in every mode, saying so."""
    x, y = Value(2.0), Value(3.0)
    z = apply(spec, x) if spec.arity == 1 else apply(spec, x, y)
    for mode, call in _every_mode(z, x, None if spec.arity == 1 else y).items():
        with pytest.raises(ValueError, match=r"^malformed rule: ") as raised:
            call()
        assert type(raised.value) is ValueError, mode
        assert str(raised.value) == (
            f"malformed rule: {message}; a rule returns a tuple with one partial derivative per operand"
        ), mode


def test_a_partial_outside_its_domain_is_still_a_domain_error() -> None:
    """Telling a malformed rule apart leaves domain errors as they are: sqrt's partial at 0 in both float passes."""
    x = Value(0.0)
    y = x**0.5
    for call in (lambda: grad(y, [x]), lambda: jvp(y, [x], [1.0])):
        with pytest.raises(DomainError, match=r"^backward through pow\(0\.0, exponent=0\.5\) = 0\.0: a partial"):
            call()


def _square(x: float) -> float:
    return x * x  # overflows to inf without raising, unlike the built-in ops


SQUARE = OpSpec(
    name="square",
    arity=1,
    params=(),
    forward=_square,
    partials=_double_partials,
    domain=Domain("|x| < sqrt(max float)", _everywhere),
    kinks=(),
    formula="x * x",
    partial_formulas=("2 * x",),
    symbol="^2",
    torch="torch.square",
)


def test_a_unary_forward_that_overflows_silently_is_a_domain_error() -> None:
    """forward_unary turns an infinite result into a DomainError naming the op, operand and parameters."""
    assert forward_unary(SQUARE, 3.0, ()) == 9.0
    with pytest.raises(DomainError, match=r"^square\(1e\+200\) is not a finite real number; square is defined for"):
        forward_unary(SQUARE, 1e200, ())


@given(st.floats(min_value=0.0, max_value=700.0))
def test_sigmoid_of_a_non_negative_number_is_pytorchs_to_the_bit(x: float) -> None:
    """For x >= 0 sigmoid is 1 / (1 + exp(-x)), computed as torch.sigmoid computes it (bit for bit)."""
    expected = torch.sigmoid(torch.tensor(x, dtype=torch.float64)).item()
    assert Value(x).sigmoid().data == expected


def test_graph_gradients_for_inputs_the_output_does_not_depend_on_are_zero_leaves() -> None:
    """With create_graph, an input the output does not use gets a fresh constant 0.0 leaf."""
    x, unused = Value(2.0), Value(5.0)
    dx, dunused = grad(x * x, [x, unused], create_graph=True)
    assert dx.data == 4.0
    assert dunused.data == 0.0
    assert dunused.op is None
    assert dunused is not unused


def test_a_repeated_input_adds_its_tangents() -> None:
    """jvp with x given twice pushes the sum of its two tangents: d(x*x) = 2x * (1 + 2)."""
    x = Value(3.0)
    assert jvp(x * x, [x, x], [1.0, 2.0]) == 18.0


def test_a_branch_that_depends_on_no_input_is_not_differentiated() -> None:
    """jvp and create_graph skip nodes no input reaches, as grad and torch do: their partials need not exist.

    log(k) at a subnormal k has the partial 1 / k = inf; it only multiplies y's tangent-free constant
    side, so d(y * log(k)) / dy = log(k) in every mode.
    """
    y = Value(2.0)
    k = Value(5e-324) * 1.0
    out = y * k.log()
    expected = math.log(5e-324)
    assert grad(out, [y]) == (expected,)
    assert jvp(out, [y], [1.0]) == expected
    (graph,) = grad(out, [y], create_graph=True)
    assert graph.data == expected
    # A zero base that no input reaches: d/dx does not exist there, d/dy is 0 (torch: 0 too).
    exponent = Value(0.5)
    power = (Value(0.0) * 1.0) ** exponent
    assert grad(power, [exponent]) == (0.0,)
    assert jvp(power, [exponent], [1.0]) == 0.0


def test_create_graph_keeps_the_dependence_on_nodes_it_does_not_differentiate() -> None:
    """d(y * z)/dy is the node z itself, so differentiating it by z gives 1 (pruning must not freeze z)."""
    y, z = Value(2.0), Value(3.0)
    (dy,) = grad(y * z, [y], create_graph=True)
    assert dy.data == 3.0
    assert grad(dy, [z]) == (1.0,)
    assert grad(dy, [y]) == (0.0,)


def test_an_input_computed_from_another_input_is_consistent_with_reverse_mode() -> None:
    """With y = 2 * x and both given, jvp is sum_i grad(out, inputs)[i] * t_i (x's gradient goes through y)."""
    x = Value(1.5)
    y = x * 2.0
    out = y * y + x
    tangents = (0.25, -3.0)
    gradients = grad(out, [x, y])
    assert gradients == (2.0 * 2.0 * y.data + 1.0, 2.0 * y.data)
    expected = gradients[0] * tangents[0] + gradients[1] * tangents[1]
    assert jvp(out, [x, y], tangents) == pytest.approx(expected, rel=1e-15)
    assert jvp(out, [y], [1.0]) == gradients[1]  # y alone: x is a constant
