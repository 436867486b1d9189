"""A verification run: many random programs on one engine, tallied per op, the first failure shrunk.

:func:`verify` draws programs with hypothesis (seeded, no example database, so
the same seed gives the same run), checks each with
:func:`~refgrad.oracle.compare.check_program`, and lets hypothesis shrink the
first disagreement to a small counterexample. Ops the engine cannot run are
found by probing first and left out (:func:`~refgrad.oracle.engines.probe`).
"""

from __future__ import annotations

import importlib
import math
import pkgutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol, cast

from hypothesis import Phase, Verbosity, given, seed, settings

from refgrad.ops import registry
from refgrad.oracle._arguments import engine_argument, op_names_argument, order_argument
from refgrad.oracle.compare import CheckKind, Outcome, check_program
from refgrad.oracle.engines import (
    Engine,
    EngineRun,
    EngineSpecError,
    ForwardModeEngine,
    ForwardModeRun,
    MicrogradStyleEngine,
    Probed,
    SecondOrderEngine,
    SecondOrderRun,
    describe_form,
    probe_forms,
    start_run,
)
from refgrad.oracle.findings import BROKEN_OP, DISAGREEMENT, LITTLE_CHECKED, Finding
from refgrad.oracle.program import Form, Program
from refgrad.oracle.strategies import OutOfDomain, all_forms, programs
from refgrad.value import as_count

__all__ = ["OpStats", "Progress", "VerificationReport", "verify"]

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each program of the generation phase."""


@dataclass(slots=True)
class OpStats:
    """Counts for one op over a run: graphs using it, checks exercising it by kind, skips, worst error/tolerance."""

    graphs: int = 0
    value: int = 0
    gradient: int = 0
    finite_difference: int = 0
    domain: int = 0
    forward_mode: int = 0
    """Forward-mode checks: against ``torch.func.jvp`` and against the engine's own reverse mode."""
    second_order: int = 0
    """Hessian entries against torch's double backward (and second-order domain agreements)."""
    second_order_fd: int = 0
    """Hessian entries against finite differences of the engine's own gradients."""
    skipped: int = 0
    worst: float = 0.0

    @property
    def checks(self) -> int:
        """All checks exercising the op."""
        return (
            self.value
            + self.gradient
            + self.finite_difference
            + self.domain
            + self.forward_mode
            + self.second_order
            + self.second_order_fd
        )


def _count(stats: OpStats, kind: CheckKind) -> None:
    if kind == "value":
        stats.value += 1
    elif kind == "gradient":
        stats.gradient += 1
    elif kind == "finite-difference":
        stats.finite_difference += 1
    elif kind == "domain":
        stats.domain += 1
    elif kind in ("forward-mode", "forward-vs-reverse"):
        stats.forward_mode += 1
    elif kind == "second-order":
        stats.second_order += 1
    else:
        stats.second_order_fd += 1


@dataclass(slots=True)
class _Tally:
    stats: dict[str, OpStats]
    skip_reasons: Counter[str] = field(default_factory=Counter[str])
    kinds: Counter[str] = field(default_factory=Counter[str])
    graphs: int = 0
    nodes: int = 0
    deepest: int = 0
    out_of_domain: int = 0

    def add(self, outcome: Outcome) -> None:
        program = outcome.program
        self.graphs += 1
        self.nodes += program.node_count
        self.deepest = max(self.deepest, program.depth())
        for op in program.ops():
            self.stats[op].graphs += 1
        for check in outcome.checks:
            self.kinds[check.kind] += 1
            if check.kind == "domain":
                self.out_of_domain += 1
            for op in check.ops:
                stats = self.stats[op]
                _count(stats, check.kind)
                stats.worst = max(stats.worst, check.ratio)
        for skip in outcome.skips:
            self.skip_reasons[f"{skip.kind}: {skip.reason}"] += 1
            for op in skip.ops:
                self.stats[op].skipped += 1


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """The result of :func:`verify`."""

    engine: str
    seed: int
    requested: int
    graphs: int
    """Programs checked before the first failure (all of them if none failed)."""
    seconds: float
    stats: Mapping[str, OpStats]
    """Per op, in registry order (ops left out are absent)."""
    unsupported: Mapping[str, str]
    """Left out because the engine cannot run them: description to reason."""
    skip_reasons: Mapping[str, int]
    checks: Mapping[str, int]
    """Checks made, by kind (each counted once, however many ops it exercised)."""
    mean_nodes: float
    deepest: int
    out_of_domain: int
    """Programs whose outcome was a domain check (torch not finite, or the engine signalled)."""
    failure: Outcome | None
    """The shrunk first disagreement, if any."""
    failure_script: str | None
    order: int = 1
    """1: values and first derivatives; 2: second derivatives too."""
    forward_mode: bool = False
    """Whether the engine has forward mode, so forward-mode checks were made (they are made in every run if so)."""
    findings: tuple[Finding, ...] = ()
    """Everything the run found, defects first: broken ops, the shrunk disagreement, warnings."""
    forms_checked: int = 0
    """Operand forms (``pow (x, c)``, ``neg``, ...) drawn in the random programs."""
    forms_asked: int = 0
    """Operand forms the run was asked to check (every registry op's, or those of ``ops``)."""

    @property
    def passed(self) -> bool:
        """No defect: nothing broken, no check disagreed (warnings do not fail a run)."""
        return self.failure is None and not self.defects

    @property
    def defects(self) -> tuple[Finding, ...]:
        """The findings that fail the run."""
        return tuple(finding for finding in self.findings if finding.severity == "defect")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        """The findings that do not."""
        return tuple(finding for finding in self.findings if finding.severity == "warning")

    @property
    def graphs_per_second(self) -> float:
        """Programs checked per second of wall time (generation, references and engine together)."""
        return self.graphs / self.seconds if self.seconds > 0 else math.inf


def _load_every_refgrad_module() -> None:
    """Import all of refgrad, so that a seed means the same run whoever calls :func:`verify`.

    hypothesis mixes numbers written in the project's loaded (non-test)
    modules into what it draws; with refgrad only partly imported, which part
    would change the run.
    """
    import refgrad

    for module in pkgutil.walk_packages(refgrad.__path__, prefix="refgrad."):
        if module.name.endswith("__main__"):
            continue  # running the command line is not importing it
        try:
            importlib.import_module(module.name)
        except ImportError:
            continue  # an optional dependency missing here: the same every time in this environment


_MAX_SHRINK_STOPS: Final = 10
"""Hangs or crashes of an engine in a worker tolerated while shrinking: each costs a timeout and a restart."""


class _Watched:
    """An engine whose last run is remembered: did its worker hang or die (a ``"process"`` failure)?"""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.stopped = False

    @property
    def name(self) -> str:
        return self._engine.name

    @property
    def strict(self) -> bool:
        return self._engine.strict

    def run(self, program: Program) -> EngineRun:
        return self.start(program)()

    def start(self, program: Program) -> Callable[[], EngineRun]:
        finish = start_run(self._engine, program)

        def watched() -> EngineRun:
            run = finish()
            self.stopped = run.failure is not None and run.failure.stage == "process"
            return run

        return watched

    def script(self, program: Program) -> str:
        return self._engine.script(program)


class _WatchedForward(_Watched):
    """A watched engine with forward mode: forwarded, so that the checks see the capability."""

    def __init__(self, engine: ForwardModeEngine) -> None:
        super().__init__(engine)
        self._forward = engine

    def forward_mode(self, program: Program, tangents: Sequence[float]) -> ForwardModeRun:
        return self._forward.forward_mode(program, tangents)


class _WatchedSecondOrder(_Watched):
    """A watched engine with second order, forwarded likewise."""

    def __init__(self, engine: SecondOrderEngine) -> None:
        super().__init__(engine)
        self._second = engine

    def second_order(self, program: Program) -> SecondOrderRun:
        return self._second.second_order(program)


class _WatchedBoth(_WatchedForward):
    """A watched engine with both capabilities."""

    def __init__(self, engine: _BothCapabilities) -> None:
        super().__init__(engine)
        self._second = engine

    def second_order(self, program: Program) -> SecondOrderRun:
        return self._second.second_order(program)


class _BothCapabilities(SecondOrderEngine, ForwardModeEngine, Protocol):
    """An engine with second order and forward mode."""


def _watch(engine: Engine) -> _Watched:
    """``engine`` wrapped to remember process failures, keeping exactly the capabilities it has."""
    if isinstance(engine, SecondOrderEngine) and isinstance(engine, ForwardModeEngine):
        return _WatchedBoth(cast("_BothCapabilities", engine))
    if isinstance(engine, ForwardModeEngine):
        return _WatchedForward(engine)
    if isinstance(engine, SecondOrderEngine):
        return _WatchedSecondOrder(engine)
    return _Watched(engine)


class _DisagreementError(Exception):
    """Raised inside the property so that hypothesis shrinks the program."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.failures[0].detail)
        self.outcome = outcome


def _counts(examples: object, seed_value: object, max_steps: object) -> tuple[int, int, int]:
    """``verify``'s counts checked."""
    return (
        as_count(examples, "examples"),
        as_count(seed_value, "seed_value", minimum=None),
        as_count(max_steps, "max_steps"),
    )


def _check_the_rest(progress: object, out_of_domain: object) -> None:
    """``verify``'s other arguments checked."""
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a callable (done, total) or None, got {type(progress).__name__}")
    if out_of_domain not in ("never", "sometimes", "always"):
        raise ValueError(f"out_of_domain must be 'never', 'sometimes' or 'always', got {out_of_domain!r:.80}")


def _without_dead_steps(failure: Outcome, engine: Engine, order: Literal[1, 2]) -> Outcome:
    """The shrunk failure on its program pruned to what the output depends on, if that still fails.

    Shrinking usually gets there, but not always (hypothesis stops shrinking after a few minutes,
    and a dead step can be as small as hypothesis can make it). An engine whose answer depends on
    nodes the output does not use keeps its unpruned counterexample.
    """
    pruned = failure.program.pruned()
    if pruned == failure.program:
        return failure
    outcome = check_program(pruned, engine, order=order)
    return failure if outcome.passed else outcome


def _check_drivable(engine: Engine) -> None:
    """``EngineSpecError`` (one line) for a micrograd-style class that cannot be driven at all."""
    if isinstance(engine, MicrogradStyleEngine):
        why = engine.undrivable()
        if why is not None:
            raise EngineSpecError(f"{engine.name} cannot be driven: {why}")


def _check_order(engine: Engine, order: int) -> None:
    if order == 2 and not isinstance(engine, SecondOrderEngine):
        raise ValueError(
            f"order 2 needs an engine that can differentiate its own gradients; {engine.name} cannot "
            "(its gradients are floats)"
        )


def _probe(engine: Engine, ops: Iterable[str] | None) -> tuple[Probed, tuple[tuple[str, Form], ...], int]:
    """What probing found, the forms left to draw (neither unsupported nor broken), how many were asked for."""
    candidates = all_forms(ops)
    probed = probe_forms(engine, candidates)
    forms = tuple(pair for pair in candidates if pair not in probed.unsupported and pair not in probed.broken)
    return probed, forms, len(candidates)


def _probe_findings(engine: Engine, probed: Probed, checked: int, asked: int) -> list[Finding]:
    """Broken forms (defects), and a warning when fewer than half of the forms asked for can be checked."""
    findings = [
        Finding(
            BROKEN_OP,
            op,
            describe_form(op, form),
            f"{describe_form(op, form)}: {failure.describe()}",
            program,
            engine.script(program),
        )
        for (op, form), (failure, program) in probed.broken.items()
    ]
    if 2 * checked < asked:
        findings.append(Finding(LITTLE_CHECKED, None, None, f"checked {checked} of {asked} op forms"))
    return findings


def _disagreement(failure: Outcome, script: str) -> Finding:
    """The shrunk first disagreement as a finding, named by its op when it uses only one."""
    first = failure.failures[0]
    ops = sorted(failure.program.ops())
    summary = (
        f"{first.kind} check on a program of {len(failure.program.steps)} step(s) using "
        f"{', '.join(ops) or 'no op'}: {first.detail}"
    )
    return Finding(DISAGREEMENT, ops[0] if len(ops) == 1 else None, None, summary, failure.program, script)


def verify(
    engine: Engine,
    *,
    examples: int,
    seed_value: int = 0,
    ops: Iterable[str] | None = None,
    progress: Progress | None = None,
    max_steps: int = 40,
    out_of_domain: OutOfDomain = "sometimes",
    order: Literal[1, 2] = 1,
) -> VerificationReport:
    """Check ``examples`` random programs on ``engine``; shrink and return the first failure, if any.

    ``ops`` restricts the ops drawn (default: all of the registry); ops or
    operand forms the engine cannot run are probed for and left out. Forward
    mode is checked whenever the engine has it; ``order=2`` also checks second
    derivatives and needs an engine that can differentiate its own gradients
    (``ValueError`` naming the engine otherwise).
    """
    engine = engine_argument(engine)
    _check_drivable(engine)
    examples, seed_value, max_steps = _counts(examples, seed_value, max_steps)
    order = order_argument(order)
    ops = None if ops is None else op_names_argument(ops)
    _check_the_rest(progress, out_of_domain)
    _check_order(engine, order)
    forward_mode = isinstance(engine, ForwardModeEngine)
    _load_every_refgrad_module()
    probed, forms, asked = _probe(engine, ops)
    unsupported_text = {describe_form(op, form): reason for (op, form), reason in probed.unsupported.items()}
    findings = _probe_findings(engine, probed, len(forms), asked)
    used = {op for op, _ in forms}
    tally = _Tally({spec.name: OpStats() for spec in registry if spec.name in used})
    started = time.perf_counter()
    if not forms:
        return VerificationReport(
            engine.name,
            seed_value,
            examples,
            0,
            0.0,
            tally.stats,
            unsupported_text,
            {},
            {},
            0.0,
            0,
            0,
            None,
            None,
            order=order,
            forward_mode=forward_mode,
            findings=tuple(findings),
            forms_checked=len(forms),
            forms_asked=asked,
        )
    failing = False
    generation_ended: float | None = None
    watched = _watch(engine)
    stops_while_shrinking = 0
    failed: dict[Program, Outcome] = {}

    def check(program: Program) -> None:
        nonlocal failing, generation_ended, stops_while_shrinking
        if stops_while_shrinking >= _MAX_SHRINK_STOPS:
            # Enough timeouts: hypothesis sees every new candidate pass, so shrinking ends at the
            # smallest failure so far, and its final replay of that one fails as before.
            if program in failed:
                raise _DisagreementError(failed[program])
            return
        outcome = check_program(program, watched, order=order)
        if failing and watched.stopped:
            stops_while_shrinking += 1
        if not failing:
            tally.add(outcome)
            if progress is not None:
                progress(tally.graphs, examples)
        if not outcome.passed and not failing:
            failing = True
            generation_ended = time.perf_counter()
        if not outcome.passed:
            failed[program] = outcome
            raise _DisagreementError(outcome)

    run = settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=(Phase.generate, Phase.shrink),
        verbosity=Verbosity.quiet,
        report_multiple_bugs=False,
        print_blob=False,
        suppress_health_check=(),
    )(seed(seed_value)(given(programs(forms=forms, max_steps=max_steps, out_of_domain=out_of_domain))(check)))
    failure: Outcome | None = None
    try:
        run()
    except _DisagreementError as found:
        failure = _without_dead_steps(found.outcome, watched, order)
    if failure is not None:
        findings.insert(len(probed.broken), _disagreement(failure, engine.script(failure.program)))
    # Shrinking is not checking new graphs: the rate counts the generation phase only.
    seconds = (generation_ended or time.perf_counter()) - started
    graphs = max(tally.graphs, 1)
    return VerificationReport(
        engine=engine.name,
        seed=seed_value,
        requested=examples,
        graphs=tally.graphs,
        seconds=seconds,
        stats=tally.stats,
        unsupported=unsupported_text,
        skip_reasons=dict(tally.skip_reasons),
        checks=dict(tally.kinds),
        mean_nodes=tally.nodes / graphs,
        deepest=tally.deepest,
        out_of_domain=tally.out_of_domain,
        failure=failure,
        failure_script=None if failure is None else engine.script(failure.program),
        order=order,
        forward_mode=forward_mode,
        findings=tuple(findings),
        forms_checked=len(forms),
        forms_asked=asked,
    )
