"""``verify -j N``: a campaign's blocks checked by N worker processes, each with its own copy of the engine.

Workers are started with ``spawn`` (a fresh interpreter: forking a process that has imported torch,
or that drives an engine in a worker of its own, is not safe). Each gets the engine pickled (an
engine in a worker process of its own, :class:`~refgrad.oracle.worker.IsolatedEngine`, pickles as
its recipe, so each worker starts its own), the run's references and ops of the caller's own, and
reads the same local modules' numbers as the caller: hypothesis draws with numbers from the loaded
local modules' source, and the same numbers make the same programs. A worker does not import those
modules (one loaded from a folder put on the path at run time, gone from ``sys.modules`` since, or
shadowed by another file of its name there would not be the caller's): each file it has not loaded
itself is registered under a private name, an empty module for hypothesis to read the numbers of.
Blocks go to whichever worker is free; their results are put back in block order, so the report
does not depend on who checked what.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.util
import os
import pickle
import signal
import sys
import types
from collections.abc import Generator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Final

from refgrad.oracle.blocks import Block, BlockResult, Drawing, check_block, hypothesis_run
from refgrad.oracle.compare import checked
from refgrad.oracle.engines import Engine
from refgrad.oracle.optable import op_table, using_ops
from refgrad.oracle.program import Program
from refgrad.oracle.references import ReferenceChoice, current_references, using_references
from refgrad.oracle.strategies import all_forms

__all__ = [
    "BLOCKS_PER_WORKER",
    "MAX_JOBS",
    "WorkerError",
    "Workers",
    "auto_jobs",
    "default_jobs",
    "jobs_argument",
    "local_modules",
]

MAX_JOBS: Final = 1024
"""More worker processes than this is a typo."""


class WorkerError(RuntimeError):
    """A worker process of ``verify -j`` died (not the engine's own worker: that is a finding)."""


def default_jobs() -> int:
    """The cores this process may run on."""
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        return max(1, len(affinity(0)))
    return max(1, os.cpu_count() or 1)


BLOCKS_PER_WORKER: Final = 4
"""Blocks a worker should have before ``verify``'s default starts it: fewer, and its start-up costs what it saves."""


def auto_jobs(blocks: int) -> int:
    """``verify -j``'s default for a run of ``blocks`` blocks: one per core, at most one per 4 blocks."""
    return max(1, min(default_jobs(), blocks // BLOCKS_PER_WORKER))


def jobs_argument(jobs: object, name: str = "jobs") -> int:
    """``jobs`` checked: a whole number from 1 to :data:`MAX_JOBS`."""
    if isinstance(jobs, bool) or not isinstance(jobs, int):
        raise TypeError(f"{name} must be a whole number of processes, got {type(jobs).__name__}")
    if not 1 <= jobs <= MAX_JOBS:
        raise ValueError(f"{name} must be from 1 to {MAX_JOBS}, got {jobs}")
    return jobs


def local_modules() -> tuple[tuple[str, str], ...]:
    """The loaded modules whose constants hypothesis draws with (local files, not tests), ``__main__`` aside.

    Each as its name and its file.
    """
    try:
        from hypothesis.internal.constants_ast import is_local_module_file  # the same rule hypothesis applies
    except ImportError:  # a hypothesis that draws no constants from local modules: nothing to match
        return ()

    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if name in ("__main__", "__mp_main__") or not isinstance(path, str) or (name, path) in _SEEN:
            continue
        if is_local_module_file(path):
            _SEEN.add((name, path))
    return tuple(sorted(_SEEN))


_SEEN: Final[set[tuple[str, str]]] = set()
"""Every local module this process has loaded: hypothesis keeps drawing with a module's numbers
after the module is gone from ``sys.modules``, so the workers are given them all."""


@dataclass(frozen=True, slots=True)
class _Setup:
    engine: bytes
    references: ReferenceChoice
    extra: bytes | None
    origin: str | None
    modules: tuple[tuple[str, str], ...]


_HERE: dict[str, Engine] = {}
"""In a worker: the engine it checks blocks on."""
_SCOPE: Final = contextlib.ExitStack()
"""In a worker: the run's references and ops, entered once for the worker's life."""


def _start(setup: _Setup) -> None:
    """A worker's start: Ctrl-C is the parent's to handle; the run's context entered; the engine unpickled."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _SCOPE.enter_context(using_references(setup.references))
    if setup.extra is not None:
        _SCOPE.enter_context(using_ops(pickle.loads(setup.extra), origin=setup.origin))
    engine: Engine = pickle.loads(setup.engine)
    _HERE["engine"] = engine
    close = getattr(engine, "close", None)
    if callable(close):
        multiprocessing.util.Finalize(None, close, exitpriority=10)
    _import(setup.modules)
    _warm_up(engine)


_WARM_UP: Final = Block(0, 3, 0)
"""A few programs checked at a worker's start: the references' imports and caches, hypothesis's constants."""


def _warm_up(engine: Engine) -> None:
    """Check a few programs, so that the first block costs what the others do (the parent loads meanwhile)."""
    drawing = Drawing(all_forms(None), 6, "never", 1, ())

    def test(program: Program) -> None:
        checked(program, engine, order=1)

    with contextlib.suppress(Exception):  # an engine that cannot run them fails in the blocks, as it should
        hypothesis_run(drawing, _WARM_UP, test, shrink=False)()


def _ready() -> None:
    """A task that only makes the pool start its workers."""


_CONSTANTS_OF: Final = "_refgrad_constants_of."
"""The prefix of the names under which a worker registers the caller's modules' files, for their numbers."""


def _import(modules: Sequence[tuple[str, str]]) -> None:
    """Make hypothesis here read the numbers of each of the caller's local modules (``(name, file)`` pairs)."""
    for name, path in modules:
        key = f"{_CONSTANTS_OF}{name}:{path}"
        if _loaded_from(name, path) or key in sys.modules:
            continue
        # hypothesis reads a module's numbers from its source file: an empty module naming the
        # caller's file gives the same ones without running the module here.
        stand_in = types.ModuleType(key)
        stand_in.__file__ = path
        sys.modules[key] = stand_in


def _loaded_from(name: str, path: str) -> bool:
    """Whether module ``name`` is loaded here, from ``path``."""
    module = sys.modules.get(name)
    loaded = getattr(module, "__file__", None)
    return isinstance(loaded, str) and os.path.realpath(loaded) == os.path.realpath(path)


def _check(drawing: Drawing, block: Block, modules: tuple[tuple[str, str], ...]) -> BlockResult:
    _import(modules)
    return check_block(_HERE["engine"], drawing, block)


def _pickled(engine: Engine, jobs: int) -> _Setup:
    """What a worker needs, pickled; ``ValueError`` for an engine (or op) that cannot cross to another process."""
    extra = tuple(op_table.key) if op_table.extra else None
    try:
        engine_bytes = pickle.dumps(engine)
        extra_bytes = None if extra is None else pickle.dumps(extra)
    except (pickle.PicklingError, AttributeError, TypeError) as error:
        raise ValueError(
            f"jobs={jobs}: {engine.name} cannot be sent to worker processes ({error}); define the engine's class "
            "and its functions at the top level of a module, or check it with jobs=1"
        ) from error
    return _Setup(engine_bytes, current_references(), extra_bytes, op_table.origin, local_modules())


class Workers:
    """``jobs`` worker processes checking blocks on copies of ``engine``, started at once (they load meanwhile)."""

    def __init__(self, engine: Engine, jobs: int) -> None:
        setup = _pickled(engine, jobs)
        self._pool = ProcessPoolExecutor(
            max_workers=jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_start, initargs=(setup,)
        )
        self._pool.submit(_ready)

    def results(self, drawing: Drawing, blocks: Sequence[Block]) -> Generator[BlockResult]:
        """Every block's result, in block order, the workers checking ahead; closing the generator cancels the rest."""
        modules = local_modules()
        futures: list[Future[BlockResult]] = [self._pool.submit(_check, drawing, block, modules) for block in blocks]
        try:
            for future in futures:
                try:
                    result = future.result()
                except BrokenProcessPool as error:
                    raise WorkerError(
                        "a worker process of verify -j died (killed, out of memory, or the engine crashed the "
                        "interpreter it runs in); if verify(jobs=...) is called from a script, the call must be "
                        "under `if __name__ == '__main__':` (workers import the script); -j 1 runs in this process"
                    ) from error
                yield result
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        """Stop the workers (blocks not started are dropped)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
