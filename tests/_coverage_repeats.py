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

Beyond those, the tests whose whole run repeats what other tests measure are listed in
``tests/coverage_repeats.txt``, and their call phase runs paused (their setup and teardown stay
measured, and so do threads they start). The list is computed, not picked: ``nox -s
coverage_repeats -- write`` records the suite with a coverage context per test and phase (a child
process of a test records under that test's name), and ``tests/coverage_repeats.py choose``
leaves out, slowest first, each test whose every line and branch is still measured by a context
that stays. Code that runs once per process (module bodies, ``functools.cache``) would be measured
only by whichever test happens to run it first on a worker: the tests session runs it first, in
a measured fixture (``tests/conftest.py``), so that no listed test can be the one.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import sys
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path

from typeguard_repeats import read_list

__all__ = [
    "EVERYTHING",
    "RECORD",
    "REPEATS",
    "child_environment",
    "children_in_context",
    "children_unmeasured",
    "coverage_paused",
    "listed_repeats",
    "measuring",
]

EVERYTHING = "REFGRAD_COVERAGE_OF_REPEATS"
"""Set to 1 to measure the repeats too (the reference run of ``nox -s coverage_repeats``)."""

# The variable coverage's subprocess patch (pyproject.toml: patch = ["subprocess"]) sets so that a
# child Python process measures itself.
_CHILD_START = "COVERAGE_PROCESS_CONFIG"


RECORD = "REFGRAD_COVERAGE_RECORD"
"""A folder: the recording run (``nox -s coverage_repeats -- write``) writes each test's seconds there.

That run pauses what the tests pause themselves, not the listed repeats: what it records per
test is what that test measures when it is not listed."""

REPEATS = Path(__file__).with_name("coverage_repeats.txt")
"""The tests whose call phase runs with coverage paused (written by ``tests/coverage_repeats.py choose``)."""


def _pausing() -> bool:
    return os.environ.get(EVERYTHING) != "1"


def measuring() -> bool:
    """Whether coverage traces this thread now."""
    tracer = sys.gettrace()
    return tracer is not None and type(tracer).__module__.startswith("coverage")


def listed_repeats(path: Path = REPEATS) -> frozenset[str]:
    """The pytest node ids ``path`` lists, in the typeguard repeats list's format (``read_list``)."""
    return frozenset(read_list(path)) if path.is_file() else frozenset()


@contextmanager
def coverage_paused() -> Generator[None]:
    """No line tracing in this thread for the block, when coverage is what traces it.

    The trace function itself is set aside and put back: under pytest-xdist with coverage's
    subprocess patch a worker runs two ``Coverage`` objects, and stopping the one pytest-cov
    started would resume the other. Frames already running keep their own tracing; what the
    block calls is not traced.
    """
    tracer = sys.gettrace()
    if not measuring() or not _pausing():
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


@contextmanager
def children_unmeasured() -> Generator[None]:
    """While the block runs, Python processes started with this process's environment do not measure themselves."""
    if not _pausing() or _CHILD_START not in os.environ:
        yield
        return
    saved = os.environ.pop(_CHILD_START)
    try:
        yield
    finally:
        os.environ[_CHILD_START] = saved


@contextmanager
def children_in_context(context: str) -> Generator[None]:
    """While the block runs, child processes record what they measure under ``context`` (coverage's static context).

    For the recording run only: the subprocess patch hands a child its configuration as base64
    JSON, and the context is one of its settings. A configuration this cannot read (another
    coverage release) is an error, not a recording that silently attributes nothing.
    """
    encoded = os.environ.get(_CHILD_START)
    if encoded is None:
        yield
        return
    try:
        config = json.loads(base64.b64decode(encoded.encode(), validate=True))
    except (binascii.Error, ValueError) as error:
        raise RuntimeError(f"cannot read coverage's child-process configuration ({_CHILD_START}): {error}") from error
    if not isinstance(config, dict) or "context" not in config:
        raise RuntimeError(f"coverage's child-process configuration ({_CHILD_START}) has no context setting")
    config["context"] = context
    os.environ[_CHILD_START] = base64.b64encode(json.dumps(config).encode()).decode()
    try:
        yield
    finally:
        os.environ[_CHILD_START] = encoded
