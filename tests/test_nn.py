"""refgrad.nn: frozen models with micrograd's shapes, seeded initialisation, forward and gradients."""

from __future__ import annotations

import dataclasses
import math
import random

import micrograd.engine
import micrograd.nn
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from refgrad import DomainError, Value, grad
from refgrad.moons import TrainingRun, svm_loss
from refgrad.nn import MLP, Layer, Neuron


def _model(seed: int = 1337) -> MLP:
    return MLP.init(2, [16, 16, 1], rng=random.Random(seed))


def test_mlp_has_micrograds_shapes() -> None:
    """MLP(2, [16, 16, 1]): three layers, (nin + 1) * nout parameters each, ReLU on all but the last."""
    model = _model()
    assert [(layer.nin, layer.nout) for layer in model.layers] == [(2, 16), (16, 16), (16, 1)]
    assert len(model.parameters()) == 3 * 16 + 17 * 16 + 17 * 1 == 337
    assert [all(n.nonlin for n in layer.neurons) for layer in model.layers] == [True, True, False]
    assert [any(n.nonlin for n in layer.neurons) for layer in model.layers] == [True, True, False]
    assert model.nin == 2
    assert model.nouts == (16, 16, 1)


def test_initial_weights_are_micrograds_under_the_same_seed() -> None:
    """MLP.init with random.Random(s) draws exactly the weights micrograd draws after random.seed(s)."""
    random.seed(1337)
    reference = micrograd.nn.MLP(2, [16, 16, 1])
    model = _model(1337)
    # Same generator, same draws in the same order: equality is exact, not approximate.
    assert [p.data for p in model.parameters()] == [p.data for p in reference.parameters()]


def test_initialisation_is_seeded_and_leaves_global_state_alone() -> None:
    """Equal seeds give equal weights (int seed or Random alike); the random module's state is untouched."""
    random.seed(7)
    before = random.getstate()
    by_int = MLP.init(3, [4, 2], rng=42)
    by_rng = MLP.init(3, [4, 2], rng=random.Random(42))
    other = MLP.init(3, [4, 2], rng=43)
    assert random.getstate() == before
    assert [p.data for p in by_int.parameters()] == [p.data for p in by_rng.parameters()]
    assert [p.data for p in by_int.parameters()] != [p.data for p in other.parameters()]


def test_weights_are_uniform_in_minus_one_one_and_biases_zero() -> None:
    """As micrograd: every weight in [-1, 1], every bias 0, every parameter a labelled leaf."""
    model = _model()
    for layer in model.layers:
        for neuron in layer.neurons:
            assert all(-1.0 <= w.data <= 1.0 for w in neuron.weights)
            assert neuron.bias.data == 0.0
    assert all(p.op is None and p.label for p in model.parameters())
    assert len({p.label for p in model.parameters()}) == 337


def test_models_are_frozen() -> None:
    """Assigning to a field of a Neuron, Layer or MLP raises; parameters() is a tuple."""
    model = _model()
    neuron = model.layers[0].neurons[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.layers = ()  # type: ignore[misc]  # deliberately assigning to a frozen field
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.layers[0].neurons = ()  # type: ignore[misc]  # as above
    with pytest.raises(dataclasses.FrozenInstanceError):
        neuron.bias = Value(1.0)  # type: ignore[misc]  # as above
    with pytest.raises(AttributeError):
        neuron.weights[0].data = 2.0  # type: ignore[misc]  # Values are immutable too
    assert isinstance(model.parameters(), tuple)


def test_neuron_computes_relu_of_the_affine_sum() -> None:
    """A neuron is relu(b + w0 x0 + w1 x1 + ...), linear when nonlin is false (same float operations)."""
    weights = (Value(0.5), Value(-1.25), Value(2.0))
    bias = Value(0.25)
    x = [1.5, 0.75, -0.5]
    expected = 0.25 + 0.5 * 1.5 + -1.25 * 0.75 + 2.0 * -0.5
    assert expected < 0  # so the ReLU matters
    assert Neuron(weights, bias)(x).data == 0.0
    assert Neuron(weights, bias, nonlin=False)(x).data == expected


def test_forward_matches_micrograd_exactly() -> None:
    """With micrograd's weights, the MLP's output is micrograd's output bit for bit (same sums, same order)."""
    random.seed(2024)
    reference = micrograd.nn.MLP(2, [16, 16, 1])
    model = _model(2024)
    for x in ([0.3, -0.7], [1.5, 0.25], [-2.0, 2.0]):
        (score,) = model(x)
        reference_score = reference(x)
        assert isinstance(reference_score, micrograd.engine.Value)  # one output: a Value, not a list
        assert score.data == reference_score.data


@settings(max_examples=200)
@given(
    seed=st.integers(0, 2**32 - 1),
    point=st.tuples(st.floats(-1e3, 1e3, allow_nan=False), st.floats(-1e3, 1e3, allow_nan=False)),
)
def test_predict_is_the_graphs_value_bit_for_bit(seed: int, point: tuple[float, float]) -> None:
    """predict() computes the numbers calling the model gives, to the bit, -0.0 included, without nodes."""
    model = MLP.init(2, [16, 16, 3], rng=seed)
    graph_values = tuple(out.data for out in model(point))
    predicted = model.predict(point)
    assert [value.hex() for value in predicted] == [value.hex() for value in graph_values]
    assert all(type(value) is float for value in predicted)


def test_predict_refuses_what_calling_refuses_and_nodes() -> None:
    """Wrong count, non-numbers, non-finite numbers and nodes are clear errors; an overflow is a DomainError."""
    model = MLP.init(2, [3, 1], rng=0)
    with pytest.raises(ValueError, match="takes 2 input"):
        model.predict([1.0])
    with pytest.raises(TypeError, match=r"inputs\[1\] must be a real number .*got str"):
        model.predict([1.0, "2"])  # type: ignore[list-item]  # deliberately wrong input
    with pytest.raises(TypeError, match=r"inputs\[0\] must be a real number .*got refgrad.Value"):
        model.predict([Value(1.0), 2.0])  # type: ignore[list-item]  # deliberately wrong input
    with pytest.raises(ValueError, match=r"inputs\[0\]"):
        model.predict([math.nan, 2.0])
    with pytest.raises(TypeError, match="inputs must be a sequence"):
        model.predict(1.0)  # type: ignore[arg-type]  # deliberately wrong input
    doubling = MLP((Layer((Neuron((Value(2.0),), Value(0.0), nonlin=False),)),))
    with pytest.raises(DomainError, match="mul"):
        doubling.predict([1e308])  # 2e308 overflows, as the node would
    with pytest.raises(DomainError, match="mul"):
        doubling([1e308])


def test_gradients_match_torch() -> None:
    """d output / d parameter for every parameter agrees with PyTorch float64 autograd to 1e-12."""
    model = MLP.init(3, [5, 4, 1], rng=3)
    x = [0.4, -1.1, 0.9]
    (score,) = model(x)
    ours = grad(score, model.parameters())

    torch_params: list[torch.Tensor] = [
        torch.tensor(p.data, dtype=torch.float64, requires_grad=True) for p in model.parameters()
    ]
    position = 0
    activations = [torch.tensor(v, dtype=torch.float64) for v in x]
    for layer in model.layers:
        outputs: list[torch.Tensor] = []
        for neuron in layer.neurons:
            weights = torch_params[position : position + neuron.nin]
            bias = torch_params[position + neuron.nin]
            position += neuron.nin + 1
            total = bias + sum(w * a for w, a in zip(weights, activations, strict=True))
            outputs.append(torch.relu(total) if neuron.nonlin else total)
        activations = outputs
    (torch_score,) = activations
    torch.autograd.backward(torch_score)
    assert score.data == pytest.approx(torch_score.item(), rel=1e-12)
    for mine, theirs in zip(ours, torch_params, strict=True):
        assert theirs.grad is not None
        assert mine == pytest.approx(theirs.grad.item(), rel=1e-12, abs=1e-15)


def test_calling_returns_values_for_floats_and_values() -> None:
    """Inputs may be numbers or nodes; a Layer and an MLP return a tuple of Values, a Neuron one Value."""
    model = MLP.init(2, [3, 2], rng=0)
    x_nodes = [Value(0.5), Value(-0.5)]
    out_floats = model([0.5, -0.5])
    out_nodes = model(x_nodes)
    assert isinstance(out_floats, tuple)
    assert len(out_floats) == 2
    assert all(isinstance(v, Value) for v in out_floats)
    assert [v.data for v in out_floats] == [v.data for v in out_nodes]
    assert isinstance(model.layers[0](x_nodes), tuple)
    assert isinstance(model.layers[0].neurons[0](x_nodes), Value)
    # The output depends on node inputs, so they get gradients.
    assert any(g != 0.0 for g in grad(out_nodes[0] + out_nodes[1], x_nodes))


def test_with_parameters_builds_a_new_model_and_leaves_the_old_one() -> None:
    """with_parameters gives a model with the new values (labels kept); the original is unchanged."""
    model = MLP.init(2, [3, 1], rng=1)
    old = [p.data for p in model.parameters()]
    values = [float(i) / 10 for i in range(len(old))]
    new = model.with_parameters(values)
    assert [p.data for p in new.parameters()] == values
    assert [p.data for p in model.parameters()] == old
    assert [p.label for p in new.parameters()] == [p.label for p in model.parameters()]
    assert new.nouts == model.nouts
    assert [n.nonlin for layer in new.layers for n in layer.neurons] == [
        n.nonlin for layer in model.layers for n in layer.neurons
    ]
    shared = Value(3.0)
    tied = model.with_parameters([shared] * len(old))
    assert all(p is shared for p in tied.parameters())


@pytest.mark.parametrize("count", [0, 12, 14])
def test_with_parameters_needs_one_value_per_parameter(count: int) -> None:
    """Too few or too many values is a ValueError stating both counts."""
    model = MLP.init(2, [3, 1], rng=1)  # 9 + 4 = 13 parameters
    with pytest.raises(ValueError, match=f"13 parameters, got {count}"):
        model.with_parameters([0.0] * count)


def test_with_parameters_rejects_non_numbers() -> None:
    """A value that is neither a Value nor a real number is a TypeError naming its position."""
    neuron = Neuron.init(2, rng=0)
    with pytest.raises(TypeError, match=r"values\[1\]"):
        neuron.with_parameters([0.0, "x", 1.0])  # type: ignore[list-item]  # deliberately wrong input
    with pytest.raises(TypeError, match="values must be a sequence"):
        neuron.with_parameters(3.0)  # type: ignore[arg-type]  # deliberately wrong input


def test_wrong_inputs_are_refused() -> None:
    """Calling with the wrong number of inputs is a ValueError; a non-number input a TypeError."""
    model = MLP.init(2, [3, 1], rng=0)
    with pytest.raises(ValueError, match="takes 2 input"):
        model([1.0])
    with pytest.raises(ValueError, match="takes 2 input"):
        model.layers[0].neurons[0]([1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match=r"inputs\[1\]"):
        model([1.0, "2"])  # type: ignore[list-item]  # deliberately wrong input
    with pytest.raises(TypeError, match="inputs must be a sequence"):
        model(1.0)  # type: ignore[arg-type]  # deliberately wrong input


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: MLP.init(2, [], rng=0), ValueError, "at least one layer"),
        (lambda: MLP.init(2, [0], rng=0), ValueError, r"nouts\[0\] must be at least 1"),
        (lambda: MLP.init(0, [1], rng=0), ValueError, "nin must be at least 1"),
        (lambda: MLP.init(2.0, [1], rng=0), TypeError, "nin must be an int"),  # type: ignore[arg-type]  # deliberately wrong input
        (lambda: MLP.init(2, [1.5], rng=0), TypeError, r"nouts\[0\] must be an int"),  # type: ignore[list-item]  # deliberately wrong input
        (lambda: MLP.init(2, 3, rng=0), TypeError, "nouts must be a sequence"),  # type: ignore[arg-type]  # deliberately wrong input
        (lambda: MLP.init(2, [1], rng="seed"), TypeError, "rng must be a random.Random or an int"),  # type: ignore[arg-type]  # deliberately wrong input
        (lambda: MLP.init(2, [1], rng=True), TypeError, "rng must be"),
        (lambda: Neuron.init(2, rng=0, nonlin=1), TypeError, "nonlin must be a bool"),  # type: ignore[arg-type]  # deliberately wrong input
        (lambda: Neuron((), Value(0.0)), ValueError, "at least one weight"),
        (lambda: Neuron((1.0,), Value(0.0)), TypeError, r"weights\[0\] must be a Value"),  # type: ignore[arg-type]  # deliberately wrong input
        (lambda: Neuron((Value(1.0),), 0.0), TypeError, "bias must be a Value"),  # type: ignore[arg-type]  # deliberately wrong input
        (lambda: Layer(()), ValueError, "at least one neuron"),
        (
            lambda: Layer((Neuron.init(2, rng=0), Neuron.init(3, rng=0))),
            ValueError,
            "same number of inputs",
        ),
        (lambda: MLP((Layer.init(2, 3, rng=0), Layer.init(4, 1, rng=0))), ValueError, "layer 1 takes 4 input"),
        (lambda: MLP(()), ValueError, "at least one layer"),
        (lambda: MLP(("layer",)), TypeError, r"layers\[0\] must be a Layer"),  # type: ignore[arg-type]  # deliberately wrong input
    ],
)
def test_bad_construction_is_a_clear_error(build: object, error: type[Exception], match: str) -> None:
    """Bad sizes, types and mismatched layers are TypeError or ValueError naming the problem."""
    assert callable(build)
    with pytest.raises(error, match=match):
        build()


def test_models_compare_by_identity_and_have_short_reprs() -> None:
    """Two models with equal weights are still two models; reprs give the shape, not 337 numbers."""
    assert _model() != _model()
    assert repr(_model()) == "MLP(nin=2, nouts=(16, 16, 1))"
    assert repr(_model().layers[2]) == "Layer(nin=16, nout=1, linear)"
    assert repr(_model().layers[0].neurons[0]) == "Neuron(nin=2, relu)"


def test_svm_loss_is_the_notebooks_formula() -> None:
    """mean(relu(1 - y * score)) + 1e-4 * sum(p * p), and the fraction of correct signs."""
    model = MLP.init(2, [4, 1], rng=5)
    points = [(0.5, 0.1), (-0.3, 0.8), (1.2, -0.4)]
    targets = [1, -1, 1]
    loss, accuracy = svm_loss(model, points, targets)
    scores = [model(p)[0].data for p in points]
    data_loss = sum(max(0.0, 1 - t * s) for t, s in zip(targets, scores, strict=True)) / 3
    reg = 1e-4 * sum(p.data**2 for p in model.parameters())
    assert loss.data == pytest.approx(data_loss + reg, rel=1e-14)
    assert accuracy == sum((t > 0) == (s > 0) for t, s in zip(targets, scores, strict=True)) / 3
    with pytest.raises(ValueError, match="targets must be -1 or"):
        svm_loss(model, points, [0, 1, 1])
    with pytest.raises(ValueError, match="3 points but 2 targets"):
        svm_loss(model, points, [1, 1])


@pytest.mark.slow
@pytest.mark.xdist_group("moons-training")
def test_training_reaches_full_accuracy_on_the_moons(moons_run: TrainingRun) -> None:
    """micrograd's recipe with the immutable API reaches 100% training accuracy within the demo's 100 steps."""
    run = moons_run
    assert len(run.history) == 100
    assert run.final_accuracy == 1.0
    assert any(record.accuracy == 1.0 for record in run.history)
    assert run.history[-1].loss < run.history[0].loss / 10
    assert math.isfinite(run.final_loss)
    # The trained model really is the one scored: re-scoring it gives the same numbers.
    targets = [2 * label - 1 for label in run.data.labels]
    loss, accuracy = svm_loss(run.model, run.data.points, targets)
    assert (loss.data, accuracy) == (run.final_loss, run.final_accuracy)
