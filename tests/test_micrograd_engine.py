"""The drop-in surface refgrad.micrograd.engine.Value against micrograd 0.1.0 itself."""

from __future__ import annotations

import contextlib
import gc
import io
import math
import random
import textwrap

import micrograd.engine
import pytest
import torch

from refgrad import DomainError, registry
from refgrad.micrograd.engine import Value

README_EXAMPLE = textwrap.dedent(
    """
    from micrograd.engine import Value

    a = Value(-4.0)
    b = Value(2.0)
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    print(f'{g.data:.4f}') # prints 24.7041, the outcome of this forward pass
    g.backward()
    print(f'{a.grad:.4f}') # prints 138.8338, i.e. the numerical value of dg/da
    print(f'{b.grad:.4f}') # prints 645.5773, i.e. the numerical value of dg/db
    """
)


def _run(source: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "<readme>", "exec"), {})  # our own fixed example
    return out.getvalue()


def test_readme_example_runs_verbatim_with_only_the_import_changed() -> None:
    """micrograd's README prints the same three lines on micrograd 0.1.0 and on refgrad.micrograd."""
    original = _run(README_EXAMPLE)
    ported = _run(README_EXAMPLE.replace("from micrograd.engine", "from refgrad.micrograd.engine"))
    assert ported == original
    assert ported.split() == ["24.7041", "138.8338", "645.5773"]


def _random_expression(module: object, seed: int) -> tuple[float, list[float]]:
    """A random micrograd-only expression (the ops micrograd 0.1.0 has), evaluated with module.Value."""
    make = getattr(module, "Value")  # noqa: B009  # either Value class, same duck type
    rng = random.Random(seed)
    leaves = [make(rng.uniform(-2.0, 2.0)) for _ in range(4)]
    nodes = list(leaves)
    for _ in range(25):
        x, y = rng.choice(nodes), rng.choice(nodes)
        kind = rng.randrange(8)
        if kind == 0:
            node = x + y
        elif kind == 1:
            node = x * y
        elif kind == 2:
            node = x - y
        elif kind == 3:
            node = x.relu()
        elif kind == 4:
            node = x * rng.uniform(-1.5, 1.5) + rng.uniform(-1.0, 1.0)
        elif kind == 5:
            node = x**2
        elif kind == 6:
            node = -x
        else:
            node = (x * x + 1.0) ** -1 * y  # division-free reciprocal, as micrograd writes it
        nodes.append(node)
    out = nodes[-1] + nodes[-2] * nodes[-3]
    out.backward()
    return out.data, [leaf.grad for leaf in leaves]


@pytest.mark.parametrize("seed", range(40))
def test_random_expressions_match_micrograd(seed: int) -> None:
    """Values and leaf gradients equal micrograd 0.1.0's on random expressions (1e-12 relative)."""
    ours = _random_expression(__import__("refgrad.micrograd.engine", fromlist=["Value"]), seed)
    theirs = _random_expression(micrograd.engine, seed)
    assert ours[0] == pytest.approx(theirs[0], rel=1e-12, abs=1e-12)
    assert ours[1] == pytest.approx(theirs[1], rel=1e-12, abs=1e-12)


def test_api_matches_micrograd() -> None:
    """data and grad are mutable floats, repr, _prev and _op look like micrograd's."""
    a, b = Value(2.0), Value(-3.0)
    c = a * b
    assert repr(c) == "Value(data=-6.0, grad=0.0)"
    assert c._prev == {a, b}
    assert c._op == "*"
    assert (a + b)._op == "+"
    assert a.relu()._op == "ReLU"
    assert (a**2)._op == "**2"
    assert a._op == ""
    c.backward()
    assert (a.grad, b.grad, c.grad) == (-3.0, 2.0, 1.0)
    a.data -= 0.5 * a.grad
    assert a.data == 3.5
    square = a * a
    assert square.inputs == (a, a)
    assert square._prev == {a}


def test_extra_ops_come_from_the_registry() -> None:
    """exp, log, tanh, sigmoid, abs and Value ** Value exist and use the registry's entries."""
    x, y = Value(0.5), Value(1.5)
    built = {
        "exp": x.exp(),
        "log": x.log(),
        "tanh": x.tanh(),
        "sigmoid": x.sigmoid(),
        "abs": x.abs(),
        "vpow": x**y,
        "div": x / y,
    }
    for name, node in built.items():
        assert node.op is registry[name]
        assert node.data == registry[name].forward(*(i.data for i in node.inputs))
    z = (x**y).tanh() * x.sigmoid() + x.log()
    z.backward()
    tx = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    ty = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    tz = (tx**ty).tanh() * tx.sigmoid() + tx.log()
    torch.autograd.backward(tz)
    assert tx.grad is not None
    assert ty.grad is not None
    assert (x.grad, y.grad) == pytest.approx((tx.grad.item(), ty.grad.item()), rel=1e-12)


def test_second_backward_accumulates_like_pytorch() -> None:
    """A second backward adds the same gradients again, as torch does with retain_graph."""
    a = Value(1.5)
    c = (a * 3.0).tanh() * a
    c.backward()
    once = a.grad
    c.backward()
    ta = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    tc = (ta * 3.0).tanh() * ta
    torch.autograd.backward(tc, retain_graph=True)
    torch.autograd.backward(tc)
    assert ta.grad is not None
    assert a.grad == pytest.approx(ta.grad.item(), rel=1e-12)
    assert a.grad == pytest.approx(2 * once, rel=1e-15)


def test_domain_errors_instead_of_nan() -> None:
    """Where micrograd would produce inf or NaN, the surface raises DomainError naming the op."""
    with pytest.raises(DomainError, match="div"):
        _ = Value(1.0) / 0
    with pytest.raises(DomainError, match="log"):
        Value(-1.0).log()
    with pytest.raises(DomainError, match="pow"):
        _ = Value(0.0) ** -1
    root = Value(0.0) ** 0.5
    with pytest.raises(DomainError, match="pow"):
        root.backward()
    # Finite values and partials whose product overflows on the way back: 1e200 * 1e200 reaches x.
    x = Value(1e-300)
    with pytest.raises(DomainError, match="mul"):
        ((x * 1e200) * 1e200).backward()
    assert x.grad == 0.0  # nothing written: the pass fails before filling .grad


def test_bad_inputs_raise_type_and_value_errors() -> None:
    """Non-numbers and non-finite numbers are refused with clear errors."""
    with pytest.raises(TypeError):
        Value("1")  # type: ignore[arg-type]  # deliberately wrong input
    with pytest.raises(TypeError):
        Value(True)
    with pytest.raises(ValueError, match="finite"):
        Value(math.nan)
    with pytest.raises(TypeError):
        _ = Value(1.0) + "x"  # type: ignore[operator]  # deliberately wrong input
    with pytest.raises(TypeError, match="operators"):
        Value(1.0, (Value(2.0),), "+")


def test_graphs_make_no_reference_cycles() -> None:
    """Dropping the last reference frees a whole graph by reference counting: the collector finds nothing."""
    gc.collect()
    gc.disable()
    try:
        x = Value(0.5)
        y = x
        for _ in range(1000):
            y = (y * 0.9 + x).tanh()
        y.backward()
        del x, y
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_writes_are_checked() -> None:
    """data and grad take finite real numbers only; structure attributes are not writable."""
    a = Value(1.0)
    with pytest.raises(TypeError, match=r"Value\.data"):
        a.data = "2"  # type: ignore[assignment]  # deliberately wrong input
    with pytest.raises(ValueError, match=r"Value\.grad"):
        a.grad = math.inf
    with pytest.raises(AttributeError, match="op"):
        a.op = None  # type: ignore[misc]  # read-only, deliberately written
    with pytest.raises(AttributeError):
        a.anything = 1  # deliberately unsupported
    with pytest.raises(AttributeError):
        del a.data  # pyright: ignore[reportAttributeAccessIssue]  # deliberately refused
    a.label = "a"
    a.grad = 0
    assert (a.data, a.grad, a.label) == (1.0, 0.0, "a")
    assert type(a.grad) is float


def test_int_data_assigned_by_users_still_works() -> None:
    """micrograd code may assign ints to .data; the forward and backward still work."""
    a = Value(1.0)
    a.data = 3
    b = (a * a).relu() + a
    b.backward()
    assert b.data == 12.0
    assert a.grad == 7.0
