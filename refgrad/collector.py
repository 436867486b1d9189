"""An opt-in pause of Python's cyclic garbage collector for large graphs.

refgrad's nodes can never form a reference cycle: a node refers only to nodes
made before it, its registry entry, its parameters and its label. Reference
counting frees every one of them the moment it is no longer used, so the cyclic
collector never has anything to find among them. CPython still scans them: it
collects its youngest generation every 700 new container objects, and each
collection walks every young object, so building a 65,000-node graph runs the
collector about a hundred times, and a full collection walks the whole live
graph (a fifth of a training step of micrograd's demo, docs/performance.md).

:func:`collector_paused` turns the collector off for a block and back on after
it. Nothing else changes: nodes are freed as before, and so is everything else
without cycles. It is opt-in because the collector is the interpreter's, shared
by every thread and library in the process: inside the block, cycles that *other*
code makes (refgrad's own code makes none) wait until the block ends, when the
collector runs again as usual. micrograd's graphs, by contrast, are cyclic (each
node's ``_backward`` closure refers to the node), so pausing the collector there
leaks every graph until it resumes.
"""

from __future__ import annotations

import gc
from collections.abc import Generator
from contextlib import contextmanager

__all__ = ["collector_paused"]


@contextmanager
def collector_paused() -> Generator[None]:
    """Pause Python's cyclic garbage collector while the block runs (``gc.disable()``), then restore it.

    For loops that build and drop large graphs::

        with refgrad.collector_paused():
            for step in range(100):
                loss = model_loss(parameters)
                grads = loss.backward()
                parameters = [p - rate * grads[p] for p in parameters]

    The collector's state before the block is restored at its end, whatever
    the block raised; nested blocks, and blocks entered with the collector
    already off, leave it as they found it. The collector is one per process:
    a thread that enables it inside the block enables it for everyone.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
