"""What runs inside each fresh benchmark process: one job, one engine, results as JSON on stdout.

The driver (``bench_training.py``) starts ``python _jobs.py JOB 'PARAMS-AS-JSON'`` once per engine
per measurement round, so no engine inherits another's heap, caches or garbage-collector state.
The last line this prints is the job's result.
"""

from __future__ import annotations

import contextlib
import cProfile
import gc
import json
import operator
import os
import pstats
import re
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypedDict, cast

from _engines import graph_engine, learning_rate, node_makers, training_engine

__all__ = [
    "JOBS",
    "BuildResult",
    "MemoryResult",
    "OracleResult",
    "ProfileResult",
    "RecursionProbe",
    "ScalingResult",
    "TrainingResult",
]

_clock: Final = time.perf_counter


class GcClock:
    """Time spent inside the garbage collector, measured through ``gc.callbacks``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = _clock()
        else:
            self.seconds += _clock() - self._started
            self.collections[info["generation"]] += 1

    def __enter__(self) -> GcClock:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


# Training step -------------------------------------------------------------------------------


class TrainingResult(TypedDict):
    """Per-step times (seconds) of one engine in one fresh process; warm-up steps excluded."""

    engine: str
    gc_enabled: bool
    graph_nodes: int
    losses: list[float]
    """The loss at every step, warm-up included: the cross-check that all engines ran the same graph."""
    forward: list[float]
    backward: list[float]
    update: list[float]
    release: list[float]
    step: list[float]
    gc_seconds: list[float]
    """Time inside the garbage collector during each step (0 with the collector disabled)."""
    gc_collections: list[int]
    """Collections of generations 0, 1 and 2 over all measured steps."""


def training(params: dict[str, object]) -> TrainingResult:
    """Warm up, then time ``steps`` training steps phase by phase."""
    name = cast("str", params["engine"])
    warmup = cast("int", params["warmup"])
    steps = cast("int", params["steps"])
    gc_enabled = cast("bool", params["gc"])
    thresholds = cast("list[int] | None", params.get("gc_thresholds"))
    paused = cast("bool", params.get("paused", False))
    engine = training_engine(name)
    engine.forward()
    nodes = engine.graph_size()
    engine.release()
    if not gc_enabled:
        gc.collect()
        gc.disable()
    if thresholds is not None:
        gc.set_threshold(*thresholds)
    result = TrainingResult(
        engine=name,
        gc_enabled=gc_enabled,
        graph_nodes=nodes,
        losses=[],
        forward=[],
        backward=[],
        update=[],
        release=[],
        step=[],
        gc_seconds=[],
        gc_collections=[0, 0, 0],
    )
    if paused:
        import refgrad  # only the refgrad engines' workers ask for it

        pause: contextlib.AbstractContextManager[None] = refgrad.collector_paused()
    else:
        pause = contextlib.nullcontext()
    with GcClock() as collector, pause:
        for k in range(warmup + steps):
            collected_before = collector.seconds
            counts_before = list(collector.collections)
            t0 = _clock()
            loss = engine.forward()
            t1 = _clock()
            engine.backward()
            t2 = _clock()
            engine.update(learning_rate(k))
            t3 = _clock()
            engine.release()
            t4 = _clock()
            result["losses"].append(loss)
            if k < warmup:
                continue
            result["forward"].append(t1 - t0)
            result["backward"].append(t2 - t1)
            result["update"].append(t3 - t2)
            result["release"].append(t4 - t3)
            result["step"].append(t4 - t0)
            result["gc_seconds"].append(collector.seconds - collected_before)
            for generation in range(3):
                result["gc_collections"][generation] += collector.collections[generation] - counts_before[generation]
    return result


# Bytes per node ------------------------------------------------------------------------------


class MemoryResult(TypedDict):
    """Bytes per node of each kind: exact Python allocations (tracemalloc) and resident-set growth."""

    engine: str
    tracemalloc: dict[str, float] | None
    """``None`` for torch: its nodes live in C++ allocations that tracemalloc cannot see."""
    rss: dict[str, float]


def _resident_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory(params: dict[str, object]) -> MemoryResult:
    """Make ``count`` nodes of each kind and divide the memory they take by ``count``."""
    name = cast("str", params["engine"])
    traced_count = cast("int", params["traced_count"])
    rss_count = cast("int", params["rss_count"])
    makers = node_makers(name)
    # Every node stays alive to the end: freed memory would be reused by the next kind and hide its growth.
    kept: list[list[object]] = []
    gc.collect()
    gc.disable()  # nothing here is garbage; a collection would only add noise
    rss: dict[str, float] = {}
    for kind, make in makers.items():
        holder: list[object] = [None] * rss_count
        before = _resident_bytes()
        for i in range(rss_count):
            holder[i] = make(i)
        rss[kind] = (_resident_bytes() - before) / rss_count
        kept.append(holder)
    traced: dict[str, float] | None = None
    if name != "torch":
        traced = {}
        for kind, make in makers.items():
            holder = [None] * traced_count
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            for i in range(traced_count):
                holder[i] = make(i)
            traced[kind] = (tracemalloc.get_traced_memory()[0] - base) / traced_count
            tracemalloc.stop()
            kept.append(holder)
    gc.enable()
    return MemoryResult(engine=name, tracemalloc=traced, rss=rss)


# Node building ------------------------------------------------------------------------------


class BuildResult(TypedDict):
    """Median nanoseconds to build one product node, per way of building it, in one process."""

    nanoseconds: dict[str, float]


def _twin_fill() -> Callable[[object, object], object]:
    """refgrad's product node as the kernel fills it (the writable twin, then the class switch), without dispatch."""
    from refgrad import Value
    from refgrad.kernel import forward_binary
    from refgrad.ops import MUL

    def product(x: object, y: object) -> object:
        x_node, y_node = cast("Value", x), cast("Value", y)
        data = forward_binary(MUL, x_node.data, y_node.data)
        return x_node._make(data, MUL, x_node, y_node, ())  # pyright: ignore[reportPrivateUsage]  # measured alone

    return product


def _descriptor_fill() -> Callable[[object, object], object]:
    """refgrad's product node, filled in by writing each slot through its descriptor: no writable twin.

    The same node the kernel makes (same class, same slots, same values), built the way a class
    without the twin would have to build it; the difference is what the class switch saves.
    """
    from refgrad import Value
    from refgrad.kernel import Node, forward_binary
    from refgrad.ops import MUL

    setters = {name: Node.__dict__[name].__set__ for name in ("data", "op", "params", "label")}
    setters |= {name: Node.__dict__[name].__set__ for name in ("_first", "_second", "_position")}
    set_data, set_op, set_params, set_label = (setters[n] for n in ("data", "op", "params", "label"))
    set_first, set_second, set_position = (setters[n] for n in ("_first", "_second", "_position"))
    new = object.__new__
    position = iter(range(2**62)).__next__

    def product(x: object, y: object) -> object:
        x_node, y_node = cast("Value", x), cast("Value", y)
        node = new(Value)
        set_data(node, forward_binary(MUL, x_node.data, y_node.data))
        set_op(node, MUL)
        set_params(node, ())
        set_label(node, None)
        set_first(node, x)
        set_second(node, y)
        set_position(node, position())
        return node

    return product


def node_build(params: dict[str, object]) -> BuildResult:
    """Build ``count`` product nodes each way, ``rounds`` times interleaved; the median time per node."""
    count = cast("int", params["count"])
    rounds = cast("int", params["rounds"])
    ways: dict[str, tuple[Callable[[object, object], object], object, object]] = {}
    for engine in ("refgrad", "compat", "micrograd", "torch"):
        make = node_makers(engine)
        x, y = make["leaf"](1), make["leaf"](2)
        ways[engine] = (cast("Callable[[object, object], object]", operator.mul), x, y)
    refgrad_x, refgrad_y = ways["refgrad"][1], ways["refgrad"][2]
    ways["refgrad fill: writable twin"] = (_twin_fill(), refgrad_x, refgrad_y)
    ways["refgrad fill: slot by slot"] = (_descriptor_fill(), refgrad_x, refgrad_y)
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, (build, x, y) in ways.items():
            kept: list[object] = [None] * count
            gc.collect()
            began = time.perf_counter()
            for i in range(count):
                kept[i] = build(x, y)
            times[name].append((time.perf_counter() - began) / count * 1e9)
            del kept
    return BuildResult(nanoseconds={name: statistics.median(values) for name, values in times.items()})


# Graph shapes --------------------------------------------------------------------------------


class ScalingResult(TypedDict):
    """Seconds per run of each phase on one graph shape and size; ``errors`` names a phase that failed."""

    engine: str
    shape: str
    size: int
    times: dict[str, list[float]]
    errors: dict[str, str]


WARMUP_SIZE: Final = 200
"""Small enough that micrograd's recursive backward handles even the chain."""


def scaling(params: dict[str, object]) -> ScalingResult:
    """Build a graph ``repeats`` times and time build, each differentiation, and tear-down."""
    name = cast("str", params["engine"])
    shape = cast("str", params["shape"])
    size = cast("int", params["size"])
    repeats = cast("int", params["repeats"])
    gc_enabled = cast("bool", params.get("gc", True))
    engine = graph_engine(name)
    engine.build(shape, WARMUP_SIZE)
    for measurement in engine.measurements:
        engine.run(measurement)
        engine.drop_result()
    engine.release()
    if not gc_enabled:
        gc.disable()  # explicit gc.collect() calls below still run
    times: dict[str, list[float]] = {"build": [], "teardown": []}
    errors: dict[str, str] = {}
    for _ in range(repeats):
        gc.collect()
        t0 = _clock()
        engine.build(shape, size)
        times["build"].append(_clock() - t0)
        for measurement in engine.measurements:
            if measurement in errors:
                continue
            t0 = _clock()
            try:
                engine.run(measurement)
            except RecursionError as error:
                errors[measurement] = f"RecursionError: {error}"
                continue
            times.setdefault(measurement, []).append(_clock() - t0)
            engine.drop_result()
        t0 = _clock()
        engine.release()
        gc.collect()  # micrograd's graph is cyclic: only the collector frees it
        t1 = _clock()
        gc.collect()  # the fixed cost of a full collection, which is not the graph's
        baseline = _clock() - t1
        times["teardown"].append(max(0.0, (t1 - t0) - baseline))
    label = name if gc_enabled else f"{name}/gc-off"
    return ScalingResult(engine=label, shape=shape, size=size, times=times, errors=errors)


class RecursionProbe(TypedDict):
    """The longest chain an engine's ``backward()`` handled, and how the next one failed."""

    engine: str
    deepest_ok: int
    failure: str
    recursion_limit: int


def recursion_probe(params: dict[str, object]) -> RecursionProbe:
    """Bisect the chain length at which ``backward()`` starts raising ``RecursionError``."""
    name = cast("str", params["engine"])
    upper = cast("int", params["upper"])
    engine = graph_engine(name)

    def works(size: int) -> str | None:
        engine.build("chain", size)
        try:
            engine.run("backward")
        except RecursionError as error:
            return f"RecursionError: {error}"
        finally:
            engine.release()
        return None

    failure = works(upper)
    if failure is None:
        return RecursionProbe(engine=name, deepest_ok=upper, failure="", recursion_limit=sys.getrecursionlimit())
    low, high = 1, upper  # works(low), not works(high)
    while high - low > 1:
        middle = (low + high) // 2
        if works(middle) is None:
            low = middle
        else:
            high = middle
    return RecursionProbe(engine=name, deepest_ok=low, failure=failure, recursion_limit=sys.getrecursionlimit())


# Oracle --------------------------------------------------------------------------------------


class OracleRun(TypedDict):
    """One campaign checked with ``jobs`` processes."""

    jobs: int
    graphs: int
    seconds: float
    """The random graphs' wall time, as the report counts it (workers' start-up included)."""
    total_seconds: float


class OracleResult(TypedDict):
    """Graphs the oracle checked per second, with one process and with more, or why that could not be measured."""

    available: bool
    graphs: int
    seconds: float
    detail: str
    runs: list[OracleRun]


def _oracle_runner() -> Callable[[int, int], tuple[int, float, float, str]] | None:
    """ORACLE HOOK: a function checking ``n`` random graphs with ``jobs`` processes, or None without an oracle.

    The function returns (graphs checked, seconds, total seconds, a note). This is the one place to
    adapt when ``refgrad.oracle`` changes shape (mypy checks the calls below against it). ``None``
    when the oracle's extra (torch, hypothesis) is not installed.
    """
    try:
        import torch

        from refgrad.oracle import RefgradEngine, verify
    except ImportError:
        return None
    torch.set_num_threads(1)  # the goal is per core

    def check(count: int, jobs: int) -> tuple[int, float, float, str]:
        report = verify(RefgradEngine(), examples=count, seed_value=0, jobs=jobs)
        verdict = "all checks passed" if report.passed else "a check FAILED"
        note = (
            f"refgrad.oracle.verify(RefgradEngine(), examples={count}, jobs=...): {verdict}; "
            f"mean {report.mean_nodes:.1f} nodes per graph, deepest {report.deepest}"
        )
        return report.graphs, report.seconds, report.total_seconds, note

    return check


def oracle(params: dict[str, object]) -> OracleResult:
    """Run the oracle on ``graphs`` random graphs with each of ``jobs`` processes, the same campaign each time."""
    count = cast("int", params["graphs"])
    jobs = cast("list[int]", params.get("jobs", [1]))
    check = _oracle_runner()
    if check is None:
        return OracleResult(available=False, graphs=0, seconds=0.0, detail="not available", runs=[])
    check(max(1, count // 20), 1)
    runs: list[OracleRun] = []
    note = ""
    for processes in jobs:
        checked, seconds, total, note = check(count, processes)
        runs.append(OracleRun(jobs=processes, graphs=checked, seconds=seconds, total_seconds=total))
    first = runs[0]
    return OracleResult(available=True, graphs=first["graphs"], seconds=first["seconds"], detail=note, runs=runs)


# Profile -------------------------------------------------------------------------------------


class ProfileEntry(TypedDict):
    """One function's share of a profiled training step."""

    function: str
    calls: int
    own_share: float
    """Time in the function itself, as a share of the profile's total."""
    cumulative_share: float


class ProfileResult(TypedDict):
    """cProfile's top functions for one engine's training steps, plus the collector's share of plain time."""

    engine: str
    steps: int
    top: list[ProfileEntry]
    gc_share: float
    """Share of (unprofiled) step time spent inside the garbage collector."""


def _function_label(key: tuple[str, int, str]) -> str:
    filename, line, function = key
    if filename == "~":
        # A C builtin, such as {method 'get' of 'dict' objects}; its address differs every run.
        return re.sub(r" at 0x[0-9a-f]+", "", function)
    parts = Path(filename).parts
    short = "/".join(parts[parts.index("refgrad") :]) if "refgrad" in parts else Path(filename).name
    return f"{short}:{line}({function})"


def profile(params: dict[str, object]) -> ProfileResult:
    """Profile ``steps`` training steps after a warm-up; measure the GC share on unprofiled steps."""
    name = cast("str", params["engine"])
    steps = cast("int", params["steps"])
    top_count = cast("int", params["top"])
    engine = training_engine(name)

    def step(k: int) -> None:
        engine.forward()
        engine.backward()
        engine.update(learning_rate(k))
        engine.release()

    for k in range(2):
        step(k)
    with GcClock() as collector:
        t0 = _clock()
        for k in range(steps):
            step(k)
        plain = _clock() - t0
    profiler = cProfile.Profile()
    profiler.enable()
    for k in range(steps):
        step(k)
    profiler.disable()
    stats = pstats.Stats(profiler)
    raw = cast("dict[tuple[str, int, str], tuple[int, int, float, float, object]]", stats.stats)  # type: ignore[attr-defined]  # pstats keeps its table untyped
    total = sum(entry[2] for entry in raw.values())
    ranked = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)[:top_count]
    top = [
        ProfileEntry(
            function=_function_label(key),
            calls=entry[1],
            own_share=entry[2] / total,
            cumulative_share=entry[3] / total,
        )
        for key, entry in ranked
    ]
    return ProfileResult(engine=name, steps=steps, top=top, gc_share=collector.seconds / plain)


JOBS: Final[dict[str, Callable[[dict[str, object]], object]]] = {
    "training": training,
    "memory": memory,
    "scaling": scaling,
    "recursion_probe": recursion_probe,
    "oracle": oracle,
    "profile": profile,
    "node_build": node_build,
}


def main() -> None:
    """``python _jobs.py JOB PARAMS``: run one job, print its result as the last line of stdout."""
    job, raw = sys.argv[1], sys.argv[2]
    params = json.loads(raw)
    if not isinstance(params, dict):
        raise SystemExit(f"job parameters must be a JSON object, got {raw!r}")
    result = JOBS[job](cast("dict[str, object]", params))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
