"""The node-building kernel (refgrad.kernel) as a node class defined at run time sees it.

``install`` and ``Node.__init_subclass__`` run when a node class is created, so most of their
work happens at import time; the classes here are made inside the tests, so every store the
kernel's constructors make is checked on nodes built while a test runs.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import operator
from collections.abc import Callable
from typing import Self, cast

import pytest

from refgrad import DomainError, Value, apply, grad, jvp
from refgrad.micrograd.engine import Value as MicrogradValue
from refgrad.ops import OpSpec, registry
from refgrad.value import gradients


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


# A node class, and a subclass with slots, made here: install() and the writable twin at test time.


def test_install_gives_a_fresh_node_class_its_own_surface() -> None:
    from refgrad.kernel import Node, install

    class Fresh(Node):
        __slots__ = ()

    leaf = install(Fresh, label=None)
    x = leaf(2.0, "x")
    assert type(x) is Fresh
    assert (x.data, x.op) == (2.0, None)
    assert x._surface is Fresh  # pyright: ignore[reportPrivateUsage]
    y = x * x
    assert type(y) is Fresh
    assert (y.data, y.op, y.params, y.inputs) == (4.0, registry["mul"], (), (x, x))
    mixed = cast("Callable[[object, object], object]", operator.add)  # the mistake under test: two surfaces
    with pytest.raises(TypeError, match="cannot combine"):
        mixed(x, Value(1.0))


def test_a_subclass_with_slots_switches_classes_while_building() -> None:
    class Slotted(Value):
        __slots__ = ()  # the twin has none of its own either, or the class switch would be refused

    x = Slotted(3.0)
    assert type(x) is Slotted
    y = x * 2.0 + x.exp()
    assert type(y) is Slotted
    assert y.data == 6.0 + math.exp(3.0)


def test_a_micrograd_subclass_shares_its_bases_surface_both_ways() -> None:
    class Traced(MicrogradValue):
        __slots__ = ()

    class Deeper(Traced):
        __slots__ = ()

    shallow, deep = Traced(4.0), Deeper(2.0)
    assert type(shallow) is Traced
    assert type(deep) is Deeper
    # One surface: apply() takes a subclass's node beside its base's (the operators, typed Self, would
    # have the checkers refuse a subclass on the left of its base), and builds the first node's class.
    product = apply(registry["mul"], deep, shallow)
    assert type(product) is Deeper
    assert (product.data, product.params, product.label) == (8.0, (), "")
    product.backward()
    assert (deep.grad, shallow.grad) == (4.0, 2.0)


# The reverse loop's messages.


def _unary(name: str, partials: Callable[..., tuple[float, ...]]) -> OpSpec:
    return dataclasses.replace(registry["exp"], name=name, partials=partials)


def test_a_partial_that_raises_is_a_domain_error_quoting_it() -> None:
    def raising(inputs: tuple[float, ...], output: float, params: tuple[float, ...]) -> tuple[float, ...]:
        raise ZeroDivisionError("no partial here")

    x = Value(0.5)
    node = apply(_unary("raising", raising), x)
    with pytest.raises(DomainError, match=r"\(no partial here\)"):
        node.backward()
    with pytest.raises(DomainError, match=r"\(no partial here\)"):
        jvp(node, [x], [1.0])


def test_a_malformed_rule_that_reads_its_output_and_params_is_named_malformed() -> None:
    def two(inputs: tuple[float, ...], output: float, params: tuple[float, ...]) -> tuple[float, ...]:
        return (output + 0.0,) * (len(params) + 2)

    node = apply(_unary("two", two), Value(0.5))
    with pytest.raises(ValueError, match=r"^malformed rule: the partials of op 'two' returned 2 partial"):
        node.backward()


def test_gradients_is_what_backward_returns() -> None:
    x = Value(3.0)
    out = x * x
    found = gradients(out)
    assert found[x] == 6.0
    assert dict(found.items()) == dict(out.backward().items())


class _UserValue(Value):
    __slots__ = ()


class _UserMicrogradValue(MicrogradValue):
    __slots__ = ()


def test_every_fast_operator_matches_the_general_method_it_copies() -> None:
    """Each kind's fast copy of an operator builds the node Node's general method builds: same entry, bits, slots."""
    from refgrad.kernel import _FAST_OPERATORS, Node  # pyright: ignore[reportPrivateUsage]

    assert set(_FAST_OPERATORS) >= {"__add__", "__sub__", "__mul__", "__truediv__", "relu", "exp", "__neg__"}
    kinds: tuple[type[Value] | type[MicrogradValue], ...] = (Value, MicrogradValue, _UserValue, _UserMicrogradValue)
    for kind in kinds:
        x, y = kind(0.75), kind(-1.25)
        for name, op in _FAST_OPERATORS.items():
            fast = getattr(kind, name)
            general = getattr(Node, name)
            assert fast is not general, f"{kind.__qualname__}.{name} has no fast copy"
            assert fast.__doc__ == general.__doc__
            assert inspect.signature(fast) == inspect.signature(general)
            operands = (x, y) if op.arity == 2 else (x,)
            built, expected = fast(*operands), general(*operands)
            assert type(built) is kind
            assert built.op is expected.op is op
            assert built.data.hex() == expected.data.hex()
            assert built.inputs == expected.inputs == operands
            assert (built.params, built.label) == (expected.params, expected.label)
            if isinstance(built, MicrogradValue):
                assert isinstance(expected, MicrogradValue)
                assert built.grad == expected.grad == 0.0
            assert expected._position > built._position > y._position  # pyright: ignore[reportPrivateUsage]


def test_a_fast_operator_fails_exactly_as_the_general_method() -> None:
    """Outside the domain, a fast copy raises the general method's error, word for word."""
    from refgrad.kernel import _FAST_OPERATORS, Node  # pyright: ignore[reportPrivateUsage]

    for kind in (Value, MicrogradValue):
        for x_data, y_data in ((1e308, 1e308), (1.0, 0.0), (-1.0, 0.0), (800.0, 2.0)):
            x, y = kind(x_data), kind(y_data)
            for name, op in _FAST_OPERATORS.items():
                operands = (x, y) if op.arity == 2 else (x,)
                outcomes: list[str] = []
                for method in (getattr(kind, name), getattr(Node, name)):
                    try:
                        outcomes.append(f"ok {method(*operands).data!r}")
                    except DomainError as error:
                        outcomes.append(f"DomainError: {error}")
                assert outcomes[0] == outcomes[1], f"{kind.__qualname__}.{name}{operands}"
    with pytest.raises(DomainError, match=r"mul\(1e\+308, 1e\+308\) is not a finite real number"):
        Value(1e308) * Value(1e308)  # pyright: ignore[reportUnusedExpression]


def test_a_subclass_keeps_the_operators_it_defines_and_can_reach_refgrads_through_super() -> None:
    """install() never replaces a user's own operator (nor one inherited from a user's base); super() still works."""

    class Own(Value):
        __slots__ = ()

        # pyright reads the base's Self as Node here, so it calls the same signature incompatible.
        def __mul__(self, other: Self | float) -> Self:  # pyright: ignore[reportIncompatibleMethodOverride]
            return super().__mul__(other) + 1.0

        def relu(self) -> Self:
            return self

    class Below(Own):
        __slots__ = ()

    for kind in (Own, Below):
        x, y = kind(2.0), kind(3.0)
        product = x * y
        assert product.data == 7.0  # the user's rule: x * y + 1
        assert product.op is registry["add"]
        assert type(product.inputs[0]) is kind  # super().__mul__ built a node of the caller's class
        assert x.relu() is x
        assert (x + y).op is registry["add"]  # what the user did not define is refgrad's fast copy
        assert type(x + y) is kind
    mixed = Value.__mul__(Own(2.0), Value(3.0))
    assert type(mixed) is Own  # called unbound on another class's node: the general method's answer
    with pytest.raises(TypeError, match="two surfaces"):
        Value.__mul__(MicrogradValue(2.0), Value(3.0))  # pyright: ignore[reportArgumentType]
    assert type(Value.relu(Own(-1.0))) is Own


def test_a_fast_operator_leaves_numbers_and_other_classes_to_the_general_method() -> None:
    """``x * 2``, ``x * subclass_node`` and a node of the other surface behave as the general method says."""

    class Sub(Value):
        __slots__ = ()

    x = Value(1.5)
    doubled = x * 2
    assert (doubled.data, doubled.op, doubled.inputs[0]) == (3.0, registry["mul"], x)
    assert doubled.inputs[1].data == 2.0
    mixed = x * Sub(4.0)
    assert type(mixed) is Value
    assert mixed.data == 6.0
    with pytest.raises(TypeError, match="two surfaces"):
        x * cast("float", MicrogradValue(1.0))  # pyright: ignore[reportUnusedExpression]
    assert x.__mul__(cast("float", "a")) is NotImplemented
