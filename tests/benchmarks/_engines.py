"""The engines under test, each behind the same small interface, and the workloads they run.

Engines: ``refgrad`` (the immutable core), ``compat`` (``refgrad.micrograd``, the mutable
drop-in surface), ``micrograd`` (micrograd 0.1.0 from PyPI) and ``torch`` (scalar autograd on
0-d float64 tensors). Every engine imports its library lazily, so a worker process only ever
loads the one it measures.

The training step is micrograd's demo: MLP(2, [16, 16, 1]) on 100 two-moons points, SVM
max-margin loss ``(1 + -y * score).relu()`` averaged, L2 regularisation ``1e-4 * sum(p * p)``,
plain SGD. Every engine starts from the same weights and data, so every engine must produce the
same losses step after step; the driver checks that before it reports a ratio.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol, Self, TypeVar

if TYPE_CHECKING:
    import torch
    from micrograd.engine import Value as MicrogradValue

    import refgrad
    import refgrad.micrograd.engine

__all__ = [
    "ENGINES",
    "LAYER_SIZES",
    "GraphEngine",
    "TrainingEngine",
    "graph_engine",
    "initial_weights",
    "learning_rate",
    "moons",
    "training_engine",
]

ENGINES: Final = ("refgrad", "compat", "micrograd", "torch")
LAYER_SIZES: Final = (2, 16, 16, 1)
SAMPLES: Final = 100
NOISE: Final = 0.1
DATA_SEED: Final = 1337
WEIGHT_SEED: Final = 1337
REGULARISATION: Final = 1e-4


def moons(
    samples: int = SAMPLES, noise: float = NOISE, seed: int = DATA_SEED
) -> tuple[list[tuple[float, float]], list[float]]:
    """Two interleaving half circles with scikit-learn's ``make_moons`` geometry, labels -1/+1.

    Outer moon: ``(cos t, sin t)``, inner moon: ``(1 - cos t, 1 - sin t - 0.5)`` for ``t`` in
    ``linspace(0, pi)``, plus gaussian noise; generated here with a fixed seed so that no engine
    depends on scikit-learn or numpy and every run trains on the same points.
    """
    rng = random.Random(seed)
    outer = samples // 2
    inner = samples - outer

    def linspace(count: int) -> list[float]:
        return [math.pi * i / (count - 1) for i in range(count)]

    points = [(math.cos(t), math.sin(t)) for t in linspace(outer)]
    points += [(1.0 - math.cos(t), 1.0 - math.sin(t) - 0.5) for t in linspace(inner)]
    labels = [-1.0] * outer + [1.0] * inner
    noisy = [(x + rng.gauss(0.0, noise), y + rng.gauss(0.0, noise)) for x, y in points]
    return noisy, labels


def initial_weights(seed: int = WEIGHT_SEED) -> list[float]:
    """micrograd's initialisation (weights uniform in [-1, 1], biases 0) in its parameter order."""
    rng = random.Random(seed)
    weights: list[float] = []
    for fan_in, fan_out in itertools.pairwise(LAYER_SIZES):
        for _ in range(fan_out):
            weights += [rng.uniform(-1.0, 1.0) for _ in range(fan_in)]
            weights.append(0.0)
    return weights


def learning_rate(step: int) -> float:
    """The demo's schedule: 1.0 decaying linearly towards 0.1 over 100 steps."""
    return 1.0 - 0.9 * step / 100


class Scalar(Protocol):
    """The arithmetic the training step uses; refgrad's nodes, micrograd's and 0-d tensors all have it."""

    def __add__(self, other: Self, /) -> Self: ...
    def __radd__(self, other: float, /) -> Self: ...
    def __mul__(self, other: Self | float, /) -> Self: ...
    def __rmul__(self, other: float, /) -> Self: ...
    def relu(self) -> Self: ...


S = TypeVar("S", bound=Scalar)
Layers = list[list[tuple[list[S], S]]]


def build_layers(weights: Sequence[float], leaf: Callable[[float], S]) -> Layers[S]:
    """The MLP's parameters as leaves, neuron by neuron (weights, then bias), as micrograd orders them."""
    flat = iter(weights)
    layers: Layers[S] = []
    for fan_in, fan_out in itertools.pairwise(LAYER_SIZES):
        layer = [([leaf(next(flat)) for _ in range(fan_in)], leaf(next(flat))) for _ in range(fan_out)]
        layers.append(layer)
    return layers


def parameters(layers: Layers[S]) -> Iterator[S]:
    """Every parameter, in micrograd's order."""
    for layer in layers:
        for weights, bias in layer:
            yield from weights
            yield bias


def mlp(layers: Layers[S], inputs: list[S]) -> S:
    """micrograd's ``MLP.__call__``: ``sum(w * x, b)`` per neuron, relu on every layer but the last."""
    activations = inputs
    last = len(layers) - 1
    for depth, layer in enumerate(layers):
        outputs: list[S] = []
        for weights, bias in layer:
            total = sum((w * x for w, x in zip(weights, activations, strict=True)), bias)
            outputs.append(total if depth == last else total.relu())
        activations = outputs
    return activations[0]


def svm_loss(scores: list[S], labels: Sequence[float], params: Iterator[S], zero: Callable[[], S]) -> S:
    """The demo's loss: mean max-margin hinge plus ``1e-4 * sum(p * p)``.

    ``zero()`` makes the start of each ``sum`` (the demo's builtin ``sum`` starts at ``0``, which
    adds the same constant leaf and ``add`` node).
    """
    losses = [(1 + -label * score).relu() for label, score in zip(labels, scores, strict=True)]
    data_loss = sum(losses, zero()) * (1.0 / len(losses))
    reg_loss = REGULARISATION * sum((p * p for p in params), zero())
    return data_loss + reg_loss


class TrainingEngine(Protocol):
    """One training step in four timed phases, then the graph is dropped."""

    def forward(self) -> float:
        """Build the graph from fresh input leaves to the loss; return the loss value."""
        ...

    def backward(self) -> None:
        """Gradients of the loss (for mutable engines: zero the parameters' ``grad`` first)."""
        ...

    def update(self, rate: float) -> None:
        """One SGD step on the parameters."""
        ...

    def release(self) -> None:
        """Drop every reference to this step's graph."""
        ...

    def graph_size(self) -> int:
        """Nodes the current loss depends on (leaves included)."""
        ...


class RefgradTraining:
    """refgrad's immutable core: gradients are a mapping, the update makes new parameter leaves."""

    def __init__(
        self, points: Sequence[tuple[float, float]], labels: Sequence[float], weights: Sequence[float]
    ) -> None:
        from refgrad import Value

        self._value = Value
        self._points = points
        self._labels = labels
        self._layers: Layers[refgrad.Value] = build_layers(weights, Value)
        self._loss: refgrad.Value | None = None
        self._grads: refgrad.Gradients | None = None

    def forward(self) -> float:
        """See :class:`TrainingEngine`."""
        value = self._value
        scores = [mlp(self._layers, [value(a), value(b)]) for a, b in self._points]
        self._loss = svm_loss(scores, self._labels, parameters(self._layers), lambda: value(0.0))
        return self._loss.data

    def backward(self) -> None:
        """See :class:`TrainingEngine`."""
        assert self._loss is not None
        self._grads = self._loss.backward()

    def update(self, rate: float) -> None:
        """See :class:`TrainingEngine`."""
        grads = self._grads
        assert grads is not None
        value = self._value
        self._layers = [
            [
                ([value(w.data - rate * grads[w]) for w in weights], value(b.data - rate * grads[b]))
                for weights, b in layer
            ]
            for layer in self._layers
        ]

    def release(self) -> None:
        """See :class:`TrainingEngine`."""
        self._loss = None
        self._grads = None

    def graph_size(self) -> int:
        """See :class:`TrainingEngine`."""
        assert self._loss is not None
        return len(self._loss.backward())


class CompatTraining:
    """refgrad.micrograd: micrograd's API (mutable ``data``/``grad``) on refgrad's registry, with its ``nn.MLP``."""

    def __init__(
        self, points: Sequence[tuple[float, float]], labels: Sequence[float], weights: Sequence[float]
    ) -> None:
        from refgrad.micrograd.engine import Value

        self._value = Value
        self._points = points
        self._labels = labels
        self._model, self._params = _compat_model(weights)
        self._loss: refgrad.micrograd.engine.Value | None = None

    def forward(self) -> float:
        """See :class:`TrainingEngine`."""
        value = self._value
        scores = [self._model([value(a), value(b)]) for a, b in self._points]
        self._loss = svm_loss(scores, self._labels, iter(self._params), lambda: value(0.0))
        return self._loss.data

    def backward(self) -> None:
        """See :class:`TrainingEngine`."""
        assert self._loss is not None
        for p in self._params:
            p.grad = 0.0
        self._loss.backward()

    def update(self, rate: float) -> None:
        """See :class:`TrainingEngine`."""
        for p in self._params:
            p.data -= rate * p.grad

    def release(self) -> None:
        """See :class:`TrainingEngine`."""
        self._loss = None

    def graph_size(self) -> int:
        """See :class:`TrainingEngine`."""
        assert self._loss is not None
        return _count_nodes(self._loss, lambda node: node.inputs)


def _compat_model(
    weights: Sequence[float],
) -> tuple[
    Callable[[list[refgrad.micrograd.engine.Value]], refgrad.micrograd.engine.Value],
    list[refgrad.micrograd.engine.Value],
]:
    """``refgrad.micrograd.nn.MLP`` (what a micrograd user imports), set to the shared initial weights."""
    from refgrad.micrograd.engine import Value
    from refgrad.micrograd.nn import MLP

    model = MLP(LAYER_SIZES[0], list(LAYER_SIZES[1:]))
    params = model.parameters()
    if len(params) != len(weights):
        raise RuntimeError(f"refgrad.micrograd.nn.MLP has {len(params)} parameters, expected {len(weights)}")
    for p, w in zip(params, weights, strict=True):
        p.data = w

    def call(inputs: list[Value]) -> Value:
        out = model(inputs)
        assert isinstance(out, Value), "the last layer has one neuron"
        return out

    return call, params


class MicrogradTraining:
    """micrograd 0.1.0 from PyPI, exactly as its demo notebook trains: ``micrograd.nn.MLP``."""

    def __init__(
        self, points: Sequence[tuple[float, float]], labels: Sequence[float], weights: Sequence[float]
    ) -> None:
        from micrograd.engine import Value
        from micrograd.nn import MLP

        self._value = Value
        self._points = points
        self._labels = labels
        self._model = MLP(LAYER_SIZES[0], list(LAYER_SIZES[1:]))
        self._params = self._model.parameters()
        for p, w in zip(self._params, weights, strict=True):
            p.data = w
        self._loss: Any = None  # a micrograd Value: micrograd ships no types

    def _score(self, inputs: list[MicrogradValue]) -> MicrogradValue:
        out = self._model(inputs)
        assert not isinstance(out, list), "the last layer has one neuron"
        return out

    def forward(self) -> float:
        """See :class:`TrainingEngine`."""
        value = self._value
        scores = [self._score([value(a), value(b)]) for a, b in self._points]
        loss = svm_loss(scores, self._labels, iter(self._params), lambda: value(0.0))
        self._loss = loss
        return float(loss.data)

    def backward(self) -> None:
        """See :class:`TrainingEngine`."""
        self._model.zero_grad()
        self._loss.backward()

    def update(self, rate: float) -> None:
        """See :class:`TrainingEngine`."""
        for p in self._params:
            p.data -= rate * p.grad

    def release(self) -> None:
        """See :class:`TrainingEngine`."""
        self._loss = None

    def graph_size(self) -> int:
        """See :class:`TrainingEngine`."""
        # _prev is a set: micrograd merges the two edges of x * x, never the nodes.
        return _count_nodes(self._loss, lambda node: tuple(node._prev))


class TorchTraining:
    """PyTorch autograd on the same scalar graph: 0-d float64 tensors, ``loss.backward()``."""

    def __init__(
        self, points: Sequence[tuple[float, float]], labels: Sequence[float], weights: Sequence[float]
    ) -> None:
        import torch

        torch.set_num_threads(1)  # scalar ops: intra-op threads only add overhead
        self._torch = torch
        self._points = points
        self._labels = labels

        def leaf(w: float) -> torch.Tensor:
            return torch.tensor(w, dtype=torch.float64, requires_grad=True)

        self._layers: Layers[torch.Tensor] = build_layers(weights, leaf)
        self._params = list(parameters(self._layers))
        self._loss: torch.Tensor | None = None

    def _constant(self, x: float) -> torch.Tensor:
        return self._torch.tensor(x, dtype=self._torch.float64)

    def forward(self) -> float:
        """See :class:`TrainingEngine`."""
        constant = self._constant
        # Inputs are constants: torch skips their gradients, the others compute them (a small favour to torch).
        scores = [mlp(self._layers, [constant(a), constant(b)]) for a, b in self._points]
        self._loss = svm_loss(scores, self._labels, iter(self._params), lambda: constant(0.0))
        return float(self._loss.item())

    def backward(self) -> None:
        """See :class:`TrainingEngine`."""
        assert self._loss is not None
        for p in self._params:
            p.grad = None
        self._torch.autograd.backward(self._loss)

    def update(self, rate: float) -> None:
        """See :class:`TrainingEngine`."""
        with self._torch.no_grad():
            for p in self._params:
                assert p.grad is not None
                p.sub_(rate * p.grad)

    def release(self) -> None:
        """See :class:`TrainingEngine`."""
        self._loss = None

    def graph_size(self) -> int:
        """See :class:`TrainingEngine`."""
        assert self._loss is not None
        root = self._loss.grad_fn
        assert root is not None
        # Autograd nodes (grad_fn) only: torch keeps no node for constants.
        return _count_nodes(root, lambda fn: tuple(f for f, _ in fn.next_functions if f is not None))


T = TypeVar("T")


def _count_nodes(root: T, children: Callable[[T], tuple[T, ...]]) -> int:
    seen = {id(root)}
    stack = [root]
    while stack:
        for child in children(stack.pop()):
            if id(child) not in seen:
                seen.add(id(child))
                stack.append(child)
    return len(seen)


TRAINING_ENGINES: Final[
    dict[str, Callable[[Sequence[tuple[float, float]], Sequence[float], Sequence[float]], TrainingEngine]]
] = {
    "refgrad": RefgradTraining,
    "compat": CompatTraining,
    "micrograd": MicrogradTraining,
    "torch": TorchTraining,
}


def training_engine(name: str) -> TrainingEngine:
    """The named engine, set up on the demo's data and the shared initial weights."""
    points, labels = moons()
    return TRAINING_ENGINES[name](points, labels, initial_weights())


# Graph-shape workloads -----------------------------------------------------------------------

CHAIN_FACTOR: Final = 1.0 + 1e-7
"""The chain multiplies by this at every node: the product stays finite (e**0.1 at 10**6 nodes)."""


class Addable(Protocol):
    """What a pairwise sum needs."""

    def __add__(self, other: Self, /) -> Self: ...


A = TypeVar("A", bound=Addable)


def pairwise_sum(leaves: Sequence[A]) -> A:
    """Sum ``leaves`` as a balanced tree: ``len(leaves) - 1`` add nodes, depth ``ceil(log2 n)``."""
    level: list[A] = list(leaves)
    while len(level) > 1:
        paired: list[A] = [level[i] + level[i + 1] for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def chain(leaf: Callable[[float], S]) -> Callable[[int], tuple[S, list[S]]]:
    """A builder of ``y = x * w * w * ... * w`` (``size`` product nodes, depth ``size``)."""

    def build(size: int) -> tuple[S, list[S]]:
        x = leaf(1.0)
        w = leaf(CHAIN_FACTOR)
        y = x
        for _ in range(size):
            y = y * w
        return y, [x, w]

    return build


class GraphEngine(Protocol):
    """Builds one graph of a given shape and size, differentiates it in the ways it supports."""

    measurements: tuple[str, ...]
    """Which of ``backward``, ``create_graph`` and ``jvp`` this engine can do."""

    def build(self, shape: str, size: int) -> None:
        """Build a ``chain`` or ``wide`` (balanced sum of ``size + 1`` leaves) graph of ``size`` op nodes."""
        ...

    def run(self, measurement: str) -> None:
        """Differentiate the current graph one way; the result is kept until :meth:`drop_result`."""
        ...

    def drop_result(self) -> None:
        """Forget the last result (gradients, or the graph ``create_graph`` built)."""
        ...

    def release(self) -> None:
        """Drop the graph."""
        ...


class RefgradGraphs:
    """refgrad's core: ``backward()``, ``grad(..., create_graph=True)`` and ``jvp``."""

    measurements: tuple[str, ...] = ("backward", "create_graph", "jvp")

    def __init__(self) -> None:
        from refgrad import Value

        self._value = Value
        self._output: refgrad.Value | None = None
        self._inputs: list[refgrad.Value] = []
        self._result: object = None

    def build(self, shape: str, size: int) -> None:
        """See :class:`GraphEngine`."""
        value = self._value
        if shape == "chain":
            self._output, self._inputs = chain(value)(size)
        else:
            self._inputs = [value(float(i % 10)) for i in range(size + 1)]
            self._output = pairwise_sum(self._inputs)

    def run(self, measurement: str) -> None:
        """See :class:`GraphEngine`."""
        from refgrad import grad, jvp

        output = self._output
        assert output is not None
        if measurement == "backward":
            self._result = output.backward()
        elif measurement == "create_graph":
            self._result = grad(output, self._inputs, create_graph=True)
        else:
            self._result = jvp(output, self._inputs, [1.0] * len(self._inputs))

    def drop_result(self) -> None:
        """See :class:`GraphEngine`."""
        self._result = None

    def release(self) -> None:
        """See :class:`GraphEngine`."""
        self._output = None
        self._inputs = []
        self._result = None


class CompatGraphs:
    """refgrad.micrograd: ``backward()`` filling ``.grad``."""

    measurements: tuple[str, ...] = ("backward",)

    def __init__(self) -> None:
        from refgrad.micrograd.engine import Value

        self._value = Value
        self._output: refgrad.micrograd.engine.Value | None = None
        self._inputs: list[refgrad.micrograd.engine.Value] = []

    def build(self, shape: str, size: int) -> None:
        """See :class:`GraphEngine`."""
        value = self._value
        if shape == "chain":
            self._output, self._inputs = chain(value)(size)
        else:
            self._inputs = [value(float(i % 10)) for i in range(size + 1)]
            self._output = pairwise_sum(self._inputs)

    def run(self, measurement: str) -> None:
        """See :class:`GraphEngine`."""
        assert self._output is not None
        self._output.backward()

    def drop_result(self) -> None:
        """See :class:`GraphEngine`."""

    def release(self) -> None:
        """See :class:`GraphEngine`."""
        self._output = None
        self._inputs = []


class MicrogradGraphs:
    """micrograd 0.1.0: ``backward()`` (a recursive topological sort: deep graphs overflow the stack)."""

    measurements: tuple[str, ...] = ("backward",)

    def __init__(self) -> None:
        from micrograd.engine import Value

        self._value = Value
        self._output: Any = None  # micrograd ships no types
        self._inputs: list[Any] = []

    def build(self, shape: str, size: int) -> None:
        """See :class:`GraphEngine`."""
        value = self._value
        if shape == "chain":
            self._output, self._inputs = chain(value)(size)
        else:
            self._inputs = [value(float(i % 10)) for i in range(size + 1)]
            self._output = pairwise_sum(self._inputs)

    def run(self, measurement: str) -> None:
        """See :class:`GraphEngine`."""
        self._output.backward()

    def drop_result(self) -> None:
        """See :class:`GraphEngine`."""

    def release(self) -> None:
        """See :class:`GraphEngine`."""
        self._output = None
        self._inputs = []


class TorchGraphs:
    """PyTorch scalar autograd: ``backward()`` and ``autograd.grad(..., create_graph=True)``.

    Forward mode (``torch.autograd.forward_ad``) would rebuild the graph with dual tensors, a
    different computation from refgrad's ``jvp`` over an existing graph, so it is not measured.
    """

    measurements: tuple[str, ...] = ("backward", "create_graph")

    def __init__(self) -> None:
        import torch

        torch.set_num_threads(1)
        self._torch = torch
        self._output: torch.Tensor | None = None
        self._inputs: list[torch.Tensor] = []
        self._result: object = None

    def _leaf(self, x: float) -> torch.Tensor:
        return self._torch.tensor(x, dtype=self._torch.float64, requires_grad=True)

    def build(self, shape: str, size: int) -> None:
        """See :class:`GraphEngine`."""
        if shape == "chain":
            self._output, self._inputs = chain(self._leaf)(size)
        else:
            self._inputs = [self._leaf(float(i % 10)) for i in range(size + 1)]
            self._output = pairwise_sum(self._inputs)

    def run(self, measurement: str) -> None:
        """See :class:`GraphEngine`."""
        output = self._output
        assert output is not None
        if measurement == "backward":
            # Kept so that create_graph can run on the same graph afterwards.
            self._torch.autograd.backward(output, retain_graph=True)
        else:
            self._result = self._torch.autograd.grad(output, self._inputs, create_graph=True)

    def drop_result(self) -> None:
        """See :class:`GraphEngine`."""
        self._result = None

    def release(self) -> None:
        """See :class:`GraphEngine`."""
        self._output = None
        self._inputs = []
        self._result = None


GRAPH_ENGINES: Final[dict[str, Callable[[], GraphEngine]]] = {
    "refgrad": RefgradGraphs,
    "compat": CompatGraphs,
    "micrograd": MicrogradGraphs,
    "torch": TorchGraphs,
}


def graph_engine(name: str) -> GraphEngine:
    """The named engine's graph-shape workloads."""
    return GRAPH_ENGINES[name]()


# Single nodes, for bytes per node ----------------------------------------------------------


def node_makers(name: str) -> dict[str, Callable[[int], object]]:
    """For each node kind (``leaf``, ``pow``, ``relu``, ``mul``), a function making the i-th such node.

    Unary and binary nodes reuse operands made beforehand, so only the new node (and the float it
    holds, and any per-node parameter tuple) is counted.
    """
    if name == "refgrad":
        from refgrad import Value as Core

        x, y = Core(1.5), Core(2.5)
        return {
            "leaf": lambda i: Core(i + 0.5),
            "pow": lambda i: x**2.0,
            "relu": lambda i: x.relu(),
            "mul": lambda i: x * y,
        }
    if name == "compat":
        from refgrad.micrograd.engine import Value as Compat

        cx, cy = Compat(1.5), Compat(2.5)
        return {
            "leaf": lambda i: Compat(i + 0.5),
            "pow": lambda i: cx**2.0,
            "relu": lambda i: cx.relu(),
            "mul": lambda i: cx * cy,
        }
    if name == "micrograd":
        from micrograd.engine import Value as Micro

        mx, my = Micro(1.5), Micro(2.5)
        return {
            "leaf": lambda i: Micro(i + 0.5),
            "pow": lambda i: mx**2.0,
            "relu": lambda i: mx.relu(),
            "mul": lambda i: mx * my,
        }
    import torch

    def leaf(i: int) -> torch.Tensor:
        return torch.tensor(i + 0.5, dtype=torch.float64, requires_grad=True)

    tx, ty = leaf(1), leaf(2)
    return {"leaf": leaf, "pow": lambda i: tx**2.0, "relu": lambda i: tx.relu(), "mul": lambda i: tx * ty}
