"""micrograd's two published checks, written afresh, for both surfaces, against PyTorch in float64.

Each expression is written once, over a tiny "number kit" (how to make a leaf, how to take
gradients), so refgrad's core, its micrograd surface and torch evaluate the very same code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

import pytest
import torch

import refgrad
import refgrad.micrograd.engine as compat


class Scalar(Protocol):
    """What the expressions below need of a number type."""

    def __add__(self: S, other: S | float, /) -> S: ...
    def __radd__(self: S, other: float, /) -> S: ...
    def __sub__(self: S, other: S | float, /) -> S: ...
    def __mul__(self: S, other: S | float, /) -> S: ...
    def __rmul__(self: S, other: float, /) -> S: ...
    def __truediv__(self: S, other: S | float, /) -> S: ...
    def __rtruediv__(self: S, other: float, /) -> S: ...
    def __pow__(self: S, exponent: float, /) -> S: ...
    def __neg__(self: S) -> S: ...
    def relu(self: S) -> S: ...


S = TypeVar("S", bound=Scalar)


def sanity_check(x: S) -> S:
    """micrograd's sanity-check expression in one input."""
    z = 2 * x + 2 + x
    q = z.relu() + z * x
    h = (z * z).relu()
    return h + q + q * x


def more_ops(a: S, b: S) -> S:
    """micrograd's more-ops expression in two inputs."""
    c = a + b
    d = a * b + b**3
    c = c + c + 1
    c = c + 1 + c + (-a)
    d = d + d * 2 + (b + a).relu()
    d = d + 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    return g + 10.0 / f


# Each kit maps input floats to (output value, gradients) through one engine.
Kit = Callable[[Callable[..., object], tuple[float, ...]], tuple[float, tuple[float, ...]]]


def via_core(expression: Callable[..., object], inputs: tuple[float, ...]) -> tuple[float, tuple[float, ...]]:
    """Evaluate with refgrad's immutable Values; gradients returned by grad()."""
    leaves = tuple(refgrad.Value(x) for x in inputs)
    out = expression(*leaves)
    assert isinstance(out, refgrad.Value)
    return out.data, refgrad.grad(out, leaves)


def via_compat(expression: Callable[..., object], inputs: tuple[float, ...]) -> tuple[float, tuple[float, ...]]:
    """Evaluate with refgrad.micrograd's mutable Values; gradients read from .grad."""
    leaves = tuple(compat.Value(x) for x in inputs)
    out = expression(*leaves)
    assert isinstance(out, compat.Value)
    out.backward()
    return out.data, tuple(leaf.grad for leaf in leaves)


def via_torch(expression: Callable[..., object], inputs: tuple[float, ...]) -> tuple[float, tuple[float, ...]]:
    """Evaluate with PyTorch autograd on float64 scalars."""
    leaves = tuple(torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in inputs)
    out = expression(*leaves)
    assert isinstance(out, torch.Tensor)
    torch.autograd.backward(out)
    grads: list[float] = []
    for leaf in leaves:
        assert leaf.grad is not None
        grads.append(leaf.grad.item())
    return out.item(), tuple(grads)


@pytest.mark.parametrize("kit", [via_core, via_compat], ids=["core", "micrograd-compat"])
@pytest.mark.parametrize(
    ("expression", "inputs"),
    [
        (sanity_check, (-4.0,)),
        (more_ops, (-4.0, 2.0)),
        # The same expressions elsewhere, including relu's kink region and sign changes.
        (sanity_check, (0.75,)),
        (sanity_check, (-0.5,)),
        (more_ops, (1.5, -0.25)),
        (more_ops, (3.0, 3.0)),
    ],
    ids=["sanity", "more-ops", "sanity-positive", "sanity-small", "more-ops-mixed", "more-ops-equal"],
)
def test_matches_pytorch_float64(kit: Kit, expression: Callable[..., object], inputs: tuple[float, ...]) -> None:
    """Value and every input gradient agree with torch float64 to 1e-12 relative."""
    value, grads = kit(expression, inputs)
    expected_value, expected_grads = via_torch(expression, inputs)
    assert value == pytest.approx(expected_value, rel=1e-12)
    assert grads == pytest.approx(expected_grads, rel=1e-12, abs=1e-12)


def test_published_figures() -> None:
    """The sanity check's published figures, y = -20 and dy/dx = 46, hold on both surfaces."""
    assert via_core(sanity_check, (-4.0,)) == (-20.0, (46.0,))
    assert via_compat(sanity_check, (-4.0,)) == (-20.0, (46.0,))
