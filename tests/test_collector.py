"""refgrad.collector_paused: the cyclic collector off for a block, and as it was after it."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator

import pytest

import refgrad
from refgrad import Value
from refgrad.kernel import NodeT
from refgrad.micrograd.engine import Value as MicrogradValue


@pytest.fixture
def collector_on() -> Iterator[None]:
    """Start with the collector on, and leave it as the test found it."""
    was = gc.isenabled()
    gc.enable()
    try:
        yield
    finally:
        if not was:
            gc.disable()


@pytest.mark.usefixtures("collector_on")
def test_the_collector_is_off_inside_and_on_again_after() -> None:
    """Inside the block gc.isenabled() is false; after it, true again."""
    with refgrad.collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


@pytest.mark.usefixtures("collector_on")
def test_an_error_in_the_block_still_restores_the_collector() -> None:
    """The block's exception propagates and the collector is on again."""
    with pytest.raises(refgrad.DomainError), refgrad.collector_paused():
        Value(-1.0).log()
    assert gc.isenabled()


@pytest.mark.usefixtures("collector_on")
def test_nested_blocks_leave_the_collector_to_the_outermost() -> None:
    """An inner block's end does not turn the collector back on inside the outer block."""
    with refgrad.collector_paused():
        with refgrad.collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    """Entered with the collector already disabled, the block leaves it disabled."""
    was = gc.isenabled()
    gc.disable()
    try:
        with refgrad.collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        if was:
            gc.enable()


def _freed_without_collector(x: NodeT, backward: Callable[[NodeT], object]) -> None:
    """20 graphs of 1,000 nodes on ``x``, built, differentiated and dropped inside the block, leave nothing behind."""
    with refgrad.collector_paused():
        assert not gc.isenabled()
        before = len(gc.get_objects(generation=0))
        for _ in range(20):
            y = x
            for _ in range(500):
                y = (y * 1.0001 + x).relu()
            backward(y)
            del y
        after = len(gc.get_objects(generation=0))
    # 40,000 nodes went through the young generation; a leak would leave thousands.
    assert after - before < 100, f"{after - before} objects left in the young generation"


@pytest.mark.usefixtures("collector_on")
def test_refgrad_nodes_are_freed_without_the_collector() -> None:
    """refgrad.Value graphs are freed by reference counting alone."""
    _freed_without_collector(Value(0.5), Value.backward)


@pytest.mark.usefixtures("collector_on")
def test_micrograd_surface_nodes_are_freed_without_the_collector() -> None:
    """The mutable micrograd surface's graphs (backward writes .grad) are freed by reference counting alone."""
    _freed_without_collector(MicrogradValue(0.5), MicrogradValue.backward)
