"""Shared test configuration: hypothesis settings profiles, the garbage collector's settings, and the moons
training run several tests read.

``ci`` (the default) runs a few hundred examples per property; set
``REFGRAD_HYPOTHESIS_PROFILE=thorough`` for thousands. Neither has a deadline:
timings on a shared machine say nothing about correctness.
"""

from __future__ import annotations

import gc
import importlib
import os
import pkgutil
import time
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from _collector import collector_paused
from _coverage_repeats import (
    RECORD,
    children_in_context,
    children_unmeasured,
    coverage_paused,
    listed_repeats,
    measuring,
)
from hypothesis import settings

if TYPE_CHECKING:
    from refgrad.moons import TrainingRun

# Stated rather than inherited: when the CI variable is set, hypothesis itself loads its own "ci"
# profile (derandomized, no database) before this file runs, and a profile registered here would
# silently take its settings from it. On CI we want exactly that (the same examples on every run, so
# a CI result can be reproduced; a fresh machine keeps nothing anyway); locally, examples are random
# and a failing one is kept in .hypothesis/ and replayed first on the next run.
# (Read before the name "ci" is taken over below: until then it is hypothesis's own profile.)
_BASE = settings.get_profile("ci") if "CI" in os.environ else settings.get_profile("default")
settings.register_profile("ci", _BASE, max_examples=300, deadline=None)
settings.register_profile("thorough", _BASE, max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("REFGRAD_HYPOTHESIS_PROFILE", "ci"))


# The collector's thresholds for the test process: a young collection every 100,000 allocations,
# not 700 (the benchmarks' "tuned" setting, tests/benchmarks/bench_training.py).
COLLECTOR_THRESHOLDS = (100_000, 50, 100)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Once the test modules (and torch, hypothesis, numpy) are imported: freeze them out of collections.

    A training step builds tens of thousands of nodes, and each automatic full collection would
    walk the few hundred thousand objects those libraries leave behind: frozen, the collector
    walks only what the tests create, and collects less often. What is collected is unchanged
    (refgrad's graphs are acyclic and freed by reference counting; the tests that count cycles
    call ``gc.collect()`` themselves); the moons training runs 2 to 3 times faster.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)


# The tests whose call phase runs with coverage paused: each repeats lines and branches other tests
# measure (tests/_coverage_repeats.py; `nox -s coverage_repeats` checks that nothing is lost).
COVERAGE_REPEATS = listed_repeats()
# With REFGRAD_COVERAGE_RECORD (the recording run): each test's call seconds, written per worker.
_call_seconds: dict[str, float] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """A listed repeat runs unmeasured, its child processes too; the recording run names each test's children."""
    if RECORD in os.environ:
        start = time.perf_counter()
        try:
            with children_in_context(f"{item.nodeid}|child"):
                return (yield)
        finally:
            _call_seconds[item.nodeid] = time.perf_counter() - start
    if item.nodeid in COVERAGE_REPEATS:
        with coverage_paused(), children_unmeasured():
            return (yield)
    return (yield)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The recording run: this process's call seconds, one ``node id<TAB>seconds`` line per test."""
    folder = os.environ.get(RECORD)
    if folder is not None and _call_seconds:
        name = os.environ.get("PYTEST_XDIST_WORKER", "main")
        lines = "".join(f"{nodeid}\t{seconds:.3f}\n" for nodeid, seconds in sorted(_call_seconds.items()))
        Path(folder, f"seconds-{name}.tsv").write_text(lines, encoding="utf-8")


@pytest.fixture(scope="session", autouse=True)
def _once_per_process_code_measured() -> None:
    """Under coverage, run refgrad's once-per-process code first, here, measured.

    Module bodies run at the first import and the oracle's caches (``functools.cache``) compute at
    the first call: left to the tests, whichever ran first on a worker would be the only one to
    measure them, and a test listed as a repeat (run unmeasured) could be that one. Without
    coverage this does nothing: the typeguard pass keeps its own order of first imports.
    """
    if not measuring():
        return
    import refgrad

    for module in pkgutil.walk_packages(refgrad.__path__, "refgrad."):
        if module.name != "refgrad.__main__":  # which would run the command line
            importlib.import_module(module.name)
    from refgrad.oracle import campaigns, strategies

    # The oracle's per-process caches, private to it, so reached here by name: the references of the
    # structured programs, and torch's forward mode (loaded on first use).
    from refgrad.oracle.diagnosis import _references  # pyright: ignore[reportPrivateUsage]
    from refgrad.oracle.references import current_references
    from refgrad.oracle.torch_reference import _load_forward_mode  # pyright: ignore[reportPrivateUsage]

    forms = strategies.all_forms()
    for op, form in forms:
        for programs in (campaigns.ordinary_programs, campaigns.kink_programs, campaigns.edge_programs):
            for pattern in programs(op, form):
                # () : the registry's ops alone (OpTable.key); the default references (both, with torch)
                _references(pattern.program, False, (), current_references())
    for pattern in campaigns.composition_programs(forms):
        _references(pattern.program, False, (), current_references())
    _load_forward_mode()


@pytest.fixture(scope="session")
def moons_run() -> TrainingRun:
    """``refgrad.moons.train(steps=100, seed=1337)``: micrograd's demo recipe with the immutable API.

    One run for the session: the run is immutable (an immutable model, tuples of records), and
    the tests that read it (full accuracy, micrograd's trajectory) ask the same question of the
    same 100 steps. Under pytest-xdist those tests share the ``moons-training`` group, meant to
    keep them on one worker (which pytest 9.2 defeats for now: see the noxfile). Imported here,
    not at the top: the typeguard run instruments refgrad's modules as they are first imported,
    which must come after its hook is in place. Run with coverage paused: its steps repeat lines
    and branches that shorter runs measure (tests/_coverage_repeats.py); and with the collector
    paused (tests/_collector.py): the same run in two thirds of the time.
    """
    from refgrad.moons import train

    with coverage_paused(), collector_paused():
        return train(steps=100, seed=1337)
