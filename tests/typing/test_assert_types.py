"""Type-level tests: mypy and pyright check these assert_type calls; at run time they also execute.

They pin what users rely on: operators with numbers on either side return Value, grad's
result type follows create_graph, Gradients lookups are floats, and the nn API keeps its
model types through calls, parameters and optimizer steps. A wrong type makes
``nox -s typecheck`` fail; the plain asserts make the run-time half able to fail too.
"""

from __future__ import annotations

import random
from typing import assert_type

from refgrad import Gradients, Value, grad, hessian, jvp, nodes
from refgrad.micrograd import nn as compat_nn
from refgrad.micrograd.engine import Value as CompatValue
from refgrad.nn import MLP, Layer, Neuron
from refgrad.ops import OpSpec, registry
from refgrad.optim import SGD, Adam, AdamState


def test_operator_result_types() -> None:
    """Value op float, float op Value and Value op Value are all Value."""
    x = Value(2.0)
    assert_type(x + 1.0, Value)
    assert_type(1.0 + x, Value)
    assert_type(x + x, Value)
    assert_type(2 * x, Value)
    assert_type(2.0 * x, Value)
    assert_type(x * 2.0, Value)
    assert_type(x - 1, Value)
    assert_type(1 - x, Value)
    assert_type(10.0 / x, Value)
    assert_type(x / x, Value)
    assert_type(x**3, Value)
    assert_type(x**0.5, Value)
    assert_type(x**x, Value)
    assert_type(2**x, Value)
    assert_type(-x, Value)
    assert_type(+x, Value)
    assert_type(abs(x), Value)
    assert_type(x.relu().exp().log().tanh().sigmoid().abs(), Value)
    assert_type(x.data, float)
    assert_type(x.op, OpSpec | None)
    assert_type(x.label, str | None)
    assert_type(x.inputs, tuple[Value, ...])
    power = x**x
    assert power.op is registry["vpow"]
    assert power.inputs == (x, x)


def _grad_with_flag(output: Value, x: Value, flag: bool) -> tuple[float, ...] | tuple[Value, ...]:
    """A flag known only at run time: the checkers must answer with the union."""
    result = grad(output, (x,), create_graph=flag)
    assert_type(result, tuple[float, ...] | tuple[Value, ...])
    return result


def test_grad_result_follows_create_graph() -> None:
    """grad() gives floats by default and Values with create_graph=True."""
    x = Value(2.0)
    y = x * x
    assert_type(grad(y, (x,)), tuple[float, ...])
    assert_type(grad(y, x), tuple[float, ...])
    assert_type(grad(y, [x, x]), tuple[float, ...])
    assert_type(grad(y, (x,), create_graph=False), tuple[float, ...])
    graph = grad(y, (x,), create_graph=True)
    assert_type(graph, tuple[Value, ...])
    assert_type(grad(graph[0], x), tuple[float, ...])
    assert_type(jvp(y, (x,), (1.0,)), float)
    assert_type(jvp(y, x, 1.0), float)
    assert_type(hessian(y, (x,)), tuple[tuple[float, ...], ...])
    assert_type(nodes(y), tuple[Value, ...])
    assert grad(y, (x,)) == (4.0,)
    assert graph[0].data == 4.0
    assert _grad_with_flag(y, x, flag=False) == (4.0,)
    (as_node,) = _grad_with_flag(y, x, flag=True)
    assert isinstance(as_node, Value)


def test_gradients_lookups_are_floats() -> None:
    """Gradients is a Mapping[Value, float]: lookups, get, iteration and items are typed."""
    x = Value(2.0)
    grads = (x * x).backward()
    assert_type(grads, Gradients)
    assert_type(grads[x], float)
    assert_type(grads.get(x), float | None)
    assert_type(grads.get(x, 0.0), float)
    assert_type(list(grads), list[Value])
    assert_type(list(grads.items()), list[tuple[Value, float]])
    assert_type(x in grads, bool)
    assert grads[x] == 4.0
    assert grads[Value(1.0)] == 0.0


def test_nn_models_keep_their_types() -> None:
    """Calls give tuples of Values, parameters() a tuple, with_parameters and optimizer steps the same model type."""
    model = MLP.init(2, [3, 1], rng=random.Random(0))
    assert_type(model, MLP)
    outputs = model([0.5, -1.0])
    assert_type(outputs, tuple[Value, ...])
    assert_type(model([Value(0.5), 1.0]), tuple[Value, ...])
    assert_type(model.parameters(), tuple[Value, ...])
    assert_type(model.layers, tuple[Layer, ...])
    assert_type(model.layers[0].neurons, tuple[Neuron, ...])
    assert_type(model.layers[0]([1.0, 2.0]), tuple[Value, ...])
    assert_type(model.layers[0].neurons[0]([1.0, 2.0]), Value)
    assert_type(model.with_parameters(model.parameters()), MLP)

    (score,) = outputs
    grads = score.backward()
    stepped = SGD(0.1).step(model, grads)
    assert_type(stepped, MLP)
    adam = Adam(learning_rate=0.01)
    state = adam.init(model)
    assert_type(state, AdamState)
    after = adam.step(model, grads, state)
    assert_type(after, tuple[MLP, AdamState])
    assert_type(SGD(0.1).step(model.layers[0], grads), Layer)
    assert stepped.nouts == model.nouts
    assert after[1].step == 1


def test_micrograd_surface_types() -> None:
    """The micrograd surface's operators return its own Value; data and grad are floats."""
    a = CompatValue(1.0)
    assert_type(a * 2 + 1, CompatValue)
    assert_type(2 * a, CompatValue)
    assert_type(a**2, CompatValue)
    assert_type(a.relu(), CompatValue)
    assert_type(a.grad, float)
    assert_type(a.data, float)
    assert_type(a.backward(), None)
    model = compat_nn.MLP(2, [3, 1])
    assert_type(model([1.0, 2.0]), CompatValue | list[CompatValue])
    assert_type(model.parameters(), list[CompatValue])
    assert isinstance(a * 2, CompatValue)
