"""Functional optimizers: a model and its gradients in, a new model out.

Nothing is updated in place. :class:`SGD` has no state; :class:`Adam` keeps its
moment estimates in an explicit, immutable :class:`AdamState` that each step
returns alongside the new model::

    optimizer = Adam(learning_rate=0.01)
    state = optimizer.init(model)
    for _ in range(100):
        loss = loss_of(model)
        model, state = optimizer.step(model, loss.backward(), state)

A model is anything with ``parameters()`` and ``with_parameters(values)`` (see
:class:`refgrad.nn.Model`); gradients are any mapping from parameter nodes to
floats, normally the :class:`refgrad.Gradients` that ``loss.backward()`` returns.
A parameter the loss does not depend on has gradient ``0``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Final, TypeVar, cast

from refgrad.errors import DomainError
from refgrad.nn import Model
from refgrad.numeric import as_count, as_finite_float, shown, type_name
from refgrad.value import Value

__all__ = ["SGD", "Adam", "AdamState"]

ModelT = TypeVar("ModelT", bound=Model)


def _check_model(model: object) -> tuple[Value, ...]:
    parameters = getattr(model, "parameters", None)
    if not callable(parameters) or not callable(getattr(model, "with_parameters", None)):
        raise TypeError(f"model must have parameters() and with_parameters(), got {type_name(model)}")
    found: object = parameters()
    if not isinstance(found, tuple) or not all(isinstance(p, Value) for p in cast("tuple[object, ...]", found)):
        raise TypeError(f"{type_name(model)}.parameters() must return a tuple of Values")
    return cast("tuple[Value, ...]", found)


def _gradient_values(parameters: tuple[Value, ...], gradients: object) -> list[float]:
    """One float per parameter; a parameter missing from ``gradients`` gets ``0.0``."""
    if not isinstance(gradients, Mapping):
        raise TypeError(f"gradients must be a mapping from Values to floats, got {type_name(gradients)}")
    # Its values are checked one by one below; the keys only need to be hashable.
    mapping = cast("Mapping[object, object]", gradients)
    if parameters and not any(p in mapping for p in parameters):
        # Usually a loss computed from a previous model: every step would silently do nothing.
        raise ValueError(
            "the gradients involve none of the model's parameters; were they computed from a loss of this model?"
        )
    values: list[float] = []
    for position, parameter in enumerate(parameters):
        raw = mapping.get(parameter, 0.0)
        values.append(as_finite_float(raw, f"gradient of parameter {position}"))
    return values


def _exact_fused_multiply_add(x: float, y: float, z: float) -> float:
    # Exact rational arithmetic rounded once is what a hardware fused multiply-add computes.
    return float(Fraction(x) * Fraction(y) + Fraction(z))


# PyTorch's CPU kernels fuse the multiply-adds of lerp, addcmul and add-with-alpha (one rounding, not two);
# matching them keeps Adam equal to torch.optim.Adam to the last bit, not merely close. Python
# has math.fma from 3.13 on; before that an exact rational product-sum gives the same result.
_fused_multiply_add: Final[Callable[[float, float, float], float]] = getattr(math, "fma", _exact_fused_multiply_add)


def _positive(value: object, what: str) -> float:
    checked = as_finite_float(value, what)
    if checked <= 0.0:
        raise ValueError(f"{what} must be positive, got {checked!r}")
    return checked


def _adam_overflow(step: int, position: int, parameter: Value, gradient: float) -> DomainError:
    return DomainError(
        f"Adam step {step} of parameter {position} is not finite "
        f"(parameter {parameter.data!r}, gradient {gradient!r}): the numbers are beyond the float range"
    )


@dataclass(frozen=True, slots=True)
class SGD:
    """Plain gradient descent: ``p - learning_rate * grad`` for every parameter ``p``.

    For a schedule, make one per step (they are tiny):
    ``SGD(1.0 - 0.9 * k / steps).step(model, grads)`` is micrograd's demo.
    """

    learning_rate: float
    """The step size (finite, may be zero or negative for experiments)."""

    def __post_init__(self) -> None:
        # Frozen: the base class's setter is the only way to store the checked float.
        object.__setattr__(self, "learning_rate", as_finite_float(self.learning_rate, "learning_rate"))

    def step(self, model: ModelT, gradients: Mapping[Value, float]) -> ModelT:
        """``model`` with every parameter moved against its gradient."""
        parameters = _check_model(model)
        grads = _gradient_values(parameters, gradients)
        rate = self.learning_rate
        updated = [p.data - rate * g for p, g in zip(parameters, grads, strict=True)]
        for position, (parameter, gradient, value) in enumerate(zip(parameters, grads, updated, strict=True)):
            if not math.isfinite(value):
                raise DomainError(
                    f"SGD step of parameter {position} is not finite: "
                    f"{parameter.data!r} - {rate!r} * {gradient!r} = {value!r}"
                )
        return model.with_parameters(updated)


@dataclass(frozen=True, slots=True)
class AdamState:
    """Adam's running state after ``step`` updates: one first and second moment per parameter."""

    step: int
    """Number of updates made so far."""
    exp_avg: tuple[float, ...]
    """Running average of the gradients (first moment), per parameter."""
    exp_avg_sq: tuple[float, ...]
    """Running average of the squared gradients (second moment), per parameter."""

    def __post_init__(self) -> None:
        step = as_count(self.step, "step", minimum=0)
        moments: list[tuple[float, ...]] = []
        for what, given in (("exp_avg", self.exp_avg), ("exp_avg_sq", self.exp_avg_sq)):
            if not isinstance(given, tuple):
                raise TypeError(f"{what} must be a tuple of floats, got {type_name(given)}")
            moments.append(tuple(as_finite_float(x, f"{what}[{i}]") for i, x in enumerate(given)))
        exp_avg, exp_avg_sq = moments
        if len(exp_avg) != len(exp_avg_sq):
            raise ValueError(f"exp_avg has {len(exp_avg)} entries but exp_avg_sq has {len(exp_avg_sq)}")
        for position, second in enumerate(exp_avg_sq):
            if second < 0.0:
                raise ValueError(f"exp_avg_sq[{position}] is an average of squares, so >= 0, got {second!r}")
        # Frozen: store the checked values through the base class's setter.
        object.__setattr__(self, "step", step)
        object.__setattr__(self, "exp_avg", exp_avg)
        object.__setattr__(self, "exp_avg_sq", exp_avg_sq)


@dataclass(frozen=True, slots=True)
class Adam:
    """Adam (Kingma and Ba), computed as ``torch.optim.Adam`` computes it, step for step.

    Same defaults and the same arithmetic in the same order as PyTorch's
    single-tensor implementation (``amsgrad=False``, ``maximize=False``),
    including the fused multiply-adds of its CPU kernels, so the numbers agree
    with PyTorch's float64 results to the last bit or two (PyTorch's vectorised
    square root is not always correctly rounded). ``weight_decay`` adds
    ``weight_decay * p`` to the gradient (L2, not AdamW).
    """

    learning_rate: float = 1e-3
    """The step size (PyTorch's ``lr``)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Decay rates of the first and second moment averages, each in ``[0, 1)``."""
    eps: float = 1e-8
    """Added to the denominator for numerical stability."""
    weight_decay: float = 0.0
    """L2 penalty coefficient, ``>= 0``."""

    def __post_init__(self) -> None:
        learning_rate = _positive(self.learning_rate, "learning_rate")
        given: object = self.betas
        if not isinstance(given, tuple) or len(given) != 2:
            raise TypeError(f"betas must be a tuple of two floats, got {shown(given)}")
        betas = (as_finite_float(given[0], "betas[0]"), as_finite_float(given[1], "betas[1]"))
        for position, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"betas[{position}] must be in [0, 1), got {beta!r}")
        eps = as_finite_float(self.eps, "eps")
        if eps < 0.0:
            raise ValueError(f"eps must be >= 0, got {eps!r}")
        weight_decay = as_finite_float(self.weight_decay, "weight_decay")
        if weight_decay < 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        # Frozen: store the checked floats through the base class's setter.
        object.__setattr__(self, "learning_rate", learning_rate)
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "eps", eps)
        object.__setattr__(self, "weight_decay", weight_decay)

    def init(self, model: Model) -> AdamState:
        """The state before the first step: zero moments, one per parameter of ``model``."""
        count = len(_check_model(model))
        return AdamState(0, (0.0,) * count, (0.0,) * count)

    def step(self, model: ModelT, gradients: Mapping[Value, float], state: AdamState) -> tuple[ModelT, AdamState]:
        """One Adam update: the new model and the new state (the old ones are unchanged)."""
        parameters = _check_model(model)
        if not isinstance(state, AdamState):
            raise TypeError(f"state must be an AdamState (from Adam.init), got {type_name(state)}")
        if len(state.exp_avg) != len(parameters) or len(state.exp_avg_sq) != len(parameters):
            raise ValueError(
                f"state holds moments for {len(state.exp_avg)} parameters but the model has {len(parameters)}"
            )
        grads = _gradient_values(parameters, gradients)
        beta1, beta2 = self.betas
        step = state.step + 1
        # torch computes the bias corrections from a float step count.
        bias_correction1 = 1.0 - beta1 ** float(step)
        bias_correction2 = 1.0 - beta2 ** float(step)
        step_size = self.learning_rate / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5
        first_weight = 1.0 - beta1
        second_weight = 1.0 - beta2

        new_data: list[float] = []
        new_avg: list[float] = []
        new_avg_sq: list[float] = []
        for position, (parameter, gradient, old_avg, old_avg_sq) in enumerate(
            zip(parameters, grads, state.exp_avg, state.exp_avg_sq, strict=True)
        ):
            try:
                # grad.add(param, alpha=weight_decay): fused as well.
                g = _fused_multiply_add(self.weight_decay, parameter.data, gradient) if self.weight_decay else gradient
                # torch's lerp: start + weight * (end - start) for weights below one half, else
                # end + (weight - 1) * (end - start); each a fused multiply-add in its CPU kernel.
                if first_weight < 0.5:
                    avg = _fused_multiply_add(first_weight, g - old_avg, old_avg)
                else:
                    avg = _fused_multiply_add(first_weight - 1.0, g - old_avg, g)
                # addcmul: self + (value * t1) * t2, the last multiply-add fused; addcdiv is not fused.
                avg_sq = _fused_multiply_add(second_weight * g, g, old_avg_sq * beta2)
                denominator = math.sqrt(avg_sq) / bias_correction2_sqrt + self.eps
                updated = parameter.data + -step_size * avg / denominator
            except (ArithmeticError, ValueError):
                # The exact fused multiply-add cannot take an infinity, and overflows converting back.
                raise _adam_overflow(step, position, parameter, gradient) from None
            if not (math.isfinite(updated) and math.isfinite(avg) and math.isfinite(avg_sq)):
                raise _adam_overflow(step, position, parameter, gradient)
            new_data.append(updated)
            new_avg.append(avg)
            new_avg_sq.append(avg_sq)
        return model.with_parameters(new_data), AdamState(step, tuple(new_avg), tuple(new_avg_sq))
