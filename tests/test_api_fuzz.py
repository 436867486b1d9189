"""The public API under hostile input: every call succeeds with finite results or fails cleanly.

Hypothesis drives every public entry point (``Value`` and each operator on either side, the
unary methods, ``backward``, ``Gradients`` look-ups, ``grad`` with and without
``create_graph``, ``jvp``, ``hessian``, ``apply``, ``to_dot``, the ``nn`` constructors and
calls, the optimizers, and the micrograd surface's nodes, writes and modules) with arbitrary
Python objects and extreme numbers. The property, for every call:

- it returns, and everything it returns is finite: floats are finite ``float`` (never complex,
  never a NumPy scalar), nodes hold finite floats, gradients and models likewise; or
- it raises ``TypeError`` or ``ValueError`` (``refgrad.DomainError`` is one) whose message names
  the argument (its parameter name or its type) or, for a ``DomainError``, the op;
- never another exception, and never a hang (sizes are bounded; each call is small).

Two exceptions are part of Python's protocols, not refgrad's: writing an attribute of an
immutable node is an ``AttributeError``, and in ``x op node`` the left operand's own method runs
first, so whatever ``x op 2.0`` raises by itself (``Fraction(10**400) ** 2.0`` overflows inside
``Fraction``) is allowed there.

Run as a script (``python tests/test_api_fuzz.py --examples 3000``) it draws a fixed number of
examples and prints how many calls and inputs of each kind were tried, and how they ended: the
table in docs/reliability.md.
"""

from __future__ import annotations

import argparse
import math
import numbers
import operator
import random
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import cast

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from refgrad import DomainError, Gradients, Value, apply, grad, hessian, jvp, nodes, registry
from refgrad.micrograd import nn as micrograd_nn
from refgrad.micrograd.engine import Value as MicrogradValue
from refgrad.nn import MLP, Layer, Neuron
from refgrad.optim import SGD, Adam, AdamState
from refgrad.viz import to_dot

# -- hostile objects ------------------------------------------------------------------------------


class _RealWithBadFloat:
    """Registered as a numbers.Real, but ``float()`` of it misbehaves as told."""

    def __init__(self, result: Callable[[], object]) -> None:
        self.result = result

    def __float__(self) -> float:
        return self.result()  # type: ignore[return-value]  # deliberately anything

    def __repr__(self) -> str:
        return "_RealWithBadFloat()"


numbers.Real.register(_RealWithBadFloat)


class _IntegralWithBadIndex:
    """Registered as a numbers.Integral, but ``operator.index()`` of it misbehaves as told."""

    def __init__(self, result: Callable[[], object]) -> None:
        self.result = result

    def __index__(self) -> int:
        return self.result()  # type: ignore[return-value]  # deliberately anything

    def __float__(self) -> float:
        return 1.0


numbers.Integral.register(_IntegralWithBadIndex)


class _FloatLike:
    """Not registered as a number, but with ``__float__``, ``__index__`` and arithmetic that say yes."""

    def __float__(self) -> float:
        return 1.0

    def __index__(self) -> int:
        return 1

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[float]:
        return iter([1.0])


class _HostileEquality:
    """Hashable by identity, but comparing it raises, and ``==`` would answer with a non-bool."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("__eq__ called")

    __hash__ = object.__hash__


class _Unhashable:
    """Refuses to be hashed (a dict key or set member)."""

    __hash__ = None  # type: ignore[assignment]  # the point


class _HostileRepr:
    """Its ``repr`` raises, so an error message that shows it must not."""

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ called")


def _raise(error: Exception) -> Callable[[], object]:
    def fail() -> object:
        raise error

    return fail


class _FloatSubclass(float):
    """A float subclass: ``float()`` of it is a plain float."""


def _constant(value: object) -> Callable[[], object]:
    return lambda: value


FINITE_EXTREMES = [
    0.0,
    -0.0,
    5e-324,
    -5e-324,
    sys.float_info.min,
    1e-300,
    1.0,
    -1.0,
    0.5,
    2.0,
    3.0,
    1e300,
    1e308,
    -1e308,
    sys.float_info.max,
    -sys.float_info.max,
    709.782712893384,  # just below exp's overflow
    710.0,
]


def _micrograd_model() -> micrograd_nn.MLP:
    """A micrograd-surface model made under a fixed seed, leaving the global random state as it was."""
    saved = random.getstate()
    random.seed(0)
    try:
        return micrograd_nn.MLP(1, [1])
    finally:
        random.setstate(saved)


_MICROGRAD_MODEL = _micrograd_model()

_finite_floats = st.one_of(st.sampled_from(FINITE_EXTREMES), st.floats(allow_nan=False, allow_infinity=False))

# Each category: a name for the tally and a strategy for its values.
CATEGORIES: dict[str, st.SearchStrategy[object]] = {
    "finite float": _finite_floats,
    "nan or infinity": st.sampled_from([math.nan, math.inf, -math.inf, -math.nan]),
    "int": st.integers(min_value=-(10**6), max_value=10**6),
    "huge int": st.sampled_from([10**309, -(10**400), 2**1024, 10**5000, sys.maxsize + 1]),
    "bool": st.booleans(),
    "numpy scalar": st.one_of(
        _finite_floats.map(np.float64),
        st.sampled_from([0.5, 1e38, 3.4e38, 1e-45, -0.0]).map(np.float32),
        st.sampled_from([np.float32("inf"), np.float16(65504.0), np.float16(2.0), np.longdouble("1e4000")]),
        st.integers(min_value=-(2**63), max_value=2**63 - 1).map(np.int64),
        st.sampled_from([np.uint64(2**64 - 1), np.int8(-128), np.uint8(3), np.bool_(True), np.bool_(False)]),
        st.sampled_from([np.complex128(1.0), np.complex64(1j), np.float64("nan")]),
    ),
    "Fraction": st.one_of(
        st.fractions(max_denominator=10**6),
        st.sampled_from([Fraction(10**400), Fraction(1, 10**400), Fraction(-(10**309), 7)]),
    ),
    "Decimal": st.one_of(st.decimals(), st.sampled_from([Decimal("1e400"), Decimal("NaN"), Decimal("sNaN")])),
    "complex": st.complex_numbers(max_magnitude=1e10),
    "str or bytes": st.one_of(st.text(max_size=5), st.binary(max_size=5), st.sampled_from(["1.0", "nan", "LR"])),
    "None": st.none(),
    "container": st.one_of(
        st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=3),
        st.tuples(st.integers(-3, 3)),
        st.dictionaries(st.integers(-3, 3), st.floats(allow_nan=False), max_size=2),
        st.frozensets(st.integers(-3, 3), max_size=2),
        st.builds(lambda: iter([1.0, 2.0])),
        st.builds(range, st.integers(0, 3)),
    ),
    "odd number-like object": st.one_of(
        st.sampled_from(
            [
                _constant(math.nan),
                _constant(math.inf),
                _constant("1.0"),
                _constant(1j),
                _constant(_FloatSubclass(2.0)),
                _raise(ZeroDivisionError("no")),
                _raise(RuntimeError("no")),
                _raise(OverflowError("no")),
            ]
        ).map(_RealWithBadFloat),
        st.sampled_from(
            [_constant(10**400), _constant(-1), _constant("3"), _constant(2.5), _raise(RuntimeError("no"))]
        ).map(_IntegralWithBadIndex),
        st.builds(_FloatLike),
        st.builds(_HostileEquality),
        st.builds(_Unhashable),
        st.builds(_HostileRepr),
        st.builds(object),
    ),
    "node": st.one_of(
        _finite_floats.map(Value),
        _finite_floats.map(MicrogradValue),
        st.builds(lambda: Value(2.0) * Value(3.0)),
        st.builds(lambda: MicrogradValue(2.0).relu()),
    ),
    "model or state": st.one_of(
        st.builds(lambda: MLP.init(1, [1], rng=0)),
        st.just(_MICROGRAD_MODEL),
        st.builds(lambda: AdamState(0, (0.0, 0.0), (0.0, 0.0))),
        st.builds(Adam),
        st.integers(0, 9).map(random.Random),
        st.builds(lambda: registry["mul"]),
    ),
}

# Sizes, counts and seeds: small ones (building is then quick) and every hostile kind, but no int in
# the millions (plain or NumPy's): that is a legitimate request for millions of nodes, which takes
# as long and as much memory as it says.
_SIZE_CATEGORIES: dict[str, st.SearchStrategy[object]] = {
    **{name: strategy for name, strategy in CATEGORIES.items() if name != "int"},
    "numpy scalar": st.one_of(
        st.integers(min_value=-2, max_value=4).map(np.int64),
        st.sampled_from([np.uint64(2**64 - 1), np.int8(-128), np.uint8(3), np.bool_(True), np.float64(2.0)]),
        st.sampled_from([np.complex128(1.0), np.float32("inf"), np.longdouble("1e4000")]),
    ),
}


@st.composite
def hostile(draw: st.DrawFn, *, for_size: bool = False) -> tuple[str, object]:
    """A category name and an object of that category (of the size categories if ``for_size``)."""
    # A flag, not the table itself, as the argument: hypothesis labels a strategy by the repr of its
    # arguments, and Python refuses the repr of 10**5000.
    categories = _SIZE_CATEGORIES if for_size else CATEGORIES
    category = draw(st.sampled_from(list(categories)))
    return category, draw(categories[category])


@st.composite
def hostile_size(draw: st.DrawFn) -> tuple[str, object]:
    """A size, count or seed: a small int, or anything hostile but an int in the millions."""
    if draw(st.booleans()):
        return "small int", draw(st.integers(min_value=-2, max_value=4))
    return draw(hostile(for_size=True))


# -- the calls --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One way of calling the public API with hostile arguments."""

    name: str
    """Shown in the tally."""
    run: Callable[..., object]
    """Called with the hostile arguments."""
    names: tuple[str, ...]
    """Words of which an error message must contain one (a parameter's name, say)."""
    sizes: tuple[bool, ...] = (False,)
    """Per argument: whether it is drawn as a size (bounded) rather than any object."""
    attribute_write: bool = False
    """Writing an attribute: AttributeError is the language's answer for a read-only one."""
    reflected: str | None = None
    """For ``x op node``: the operator, so that what ``x op 2.0`` raises by itself is allowed."""


def _operator(name: str) -> Callable[[object, object], object]:
    """The function of the operator module called ``name``, typed for deliberately ill-typed operands."""
    function: Callable[[object, object], object] = getattr(operator, name)
    return function


_BINARY = {
    symbol: _operator(name)
    for symbol, name in (("+", "add"), ("-", "sub"), ("*", "mul"), ("/", "truediv"), ("**", "pow"))
}
# Words Python's own operator errors use ("unsupported operand type(s) for *: 'Value' and 'str'").
_OPERATOR_WORDS = ("operand", "exponent", "can't multiply sequence", "does not support ufuncs", "unsupported")
# Graphs built from two hostile leaves: the leaves' own errors, then the operators'.
_GRAPH_WORDS = ("Value data", *_OPERATOR_WORDS)


def _graph() -> tuple[Value, Value, Value]:
    x, y = Value(0.5, label="x"), Value(-1.5, label="y")
    return x, y, (x * y + x.tanh()) * y.exp()


def _micrograd_write(attribute: str) -> Callable[[object], object]:
    def write(value: object) -> object:
        node = MicrogradValue(1.0)
        setattr(node, attribute, value)
        return node

    return write


def _refgrad_write(value: object) -> object:
    node = Value(1.0)
    setattr(node, "data", value)  # noqa: B010  # the write under test; a plain assignment would not type-check
    return node


def _adam_step(state: object) -> object:
    model = MLP.init(1, [1], rng=0)
    (score,) = model([1.0])
    return Adam().step(model, score.backward(), state)  # type: ignore[arg-type]  # deliberately anything


def _sgd_step_with(gradients: object) -> object:
    model = MLP.init(1, [1], rng=0)
    return SGD(0.1).step(model, gradients)  # type: ignore[arg-type]  # deliberately anything


def _sgd_step_with_gradient(gradient: object) -> object:
    model = MLP.init(1, [1], rng=0)
    return SGD(0.1).step(model, {model.parameters()[0]: gradient})  # type: ignore[dict-item]  # deliberately anything


def _sgd_step_of(model: object) -> object:
    return SGD(0.1).step(model, {})  # type: ignore[type-var]  # deliberately anything


def _grad_with_create_graph(create_graph: object) -> object:
    x, y, out = _graph()
    return grad(out, (x, y), create_graph=create_graph)  # type: ignore[call-overload]  # deliberately anything


def _with_parameters(values: object) -> object:
    return MLP.init(1, [1], rng=0).with_parameters(values)  # type: ignore[arg-type]  # deliberately anything


def _gradients() -> Gradients:
    _, _, out = _graph()
    return out.backward()


def _calls() -> list[Call]:
    calls = [
        Call("Value(x)", Value, ("Value data",)),
        Call("Value(1, label=x)", lambda a: Value(1.0, label=a), ("label",)),
        Call("micrograd Value(x)", MicrogradValue, ("Value data",)),
        Call("micrograd Value(1, label=x)", lambda a: MicrogradValue(1.0, label=a), ("label",)),
        Call("Value.data = x", _refgrad_write, ("immutable",), attribute_write=True),
        Call("micrograd .data = x", _micrograd_write("data"), ("Value.data",)),
        Call("micrograd .grad = x", _micrograd_write("grad"), ("Value.grad",)),
        Call("micrograd .label = x", _micrograd_write("label"), ("label",)),
        Call("Gradients[x]", lambda a: _gradients()[a], ("Gradients",)),
        Call("x in Gradients", lambda a: a in _gradients(), ("Gradients",)),
        Call("Gradients.get(x)", lambda a: _gradients().get(a), ("Gradients",)),
        Call("Gradients(x)", Gradients, ("Gradients", "gradient of")),
        Call("grad(out, x)", lambda a: grad(_graph()[2], a), ("inputs",)),
        Call("grad(x, inputs)", lambda a: grad(a, _graph()[:2]), ("output",)),
        Call("grad(out, inputs, create_graph=x)", _grad_with_create_graph, ("create_graph",)),
        Call("grad(out, x, create_graph=True)", lambda a: grad(_graph()[2], a, create_graph=True), ("inputs",)),
        Call("jvp(out, (x, y), t)", _jvp_with_tangents, ("tangent",)),
        Call("jvp(out, x, 1.0)", lambda a: jvp(_graph()[2], a, 1.0), ("inputs", "tangent")),
        Call("hessian(out, x)", lambda a: hessian(_graph()[2], a), ("inputs",)),
        Call("hessian(x, inputs)", lambda a: hessian(a, _graph()[:2]), ("output",)),
        Call("nodes(x)", nodes, ("output",)),
        Call("apply(x, node)", lambda a: apply(a, Value(1.0)), ("OpSpec", "input")),
        Call("apply(mul, x, node)", lambda a: apply(registry["mul"], a, Value(1.0)), ("input 0",)),
        Call("apply(pow, node, params=(x,))", lambda a: apply(registry["pow"], Value(2.0), params=(a,)), ("exponent",)),
        Call("to_dot(x)", to_dot, ("output",)),
        Call("to_dot(out, x)", lambda a: to_dot(_graph()[2], a), ("gradient",)),
        Call("to_dot(out, max_nodes=x)", lambda a: to_dot(_graph()[2], max_nodes=a), ("max_nodes",), sizes=(True,)),
        Call("to_dot(out, rankdir=x)", lambda a: to_dot(_graph()[2], rankdir=a), ("rankdir",)),
        Call("MLP.init(x, [1])", lambda a: MLP.init(a, [1], rng=0), ("nin",), sizes=(True,)),
        Call("MLP.init(1, [x])", lambda a: MLP.init(1, [a], rng=0), ("nouts",), sizes=(True,)),
        Call("MLP.init(1, x)", lambda a: MLP.init(1, a, rng=0), ("nouts",)),
        Call("MLP.init(1, [1], rng=x)", lambda a: MLP.init(1, [1], rng=a), ("rng",), sizes=(True,)),
        Call("Layer.init(1, 1, nonlin=x)", lambda a: Layer.init(1, 1, rng=0, nonlin=a), ("nonlin",)),
        Call("Neuron.init(1, name=x)", lambda a: Neuron.init(1, rng=0, name=a), ("name",)),
        Call("Neuron(x, bias)", lambda a: Neuron(a, Value(0.0)), ("weights",)),
        Call("Neuron((w,), x)", lambda a: Neuron((Value(1.0),), a), ("bias",)),
        Call("model([x])", lambda a: MLP.init(1, [2, 1], rng=0)([a]), ("inputs",)),
        Call("model(x)", MLP.init(1, [1], rng=0), ("inputs", "model takes")),
        Call("model.with_parameters(x)", _with_parameters, ("values", "parameters")),
        Call("model.with_parameters([x, 0])", lambda a: MLP.init(1, [1], rng=0).with_parameters([a, 0.0]), ("values",)),
        Call("SGD(x)", SGD, ("learning_rate",)),
        Call("Adam(learning_rate=x)", lambda a: Adam(learning_rate=a), ("learning_rate",)),
        Call("Adam(betas=x)", lambda a: Adam(betas=a), ("betas",)),
        Call("Adam(eps=x)", lambda a: Adam(eps=a), ("eps",)),
        Call("Adam(weight_decay=x)", lambda a: Adam(weight_decay=a), ("weight_decay",)),
        Call("SGD.step(model, x)", _sgd_step_with, ("gradient",)),
        Call("SGD.step(x, {})", _sgd_step_of, ("model", "parameters")),
        Call("SGD.step(model, {w: x})", _sgd_step_with_gradient, ("gradient",)),
        Call("Adam.step(model, grads, x)", _adam_step, ("state",)),
        Call("AdamState(x, (), ())", lambda a: AdamState(a, (), ()), ("step",), sizes=(True,)),
        Call("AdamState(0, (x,), (0.0,))", lambda a: AdamState(0, (a,), (0.0,)), ("exp_avg",)),
        Call("micrograd Neuron(x)", micrograd_nn.Neuron, ("nin",), sizes=(True,)),
        Call("micrograd MLP(1, x)", lambda a: micrograd_nn.MLP(1, a), ("nouts",)),
        Call("micrograd MLP(1, [x])", lambda a: micrograd_nn.MLP(1, [a]), ("nouts",), sizes=(True,)),
        Call("micrograd Layer(1, 1, nonlin=x)", lambda a: micrograd_nn.Layer(1, 1, nonlin=a), ("nonlin",)),
        Call("micrograd model([x])", lambda a: micrograd_nn.MLP(1, [2, 1])([a]), ("inputs",)),
        Call("micrograd model(x)", micrograd_nn.MLP(1, [1]), ("inputs", "neuron takes")),
        Call("Value.backward() of x ops", lambda a, b: _chain(a, b).backward(), _GRAPH_WORDS, (False, False)),
        Call("grad of x ops, create_graph", _second_order, _GRAPH_WORDS, (False, False)),
        Call("micrograd backward() of x ops", _micrograd_chain, _GRAPH_WORDS, (False, False)),
    ]
    for symbol, function in _BINARY.items():
        for surface, make in (("", Value), ("micrograd ", MicrogradValue)):
            calls.append(Call(f"{surface}node {symbol} x", _left(function, make), _OPERATOR_WORDS))
            calls.append(Call(f"x {symbol} {surface}node", _right(function, make), _OPERATOR_WORDS, reflected=symbol))
    for method in ("exp", "log", "tanh", "sigmoid", "relu", "abs", "__neg__"):
        calls.append(Call(f"Value(x).{method}()", _method(method), ("Value data",)))
    return calls


def _left(function: Callable[[object, object], object], make: Callable[[float], object]) -> Callable[[object], object]:
    return lambda a: function(make(1.5), a)


def _right(function: Callable[[object, object], object], make: Callable[[float], object]) -> Callable[[object], object]:
    return lambda a: function(a, make(1.5))


def _method(name: str) -> Callable[[object], object]:
    def call(a: object) -> object:
        method: Callable[[], object] = getattr(Value(a), name)  # type: ignore[arg-type]  # deliberately anything
        return method()

    return call


def _jvp_with_tangents(tangents: object) -> object:
    x, y, out = _graph()
    return jvp(out, (x, y), tangents)  # type: ignore[arg-type]  # deliberately anything


def _chain(a: object, b: object) -> Value:
    """``((a * b + a) / b).tanh() ** 2`` with leaves from ``a`` and ``b``: a graph through several ops."""
    x, y = Value(a), Value(b)  # type: ignore[arg-type]  # deliberately anything
    return ((x * y + x) / y).tanh() ** 2


def _second_order(a: object, b: object) -> object:
    x, y = Value(a), Value(b)  # type: ignore[arg-type]  # deliberately anything
    out = (x * y).exp() + x.sigmoid() * y
    first = grad(out, (x, y), create_graph=True)
    return first, hessian(out, (x, y)), jvp(out, (x, y), (1.0, -1.0))


def _micrograd_chain(a: object, b: object) -> object:
    x, y = MicrogradValue(a), MicrogradValue(b)  # type: ignore[arg-type]  # deliberately anything
    out = ((x * y + x) / y).tanh() ** 2
    out.backward()
    return x, y, out


CALLS = _calls()


# -- the property ------------------------------------------------------------------------------


def _finite_results(result: object, path: str = "result") -> Iterator[str]:
    """Every place in ``result`` that breaks the promise of finite floats (empty if none does)."""
    stack: list[tuple[object, str]] = [(result, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, bool | str | int | random.Random) or item is None:
            continue
        if isinstance(item, float):
            if type(item) is not float or not math.isfinite(item):
                yield f"{where} = {item!r}"
        elif isinstance(item, Value | MicrogradValue):
            data = item.data
            if type(data) is not float or not math.isfinite(data):
                yield f"{where}.data = {data!r}"
            if isinstance(item, MicrogradValue) and (type(item.grad) is not float or not math.isfinite(item.grad)):
                yield f"{where}.grad = {item.grad!r}"
        elif isinstance(item, Gradients):
            stack.extend((value, f"{where}[{node!r}]") for node, value in item.items())
        elif isinstance(item, tuple | list):
            items = cast("Sequence[object]", item)  # any elements: each is checked in turn
            stack.extend((value, f"{where}[{i}]") for i, value in enumerate(items))
        elif isinstance(item, MLP | micrograd_nn.MLP):
            stack.extend((p, f"{where}.parameters()[{i}]") for i, p in enumerate(item.parameters()))
        elif isinstance(item, AdamState):
            stack.extend([(item.exp_avg, f"{where}.exp_avg"), (item.exp_avg_sq, f"{where}.exp_avg_sq")])
        elif isinstance(item, micrograd_nn.Module):
            stack.extend((p, f"{where}.parameters()[{i}]") for i, p in enumerate(item.parameters()))
        elif isinstance(item, SGD | Adam | Layer | Neuron):
            continue  # checked when made; their numbers are plain floats checked above where returned
        else:
            yield f"{where} is an unexpected {type(item).__name__}"


def _own_error(call: Call, arguments: Sequence[object]) -> type[BaseException] | None:
    """For ``x op node``: the exception ``x op 2.0`` raises by itself, before refgrad is asked."""
    if call.reflected is None:
        return None
    try:
        _BINARY[call.reflected](arguments[0], 2.0)
    except Exception as error:  # whatever the foreign type does on its own
        return type(error)
    return None


def check(call: Call, arguments: Sequence[object]) -> str:
    """Run ``call`` on ``arguments`` and check the property; returns how it ended, for the tally."""
    try:
        result = call.run(*arguments)
    except (TypeError, ValueError) as error:
        caught: Exception = error
    except AttributeError as error:
        if not call.attribute_write:
            raise
        caught = error
    except Exception as error:
        own = _own_error(call, arguments)
        if own is None or not isinstance(error, own):
            raise
        return f"{type(error).__name__} from the left operand"
    else:
        problems = list(_finite_results(result))
        assert not problems, f"{call.name} returned non-finite or unexpected results: {problems}"
        return "ok"
    message = str(caught)
    assert message, f"{call.name}: {type(caught).__name__} without a message"
    if isinstance(caught, DomainError):
        # Whole words, so that "exp" is not found in "expected" nor an argument "x" in "exceeds".
        words = (*registry.names, *call.names)
        named = [word for word in words if re.search(rf"(?<!\w){re.escape(word)}(?!\w)", message)]
        assert named, f"{call.name}: DomainError names no op of the registry nor any of {call.names}: {message!r}"
        return "DomainError"
    wanted = call.names if isinstance(caught, AttributeError) else (*call.names, *(type(a).__name__ for a in arguments))
    assert any(word in message for word in wanted), f"{call.name}: message names none of {wanted}: {message!r}"
    return type(caught).__name__


# -- the tally ---------------------------------------------------------------------------------


@dataclass
class Tally:
    """How many calls of each kind ended how, and how many inputs of each category went in."""

    calls: Counter[tuple[str, str]]
    inputs: Counter[str]

    def record(self, call: Call, categories: Sequence[str], outcome: str) -> None:
        """Count one call, its outcome and its inputs."""
        self.calls[call.name, outcome] += 1
        self.inputs.update(categories)


TALLY = Tally(Counter(), Counter())


Drawn = tuple[Call, list[str], list[object]]
"""A call, its arguments' categories and its arguments."""


@st.composite
def call_and_arguments(draw: st.DrawFn) -> Drawn:
    """One call with hostile arguments drawn for it."""
    call = draw(st.sampled_from(CALLS))
    categories: list[str] = []
    arguments: list[object] = []
    for is_size in call.sizes:
        category, value = draw(hostile_size() if is_size else hostile())
        categories.append(category)
        arguments.append(value)
    return call, categories, arguments


# Many calls per example: each is microseconds, and hypothesis's per-example overhead is not.
CALLS_PER_EXAMPLE = 10


_EXAMPLES = st.lists(call_and_arguments(), min_size=CALLS_PER_EXAMPLE, max_size=CALLS_PER_EXAMPLE)
_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large]


def _check_all(drawn: list[Drawn]) -> None:
    for call, categories, arguments in drawn:
        TALLY.record(call, categories, check(call, arguments))


@settings(suppress_health_check=_HEALTH)
@given(_EXAMPLES)
def test_every_public_call_succeeds_finitely_or_fails_cleanly(
    drawn: list[tuple[Call, list[str], list[object]]],
) -> None:
    """Each call returns only finite numbers, or raises TypeError/ValueError naming its argument (or op)."""
    _check_all(drawn)


def test_every_call_kind_is_drawn_and_every_category_reaches_it() -> None:
    """The fuzzer's table covers the whole API: every call kind, every input category (else the test is blind)."""
    names = {call.name for call in CALLS}
    assert len(names) == len(CALLS)
    for needed in ("Value(x)", "x ** node", "micrograd node * x", "hessian(out, x)", "to_dot(x)", "Adam(betas=x)"):
        assert needed in names
    assert set(CATEGORIES) >= {"bool", "numpy scalar", "Fraction", "Decimal", "huge int", "finite float", "node"}


def test_the_checker_catches_what_it_must() -> None:
    """check() fails on a non-finite result, a foreign exception and a message naming nothing."""
    with pytest.raises(AssertionError, match="non-finite"):
        check(Call("nan", lambda a: math.nan, ("x",)), [1.0])
    with pytest.raises(AssertionError, match="non-finite"):
        check(Call("complex", lambda a: (1.0, 1j), ("x",)), [1.0])
    with pytest.raises(AssertionError, match="non-finite"):
        check(Call("numpy", lambda a: np.float64(1.0), ("x",)), [1.0])
    with pytest.raises(ZeroDivisionError):
        check(Call("foreign", lambda a: 1 / 0, ("x",)), [1.0])
    with pytest.raises(AssertionError, match="names none of"):
        check(Call("vague", lambda a: int("z"), ("argument",)), [1.0])
    assert check(Call("named", lambda a: int("z"), ("literal",)), [1.0]) == "ValueError"


def _domain_error(message: str) -> Callable[[object], object]:
    def fails(a: object) -> object:
        raise DomainError(message)

    return fails


def test_the_checker_reads_domain_error_messages() -> None:
    """A DomainError passes only if its message names an op of the registry (a whole word) or the call's argument."""
    with pytest.raises(AssertionError, match="DomainError names no op"):
        check(Call("vague domain", _domain_error("the result is not finite"), ("x",)), [1.0])
    with pytest.raises(AssertionError, match="DomainError names no op"):
        check(Call("exp inside a word", _domain_error("not what was expected"), ("x",)), [1.0])
    assert check(Call("op named", _domain_error("log(-1.0) is not a finite real number"), ("x",)), [1.0]) == (
        "DomainError"
    )
    assert check(Call("argument named", _domain_error("SGD step is not finite"), ("SGD",)), [1.0]) == "DomainError"


# -- what the fuzzer found ------------------------------------------------------------------------


def test_found_hessian_checks_its_output_itself() -> None:
    """hessian(3, x) is hessian's own TypeError about ``output`` (it passed the non-node on unchecked)."""
    x = Value(1.0)
    with pytest.raises(TypeError, match=r"^output must be a Value, got int$"):
        hessian(3, [x])  # type: ignore[arg-type]  # deliberately wrong type


def test_found_numbers_are_named_by_where_they_went() -> None:
    """A bad number names the input it was, not "Value data" of a leaf made on the way."""
    with pytest.raises(ValueError, match=r"^input 0 of 'mul' must be finite"):
        apply(registry["mul"], math.nan, Value(1.0))
    with pytest.raises(ValueError, match=r"^inputs\[0\] is too large for a float"):
        micrograd_nn.MLP(1, [1])([10**400])
    with pytest.raises(ValueError, match=r"^operand must be finite"):
        _ = MicrogradValue(1.0) * math.inf
    with pytest.raises(ValueError, match=r"^weights must hold at least one Value"):
        Neuron((), Value(0.0))


def test_found_hostile_equality_and_repr_do_not_escape() -> None:
    """to_dot's rankdir check and Adam's betas message neither compare nor print with a hostile object's methods."""
    with pytest.raises(ValueError, match=r"rankdir must be .LR. or .TB., got <\S*_HostileEquality object at "):
        to_dot(Value(1.0), rankdir=_HostileEquality())  # type: ignore[arg-type]  # deliberately wrong type
    with pytest.raises(ValueError, match="rankdir must be 'LR' or 'TB', got <_HostileRepr object>"):
        to_dot(Value(1.0), rankdir=_HostileRepr())  # type: ignore[arg-type]  # deliberately wrong type
    with pytest.raises(TypeError, match="betas must be a tuple of two floats, got <_HostileRepr object>"):
        Adam(betas=_HostileRepr())  # type: ignore[arg-type]  # deliberately wrong type


def test_found_to_dot_takes_any_mapping_of_gradients() -> None:
    """A gradients mapping keyed by non-nodes draws 0 for every node (refgrad's annotations said otherwise)."""
    x = Value(1.0)
    assert "grad 0.0000" in to_dot(x * 2.0, {0: 1.0})  # type: ignore[arg-type]  # deliberately not nodes


# -- the script --------------------------------------------------------------------------------


def group_of(name: str) -> str:
    """The part of the API a call kind belongs to, for the summary table."""
    groups = (
        ("micrograd", "micrograd surface (nodes, writes, nn)"),
        ("Gradients", "Gradients look-ups and construction"),
        ("to_dot", "refgrad.viz.to_dot"),
        ("apply", "apply"),
        ("SGD", "refgrad.optim"),
        ("Adam", "refgrad.optim"),
        ("MLP", "refgrad.nn"),
        ("Layer", "refgrad.nn"),
        ("Neuron", "refgrad.nn"),
        ("model", "refgrad.nn"),
        ("grad", "backward, grad, jvp, hessian, nodes"),
        ("jvp", "backward, grad, jvp, hessian, nodes"),
        ("hessian", "backward, grad, jvp, hessian, nodes"),
        ("nodes", "backward, grad, jvp, hessian, nodes"),
        ("backward", "backward, grad, jvp, hessian, nodes"),
    )
    return next((group for word, group in groups if word in name), "Value, operators and methods")


def _report(examples: int, *, per_call: bool) -> str:
    """Draw ``examples`` examples with a fixed seed; the tally as Markdown tables."""
    TALLY.calls.clear()
    TALLY.inputs.clear()
    run = settings(max_examples=examples, database=None, deadline=None, suppress_health_check=_HEALTH)(
        seed(20261126)(given(_EXAMPLES)(_check_all))
    )
    run()
    outcomes = sorted({outcome for _, outcome in TALLY.calls})
    rows: dict[str, Counter[str]] = {}
    kinds: Counter[str] = Counter()
    for call in CALLS:
        row = call.name if per_call else group_of(call.name)
        kinds[row] += 1
        counts = rows.setdefault(row, Counter())
        for outcome in outcomes:
            counts[outcome] += TALLY.calls[call.name, outcome]
    first = "call" if per_call else "part of the API (call kinds)"
    lines = [f"| {first} | {' | '.join(outcomes)} |", f"| --- |{' ---: |' * len(outcomes)}"]
    for row, counts in rows.items():
        label = f"`{row}`" if per_call else f"{row} ({kinds[row]})"
        lines.append(f"| {label} | {' | '.join(f'{counts[outcome]:,}' for outcome in outcomes)} |")
    total = sum(TALLY.calls.values())
    totals = [sum(counts[outcome] for counts in rows.values()) for outcome in outcomes]
    lines.append(f"| **all {len(CALLS)} kinds: {total:,} calls** | {' | '.join(f'{c:,}' for c in totals)} |")
    lines += ["", "| input category | inputs |", "| --- | ---: |"]
    lines += [f"| {category} | {count:,} |" for category, count in TALLY.inputs.most_common()]
    lines.append(f"| **all** | {sum(TALLY.inputs.values()):,} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Run the API fuzzer a fixed number of examples; print the tally.")
    parser.add_argument("--examples", type=int, default=3000, help="hypothesis examples (each makes 10 calls)")
    parser.add_argument("--per-call", action="store_true", help="one row per call kind instead of per part of the API")
    arguments = parser.parse_args()
    print(_report(arguments.examples, per_call=arguments.per_call))
