"""The higher-order checks of one program: forward mode, and the Hessian at order 2.

* :func:`check_forward_mode` (engines with forward mode, every run): the directional
  derivative along seeded random tangents ``t`` (:func:`tangents_for`) against torch's
  forward mode (dual tensors), and **forward-vs-reverse**: against the engine's own
  ``sum_i t_i * grad_i``;
* :func:`check_second_order` (``order=2``, engines that differentiate their gradients):
  every entry of the Hessian with respect to the inputs against torch's double backward,
  and **second-order-fd**: against central differences of the engine's own first-order gradients.
"""

from __future__ import annotations

import math
import random
import sys
import zlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Final

from refgrad.oracle.checks import (
    BELOW_NORMAL,
    BEYOND_FIRST_ORDER,
    EDGE_WEIGHT_OVERFLOW,
    FD_SAFETY,
    FD_USEFUL,
    NEAR_OVERFLOW,
    RECIPROCAL_OVERFLOW,
    SECOND_PARTIAL_OVERFLOW,
    UNRESOLVED_INPUT,
    ZERO_BASE_POWER,
    ZERO_EXPONENT_POWER,
    Check,
    CheckKind,
    Comparison,
    describe_number,
    error_ratio,
    no_counterpart,
)
from refgrad.oracle.engines import EngineFailure, ForwardModeEngine, SecondOrderEngine
from refgrad.oracle.finite_differences import (
    REFINEMENTS,
    FiniteDifference,
    FiniteDifferenceSkip,
    gradient_finite_differences,
)
from refgrad.oracle.optable import op_table
from refgrad.oracle.program import Program, Ref

__all__ = ["check_forward_mode", "check_second_order", "tangents_for"]

_NORMAL: Final = sys.float_info.min


def tangents_for(program: Program) -> tuple[float, ...]:
    """The forward-mode check's tangents: random, with magnitudes in [0.5, 1.5] and random signs, seeded by the program.

    Seeded by the program's JSON (CRC-32), so a program is always checked along
    the same direction, whoever checks it and in whatever order.
    """
    generator = random.Random(zlib.crc32(program.to_json().encode()))
    return tuple(generator.choice((-1.0, 1.0)) * generator.uniform(0.5, 1.5) for _ in program.inputs)


def check_forward_mode(comparison: Comparison, engine: ForwardModeEngine) -> None:
    """The engine's jvp along seeded random tangents, against torch's forward mode and its own reverse mode."""
    program, reference, run = comparison.program, comparison.reference, comparison.run
    inputs = range(len(program.inputs))
    live_inputs = [i for i in inputs if comparison.live[i]]
    ops = comparison.live_ops
    if not live_inputs:
        return
    for kink_node in reference.kink_ambiguous:
        if comparison.live[kink_node]:
            comparison.skip("forward-mode", "within rounding of a kink", kink_node, comparison.op_of(kink_node))
            return
    tangents = tangents_for(program)
    found = comparison.known.directional if comparison.known is not None else None
    if found is None:
        found = reference.directional(program, tangents)
        if comparison.known is not None:
            comparison.known.directional = found
    expected, tolerance = found
    if not math.isfinite(tolerance) or not math.isfinite(expected):
        comparison.skip("forward-mode", NEAR_OVERFLOW, None, ops)
        return
    forward = engine.forward_mode(program, tangents)
    if forward.failure is not None:
        said = forward.failure.describe()
        detail = f"forward mode failed where {reference.name}'s forward mode gives {expected!r}: {said}"
        comparison.checks.append(Check("forward-mode", None, ops, math.inf, detail))
        return
    got = forward.directional
    reverse = math.fsum(t * run.gradients[i] for i, t in enumerate(tangents))
    against: tuple[tuple[CheckKind, float, str], ...] = (
        ("forward-mode", expected, f"{reference.name}'s forward mode"),
        ("forward-vs-reverse", reverse, "the engine's reverse mode sum_i t_i * grad_i"),
    )
    if comparison.without_torch or comparison.beyond_first_order:
        reason = no_counterpart(reference) if comparison.without_torch else BEYOND_FIRST_ORDER
        comparison.skip("forward-mode", reason, None, ops)
        against = against[1:]
    for kind, reference_value, name in against:
        ratio = error_ratio(abs(got - reference_value), tolerance)
        detail = ""
        if ratio > 1.0:
            detail = describe_number(
                f"jvp along {list(tangents)}, output",
                program.output,
                engine=got,
                expected=reference_value,
                tolerance=tolerance,
                reference=name,
            )
        against_name = reference.name if kind == "forward-mode" else "reverse mode"
        comparison.checks.append(Check(kind, program.output, ops, ratio, detail, reference=against_name))


def check_second_order(comparison: Comparison, engine: SecondOrderEngine, *, finite_differences: bool) -> None:
    """The engine's Hessian against torch's double backward and central differences of its own gradients."""
    program, reference = comparison.program, comparison.torch
    count = len(program.inputs)
    live_inputs = [i for i in range(count) if comparison.live[i]]
    if not live_inputs:
        return
    if comparison.beyond_first_order:
        comparison.skip("second-order", BEYOND_FIRST_ORDER, None, comparison.live_ops)
        return
    spoiled: set[int] = set()
    for kink_node in reference.kink_ambiguous:
        if comparison.live[kink_node]:
            comparison.skip("second-order", "within rounding of a kink", kink_node, comparison.op_of(kink_node))
            spoiled |= {node for node in program.ancestors(kink_node) if node < count}
    pairs = [(i, j) for i in live_inputs for j in live_inputs if i not in spoiled and j not in spoiled]
    if reference.hessian_finiteness_ambiguous:
        comparison.skip("second-order", NEAR_OVERFLOW, None, comparison.live_ops)
        return
    excused = _torch_hessian_nan(comparison)

    def meaningful(entry: float) -> bool:
        return math.isfinite(entry) or (excused is not None and math.isnan(entry))

    torch_finite = all(meaningful(reference.hessian[i][j]) for i, j in pairs)
    second = engine.second_order(program)
    if second.failure is not None:
        _second_order_failure(comparison, second.failure, torch_finite=torch_finite)
        return
    hessian = second.hessian
    checked: list[tuple[int, int]] = []
    for i, j in pairs:
        ops = comparison.downward[i] | comparison.downward[j]
        expected, got = reference.hessian[i][j], hessian[i][j]
        if not math.isfinite(expected):
            if excused is not None and math.isnan(expected):
                comparison.skip("second-order", ZERO_BASE_POWER, excused, comparison.op_of(excused))
            else:
                detail = f"d2 output / d x{i} d x{j}: torch's is {expected!r}, the engine returned {got!r}"
                comparison.checks.append(Check("second-order", None, ops, math.inf, detail))
            continue
        tolerance = reference.hessian_tolerances[i][j]
        if not math.isfinite(tolerance):
            comparison.skip("second-order", NEAR_OVERFLOW, None, ops)
            continue
        if _subnormal(expected, got):
            comparison.skip("second-order", BELOW_NORMAL, i, ops)
            continue
        ratio = error_ratio(abs(got - expected), tolerance)
        detail = ""
        if ratio > 1.0:
            detail = describe_number(
                f"d2 output / d x{i} d x{j}, input",
                i,
                engine=got,
                expected=expected,
                tolerance=tolerance,
                reference="torch (double backward)",
            )
        comparison.checks.append(Check("second-order", i, ops, ratio, detail))
        checked.append((i, j))
    if finite_differences:
        _second_order_finite_differences(comparison, engine, hessian, checked)


def _second_order_failure(comparison: Comparison, failure: EngineFailure, *, torch_finite: bool) -> None:
    """The engine failed differentiating its gradients: right only where torch's Hessian is not finite."""
    # torch only where it is used
    from refgrad.oracle.torch_reference import first_infinite_second_partial, first_overflowing_edge_weight

    if not failure.domain_signal:
        detail = f"the engine failed with something other than DomainError: {failure.describe()}"
        comparison.checks.append(Check("second-order", None, comparison.live_ops, math.inf, detail))
    elif not torch_finite:
        comparison.checks.append(Check("second-order", None, comparison.live_ops, 0.0))
    elif (node := first_infinite_second_partial(comparison.program)) is not None:
        comparison.skip("second-order", SECOND_PARTIAL_OVERFLOW, node, comparison.op_of(node))
    elif (node := first_overflowing_edge_weight(comparison.program)) is not None:
        comparison.skip("second-order", EDGE_WEIGHT_OVERFLOW, node, comparison.op_of(node))
    elif (node := _reciprocal_overflow(comparison)) is not None:
        comparison.skip("second-order", RECIPROCAL_OVERFLOW, node, comparison.op_of(node))
    else:
        detail = "the engine failed differentiating its gradients, though torch's Hessian is finite: "
        comparison.checks.append(
            Check("second-order", None, comparison.live_ops, math.inf, detail + failure.describe())
        )


def _reciprocal_overflow(comparison: Comparison) -> int | None:
    """The first live node of an op whose derivatives divide by an operand whose reciprocal overflows, if any."""
    program, values = comparison.program, comparison.torch.values
    for node, step in program.numbered_steps():
        if not op_table[step.op].divides or not comparison.live[node]:
            continue
        for operand in step.operands:
            # (x == 0 is a pole: a domain edge, not this.)
            value = values[operand.node] if isinstance(operand, Ref) else 0.0
            if value != 0.0 and not math.isfinite(1.0 / value):
                return node
    return None


def _torch_hessian_nan(comparison: Comparison) -> int | None:
    """A live node where torch's second derivatives are NaN by its conventions (``x ** y`` at ``x = 0, y >= 0``)."""
    from refgrad.oracle.torch_reference import reference_of  # torch only where it is used

    return _first_live(comparison, lambda op: reference_of(op).hessian_nan)


def _first_live(comparison: Comparison, where_of: Callable[[str], Callable[..., bool] | None]) -> int | None:
    """The first live node whose op has a predicate (``where_of(op)``) true at its operands (torch's values)."""
    program, values = comparison.program, comparison.torch.values
    for node, step in program.numbered_steps():
        where = where_of(step.op)
        if where is None or not comparison.live[node]:
            continue
        operands = step.arguments(values)
        if where(*operands, *step.params):
            return node
    return None


def _second_order_finite_differences(
    comparison: Comparison,
    engine: SecondOrderEngine,
    hessian: tuple[tuple[float, ...], ...],
    checked: list[tuple[int, int]],
) -> None:
    """Each Hessian column j (d/d input j) against central differences of the engine's own gradients."""
    program, reference = comparison.program, comparison.torch
    count = len(program.inputs)
    center = program.evaluate()

    def gradients_at(inputs: Sequence[float]) -> tuple[float, ...] | None:
        if not all(map(math.isfinite, inputs)):
            return None  # a step beyond the largest float
        run = engine.run(replace(program, inputs=tuple(inputs)))
        return None if run.failure is not None else run.gradients[:count]

    # A partial below the normal range rounds absolutely, and the cotangent amplifies that.
    errors = [max(tolerance, reference.subnormal_allowance) for tolerance in reference.gradient_tolerances[:count]]
    by_column: dict[int, list[int]] = {}
    for i, j in checked:
        by_column.setdefault(j, []).append(i)
    # Where differences of the output along an input did not converge, the output varies on a scale
    # finer than every step tried (tanh(x1 / 1e-125)); its gradients along that input are no better
    # resolved, and differences that look converged there (all zero) are blind, not evidence.
    unresolved = {
        skip.node
        for skip in comparison.skips
        if skip.kind == "finite-difference" and skip.reason == "finite differences do not converge"
    }
    for column, rows in by_column.items():
        if column in unresolved:
            for row in rows:
                comparison.skip(
                    "second-order-fd", UNRESOLVED_INPUT, column, comparison.downward[row] | comparison.downward[column]
                )
            continue
        estimates = gradient_finite_differences(program, column, gradients_at, errors, center)
        for row in rows:
            estimate = estimates[row]
            # A disagreement stands only if it survives smaller steps: differences that converge
            # at one scale can be blind to a feature narrower than the step (tanh(x1 / 1e-8)).
            while (
                isinstance(estimate, FiniteDifference)
                and not _agrees(comparison, row, column, hessian[row][column], estimate)
                and estimate.refinement < REFINEMENTS
            ):
                start = estimate.refinement + 1
                retried = gradient_finite_differences(program, column, gradients_at, errors, center, start=start)
                estimate = retried[row]
            _second_order_finite_difference(comparison, row, column, hessian[row][column], estimate)


def _agrees(comparison: Comparison, row: int, column: int, got: float, estimate: FiniteDifference) -> bool:
    """Whether the engine's entry is within the finite-difference tolerance of ``estimate``."""
    tolerance = FD_SAFETY * estimate.error_bound + comparison.torch.hessian_tolerances[row][column]
    return abs(got - estimate.estimate) <= tolerance


def _second_order_finite_difference(
    comparison: Comparison, row: int, column: int, got: float, estimate: FiniteDifference | FiniteDifferenceSkip
) -> None:
    program, reference = comparison.program, comparison.torch
    ops = comparison.downward[row] | comparison.downward[column]
    if isinstance(estimate, FiniteDifferenceSkip):
        if estimate.op is None:
            reason = (
                "the engine's gradients fail within a step"
                if estimate.reason == "engine failure"
                else "finite differences do not converge"
            )
            comparison.skip("second-order-fd", reason, column, ops)
        else:
            comparison.skip(
                "second-order-fd", f"within a step of a {estimate.reason}", estimate.node, frozenset({estimate.op})
            )
        return
    # A zero Hessian entry is judged against the gradient's scale per unit of input, or the output's per two.
    per_column = max(1.0, abs(program.inputs[column]))
    output = abs(reference.values[program.output])
    natural = max(abs(reference.gradients[row]), output / max(1.0, abs(program.inputs[row]))) / per_column
    scale = max(abs(estimate.estimate), abs(reference.hessian[row][column]), natural)
    if _subnormal(estimate.estimate, reference.hessian[row][column], got):
        comparison.skip("second-order-fd", BELOW_NORMAL, column, ops)
        return
    torch_tolerance = reference.hessian_tolerances[row][column]
    if not estimate.error_bound <= FD_USEFUL * scale:
        comparison.skip("second-order-fd", "finite differences too imprecise", column, ops)
        return
    tolerance = FD_SAFETY * estimate.error_bound + torch_tolerance
    ratio = error_ratio(abs(got - estimate.estimate), tolerance)
    detail = ""
    if ratio > 1.0 and (node := _first_live(comparison, lambda op: op_table[op].constant_partials)) is not None:
        comparison.skip("second-order-fd", ZERO_EXPONENT_POWER, node, comparison.op_of(node))
        return
    if ratio > 1.0:
        detail = describe_number(
            f"d2 output / d x{row} d x{column}, input",
            row,
            engine=got,
            expected=estimate.estimate,
            tolerance=tolerance,
            reference=f"finite differences of the engine's gradients (h={estimate.step:.3g})",
        )
    comparison.checks.append(Check("second-order-fd", row, ops, ratio, detail))


def _subnormal(*entries: float) -> bool:
    """Some entry is non-zero and all are below the normal range."""
    largest = max(abs(entry) for entry in entries)
    return 0.0 < largest < _NORMAL
