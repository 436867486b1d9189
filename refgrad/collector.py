"""An opt-in pause of Python's cyclic garbage collector for large graphs.

refgrad makes no reference cycles: a node refers only to nodes made before it,
its registry entry, its parameters and its label, and differentiation keeps its
bookkeeping in dicts it returns. Reference counting frees every node the moment
it is no longer used, so the cyclic collector has nothing to find among them.
CPython still scans them: it collects its youngest generation every 700 new
container objects, walking each young object, and now and then the whole live
graph, so building the 65,000-node graph of a training step of micrograd's demo
runs it about a hundred times, a fifth of the step (docs/performance.md).

:func:`collector_paused` turns the collector off for a block and back on after
it. Nothing else changes: nodes are freed as before, and so is everything else
without cycles. It is opt-in because the collector is the interpreter's, shared
by every thread and library in the process: inside the block, cycles that other
code makes wait until the block ends, when the collector runs again as usual.
That includes cycles made through refgrad's objects by your own code: a label
that is a ``str`` subclass holding the node, an op of your own whose forward
keeps the nodes it made, attributes of a node subclass without ``__slots__``.
micrograd 0.1.0's graphs (Karpathy's package, not :mod:`refgrad.micrograd`) are
cyclic by construction, since each node's ``_backward`` closure refers to the
node, so pausing the collector there would keep every graph until it resumes.
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
    the block raised; blocks nested in one thread, and blocks entered with the
    collector already off, leave it as they found it. The collector is one per
    process: blocks in different threads that overlap do not nest (the first to
    end turns the collector back on for all), and a thread that enables it
    inside a block enables it for everyone.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
