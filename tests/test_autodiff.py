"""Reverse mode, forward mode and higher order: results, accumulation, errors, deep graphs."""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Mapping

import pytest
import torch
from _coverage_repeats import coverage_paused
from hypothesis import given
from hypothesis import strategies as st

from refgrad import DomainError, Gradients, Value, grad, hessian, jvp, nodes
from refgrad.cli import seed_example

small_floats = st.floats(min_value=-10.0, max_value=10.0, allow_nan=False, allow_infinity=False)


def _torch_seed_example() -> tuple[float, float, float]:
    a = torch.tensor(-4.0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    c = a + b
    d = a * b + b**3
    c = c + c + 1
    c = c + 1 + c + (-a)
    d = d + d * 2 + (b + a).relu()
    d = d + 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g = g + 10.0 / f
    torch.autograd.backward(g)
    assert a.grad is not None
    assert b.grad is not None
    return g.item(), a.grad.item(), b.grad.item()


def test_seed_example_matches_pytorch_and_prints_the_published_numbers() -> None:
    """micrograd's README expression: 24.7041, 138.8338, 645.5773, equal to torch float64."""
    a, b, g = seed_example()
    grads = g.backward()
    expected = _torch_seed_example()
    assert (g.data, grads[a], grads[b]) == pytest.approx(expected, rel=1e-13)
    assert (f"{g.data:.4f}", f"{grads[a]:.4f}", f"{grads[b]:.4f}") == ("24.7041", "138.8338", "645.5773")
    assert grad(g, (a, b)) == (grads[a], grads[b])


def test_backward_writes_nothing_and_returns_an_immutable_mapping() -> None:
    """backward() returns a read-only Mapping; the nodes are untouched."""
    x = Value(3.0)
    y = x * x
    grads = y.backward()
    assert isinstance(grads, Mapping)
    assert isinstance(grads, Gradients)
    assert grads[x] == 6.0
    assert grads[y] == 1.0
    with pytest.raises(TypeError):
        grads[x] = 1.0  # type: ignore[index]  # deliberately unsupported
    with pytest.raises(AttributeError):
        grads.__setattr__("_grads", {})  # what `grads._grads = {}` calls
    assert not hasattr(x, "grad")


def test_gradients_cover_exactly_the_nodes_the_output_depends_on() -> None:
    """Keys are the output's ancestors (and itself); other nodes look up as 0.0 without being keys."""
    x, unrelated = Value(2.0), Value(5.0)
    k = Value(3.0)
    y = x * k + 1
    grads = y.backward()
    assert set(grads) == {x, k, y, *y.inputs, *y.inputs[0].inputs}
    assert len(grads) == 5
    assert unrelated not in grads
    assert grads[unrelated] == 0.0
    wrong_key: object = "x"
    assert wrong_key not in grads
    with pytest.raises(TypeError, match="Value"):
        grads["x"]  # type: ignore[index]  # deliberately wrong key


def test_gradients_can_be_built_from_a_mapping_and_validate_it() -> None:
    """Gradients(mapping) copies and checks its input."""
    x = Value(1.0)
    assert Gradients({x: 2})[x] == 2.0
    with pytest.raises(TypeError):
        Gradients({"x": 1.0})  # type: ignore[dict-item]  # deliberately wrong key
    with pytest.raises(ValueError, match="finite"):
        Gradients({x: math.nan})
    assert "Gradients" in repr(Gradients({x: 2.0}))


def test_grad_aligns_with_inputs_like_torch_autograd_grad() -> None:
    """grad() returns a tuple aligned with inputs: repeated inputs repeat, unused ones are 0.0."""
    x, y, unused = Value(2.0), Value(-1.0), Value(7.0)
    z = x * y + x
    assert grad(z, (x, y, unused, x)) == (y.data + 1.0, x.data, 0.0, y.data + 1.0)
    assert grad(z, x) == (y.data + 1.0,)
    assert grad(z, [y]) == (2.0,)
    with pytest.raises(TypeError, match="output"):
        grad(1.0, (x,))  # type: ignore[call-overload]  # deliberately wrong input
    with pytest.raises(TypeError, match=r"inputs\[1\]"):
        grad(z, (x, 2.0))  # type: ignore[arg-type]  # deliberately wrong input
    with pytest.raises(TypeError, match="create_graph"):
        grad(z, (x,), create_graph=1)  # type: ignore[call-overload]  # deliberately wrong input


@given(small_floats, small_floats)
def test_shared_subexpressions_and_repeated_operands_accumulate(a: float, b: float) -> None:
    """Every path contributes: d/dx of (x*x + x*y) * (x*x) matches the hand-derived formula."""
    x, y = Value(a), Value(b)
    square = x * x
    z = (square + x * y) * square
    dx, dy = grad(z, (x, y))
    assert dx == pytest.approx(4 * a**3 + 3 * a**2 * b, rel=1e-12, abs=1e-12)
    assert dy == pytest.approx(a**3, rel=1e-12, abs=1e-12)


@given(st.lists(small_floats, min_size=1, max_size=20), st.lists(small_floats, min_size=1, max_size=20))
def test_linear_combination_gradients_are_the_coefficients(coefficients: list[float], values: list[float]) -> None:
    """d/dx_i of sum c_i x_i is exactly c_i (one product each, then sums of ones)."""
    xs = [Value(v) for v in values]
    total = Value(0.0)
    for c, x in zip(coefficients, xs, strict=False):
        total = total + c * x
    used = min(len(coefficients), len(xs))
    assert grad(total, xs[:used]) == tuple(coefficients[:used])


@given(small_floats, small_floats)
def test_backward_twice_gives_identical_results(a: float, b: float) -> None:
    """Differentiation reads the graph only, so repeating it is bitwise identical."""
    x, y = Value(a), Value(b)
    z = (x * y).tanh() + (x - y) * (x + 2.0)
    first = dict(z.backward())
    second = dict(z.backward())
    assert first == second


def test_backward_raises_domain_error_when_a_gradient_is_infinite() -> None:
    """x ** 0.5 at 0 is fine forward, but its derivative is infinite: backward names the op."""
    x = Value(0.0)
    root = x**0.5
    assert root.data == 0.0
    with pytest.raises(DomainError, match=r"pow\(0\.0, exponent=0\.5\)"):
        root.backward()
    with pytest.raises(DomainError):
        grad(root, x)
    with pytest.raises(DomainError):
        grad(root, x, create_graph=True)
    with pytest.raises(DomainError):
        jvp(root, x, 1.0)


def test_backward_raises_domain_error_when_gradients_overflow() -> None:
    """Finite partials whose product overflows still give DomainError, naming an op, not inf."""
    big = Value(1e200)
    z = (big * 1e-200) * 1e300  # value 1e300, d/dbig = 1e100: finite
    # The constant 1e-200's own gradient (1e300 * 1e200) overflows: grad() asked only for
    # big, so it answers; backward() maps every node, so it must refuse.
    assert grad(z, big) == pytest.approx((1e100,), rel=1e-12)
    with pytest.raises(DomainError, match=r"mul\(1e\+200, 1e-200\)"):
        z.backward()
    w = Value(1e-300)
    q = (w * 1e300) * 1e300  # q = 1e300 is finite, dq/dw = 1e600 is not
    with pytest.raises(DomainError, match="not finite"):
        q.backward()


@pytest.mark.slow
def test_chain_of_a_million_ops_differentiates_reprs_and_deletes() -> None:
    """No recursion anywhere: a 10^6-deep chain builds, differentiates, prints and is freed."""
    depth = 1_000_000
    x = Value(0.5)
    step = Value(1e-6)
    y = x
    # Unmeasured: a million additions and their backward pass repeat the lines and branches that
    # short chains measure (tests/_coverage_repeats.py; `nox -s coverage_repeats` checks it).
    with coverage_paused():
        for _ in range(depth):
            y = y + step
        dx, dstep = grad(y, (x, step))
    assert y.data == pytest.approx(0.5 + 1.0, rel=1e-9)
    assert dx == 1.0
    assert dstep == float(depth)
    assert repr(y) == f"Value(data={y.data!r}, op='add')"
    del y
    gc.collect()


@pytest.mark.slow
def test_deep_chain_forward_mode_and_create_graph() -> None:
    """jvp and create_graph work on a deep chain without recursion."""
    x = Value(0.3)
    y = x
    with coverage_paused():  # as in the test above: the repeats of short chains' lines, unmeasured
        for _ in range(100_000):
            y = y * 1.0 + 0.0
        tangent = jvp(y, x, 2.0)
        (dy,) = grad(y, x, create_graph=True)
    assert tangent == 2.0
    assert isinstance(dy, Value)
    assert dy.data == 1.0


def _torch_function(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x * y).tanh() * x.exp() + (x / (1 + y * y)).log() * y.sigmoid() + x**3 * y


def _refgrad_function(x: Value, y: Value) -> Value:
    return (x * y).tanh() * x.exp() + (x / (1 + y * y)).log() * y.sigmoid() + x**3 * y


@given(
    st.floats(min_value=0.1, max_value=2.0, allow_nan=False),
    st.floats(min_value=-2.0, max_value=2.0, allow_nan=False),
)
def test_second_and_third_derivatives_match_pytorch(a: float, b: float) -> None:
    """create_graph=True gradients differentiate again: 2nd and 3rd order equal torch to 1e-9."""
    x, y = Value(a), Value(b)
    f = _refgrad_function(x, y)
    fx, fy = grad(f, (x, y), create_graph=True)
    fxx, fxy = grad(fx, (x, y), create_graph=True)
    (fxxx,) = grad(fxx, (x,))

    tx = torch.tensor(a, dtype=torch.float64, requires_grad=True)
    ty = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    tf = _torch_function(tx, ty)
    tfx, tfy = torch.autograd.grad(tf, (tx, ty), create_graph=True)
    tfxx, tfxy = torch.autograd.grad(tfx, (tx, ty), create_graph=True)
    (tfxxx,) = torch.autograd.grad(tfxx, (tx,))

    got = (fx.data, fy.data, fxx.data, fxy.data, fxxx)
    want = (tfx.item(), tfy.item(), tfxx.item(), tfxy.item(), tfxxx.item())
    assert got == pytest.approx(want, rel=1e-9, abs=1e-12)


@given(
    st.floats(min_value=0.1, max_value=2.0, allow_nan=False),
    st.floats(min_value=-2.0, max_value=2.0, allow_nan=False),
)
def test_hessian_matches_pytorch(a: float, b: float) -> None:
    """hessian() equals torch's (autograd.grad of autograd.grad, create_graph=True) in float64."""
    x, y = Value(a), Value(b)
    h = hessian(_refgrad_function(x, y), (x, y))

    t = torch.tensor([a, b], dtype=torch.float64, requires_grad=True)
    (first,) = torch.autograd.grad(_torch_function(t[0], t[1]), (t,), create_graph=True)
    for i in range(2):
        (row,) = torch.autograd.grad(first[i], (t,), retain_graph=True)
        assert h[i] == pytest.approx((row[0].item(), row[1].item()), rel=1e-9, abs=1e-12)


@given(small_floats, small_floats, small_floats, small_floats)
def test_forward_mode_agrees_with_reverse_mode(a: float, b: float, ta: float, tb: float) -> None:
    """jvp along t equals <grad, t>: forward and reverse mode read the same rules."""
    x, y = Value(a), Value(b)
    f = (x * y).tanh() + (x - y).relu() * x + abs(y) * 2.0
    gx, gy = grad(f, (x, y))
    assert jvp(f, (x, y), (ta, tb)) == pytest.approx(gx * ta + gy * tb, rel=1e-12, abs=1e-12)


def test_jvp_validates_its_arguments() -> None:
    """jvp needs one finite tangent per input."""
    x = Value(1.0)
    with pytest.raises(ValueError, match="one tangent per input"):
        jvp(x * x, (x,), (1.0, 2.0))
    with pytest.raises(ValueError, match="finite"):
        jvp(x * x, (x,), (math.nan,))
    with pytest.raises(TypeError, match="output"):
        jvp(2.0, (x,), (1.0,))  # type: ignore[arg-type]  # deliberately wrong input


def test_nodes_lists_ancestors_in_creation_order() -> None:
    """nodes() returns each ancestor once, operands before their users, output last."""
    x = Value(2.0)
    y = x * x
    z = y + x
    order = nodes(z)
    assert order[-1] is z
    assert set(order) == {x, y, z, z.inputs[1]} == {x, y, z}
    assert len(order) == 3
    assert order.index(x) < order.index(y) < order.index(z)
    with pytest.raises(TypeError, match="output"):
        nodes(1.0)  # type: ignore[arg-type]  # deliberately wrong input


def _chain(x: Value, length: int) -> Value:
    y = x
    for step in range(length):
        y = (y * 0.999).tanh() + 0.001 if step % 2 else (y * y + 1.0).log() * 0.5
    return y


@pytest.mark.slow
def test_create_graph_on_a_100k_chain_is_linear_in_size() -> None:
    """The gradient graph of a chain is built without recursion and grows linearly with it."""
    sizes: dict[int, tuple[int, int]] = {}
    for length in (50_000, 100_000):
        x = Value(0.3)
        with coverage_paused():  # long chains repeat short chains' lines and branches (see above)
            y = _chain(x, length)
            (dx,) = grad(y, x, create_graph=True)
            (dxx,) = grad(dx, x)
            sizes[length] = (len(nodes(y)), len(nodes(dx)))
        assert math.isfinite(dxx)
    first_small, second_small = sizes[50_000]
    first_large, second_large = sizes[100_000]
    assert first_large == pytest.approx(2 * first_small, rel=1e-3)
    assert second_large == pytest.approx(2 * second_small, rel=1e-3)
    assert second_large < 6 * first_large  # a constant factor, not a product


SECOND_ORDER_AT_KINKS: dict[str, tuple[Callable[[Value], Value], Callable[[torch.Tensor], torch.Tensor]]] = {
    "square": (lambda x: x**2, lambda t: t**2),
    "cube": (lambda x: x**3, lambda t: t**3),
    "relu-times-x": (lambda x: x.relu() * x, lambda t: t.relu() * t),
    "abs-times-x": (lambda x: abs(x) * x, lambda t: t.abs() * t),
    "x-to-the-zero": (lambda x: x**0 * x, lambda t: t**0 * t),
    "pow-of-x": (lambda x: x**x, lambda t: t**t),
}


def _first_and_second(build: Callable[[Value], Value], at: float) -> tuple[float, float]:
    x = Value(at)
    (first,) = grad(build(x), x, create_graph=True)
    (second,) = grad(first, x)
    return first.data, second


@pytest.mark.parametrize("case", list(SECOND_ORDER_AT_KINKS))
@pytest.mark.parametrize("at", [0.0, 1.0, -1.0])
def test_second_derivatives_at_kinks_follow_pytorch(case: str, at: float) -> None:
    """At kinks and zeros, first and second derivatives use PyTorch's conventions."""
    build, torch_build = SECOND_ORDER_AT_KINKS[case]
    t = torch.tensor(at, dtype=torch.float64, requires_grad=True)
    tout = torch_build(t)
    (tfirst,) = torch.autograd.grad(tout, (t,), create_graph=True)
    (tsecond,) = torch.autograd.grad(tfirst, (t,))
    expected_first = tfirst.item()
    expected_second = tsecond.item()
    if (case, at) == ("pow-of-x", 0.0):
        # The one documented deviation: at x = y = 0 both first partials of x ** y are 0 by
        # PyTorch's convention, a constant, so refgrad's second derivative is 0. PyTorch gives
        # NaN because it also differentiates the branch its torch.where discarded (0 ** -1).
        assert math.isnan(expected_second)
        expected_second = 0.0
    if not all(map(math.isfinite, (tout.item(), expected_first, expected_second))):
        with pytest.raises(DomainError):
            _first_and_second(build, at)
        return
    got = _first_and_second(build, at)
    assert got == pytest.approx((expected_first, expected_second), rel=1e-12, abs=1e-12)
