"""refgrad.micrograd.nn against micrograd 0.1.0's own nn module, up to its demo notebook's training loop."""

from __future__ import annotations

import gc
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard, cast

import micrograd.engine
import micrograd.nn
import pytest
from _collector import collector_paused
from _coverage_repeats import coverage_paused

from refgrad.datasets import make_moons
from refgrad.micrograd.engine import Value
from refgrad.micrograd.nn import MLP, Layer, Module, Neuron
from refgrad.moons import TrainingRun

# The loss values must agree to rounding: the two engines visit a graph's nodes in different
# orders when summing gradients (micrograd's order follows set iteration), so sums may differ
# in their last bits and the difference grows slowly over the steps.
PARITY_RELATIVE_TOLERANCE = 1e-12


@dataclass(frozen=True)
class DemoRun:
    """Loss and accuracy at every step of the notebook's loop, and the initial weights."""

    losses: list[float]
    accuracies: list[float]
    initial_parameters: list[float]


STEPS = 100
SEED = 1337
X, _LABELS = make_moons(100, 0.1, seed=SEED)
Y = [2 * label - 1 for label in _LABELS]


def _no_backward() -> None:
    """What a micrograd leaf's ``_backward`` does: nothing."""


def release_micrograd_graph(root: Any) -> None:
    """Free a micrograd 0.1.0 graph whose step is done at once, by reference counting, not by a collection.

    Two things keep such a graph for the collector: each interior node's ``_backward`` closure
    holds the node itself, and ``backward()``'s recursive ``build_topo`` (a closure that holds
    itself) keeps its ``topo`` list and ``visited`` set, which hold every node. A collection
    finds all that by walking every node, a quarter of a second per step. Here the two holders
    are found among the root's referrers (the list ends with the root), the nodes' closures are
    replaced by one that holds nothing, and the holders are emptied: the graph goes when the loop
    lets go of the root, and the collection after it walks a handful of objects. Only what the
    step is done with is touched (its gradients are read before); leaves (the parameters the
    next step uses) keep their own ``_backward``. If micrograd keeps the nodes some other way,
    nothing is found and the collection frees the graph as before.
    """
    for holder in gc.get_referrers(root):
        if _is_topo(holder, root):
            for node in holder:
                if node._prev:
                    node._backward = _no_backward
            holder.clear()
        elif isinstance(holder, set) and root in holder:
            holder.clear()


def _is_topo(holder: object, root: object) -> TypeGuard[list[Any]]:
    """A list that ends with the root: micrograd's topological order of the root's graph."""
    if not isinstance(holder, list):
        return False
    items = cast("list[object]", holder)  # gc hands back untyped objects
    return len(items) > 0 and items[-1] is root


def _keep_graph(root: Any) -> None:
    """refgrad's graphs have no cycles: reference counting frees them as they are."""


def run_demo_notebook(value_type: Any, mlp_type: Any, release: Callable[[Any], None] = _keep_graph) -> DemoRun:
    """micrograd's demo notebook, cell by cell, with the engine and nn classes passed in.

    Typed ``Any`` on purpose: the notebook's code is duck-typed, and the same lines run on
    micrograd 0.1.0 (which has no type information) and on refgrad.micrograd. It runs with
    the collector paused (``collector_paused``), collecting once per step, for both engines, and
    with coverage paused: its 100 steps repeat lines and branches that the shorter tests here
    measure (tests/_coverage_repeats.py).
    """
    with collector_paused(), coverage_paused():
        return _notebook_loop(value_type, mlp_type, release)


def _notebook_loop(value_type: Any, mlp_type: Any, release: Callable[[Any], None]) -> DemoRun:
    random.seed(SEED)
    model = mlp_type(2, [16, 16, 1])  # 2-layer neural network
    initial = [p.data for p in model.parameters()]

    def loss() -> tuple[Any, float]:
        inputs: list[list[Any]] = [list(map(value_type, xrow)) for xrow in X]
        # forward the model to get scores
        scores: list[Any] = list(map(model, inputs))
        # svm "max-margin" loss
        losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(Y, scores, strict=True)]
        data_loss = sum(losses) * (1.0 / len(losses))
        # L2 regularization
        alpha = 1e-4
        reg_loss = alpha * sum(p * p for p in model.parameters())
        total_loss = data_loss + reg_loss
        # also get accuracy
        accuracy = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(Y, scores, strict=True)]
        return total_loss, sum(accuracy) / len(accuracy)

    losses: list[float] = []
    accuracies: list[float] = []
    for k in range(STEPS):
        # forward
        total_loss, acc = loss()
        # backward
        model.zero_grad()
        total_loss.backward()
        # update (sgd)
        learning_rate = 1.0 - 0.9 * k / 100
        for p in model.parameters():
            p.data -= learning_rate * p.grad
        losses.append(total_loss.data)
        accuracies.append(acc)
        release(total_loss)
        del total_loss  # the step's graph, freed here; the collection frees any cycle left
        gc.collect()
    return DemoRun(losses, accuracies, initial)


# Session-scoped: on one worker another module's test may run between the tests that read these,
# which would tear a module-scoped fixture down and compute it again.
@pytest.fixture(scope="session")
def micrograd_run() -> DemoRun:
    """The notebook's loop on micrograd 0.1.0 itself (collector paused, graphs released: 30 s, not five minutes)."""
    return run_demo_notebook(micrograd.engine.Value, micrograd.nn.MLP, release_micrograd_graph)


@pytest.fixture(scope="session")
def refgrad_run() -> DemoRun:
    """The same loop, only the imports changed to refgrad.micrograd."""
    return run_demo_notebook(Value, MLP)


def _max_relative_difference(ours: Sequence[float], theirs: Sequence[float]) -> float:
    return max(abs(a - b) / abs(b) for a, b in zip(ours, theirs, strict=True))


@pytest.mark.slow
@pytest.mark.xdist_group("moons-training")
def test_demo_loop_gives_micrograds_losses_and_accuracies(micrograd_run: DemoRun, refgrad_run: DemoRun) -> None:
    """All 100 steps of the notebook loop: the same accuracies, and losses equal to 1e-12 relative."""
    assert refgrad_run.initial_parameters == micrograd_run.initial_parameters
    # The first loss is a forward pass only, with identical operations in identical order: exact.
    assert refgrad_run.losses[0] == micrograd_run.losses[0]
    assert refgrad_run.accuracies == micrograd_run.accuracies
    assert len(refgrad_run.losses) == STEPS
    assert _max_relative_difference(refgrad_run.losses, micrograd_run.losses) < PARITY_RELATIVE_TOLERANCE
    # And the notebook's outcome: the last steps classify every point.
    assert micrograd_run.accuracies[-1] == 1.0


@pytest.mark.slow
@pytest.mark.xdist_group("moons-training")
def test_immutable_training_follows_micrograds_trajectory(micrograd_run: DemoRun, moons_run: TrainingRun) -> None:
    """refgrad.moons.train (the immutable API) under the same seed takes micrograd's steps too."""
    run = moons_run
    assert (len(run.history), run.data.points) == (STEPS, X)  # the fixture's run is this test's recipe
    assert [record.accuracy for record in run.history] == micrograd_run.accuracies
    ours = [record.loss for record in run.history]
    assert ours[0] == micrograd_run.losses[0]
    assert _max_relative_difference(ours, micrograd_run.losses) < PARITY_RELATIVE_TOLERANCE


@pytest.mark.parametrize(
    ("build_ours", "build_theirs"),
    [
        (lambda: Neuron(5), lambda: micrograd.nn.Neuron(5)),
        (lambda: Layer(3, 4, nonlin=False), lambda: micrograd.nn.Layer(3, 4, nonlin=False)),
        (lambda: MLP(3, [4, 4, 2]), lambda: micrograd.nn.MLP(3, [4, 4, 2])),
    ],
)
def test_initial_weights_follow_the_global_random_state_as_micrograd(
    build_ours: Callable[[], Module], build_theirs: Callable[[], Any]
) -> None:
    """Under the same random.seed, every module draws micrograd's weights in micrograd's order."""
    random.seed(7)
    ours = build_ours()
    after_ours = random.getstate()
    random.seed(7)
    theirs = build_theirs()
    assert [p.data for p in ours.parameters()] == [p.data for p in theirs.parameters()]
    assert random.getstate() == after_ours  # the same number of draws


# Each builder runs on both nn modules (refgrad.micrograd.nn and micrograd.nn): duck-typed on purpose.
_MODULE_BUILDERS: list[Callable[[Any], object]] = [
    lambda m: m.Neuron(3),
    lambda m: m.Neuron(2, nonlin=False),
    lambda m: m.Layer(2, 3),
    lambda m: m.Layer(2, 1, nonlin=False),
    lambda m: m.MLP(2, [16, 16, 1]),
]


@pytest.mark.parametrize("build", _MODULE_BUILDERS)
def test_reprs_are_micrograds(build: Callable[[Any], object]) -> None:
    """str() of every module reads exactly as micrograd's ("MLP of [Layer of [ReLUNeuron(2), ...]]")."""
    import refgrad.micrograd.nn

    assert repr(build(refgrad.micrograd.nn)) == repr(build(micrograd.nn))


def test_call_returns_a_value_for_one_output_else_a_list() -> None:
    """As micrograd: a one-neuron layer (and an MLP ending in one) returns a Value, wider layers a list."""
    random.seed(0)
    single = Layer(2, 1)([1.0, 2.0])
    several = Layer(2, 3)([1.0, 2.0])
    assert isinstance(single, Value)
    assert isinstance(several, list)
    assert len(several) == 3
    assert all(isinstance(v, Value) for v in several)
    assert isinstance(MLP(2, [3, 1])([0.5, -0.5]), Value)
    assert isinstance(MLP(2, [3, 2])([0.5, -0.5]), list)


def test_forward_matches_micrograd_exactly_for_floats_and_values() -> None:
    """The same weights give bit-identical outputs, with inputs as floats or as Values."""
    random.seed(3)
    ours = MLP(3, [5, 5, 2])
    random.seed(3)
    theirs = micrograd.nn.MLP(3, [5, 5, 2])
    x = [0.25, -1.5, 2.0]
    ours_out, theirs_out = ours(x), theirs(x)
    assert isinstance(ours_out, list)  # two outputs: lists
    assert isinstance(theirs_out, list)
    for out_ours, out_theirs in zip(ours_out, theirs_out, strict=True):
        assert out_ours.data == out_theirs.data
    with_values = ours([Value(v) for v in x])
    assert isinstance(with_values, list)
    assert [v.data for v in with_values] == [v.data for v in theirs_out]


def test_zero_grad_and_parameters() -> None:
    """parameters() lists weights then bias, neuron by neuron, layer by layer; zero_grad resets every grad."""
    random.seed(1)
    model = MLP(2, [3, 1])
    params = model.parameters()
    assert len(params) == 3 * 3 + 4
    assert params[:3] == [*model.layers[0].neurons[0].w, model.layers[0].neurons[0].b]
    out = model([1.0, -2.0])
    assert isinstance(out, Value)
    (out * out).backward()
    assert any(p.grad != 0 for p in params)
    model.zero_grad()
    assert all(p.grad == 0 for p in params)
    assert Module().parameters() == []


def test_bias_starts_at_zero_and_weights_in_range() -> None:
    """Neuron: weights uniform in [-1, 1], bias 0, ReLU unless nonlin=False."""
    random.seed(2)
    neuron = Neuron(4)
    assert all(-1 <= w.data <= 1 for w in neuron.w)
    assert neuron.b.data == 0
    assert neuron.nonlin is True
    assert Neuron(4, nonlin=False).nonlin is False
    # A negative pre-activation is cut to zero only with the ReLU.
    random.seed(2)
    linear = Neuron(1, nonlin=False)
    random.seed(2)
    relu = Neuron(1)
    x = [-10.0 if linear.w[0].data > 0 else 10.0]
    assert linear(x).data < 0
    assert relu(x).data == 0


def test_wrong_inputs_and_sizes_are_clear_errors() -> None:
    """Wrong input counts are ValueErrors (micrograd's zip would silently truncate); bad sizes too."""
    random.seed(0)
    with pytest.raises(ValueError, match="takes 2 input"):
        Neuron(2)([1.0])
    with pytest.raises(ValueError, match="takes 2 input"):
        MLP(2, [3, 1])([1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="single Value"):
        Neuron(1)(Value(1.0))  # type: ignore[arg-type]  # deliberately wrong input
    with pytest.raises(ValueError, match="nin must be at least 1"):
        Neuron(0)
    with pytest.raises(TypeError, match="nin must be an int"):
        Neuron(2.5)  # type: ignore[arg-type]  # deliberately wrong input
    with pytest.raises(TypeError, match="nonlin must be a bool"):
        Neuron(2, nonlin="yes")  # type: ignore[arg-type]  # deliberately wrong input
    with pytest.raises(ValueError, match="nout must be at least 1"):
        Layer(2, 0)
    with pytest.raises(ValueError, match="at least one layer size"):
        MLP(2, [])
    with pytest.raises(TypeError, match="nouts must be a list"):
        MLP(2, 3)  # type: ignore[arg-type]  # deliberately wrong input


def test_one_neuron_hidden_layer_works() -> None:
    """A hidden layer of one neuron passes its single Value on (micrograd itself fails there)."""
    random.seed(4)
    model = MLP(2, [1, 2])
    out = model([0.5, 0.5])
    assert isinstance(out, list)
    assert len(out) == 2


def test_a_released_micrograd_graph_is_freed_without_the_collector() -> None:
    """release_micrograd_graph leaves the collector next to nothing to find (else the demo loop's fixture is slow)."""
    with collector_paused():  # frozen: what exists now; the graph below is made after
        x = micrograd.engine.Value(0.5)
        y = x
        for _ in range(200):
            y = (y * 0.5 + x).relu()
        y.backward()
        gradient = x.grad
        release_micrograd_graph(y)
        del y
        found = gc.collect()
    assert found < 20  # without the release: every node, its closure and its cells (over a thousand)
    assert x.grad == gradient  # the leaf is untouched
    assert x._backward is not _no_backward
