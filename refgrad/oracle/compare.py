"""Comparison: one program, one engine, both references; every check and every skip, attributed to ops.

:func:`check_program` runs the engine and the references and produces an
:class:`Outcome`:

* **domain**: where torch's result (a value or a gradient of any node) is not
  finite, the engine must signal it (a strict engine: raise ``DomainError``,
  and in the forward pass at the very node where torch's value first stops
  being finite); where torch's result is finite, the engine must not;
* **value**: every step's value against torch's, within the error model's tolerance;
* **gradient**: d output / d node for every node the output depends on,
  against torch's, within tolerance;
* **finite-difference**: d output / d input for every input, against the
  Richardson estimate, within its error bound plus torch's gradient tolerance.

Each check is attributed to the ops it exercises: a value to the ops that
computed it, a gradient to the ops on the paths from its node to the output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final, Literal

from refgrad.ops import registry
from refgrad.oracle.engines import Engine, EngineRun
from refgrad.oracle.finite_differences import FiniteDifferenceSkip, finite_difference
from refgrad.oracle.program import Program, Ref
from refgrad.oracle.torch_reference import TorchResult, U, first_infinite_partial, torch_reference

__all__ = [
    "FD_USEFUL",
    "PARTIAL_OVERFLOW",
    "Check",
    "CheckKind",
    "Outcome",
    "Skip",
    "check_program",
    "output_error_bound",
]

CheckKind = Literal["value", "gradient", "finite-difference", "domain"]

FD_USEFUL: Final = 1e-4
"""A finite-difference estimate whose error bound exceeds this share of the gradient is skipped as imprecise."""

_FD_SAFETY: Final = 2.0
_SUBNORMAL_SPACING: Final = 2.0**-1074
_NEAR_OVERFLOW: Final = "within rounding of an overflow or a domain edge"


@dataclass(frozen=True, slots=True)
class Check:
    """One comparison: ``ratio`` is the error divided by the tolerance (at most 1 to pass)."""

    kind: CheckKind
    node: int | None
    ops: frozenset[str]
    ratio: float
    detail: str = ""

    @property
    def passed(self) -> bool:
        """Whether the engine agreed with the reference."""
        return self.ratio <= 1.0


@dataclass(frozen=True, slots=True)
class Skip:
    """A comparison left out, and why; ``ops`` are the ops blamed (whose kink or boundary was too close)."""

    kind: CheckKind
    reason: str
    node: int | None
    ops: frozenset[str]


@dataclass(frozen=True, slots=True)
class Outcome:
    """Everything checked and skipped for one program on one engine."""

    program: Program
    checks: tuple[Check, ...]
    skips: tuple[Skip, ...]
    failures: tuple[Check, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "failures", tuple(check for check in self.checks if not check.passed))

    @property
    def passed(self) -> bool:
        """No check disagreed."""
        return not self.failures


def _ratio(error: float, tolerance: float) -> float:
    if error == 0.0:
        return 0.0
    if tolerance == 0.0 or math.isnan(error):
        return math.inf
    return error / tolerance


def _cones(program: Program, live: tuple[bool, ...]) -> tuple[list[frozenset[str]], list[frozenset[str]]]:
    """For each node: the ops that computed it, and the live ops between it and the output."""
    input_count = len(program.inputs)
    upward: list[frozenset[str]] = [frozenset()] * program.node_count
    for index, step in enumerate(program.steps):
        ops = {step.op}
        for operand in step.operands:
            if isinstance(operand, Ref):
                ops |= upward[operand.node]
        upward[input_count + index] = frozenset(ops)
    downward: list[set[str]] = [set() for _ in range(program.node_count)]
    for node in range(program.output, input_count - 1, -1):
        computed_by = program.step_of(node)
        if computed_by is None or not live[node]:
            continue
        for operand in computed_by.operands:
            if isinstance(operand, Ref):
                downward[operand.node] |= downward[node] | {computed_by.op}
    return upward, [frozenset(found) for found in downward]


def _describe_number(kind: str, node: int, *, engine: float, expected: float, tolerance: float, reference: str) -> str:
    return (
        f"{kind} of node {node}: engine {engine!r}, {reference} {expected!r} "
        f"(difference {abs(engine - expected):.3g}, tolerance {tolerance:.3g})"
    )


PARTIAL_OVERFLOW: Final = "a local partial overflows though torch's gradient is finite (torch divides by x)"
"""Skip reason for the one known difference between refgrad's design and torch (see docs/oracle.md)."""


class _Comparison:
    """The checks and skips for one program, one engine run and one torch reference."""

    def __init__(self, program: Program, engine: Engine, run: EngineRun, reference: TorchResult) -> None:
        self.program = program
        self.engine = engine
        self.run = run
        self.reference = reference
        self.live = program.live()
        self.upward, self.downward = _cones(program, self.live)
        input_count = len(program.inputs)
        self.live_ops = frozenset(step.op for i, step in enumerate(program.steps) if self.live[input_count + i])
        self.checks: list[Check] = []
        self.skips: list[Skip] = []
        # refgrad's engines differentiate constants too and must refuse if one's gradient is not
        # finite; a micrograd-style engine's constants are its own, invisible to the oracle, so
        # there only the program's nodes decide, and a refusal over a constant is allowed.
        self.expected_finite = reference.finite if engine.strict else reference.nodes_finite
        self.optional_signal = not engine.strict and reference.nodes_finite and not reference.finite

    def skip(self, kind: CheckKind, reason: str, node: int | None, ops: frozenset[str]) -> None:
        self.skips.append(Skip(kind, reason, node, ops))

    def op_of(self, node: int) -> frozenset[str]:
        step = self.program.step_of(node)
        assert step is not None
        return frozenset({step.op})

    def domain(self) -> None:
        failure = self.run.failure
        if self.optional_signal and failure is not None and failure.domain_signal:
            blame = self.upward[failure.node] if failure.node is not None else self.live_ops
            self.checks.append(Check("domain", failure.node, blame, 0.0))
            return
        check = _domain_check(
            self.program,
            self.engine,
            self.run,
            self.reference,
            finite=self.expected_finite,
            upward=self.upward,
            live_ops=self.live_ops,
        )
        excused = None if check.passed else self.excuse()
        if excused is None:
            self.checks.append(check)
        else:
            reason, node = excused
            self.skip("domain", reason, node, self.op_of(node))

    def excuse(self) -> tuple[str, int] | None:
        """Why a domain disagreement is not the engine's fault, and the node responsible, if it is not."""
        node = _domain_decided_by_rounding(self.program, self.run, self.reference)
        if node is not None:
            return "domain membership decided by rounding", node
        failure = self.run.failure
        if failure is not None and failure.stage == "backward" and failure.domain_signal and self.expected_finite:
            node = first_infinite_partial(self.program)
            if node is not None:
                return PARTIAL_OVERFLOW, node
        return None

    def values(self) -> None:
        reference, run = self.reference, self.run
        for node in range(len(self.program.inputs), self.program.node_count):
            tolerance = reference.value_tolerances[node]
            if not math.isfinite(tolerance):
                self.skip("value", _NEAR_OVERFLOW, node, self.upward[node])
                continue
            expected, got = reference.values[node], run.values[node]
            ratio = _ratio(abs(got - expected), tolerance)
            detail = ""
            if ratio > 1.0:
                detail = _describe_number(
                    "value", node, engine=got, expected=expected, tolerance=tolerance, reference="torch"
                )
            self.checks.append(Check("value", node, self.upward[node], ratio, detail))

    def gradients(self) -> None:
        reference, run, live = self.reference, self.run, self.live
        # A kink that rounding decides spoils the gradients of everything it depends on.
        spoiled: set[int] = set()
        for kink_node in reference.kink_ambiguous:
            if live[kink_node]:
                self.skip("gradient", "within rounding of a kink", kink_node, self.op_of(kink_node))
                spoiled |= _ancestors(self.program, kink_node)
        for node in range(self.program.output):
            if not live[node] or node in spoiled:
                continue
            tolerance = reference.gradient_tolerances[node]
            if not math.isfinite(tolerance):
                self.skip("gradient", _NEAR_OVERFLOW, node, self.downward[node])
                continue
            expected, got = reference.gradients[node], run.gradients[node]
            ratio = _ratio(abs(got - expected), tolerance)
            detail = ""
            if ratio > 1.0:
                detail = _describe_number(
                    "d output / d node", node, engine=got, expected=expected, tolerance=tolerance, reference="torch"
                )
            self.checks.append(Check("gradient", node, self.downward[node], ratio, detail))

    def finite_differences(self) -> None:
        program = self.program
        center = program.evaluate()
        for node in range(len(program.inputs)):
            if self.live[node]:
                self.finite_difference(node, center)

    def finite_difference(self, node: int, center: tuple[float, ...]) -> None:
        program, reference = self.program, self.reference
        estimate = finite_difference(program, node, output_error_bound(program, reference), center)
        if isinstance(estimate, FiniteDifferenceSkip):
            if estimate.op is None:
                self.skip("finite-difference", "finite differences do not converge", node, self.downward[node])
            else:
                reason = f"within a step of a {estimate.reason}"
                self.skip("finite-difference", reason, estimate.node, frozenset({estimate.op}))
            return
        # A zero gradient is judged against the output's own scale per unit of input.
        natural = abs(center[-1]) / max(1.0, abs(program.inputs[node]))
        scale = max(abs(estimate.estimate), abs(reference.gradients[node]), natural)
        torch_tolerance = reference.gradient_tolerances[node]
        if not estimate.error_bound <= FD_USEFUL * scale or not math.isfinite(torch_tolerance):
            self.skip("finite-difference", "finite differences too imprecise", node, self.downward[node])
            return
        tolerance = _FD_SAFETY * estimate.error_bound + torch_tolerance
        got = self.run.gradients[node]
        ratio = _ratio(abs(got - estimate.estimate), tolerance)
        detail = ""
        if ratio > 1.0:
            detail = _describe_number(
                "d output / d input",
                node,
                engine=got,
                expected=estimate.estimate,
                tolerance=tolerance,
                reference=f"finite differences (h={estimate.step:.3g})",
            )
        self.checks.append(Check("finite-difference", node, self.downward[node], ratio, detail))


def output_error_bound(program: Program, reference: TorchResult) -> float:
    """A bound on the rounding error of evaluating the program's output near its inputs, for finite differences.

    The larger of the error model's tolerance for the output and the classic
    first-order bound ``sum over nodes of |d output / d node| * (2 U |node| +
    2**-1074)``: each node rounded once, relatively or (below the normal range)
    by one subnormal spacing, and amplified by its gradient. The second term
    matters where the output is exact at the inputs themselves but not next to
    them, as when a subnormal product is scaled up.
    """
    first_order = 0.0
    for node in range(len(program.inputs), program.node_count):
        gradient, value = reference.gradients[node], reference.values[node]
        first_order += abs(gradient) * (2.0 * U * abs(value) + _SUBNORMAL_SPACING)
    return max(reference.value_tolerances[program.output], first_order)


def check_program(program: Program, engine: Engine, *, finite_differences: bool = True) -> Outcome:
    """Run ``program`` on ``engine``, torch and finite differences, and compare everything."""
    reference = torch_reference(program)
    run = engine.run(program)
    comparison = _Comparison(program, engine, run, reference)
    if reference.finiteness_ambiguous:
        comparison.skip("domain", _NEAR_OVERFLOW, None, comparison.live_ops)
    elif run.failure is not None or not comparison.expected_finite:
        comparison.domain()
    if run.failure is None and comparison.expected_finite:
        comparison.values()
        comparison.gradients()
        if finite_differences:
            comparison.finite_differences()
    return Outcome(program, tuple(comparison.checks), tuple(comparison.skips))


def _ancestors(program: Program, node: int) -> set[int]:
    found = {node}
    stack = [node]
    while stack:
        step = program.step_of(stack.pop())
        if step is None:
            continue
        for operand in step.operands:
            if isinstance(operand, Ref) and operand.node not in found:
                found.add(operand.node)
                stack.append(operand.node)
    return found


def _domain_decided_by_rounding(program: Program, run: EngineRun, reference: TorchResult) -> int | None:
    """A node whose op's domain holds at the engine's operands but not at torch's, or the reverse.

    Only operands within tolerance of each other count. The lanes catch domain
    edges that rounding crosses continuously; this catches the others, such as
    ``(-1.0) ** y`` where ``y`` is an integer on one side and a float a
    rounding away from it on the other.
    """
    input_count = len(program.inputs)
    for index, step in enumerate(program.steps):
        operand_nodes = [o.node for o in step.operands if isinstance(o, Ref)]
        if any(node >= len(run.values) for node in operand_nodes):
            break
        if any(abs(run.values[n] - reference.values[n]) > reference.value_tolerances[n] for n in operand_nodes):
            continue
        spec = registry[step.op]
        engine_args = [run.values[o.node] if isinstance(o, Ref) else o.value for o in step.operands]
        torch_args = [reference.values[o.node] if isinstance(o, Ref) else o.value for o in step.operands]
        if spec.domain.contains(*engine_args, *step.params) != spec.domain.contains(*torch_args, *step.params):
            return input_count + index
    return None


def _domain_check(
    program: Program,
    engine: Engine,
    run: EngineRun,
    reference: TorchResult,
    *,
    finite: bool,
    upward: list[frozenset[str]],
    live_ops: frozenset[str],
) -> Check:
    """Where torch is not finite the engine must signal it (at the same forward node), and only there."""
    failure = run.failure
    first_bad = reference.first_non_finite_value
    if failure is None:
        where = f"node {first_bad}'s value" if first_bad is not None else "a gradient"
        detail = f"torch's {where} is not finite, but the engine returned finite results without signalling"
        return Check("domain", first_bad, upward[first_bad] if first_bad is not None else live_ops, math.inf, detail)
    blame = upward[failure.node] if failure.node is not None else live_ops
    said = failure.describe()
    if not failure.domain_signal:
        expected = "DomainError" if engine.strict else "a domain signal"
        return Check(
            "domain", failure.node, blame, math.inf, f"the engine failed with something other than {expected}: {said}"
        )
    if finite:
        detail = f"the engine signalled a domain error where torch's results are all finite: {said}"
        return Check("domain", failure.node, blame, math.inf, detail)
    if failure.stage == "forward" and failure.node != first_bad:
        if first_bad is None:
            detail = f"the engine rejected node {failure.node}, whose value torch computes as finite: {said}"
        else:
            first = f"torch's first non-finite value is node {first_bad}"
            detail = f"the engine rejected node {failure.node}, but {first}: {said}"
        return Check("domain", failure.node, blame, math.inf, detail)
    if failure.stage == "backward" and first_bad is not None:
        detail = f"torch's value of node {first_bad} is not finite, but the engine only failed in backward: {said}"
        return Check("domain", first_bad, upward[first_bad], math.inf, detail)
    return Check("domain", failure.node, blame, 0.0)
