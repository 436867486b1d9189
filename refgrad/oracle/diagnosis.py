"""From failing checks to findings: what is wrong, where, in words a learner acts on.

:func:`run_structured` runs the fixed programs of :mod:`refgrad.oracle.campaigns` (each op alone at
ordinary points, at its kinks and at edge inputs; shared nodes and chains; a deep chain) and turns
each failure into a :class:`~refgrad.oracle.findings.Finding` of the right kind and severity.
:func:`random_finding` does the same for a random program's failure, after the run has checked
whether the failure holds at ordinary inputs (a defect) or only at the edge where it was found (a
fragility).
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from refgrad.ops import OpSpec
from refgrad.oracle.campaigns import (
    AccumulationPrograms,
    PatternProgram,
    accumulation_programs,
    at_kink,
    composition_programs,
    deep_chain,
    edge_programs,
    is_ordinary,
    kink_programs,
    ordinary_programs,
    redrawn,
)
from refgrad.oracle.checks import Check, KnownReferences, Outcome, relative_and_ulps
from refgrad.oracle.compare import checked, references_of
from refgrad.oracle.engines import AccumulatingEngine, Engine, EngineRun, describe_form
from refgrad.oracle.findings import (
    ACCUMULATION,
    ACCURACY,
    BROKEN_OP,
    COMPOSITION,
    DEEP_GRAPH,
    FRAGILE,
    KINK_CONVENTION,
    NONDETERMINISTIC,
    WRONG_DERIVATIVE,
    WRONG_VALUE,
    Finding,
    FindingKind,
)
from refgrad.oracle.optable import op_table
from refgrad.oracle.program import Const, Form, Program, Ref, Step, forms_of
from refgrad.oracle.references import ReferenceChoice, current_references

__all__ = [
    "ACCURACY_ULPS",
    "PRECISION_LOSS",
    "Structured",
    "edge_failure",
    "failing",
    "random_finding",
    "run_structured",
    "smallest_failing_part",
]

ACCURACY_ULPS: Final = 64.0
"""A disagreement within this many ulps of the reference, at ordinary inputs, is an accuracy warning."""

_NUMERIC: Final = ("value", "gradient", "finite-difference")
# Exceptions that are a formula giving up at an edge (overflow, division by zero, a domain signal, the
# recursion limit), rather than a method that cannot run.
_RECURSION: Final = "RecursionError"

Record = Callable[[Outcome], None]

_HIGHER: Final = {
    "second-order": "second derivatives",
    "second-order-fd": "second derivatives",
    "forward-mode": "forward-mode derivative",
    "forward-vs-reverse": "forward-mode derivative",
}
"""Check kinds beyond first-order reverse mode, as a wrong-derivative finding names them."""


@dataclass(slots=True)
class Structured:
    """What the structured programs found: findings in order, and the forms with a defect of their own."""

    findings: list[Finding] = field(default_factory=list[Finding])
    defective: set[tuple[str, Form]] = field(default_factory=set[tuple[str, Form]])
    programs: int = 0
    composition: bool = False
    """Shared nodes or chains came out wrong: every random program would show it again."""
    stopped: bool = False
    """The engine's worker hung or died on one of them, which ended the structured phase."""
    accumulation: tuple[str, ...] = ()
    """The ways of calling backward() more than once that were checked (an engine keeping ``.grad`` only)."""

    def failing(self, strict: bool) -> int:
        """Findings that fail the run: defects, and under ``strict`` warnings too."""
        return failing(self.findings, strict)


def failing(findings: Sequence[Finding], strict: bool) -> int:
    """How many of ``findings`` fail a run: the defects, and under ``strict`` every finding."""
    return sum(1 for finding in findings if strict or finding.severity == "defect")


_TINY_SCALE: Final = 1e-300
"""The scale under which two references' gradients are compared absolutely (both about 0)."""


def _numbers(check: Check) -> str:
    if check.got is None or check.expected is None:
        return check.detail
    off = relative_and_ulps(check.got, check.expected)
    return f"the engine gives {check.got!r}, expected {check.expected!r} ({off})"


def _all_within(outcome: Outcome, error: Callable[[Check], float | None], bound: float) -> bool:
    """Some check failed, and every failing one compares numbers with ``error(check)`` at most ``bound``."""
    for check in outcome.failures:
        measured = error(check)
        if check.kind not in _NUMERIC or measured is None or not measured <= bound:
            return False
    return bool(outcome.failures)


def _accuracy_only(outcome: Outcome) -> bool:
    """Every failing check compares numbers and is off by at most :data:`ACCURACY_ULPS`."""
    return _all_within(outcome, lambda check: check.ulps, ACCURACY_ULPS)


def _fragile_exception(outcome: Outcome) -> bool:
    """The engine stopped with a domain signal (an overflow, a division by zero, ...) or at the recursion limit."""
    failure = outcome.engine_failure
    if failure is None or failure.stage == "process":
        return False
    return failure.domain_signal or failure.exception == _RECURSION


PRECISION_LOSS: Final = 1e-10
"""A disagreement this small (relative) may be a formula losing precision (cancelling near 0, say), not a wrong rule.

Far above what a cancellation at ordinary inputs costs (about 1e-12 at magnitudes of 1e-4) and far
below any rule that is wrong (a relative 1e-9 error at x = 0.5 is a defect): such a failure is
checked again at moderate inputs before it is called anything.
"""


def _small(outcome: Outcome) -> bool:
    """Every failing check compares numbers and is off by at most :data:`PRECISION_LOSS`, relatively."""
    return _all_within(outcome, lambda check: check.relative_error, PRECISION_LOSS)


def edge_failure(outcome: Outcome) -> bool:
    """A failure that may be a fragility: at an edge input, an arithmetic exception where the result is finite,
    or a disagreement small enough to be precision lost by a legitimate formula."""
    failure = outcome.engine_failure
    if failure is not None and failure.stage == "process":
        return False  # a hang or a crash is shrunk and reported as it is
    return _fragile_exception(outcome) or _small(outcome) or not is_ordinary(outcome.program)


def _operand_name(program: Program, node: int) -> tuple[int, str] | None:
    """For a one-step program: the position and name (x, y) of the operand that is input ``node``."""
    step = program.steps[0]
    for position, operand in enumerate(step.operands):
        if isinstance(operand, Ref) and operand.node == node:
            return position, "xy"[position] if len(step.operands) > 1 else "x"
    return None


def _what_failed(outcome: Outcome) -> str:
    failure = outcome.engine_failure
    if failure is not None:
        return failure.describe()
    return outcome.failures[0].detail


def _alone_finding(engine: Engine, pattern: PatternProgram, outcome: Outcome) -> Finding:
    """A one-step program at an ordinary point failed: the op's value, its derivative, or the method itself."""
    assert pattern.op is not None
    assert pattern.form is not None
    op, program = pattern.op, outcome.program
    spec = op_table[op]
    name = describe_form(op, pattern.form)
    script = engine.script(program)
    values = [check for check in outcome.failures if check.kind == "value"]
    gradients = [check for check in outcome.failures if check.kind in ("gradient", "finite-difference")]
    kind: FindingKind
    if _accuracy_only(outcome):
        worst = max(check.ulps or 0.0 for check in outcome.failures)
        off = _numbers(outcome.failures[0])
        kind, summary = ACCURACY, f"{name} at {pattern.description}: {worst:.3g} ulps off ({off})"
    elif values:
        kind = WRONG_VALUE
        summary = f"the value of {name} at {pattern.description}: {_numbers(values[0])}; the op is {spec.formula}"
    elif gradients and gradients[0].node is not None and (found := _operand_name(program, gradients[0].node)):
        position, operand = found
        kind = WRONG_DERIVATIVE
        summary = (
            f"the derivative of {name} in {operand} at {pattern.description}: {_numbers(gradients[0])}; "
            f"d/d{operand} is {spec.partial_formulas[position]}; {_how_sure(outcome, gradients[0].node)}"
        )
    elif others := [check for check in outcome.failures if check.kind in _HIGHER]:
        kind = WRONG_DERIVATIVE
        summary = f"the {_HIGHER[others[0].kind]} of {name} at {pattern.description}: {others[0].detail}"
    else:
        kind, summary = BROKEN_OP, f"{name} at {pattern.description}: {_what_failed(outcome)}"
    return Finding(kind, op, name, summary, program, script, outcome)


def _how_sure(outcome: Outcome, node: int) -> str:
    """Which references reject the engine's derivative at ``node``, and whether they agree with each other."""
    gradients = [c for c in outcome.checks if c.kind == "gradient" and c.node == node and c.expected is not None]
    estimate = next((c for c in outcome.checks if c.kind == "finite-difference" and c.node == node), None)
    if not gradients:
        return "finite differences alone say so (the reference's gradient could not be compared here)"
    rejecting = [c for c in gradients if not c.passed]
    # the exact reference's word first: it is the sharper one
    check = min(rejecting or gradients, key=lambda c: c.reference != "mpmath")
    names = list(dict.fromkeys(_reference_name(c.reference) for c in rejecting))
    verb = "says" if len(names) == 1 else "say"
    if estimate is None or estimate.expected is None:
        return f"{' and '.join(names)} alone {verb} so (finite differences were too imprecise here)"
    if not rejecting or estimate.passed:
        if not rejecting:
            said, accepting = "finite differences say", f"{_reference_name(check.reference)} accepts"
        else:
            said, accepting = f"{' and '.join(names)} {verb}", "finite differences accept"
        return f"only {said} so: {accepting} the engine's number, so check this one by hand"
    assert check.expected is not None
    apart = abs(estimate.expected - check.expected) / max(abs(check.expected), _TINY_SCALE)
    everyone = (
        f"{names[0]} and finite differences both"
        if len(names) == 1
        else f"{', '.join(names)} and finite differences all"
    )
    return f"{everyone} say so, and agree with each other to {apart:.1g} relative"


def _reference_name(reference: str) -> str:
    return {"torch": "torch (float64)", "mpmath": "the exact reference (mpmath)"}.get(reference, reference)


def _kink_finding(engine: Engine, pattern: PatternProgram, outcome: Outcome) -> Finding:
    """A one-step program with an operand at a kink failed: a wrong value, a fragile formula, or another convention."""
    assert pattern.op is not None
    assert pattern.form is not None
    op, program = pattern.op, outcome.program
    name = describe_form(op, pattern.form)
    script = engine.script(program)
    values = [check for check in outcome.failures if check.kind == "value"]
    if values:
        summary = f"the value of {name} at {pattern.description}: {_numbers(values[0])}"
        return Finding(WRONG_VALUE, op, name, summary, program, script, outcome)
    if outcome.engine_failure is not None:
        said = outcome.engine_failure.describe()
        summary = f"{name} at {pattern.description}: {said}, where torch's result is finite"
        return Finding(FRAGILE, op, name, summary, program, script, outcome)
    conventions = "; ".join(kink.convention for kink in op_table[op].kinks)
    summary = f"{name} at {pattern.description}: {_numbers(outcome.failures[0])}; PyTorch's convention: {conventions}"
    return Finding(KINK_CONVENTION, op, name, summary, program, script, outcome)


def _edge_reason(outcome: Outcome) -> str:
    failure = outcome.engine_failure
    if failure is not None:
        return f"{failure.exception} {'in backward' if failure.stage == 'backward' else 'in the forward pass'}"
    kinds = sorted({check.kind for check in outcome.failures})
    return "a wrong " + " and ".join("value" if kind == "value" else "gradient" for kind in kinds[:1])


def _edge_summary(name: str, failed: Sequence[tuple[PatternProgram, Outcome]], tried: int) -> str:
    """Where the form fails among the edge inputs, grouped by how (an exception, or a wrong number), and the first."""
    by_reason: dict[str, list[str]] = {}
    for pattern, outcome in failed:
        by_reason.setdefault(_edge_reason(outcome), []).append(pattern.description)
    groups = "; ".join(
        f"{reason} at {', '.join(points[:4])}{', ...' if len(points) > 4 else ''}"
        for reason, points in by_reason.items()
    )
    pattern, outcome = failed[0]
    return (
        f"{name} fails at {len(failed)} of {tried} edge inputs: {groups}. "
        f"First, at {pattern.description}: {_what_failed(outcome)}"
    )


@dataclass(frozen=True)
class _Located:
    """Where each node's value and gradient (the engine's ``.grad`` on every node) point."""

    op: str | None
    """The op whose rule it points at, when the evidence names one."""
    kind: FindingKind
    words: str


def _numbered(program: Program, node: int) -> str:
    step = program.step_of(node)
    return f"node {node} (input x{node})" if step is None else f"node {node} ({step.op})"


def _alone_at(program: Program, step: Step, engine: Engine) -> Outcome | None:
    """``step`` alone, its node operands made inputs at the values the program fed it (``None`` if not finite)."""
    values = program.evaluate()
    inputs: list[float] = []
    operands: list[Ref | Const] = []
    seen: dict[int, int] = {}
    for operand in step.operands:
        if isinstance(operand, Ref):
            if operand.node not in seen:
                seen[operand.node] = len(inputs)
                inputs.append(values[operand.node])
            operands.append(Ref(seen[operand.node]))
        else:
            operands.append(operand)
    if not all(map(math.isfinite, inputs)):
        return None
    return checked(Program(tuple(inputs), (Step(step.op, tuple(operands), step.params),)), engine, order=1)


_SCALES: Final = (3.0, 0.5)
"""Constants tried for a step after an op that makes the gradient arriving at the op neither 0 nor 1."""


def _scaling_step(node: int, value: float) -> tuple[Step, float] | None:
    """A step ``op(node, c)`` whose partial in ``node`` at ``value`` is a moderate number other than +-1, and it."""
    for spec in op_table:
        if spec.arity != 2 or spec.params or ("node", "const") not in forms_of(spec.name):
            continue
        for constant in _SCALES:
            try:
                if not spec.domain.contains(value, constant):
                    continue
                out = spec.forward(value, constant)
                partial = float(spec.partials((value, constant), out, ())[0])
            except (ArithmeticError, ValueError):
                continue
            if math.isfinite(out) and math.isfinite(partial) and 1e-3 < abs(partial) < 1e3 and abs(partial) != 1.0:
                return Step(spec.name, (Ref(node), Const(constant))), partial
    return None


def _scaled_alone(alone: Outcome | None, engine: Engine) -> tuple[Program, float] | None:
    """Whether the op, right alone, ignores ``out.grad``: followed by one step scaling it, its inputs' gradients
    are what they would be with no scaling (the step's node has one use, so the order of the pass is no suspect).

    The program and the scale, or None where that is not what happens (or cannot be tried).
    """
    if alone is None or not alone.passed:
        return None
    program = alone.program
    node = program.output
    values = program.evaluate()
    scaling = _scaling_step(node, values[node])
    if scaling is None:
        return None
    step, factor = scaling
    scaled = Program(program.inputs, (*program.steps, step))
    outcome = checked(scaled, engine, order=1)
    if outcome.passed or outcome.engine_failure is not None:
        return None
    inputs = [c for c in outcome.checks if c.kind == "gradient" and c.node is not None and c.node < len(program.inputs)]
    wrong = [(c.got, c.expected) for c in inputs if not c.passed]
    ignores = all(
        got is not None and expected is not None and math.isclose(got * factor, expected, rel_tol=1e-9, abs_tol=1e-300)
        for got, expected in wrong
    )
    return (scaled, factor) if wrong and ignores else None


def _wrong_alone(alone: Outcome | None) -> bool:
    """The op alone fails its gradient there (its value right), not with an exception or by a few ulps: its rule."""
    if alone is None or alone.passed or alone.engine_failure is not None or _accuracy_only(alone):
        return False
    kinds = {check.kind for check in alone.failures}
    return "gradient" in kinds and "value" not in kinds


def _locate(outcome: Outcome, engine: Engine) -> _Located | None:
    """The first node whose value (in order) or gradient (in reverse order) disagrees while its neighbours agree.

    A wrong value whose operands' values agree is that step's forward rule. With every value right,
    the last node whose ``d output / d node`` disagrees while every node it feeds agrees received
    something wrong from them: from several uses, their sum (accumulation) or one of their rules;
    from one use, what that step's backward passed on. That is the step's rule only when the
    numbers show how (what it passed on is what it would pass on if the gradient arriving at it
    were 1: it ignores ``out.grad``) and the step's own node has one use (so its gradient was 0 or
    complete whenever its rule ran), or when the op alone, at the very operands the program fed
    it, fails too (a rule right at the moderate points tried alone and wrong at these); otherwise
    the order of the backward pass is the suspect, so no op is blamed. ``None`` when a neighbour
    was not checked (skipped), so the evidence stops short.
    """
    program = outcome.program
    values = {c.node: c for c in outcome.checks if c.kind == "value" and c.node is not None}
    inputs = len(program.inputs)
    wrong_values = sorted(node for node, check in values.items() if not check.passed)
    if wrong_values:
        node = wrong_values[0]
        step = program.step_of(node)
        if step is None:
            return None
        refs = [o.node for o in step.operands if isinstance(o, Ref) and o.node >= inputs]
        if not all(ref in values and values[ref].passed for ref in refs):
            return None
        words = (
            f"{_numbered(program, node)} is the first wrong value, from operands that agree: {_numbers(values[node])}"
        )
        return _Located(step.op, WRONG_VALUE, words)
    gradients = {c.node: c for c in outcome.checks if c.kind == "gradient" and c.node is not None}
    consumers = program.consumers()
    for node in sorted((n for n, c in gradients.items() if not c.passed), reverse=True):
        users = consumers[node]
        if not all(user == program.output or (user in gradients and gradients[user].passed) for user in users):
            return None
        check = gradients[node]
        fed = ", ".join(_numbered(program, user) for user in sorted(set(users)))
        agree = "agrees" if len(set(users)) == 1 else "agree"
        first = f"{_numbered(program, node)} is the last whose .grad disagrees ({_numbers(check)}), while {fed} {agree}"
        if len(users) != 1:
            said = f"the sum of its {len(users)} uses is wrong (backward() adding up its uses, or its order)"
            return _Located(None, COMPOSITION, f"{first}: {said}")
        user = users[0]
        step = program.step_of(user)
        assert step is not None  # a user computes a node
        arriving = 1.0 if user == program.output else gradients[user].expected
        got, expected = check.got, check.expected
        # One use of the user: its gradient was 0 or complete whenever its rule ran (several uses may
        # have run it with a part, which can be exactly 1: a breadth-first backward does that).
        if (
            arriving is not None
            and got is not None
            and expected is not None
            and abs(arriving) != 1.0
            and len(consumers[user]) == 1
            and math.isclose(got * arriving, expected, rel_tol=1e-9, abs_tol=1e-300)
        ):
            words = (
                f"{first}: {step.op}'s backward passes on what it would if the gradient arriving at it were 1 "
                f"(it is {arriving!r}): it does not multiply by its output's gradient (out.grad)"
            )
            return _Located(step.op, WRONG_DERIVATIVE, words)
        # Its rule alone, at the very operands this program fed it: wrong there too, it is the rule
        # (right at the moderate points the op was tried at alone, wrong at these); right, the order.
        alone = _alone_at(program, step, engine)
        if _wrong_alone(alone):
            assert alone is not None
            words = (
                f"{first}: {step.op} alone at the operands it got here ({alone.program}) is wrong too: "
                f"{_what_failed(alone)}"
            )
            return _Located(step.op, WRONG_DERIVATIVE, words)
        scaled = _scaled_alone(alone, engine)
        if scaled is not None:
            scaled_program, factor = scaled
            words = (
                f"{first}: {step.op}'s backward passes on what it would if the gradient arriving at it were 1: "
                f"alone, followed by one step that makes that gradient {factor!r} ({scaled_program}), it passes on "
                f"what it would for 1: it does not multiply by its output's gradient (out.grad)"
            )
            return _Located(step.op, WRONG_DERIVATIVE, words)
        checked = "" if alone is None else f", and alone at the operands it got here ({alone.program})"
        words = (
            f"{first}: what {step.op}'s backward passed on was wrong, though {step.op} alone is right{checked} "
            "(is its rule run before its own gradient is complete?)"
        )
        return _Located(None, COMPOSITION, words)
    return None


_GROUPS: Final = {
    "shared": "gradients through a node used twice (accumulation or order of the backward pass)",
    "chain": "gradients through a chain (the order of the backward pass)",
    "deep": "a deep chain",
}


def _composition_finding(engine: Engine, failed: Sequence[tuple[PatternProgram, Outcome]], tried: int) -> Finding:
    """Failures of one group of composition patterns (shared nodes, chains, the deep chain) as one finding."""
    pattern, outcome = failed[0]
    program = outcome.program
    script = engine.script(program)
    stopped = outcome.engine_failure
    if pattern.pattern == "deep" and stopped is not None and stopped.exception == _RECURSION:
        summary = f"{pattern.description}: {stopped.describe()}"
        return Finding(DEEP_GRAPH, None, None, summary, program, script, outcome)
    others = ", ".join(p.description for p, _ in failed[1:4])
    also = f"; also {others}{', ...' if len(failed) > 4 else ''}" if others else ""
    first = pattern.description if pattern.pattern == "deep" else f"{pattern.description} ({program})"
    located = _locate(outcome, engine) if stopped is None else None
    if located is not None and located.op is not None:
        summary = f"{located.op} in {first}: {located.words}"
        return Finding(located.kind, located.op, None, summary, program, script, outcome)
    said = _what_failed(outcome) if located is None else located.words
    summary = f"{_GROUPS[pattern.pattern]}: {len(failed)} of {tried} fail, first {first}: {said}{also}"
    return Finding(COMPOSITION, None, None, summary, program, script, outcome)


@functools.lru_cache(maxsize=8192)
def _references(
    program: Program, second_order: bool, key: tuple[OpSpec, ...], choice: ReferenceChoice
) -> KnownReferences:
    """The structured programs are the same in every run: their references are computed once per process.

    ``key`` is the run's own ops (:attr:`~refgrad.oracle.optable.OpTable.key`): a program naming
    ``sin`` means another op in a run with another ``sin``; ``choice`` the run's references.
    """
    return references_of(program, second_order=second_order)


def run_structured(
    engine: Engine,
    forms: Sequence[tuple[str, Form]],
    *,
    order: Literal[1, 2],
    record: Record,
    max_defects: int,
    strict: bool = False,
) -> Structured:
    """Run every structured program for ``forms`` on ``engine``; ``record`` sees each outcome (for the tally).

    Stops once ``max_defects`` findings fail the run (defects; under ``strict``, warnings too).
    """
    found = Structured()

    def check(pattern: PatternProgram) -> Outcome:
        # Edge inputs are about first-order formulas (overflow, cancellation); at second order nearly
        # every check there is skipped as imprecise, at the cost of many finite differences.
        at: Literal[1, 2] = 1 if pattern.pattern == "edge" else order
        known = _references(pattern.program, at == 2, op_table.key, current_references())
        outcome = checked(pattern.program, engine, order=at, known=known)
        found.programs += 1
        record(outcome)
        failure = outcome.engine_failure
        if failure is not None and failure.stage == "process":
            # A hang or a crash: each more costs a time limit and a restart. The random phase
            # meets it again and shrinks it (with a cap on how many it waits for).
            raise _StoppedError
        return outcome

    try:
        _run_patterns(engine, forms, found, check, max_defects=max_defects, strict=strict)
    except _StoppedError:
        found.stopped = True
    return found


class _StoppedError(Exception):
    """The engine's worker hung or died on a structured program: the structured phase ends there."""


def _run_patterns(
    engine: Engine,
    forms: Sequence[tuple[str, Form]],
    found: Structured,
    check: Callable[[PatternProgram], Outcome],
    *,
    max_defects: int,
    strict: bool,
) -> None:
    """Each form alone (ordinary points, kinks, edges), then the compositions of the forms without a defect."""

    def first_failure(
        op: str,
        form: Form,
        patterns: Sequence[PatternProgram],
        describe: Callable[[Engine, PatternProgram, Outcome], Finding],
    ) -> None:
        """The first of ``patterns`` that fails becomes a finding; a defect marks the form defective."""
        for pattern in patterns:
            outcome = check(pattern)
            if not outcome.passed:
                finding = describe(engine, pattern, outcome)
                found.findings.append(finding)
                if finding.severity == "defect":
                    found.defective.add((op, form))
                return

    for op, form in forms:
        if found.failing(strict) >= max_defects:
            return
        first_failure(op, form, ordinary_programs(op, form), _alone_finding)
        if (op, form) in found.defective:
            continue
        first_failure(op, form, kink_programs(op, form), _kink_finding)
        edges = edge_programs(op, form)
        failed = [(pattern, outcome) for pattern in edges if not (outcome := check(pattern)).passed]
        if failed:
            name = describe_form(op, form)
            program = failed[0][1].program
            summary = _edge_summary(name, failed, len(edges))
            found.findings.append(Finding(FRAGILE, op, name, summary, program, engine.script(program), failed[0][1]))
    sound = [pair for pair in forms if pair not in found.defective]
    groups: dict[str, list[PatternProgram]] = {}
    for pattern in composition_programs(sound):
        groups.setdefault("shared" if pattern.pattern == "shared" else "chain", []).append(pattern)
    deep = deep_chain(sound)
    if deep is not None:
        groups["deep"] = [deep]
    for group, patterns in groups.items():
        if found.failing(strict) >= max_defects:
            break
        if group != "deep" and (varying := _varying(engine, patterns)) is not None:
            found.findings.append(varying)
            found.composition = True
            continue
        failed = [(pattern, outcome) for pattern in patterns if not (outcome := check(pattern)).passed]
        if failed:
            finding = _composition_finding(engine, failed, len(patterns))
            found.findings.append(finding)
            if finding.kind is COMPOSITION and group != "deep":
                found.composition = True
    if isinstance(engine, AccumulatingEngine) and engine.keeps_gradients and not found.composition:
        programs = accumulation_programs(sound)
        if programs is not None:
            _check_accumulation(engine, programs, found)


# Both sides are sums of the same few products of moderate numbers, in the same engine: a pass that
# accumulates as torch's does agrees to rounding, and one that passes gradients on again is off by a
# sizeable fraction.
_ACCUMULATION_TOLERANCE: Final = 1e-9


def _accumulation_agrees(got: Sequence[float], expected: Sequence[float]) -> bool:
    scale = max(1.0, *map(abs, expected))
    return all(
        math.isclose(g, e, rel_tol=_ACCUMULATION_TOLERANCE, abs_tol=_ACCUMULATION_TOLERANCE * scale)
        for g, e in zip(got, expected, strict=True)
    )


def _check_accumulation(engine: AccumulatingEngine, programs: AccumulationPrograms, found: Structured) -> None:
    """backward() twice, after zero_grad() (where the engine has one), and through a node a second graph reuses.

    Each is compared with the engine's own single passes over fresh graphs, so only how it
    accumulates is judged (its rules are judged everywhere else). A second backward() that
    raises, on the same graph or through the reused node, is torch's own default (without
    ``retain_graph``), so that passes.
    """
    first, then = programs.first, programs.then
    once_first, once_then = engine.run(first), engine.run(then)
    if once_first.failure is not None or once_then.failure is not None:
        return  # the structured programs before report what stops a single pass
    inputs = len(first.inputs)
    one, other = once_first.gradients[:inputs], once_then.gradients[:inputs]
    where = f"{programs.description} ({first})"
    checked: list[str] = []

    def judge(run: EngineRun, expected: tuple[float, ...], said: Callable[[list[float]], str]) -> None:
        if run.failure is None and not _accumulation_agrees(run.gradients[:inputs], expected):
            found.findings.append(Finding(ACCUMULATION, None, None, said(list(run.gradients[:inputs])), first))

    twice = engine.accumulate(first, first, zero_grad=False)
    checked.append("twice")
    doubled = [2.0 * g for g in one]
    judge(
        twice,
        tuple(doubled),
        lambda got: (
            f"backward() twice: the inputs' gradients are {got}, not twice one pass's {doubled} (one pass: "
            f"{list(one)}): gradients the first pass left inside the graph are passed on again; on {where}"
        ),
    )
    reused = engine.accumulate(first, then, zero_grad=False)
    checked.append("a node reused by a second graph")
    added = [a + b for a, b in zip(one, other, strict=True)]
    judge(
        reused,
        tuple(added),
        lambda got: (
            f"backward() on a second graph built on a node of the first: the inputs' gradients are {got}, not the "
            f"two graphs' added, {added}: n2's gradient from the first graph is passed on again by the second; "
            f"the first {where}, the second {then}"
        ),
    )
    if engine.has_zero_grad:
        cleared = engine.accumulate(first, first, zero_grad=True)
        checked.append("after zero_grad()")
        if cleared.failure is not None and cleared.failure.stage != "process":
            summary = f"zero_grad() after backward() failed: {cleared.failure.describe()}; on {where}"
            found.findings.append(Finding(ACCUMULATION, None, None, summary, first))
        judge(
            cleared,
            one,
            lambda got: (
                f"zero_grad() between two backward() calls: the inputs' gradients are {got}, not one pass's "
                f"{list(one)}: zero_grad() on the output does not clear what the next backward() adds to; on {where}"
            ),
        )
    found.accumulation = tuple(checked)


_RERUNS: Final = 4


def _varying(engine: Engine, patterns: Sequence[PatternProgram]) -> Finding | None:
    """A nondeterministic finding when one of ``patterns`` gives different numbers on different runs."""
    for pattern in patterns:
        runs = [engine.run(pattern.program) for _ in range(_RERUNS)]
        first = runs[0]
        for other in runs[1:]:
            if (other.values, other.gradients, other.failure) != (first.values, first.gradients, first.failure):
                program = pattern.program
                summary = (
                    f"{pattern.description} ({program}) gave different results on {_RERUNS} runs: "
                    f"gradients {list(first.gradients)} and then {list(other.gradients)}"
                )
                return Finding(NONDETERMINISTIC, None, None, summary, program, engine.script(program))
    return None


def smallest_failing_part(outcome: Outcome, engine: Engine, order: Literal[1, 2]) -> Outcome:
    """The smallest sub-expression of the failing program (some node as output, pruned) that still fails."""
    program = outcome.program
    count = len(program.inputs)
    parts = {
        Program(program.inputs, program.steps[: node - count + 1]).pruned() for node in range(count, program.output)
    }
    for part in sorted(parts, key=lambda candidate: (candidate.node_count, candidate.to_json())):
        tried = checked(part, engine, order=order)
        if not tried.passed:
            return tried
    return outcome


_REDRAWS: Final = 12


def random_finding(outcome: Outcome, engine: Engine, order: Literal[1, 2], *, at_edge: bool) -> Finding:
    """A random program's failure as a finding.

    An ordinary failure (``at_edge`` false: found and shrunk at ordinary inputs) is a defect, or an
    accuracy warning when it is a few ulps. An edge failure (:func:`edge_failure`) is first reduced
    to its smallest failing sub-expression, which is then checked with its inputs redrawn at
    moderate magnitudes: failing there, it is judged as an ordinary failure at that point; passing,
    it is a fragility (or another convention, at a kink).
    """
    if at_edge:
        outcome = smallest_failing_part(outcome, engine, order)
        seed = zlib.crc32(outcome.program.to_json().encode())
        for candidate in redrawn(outcome.program, _REDRAWS, seed):
            tried = checked(candidate, engine, order=order)
            if not tried.passed:
                return random_finding(tried, engine, order, at_edge=False)
    program = outcome.program
    ops = sorted(program.ops())
    op = ops[0] if len(ops) == 1 else None
    script = engine.script(program)
    first = outcome.failures[0]
    where = f"a program of {len(program.steps)} step(s) using {', '.join(ops)} ({program})"
    what = f"{first.kind} check: {_numbers(first) if first.got is not None else first.detail}"
    kind: FindingKind
    if at_edge:
        if at_kink(program) and outcome.engine_failure is None and all(c.kind != "value" for c in outcome.failures):
            kind = KINK_CONVENTION
        else:
            kind = FRAGILE
        what = _what_failed(outcome) if outcome.engine_failure is not None else what
        summary = f"{where}: {what}; with its inputs redrawn at moderate magnitudes it agrees"
    elif _accuracy_only(outcome):
        kind, summary = ACCURACY, f"{where}: {what}"
    elif op is not None:
        kind = WRONG_VALUE if any(c.kind == "value" for c in outcome.failures) else WRONG_DERIVATIVE
        located = _locate(outcome, engine) if outcome.engine_failure is None else None
        summary = f"{op} in {where}: {what if located is None else located.words}"
    elif (located := _locate(outcome, engine) if outcome.engine_failure is None else None) is not None:
        op, kind = located.op, located.kind
        summary = f"{'' if op is None else f'{op} in '}{where}: {located.words}"
    else:
        kind, summary = COMPOSITION, f"{where}: {what}"
    return Finding(kind, op, None, summary, program, script, outcome)
