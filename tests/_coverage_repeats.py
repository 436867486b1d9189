"""Coverage paused where a test repeats code other tests measure: the 100-step trainings, the longest chains.

Branch coverage (``nox -s tests``) runs refgrad's hot loops about three times slower, and six
100-step trainings of micrograd's demo MLP (refgrad's immutable API, its micrograd surface, the
same twice on docs/nn.md, the ``train`` command, and micrograd 0.1.0 itself) took half of the
session's time under it. Each step of a training runs the lines and branches the first step ran,
and shorter trainings elsewhere run them too, so these runs are made with coverage paused (in
this process, or, for a child process, by not starting it there). Nothing they check changes:
they run the same code and assert the same things, only unmeasured. The chains of 10^5 and 10^6
steps that show differentiation needs no recursion (tests/test_autodiff.py) are the same case:
each step runs the lines short chains run.

That they add no line or branch is checked, not assumed: ``nox -s coverage_repeats`` runs the
suite twice, once with ``REFGRAD_COVERAGE_OF_REPEATS=1`` (nothing paused) and once as
``nox -s tests`` does, and ``tests/coverage_repeats.py`` fails, naming the lines and branches,
if the second measured less of refgrad/ than the first.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator
from contextlib import contextmanager

__all__ = ["EVERYTHING", "child_environment", "coverage_paused"]

EVERYTHING = "REFGRAD_COVERAGE_OF_REPEATS"
"""Set to 1 to measure the repeats too (the reference run of ``nox -s coverage_repeats``)."""

# The variable coverage's subprocess patch (pyproject.toml: patch = ["subprocess"]) sets so that a
# child Python process measures itself.
_CHILD_START = "COVERAGE_PROCESS_CONFIG"


def _pausing() -> bool:
    return os.environ.get(EVERYTHING) != "1"


@contextmanager
def coverage_paused() -> Generator[None]:
    """No line tracing in this thread for the block, when coverage is what traces it.

    The trace function itself is set aside and put back: under pytest-xdist with coverage's
    subprocess patch a worker runs two ``Coverage`` objects, and stopping the one pytest-cov
    started would resume the other. Frames already running keep their own tracing; what the
    block calls is not traced.
    """
    tracer = sys.gettrace()
    if tracer is None or not _pausing() or not type(tracer).__module__.startswith("coverage"):
        yield
        return
    sys.settrace(None)
    try:
        yield
    finally:
        sys.settrace(tracer)


def child_environment() -> dict[str, str]:
    """This process's environment, less what would make a child Python process measure itself."""
    environment = dict(os.environ)
    if _pausing():
        environment.pop(_CHILD_START, None)
    return environment
