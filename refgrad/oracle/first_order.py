"""The first-order checks of one program: domain signals, values, gradients and finite differences.

Each function adds its checks and skips to a :class:`~refgrad.oracle.checks.Comparison`:

* :func:`check_domain`: where the reference's result (a value or a gradient of any node) is not
  finite, the engine must signal it (a strict engine: raise ``DomainError``, and in the
  forward pass at the very node where its value first stops being finite); where
  it is finite, the engine must not;
* :func:`check_values`: every step's value against each reference's (torch's, the exact one's), within its tolerance;
* :func:`check_gradients`: d output / d node for every node the output depends on, against
  torch's, within tolerance;
* :func:`check_finite_differences`: d output / d input for every input, against the
  Richardson estimate, within its error bound plus the reference's gradient tolerance.
"""

from __future__ import annotations

import math
from typing import Final

from refgrad.oracle.checks import (
    BEYOND_FIRST_ORDER,
    FD_SAFETY,
    FD_USEFUL,
    NEAR_OVERFLOW,
    PARTIAL_OVERFLOW,
    Check,
    CheckKind,
    Comparison,
    Reference,
    describe_number,
    error_ratio,
    no_counterpart,
)
from refgrad.oracle.engines import Engine, EngineRun
from refgrad.oracle.finite_differences import FiniteDifferenceSkip, finite_difference
from refgrad.oracle.optable import op_table
from refgrad.oracle.program import Program, Ref
from refgrad.oracle.rounding import U

__all__ = ["check_domain", "check_finite_differences", "check_gradients", "check_values", "output_error_bound"]

_SUBNORMAL_SPACING: Final = 2.0**-1074

HIDDEN_FROM_THE_ENDS: Final = "not finite only where an engine reporting the ends only shows nothing"
"""Skip reason: the reference is not finite at an inner node's value or gradient, which an engine that
reports only the output's value and the inputs' gradients (an adapter without ``nodes``) does not show;
its finite answers there can be neither blamed nor passed."""


def check_domain(comparison: Comparison) -> None:
    """The engine signals where the reference is not finite, and only there (edges rounding decides are excused)."""
    failure = comparison.run.failure
    if failure is None and _hidden_from_the_ends(comparison):
        node = comparison.reference.first_non_finite_value
        comparison.skip("domain", HIDDEN_FROM_THE_ENDS, node, comparison.live_ops)
        return
    if comparison.optional_signal and failure is not None and failure.domain_signal:
        blame = comparison.upward[failure.node] if failure.node is not None else comparison.live_ops
        comparison.checks.append(Check("domain", failure.node, blame, 0.0))
        return
    check = _domain_check(
        comparison.program,
        comparison.engine,
        comparison.run,
        comparison.reference,
        finite=comparison.expected_finite,
        upward=comparison.upward,
        live_ops=comparison.live_ops,
    )
    excused = None if check.passed else _excuse(comparison)
    if excused is None:
        comparison.checks.append(check)
    else:
        reason, node = excused
        comparison.skip("domain", reason, node, comparison.op_of(node))


def _hidden_from_the_ends(comparison: Comparison) -> bool:
    """Whether the reference's non-finite numbers all lie where an ends-only engine's answer shows nothing."""
    if comparison.run.every_node:
        return False
    program, reference = comparison.program, comparison.reference
    if reference.first_non_finite_value is not None:
        return math.isfinite(reference.values[program.output])
    inputs = range(len(program.inputs))
    return all(math.isfinite(reference.gradients[node]) for node in inputs if comparison.live[node])


def _excuse(comparison: Comparison) -> tuple[str, int] | None:
    """Why a domain disagreement is not the engine's fault, and the node responsible, if it is not."""
    node = _domain_decided_by_rounding(comparison.program, comparison.run, comparison.reference)
    if node is not None:
        return "domain membership decided by rounding", node
    failure = comparison.run.failure
    if failure is not None and failure.stage == "backward" and failure.domain_signal and comparison.expected_finite:
        node = comparison.reference.first_infinite_partial(comparison.program)
        if node is not None:
            return PARTIAL_OVERFLOW, node
    return None


def check_values(comparison: Comparison) -> None:
    """Every step's value against each reference's, within its tolerance (where that is finite)."""
    program = comparison.program
    # An engine that reports the ends only (its output's value): that one is checked.
    first = len(program.inputs) if comparison.run.every_node else program.output
    for reference in comparison.references:
        for node in range(first, program.node_count):
            _against(comparison, reference, "value", "value", node, ops=comparison.upward[node])


def check_gradients(comparison: Comparison) -> None:
    """d output / d node for every live node against each reference's (not where a kink rounding decides feeds)."""
    live = comparison.live
    for reference in comparison.references:
        # A kink that rounding decides spoils the gradients of everything it depends on.
        spoiled: set[int] = set()
        for kink_node in reference.kink_ambiguous:
            if live[kink_node]:
                comparison.skip("gradient", "within rounding of a kink", kink_node, comparison.op_of(kink_node))
                spoiled |= comparison.program.ancestors(kink_node)
        # An engine that reports the ends only: its inputs' gradients are checked.
        reported = comparison.program.output if comparison.run.every_node else len(comparison.program.inputs)
        for node in range(reported):
            if live[node] and node not in spoiled:
                _against(comparison, reference, "gradient", "d output / d node", node, ops=comparison.downward[node])


def _against(
    comparison: Comparison, reference: Reference, kind: CheckKind, what: str, node: int, *, ops: frozenset[str]
) -> None:
    """One of the engine's numbers against ``reference``'s: a check, or a skip where the reference cannot judge it.

    Skipped where an op the reference has no counterpart of takes part (:data:`NO_TORCH`,
    :data:`~refgrad.oracle.checks.NO_EXACT`), beyond first order, and where the tolerance is not finite.
    """
    value = kind == "value"
    got = comparison.run.values[node] if value else comparison.run.gradients[node]
    expected = reference.values[node] if value else reference.gradients[node]
    tolerance = reference.value_tolerances[node] if value else reference.gradient_tolerances[node]
    without, unmodelled, beyond = comparison.gaps_of(reference)
    if ops & without:
        comparison.skip(kind, no_counterpart(reference), node, ops)
        return
    if node in unmodelled or (not value and beyond):
        comparison.skip(kind, BEYOND_FIRST_ORDER, node, ops)
        return
    if not math.isfinite(tolerance):
        comparison.skip(kind, NEAR_OVERFLOW, node, ops)
        return
    ratio = error_ratio(abs(got - expected), tolerance)
    detail = ""
    if ratio > 1.0:
        detail = describe_number(
            what, node, engine=got, expected=expected, tolerance=tolerance, reference=reference.name
        )
    exact_ulps = reference.ulps_of(node, got, value=value)
    comparison.checks.append(Check(kind, node, ops, ratio, detail, got, expected, reference.name, exact_ulps))


def check_finite_differences(comparison: Comparison) -> None:
    """d output / d input for every live input against the Richardson estimate (kept in ``known``)."""
    program = comparison.program
    if comparison.beyond_first_order:
        for node in range(len(program.inputs)):
            if comparison.live[node]:
                comparison.skip("finite-difference", BEYOND_FIRST_ORDER, node, comparison.downward[node])
        return
    center = program.evaluate()
    for node in range(len(program.inputs)):
        if comparison.live[node]:
            _finite_difference(comparison, node, center)


def _finite_difference(comparison: Comparison, node: int, center: tuple[float, ...]) -> None:
    program, reference = comparison.program, comparison.reference
    estimate = None if comparison.known is None else comparison.known.estimates.get(node)
    if estimate is None:
        estimate = finite_difference(program, node, output_error_bound(program, reference), center)
        if comparison.known is not None:
            comparison.known.estimates[node] = estimate
    if isinstance(estimate, FiniteDifferenceSkip):
        if estimate.op is None:
            comparison.skip("finite-difference", "finite differences do not converge", node, comparison.downward[node])
        else:
            reason = f"within a step of a {estimate.reason}"
            comparison.skip("finite-difference", reason, estimate.node, frozenset({estimate.op}))
        return
    # A zero gradient is judged against the output's own scale per unit of input.
    natural = abs(center[-1]) / max(1.0, abs(program.inputs[node]))
    # The estimate's precision is judged by its own size (or the output's), not torch's gradient: an
    # estimate that is precise only next to torch's is one whose stencil did not resolve the output,
    # as for sin at x = 1e300, whose steps (about 1e294) alias its period.
    scale = max(abs(estimate.estimate), natural)
    torch_tolerance = reference.gradient_tolerances[node]
    if not estimate.error_bound <= FD_USEFUL * scale or not math.isfinite(torch_tolerance):
        comparison.skip("finite-difference", "finite differences too imprecise", node, comparison.downward[node])
        return
    tolerance = FD_SAFETY * estimate.error_bound + torch_tolerance
    got = comparison.run.gradients[node]
    ratio = error_ratio(abs(got - estimate.estimate), tolerance)
    detail = ""
    if ratio > 1.0:
        detail = describe_number(
            "d output / d input",
            node,
            engine=got,
            expected=estimate.estimate,
            tolerance=tolerance,
            reference=f"finite differences (h={estimate.step:.3g})",
        )
    comparison.checks.append(
        Check(
            "finite-difference",
            node,
            comparison.downward[node],
            ratio,
            detail,
            got,
            estimate.estimate,
            "finite differences",
        )
    )


def output_error_bound(program: Program, reference: Reference) -> float:
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


def _domain_decided_by_rounding(program: Program, run: EngineRun, reference: Reference) -> int | None:
    """A node whose op's domain holds at the engine's operands but not at torch's, or the reverse.

    Only operands within tolerance of each other count. The lanes catch domain
    edges that rounding crosses continuously; this catches the others, such as
    ``(-1.0) ** y`` where ``y`` is an integer on one side and a float a
    rounding away from it on the other.
    """
    # Of an engine that reports the ends only, the operands known are the inputs.
    known = len(run.values) if run.every_node else len(program.inputs)
    for node, step in program.numbered_steps():
        operand_nodes = [o.node for o in step.operands if isinstance(o, Ref)]
        if any(n >= known for n in operand_nodes):
            if run.every_node:
                break
            continue
        if any(abs(run.values[n] - reference.values[n]) > reference.value_tolerances[n] for n in operand_nodes):
            continue
        spec = op_table[step.op]
        engine_args = list(step.arguments(run.values))
        torch_args = list(step.arguments(reference.values))
        if spec.domain.contains(*engine_args, *step.params) != spec.domain.contains(*torch_args, *step.params):
            return node
    return None


def _domain_check(
    program: Program,
    engine: Engine,
    run: EngineRun,
    reference: Reference,
    *,
    finite: bool,
    upward: list[frozenset[str]],
    live_ops: frozenset[str],
) -> Check:
    """Where torch is not finite the engine must signal it (at the same forward node), and only there."""
    failure = run.failure
    first_bad = reference.first_non_finite_value
    name = reference.name
    if failure is None:
        where = f"{name}'s value of node {first_bad}" if first_bad is not None else f"a gradient {name} computes"
        detail = f"{where} is not finite, but the engine returned finite results without signalling"
        return Check("domain", first_bad, upward[first_bad] if first_bad is not None else live_ops, math.inf, detail)
    blame = upward[failure.node] if failure.node is not None else live_ops
    said = failure.describe()
    if not failure.domain_signal:
        expected = "DomainError" if engine.strict else "a domain signal"
        return Check(
            "domain", failure.node, blame, math.inf, f"the engine failed with something other than {expected}: {said}"
        )
    if finite:
        detail = f"the engine signalled a domain error where {name}'s results are all finite: {said}"
        return Check("domain", failure.node, blame, math.inf, detail)
    # A forward failure without a node (an adapter that does not say where) is judged by its stage:
    # right wherever a value is not finite.
    if failure.stage == "forward" and failure.node is None and first_bad is None:
        detail = f"the engine refused while building the graph, but every value {name} computes is finite: {said}"
        return Check("domain", None, blame, math.inf, detail)
    if failure.stage == "forward" and failure.node is not None and failure.node != first_bad:
        if first_bad is None:
            detail = f"the engine rejected node {failure.node}, whose value {name} computes as finite: {said}"
        else:
            first = f"{name}'s first non-finite value is node {first_bad}"
            detail = f"the engine rejected node {failure.node}, but {first}: {said}"
        return Check("domain", failure.node, blame, math.inf, detail)
    if failure.stage == "backward" and first_bad is not None:
        detail = f"{name}'s value of node {first_bad} is not finite, but the engine only failed in backward: {said}"
        return Check("domain", first_bad, upward[first_bad], math.inf, detail)
    return Check("domain", failure.node, blame, 0.0)
