"""refgrad's benchmark suite: ``nox -s bench`` runs this file.

It drives every benchmark, each engine in a fresh process per measurement round, rounds
interleaved between engines (and rotated, so no engine always runs first), and prints the
figures side by side with their ratios:

- ``training``: micrograd's demo training step (MLP(2, [16, 16, 1]) on 100 moons points), steady
  state: warm-up steps discarded, then the median of several steps, forward, backward, update and
  graph release timed separately and together; plus the same engines with the garbage collector
  disabled, to show its share;
- ``memory``: bytes per node (tracemalloc; resident-set growth as a cross-check, and for torch);
- ``scaling``: chains and wide sums of 10**3 .. 10**6 op nodes, time per node for build, backward,
  ``create_graph=True`` backward, ``jvp`` and tear-down;
- ``oracle``: graphs the oracle checks per second (when ``refgrad.oracle`` provides a runner);
- ``profile``: cProfile's top functions of refgrad's and the micrograd surface's training step.

Results go to ``tests/benchmarks/results/latest.json``; a full run also regenerates
``docs/performance.md`` and its plots under ``docs/images/``.

Usage: ``python tests/benchmarks/bench_training.py [--quick] [--only training,memory,...] [--no-docs]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Final, TypedDict, cast

from _engines import ENGINES, LAYER_SIZES, SAMPLES
from _jobs import BuildResult, MemoryResult, OracleResult, ProfileResult, RecursionProbe, ScalingResult, TrainingResult
from _report import Series, Table, render_markdown, render_text, write_plot, write_training_plot

BENCH_DIR: Final = Path(__file__).resolve().parent
REPO: Final = BENCH_DIR.parent.parent
WORKER: Final = BENCH_DIR / "_jobs.py"
DEFAULT_JSON: Final = BENCH_DIR / "results" / "latest.json"
DOC: Final = REPO / "docs" / "performance.md"
SCALING_PLOT: Final = REPO / "docs" / "images" / "perf_scaling.png"
TRAINING_PLOT: Final = REPO / "docs" / "images" / "perf_training.png"
SUITES: Final = ("training", "memory", "build", "scaling", "oracle", "profile")

ENGINE_LABEL: Final = {
    "refgrad": "refgrad",
    "compat": "refgrad.micrograd",
    "micrograd": "micrograd 0.1.0",
    "torch": "torch (scalar)",
    "refgrad/gc-off": "refgrad, gc off",
    "compat/gc-off": "refgrad.micrograd, gc off",
    "micrograd/gc-off": "micrograd, gc off",
    "refgrad/gc-tuned": "refgrad, gc thresholds raised",
    "refgrad/paused": "refgrad, collector_paused()",
    "compat/paused": "refgrad.micrograd, collector_paused()",
    "compat/gc-tuned": "refgrad.micrograd, gc thresholds raised",
}
TUNED_THRESHOLDS: Final = (100_000, 50, 100)
"""gc.set_threshold() for the 'tuned' variants: collect the young generation every 100,000 allocations, not 700."""
PHASES: Final = ("build", "backward", "create_graph", "jvp", "teardown")
PHASE_LABEL: Final = {
    "build": "build",
    "backward": "backward",
    "create_graph": "create_graph",
    "jvp": "jvp",
    "teardown": "teardown",
}


@dataclass(frozen=True)
class Goal:
    """A figure with the thresholds issues 2, 6 and 17 set for it (None: that issue sets none)."""

    label: str
    unit: str
    issue2: float | None
    issue6: float | None
    higher_is_better: bool
    issue17: float | None = None


GOALS: Final = {
    "refgrad_vs_micrograd": Goal("refgrad training step vs micrograd 0.1.0", "x", 10, 15, True, 20),
    "refgrad_vs_torch": Goal("refgrad training step vs torch scalar autograd", "x", 4, 5, True, 7),
    "paused_vs_micrograd": Goal(
        "refgrad training step in refgrad.collector_paused() vs micrograd 0.1.0", "x", None, None, True, 20
    ),
    "paused_vs_torch": Goal("refgrad training step in refgrad.collector_paused() vs torch", "x", None, None, True, 7),
    "compat_vs_micrograd": Goal("refgrad.micrograd training step vs micrograd 0.1.0", "x", 3, 5, True),
    "bytes_per_product": Goal("refgrad bytes per product node (tracemalloc)", " B", 200, 150, False, 120),
    "refgrad_flatness": Goal("refgrad time per node, max/min over sizes (worst case)", "x", None, 1.5, False, 1.5),
    "compat_flatness": Goal("refgrad.micrograd time per node, max/min over sizes", "x", None, 1.5, False),
    "oracle_rate": Goal("oracle graphs checked per second, one process", "/s", None, 100, True),
    "oracle_speedup": Goal("oracle graphs per second, -j 2 over -j 1", "x", None, None, True, 1.7),
}
FLATNESS_GOAL: Final = 1.5
ORACLE_GOAL: Final = 100.0
SPEEDUP_GOAL: Final = 1.7
LOSS_TOLERANCE: Final = 1e-9


@dataclass(frozen=True)
class Config:
    """How much to measure; ``FULL`` is what ``nox -s bench`` runs."""

    rounds: int
    warmup: int
    steps: int
    gc_off_engines: tuple[str, ...]
    gc_tuned_engines: tuple[str, ...]
    paused_engines: tuple[str, ...]
    gc_off_scaling: tuple[str, ...]
    sizes: tuple[int, ...]
    repeats: Mapping[int, int]
    scaling_rounds: Mapping[int, int]
    size_caps: Mapping[str, int]
    traced_count: int
    rss_count: int
    oracle_graphs: int
    profile_steps: int
    profile_top: int
    recursion_upper: int
    build_count: int = 200_000
    build_rounds: int = 5
    caps_reason: Mapping[str, str] = field(default_factory=dict[str, str])
    oracle_jobs: tuple[int, ...] = (1, 2)


FULL: Final = Config(
    rounds=3,
    warmup=2,
    steps=7,
    gc_off_engines=("refgrad", "compat", "micrograd"),
    gc_tuned_engines=("refgrad", "compat"),
    paused_engines=("refgrad", "compat"),
    gc_off_scaling=("refgrad",),
    sizes=(10**3, 10**4, 10**5, 10**6),
    repeats={10**3: 20, 10**4: 10, 10**5: 3, 10**6: 2},
    scaling_rounds={10**3: 2, 10**4: 2, 10**5: 2, 10**6: 1},
    size_caps={"torch": 10**5},
    caps_reason={
        "torch": "torch capped at 10^5 op nodes to keep the run under 15 minutes: at 10^5 one process takes "
        "6-9 s and peaks at 0.5-0.65 GB, so 10^6 would take minutes and 5-6 GB per process",
    },
    traced_count=20_000,
    rss_count=200_000,
    oracle_graphs=10_000,  # the default campaign of python -m refgrad verify (40 blocks)
    profile_steps=5,
    profile_top=12,
    recursion_upper=5_000,
)
QUICK: Final = Config(
    rounds=1,
    warmup=1,
    steps=2,
    gc_off_engines=("refgrad",),
    gc_tuned_engines=("refgrad",),
    paused_engines=("refgrad",),
    gc_off_scaling=("refgrad",),
    sizes=(10**3, 10**4),
    repeats={10**3: 2, 10**4: 2},
    scaling_rounds={10**3: 1, 10**4: 1},
    size_caps={},
    traced_count=2_000,
    rss_count=20_000,
    oracle_graphs=500,
    profile_steps=1,
    profile_top=8,
    recursion_upper=2_000,
    build_count=20_000,
    build_rounds=1,
)


def progress(message: str) -> None:
    """One line of progress on stderr (stdout carries only the tables)."""
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


class JobError(Exception):
    """A worker process exited with an error (its last stderr line is the message)."""


def run_job(job: str, params: Mapping[str, object], timeout: float = 900.0) -> object:
    """Run one job in a fresh interpreter and return its JSON result."""
    command = [sys.executable, str(WORKER), job, json.dumps(dict(params))]
    try:
        finished = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, cwd=BENCH_DIR)
    except subprocess.TimeoutExpired:
        raise JobError(f"timed out after {timeout:.0f} s") from None
    if finished.returncode != 0:
        lines = finished.stderr.strip().splitlines() or [f"exit status {finished.returncode}"]
        raise JobError(lines[-1])
    return json.loads(finished.stdout.strip().splitlines()[-1])


def rotated(items: Sequence[str], round_index: int) -> list[str]:
    """``items`` starting at a different place each round, so no engine always runs first (or last)."""
    shift = round_index % len(items)
    return [*items[shift:], *items[:shift]]


def median(values: Sequence[float]) -> float:
    """The median, or NaN for no values."""
    return statistics.median(values) if values else math.nan


# Training ------------------------------------------------------------------------------------


class TrainingSummary(TypedDict):
    """Medians (seconds) over every measured step of every round for one engine variant."""

    engine: str
    gc_enabled: bool
    graph_nodes: int
    phases: dict[str, float]
    round_medians: list[float]
    gc_share: float
    collections_per_step: list[float]


def variant_key(engine: str, gc_enabled: bool) -> str:
    """``refgrad`` or ``refgrad/gc-off``."""
    return engine if gc_enabled else f"{engine}/gc-off"


def run_training(config: Config, failures: dict[str, str]) -> dict[str, list[TrainingResult]]:
    """Every variant once per round, in a fresh process, rounds interleaved."""
    variants = [variant_key(e, True) for e in ENGINES] + [variant_key(e, False) for e in config.gc_off_engines]
    variants += [f"{e}/gc-tuned" for e in config.gc_tuned_engines]
    variants += [f"{e}/paused" for e in config.paused_engines]
    results: dict[str, list[TrainingResult]] = {key: [] for key in variants}
    for round_index in range(config.rounds):
        for key in rotated(variants, round_index):
            engine, _, variant = key.partition("/")
            progress(f"training round {round_index + 1}/{config.rounds}: {key}")
            params: dict[str, object] = {
                "engine": engine,
                "warmup": config.warmup,
                "steps": config.steps,
                "gc": variant != "gc-off",
            }
            if variant == "gc-tuned":
                params["gc_thresholds"] = list(TUNED_THRESHOLDS)
            if variant == "paused":
                params["paused"] = True
            try:
                results[key].append(cast("TrainingResult", run_job("training", params)))
            except JobError as error:
                failures[f"training {key}"] = str(error)
    return results


def summarize_training(results: Mapping[str, list[TrainingResult]]) -> dict[str, TrainingSummary]:
    """Pool the measured steps of all rounds per variant."""
    summaries: dict[str, TrainingSummary] = {}
    for key, runs in results.items():
        if not runs:
            continue
        phases = {
            phase: median([t for run in runs for t in run[phase]])
            for phase in ("forward", "backward", "update", "release", "step")
        }
        steps = sum(len(run["step"]) for run in runs)
        gc_seconds = sum(sum(run["gc_seconds"]) for run in runs)
        step_seconds = sum(sum(run["step"]) for run in runs)
        collections = [sum(run["gc_collections"][g] for run in runs) / steps for g in range(3)]
        summaries[key] = TrainingSummary(
            engine=runs[0]["engine"],
            gc_enabled=runs[0]["gc_enabled"],
            graph_nodes=runs[0]["graph_nodes"],
            phases=phases,
            round_medians=[median(run["step"]) for run in runs],
            gc_share=gc_seconds / step_seconds,
            collections_per_step=collections,
        )
    return summaries


def loss_agreement(results: Mapping[str, list[TrainingResult]]) -> tuple[float, str]:
    """The largest relative difference between any run's losses and refgrad's, and where it was."""
    reference_runs = results.get("refgrad") or next((runs for runs in results.values() if runs), list[TrainingResult]())
    if not reference_runs:
        return math.nan, "no runs"
    reference = reference_runs[0]["losses"]
    worst, where = 0.0, "refgrad"
    for key, runs in results.items():
        for run in runs:
            for step, (ours, theirs) in enumerate(zip(reference, run["losses"], strict=True)):
                difference = abs(ours - theirs) / max(abs(ours), 1e-300)
                if difference > worst:
                    worst, where = difference, f"{key}, step {step}"
    return worst, where


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, NaN if either is missing."""
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0.0:
        return math.nan
    return numerator / denominator


def step_of(summaries: Mapping[str, TrainingSummary], key: str, phase: str = "step") -> float:
    """A variant's median phase time, NaN if it did not run."""
    summary = summaries.get(key)
    return summary["phases"][phase] if summary else math.nan


def fmt_ms(seconds: float) -> str:
    """Milliseconds, three significant figures."""
    if math.isnan(seconds):
        return "-"
    ms = seconds * 1e3
    return f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}" if ms >= 1 else f"{ms:.3f}"


def fmt_ratio(value: float) -> str:
    """``12.3x``."""
    return "-" if math.isnan(value) else f"{value:.1f}x"


def training_tables(
    summaries: Mapping[str, TrainingSummary], config: Config, agreement: tuple[float, str]
) -> list[Table]:
    """The step table (all engines side by side) and the GC side experiment."""
    nodes = next((s["graph_nodes"] for k, s in summaries.items() if k.startswith("refgrad")), 0)
    micrograd_step = step_of(summaries, "micrograd")
    torch_step = step_of(summaries, "torch")
    rows: list[tuple[str, ...]] = []
    for engine in [*ENGINES, *(f"{e}/paused" for e in config.paused_engines)]:
        summary = summaries.get(engine)
        if summary is None:
            rows.append((ENGINE_LABEL[engine], "failed", "", "", "", "", "", "", "", ""))
            continue
        phases = summary["phases"]
        spread = f"{fmt_ms(min(summary['round_medians']))}-{fmt_ms(max(summary['round_medians']))}"
        rows.append(
            (
                ENGINE_LABEL[engine],
                fmt_ms(phases["forward"]),
                fmt_ms(phases["backward"]),
                fmt_ms(phases["update"]),
                fmt_ms(phases["release"]),
                fmt_ms(phases["step"]),
                spread,
                f"{summary['gc_share'] * 100:.0f}%",
                fmt_ratio(ratio(micrograd_step, phases["step"])),
                fmt_ratio(ratio(torch_step, phases["step"])),
            )
        )
    worst, where = agreement
    agree = (
        f"losses agree across engines to {worst:.1e} relative (worst: {where})"
        if worst <= LOSS_TOLERANCE
        else f"WARNING: losses differ by {worst:.1e} relative at {where}: the engines did not run the same graph"
    )
    step_table = Table(
        title=(
            f"Training step: micrograd's demo, MLP({LAYER_SIZES[0]}, {list(LAYER_SIZES[1:])}) "
            f"on {SAMPLES} moons points, "
            f"{nodes:,}-node graph (milliseconds, median)"
        ),
        header=(
            "engine",
            "forward",
            "backward",
            "update",
            "release",
            "step",
            "step range",
            "gc",
            "vs micrograd",
            "vs torch",
        ),
        rows=rows,
        notes=[
            f"{config.rounds} rounds x {config.steps} steps after {config.warmup} warm-up steps; "
            "each engine in a fresh process every round, rounds interleaved",
            "step = forward + backward (incl. zero_grad) + update + release of the graph; 'step range' = "
            "min-max of the per-round medians; gc = share of step time inside the garbage collector",
            "vs X = X's step time / this engine's step time (higher is faster)",
            "collector_paused(): the steps run inside `with refgrad.collector_paused():` (opt-in, docs/performance.md "
            "'Large graphs and the collector'); refgrad makes no cycles, so nothing is left for the "
            "collector; micrograd 0.1.0's graphs are cyclic and would pile up in such a block",
            agree,
        ],
    )
    gc_rows: list[tuple[str, ...]] = []
    for engine in config.gc_off_engines:
        on, off = summaries.get(engine), summaries.get(variant_key(engine, False))
        if on is None or off is None:
            continue
        tuned = summaries.get(f"{engine}/gc-tuned")
        tuned_step = tuned["phases"]["step"] if tuned else math.nan
        gc_rows.append(
            (
                ENGINE_LABEL[engine],
                fmt_ms(on["phases"]["step"]),
                fmt_ms(off["phases"]["step"]),
                fmt_ms(tuned_step),
                f"{(1 - off['phases']['step'] / on['phases']['step']) * 100:.0f}%",
                f"{on['gc_share'] * 100:.0f}%",
                "/".join(f"{c:.1f}" for c in on["collections_per_step"]),
            )
        )
    gc_table = Table(
        title="Garbage collector share of the training step (side experiment, each variant in its own processes)",
        header=(
            "engine",
            "step, gc on",
            "gc off",
            "gc thresholds raised",
            "saved by gc off",
            "time in gc",
            "collections/step (gen 0/1/2)",
        ),
        rows=gc_rows,
        notes=[
            "gc off: gc.disable() in the worker; thresholds raised: "
            f"gc.set_threshold{TUNED_THRESHOLDS} (default (700, 10, 10))",
            "'time in gc' is measured with gc.callbacks in the gc-on runs",
        ],
    )
    return [step_table, gc_table]


def goals_table(measured: Mapping[str, float]) -> Table:
    """Every figure issues 2, 6 and 17 set a goal for, measured in this run, with its verdicts."""
    rows: list[tuple[str, ...]] = []
    for name, goal in GOALS.items():
        value = measured.get(name, math.nan)
        verdicts: list[str] = []
        for threshold in (goal.issue2, goal.issue6, goal.issue17):
            if threshold is None:
                verdicts.append("")
                continue
            sign = ">=" if goal.higher_is_better else "<="
            if math.isnan(value):
                result = "not measured"
            elif (value >= threshold) if goal.higher_is_better else (value <= threshold):
                result = "ok"
            else:
                result = "MISSED"
            verdicts.append(f"{sign} {threshold:g}{goal.unit}: {result}")
        shown = (
            "-" if math.isnan(value) else f"{value:.1f}{goal.unit}" if goal.unit == "x" else f"{value:.0f}{goal.unit}"
        )
        rows.append((goal.label, shown, *verdicts))
    return Table(title="Goals (this run)", header=("figure", "measured", "issue 2", "issue 6", "issue 17"), rows=rows)


# Memory --------------------------------------------------------------------------------------


def run_memory(config: Config, failures: dict[str, str]) -> dict[str, MemoryResult]:
    """Bytes per node, one fresh process per engine."""
    results: dict[str, MemoryResult] = {}
    for engine in ENGINES:
        progress(f"memory: {engine}")
        params = {"engine": engine, "traced_count": config.traced_count, "rss_count": config.rss_count}
        try:
            results[engine] = cast("MemoryResult", run_job("memory", params))
        except JobError as error:
            failures[f"memory {engine}"] = str(error)
    return results


def memory_table(results: Mapping[str, MemoryResult], config: Config) -> Table:
    """Bytes per node by kind: tracemalloc, with resident-set growth in brackets."""
    kinds = ("leaf", "pow", "relu", "mul")
    rows: list[tuple[str, ...]] = []
    for engine in ENGINES:
        result = results.get(engine)
        if result is None:
            rows.append((ENGINE_LABEL[engine], "failed", "", "", ""))
            continue
        traced = result["tracemalloc"]
        cells: list[str] = []
        for kind in kinds:
            rss = f"({result['rss'][kind]:.0f})"
            cells.append(f"{traced[kind]:.0f} {rss}" if traced is not None else f"n/a {rss}")
        rows.append((ENGINE_LABEL[engine], *cells))
    return Table(
        title="Bytes per node: tracemalloc (resident-set growth in brackets)",
        header=("engine", "leaf", "unary x**2", "unary relu(x)", "binary x*y"),
        rows=rows,
        notes=[
            f"tracemalloc over {config.traced_count:,} nodes of each kind, RSS growth over {config.rss_count:,}; "
            "operands made beforehand, so a node's figure is the node, its float and any per-node parameter tuple",
            "torch: its autograd nodes are C++ allocations invisible to tracemalloc, so only RSS growth is shown",
        ],
    )


# Node building -------------------------------------------------------------------------------


def run_build(config: Config, failures: dict[str, str]) -> BuildResult | None:
    """Nanoseconds per product node, every way in one fresh process (rounds interleaved)."""
    progress("build")
    try:
        return cast("BuildResult", run_job("node_build", {"count": config.build_count, "rounds": config.build_rounds}))
    except JobError as error:
        failures["build"] = str(error)
        return None


def build_table(result: BuildResult, config: Config) -> Table:
    """Building one product node ``x * y``: each engine, and refgrad's fill with and without the writable twin."""
    times = result["nanoseconds"]
    micrograd = times["micrograd"]
    rows = [
        (ENGINE_LABEL.get(name, name), f"{value:.0f}", fmt_ratio(ratio(micrograd, value)))
        for name, value in times.items()
    ]
    twin, slot_by_slot = times["refgrad fill: writable twin"], times["refgrad fill: slot by slot"]
    return Table(
        title="Building one product node x * y (nanoseconds, median)",
        header=("way", "ns per node", "vs micrograd"),
        rows=rows,
        notes=[
            f"{config.build_count:,} nodes per way and round, {config.build_rounds} rounds interleaved in one "
            "fresh process, every node kept alive (the collector's work included); operands made beforehand",
            "the two 'fill' rows build the same refgrad node without the operator's dispatch: through the "
            "kernel's writable twin and a class switch, and by writing each slot through its descriptor "
            f"(what the node would cost without the twin): the twin saves {1 - twin / slot_by_slot:.0%} of the fill",
        ],
    )


# Scaling -------------------------------------------------------------------------------------


class ScalingCell(TypedDict):
    """Median microseconds per op node for each phase at one size, and any phase's failure."""

    micros: dict[str, float]
    errors: dict[str, str]


ScalingSummary = dict[str, dict[str, dict[int, ScalingCell]]]  # engine -> shape -> size -> cell


def scaling_variants(config: Config) -> list[str]:
    """Every engine, then the gc-off variants that show the collector's share as graphs grow."""
    return [*ENGINES, *(variant_key(e, False) for e in config.gc_off_scaling)]


def run_scaling(
    config: Config, failures: dict[str, str]
) -> tuple[dict[str, list[ScalingResult]], dict[str, RecursionProbe]]:
    """Each (size, shape) with every engine in turn, a fresh process each, rounds interleaved."""
    results: dict[str, list[ScalingResult]] = {}
    step = 0
    for size in config.sizes:
        for round_index in range(config.scaling_rounds[size]):
            for shape in ("chain", "wide"):
                step += 1
                engines = [e for e in scaling_variants(config) if size <= config.size_caps.get(e, size)]
                for engine in rotated(engines, step):
                    progress(f"scaling {shape} 10**{round(math.log10(size))} round {round_index + 1}: {engine}")
                    name, _, off = engine.partition("/")
                    params = {
                        "engine": name,
                        "gc": not off,
                        "shape": shape,
                        "size": size,
                        "repeats": config.repeats[size],
                    }
                    try:
                        result = cast("ScalingResult", run_job("scaling", params))
                    except JobError as error:
                        failures[f"scaling {engine} {shape} {size}"] = str(error)
                        continue
                    results.setdefault(f"{engine}/{shape}/{size}", []).append(result)
    probes: dict[str, RecursionProbe] = {}
    progress("scaling: micrograd's deepest differentiable chain")
    try:
        probes["micrograd"] = cast(
            "RecursionProbe", run_job("recursion_probe", {"engine": "micrograd", "upper": config.recursion_upper})
        )
    except JobError as error:
        failures["recursion probe micrograd"] = str(error)
    return results, probes


def summarize_scaling(results: Mapping[str, list[ScalingResult]]) -> ScalingSummary:
    """Median over all repeats of all rounds, per op node."""
    summary: ScalingSummary = {}
    for runs in results.values():
        first = runs[0]
        times: dict[str, list[float]] = {}
        errors: dict[str, str] = {}
        for run in runs:
            for phase, values in run["times"].items():
                times.setdefault(phase, []).extend(values)
            errors.update(run["errors"])
        micros = {phase: median(values) / first["size"] * 1e6 for phase, values in times.items() if values}
        cell = ScalingCell(micros=micros, errors=errors)
        summary.setdefault(first["engine"], {}).setdefault(first["shape"], {})[first["size"]] = cell
    return summary


def flatness(cells: Mapping[int, ScalingCell], phase: str) -> float:
    """Largest over smallest time per node across sizes (1.0 is perfectly linear).

    NaN if fewer than two sizes were measured, or if one measured no time at all: a tear-down is
    the difference of two gc.collect() timings, which can come out at or below zero.
    """
    values = [cell["micros"][phase] for cell in cells.values() if phase in cell["micros"]]
    if len(values) < 2 or min(values) <= 0:
        return math.nan
    return max(values) / min(values)


def fmt_micros(value: float) -> str:
    """Microseconds per node, three significant figures."""
    return f"{value:.3g}"


def scaling_tables(
    summary: ScalingSummary, probes: Mapping[str, RecursionProbe], config: Config
) -> tuple[list[Table], dict[str, float]]:
    """One table per shape (engine x phase rows, size columns); also the worst flatness per engine."""
    shape_titles = {
        "chain": "Chain y = x * w * w * ... (depth n): microseconds per op node",
        "wide": "Wide sum of n + 1 leaves (balanced tree, depth log2 n): microseconds per op node (leaves built too)",
    }
    worst_flatness: dict[str, float] = {}
    tables: list[Table] = []
    size_header = tuple(f"10^{round(math.log10(size))}" for size in config.sizes)
    for shape, title in shape_titles.items():
        rows: list[tuple[str, ...]] = []
        for engine in scaling_variants(config):
            cells = summary.get(engine, {}).get(shape, {})
            for phase in PHASES:
                values: list[str] = []
                seen = False
                for size in config.sizes:
                    cell = cells.get(size)
                    if cell is None:
                        values.append("capped" if size > config.size_caps.get(engine, size) else "failed")
                    elif phase in cell["micros"]:
                        values.append(fmt_micros(cell["micros"][phase]))
                        seen = True
                    elif phase in cell["errors"]:
                        values.append(cell["errors"][phase].split(":")[0])
                        seen = True
                    else:
                        values.append("")
                if not seen:
                    continue  # a phase the engine does not have (micrograd has no jvp)
                flat = flatness(cells, phase)
                if not math.isnan(flat) and phase != "teardown" and "/" not in engine:
                    worst_flatness[engine] = max(worst_flatness.get(engine, 0.0), flat)
                rows.append((f"{ENGINE_LABEL[engine]} {PHASE_LABEL[phase]}", *values, fmt_ratio(flat)))
        notes = [
            "median over repeats and rounds, each (engine, shape, size) in a fresh process, engines interleaved",
            f"max/min = largest over smallest time per node across sizes; issue 6 asks <= {FLATNESS_GOAL}x",
            "teardown = dropping the graph plus gc.collect(), less an empty gc.collect() "
            "(micrograd's graph is cyclic: only the collector frees it)",
            "'gc off' rows: the same with gc.disable() in the worker: how much of any growth is the collector's",
        ]
        notes += [reason for engine, reason in config.caps_reason.items() if engine in config.size_caps]
        if shape == "chain" and "micrograd" in probes:
            probe = probes["micrograd"]
            if probe["failure"]:
                notes.append(
                    f"micrograd's backward raises RecursionError on chains deeper than {probe['deepest_ok']} nodes "
                    f"(recursion limit {probe['recursion_limit']}; its topological sort recurses), "
                    "so its chain backward fails at every size here"
                )
        tables.append(Table(title=title, header=("engine / phase", *size_header, "max/min"), rows=rows, notes=notes))
    return tables, worst_flatness


def flatness_notes(summary: ScalingSummary) -> list[str]:
    """Where refgrad's time per node grows most, with the collector on and off: what bounds flatness."""
    notes: list[str] = []

    def ranked(engine: str) -> list[tuple[float, str, str]]:
        found = [
            (flatness(cells, phase), shape, phase)
            for shape, cells in summary.get(engine, {}).items()
            for phase in PHASES
            if phase != "teardown"
        ]
        return sorted((item for item in found if not math.isnan(item[0])), reverse=True)

    on, off = ranked("refgrad"), ranked("refgrad/gc-off")
    if not on or on[0][0] <= FLATNESS_GOAL:
        return notes
    worst, shape, phase = on[0]
    same_off = next((value for value, s, p in off if (s, p) == (shape, phase)), math.nan)
    notes.append(
        f"refgrad's time per node grows most in {shape} {phase}: {worst:.1f}x from the smallest to the largest "
        f"graph with the garbage collector on, {same_off:.1f}x with gc.disable()"
    )
    if off:
        worst_off, shape_off, phase_off = off[0]
        notes.append(
            f"with the collector off the worst growth is {shape_off} {phase_off}, {worst_off:.1f}x; "
            f"{sum(1 for value, _, _ in off if value <= FLATNESS_GOAL)} of {len(off)} shape/phase pairs are within "
            f"{FLATNESS_GOAL}x"
        )
    notes.append(
        "what bounds it: nodes are GC-tracked objects (though acyclic), so CPython's full collections re-traverse "
        "the whole live graph as it grows; with the collector off, what remains is memory locality: at 10^6 nodes "
        "the gradient dict and the nodes no longer fit in cache"
    )
    return notes


def scaling_series(summary: ScalingSummary) -> Series:
    """The plot's lines: (engine, shape, phase) -> [(size, microseconds per node)]."""
    series: Series = {}
    for engine, shapes in summary.items():
        for shape, cells in shapes.items():
            for size in sorted(cells):
                for phase, value in cells[size]["micros"].items():
                    if phase != "teardown":
                        series.setdefault((engine, shape, phase), []).append((size, value))
    return series


# Oracle and profile --------------------------------------------------------------------------


def oracle_table(result: OracleResult | None) -> Table:
    """Graphs the oracle checks per second, one process and more, on the same campaign."""
    rows: list[tuple[str, ...]] = []
    if result is None or not result["available"]:
        rows = [("refgrad.oracle", "not available", "", "", "")]
    else:
        base = result["runs"][0]["graphs"] / result["runs"][0]["seconds"] if result["runs"] else math.nan
        for run in result["runs"]:
            rate = run["graphs"] / run["seconds"]
            rows.append(
                (
                    f"verify -j {run['jobs']}",
                    f"{rate:.0f}",
                    f"{rate / base:.2f}x",
                    f"{run['graphs']} graphs in {run['seconds']:.2f} s ({run['total_seconds']:.2f} s in all)",
                    f">= {ORACLE_GOAL:.0f}: {'ok' if rate >= ORACLE_GOAL else 'MISSED'}"
                    if run["jobs"] == 1
                    else f">= 1.7x: {'ok' if rate / base >= SPEEDUP_GOAL else 'MISSED'}",
                )
            )
    detail = result["detail"] if result else "not run"
    return Table(
        title="Oracle: graphs checked per second (torch, the exact reference and finite differences), by processes",
        header=("run", "graphs/s", "vs -j 1", "campaign", "goal"),
        rows=rows,
        notes=[
            detail,
            "the same campaign (seed 0) each time: the same programs and the same report; seconds are the random "
            "graphs' wall time, the workers' start-up included",
        ],
    )


def profile_tables(results: Mapping[str, ProfileResult]) -> list[Table]:
    """Top functions by own time, per engine."""
    tables: list[Table] = []
    for engine, result in results.items():
        rows = [
            (
                entry["function"],
                f"{entry['calls']:,}",
                f"{entry['own_share'] * 100:.1f}%",
                f"{entry['cumulative_share'] * 100:.1f}%",
            )
            for entry in result["top"]
        ]
        tables.append(
            Table(
                title=f"Profile: {ENGINE_LABEL[engine]} training step (cProfile, {result['steps']} steps)",
                header=("function", "calls", "own time", "cumulative"),
                rows=rows,
                notes=[
                    f"shares of cProfile's total; unprofiled, {result['gc_share'] * 100:.0f}% of the step is in the "
                    "garbage collector (cProfile charges it to whatever allocated)"
                ],
            )
        )
    return tables


# Environment and documents -------------------------------------------------------------------


class Machine(TypedDict):
    """What the figures were measured on."""

    cpu: str
    cores: int
    python: str
    torch: str
    micrograd: str
    refgrad_commit: str
    date: str
    platform: str


def machine() -> Machine:
    """CPU model, core count, versions, date (no engine is imported here)."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, cwd=REPO
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "refgrad"], capture_output=True, text=True, check=True, cwd=REPO
        ).stdout.strip()
        if changed:
            commit += " plus uncommitted changes"
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return Machine(
        cpu=cpu,
        cores=os.cpu_count() or 0,
        python=platform.python_version(),
        torch=version("torch"),
        micrograd=version("micrograd"),
        refgrad_commit=commit,
        date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        platform=platform.platform(),
    )


def machine_line(info: Machine) -> str:
    """One line naming the machine and versions."""
    return (
        f"{info['cpu']}, {info['cores']} cores; Python {info['python']}, torch {info['torch']}, "
        f"micrograd {info['micrograd']}, refgrad at {info['refgrad_commit']}; {info['date']}"
    )


def write_document(
    tables: Sequence[Table], info: Machine, elapsed: float, config: Config, plots: Sequence[Path]
) -> None:
    """Regenerate docs/performance.md from this run."""
    parts = [
        "# Performance",
        "",
        "<!-- Generated by `nox -s bench` (tests/benchmarks/bench_training.py); edits here are overwritten. -->",
        "",
        "How refgrad's cost compares with micrograd 0.1.0 (PyPI) and PyTorch scalar autograd, and how it grows",
        "with the graph. Every figure comes from one run of `nox -s bench`; every engine ran in a fresh process",
        "for every measurement round, rounds interleaved between engines, on the same machine.",
        "",
        f"- **Machine:** {info['cpu']}, {info['cores']} cores ({info['platform']})",
        f"- **Versions:** Python {info['python']}, torch {info['torch']} (CPU, float64, one thread), "
        f"micrograd {info['micrograd']}, refgrad at commit `{info['refgrad_commit']}`",
        f"- **Date:** {info['date']}; the whole run took {elapsed / 60:.1f} minutes",
        "- **Raw results:** `tests/benchmarks/results/latest.json`",
        "",
        "The machine is shared, so single figures move by some percent between runs; the ratios, measured",
        "in the same run with interleaved rounds, are the figures to compare.",
        "",
    ]
    for table in tables:
        parts += [render_markdown(table, heading_level=2), ""]
    for plot in plots:
        relative = plot.relative_to(DOC.parent)
        parts += [f"![{plot.stem}]({relative.as_posix()})", ""]
    parts += [
        "## Large graphs and the collector",
        "",
        "refgrad makes no reference cycles (a node refers only to nodes made before it, its registry entry,",
        "its parameters and its label), so reference counting frees each node the moment it is unused and",
        "CPython's cyclic collector finds nothing among them; but it still scans them, every 700 new objects,",
        "which is the 'gc' column above. `refgrad.collector_paused()` is an opt-in context manager that",
        "turns the collector off for a block (`gc.disable()`) and restores its state after it, whatever the block",
        "raises:",
        "",
        "```python",
        "import refgrad",
        "",
        "parameters = [refgrad.Value(0.5), refgrad.Value(-1.5)]",
        "with refgrad.collector_paused():",
        "    for step in range(100):",
        "        loss = (parameters[0] * parameters[1] - 1.0) ** 2.0",
        "        grads = loss.backward()",
        "        parameters = [refgrad.Value(p.data - 0.1 * grads[p]) for p in parameters]",
        "print(round(parameters[0].data * parameters[1].data, 6))",
        "```",
        "",
        "```text",
        "1.0",
        "```",
        "",
        "It is opt-in because the collector is the process's: inside the block, cycles that other code makes wait",
        "until the block ends (cycles your own code makes through refgrad's objects too: a label that holds its",
        "node, an op of your own whose forward keeps its nodes). refgrad never turns the collector off by",
        "itself. micrograd 0.1.0 cannot do the same: each of its nodes' `_backward` closures refers to the",
        "node, so its graphs are cycles that only the collector frees.",
        "",
        "## How it is measured",
        "",
        "- **Training step:** micrograd's demo. Two-moons points are generated in the benchmark with",
        "  scikit-learn's geometry and a fixed seed; every engine starts from the same weights (micrograd's",
        "  initialisation, seeded), so every engine computes the same losses step after step, and the run checks",
        "  that before it reports a ratio. refgrad builds the MLP from `refgrad.Value` leaves, takes gradients",
        "  with `loss.backward()` and updates functionally (new leaves); the micrograd surface and micrograd use",
        "  `zero_grad`, `loss.backward()` and `p.data -= lr * p.grad`; torch uses 0-d float64 tensors and",
        "  `loss.backward()`. Warm-up steps are discarded, then the median of the measured steps is reported.",
        "- **Bytes per node:** `tracemalloc` around making many nodes of one kind from operands made beforehand,",
        "  so a figure is the node object, the float it holds and any per-node parameter tuple; resident-set",
        "  growth is a cross-check and the only measure for torch, whose nodes live in C++.",
        "- **Building a node:** `x * y` on leaves made beforehand, many times in one process with every node kept,",
        "  each engine and two ways of filling refgrad's node interleaved; the fill rows call the kernel's",
        "  constructor directly, or write the same node's slots one by one through their descriptors.",
        "- **Graph shapes:** a chain multiplies by the same leaf n times (depth n); a wide sum adds n + 1 leaves",
        "  as a balanced tree (depth log2 n), leaves built inside the timed region. Time per op node for build,",
        "  `backward()`, `refgrad.grad(..., create_graph=True)` (torch: `autograd.grad(..., create_graph=True)`),",
        "  `refgrad.jvp` and tear-down.",
        "- **Garbage collector:** the training step's time inside the collector is measured with `gc.callbacks`;",
        "  the side experiment reruns refgrad, the micrograd surface and micrograd with `gc.disable()`, and refgrad",
        f"  and the surface with `gc.set_threshold{TUNED_THRESHOLDS}`; the scaling tables add refgrad with the",
        "  collector off, which separates the collector's share of any growth from the engine's.",
        "- **Oracle:** `refgrad.oracle.verify(RefgradEngine(), examples=..., jobs=1)`, then `jobs=2` on the same",
        "  campaign, after a small warm-up, torch on one thread per process; graphs per second as the report counts",
        "  them (generation, torch, the exact reference and finite differences; for -j 2 the workers' start-up too).",
        "- **Profile:** cProfile over a few training steps in a fresh process; shares of cProfile's total.",
        f"- **Run:** `nox -s bench` ({config.rounds} training rounds, scaling sizes "
        f"{', '.join(f'10^{round(math.log10(s))}' for s in config.sizes)}). "
        "`python tests/benchmarks/bench_training.py --quick --no-docs` is a one-minute smoke run.",
        "",
    ]
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text("\n".join(parts), encoding="utf-8")


def without_nan(data: object) -> object:
    """``data`` with every NaN (a figure not measured) replaced by ``None``, so the JSON is standard."""
    if isinstance(data, float) and math.isnan(data):
        return None
    if isinstance(data, Mapping):
        return {key: without_nan(value) for key, value in cast("Mapping[object, object]", data).items()}
    if isinstance(data, list | tuple):
        return [without_nan(item) for item in cast("list[object] | tuple[object, ...]", data)]
    return data


# Main ----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected suites, print the tables, write the JSON and (full runs) the docs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one round: a smoke run")
    parser.add_argument("--only", default=",".join(SUITES), help=f"comma-separated suites from {', '.join(SUITES)}")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the raw results")
    parser.add_argument("--no-docs", action="store_true", help="do not regenerate docs/performance.md and plots")
    parser.add_argument("--docs", action="store_true", help="regenerate the docs even from a --quick or partial run")
    args = parser.parse_args(argv)
    suites = [s.strip() for s in str(args.only).split(",") if s.strip()]
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        parser.error(f"unknown suite(s): {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    config = QUICK if args.quick else FULL
    write_docs = args.docs or (not args.no_docs and not args.quick and set(suites) == set(SUITES))
    started = time.perf_counter()
    info = machine()
    failures: dict[str, str] = {}
    raw: dict[str, object] = {"machine": info, "config": asdict(config) | {"repeats": dict(config.repeats)}}
    tables: list[Table] = []
    measured: dict[str, float] = {}
    training_summary: dict[str, TrainingSummary] = {}

    if "training" in suites:
        training_results = run_training(config, failures)
        training_summary = summarize_training(training_results)
        agreement = loss_agreement(training_results)
        raw["training"] = {"runs": training_results, "summary": training_summary, "loss_agreement": agreement}
        micrograd_step = step_of(training_summary, "micrograd")
        measured["refgrad_vs_micrograd"] = ratio(micrograd_step, step_of(training_summary, "refgrad"))
        measured["refgrad_vs_torch"] = ratio(step_of(training_summary, "torch"), step_of(training_summary, "refgrad"))
        measured["compat_vs_micrograd"] = ratio(micrograd_step, step_of(training_summary, "compat"))
        if "refgrad/paused" in training_summary:
            paused_step = step_of(training_summary, "refgrad/paused")
            measured["paused_vs_micrograd"] = ratio(micrograd_step, paused_step)
            measured["paused_vs_torch"] = ratio(step_of(training_summary, "torch"), paused_step)
        tables += training_tables(training_summary, config, agreement)
    if "memory" in suites:
        memory_results = run_memory(config, failures)
        raw["memory"] = memory_results
        traced = memory_results.get("refgrad", MemoryResult(engine="refgrad", tracemalloc=None, rss={}))["tracemalloc"]
        if traced is not None:
            measured["bytes_per_product"] = traced["mul"]
        tables.append(memory_table(memory_results, config))
    if "build" in suites:
        build_result = run_build(config, failures)
        raw["build"] = build_result
        if build_result is not None:
            tables.append(build_table(build_result, config))
    scaling_summary: ScalingSummary = {}
    if "scaling" in suites:
        scaling_results, probes = run_scaling(config, failures)
        scaling_summary = summarize_scaling(scaling_results)
        raw["scaling"] = {"runs": scaling_results, "summary": scaling_summary, "recursion_probes": probes}
        shape_tables, worst = scaling_tables(scaling_summary, probes, config)
        tables += shape_tables
        raw["flatness"] = worst
        for engine in ("refgrad", "compat"):
            if engine in worst:
                measured[f"{engine}_flatness"] = worst[engine]
    if "oracle" in suites:
        progress("oracle")
        oracle_result: OracleResult | None = None
        try:
            oracle_result = cast(
                "OracleResult", run_job("oracle", {"graphs": config.oracle_graphs, "jobs": list(config.oracle_jobs)})
            )
        except JobError as error:
            failures["oracle"] = str(error)
        raw["oracle"] = oracle_result
        if oracle_result is not None and oracle_result["available"] and oracle_result["seconds"] > 0:
            measured["oracle_rate"] = oracle_result["graphs"] / oracle_result["seconds"]
            rates = {run["jobs"]: run["graphs"] / run["seconds"] for run in oracle_result["runs"] if run["seconds"]}
            if 1 in rates and 2 in rates:
                measured["oracle_speedup"] = rates[2] / rates[1]
        tables.append(oracle_table(oracle_result))
    if "profile" in suites:
        profiles: dict[str, ProfileResult] = {}
        for engine in ("refgrad", "compat"):
            progress(f"profile: {engine}")
            params = {"engine": engine, "steps": config.profile_steps, "top": config.profile_top}
            try:
                profiles[engine] = cast("ProfileResult", run_job("profile", params))
            except JobError as error:
                failures[f"profile {engine}"] = str(error)
        raw["profile"] = profiles
        tables += profile_tables(profiles)

    elapsed = time.perf_counter() - started
    if failures:
        tables.append(Table(title="Failures", header=("job", "error"), rows=list(failures.items())))
    goals = goals_table(measured)
    if scaling_summary:
        goals.notes.extend(flatness_notes(scaling_summary))
    tables.insert(0, goals)
    raw["goals"] = measured
    raw["failures"] = failures
    raw["elapsed_seconds"] = elapsed
    print(f"refgrad benchmarks: {machine_line(info)}\n")
    for table in tables:
        print(render_text(table), end="\n\n")
    print(f"total time: {elapsed:.0f} s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(without_nan(raw), indent=1, default=str) + "\n", encoding="utf-8")
    progress(f"results written to {args.json}")
    if write_docs:
        plots: list[Path] = []
        subtitle = f"{info['cpu']}, Python {info['python']}, {info['date']}"
        if scaling_summary:
            write_plot(scaling_series(scaling_summary), SCALING_PLOT, subtitle)
            plots.append(SCALING_PLOT)
        if training_summary:
            step_ms = {
                f"{ENGINE_LABEL[e]}": {
                    p: training_summary[e]["phases"][p] * 1e3 for p in ("forward", "backward", "update", "release")
                }
                for e in ENGINES
                if e in training_summary
            }
            steps = {
                ENGINE_LABEL[e]: training_summary[e]["phases"]["step"] * 1e3 for e in ENGINES if e in training_summary
            }
            write_training_plot(step_ms, steps, TRAINING_PLOT, subtitle)
            plots.append(TRAINING_PLOT)
        write_document(tables, info, elapsed, config, plots)
        progress(f"wrote {DOC.relative_to(REPO)} and {', '.join(str(p.relative_to(REPO)) for p in plots)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
