"""A verification run: structured programs, then random ones, on one engine; every finding in one report.

:func:`verify` probes which op forms the engine has (:func:`~refgrad.oracle.engines.probe_forms`),
runs the structured programs of :mod:`refgrad.oracle.campaigns` (each op alone, at kinks and
edges, shared nodes, chains), then draws random programs with hypothesis (seeded, no example
database, so the same seed gives the same run), checks each with
:func:`~refgrad.oracle.compare.check_program`, and lets hypothesis shrink a failure at ordinary
inputs to a small counterexample. :mod:`refgrad.oracle.diagnosis` turns each failure into a
finding of a kind from :mod:`refgrad.oracle.findings`, a defect or a warning.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import pkgutil
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Literal, Protocol, cast

from hypothesis.errors import Flaky

from refgrad.numeric import as_count
from refgrad.ops import OpSpec
from refgrad.oracle._arguments import engine_argument, flag_argument, op_names_argument, order_argument
from refgrad.oracle.blocks import (
    BLOCK_SIZE,
    Block,
    BlockResult,
    Drawing,
    Shard,
    campaign_blocks,
    check_block,
    hypothesis_run,
    merged_edges,
    shard_argument,
)
from refgrad.oracle.checks import SECOND_ORDER_NEEDS_TORCH, Outcome
from refgrad.oracle.compare import checked
from refgrad.oracle.diagnosis import edge_failure, failing, random_finding, run_structured
from refgrad.oracle.engines import (
    AccumulatingEngine,
    Engine,
    EngineRun,
    EngineSpecError,
    ForwardModeEngine,
    ForwardModeRun,
    MicrogradStyleEngine,
    Probed,
    RefgradEngine,
    RunStarter,
    SecondOrderEngine,
    SecondOrderRun,
    constants_are_plain,
    describe_form,
    probe_forms,
    second_order_refusal,
    start_run,
)
from refgrad.oracle.entries import entry_findings
from refgrad.oracle.findings import BROKEN_OP, LITTLE_CHECKED, NONDETERMINISTIC, Finding
from refgrad.oracle.optable import op_table, using_ops
from refgrad.oracle.parallel import Workers, jobs_argument
from refgrad.oracle.program import Form, Program
from refgrad.oracle.references import (
    ReferenceChoice,
    current_references,
    reference_argument,
    uses_torch,
    using_references,
)
from refgrad.oracle.strategies import OutOfDomain, all_forms
from refgrad.oracle.tally import OpStats, Tally

__all__ = [
    "OpStats",
    "Progress",
    "VerificationReport",
    "check_own_ops",
    "duplicate_finding",
    "verify",
]

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each program of the generation phase."""


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """The result of :func:`verify`."""

    engine: str
    seed: int
    requested: int
    graphs: int
    """Random programs checked (all that were asked for, unless a failure ended a round early)."""
    seconds: float
    """Wall time of drawing and checking the random programs (their rate: :attr:`graphs_per_second`)."""
    stats: Mapping[str, OpStats]
    """Per op, in registry order (the caller's own ops last) (ops left out are absent)."""
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
    """The counterexample of the first finding that fails the run (a defect; under ``strict`` any), if one has one."""
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
    strict: bool = False
    """Whether warnings fail the run too."""
    structured: int = 0
    """Fixed programs checked before the random ones: each op alone, at kinks and edges, shared nodes, chains."""
    total_seconds: float = 0.0
    """Wall time of the whole run: probing, structured programs, random programs, shrinking."""
    random_skipped: str | None = None
    """Why no random program was drawn, when none was (a composition defect every one would show)."""
    checked: tuple[str, ...] = ()
    """The op forms checked, as reports write them (``pow``, ``sub (c, x)``)."""
    accumulation: tuple[str, ...] | None = None
    """For an engine that keeps its gradients on its nodes: the ways of calling backward() more than once
    that were checked (``"twice"``, ``"a node reused by a second graph"``, ``"after zero_grad()"``);
    None for an engine that returns its gradients."""
    references: ReferenceChoice = "torch"
    """What the run checked against: ``torch``, ``mpmath`` (the exact reference) or ``both``."""
    checks_by_reference: Mapping[str, int] = field(default_factory=dict[str, int])
    """Numeric checks per reference they were made against (``torch``, ``mpmath``, ``finite differences``...)."""
    jobs: int = 1
    """Processes that checked the random programs (1: this one)."""
    shard: Shard | None = None
    """The part of the campaign checked, for a run of one shard (None: all of it)."""
    blocks: int = 0
    """Blocks of random programs (:data:`~refgrad.oracle.blocks.BLOCK_SIZE` each) in the run."""
    shards: int = 1
    """For a report merged from shards: how many (1 otherwise)."""

    @property
    def passed(self) -> bool:
        """No defect (and under ``strict``, no warning either)."""
        return not self.defects and not (self.strict and self.warnings)

    def status(self, op: str) -> str:
        """``"defect"`` when a defect names ``op``, ``"warning"`` when only warnings do, ``"ok"`` otherwise."""
        return _op_status(self, op)

    @property
    def verdict(self) -> Literal["pass", "fail"]:
        """``"pass"`` or ``"fail"``, as :attr:`passed` says."""
        return "pass" if self.passed else "fail"

    def to_dict(self) -> dict[str, object]:
        """The card as a JSON-ready dictionary (what ``verify --format json`` prints)."""
        return {
            "engine": self.engine,
            "verdict": self.verdict,
            "strict": self.strict,
            "seed": self.seed,
            "checked": list(self.checked),
            "unsupported": dict(self.unsupported),
            "accumulation": None if self.accumulation is None else list(self.accumulation),
            "graphs": self.graphs,
            "structured": self.structured,
            "seconds": round(self.total_seconds, 3),
            "references": self.references,
            "checks_by_reference": dict(self.checks_by_reference),
            "defects": len(self.defects),
            "warnings": len(self.warnings),
            "ops": {
                op: {
                    "status": _op_status(self, op),
                    "graphs": stats.graphs,
                    "checks": stats.checks,
                    "skipped": stats.skipped,
                    "worst": _json_ratio(stats),
                    "value_ulps": _json_ulps(stats.value_ulps),
                    "gradient_ulps": _json_ulps(stats.gradient_ulps),
                }
                for op, stats in self.stats.items()
            },
            "findings": [finding.to_dict() for finding in self.findings],
            # What `python -m refgrad merge` needs to add shards up exactly:
            "campaign": {
                "examples": self.requested,
                "block_size": BLOCK_SIZE,
                "blocks": -(-self.requested // BLOCK_SIZE),
            },
            "blocks_checked": self.blocks,
            "shard": None if self.shard is None else str(self.shard),
            "shards": self.shards,
            "jobs": self.jobs,
            "random_seconds": round(self.seconds, 3),
            "order": self.order,
            "forward_mode": self.forward_mode,
            "forms_checked": self.forms_checked,
            "forms_asked": self.forms_asked,
            "nodes": round(self.mean_nodes * self.graphs),
            "deepest": self.deepest,
            "out_of_domain": self.out_of_domain,
            "checks_by_kind": dict(self.checks),
            "skip_reasons": dict(self.skip_reasons),
            "random_skipped": self.random_skipped,
            "counts": {op: stats.counts() for op, stats in self.stats.items()},
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as one line of JSON."""
        return json.dumps(self.to_dict(), allow_nan=False)

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


def _json_ulps(ulps: float | None) -> float | str | None:
    """Worst ulps against the exact reference for JSON: a number, ``"inf"``, or None where none was measured."""
    if ulps is None:
        return None
    return "inf" if math.isinf(ulps) else round(ulps, 3)


def _op_status(report: VerificationReport, op: str) -> str:
    """``"defect"`` when a defect names the op, ``"warning"`` when only warnings do, ``"ok"`` otherwise."""
    severities = {finding.severity for finding in report.findings if finding.op == op}
    return "defect" if "defect" in severities else "warning" if severities else "ok"


def _json_ratio(stats: OpStats) -> float | None:
    """The worst error / tolerance for JSON: None where nothing was checked or a check had no tolerance."""
    return stats.worst if stats.checks and math.isfinite(stats.worst) else None


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


class _Watched(RunStarter):
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

    @property
    def plain_constants(self) -> bool:
        return constants_are_plain(self._engine)

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


class _WatchedAccumulating(_Watched):
    """A watched engine that keeps its gradients on its nodes, forwarded likewise (its accumulations are not watched:
    they come after the structured programs, and a hang there is their own failure)."""

    def __init__(self, engine: AccumulatingEngine) -> None:
        super().__init__(engine)
        self._accumulating = engine

    @property
    def keeps_gradients(self) -> bool:
        return self._accumulating.keeps_gradients

    @property
    def has_zero_grad(self) -> bool:
        return self._accumulating.has_zero_grad

    def accumulate(self, first: Program, then: Program, *, zero_grad: bool) -> EngineRun:
        return self._accumulating.accumulate(first, then, zero_grad=zero_grad)


def _watch(engine: Engine) -> _Watched:
    """``engine`` wrapped to remember process failures, keeping exactly the capabilities it has."""
    if isinstance(engine, AccumulatingEngine) and not isinstance(engine, SecondOrderEngine | ForwardModeEngine):
        return _WatchedAccumulating(engine)
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
    outcome = checked(pruned, engine, order=order)
    return failure if outcome.passed else outcome


def _check_drivable(engine: Engine) -> None:
    """``EngineSpecError`` (one line) for a micrograd-style class that cannot be driven at all."""
    if isinstance(engine, MicrogradStyleEngine):
        why = engine.undrivable()
        if why is not None:
            raise EngineSpecError(f"{engine.name} cannot be driven: {why}")


def _check_order(engine: Engine, order: int) -> None:
    refusal = second_order_refusal(engine) if order == 2 else None
    if refusal is not None:
        raise ValueError(refusal)


def _check_own_ops(engine: Engine, order: int) -> None:
    """:func:`check_own_ops`, and ``ValueError`` for an engine other than refgrad's."""
    own = [spec.name for spec in op_table.key]
    if own and not isinstance(engine, RefgradEngine):
        raise ValueError(
            f"ops of your own ({', '.join(own)}) are checked on refgrad's engine, which builds them from their "
            f"entries; {engine.name} cannot (use engine refgrad)"
        )
    check_own_ops(order)


def check_own_ops(order: int) -> None:
    """``ValueError`` naming the op where the run's own ops (:data:`~refgrad.oracle.optable.op_table`) fail checks.

    An entry's ``torch`` must name an elementwise torch function taking its operands and params;
    ``order=2`` needs one for every op.
    """
    if uses_torch():
        from refgrad.oracle.torch_reference import check_torch_names  # torch only where it is used

        check_torch_names()
    without = [spec.name for spec in op_table.key if spec.torch is None]
    if order == 2 and without:
        raise ValueError(
            f"order 2 needs torch's second derivatives of every op; {', '.join(without)} names no torch function "
            "(give its entry a torch name, or check it at order 1)"
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


_ROUNDS: Final = 4
"""Random rounds at most: a round ends at a failure; the next leaves out the op it blamed."""
_EDGE_CANDIDATES: Final = 6
"""Edge failures of random programs (the smallest, each with another set of ops) reduced and diagnosed."""


class _RandomPhase:
    """The random programs: blocks checked (here, or by workers) and diagnosed here, in block order as they come.

    Ordinary failures are diagnosed in rounds, earliest first: the round's failure is shrunk by
    replaying its block with shrinking on, and a finding blaming one op leaves that op's failures
    out of later rounds. Edge failures are reduced and diagnosed last, smallest first.
    """

    def __init__(
        self,
        engine: _Watched,
        tally: Tally,
        drawing: Drawing,
        *,
        progress: Progress | None,
        total: int,
    ) -> None:
        self.engine = engine
        self.tally = tally
        self.drawing = drawing
        self.progress = progress
        self.total = total

    def run(
        self, blocks: Sequence[Block], workers: Workers | None, findings: list[Finding], stop_at: int, strict: bool
    ) -> float:
        """Blocks checked and tallied in block order, diagnosed as they come; the checking's wall time returned.

        After each block, the rounds go on with the failures kept so far (the earliest failure whose
        ops avoid those blamed is the same whether later blocks are in yet or not), so a run that
        reaches ``stop_at`` failing findings stops there; blocks checked ahead by workers beyond
        that point are dropped. A hang or crash of the engine's process stops the run too.
        """
        started = time.perf_counter()
        diagnosing = 0.0
        results: list[BlockResult] = []
        rounds = _Rounds()
        done = 0
        progress = self.progress

        def tick() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, self.total)

        stream = self._here(blocks, tick) if workers is None else workers.results(self.drawing, blocks)
        try:
            for result in stream:
                results.append(result)
                self.tally.merge(result.tally)
                if workers is not None:
                    done += result.tally.graphs
                    if progress is not None:
                        progress(done, self.total)
                began = time.perf_counter()
                self._rounds(results, rounds, findings, stop_at, strict)
                diagnosing += time.perf_counter() - began
                if result.stopped is not None or failing(findings, strict) >= stop_at:
                    break
        finally:
            stream.close()
        seconds = time.perf_counter() - started - diagnosing
        for outcome in merged_edges(results)[:_EDGE_CANDIDATES]:
            finding = random_finding(outcome, self.engine, self.drawing.order, at_edge=True)
            if not duplicate_finding(finding, findings):
                findings.append(finding)
        return seconds

    def _here(self, blocks: Sequence[Block], tick: Callable[[], None]) -> Generator[BlockResult]:
        for block in blocks:
            yield check_block(self.engine, self.drawing, block, tick)

    def _rounds(
        self, results: Sequence[BlockResult], rounds: _Rounds, findings: list[Finding], stop_at: int, strict: bool
    ) -> None:
        """Rounds of ordinary failures while the blocks so far have one avoiding the ops blamed; findings appended."""
        while not rounds.ended and rounds.used < _ROUNDS and failing(findings, strict) < stop_at:
            first = _first_failure(results, rounds.blamed)
            if first is None:
                return  # perhaps a later block has one
            rounds.used += 1
            block, position, program = first
            outcome, flaky = self._shrunk(block, position, program, frozenset(rounds.blamed))
            if flaky is not None or outcome is None:
                findings.append(_nondeterministic(self.engine, flaky if flaky is not None else program))
                rounds.ended = True
                return
            finding = random_finding(outcome, self.engine, self.drawing.order, at_edge=False)
            if not duplicate_finding(finding, findings):
                findings.append(finding)
            stopped = outcome.engine_failure
            if finding.op is None or (stopped is not None and stopped.stage == "process"):
                rounds.ended = True  # several ops to blame; or a hang or a crash, which another round would wait for
                return
            rounds.blamed.add(finding.op)

    def _shrunk(
        self, block: Block, target: int, recorded: Program, blamed: frozenset[str]
    ) -> tuple[Outcome | None, Program | None]:
        """The failure at ``target`` in ``block``, shrunk (failures of blamed ops count as passes); or what was flaky.

        The block is replayed: the programs before ``target`` are not checked again (they were), so
        the replay costs the shrinking alone. Returns (the shrunk failure, None), or (None, the program)
        when the engine's answers vary: the same program failed and then passed.
        """
        engine, order = self.engine, self.drawing.order
        position = 0
        replayed: Outcome | None = None
        stops_while_shrinking = 0
        failed: dict[Program, Outcome] = {}

        def counts(outcome: Outcome) -> bool:
            return not outcome.passed and not edge_failure(outcome) and not (outcome.program.ops() & blamed)

        def test(program: Program) -> None:
            nonlocal position, replayed, stops_while_shrinking
            if replayed is None:
                here, position = position, position + 1
                if here != target or program != recorded:
                    return  # checked with the block already (or, if the drawing differed, checked below)
                outcome = replayed = checked(program, engine, order=order)
            elif stops_while_shrinking >= _MAX_SHRINK_STOPS:
                # Enough timeouts: hypothesis sees every new candidate pass, so shrinking ends at the
                # smallest failure so far, and its final replay of that one fails as before.
                if program not in failed:
                    return
                outcome = failed[program]
            else:
                outcome = checked(program, engine, order=order)
                if engine.stopped:
                    stops_while_shrinking += 1
            if counts(outcome):
                failed[program] = outcome
                # One raise for every failure: hypothesis tells failures apart by where they are raised.
                raise _DisagreementError(outcome)

        try:
            hypothesis_run(self.drawing, block, test, shrink=True)()
        except _DisagreementError as found:
            return _without_dead_steps(found.outcome, engine, order), None
        except Flaky:
            return None, min(failed, key=lambda program: program.node_count) if failed else recorded
        if replayed is None:
            # The replay did not reach the program (it cannot, unless hypothesis drew differently): check it as it is.
            replayed = checked(recorded, engine, order=order)
            if counts(replayed):
                return _without_dead_steps(replayed, engine, order), None
        return None, recorded  # it failed in the block and passes now


@dataclass(slots=True)
class _Rounds:
    """Where the diagnosis of ordinary failures is: the ops blamed, the rounds used, whether it has ended."""

    blamed: set[str] = field(default_factory=set[str])
    used: int = 0
    ended: bool = False


def _first_failure(results: Sequence[BlockResult], blamed: set[str]) -> tuple[Block, int, Program] | None:
    """The earliest failure kept by the blocks whose ops are none of ``blamed``."""
    for result in results:
        for position, program in result.failures:
            if not program.ops() & blamed:
                return result.block, position, program
    return None


def _nondeterministic(engine: Engine, program: Program | None) -> Finding:
    summary = "the same program failed on one run and passed on another"
    if program is not None:
        summary += f": {program}"
    script = None if program is None else engine.script(program)
    return Finding(NONDETERMINISTIC, None, None, summary, program, script)


def duplicate_finding(finding: Finding, findings: Sequence[Finding]) -> bool:
    """The same kind of finding about the same op (or, for a composition, the same set of ops) is already there."""
    for other in findings:
        if finding.op is not None and other.op == finding.op and other.severity == finding.severity:
            return True
        ops = finding.program.ops() if finding.program is not None else frozenset[str]()
        if finding.op is None and other.kind is finding.kind:
            other_ops = other.program.ops() if other.program is not None else frozenset[str]()
            if other.op is None and other_ops == ops:
                return True
        if finding.op is None and finding.severity == "warning" and other.op in ops and other.severity == "warning":
            return True  # a fragility of an op alone explains the same op's in a composition
    return False


@dataclass(slots=True)
class _Phases:
    """The structured programs, then the random ones, tallying into ``tally`` and adding to ``findings``."""

    engine: _Watched
    tally: Tally
    findings: list[Finding]
    progress: Progress | None
    counted: bool
    """Whether the structured programs are counted (in one shard of a campaign only)."""

    def record(self, outcome: Outcome) -> None:
        if self.counted:
            self.tally.add(outcome, structured=True)

    def run(
        self,
        forms: Sequence[tuple[str, Form]],
        blocks: Sequence[Block],
        workers: Workers | None,
        drawing: Drawing,
        *,
        max_defects: int,
        strict: bool,
        keeps: bool,
    ) -> tuple[float, str | None, tuple[str, ...] | None]:
        """The random programs' wall time, why none was drawn (if so), and the ways of accumulating checked."""
        accumulation: tuple[str, ...] | None = () if keeps else None
        if not forms:
            return 0.0, None, accumulation
        findings = self.findings
        # Every shard checks the structured programs: they decide what the random programs draw.
        structured = run_structured(
            self.engine,
            forms,
            order=drawing.order,
            record=self.record,
            max_defects=max_defects - failing(findings, strict),
            strict=strict,
        )
        findings += structured.findings
        if keeps:
            accumulation = structured.accumulation
        if structured.composition:
            # Shared nodes or chains are wrong: every random program would fail again for that reason.
            return (
                0.0,
                "shared nodes or chains are wrong (the composition defect), so every one would fail",
                accumulation,
            )
        drawing = replace(drawing, forms=tuple(pair for pair in forms if pair not in structured.defective))
        if not drawing.forms or not blocks:
            return 0.0, None, accumulation
        total = sum(block.size for block in blocks)
        phase = _RandomPhase(self.engine, self.tally, drawing, progress=self.progress, total=total)
        if failing(findings, strict) >= max_defects:
            return 0.0, None, accumulation
        return phase.run(blocks, workers, findings, max_defects, strict), None, accumulation


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
    strict: bool = False,
    max_defects: int = 20,
    extra_ops: Iterable[OpSpec] | None = None,
    references: ReferenceChoice | None = None,
    jobs: int = 1,
    shard: Shard | str | None = None,
) -> VerificationReport:
    """Check ``engine`` on structured programs, then ``examples`` random ones; every finding in one report.

    First each op form alone (at ordinary points, at its kinks, at edge inputs), then shared
    nodes and chains, then random programs in rounds: a round's first failure at ordinary inputs
    is shrunk to a small counterexample, and the next round leaves out the op it blamed (a
    failure of several ops ends the random phase); failures at edge inputs are reduced and checked
    at ordinary points afterwards (a defect if they fail there too, else a fragility).

    ``ops`` restricts the ops drawn (default: all of the registry); ops or
    operand forms the engine cannot run are probed for and left out. Forward
    mode is checked whenever the engine has it; ``order=2`` also checks second
    derivatives and needs an engine that can differentiate its own gradients
    (``ValueError`` naming the engine otherwise). ``strict`` fails the run on
    warnings too; the run stops early once ``max_defects`` findings fail it
    (defects, and under ``strict`` warnings too).

    ``extra_ops`` are ops of your own (:class:`~refgrad.ops.OpSpec` entries, see
    :mod:`refgrad.ops.extra`), drawn with the registry's on refgrad's engine
    (:class:`~refgrad.oracle.engines.RefgradEngine`) and given every check a built-in gets:
    torch's counterpart is the function the entry's ``torch`` names; an entry with
    ``torch=None`` is checked against finite differences, its torch checks skipped and
    counted as such (see :data:`~refgrad.oracle.checks.NO_TORCH`; ``order=2`` then needs a
    torch counterpart). ``ValueError`` naming the op for an entry that cannot be checked.

    ``references`` says what to check against: ``torch`` (PyTorch float64 with its sampled
    error model), ``mpmath`` (the exact reference, :mod:`refgrad.oracle.exact_reference`, which
    needs no torch), or ``both``; default: both where torch is installed, else mpmath.
    ``order=2`` needs torch.

    The random programs are drawn in blocks (:mod:`refgrad.oracle.blocks`) fixed by ``seed_value``
    and ``examples`` alone. ``jobs`` worker processes check them (each with its own copy of the
    engine, which must pickle: ``ValueError`` otherwise); the report is the same for every
    ``jobs``. ``shard`` (``"K/N"``) checks only the K-th of N interleaved parts of the blocks, for
    spreading a campaign over machines; :func:`refgrad.oracle.merge.merge_reports` adds the shards'
    reports up. The structured programs are checked in every shard and counted in shard 1 only.
    """
    if references is not None or extra_ops is not None:
        # The run's references and ops are context (read where the checks are made): set, then run.
        with contextlib.ExitStack() as scope:
            if references is not None:
                scope.enter_context(using_references(reference_argument(references)))
            if extra_ops is not None:
                scope.enter_context(using_ops(extra_ops))
            return verify(
                engine,
                examples=examples,
                seed_value=seed_value,
                ops=ops,
                progress=progress,
                max_steps=max_steps,
                out_of_domain=out_of_domain,
                order=order,
                strict=strict,
                max_defects=max_defects,
                jobs=jobs,
                shard=shard,
            )
    engine = engine_argument(engine)
    _check_drivable(engine)
    examples, seed_value, max_steps = _counts(examples, seed_value, max_steps)
    max_defects = as_count(max_defects, "max_defects")
    strict = flag_argument(strict, "strict")
    order = order_argument(order)
    ops = None if ops is None else op_names_argument(ops)
    _check_the_rest(progress, out_of_domain)
    jobs = jobs_argument(jobs)
    part = None if shard is None else shard_argument(shard)
    if order == 2 and not uses_torch():
        raise ValueError(SECOND_ORDER_NEEDS_TORCH)
    _check_order(engine, order)
    _check_own_ops(engine, order)
    forward_mode = isinstance(engine, ForwardModeEngine)
    _load_every_refgrad_module()
    began = time.perf_counter()
    probed, forms, asked = _probe(engine, ops)
    unsupported_text = {describe_form(op, form): reason for (op, form), reason in probed.unsupported.items()}
    findings = _probe_findings(engine, probed, len(forms), asked) + entry_findings()
    used = {op for op, _ in forms}
    tally = Tally({spec.name: OpStats() for spec in op_table if spec.name in used})
    watched = _watch(engine)
    blocks = [block for block in campaign_blocks(examples, seed_value) if part is None or part.owns(block)]
    jobs = min(jobs, len(blocks))
    # Started before the structured programs, so that the workers load while those are checked.
    workers = Workers(engine, jobs) if jobs > 1 else None
    try:
        keeps = isinstance(engine, AccumulatingEngine) and engine.keeps_gradients
        phases = _Phases(watched, tally, findings, progress=progress, counted=part is None or part.index == 1)
        seconds, random_skipped, accumulation = phases.run(
            forms,
            blocks,
            workers,
            Drawing((), max_steps, out_of_domain, order, tuple(tally.stats)),
            max_defects=max_defects,
            strict=strict,
            keeps=keeps,
        )
        findings.sort(key=lambda finding: finding.severity != "defect")
        first = next((f.outcome for f in findings if failing((f,), strict) and f.outcome is not None), None)
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
            failure=first,
            failure_script=None if first is None else engine.script(first.program),
            order=order,
            forward_mode=forward_mode,
            findings=tuple(findings),
            forms_checked=len(forms),
            forms_asked=asked,
            strict=strict,
            structured=tally.structured,
            total_seconds=time.perf_counter() - began,
            random_skipped=random_skipped,
            checked=tuple(describe_form(op, form) for op, form in forms),
            accumulation=accumulation,
            references=current_references(),
            checks_by_reference=dict(tally.references),
            jobs=max(jobs, 1),
            shard=part,
            blocks=len(blocks),
        )
    finally:
        if workers is not None:
            workers.close()
