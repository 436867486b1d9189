"""Immutable neural networks: :class:`Neuron`, :class:`Layer` and :class:`MLP`.

These are micrograd's modules with its shapes (an ``MLP(nin, nouts)`` has ReLU
on every layer but the last, which is linear) but frozen: a model is a value,
its parameters are :class:`refgrad.Value` leaves, and training makes a new model
instead of changing the old one::

    import random
    from refgrad.nn import MLP
    from refgrad.optim import SGD

    model = MLP.init(2, [16, 16, 1], rng=random.Random(1337))
    (score,) = model([0.5, -1.0])
    loss = (1 - score).relu()
    model = SGD(learning_rate=0.1).step(model, loss.backward())

Initial weights come from the ``random.Random`` (or the seed) you pass, drawn in
the same order as micrograd's ``random.uniform(-1, 1)`` calls, so
``MLP.init(2, [16, 16, 1], rng=random.Random(1337))`` starts from the very
weights micrograd's ``MLP(2, [16, 16, 1])`` gets after ``random.seed(1337)``.
"""

from __future__ import annotations

import numbers
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, Self, cast

from refgrad.kernel import forward_binary, forward_unary
from refgrad.numeric import as_count, as_finite_float, is_bool_like, is_real_number, not_a_number, type_name
from refgrad.ops.scalar import ADD, MUL, RELU
from refgrad.value import Value

__all__ = ["MLP", "Layer", "Model", "Neuron"]


class Model(Protocol):
    """What an optimizer needs from a model: its parameters, and a copy with new ones."""

    def parameters(self) -> tuple[Value, ...]:
        """Every parameter, in a fixed order."""
        ...

    def with_parameters(self, values: Iterable[Value | float]) -> Self:
        """The same model with ``values`` as its parameters, in :meth:`parameters` order."""
        ...


def _as_rng(given: object) -> random.Random:
    # object, not random.Random | int: this is where an untyped caller's argument is checked.
    if isinstance(given, random.Random):
        return given
    if type(given) is int:
        return random.Random(given)  # any int seeds random.Random, however large
    if is_bool_like(given) or not isinstance(given, numbers.Integral):
        raise TypeError(f"rng must be a random.Random or an int seed, got {type_name(given)}")
    return random.Random(as_count(given, "rng", minimum=None))  # NumPy's integers, converted


def _check_bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{what} must be a bool, got {type_name(value)}")
    return value


def _check_name(name: object) -> None:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type_name(name)}")


def _as_tuple(items: object, what: str) -> tuple[object, ...]:
    if isinstance(items, str | bytes) or not isinstance(items, Iterable):
        raise TypeError(f"{what} must be a sequence, got {type_name(items)}")
    return tuple(cast("Iterable[object]", items))


def _as_inputs(inputs: object, nin: int) -> tuple[Value, ...]:
    """``inputs`` as nodes (numbers become constant leaves, once), checked against ``nin``."""
    items = _as_tuple(inputs, "inputs")
    if len(items) != nin:
        raise ValueError(f"the model takes {nin} input(s), got {len(items)}")
    nodes: list[Value] = []
    for position, item in enumerate(items):
        if isinstance(item, Value):
            nodes.append(item)
        elif is_real_number(item):
            nodes.append(Value(as_finite_float(item, f"inputs[{position}]")))
        else:
            raise not_a_number(item, f"inputs[{position}]")
    return tuple(nodes)


def _replace_all(model: _HasParameters, values: object) -> tuple[Value, ...]:
    """One node per parameter of ``model``: nodes as given, numbers as new leaves keeping the old labels."""
    items = _as_tuple(values, "values")
    old = model.parameters()
    if len(items) != len(old):
        raise ValueError(f"the model has {len(old)} parameters, got {len(items)} value(s)")
    replaced: list[Value] = []
    for position, (item, previous) in enumerate(zip(items, old, strict=True)):
        if isinstance(item, Value):
            replaced.append(item)
        elif is_real_number(item):
            replaced.append(Value(as_finite_float(item, f"values[{position}]"), label=previous.label))
        else:
            raise not_a_number(item, f"values[{position}]")
    return tuple(replaced)


class _HasParameters(Protocol):
    def parameters(self) -> tuple[Value, ...]: ...


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Neuron:
    """One unit: ``relu(bias + sum(w * x))`` (or without the ReLU when ``nonlin`` is false).

    Frozen; compared by identity. Build one with :meth:`init` (random weights,
    zero bias, as micrograd) or directly from nodes.
    """

    weights: tuple[Value, ...]
    """One weight per input."""
    bias: Value
    """Added before the activation."""
    nonlin: bool = True
    """Whether a ReLU follows (micrograd's ``nonlin``)."""

    def __post_init__(self) -> None:
        weights: list[Value] = []
        for position, weight in enumerate(_as_tuple(self.weights, "weights")):
            if not isinstance(weight, Value):
                raise TypeError(f"weights[{position}] must be a Value, got {type_name(weight)}")
            weights.append(weight)
        if not weights:
            raise ValueError("weights must hold at least one Value: a Neuron needs at least one weight")
        if not isinstance(self.bias, Value):
            raise TypeError(f"bias must be a Value, got {type_name(self.bias)}")
        _check_bool(self.nonlin, "nonlin")
        # Frozen: the only way to store the normalised tuple is the base class's setter.
        object.__setattr__(self, "weights", tuple(weights))

    @classmethod
    def init(cls, nin: int, *, rng: random.Random | int, nonlin: bool = True, name: str = "") -> Neuron:
        """A neuron of ``nin`` inputs: weights uniform in ``[-1, 1]`` drawn from ``rng``, bias ``0``.

        ``rng`` is a :class:`random.Random` (advanced by ``nin`` draws) or an
        int seed. ``name`` prefixes the parameters' labels (``"w0"``, ..., ``"b"``).
        """
        nin = as_count(nin, "nin")
        generator = _as_rng(rng)
        _check_bool(nonlin, "nonlin")
        _check_name(name)
        weights = tuple(Value(generator.uniform(-1.0, 1.0), label=f"{name}w{i}") for i in range(nin))
        return cls(weights, Value(0.0, label=f"{name}b"), nonlin)

    @property
    def nin(self) -> int:
        """Number of inputs."""
        return len(self.weights)

    def __call__(self, inputs: Sequence[Value | float]) -> Value:
        """The neuron's output for ``inputs`` (numbers or nodes, one per weight)."""
        return _neuron_forward(self, _as_inputs(inputs, self.nin))

    def parameters(self) -> tuple[Value, ...]:
        """The weights, then the bias."""
        return (*self.weights, self.bias)

    def with_parameters(self, values: Iterable[Value | float]) -> Neuron:
        """This neuron with ``values`` (weights, then bias) as its parameters.

        Numbers become new leaves keeping the old parameters' labels; nodes are
        used as given. ``ValueError`` unless there is exactly one value per parameter.
        """
        replaced = _replace_all(self, values)
        return Neuron(replaced[:-1], replaced[-1], self.nonlin)

    def __repr__(self) -> str:
        return f"Neuron(nin={self.nin}, {'relu' if self.nonlin else 'linear'})"


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Layer:
    """Neurons that all read the same inputs; calling it gives one output per neuron."""

    neurons: tuple[Neuron, ...]
    """The layer's neurons, all with the same number of inputs."""

    def __post_init__(self) -> None:
        neurons: list[Neuron] = []
        for position, neuron in enumerate(_as_tuple(self.neurons, "neurons")):
            if not isinstance(neuron, Neuron):
                raise TypeError(f"neurons[{position}] must be a Neuron, got {type_name(neuron)}")
            neurons.append(neuron)
        if not neurons:
            raise ValueError("a Layer needs at least one neuron")
        sizes = {neuron.nin for neuron in neurons}
        if len(sizes) != 1:
            raise ValueError(f"a Layer's neurons must all take the same number of inputs, got {sorted(sizes)}")
        object.__setattr__(self, "neurons", tuple(neurons))

    @classmethod
    def init(cls, nin: int, nout: int, *, rng: random.Random | int, nonlin: bool = True, name: str = "") -> Layer:
        """``nout`` neurons of ``nin`` inputs each, initialised in order by :meth:`Neuron.init`."""
        nin = as_count(nin, "nin")
        nout = as_count(nout, "nout")
        generator = _as_rng(rng)
        _check_bool(nonlin, "nonlin")
        _check_name(name)
        return cls(tuple(Neuron.init(nin, rng=generator, nonlin=nonlin, name=f"{name}n{j}.") for j in range(nout)))

    @property
    def nin(self) -> int:
        """Number of inputs."""
        return self.neurons[0].nin

    @property
    def nout(self) -> int:
        """Number of outputs (neurons)."""
        return len(self.neurons)

    def __call__(self, inputs: Sequence[Value | float]) -> tuple[Value, ...]:
        """One output per neuron (always a tuple, even for one neuron)."""
        return _layer_forward(self, _as_inputs(inputs, self.nin))

    def parameters(self) -> tuple[Value, ...]:
        """Every neuron's parameters, neuron by neuron."""
        return tuple(p for neuron in self.neurons for p in neuron.parameters())

    def with_parameters(self, values: Iterable[Value | float]) -> Layer:
        """This layer with ``values`` as its parameters, in :meth:`parameters` order."""
        replaced = _replace_all(self, values)
        neurons: list[Neuron] = []
        start = 0
        for neuron in self.neurons:
            count = neuron.nin + 1
            chunk = replaced[start : start + count]
            neurons.append(Neuron(chunk[:-1], chunk[-1], neuron.nonlin))
            start += count
        return Layer(tuple(neurons))

    def __repr__(self) -> str:
        kinds = {"relu" if neuron.nonlin else "linear" for neuron in self.neurons}
        kind = kinds.pop() if len(kinds) == 1 else "mixed"
        return f"Layer(nin={self.nin}, nout={self.nout}, {kind})"


def _neuron_forward(neuron: Neuron, inputs: tuple[Value, ...]) -> Value:
    # bias + w0*x0 + w1*x1 + ...: micrograd's summation order, so the two styles agree.
    activation = neuron.bias
    for weight, x in zip(neuron.weights, inputs, strict=True):
        activation = activation + weight * x
    return activation.relu() if neuron.nonlin else activation


def _layer_forward(layer: Layer, inputs: tuple[Value, ...]) -> tuple[Value, ...]:
    # Inputs are checked once by the caller, not again by every neuron.
    return tuple(_neuron_forward(neuron, inputs) for neuron in layer.neurons)


def _neuron_number(neuron: Neuron, inputs: tuple[float, ...]) -> float:
    # _neuron_forward on numbers: the same registry forwards (and domain checks) in the same order.
    activation = neuron.bias.data
    for weight, x in zip(neuron.weights, inputs, strict=True):
        activation = forward_binary(ADD, activation, forward_binary(MUL, weight.data, x))
    return forward_unary(RELU, activation, ()) if neuron.nonlin else activation


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class MLP:
    """A multi-layer perceptron: layers applied in turn, each feeding the next."""

    layers: tuple[Layer, ...]
    """The layers, first to last; each takes as many inputs as the previous one has outputs."""

    def __post_init__(self) -> None:
        layers: list[Layer] = []
        for position, layer in enumerate(_as_tuple(self.layers, "layers")):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{position}] must be a Layer, got {type_name(layer)}")
            if layers and layer.nin != layers[-1].nout:
                raise ValueError(
                    f"layer {position} takes {layer.nin} input(s) "
                    f"but layer {position - 1} has {layers[-1].nout} output(s)"
                )
            layers.append(layer)
        if not layers:
            raise ValueError("an MLP needs at least one layer")
        object.__setattr__(self, "layers", tuple(layers))

    @classmethod
    def init(cls, nin: int, nouts: Sequence[int], *, rng: random.Random | int) -> MLP:
        """micrograd's ``MLP(nin, nouts)``: layer sizes ``nouts``, ReLU on all but the last layer.

        Weights are drawn from ``rng`` (a :class:`random.Random` or an int seed)
        layer by layer, neuron by neuron, as micrograd draws them.
        """
        nin = as_count(nin, "nin")
        sizes = _as_tuple(nouts, "nouts")
        if not sizes:
            raise ValueError("nouts must name at least one layer size")
        checked = [as_count(size, f"nouts[{i}]") for i, size in enumerate(sizes)]
        generator = _as_rng(rng)
        fan_in = [nin, *checked]
        last = len(checked) - 1
        return cls(
            tuple(
                Layer.init(fan_in[i], checked[i], rng=generator, nonlin=i != last, name=f"L{i}.")
                for i in range(len(checked))
            )
        )

    @property
    def nin(self) -> int:
        """Number of inputs."""
        return self.layers[0].nin

    @property
    def nouts(self) -> tuple[int, ...]:
        """The layer sizes (micrograd's ``nouts``)."""
        return tuple(layer.nout for layer in self.layers)

    def __call__(self, inputs: Sequence[Value | float]) -> tuple[Value, ...]:
        """The last layer's outputs for ``inputs`` (always a tuple: ``(score,) = model(x)``)."""
        values = _as_inputs(inputs, self.nin)
        for layer in self.layers:
            values = _layer_forward(layer, values)
        return values

    def predict(self, inputs: Sequence[float]) -> tuple[float, ...]:
        """The outputs' values for numeric ``inputs``, without building a graph.

        The same numbers as ``tuple(out.data for out in model(inputs))``, bit for bit (the
        same registry forwards in the same order), at a fraction of the cost: for scoring
        points (a decision boundary, an accuracy) where no gradient is wanted. ``TypeError``
        for a node or a non-number among ``inputs``, ``ValueError`` for NaN or infinity or
        the wrong count, :class:`refgrad.DomainError` where a node's forward would raise it.
        """
        items = _as_tuple(inputs, "inputs")
        if len(items) != self.nin:
            raise ValueError(f"the model takes {self.nin} input(s), got {len(items)}")
        numbers_in: list[float] = []
        for position, item in enumerate(items):
            if not is_real_number(item):  # a Value too: predict is for numbers
                raise not_a_number(item, f"inputs[{position}]")
            numbers_in.append(as_finite_float(item, f"inputs[{position}]"))
        values = tuple(numbers_in)
        for layer in self.layers:
            values = tuple(_neuron_number(neuron, values) for neuron in layer.neurons)
        return values

    def parameters(self) -> tuple[Value, ...]:
        """Every layer's parameters, layer by layer (micrograd's order)."""
        return tuple(p for layer in self.layers for p in layer.parameters())

    def with_parameters(self, values: Iterable[Value | float]) -> MLP:
        """This network with ``values`` as its parameters, in :meth:`parameters` order."""
        replaced = _replace_all(self, values)
        layers: list[Layer] = []
        start = 0
        for layer in self.layers:
            count = layer.nout * (layer.nin + 1)
            layers.append(layer.with_parameters(replaced[start : start + count]))
            start += count
        return MLP(tuple(layers))

    def __repr__(self) -> str:
        return f"MLP(nin={self.nin}, nouts={self.nouts})"
