"""The garbage collector paused around a test's long training loop (tests only; refgrad leaves it alone)."""

from __future__ import annotations

import gc
from collections.abc import Generator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Generator[None]:
    """Automatic garbage collection off, and the objects that exist now frozen out of later collections.

    micrograd 0.1.0 builds a reference cycle per node (each node's ``_backward`` closure refers to
    the node), so a training step leaves tens of thousands of objects that only the collector
    frees, and its automatic passes take about 90% of micrograd's time in the notebook's loop. With
    them paused, the loop frees each step's graph itself (``release_micrograd_graph``) and then
    collects once: the same arithmetic, a sixth of the time. refgrad's graphs have no cycles, so
    reference counting frees each of its steps' graphs as it goes, and the collector's passes over
    the live graph are a third of its training step (docs/performance.md); paused, its loop computes
    the same numbers in two thirds of the time. The frozen objects stay frozen (as tests/conftest.py
    leaves the session's own): collections only ever walk what the tests create.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    gc.freeze()  # the test session's own objects: a per-step collection need not walk them
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
