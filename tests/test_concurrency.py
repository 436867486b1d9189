"""One immutable graph, many threads differentiating it at once: every thread gets the single-thread bits.

Nodes never change after they are made, differentiation writes nothing into them, and a new node's
place in creation order comes from one atomic counter, so nothing is shared that a thread could
spoil for another. The test runs ``backward``, ``grad`` (with and without ``create_graph``),
``jvp`` and ``hessian`` on a shared graph from a pool of threads, with the interpreter switching
threads as often as it can, and compares every float's bit pattern with a single-threaded run.

The micrograd surface is another matter: its nodes are mutable like micrograd's (and like
PyTorch's ``.grad``), so concurrent ``backward()`` calls on graphs that share nodes race on their
``grad``; nothing here claims otherwise.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from refgrad import Value, grad, hessian, jvp
from refgrad.nn import MLP

THREADS = 8
TASKS = 48


def _shared_graph() -> tuple[tuple[Value, ...], tuple[Value, ...], Value]:
    """An MLP's loss on three inputs, through every kind of op: (inputs, parameters, loss)."""
    model = MLP.init(3, [6, 6, 1], rng=2026)
    inputs = (Value(0.5, label="a"), Value(-1.25, label="b"), Value(2.0, label="c"))
    (score,) = model(inputs)
    a, b, c = inputs
    extra = (a * b).tanh() + (c**2.5).log() - (b / c).sigmoid() + abs(a - c).exp() * (c ** (a + 1.0))
    loss = (score - 1.0) ** 2 + extra.relu() + 0.5 * extra
    return inputs, model.parameters(), loss


def _bits(values: Iterator[float]) -> tuple[str, ...]:
    """Each float's exact bit pattern (``float.hex`` keeps the sign of zero too)."""
    return tuple(value.hex() for value in values)


def _everything(inputs: tuple[Value, ...], parameters: tuple[Value, ...], loss: Value) -> tuple[tuple[str, ...], ...]:
    """Every differentiation refgrad offers, on the shared graph, as bit patterns."""
    gradients = loss.backward()
    first_order = grad(loss, (*inputs, *parameters))
    graph_gradients = grad(loss, inputs, create_graph=True)
    second_order = [grad(g, inputs) for g in graph_gradients]
    directional = jvp(loss, inputs, (1.0, -0.5, 0.25))
    curvature = hessian(loss, inputs)
    return (
        _bits(gradients[node] for node in (*inputs, *parameters, loss)),
        _bits(iter(first_order)),
        _bits(g.data for g in graph_gradients),
        _bits(value for row in second_order for value in row),
        _bits(iter([directional])),
        _bits(value for row in curvature for value in row),
    )


@pytest.fixture
def switch_often() -> Iterator[None]:
    """Make the interpreter switch threads every microsecond, so that any race has its chance."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@pytest.mark.usefixtures("switch_often")
def test_threads_differentiating_one_graph_get_the_single_thread_bits() -> None:
    """48 tasks on 8 threads, each running backward, grad, grad(create_graph), jvp and hessian: bitwise equal."""
    inputs, parameters, loss = _shared_graph()
    expected = _everything(inputs, parameters, loss)
    assert len(expected[0]) == len(inputs) + len(parameters) + 1

    def task(_: int) -> tuple[tuple[str, ...], ...]:
        return _everything(inputs, parameters, loss)

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = list(pool.map(task, range(TASKS)))
    assert len(results) == TASKS
    for result in results:
        assert result == expected


@pytest.mark.usefixtures("switch_often")
def test_threads_building_on_one_graph_get_the_single_thread_bits() -> None:
    """Threads that each extend the shared graph (new nodes on shared ones) and differentiate their extension agree."""
    inputs, _, loss = _shared_graph()

    def extend(task: int) -> tuple[str, ...]:
        scale = float(task % 4 + 1)
        extended = (loss * scale).tanh() + inputs[0] * scale
        return (*_bits(iter(grad(extended, inputs))), extended.data.hex())

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = list(pool.map(extend, range(TASKS)))
    for task, result in enumerate(results):
        assert result == extend(task)
