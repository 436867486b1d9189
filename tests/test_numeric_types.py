"""Which numbers refgrad accepts, everywhere it takes one, and what it says about the rest.

Accepted: ``int``, ``float`` and every other :class:`numbers.Real` that converts to a finite
float (``Fraction``, NumPy's floating and integer scalars), converted with ``float()``.
Rejected with a ``TypeError`` naming the argument: ``bool`` (also NumPy's), ``Decimal``,
complex numbers, and anything else. Finite but beyond the float range, NaN or infinite: a
``ValueError`` naming the argument. Sizes, counts and seeds take ``int`` and NumPy's integers.
Several tests here are regressions for what the API fuzzer (tests/test_api_fuzz.py) found.
"""

from __future__ import annotations

import enum
import itertools
import math
import numbers
import operator
import random
import re
import sys
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

from refgrad import DomainError, Value, apply, grad, jvp, registry
from refgrad.micrograd import nn as micrograd_nn
from refgrad.micrograd.engine import Value as MicrogradValue
from refgrad.nn import MLP, Layer, Neuron
from refgrad.numeric import as_count, as_finite_float, is_bool_like, shown, type_name
from refgrad.optim import SGD, Adam, AdamState
from refgrad.viz import to_dot


def _call(function: Callable[..., object], *arguments: object) -> object:
    """``function(*arguments)``, for calls whose arguments are deliberately of the wrong type."""
    return function(*arguments)


def _operator(name: str) -> Callable[[object, object], object]:
    """The function of the operator module called ``name``, typed for deliberately ill-typed operands."""
    function: Callable[[object, object], object] = getattr(operator, name)
    return function


OPERATORS = tuple(_operator(name) for name in ("add", "sub", "mul", "truediv", "pow"))


class Level(enum.IntEnum):
    """An int subclass: a real number like any other int."""

    HIGH = 3


ACCEPTED: list[object] = [
    3,
    -2.5,
    Fraction(1, 3),
    Fraction(1, 10**400),  # rounds to 0.0, as float() does
    np.float64(0.1),
    np.float32(0.1),
    np.float16(1.5),
    np.longdouble(2.5),
    np.int64(-7),
    np.uint8(200),
    Level.HIGH,
    -0.0,
    5e-324,
    1e308,
    -sys.float_info.max,
    2**1023,
]


def _places(x: object) -> list[tuple[str, Callable[[], float]]]:
    """Every place a number goes in, each giving back the float refgrad stored for it."""

    def stored(node: MicrogradValue) -> float:
        return node.data

    def micrograd_data_write() -> float:
        node = MicrogradValue(0.0)
        node.data = x  # type: ignore[assignment]  # the point: any real number is written as a float
        return stored(node)

    def micrograd_grad_write() -> float:
        node = MicrogradValue(0.0)
        node.grad = x  # type: ignore[assignment]  # as above
        return node.grad

    return [
        ("Value(x)", lambda: Value(x).data),  # type: ignore[arg-type]  # numbers.Real at run time
        ("micrograd Value(x)", lambda: MicrogradValue(x).data),  # type: ignore[arg-type]  # as above
        ("Value + x", lambda: (Value(0.0) + x).inputs[1].data),  # type: ignore[operator]  # as above
        ("x * Value", lambda: (x * Value(1.0)).inputs[0].data),  # type: ignore[operator]  # as above
        ("micrograd Value - x", lambda: (MicrogradValue(0.0) - x).inputs[1].data),  # type: ignore[operator]  # as above
        ("apply(add, x, Value)", lambda: apply(registry["add"], x, Value(0.0)).inputs[0].data),  # type: ignore[call-overload]  # as above
        ("jvp tangent", lambda: _tangent_of(x)),
        ("micrograd .data =", micrograd_data_write),
        ("micrograd .grad =", micrograd_grad_write),
        ("refgrad.nn input", lambda: _identity_neuron()([x]).inputs[1].inputs[1].data),  # type: ignore[list-item]  # as above
        ("SGD learning rate", lambda: SGD(x).learning_rate),  # type: ignore[arg-type]  # as above
    ]


def _tangent_of(x: object) -> float:
    leaf = Value(1.0)
    return jvp(leaf * 1.0, (leaf,), (x,))  # type: ignore[arg-type]  # numbers.Real at run time


def _identity_neuron() -> Neuron:
    return Neuron((Value(1.0),), Value(0.0), nonlin=False)


@pytest.mark.parametrize("x", ACCEPTED, ids=lambda x: f"{type(x).__name__}:{shown(x, 30)}")
def test_every_real_number_is_accepted_everywhere_as_its_nearest_float(x: object) -> None:
    """Each accepted number, in each place, is stored as exactly ``float(x)`` (sign of zero included)."""
    expected = float(x)  # type: ignore[arg-type]  # every entry is a numbers.Real
    for place, stored in _places(x):
        got = stored()
        assert type(got) is float, place
        assert got == expected, place
        # Sums start from +0.0, so a tangent of -0.0 comes out of jvp as 0.0 (as 0.0 + -0.0 is).
        if place != "jvp tangent":
            assert math.copysign(1.0, got) == math.copysign(1.0, expected), place


@pytest.mark.parametrize(
    ("x", "hint"),
    [
        (True, "bool"),
        (np.bool_(False), "bool"),
        (Decimal("1.5"), "Decimal"),
        (1j, "complex"),
        (np.complex128(1.0), "complex128"),
        ("1.0", "str"),
        (None, "NoneType"),
        (b"1", "bytes"),
        ([1.0], "list"),
    ],
)
def test_non_numbers_are_type_errors_naming_the_argument(x: object, hint: str) -> None:
    """bool, Decimal, complex and non-numbers: a TypeError naming the argument and the type given."""
    calls: list[tuple[str, Callable[[], object]]] = [
        ("Value data", lambda: Value(x)),  # type: ignore[arg-type]  # deliberately wrong type
        ("Value data", lambda: MicrogradValue(x)),  # type: ignore[arg-type]  # as above
        ("tangents[0]", lambda: _tangent_of(x)),
        ("learning_rate", lambda: SGD(x)),  # type: ignore[arg-type]  # as above
        ("inputs[0]", lambda: _identity_neuron()([x])),  # type: ignore[list-item]  # as above
        ("inputs[0]", lambda: micrograd_nn.Neuron(1)([x])),  # type: ignore[list-item]  # as above
    ]
    for what, call in calls:
        with pytest.raises(TypeError) as caught:
            call()
        assert what in str(caught.value)
        assert hint in str(caught.value)


def test_bools_are_refused_in_operators_with_a_hint() -> None:
    """``x * True``, ``x ** False``, even NumPy's bool on either side: a TypeError saying to write 1.0 or 0.0."""
    for node in (Value(2.0), MicrogradValue(2.0)):
        for left, right in (
            (node, True),
            (False, node),
            (node, np.bool_(True)),
        ):
            for operation in OPERATORS:
                with pytest.raises(TypeError, match=r"got a bool .*write 1\.0 or 0\.0"):
                    operation(left, right)


def test_decimal_is_refused_with_a_hint_to_convert() -> None:
    """Decimal is no numbers.Real (it refuses to mix with float); the message says to use float()."""
    assert not isinstance(Decimal(1), numbers.Real)
    with pytest.raises(TypeError, match=r"Decimal.*float\(\)"):
        Value(Decimal("0.1"))  # type: ignore[arg-type]  # deliberately wrong type


@pytest.mark.parametrize(
    "x", [10**400, -(10**400), Fraction(10**400, 3), 10**5000], ids=["10**400", "-10**400", "fraction", "10**5000"]
)
def test_numbers_beyond_the_float_range_are_value_errors_naming_the_argument(x: object) -> None:
    """Too large for a float: a ValueError naming the argument, never an OverflowError (or a repr failure)."""
    calls: list[tuple[str, Callable[[], object]]] = [
        ("Value data", lambda: Value(x)),  # type: ignore[arg-type]  # numbers.Real at run time
        ("operand", lambda: Value(1.0) * x),  # type: ignore[operator]  # as above
        ("exponent", lambda: Value(1.0) ** x),  # type: ignore[operator]  # as above
        ("Value.data", lambda: setattr(MicrogradValue(1.0), "data", x)),
        ("tangents[0]", lambda: _tangent_of(x)),
    ]
    for what, call in calls:
        with pytest.raises(ValueError, match="too large for a float") as caught:
            call()
        assert what in str(caught.value)
        assert not isinstance(caught.value, OverflowError)


def test_an_int_too_long_to_print_is_described_not_printed() -> None:
    """Python refuses repr() of an int over 4300 digits; the message describes it by size instead."""
    with pytest.raises(ValueError, match=r"Value data is too large for a float: <an int of \d+ bits>"):
        Value(10**5000)


@pytest.mark.parametrize("x", [math.nan, -math.inf, np.float32("inf"), np.longdouble("1e4000")])
def test_non_finite_numbers_are_value_errors(x: object) -> None:
    """NaN, infinities, and a long double beyond the float range are refused as not finite."""
    with pytest.raises(ValueError, match="Value data must be finite"):
        Value(x)  # type: ignore[arg-type]  # numbers.Real at run time


class _BrokenReal:
    """Registered as a real number, but its conversion to float fails in the given way."""

    def __init__(self, failure: Callable[[], object]) -> None:
        self.failure = failure

    def __float__(self) -> float:
        return self.failure()  # type: ignore[return-value]  # deliberately broken

    def __repr__(self) -> str:
        return "<broken real>"


numbers.Real.register(_BrokenReal)


def _raise_runtime_error() -> object:
    raise RuntimeError("no float today")


@pytest.mark.parametrize("failure", [lambda: "1.0", lambda: 1 // 0, _raise_runtime_error], ids=["str", "zero", "rt"])
def test_a_real_whose_float_conversion_fails_is_a_type_error_naming_the_argument(
    failure: Callable[[], object],
) -> None:
    """A numbers.Real whose __float__ returns a non-float or raises: TypeError naming the argument and the cause."""
    broken = _BrokenReal(failure)
    with pytest.raises(TypeError, match=r"^exponent: float\(\) of the _BrokenReal <broken real> failed: ") as caught:
        Value(2.0) ** broken  # type: ignore[operator]  # registered as numbers.Real
    assert caught.value.__cause__ is not None


def test_sizes_and_seeds_take_numpy_integers() -> None:
    """nin, nouts, max_nodes and seeds accept NumPy integers and build what plain ints build."""
    model = MLP.init(np.int64(2), [np.int32(3), np.uint8(1)], rng=np.int64(5))  # type: ignore[arg-type, list-item]  # Integral at run time
    same = MLP.init(2, [3, 1], rng=5)
    assert model.nouts == (3, 1)
    assert [p.data for p in model.parameters()] == [p.data for p in same.parameters()]
    assert Layer.init(np.int16(2), np.int16(2), rng=0).nout == 2  # type: ignore[arg-type]  # as above
    random.seed(1)
    assert len(micrograd_nn.MLP(np.int64(2), [np.int64(1)]).parameters()) == 3  # type: ignore[arg-type, list-item]  # as above
    assert to_dot(Value(1.0) * 2.0, max_nodes=np.int64(1)).count("[shape=record") == 1  # type: ignore[arg-type]  # as above


@pytest.mark.parametrize(
    ("size", "error", "message"),
    [
        (True, TypeError, "nin must be an int, got bool"),
        (np.bool_(True), TypeError, "nin must be an int, got bool"),
        (2.0, TypeError, "nin must be an int, got float"),
        (0, ValueError, "nin must be at least 1"),
        (sys.maxsize + 1, ValueError, "nin is too large"),
        (10**400, ValueError, "nin is too large"),
    ],
)
def test_bad_sizes_are_clear_errors(size: object, error: type[Exception], message: str) -> None:
    """A size that is no int, below one, or beyond any possible length is refused before anything is built."""
    for call in (
        lambda: MLP.init(size, [1], rng=0),  # type: ignore[arg-type]  # deliberately wrong
        lambda: Neuron.init(size, rng=0),  # type: ignore[arg-type]  # as above
        lambda: micrograd_nn.Neuron(size),  # type: ignore[arg-type]  # as above
    ):
        with pytest.raises(error, match=message):
            call()


def test_as_count_and_as_finite_float_name_their_argument() -> None:
    """The two checkers behind every number and size put the caller's name for it in the message."""
    with pytest.raises(TypeError, match=r"^the count must be an int"):
        as_count("3", "the count")
    with pytest.raises(ValueError, match=r"^the rate must be finite"):
        as_finite_float(math.inf, "the rate")
    assert as_count(np.int8(-3), "seed", minimum=None) == -3


def test_gradients_lookups_of_unhashable_objects_are_clear() -> None:
    """``grads[[1]]`` is a TypeError naming the type (not "unhashable type"); ``[1] in grads`` is False."""
    x = Value(2.0)
    grads = (x * x).backward()
    with pytest.raises(TypeError, match="Gradients are looked up by Value, got list"):
        grads[[1]]  # type: ignore[index]  # deliberately wrong type
    unhashable: object = [1]
    assert unhashable not in grads
    with pytest.raises(TypeError, match=r"got refgrad\.micrograd\.engine\.Value"):
        grads[MicrogradValue(1.0)]  # type: ignore[index]  # the other surface's node


def test_mixing_the_two_surfaces_is_a_clear_type_error() -> None:
    """A refgrad.Value and a micrograd-surface Value in one operation: said so, left operand first."""
    refgrad_node, micrograd_node = Value(1.0), MicrogradValue(1.0)
    refgrad_first = r"cannot combine a refgrad\.Value with a refgrad\.micrograd\.engine\.Value: the two surfaces"
    micrograd_first = r"cannot combine a refgrad\.micrograd\.engine\.Value with a refgrad\.Value: the two surfaces"
    for operation in OPERATORS:
        with pytest.raises(TypeError, match=refgrad_first):
            operation(refgrad_node, micrograd_node)
        with pytest.raises(TypeError, match=micrograd_first):
            operation(micrograd_node, refgrad_node)


def test_jvp_reads_at_most_one_tangent_too_many() -> None:
    """An endless iterable of tangents ends in a ValueError instead of never returning."""
    x = Value(1.0)
    with pytest.raises(ValueError, match="1 inputs, more than 1 tangents"):
        jvp(x * 2.0, (x,), itertools.count())
    with pytest.raises(TypeError, match="tangents must be a number or an iterable of numbers, got str"):
        jvp(x * 2.0, (x,), "1")  # type: ignore[arg-type]  # deliberately wrong type


def test_to_dot_checks_the_gradients_it_draws() -> None:
    """A gradient mapping holding a non-number or NaN is named, not drawn (nor a failure inside formatting)."""
    x = Value(1.0)
    with pytest.raises(TypeError, match="the gradient of node n0 must be a real number"):
        to_dot(x, {x: "0.5"})  # type: ignore[arg-type]  # deliberately wrong type
    with pytest.raises(ValueError, match="the gradient of node n0 must be finite"):
        to_dot(x, {x: math.nan})


def test_optimizer_steps_beyond_the_float_range_are_domain_errors() -> None:
    """SGD and Adam steps whose numbers overflow raise DomainError naming the parameter, not OverflowError."""
    model = MLP.init(1, [1], rng=0)
    weight = model.parameters()[0]
    with pytest.raises(DomainError, match="SGD step of parameter 0 is not finite"):
        SGD(1e308).step(model, {weight: -1e308})
    adam = Adam()
    with pytest.raises(DomainError, match="Adam step 1 of parameter 0 is not finite"):
        adam.step(model, {weight: 1e200}, adam.init(model))  # the squared gradient overflows
    big = model.with_parameters([1e300, 0.0])
    with pytest.raises(DomainError, match="Adam step 1 of parameter 0 is not finite"):
        Adam(weight_decay=1e300).step(big, {big.parameters()[0]: 1e300}, adam.init(big))  # the decay term overflows
    with pytest.raises(DomainError, match="Adam step 1 of parameter 0"):
        adam.step(model, {weight: 1e300}, AdamState(0, (-1e308, 0.0), (0.0, 0.0)))  # g - exp_avg overflows


@pytest.mark.parametrize(
    ("state", "error", "message"),
    [
        (lambda: _call(AdamState, "1", (), ()), TypeError, "step must be an int"),
        (lambda: AdamState(-1, (), ()), ValueError, "step must be at least 0"),
        (lambda: AdamState(10**400, (), ()), ValueError, "step is too large"),
        (lambda: AdamState(0, (math.nan,), (0.0,)), ValueError, r"exp_avg\[0\] must be finite"),
        (lambda: AdamState(0, (0.0,), (-1.0,)), ValueError, r"exp_avg_sq\[0\] is an average of squares"),
        (lambda: AdamState(0, (0.0,), ()), ValueError, "exp_avg has 1 entries but exp_avg_sq has 0"),
        (lambda: _call(AdamState, 0, [0.0], [0.0]), TypeError, "exp_avg must be a tuple"),
    ],
)
def test_adam_state_is_checked_when_made(state: Callable[[], object], error: type[Exception], message: str) -> None:
    """An AdamState made by hand with a bad step or moment is refused at once, naming the field."""
    with pytest.raises(error, match=message):
        state()


def test_type_names_tell_the_two_value_classes_apart() -> None:
    """Error messages never say "must be a Value, got Value": both classes are spelled out."""
    assert type_name(Value(1.0)) == "refgrad.Value"
    assert type_name(MicrogradValue(1.0)) == "refgrad.micrograd.engine.Value"
    assert type_name(1.5) == "float"
    with pytest.raises(TypeError, match=r"inputs\[0\] must be a Value, got refgrad\.micrograd\.engine\.Value"):
        grad(Value(1.0), [MicrogradValue(1.0)])  # type: ignore[list-item]  # deliberately the other surface


def test_shown_cuts_a_long_repr_to_the_limit() -> None:
    """A repr of up to ``limit`` (default 80) characters is kept whole; a longer one is cut to exactly ``limit``."""
    assert shown("a" * 78) == repr("a" * 78)  # a repr of exactly 80 characters
    cut = shown("a" * 79)  # a repr of 81 characters
    assert cut == repr("a" * 79)[:77] + "..."
    assert len(cut) == 80
    assert shown("abcdefghij", limit=10) == "'abcdef..."
    assert shown("abcdefgh", limit=10) == "'abcdefgh'"


class _HostileRepr:
    """An object whose ``__repr__`` fails."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr today")


def test_shown_describes_an_object_whose_repr_fails_by_its_type() -> None:
    """A failing ``__repr__`` never replaces the error being reported: the object is named by its type."""
    assert shown(_HostileRepr()) == "<_HostileRepr object>"
    with pytest.raises(TypeError, match=r"got _HostileRepr: <_HostileRepr object>$"):
        Value(_HostileRepr())  # type: ignore[arg-type]  # deliberately wrong type


def test_numpy_1_bool_is_bool_like() -> None:
    """NumPy 1 calls its bool type ``numpy.bool_`` (NumPy 2: ``numpy.bool``): both are refused as bools."""
    numpy_1_bool = type("bool_", (), {"__module__": "numpy"})
    assert is_bool_like(numpy_1_bool())
    assert is_bool_like(np.bool_(True))
    assert not is_bool_like(type("bool_", (), {"__module__": "elsewhere"})())


def test_not_a_number_messages_name_the_argument_the_type_and_the_value() -> None:
    """The whole message for a bool, a Decimal and anything else: argument, type, value and hint."""
    cases: list[tuple[object, str]] = [
        (
            True,
            "Value data must be a real number (int or float), got a bool (True); "
            "refgrad does not treat True and False as numbers: write 1.0 or 0.0",
        ),
        (
            Decimal("1.5"),
            "Value data must be a real number (int or float), got Decimal: Decimal('1.5'); "
            "Decimal is not a numbers.Real (it does not mix with float): convert it with float()",
        ),
        ("abc", "Value data must be a real number (int or float), got str: 'abc'"),
    ]
    for x, message in cases:
        with pytest.raises(TypeError) as caught:
            Value(x)  # type: ignore[arg-type]  # deliberately wrong type
        assert str(caught.value) == message


def test_operators_call_a_bad_number_the_operand_or_the_exponent() -> None:
    """The message starts with the role of the bad number: "operand" on either side, "exponent" after **."""
    x = Value(2.0)
    attempts: list[Callable[[], object]] = [
        lambda: x + True,
        lambda: True * x,
        lambda: _operator("sub")(x, np.bool_(False)),
    ]
    for attempt in attempts:
        with pytest.raises(TypeError, match=r"^operand must be a real number \(int or float\), got a bool"):
            attempt()
    with pytest.raises(ValueError, match=r"^operand is too large for a float: "):
        _ = x / 10**400
    with pytest.raises(TypeError, match=r"^exponent must be a real number \(int or float\), got a bool \(True\)"):
        _ = x**True  # a bool is a float to the type checkers, refused at run time


def test_a_non_float_real_that_is_not_finite_is_named_with_its_type_and_value() -> None:
    """A NumPy infinity is reported with its type and its repr, not as a plain float."""
    infinity = np.float32("inf")
    expected = f"the rate must be finite (within the float range), got float32: {infinity!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        as_finite_float(infinity, "the rate")


class _BrokenIntegral:
    """Registered as an integer, but its ``__index__`` fails."""

    def __index__(self) -> int:
        raise RuntimeError("no index today")

    def __repr__(self) -> str:
        return "<broken integral>"


numbers.Integral.register(_BrokenIntegral)


def test_as_count_messages_name_the_argument_and_the_value() -> None:
    """Each refusal of a count names the argument, the type where it is wrong, and the value given."""
    cases: list[tuple[object, type[Exception], str]] = [
        ("3", TypeError, "n must be an int, got str: '3'"),
        (0, ValueError, "n must be at least 1, got 0"),
        (sys.maxsize + 1, ValueError, f"n is too large: {sys.maxsize + 1} is beyond sys.maxsize"),
        (
            _BrokenIntegral(),
            TypeError,
            "n: operator.index() of the _BrokenIntegral <broken integral> failed: RuntimeError('no index today')",
        ),
    ]
    for x, error, message in cases:
        with pytest.raises(error) as caught:
            as_count(x, "n")
        assert str(caught.value) == message


def test_as_count_takes_counts_up_to_sys_maxsize() -> None:
    """``sys.maxsize`` itself is a possible count (and its negative a possible seed); one more is not."""
    assert as_count(sys.maxsize, "n") == sys.maxsize
    assert as_count(-sys.maxsize, "seed", minimum=None) == -sys.maxsize
    with pytest.raises(ValueError, match=r"beyond sys\.maxsize$"):
        as_count(-sys.maxsize - 1, "seed", minimum=None)
