"""Every error names what was wrong: the argument, its type, the op, the operands and the rule.

The messages are the user interface of the checks in the node, the registry and reverse mode;
each test states one message's content, so a check that reports the wrong thing fails here.
"""

from __future__ import annotations

import math
import re

import pytest

from refgrad import DomainError, Gradients, Value, apply, grad, hessian, jvp, nodes, registry
from refgrad.autodiff import gradients
from refgrad.kernel import evaluate
from refgrad.ops import MUL, POW, Domain, OpSpec, Params
from refgrad.ops.spec import N, Registry


def _returns_an_int(x: float, y: float) -> float:
    return int(x + y)  # deliberately not a float


def _two_ones(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N | float, ...]:
    return (1.0, 1.0)


def _everywhere(*operands: float) -> bool:
    return True


def _fused_multiply_add(x: float, y: float, z: float) -> float:
    return x * y + z


INT_ADD = OpSpec(
    name="int_add",
    arity=2,
    params=(),
    forward=_returns_an_int,
    partials=_two_ones,
    domain=Domain("all reals", _everywhere),
    kinks=(),
    formula="int(x + y)",
    partial_formulas=("1", "1"),
    symbol="+",
    torch=None,
)


@pytest.mark.parametrize(
    "call",
    [
        lambda: nodes(3),  # type: ignore[arg-type]  # deliberately wrong type
        lambda: gradients(3),  # type: ignore[arg-type]  # deliberately wrong type
        lambda: grad(3, ()),  # type: ignore[call-overload]  # deliberately wrong type
        lambda: jvp(3, (), ()),  # type: ignore[arg-type]  # deliberately wrong type
        lambda: hessian(3, ()),  # type: ignore[arg-type]  # deliberately wrong type
    ],
)
def test_a_non_node_output_is_named_with_its_type(call: object) -> None:
    """nodes, gradients, grad, jvp and hessian say the output must be a Value and name the type they got."""
    assert callable(call)
    with pytest.raises(TypeError, match=r"^output must be a Value, got int$"):
        call()


@pytest.mark.parametrize(
    "call",
    [
        lambda x: grad(x, "ab"),  # type: ignore[arg-type]  # deliberately wrong type
        lambda x: jvp(x, "ab", ()),  # type: ignore[arg-type]  # deliberately wrong type
        lambda x: hessian(x, "ab"),  # type: ignore[arg-type]  # deliberately wrong type
    ],
)
def test_inputs_that_are_not_nodes_are_named(call: object) -> None:
    """grad, jvp and hessian call their second argument "inputs" and name its type."""
    assert callable(call)
    with pytest.raises(TypeError, match=r"^inputs must be a Value or an iterable of Values, got str$"):
        call(Value(1.0))


def test_a_non_node_among_the_inputs_is_named_by_position() -> None:
    """The offending entry of inputs is named by its index and type."""
    x = Value(1.0)
    with pytest.raises(TypeError, match=r"^inputs\[1\] must be a Value, got float$"):
        jvp(x, [x, 2.0], [1.0, 1.0])  # type: ignore[list-item]  # deliberately wrong type


def test_a_wrong_number_of_tangents_is_counted() -> None:
    """Too few tangents are counted exactly; too many are "more than" the number of inputs."""
    x, y = Value(1.0), Value(2.0)
    with pytest.raises(ValueError, match=r"^jvp needs one tangent per input: 2 inputs, 1 tangents$"):
        jvp(x * y, [x, y], [1.0])
    with pytest.raises(ValueError, match=r"^jvp needs one tangent per input: 2 inputs, more than 2 tangents$"):
        jvp(x * y, [x, y], [1.0, 1.0, 1.0, 1.0])


def test_jvp_reads_one_tangent_beyond_the_inputs_and_no_more() -> None:
    """Telling that there are too many tangents takes one extra item of an iterator, not two."""
    x = Value(1.0)
    tangents = iter([1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="more than 1 tangents"):
        jvp(x * 2.0, [x], tangents)
    assert next(tangents) == 3.0


def test_a_bad_tangent_is_named_by_position() -> None:
    """A non-finite tangent is reported as tangents[i] with its value."""
    x, y = Value(1.0), Value(2.0)
    with pytest.raises(ValueError, match=r"^tangents\[1\] must be finite, got nan$"):
        jvp(x * y, [x, y], [1.0, math.nan])


def test_a_non_finite_forward_names_op_operands_and_domain() -> None:
    """An overflowing op reports itself with its operands and the domain in words."""
    with pytest.raises(DomainError) as caught:
        _ = Value(1e200) * Value(1e200)
    assert str(caught.value) == (
        "mul(1e+200, 1e+200) is not a finite real number; mul is defined for all reals with x * y finite"
    )


def test_a_forward_error_names_the_static_parameters() -> None:
    """The static parameters appear by name after the operands: pow(-8.0, exponent=0.5)."""
    with pytest.raises(DomainError, match=r"^pow\(-8\.0, exponent=0\.5\) is not a finite real number; pow is"):
        _ = Value(-8.0) ** 0.5


def test_a_forward_that_does_not_return_a_float_is_a_type_error_naming_the_op() -> None:
    """evaluate() refuses a rule whose forward returns an int, naming the op and the type."""
    with pytest.raises(TypeError, match=r"^forward of op 'int_add' returned int, not float$"):
        evaluate(INT_ADD, (1.0, 2.0))


def test_a_backward_error_names_node_operands_params_and_rules() -> None:
    """A partial that does not exist is reported with the node, its operands, parameters and formulas."""
    x = Value(0.0)
    with pytest.raises(DomainError) as caught:
        (x**0.5).backward()
    message = str(caught.value)
    assert message.startswith("backward through pow(0.0, exponent=0.5) = 0.0: a partial derivative is not a finite")
    assert message.endswith("; its partial derivatives are (c * x ** (c - 1))")


def test_a_backward_error_lists_every_partial_formula() -> None:
    """For a two-input op the formulas are listed in input order, separated by ', '."""
    x, y = Value(0.0), Value(0.5)
    with pytest.raises(DomainError) as caught:
        grad(x**y, [x], create_graph=True)
    assert str(caught.value) == (
        "backward through vpow(0.0, 0.5) = 0.0: a partial derivative is not a finite real number "
        "(vpow(0.0, -0.5) is not a finite real number; vpow is defined for x ** y real and finite: "
        "x > 0, or x == 0 with y >= 0, or x < 0 with y an integer); "
        "its partial derivatives are (y * x ** (y - 1), x ** y * log(x))"
    )


def test_an_overflowing_gradient_names_the_op_that_passed_it_on() -> None:
    """A gradient that overflows is blamed on the first op (in processing order) that passed it on."""
    a = Value(1.0)
    z = ((a * 1e-300) * 1e300) * 1e300  # finite all the way forward; 1e300 * 1e300 on the way back
    expected = (
        "backward through mul(1e-300, 1e+300) = 1.0: the gradient it passes on is not finite; "
        "its partial derivatives are (y, x)"
    )
    for attempt in (z.backward, lambda: grad(z, [a]), lambda: grad(z, [a, a])):
        with pytest.raises(DomainError) as caught:
            attempt()
        assert str(caught.value) == expected


def test_gradients_rejects_keys_and_values_by_name() -> None:
    """Gradients names a non-mapping's type, a non-node key's type and a non-finite value's node."""
    x = Value(2.0)
    with pytest.raises(TypeError, match=r"^Gradients needs a mapping from Values to floats, got list$"):
        Gradients([(x, 1.0)])  # type: ignore[arg-type]  # deliberately wrong type
    with pytest.raises(TypeError, match=r"^Gradients keys must be Value, got int$"):
        Gradients({3: 1.0})  # type: ignore[dict-item]  # deliberately wrong type
    with pytest.raises(ValueError, match=r"^gradient of Value\(data=2\.0\) must be finite, got inf$"):
        Gradients({x: math.inf})


def test_gradients_lookup_by_a_non_node_names_the_type() -> None:
    """Looking up something that is not a node is a TypeError naming its type, not 0.0."""
    with pytest.raises(TypeError, match=r"^Gradients are looked up by Value, got str$"):
        Value(1.0).backward()["x"]  # type: ignore[index]  # deliberately wrong type


def test_gradients_cannot_be_changed_and_say_so() -> None:
    """Setting or deleting an attribute of Gradients names the attribute."""
    grads = Value(1.0).backward()
    with pytest.raises(AttributeError, match=r"^Gradients are immutable: cannot delete '_grads'$"):
        del grads._grads  # pyright: ignore[reportPrivateUsage]  # the attribute it protects
    with pytest.raises(AttributeError, match=r"^Gradients are immutable: cannot set 'extra'$"):
        grads.extra = 1  # Gradients.__setattr__ refuses every name


def test_values_cannot_be_changed_and_say_so() -> None:
    """Deleting an attribute of a Value names it; truth testing says to compare .data."""
    x = Value(1.0)
    with pytest.raises(AttributeError, match=r"^Value is immutable: cannot delete 'data'$"):
        x.__delattr__("data")  # what `del x.data` calls
    with pytest.raises(TypeError, match=r"^a Value has no truth value; compare its \.data instead$"):
        bool(x)


def test_a_bad_exponent_is_called_the_exponent() -> None:
    """x ** inf and x ** nan are ValueErrors about "exponent"."""
    with pytest.raises(ValueError, match=r"^exponent must be finite, got inf$"):
        _ = Value(2.0) ** math.inf


def test_apply_names_what_is_wrong() -> None:
    """apply() names a non-op's type, a bad input's position and type, a bad parameter's name, a non-tuple params."""
    x = Value(2.0)
    with pytest.raises(TypeError, match=r"^apply\(\) needs an OpSpec, got str$"):
        apply("mul", x, x)  # type: ignore[call-overload]  # deliberately wrong type
    with pytest.raises(TypeError, match=r"^input 1 of 'mul' must be a Value or a real number, got str$"):
        apply(MUL, x, "a")  # type: ignore[call-overload]  # deliberately wrong type
    with pytest.raises(ValueError, match=r"^parameter 'exponent' of 'pow' must be finite, got nan$"):
        apply(POW, x, params=(math.nan,))
    with pytest.raises(TypeError, match=r"^params must be a tuple of numbers, got list$"):
        apply(POW, x, params=[2.0])  # type: ignore[call-overload]  # deliberately wrong type
    with pytest.raises(ValueError, match=r"^input 0 of 'mul' must be finite, got inf$"):
        apply(MUL, math.inf, x)
    with pytest.raises(TypeError, match=r"^input 1 of 'mul' must be a real number \(int or float\), got a bool"):
        apply(MUL, x, True)  # a bool is a float to the type checkers, refused at run time


def test_apply_refuses_an_op_of_arity_three_naming_it() -> None:
    """An op with three operands cannot be a node: a ValueError naming the op and its arity."""
    three = OpSpec(
        name="fma",
        arity=3,
        params=(),
        forward=_fused_multiply_add,
        partials=_two_ones,
        domain=Domain("all reals", _everywhere),
        kinks=(),
        formula="x * y + z",
        partial_formulas=("y", "x", "1"),
        symbol="fma",
        torch=None,
    )
    with pytest.raises(ValueError, match=r"^op 'fma' has arity 3; refgrad nodes take one or two operands$"):
        apply(three, 1.0, 2.0, 3.0)


def test_registry_lookup_error_lists_the_known_ops() -> None:
    """An unknown name is a KeyError listing every op, comma separated, in registry order."""
    with pytest.raises(KeyError) as caught:
        registry["nope"]
    assert caught.value.args[0] == "no op named 'nope'; known ops: " + ", ".join(registry.names)
    assert re.fullmatch(r"[a-z]+(, [a-z]+)+", ", ".join(registry.names))


def test_a_registry_refuses_two_ops_of_one_name() -> None:
    """Building a Registry with a repeated name is a ValueError naming it."""
    with pytest.raises(ValueError, match=r"^duplicate op name 'mul' in registry$"):
        Registry((MUL, INT_ADD, MUL))


def test_create_graph_must_be_a_bool() -> None:
    """grad(create_graph=1) is a TypeError naming the type it got."""
    x = Value(1.0)
    with pytest.raises(TypeError, match=r"^create_graph must be a bool, got int$"):
        grad(x, [x], create_graph=1)  # type: ignore[call-overload]  # deliberately wrong type


def test_a_forward_mode_error_names_the_node_and_the_failure() -> None:
    """jvp through a partial that does not exist reports the node and says a partial is not finite."""
    x = Value(0.0)
    with pytest.raises(DomainError) as caught:
        jvp(x**0.5, [x], [1.0])
    assert str(caught.value).startswith(
        "backward through pow(0.0, exponent=0.5) = 0.0: a partial derivative is not a finite real number ("
    )
