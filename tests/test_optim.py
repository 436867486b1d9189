"""refgrad.optim: functional SGD and Adam; Adam checked step by step against torch.optim.Adam."""

from __future__ import annotations

import dataclasses
import random
import zlib
from typing import assert_type

import pytest
import torch

from refgrad import Value
from refgrad.nn import MLP, Neuron
from refgrad.optim import SGD, Adam, AdamState


def _gradient_sequence(count: int, steps: int, seed: int) -> list[list[float]]:
    rng = random.Random(seed)
    # Mixed scales and signs, and some exact zeros, as real gradients have.
    return [
        [rng.choice([0.0, rng.gauss(0, 1), rng.gauss(0, 1e-3), rng.gauss(0, 50)]) for _ in range(count)]
        for _ in range(steps)
    ]


def test_sgd_moves_each_parameter_against_its_gradient() -> None:
    """SGD(lr).step gives p - lr * g for every parameter, and leaves the old model as it was."""
    model = MLP.init(2, [3, 1], rng=0)
    before = [p.data for p in model.parameters()]
    grads = _gradient_sequence(len(before), 1, seed=1)[0]
    new = SGD(0.25).step(model, dict(zip(model.parameters(), grads, strict=True)))
    assert [p.data for p in new.parameters()] == [p - 0.25 * g for p, g in zip(before, grads, strict=True)]
    assert [p.data for p in model.parameters()] == before
    assert type(new) is MLP


def test_sgd_on_a_real_loss_decreases_it() -> None:
    """One small step along loss.backward() lowers a smooth loss (first-order descent)."""
    neuron = Neuron.init(3, rng=4, nonlin=False)
    x = [0.3, -1.2, 0.8]

    def loss_of(model: Neuron) -> Value:
        return (model(x) - 2.0) ** 2

    loss = loss_of(neuron)
    stepped = SGD(0.01).step(neuron, loss.backward())
    assert loss_of(stepped).data < loss.data


def test_parameters_the_loss_ignores_keep_their_values() -> None:
    """A parameter missing from the gradients has gradient 0: it does not move."""
    neuron = Neuron.init(2, rng=0)
    w0, w1, b = neuron.parameters()
    new = SGD(0.5).step(neuron, {w0: 1.0})
    assert [p.data for p in new.parameters()] == [w0.data - 0.5, w1.data, b.data]


def test_gradients_of_another_model_are_refused() -> None:
    """Gradients that involve none of the model's parameters (a stale loss) are a ValueError, not a silent no-op."""
    old = Neuron.init(2, rng=0, nonlin=False)
    loss = old([1.0, 2.0]) ** 2
    new = SGD(0.1).step(old, loss.backward())
    with pytest.raises(ValueError, match="none of the model's parameters"):
        SGD(0.1).step(new, loss.backward())


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"learning_rate": 0.1},
        {"learning_rate": 0.05, "betas": (0.5, 0.9)},
        {"learning_rate": 0.01, "betas": (0.3, 0.99)},  # 1 - beta1 >= 0.5: torch's other lerp branch
        {"learning_rate": 0.02, "weight_decay": 0.01},
        {"learning_rate": 0.3, "eps": 1e-3, "betas": (0.0, 0.0)},
    ],
)
def test_adam_matches_torch_step_for_step(options: dict[str, object]) -> None:
    """From the same parameters and gradients, every Adam step gives torch.optim.Adam's parameters and moments.

    Compared in float64 to a relative 1e-12 after each of 12 steps.
    """
    model = MLP.init(3, [4, 2], rng=8)
    initial = [p.data for p in model.parameters()]
    count = len(initial)
    gradients = _gradient_sequence(count, 12, seed=zlib.crc32(repr(options).encode()))

    torch_kwargs: dict[str, object] = {
        "lr": options.get("learning_rate", 1e-3),
        "betas": options.get("betas", (0.9, 0.999)),
        "eps": options.get("eps", 1e-8),
        "weight_decay": options.get("weight_decay", 0.0),
    }
    params = [torch.tensor([value], dtype=torch.float64, requires_grad=True) for value in initial]
    reference = torch.optim.Adam(params, **torch_kwargs)  # type: ignore[arg-type]  # kwargs typed as object here
    optimizer = Adam(**options)  # type: ignore[arg-type]  # as above
    state = optimizer.init(model)

    for step, step_grads in enumerate(gradients, start=1):
        for param, g in zip(params, step_grads, strict=True):
            param.grad = torch.tensor([g], dtype=torch.float64)
        reference.step()  # pyright: ignore[reportUnknownMemberType]  # torch's Adam.step is unannotated
        model, state = optimizer.step(model, dict(zip(model.parameters(), step_grads, strict=True)), state)

        assert state.step == step
        for position, (mine, param) in enumerate(zip(model.parameters(), params, strict=True)):
            torch_state = reference.state[param]
            assert mine.data == pytest.approx(param.item(), rel=1e-12, abs=1e-300), (step, position)
            assert state.exp_avg[position] == pytest.approx(torch_state["exp_avg"].item(), rel=1e-12, abs=1e-300)
            assert state.exp_avg_sq[position] == pytest.approx(torch_state["exp_avg_sq"].item(), rel=1e-12, abs=1e-300)


def test_adam_state_and_optimizers_are_immutable() -> None:
    """A step returns a new state; the old state, the optimizer and the old model do not change."""
    model = Neuron.init(2, rng=1)
    optimizer = Adam(learning_rate=0.1)
    state = optimizer.init(model)
    assert state == AdamState(0, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
    before = [p.data for p in model.parameters()]
    new_model, new_state = optimizer.step(model, dict.fromkeys(model.parameters(), 1.0), state)
    assert state.step == 0
    assert state.exp_avg == (0.0, 0.0, 0.0)
    assert new_state.step == 1
    assert [p.data for p in model.parameters()] == before
    assert all(after < old for after, old in zip((p.data for p in new_model.parameters()), before, strict=True))
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.step = 5  # type: ignore[misc]  # deliberately assigning to a frozen field
    with pytest.raises(dataclasses.FrozenInstanceError):
        optimizer.learning_rate = 1.0  # type: ignore[misc]  # as above
    with pytest.raises(dataclasses.FrozenInstanceError):
        SGD(0.1).learning_rate = 1.0  # type: ignore[misc]  # as above


def test_adam_refuses_a_state_of_another_shape() -> None:
    """A state made for a model with other parameters is a ValueError; a non-state a TypeError."""
    small = Neuron.init(2, rng=0)
    big = Neuron.init(5, rng=0)
    optimizer = Adam()
    grads = dict.fromkeys(big.parameters(), 1.0)
    with pytest.raises(ValueError, match="moments for 3 parameters but the model has 6"):
        optimizer.step(big, grads, optimizer.init(small))
    with pytest.raises(TypeError, match="state must be an AdamState"):
        optimizer.step(big, grads, None)  # type: ignore[arg-type]  # deliberately wrong input


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: Adam(learning_rate=0.0), ValueError, "learning_rate must be positive"),
        (lambda: Adam(learning_rate=float("nan")), ValueError, "learning_rate must be finite"),
        (lambda: Adam(betas=(0.9, 1.0)), ValueError, r"betas\[1\] must be in \[0, 1\)"),
        (lambda: Adam(betas=(-0.1, 0.9)), ValueError, r"betas\[0\] must be in \[0, 1\)"),
        (lambda: Adam(betas=[0.9, 0.99]), TypeError, "betas must be a tuple of two floats"),  # type: ignore[arg-type]  # deliberately wrong input
        (lambda: Adam(eps=-1e-8), ValueError, "eps must be >= 0"),
        (lambda: Adam(weight_decay=-0.1), ValueError, "weight_decay must be >= 0"),
        (lambda: SGD("0.1"), TypeError, "learning_rate must be a real number"),  # type: ignore[arg-type]  # deliberately wrong input
        (lambda: SGD(float("inf")), ValueError, "learning_rate must be finite"),
    ],
)
def test_bad_hyperparameters_are_clear_errors(build: object, error: type[Exception], match: str) -> None:
    """Out-of-range settings are ValueErrors and wrong types TypeErrors, naming the setting."""
    assert callable(build)
    with pytest.raises(error, match=match):
        build()


def test_bad_models_and_gradients_are_clear_errors() -> None:
    """A model without parameters()/with_parameters() or gradients that are not a mapping is a TypeError."""
    neuron = Neuron.init(2, rng=0)
    with pytest.raises(TypeError, match="model must have parameters"):
        SGD(0.1).step(object(), {})  # type: ignore[type-var]  # deliberately wrong input
    with pytest.raises(TypeError, match="gradients must be a mapping"):
        SGD(0.1).step(neuron, [1.0, 2.0, 3.0])  # type: ignore[arg-type]  # deliberately wrong input
    with pytest.raises(ValueError, match="gradient of parameter 0 must be finite"):
        SGD(0.1).step(neuron, {neuron.parameters()[0]: float("nan")})


def test_steps_keep_the_model_type() -> None:
    """Optimizers are generic in the model: an MLP in, an MLP out (checked by mypy and at run time)."""
    model = MLP.init(2, [2, 1], rng=0)
    grads = model([1.0, 1.0])[0].backward()
    stepped = assert_type(SGD(0.1).step(model, grads), MLP)
    adam = Adam()
    pair = assert_type(adam.step(model, grads, adam.init(model)), tuple[MLP, AdamState])
    assert type(stepped) is MLP
    assert type(pair[0]) is MLP
