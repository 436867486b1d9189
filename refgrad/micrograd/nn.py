"""micrograd's ``nn`` module, drop-in: ``Module``, ``Neuron``, ``Layer``, ``MLP``.

Change ``from micrograd.nn import MLP`` to ``from refgrad.micrograd.nn import MLP``
(and the engine import likewise) and micrograd's demo notebook runs unchanged.
Initial weights are drawn from Python's global :mod:`random` module with
``random.uniform(-1, 1)``, in micrograd's order (layer by layer, neuron by
neuron, weight by weight), so under the same ``random.seed`` a model starts
from exactly micrograd's weights. Outputs are summed in micrograd's order too
(``b + w0*x0 + w1*x1 + ...``), so forward values match micrograd's bit for bit.

The one deliberate difference: calling a neuron with the wrong number of
inputs raises ``ValueError`` (micrograd's ``zip`` silently drops the extras or
ignores the missing weights). For the immutable, seeded models see
:mod:`refgrad.nn`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence, Sized
from typing import cast

from refgrad.micrograd.engine import Value
from refgrad.numeric import as_count, as_finite_float, is_real_number, not_a_number, type_name

__all__ = ["MLP", "Layer", "Module", "Neuron"]


def _check_inputs(inputs: object, nin: int) -> Sequence[Value | float]:
    # object, not Sequence[Value | float]: this is where an untyped caller's argument is checked.
    if isinstance(inputs, Value):
        raise TypeError(f"inputs must be a sequence of {nin} Values or numbers, got a single Value")
    # Anything sized and iterable, as micrograd's zip takes it (a NumPy array is no Sequence).
    if isinstance(inputs, str | bytes) or not isinstance(inputs, Sized) or not isinstance(inputs, Iterable):
        raise TypeError(f"inputs must be a sequence of {nin} Values or numbers, got {type_name(inputs)}")
    items = list(cast("Iterable[object]", inputs))
    if len(items) != nin:
        raise ValueError(f"the neuron takes {nin} input(s), got {len(items)}")
    checked: list[Value | float] = []
    for position, item in enumerate(items):
        # The common cases first: the check must cost little next to building the neuron's nodes.
        if type(item) is Value or isinstance(item, Value):
            checked.append(item)
        elif is_real_number(item):
            # The operators would convert it too; converting here names the input if it cannot be.
            checked.append(as_finite_float(item, f"inputs[{position}]"))
        else:
            raise not_a_number(item, f"inputs[{position}]")
    return checked


class Module:
    """Base class: ``parameters()`` lists the trainable nodes, ``zero_grad()`` resets their ``grad``."""

    def zero_grad(self) -> None:
        """Set every parameter's ``grad`` to ``0`` (before the next ``backward()``)."""
        for p in self.parameters():
            p.grad = 0.0

    def parameters(self) -> list[Value]:
        """The trainable nodes; none for the base class."""
        return []


class Neuron(Module):
    """``relu(b + sum(w * x))``, or without the ReLU when ``nonlin`` is false."""

    w: list[Value]
    """One weight per input, drawn with ``random.uniform(-1, 1)``."""
    b: Value
    """The bias, starting at 0."""
    nonlin: bool
    """Whether a ReLU follows."""

    def __init__(self, nin: int, nonlin: bool = True) -> None:
        """A neuron of ``nin`` inputs; draws ``nin`` numbers from the global :mod:`random` state."""
        nin = as_count(nin, "nin")
        if not isinstance(nonlin, bool):
            raise TypeError(f"nonlin must be a bool, got {type_name(nonlin)}")
        self.w = [Value(random.uniform(-1, 1)) for _ in range(nin)]
        self.b = Value(0)
        self.nonlin = nonlin

    def __call__(self, x: Sequence[Value | float]) -> Value:
        """The neuron's output for the inputs ``x`` (nodes or numbers)."""
        return _neuron_output(self, _check_inputs(x, len(self.w)))

    def parameters(self) -> list[Value]:
        """The weights, then the bias."""
        return [*self.w, self.b]

    def __repr__(self) -> str:
        return f"{'ReLU' if self.nonlin else 'Linear'}Neuron({len(self.w)})"


class Layer(Module):
    """``nout`` neurons reading the same inputs."""

    neurons: list[Neuron]
    """The layer's neurons."""

    def __init__(self, nin: int, nout: int, *, nonlin: bool = True) -> None:
        """``nout`` neurons of ``nin`` inputs (micrograd's ``**kwargs`` is its one option, ``nonlin``)."""
        nin = as_count(nin, "nin")
        nout = as_count(nout, "nout")
        if not isinstance(nonlin, bool):
            raise TypeError(f"nonlin must be a bool, got {type_name(nonlin)}")
        self.neurons = [Neuron(nin, nonlin=nonlin) for _ in range(nout)]

    def __call__(self, x: Sequence[Value | float]) -> Value | list[Value]:
        """One output per neuron, as a list; a single ``Value`` when the layer has one neuron (as micrograd)."""
        return _layer_output(self, _check_inputs(x, len(self.neurons[0].w)))

    def parameters(self) -> list[Value]:
        """Every neuron's parameters, neuron by neuron."""
        return [p for neuron in self.neurons for p in neuron.parameters()]

    def __repr__(self) -> str:
        return f"Layer of [{', '.join(str(neuron) for neuron in self.neurons)}]"


class MLP(Module):
    """A multi-layer perceptron: ReLU layers of sizes ``nouts``, the last one linear."""

    layers: list[Layer]
    """The layers, first to last."""

    def __init__(self, nin: int, nouts: Sequence[int]) -> None:
        """Layers of sizes ``nouts`` after ``nin`` inputs, initialised in order from the global :mod:`random`."""
        nin = as_count(nin, "nin")
        if isinstance(nouts, str | bytes) or not isinstance(nouts, Sequence):
            raise TypeError(f"nouts must be a list of layer sizes, got {type_name(nouts)}")
        if not nouts:
            raise ValueError("nouts must name at least one layer size")
        sizes = [nin, *(as_count(size, f"nouts[{i}]") for i, size in enumerate(nouts))]
        last = len(nouts) - 1
        self.layers = [Layer(sizes[i], sizes[i + 1], nonlin=i != last) for i in range(len(nouts))]

    def __call__(self, x: Sequence[Value | float]) -> Value | list[Value]:
        """The last layer's output: a single ``Value`` when it has one neuron, else a list (as micrograd)."""
        result = _layer_output(self.layers[0], _check_inputs(x, len(self.layers[0].neurons[0].w)))
        for layer in self.layers[1:]:
            # micrograd fails on a one-neuron hidden layer (zip over a bare Value); wrapping it lets it work.
            result = _layer_output(layer, [result] if isinstance(result, Value) else result)
        return result

    def parameters(self) -> list[Value]:
        """Every layer's parameters, layer by layer."""
        return [p for layer in self.layers for p in layer.parameters()]

    def __repr__(self) -> str:
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"


# The inputs are checked once, where they enter (Neuron, Layer or MLP), not again by every neuron.
def _neuron_output(neuron: Neuron, inputs: Sequence[Value | float]) -> Value:
    # b + w0*x0 + w1*x1 + ..., in micrograd's order so that values match it exactly.
    activation = neuron.b
    for weight, xi in zip(neuron.w, inputs, strict=True):
        activation = activation + weight * xi
    return activation.relu() if neuron.nonlin else activation


def _layer_output(layer: Layer, inputs: Sequence[Value | float]) -> Value | list[Value]:
    outputs = [_neuron_output(neuron, inputs) for neuron in layer.neurons]
    return outputs[0] if len(outputs) == 1 else outputs
