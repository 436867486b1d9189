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
  Richardson estimate, within its error bound plus torch's gradient tolerance;
* **forward-mode** (engines with forward mode, every run): the directional
  derivative along seeded random tangents ``t`` against torch's forward mode (dual tensors), and
  **forward-vs-reverse**: against the engine's own ``sum_i t_i * grad_i``;
* **second-order** (``order=2``, engines that differentiate their gradients):
  every entry of the Hessian with respect to the inputs against torch's double
  backward, and **second-order-fd**: against central differences of the
  engine's own first-order gradients.

Each check is attributed to the ops it exercises: a value to the ops that
computed it, a gradient to the ops on the paths from its node to the output.
"""

from __future__ import annotations

import math
import random
import sys
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Literal

from refgrad.ops import registry
from refgrad.oracle._arguments import engine_argument, flag_argument, order_argument, program_argument
from refgrad.oracle.engines import Engine, EngineFailure, EngineRun, ForwardModeEngine, SecondOrderEngine, start_run
from refgrad.oracle.finite_differences import (
    REFINEMENTS,
    FiniteDifference,
    FiniteDifferenceSkip,
    finite_difference,
    gradient_finite_differences,
)
from refgrad.oracle.program import Program, Ref
from refgrad.oracle.torch_reference import (
    TorchResult,
    U,
    directional_tolerance,
    first_infinite_partial,
    first_infinite_second_partial,
    first_overflowing_edge_weight,
    torch_jvp,
    torch_reference,
)

__all__ = [
    "BELOW_NORMAL",
    "CHECK_KINDS",
    "EDGE_WEIGHT_OVERFLOW",
    "FD_USEFUL",
    "PARTIAL_OVERFLOW",
    "RECIPROCAL_OVERFLOW",
    "SECOND_PARTIAL_OVERFLOW",
    "ZERO_BASE_POWER",
    "ZERO_EXPONENT_POWER",
    "Check",
    "CheckKind",
    "KnownReferences",
    "Outcome",
    "Skip",
    "check_program",
    "output_error_bound",
    "relative_and_ulps",
    "tangents_for",
]

CheckKind = Literal[
    "value",
    "gradient",
    "finite-difference",
    "domain",
    "forward-mode",
    "forward-vs-reverse",
    "second-order",
    "second-order-fd",
]
CHECK_KINDS: Final[tuple[CheckKind, ...]] = (
    "value",
    "gradient",
    "finite-difference",
    "domain",
    "forward-mode",
    "forward-vs-reverse",
    "second-order",
    "second-order-fd",
)
"""Every kind of check, in the order reports list them."""

FD_USEFUL: Final = 1e-4
"""A finite-difference estimate whose error bound exceeds this share of the gradient is skipped as imprecise."""

_FD_SAFETY: Final = 2.0
_SUBNORMAL_SPACING: Final = 2.0**-1074
_NORMAL: Final = sys.float_info.min
_NEAR_OVERFLOW: Final = "within rounding of an overflow or a domain edge"


@dataclass(frozen=True, slots=True)
class Check:
    """One comparison: ``ratio`` is the error divided by the tolerance (at most 1 to pass)."""

    kind: CheckKind
    node: int | None
    ops: frozenset[str]
    ratio: float
    detail: str = ""
    got: float | None = None
    """The engine's number, for checks comparing numbers (not for domain checks)."""
    expected: float | None = None
    """The reference's number it was compared with."""

    @property
    def passed(self) -> bool:
        """Whether the engine agreed with the reference."""
        return self.ratio <= 1.0

    @property
    def relative_error(self) -> float | None:
        """``|got - expected| / |expected|`` (infinite when only the expected number is 0), for numeric checks."""
        if self.got is None or self.expected is None:
            return None
        error = abs(self.got - self.expected)
        if error == 0.0:
            return 0.0
        return error / abs(self.expected) if self.expected != 0.0 else math.inf

    @property
    def ulps(self) -> float | None:
        """The difference in units in the last place of the expected number, for numeric checks."""
        if self.got is None or self.expected is None:
            return None
        return abs(self.got - self.expected) / math.ulp(self.expected)


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
    engine_failure: EngineFailure | None = None
    """How the engine's run stopped, if it did (an exception, or its worker hanging or dying)."""
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


def relative_and_ulps(got: float, expected: float) -> str:
    """``relative 1.2e-06, 5.4e+09 ulps``: how far ``got`` is from ``expected``, in words reports use."""
    error = abs(got - expected)
    relative = "n/a (expected 0)" if expected == 0.0 else f"{error / abs(expected):.2g}"
    return f"relative {relative}, {error / math.ulp(expected):.3g} ulps"


def _describe_number(kind: str, node: int, *, engine: float, expected: float, tolerance: float, reference: str) -> str:
    return (
        f"{kind} of node {node}: engine {engine!r}, {reference} {expected!r} "
        f"(difference {abs(engine - expected):.3g}, {relative_and_ulps(engine, expected)}; tolerance {tolerance:.3g})"
    )


PARTIAL_OVERFLOW: Final = "a local partial overflows though torch's gradient is finite (torch divides by x)"
"""Skip reason for the one known difference between refgrad's design and torch (see docs/oracle.md)."""

ZERO_EXPONENT_POWER: Final = "x ** y at y = 0: d/dx is the constant 0 (PyTorch's convention), d/dy of it is lost"
"""Skip reason for a second-order finite difference that disagrees through ``x ** y`` at ``y = 0``.

refgrad (like torch) returns d/dx x ** y = 0 as a constant when ``y == 0``, so
the Hessian entry d/dy (d/dx) is 0 where finite differences of the gradients
see ``x ** -1`` (see docs/higher-order.md).
"""

UNRESOLVED_INPUT: Final = "first-order finite differences along this input do not converge"
"""Second-order finite differences along an input are not trusted where first-order ones did not converge."""
BELOW_NORMAL: Final = "a Hessian entry below the normal range (underflow decides)"
"""Skip reason for second derivatives too small to compare.

A Hessian entry below ``sys.float_info.min`` is summed from products that may
have been flushed to zero or rounded absolutely, in torch as in the engine, in
ways that neither error model follows; finite differences of the gradients
do not flush them, so they disagree too.
"""

EDGE_WEIGHT_OVERFLOW: Final = "an adjoint times a tangent overflows though torch's Hessian is finite (torch divides)"
"""Skip reason: the engine's second sweep forms a product that overflows (see ``first_overflowing_edge_weight``)."""

RECIPROCAL_OVERFLOW: Final = "an operand's reciprocal overflows though torch's Hessian is finite (torch divides)"
"""Skip reason: the second-order analogue of :data:`PARTIAL_OVERFLOW` for partials that are graphs.

``x ** y``'s partial ``x ** y * log(x)`` and ``log``'s ``1 / x`` have partials of
their own with ``1 / x`` in them; at a subnormal ``x`` that overflows, and an
engine that multiplies by it raises even where the cotangent is 0, while torch
divides. Counted only where such an operand really is that small.
"""
_DIVIDING_OPS: Final = frozenset({"div", "pow", "vpow", "log"})
"""Ops whose derivatives (of first or second order) divide by an operand."""

SECOND_PARTIAL_OVERFLOW: Final = "a local second partial overflows though torch's Hessian is finite (torch masks)"
"""Skip reason for the second-order analogue of :data:`PARTIAL_OVERFLOW` (see docs/oracle.md)."""

ZERO_BASE_POWER: Final = "x ** y at x = 0 (y >= 0) or y = 0: torch's second derivative is NaN (torch.where)"
"""Skip reason for a NaN second derivative from torch through ``x ** y`` where PyTorch's convention applies.

At a zero base (``y >= 0``) or a zero exponent, torch's first derivative is a
``torch.where`` whose discarded branch (``result * log(x)``, or
``y * x ** (y - 1)`` with ``x ** -2`` overflowing) it still differentiates, to
NaN; refgrad's first partials there are PyTorch's constant 0 and their
derivatives 0 (see docs/higher-order.md).
"""


@dataclass(slots=True)
class KnownReferences:
    """torch's result for one program, and its finite-difference estimates and forward mode as they are made.

    Passed to :func:`check_program` to check the same program on engine after engine without
    computing the references again (the structured programs of a verification run are the
    same in every run).
    """

    torch: TorchResult
    estimates: dict[int, FiniteDifference | FiniteDifferenceSkip] = field(
        default_factory=dict[int, FiniteDifference | FiniteDifferenceSkip]
    )
    directional: float | None = None  # torch's jvp along the program's tangents (tangents_for)


def tangents_for(program: Program) -> tuple[float, ...]:
    """The forward-mode check's tangents: random, with magnitudes in [0.5, 1.5] and random signs, seeded by the program.

    Seeded by the program's JSON (CRC-32), so a program is always checked along
    the same direction, whoever checks it and in whatever order.
    """
    generator = random.Random(zlib.crc32(program.to_json().encode()))
    return tuple(generator.choice((-1.0, 1.0)) * generator.uniform(0.5, 1.5) for _ in program.inputs)


class _Comparison:
    """The checks and skips for one program, one engine run and one torch reference."""

    def __init__(
        self, program: Program, engine: Engine, run: EngineRun, reference: TorchResult, known: KnownReferences | None
    ) -> None:
        self.program = program
        self.known = known
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
            self.checks.append(Check("value", node, self.upward[node], ratio, detail, got, expected))

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
            self.checks.append(Check("gradient", node, self.downward[node], ratio, detail, got, expected))

    def finite_differences(self) -> None:
        program = self.program
        center = program.evaluate()
        for node in range(len(program.inputs)):
            if self.live[node]:
                self.finite_difference(node, center)

    def finite_difference(self, node: int, center: tuple[float, ...]) -> None:
        program, reference = self.program, self.reference
        estimate = None if self.known is None else self.known.estimates.get(node)
        if estimate is None:
            estimate = finite_difference(program, node, output_error_bound(program, reference), center)
            if self.known is not None:
                self.known.estimates[node] = estimate
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
        self.checks.append(Check("finite-difference", node, self.downward[node], ratio, detail, got, estimate.estimate))

    def forward_mode(self, engine: ForwardModeEngine) -> None:
        """The engine's jvp along seeded random tangents, against torch's forward mode and its own reverse mode."""
        program, reference, run = self.program, self.reference, self.run
        inputs = range(len(program.inputs))
        live_inputs = [i for i in inputs if self.live[i]]
        ops = self.live_ops
        if not live_inputs:
            return
        for kink_node in reference.kink_ambiguous:
            if self.live[kink_node]:
                self.skip("forward-mode", "within rounding of a kink", kink_node, self.op_of(kink_node))
                return
        tangents = tangents_for(program)
        tolerance = directional_tolerance(reference, tangents)
        expected = self.known.directional if self.known is not None else None
        if expected is None:
            expected = torch_jvp(program, tangents)
            if self.known is not None:
                self.known.directional = expected
        if not math.isfinite(tolerance) or not math.isfinite(expected):
            self.skip("forward-mode", _NEAR_OVERFLOW, None, ops)
            return
        forward = engine.forward_mode(program, tangents)
        if forward.failure is not None:
            detail = f"forward mode failed where torch's forward mode gives {expected!r}: {forward.failure.describe()}"
            self.checks.append(Check("forward-mode", None, ops, math.inf, detail))
            return
        got = forward.directional
        reverse = math.fsum(t * run.gradients[i] for i, t in enumerate(tangents))
        against: tuple[tuple[CheckKind, float, str], ...] = (
            ("forward-mode", expected, "torch's forward mode"),
            ("forward-vs-reverse", reverse, "the engine's reverse mode sum_i t_i * grad_i"),
        )
        for kind, reference_value, name in against:
            ratio = _ratio(abs(got - reference_value), tolerance)
            detail = ""
            if ratio > 1.0:
                detail = _describe_number(
                    f"jvp along {list(tangents)}, output",
                    program.output,
                    engine=got,
                    expected=reference_value,
                    tolerance=tolerance,
                    reference=name,
                )
            self.checks.append(Check(kind, program.output, ops, ratio, detail))

    def second_order(self, engine: SecondOrderEngine, *, finite_differences: bool) -> None:
        """The engine's Hessian against torch's double backward and central differences of its own gradients."""
        program, reference = self.program, self.reference
        count = len(program.inputs)
        live_inputs = [i for i in range(count) if self.live[i]]
        if not live_inputs:
            return
        spoiled: set[int] = set()
        for kink_node in reference.kink_ambiguous:
            if self.live[kink_node]:
                self.skip("second-order", "within rounding of a kink", kink_node, self.op_of(kink_node))
                spoiled |= {node for node in _ancestors(program, kink_node) if node < count}
        pairs = [(i, j) for i in live_inputs for j in live_inputs if i not in spoiled and j not in spoiled]
        if reference.hessian_finiteness_ambiguous:
            self.skip("second-order", _NEAR_OVERFLOW, None, self.live_ops)
            return
        excused = self.zero_base_power()

        def meaningful(entry: float) -> bool:
            return math.isfinite(entry) or (excused is not None and math.isnan(entry))

        torch_finite = all(meaningful(reference.hessian[i][j]) for i, j in pairs)
        second = engine.second_order(program)
        if second.failure is not None:
            self.second_order_failure(second.failure, torch_finite=torch_finite)
            return
        hessian = second.hessian
        checked: list[tuple[int, int]] = []
        for i, j in pairs:
            ops = self.downward[i] | self.downward[j]
            expected, got = reference.hessian[i][j], hessian[i][j]
            if not math.isfinite(expected):
                if excused is not None and math.isnan(expected):
                    self.skip("second-order", ZERO_BASE_POWER, excused, self.op_of(excused))
                else:
                    detail = f"d2 output / d x{i} d x{j}: torch's is {expected!r}, the engine returned {got!r}"
                    self.checks.append(Check("second-order", None, ops, math.inf, detail))
                continue
            tolerance = reference.hessian_tolerances[i][j]
            if not math.isfinite(tolerance):
                self.skip("second-order", _NEAR_OVERFLOW, None, ops)
                continue
            if _subnormal(expected, got):
                self.skip("second-order", BELOW_NORMAL, i, ops)
                continue
            ratio = _ratio(abs(got - expected), tolerance)
            detail = ""
            if ratio > 1.0:
                detail = _describe_number(
                    f"d2 output / d x{i} d x{j}, input",
                    i,
                    engine=got,
                    expected=expected,
                    tolerance=tolerance,
                    reference="torch (double backward)",
                )
            self.checks.append(Check("second-order", i, ops, ratio, detail))
            checked.append((i, j))
        if finite_differences:
            self.second_order_finite_differences(engine, hessian, checked)

    def second_order_failure(self, failure: EngineFailure, *, torch_finite: bool) -> None:
        """The engine failed differentiating its gradients: right only where torch's Hessian is not finite."""
        if not failure.domain_signal:
            detail = f"the engine failed with something other than DomainError: {failure.describe()}"
            self.checks.append(Check("second-order", None, self.live_ops, math.inf, detail))
        elif not torch_finite:
            self.checks.append(Check("second-order", None, self.live_ops, 0.0))
        elif (node := first_infinite_second_partial(self.program)) is not None:
            self.skip("second-order", SECOND_PARTIAL_OVERFLOW, node, self.op_of(node))
        elif (node := first_overflowing_edge_weight(self.program)) is not None:
            self.skip("second-order", EDGE_WEIGHT_OVERFLOW, node, self.op_of(node))
        elif (node := self.reciprocal_overflow()) is not None:
            self.skip("second-order", RECIPROCAL_OVERFLOW, node, self.op_of(node))
        else:
            detail = "the engine failed differentiating its gradients, though torch's Hessian is finite: "
            self.checks.append(Check("second-order", None, self.live_ops, math.inf, detail + failure.describe()))

    def reciprocal_overflow(self) -> int | None:
        """The first live node of an op whose derivatives divide by an operand whose reciprocal overflows, if any."""
        program, values = self.program, self.reference.values
        for index, step in enumerate(program.steps):
            node = len(program.inputs) + index
            if step.op not in _DIVIDING_OPS or not self.live[node]:
                continue
            for operand in step.operands:
                # (x == 0 is a pole: a domain edge, not this.)
                value = values[operand.node] if isinstance(operand, Ref) else 0.0
                if value != 0.0 and not math.isfinite(1.0 / value):
                    return node
        return None

    def zero_base_power(self) -> int | None:
        """A live ``x ** y`` node at ``x = 0, y >= 0`` or at ``y = 0``, where torch's second derivatives are NaN."""
        return self.live_vpow(lambda base, exponent: (base == 0.0 and exponent >= 0.0) or exponent == 0.0)

    def live_vpow(self, where: Callable[[float, float], bool]) -> int | None:
        """The first live ``x ** y`` node whose operands (torch's values) satisfy ``where``, if any."""
        program, values = self.program, self.reference.values
        for index, step in enumerate(program.steps):
            node = len(program.inputs) + index
            if step.op != "vpow" or not self.live[node]:
                continue
            base, exponent = (values[o.node] if isinstance(o, Ref) else o.value for o in step.operands)
            if where(base, exponent):
                return node
        return None

    def second_order_finite_differences(
        self, engine: SecondOrderEngine, hessian: tuple[tuple[float, ...], ...], checked: list[tuple[int, int]]
    ) -> None:
        """Each Hessian column j (d/d input j) against central differences of the engine's own gradients."""
        program, reference = self.program, self.reference
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
            for skip in self.skips
            if skip.kind == "finite-difference" and skip.reason == "finite differences do not converge"
        }
        for column, rows in by_column.items():
            if column in unresolved:
                for row in rows:
                    self.skip("second-order-fd", UNRESOLVED_INPUT, column, self.downward[row] | self.downward[column])
                continue
            estimates = gradient_finite_differences(program, column, gradients_at, errors, center)
            for row in rows:
                estimate = estimates[row]
                # A disagreement stands only if it survives smaller steps: differences that converge
                # at one scale can be blind to a feature narrower than the step (tanh(x1 / 1e-8)).
                while (
                    isinstance(estimate, FiniteDifference)
                    and not self.agrees(row, column, hessian[row][column], estimate)
                    and estimate.refinement < REFINEMENTS
                ):
                    start = estimate.refinement + 1
                    retried = gradient_finite_differences(program, column, gradients_at, errors, center, start=start)
                    estimate = retried[row]
                self.second_order_finite_difference(row, column, hessian[row][column], estimate)

    def agrees(self, row: int, column: int, got: float, estimate: FiniteDifference) -> bool:
        """Whether the engine's entry is within the finite-difference tolerance of ``estimate``."""
        tolerance = _FD_SAFETY * estimate.error_bound + self.reference.hessian_tolerances[row][column]
        return abs(got - estimate.estimate) <= tolerance

    def second_order_finite_difference(
        self, row: int, column: int, got: float, estimate: FiniteDifference | FiniteDifferenceSkip
    ) -> None:
        program, reference = self.program, self.reference
        ops = self.downward[row] | self.downward[column]
        if isinstance(estimate, FiniteDifferenceSkip):
            if estimate.op is None:
                reason = (
                    "the engine's gradients fail within a step"
                    if estimate.reason == "engine failure"
                    else "finite differences do not converge"
                )
                self.skip("second-order-fd", reason, column, ops)
            else:
                self.skip(
                    "second-order-fd", f"within a step of a {estimate.reason}", estimate.node, frozenset({estimate.op})
                )
            return
        # A zero Hessian entry is judged against the gradient's scale per unit of input, or the output's per two.
        per_column = max(1.0, abs(program.inputs[column]))
        output = abs(reference.values[program.output])
        natural = max(abs(reference.gradients[row]), output / max(1.0, abs(program.inputs[row]))) / per_column
        scale = max(abs(estimate.estimate), abs(reference.hessian[row][column]), natural)
        if _subnormal(estimate.estimate, reference.hessian[row][column], got):
            self.skip("second-order-fd", BELOW_NORMAL, column, ops)
            return
        torch_tolerance = reference.hessian_tolerances[row][column]
        if not estimate.error_bound <= FD_USEFUL * scale:
            self.skip("second-order-fd", "finite differences too imprecise", column, ops)
            return
        tolerance = _FD_SAFETY * estimate.error_bound + torch_tolerance
        ratio = _ratio(abs(got - estimate.estimate), tolerance)
        detail = ""
        if ratio > 1.0 and (node := self.live_vpow(lambda base, exponent: exponent == 0.0)) is not None:
            self.skip("second-order-fd", ZERO_EXPONENT_POWER, node, self.op_of(node))
            return
        if ratio > 1.0:
            detail = _describe_number(
                f"d2 output / d x{row} d x{column}, input",
                row,
                engine=got,
                expected=estimate.estimate,
                tolerance=tolerance,
                reference=f"finite differences of the engine's gradients (h={estimate.step:.3g})",
            )
        self.checks.append(Check("second-order-fd", row, ops, ratio, detail))


def _subnormal(*entries: float) -> bool:
    """Some entry is non-zero and all are below the normal range."""
    largest = max(abs(entry) for entry in entries)
    return 0.0 < largest < _NORMAL


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


def check_program(
    program: Program,
    engine: Engine,
    *,
    finite_differences: bool = True,
    order: Literal[1, 2] = 1,
    known: KnownReferences | None = None,
) -> Outcome:
    """Run ``program`` on ``engine``, torch and finite differences, and compare everything.

    Forward mode is checked whenever the engine has it
    (:class:`~refgrad.oracle.engines.ForwardModeEngine`); ``order=2`` adds the
    second-order checks and needs a
    :class:`~refgrad.oracle.engines.SecondOrderEngine` (``ValueError`` otherwise).
    ``known`` holds the references of this very program from an earlier check
    (torch's with second order for ``order=2``), and keeps what this check adds.
    """
    program = program_argument(program)
    engine = engine_argument(engine)
    finite_differences = flag_argument(finite_differences, "finite_differences")
    order = order_argument(order)
    if order == 2 and not isinstance(engine, SecondOrderEngine):
        raise ValueError(f"order 2 needs an engine that can differentiate its own gradients; {engine.name} cannot")
    finish = start_run(engine, program)  # an engine in a worker process computes while torch does
    reference = known.torch if known is not None else torch_reference(program, second_order=order == 2)
    run = finish()
    comparison = _Comparison(program, engine, run, reference, known)
    if reference.finiteness_ambiguous:
        comparison.skip("domain", _NEAR_OVERFLOW, None, comparison.live_ops)
    elif run.failure is not None or not comparison.expected_finite:
        comparison.domain()
    if run.failure is None and comparison.expected_finite:
        comparison.values()
        comparison.gradients()
        if finite_differences:
            comparison.finite_differences()
        if isinstance(engine, ForwardModeEngine):
            comparison.forward_mode(engine)
        if order == 2 and isinstance(engine, SecondOrderEngine):
            comparison.second_order(engine, finite_differences=finite_differences)
    return Outcome(program, tuple(comparison.checks), tuple(comparison.skips), run.failure)


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
