"""Reference 2: central finite differences on the registry's float forwards, with Richardson extrapolation.

For input ``x`` of a program ``f`` (the other inputs held fixed) and a step ``h``::

    D(h) = (f(x + h) - f(x - h)) / ((x + h) - (x - h))      # the actual, representable step
    R    = D(h/2) + (D(h/2) - D(h)) / 3                     # Richardson: cancels the h**2 term

**Error model.** ``D(h) = f'(x) + a*h**2 + O(h**4)``, so ``D(h) - D(h/2)`` is
``(3/4)*a*h**2`` and ``|D(h) - D(h/2)| / 3`` estimates the truncation error of
``D(h/2)``; ``R`` is more accurate still, so this is a safe bound for it. If
each evaluation of ``f`` is off by at most ``E`` (rounding), ``D(h)`` is off by
``E/h`` and ``D(h/2)`` by ``2E/h``, so ``R`` by at most ``(4*2E/h + E/h)/3 = 3E/h``.
The bound is their sum::

    bound = |D(h) - D(h/2)| / 3 + 3 * E / h

That expansion only holds once ``h`` is small against the scale on which ``f``
bends (``tanh(1e100 * x)`` at 0 is a step function for every representable
``h``). So a third difference ``D(h/4)`` is computed too, and the estimate is
used only if the differences shrink as the expansion says: ``D(h) - D(h/2)``
over ``D(h/2) - D(h/4)`` between 2 and 20 (4 for an ``h**2`` error, 16 for
``h**4``), or both are within rounding noise. Then ``R`` and its bound come from
the finer pair ``(h/2, h/4)``.

``E`` is the caller's bound on the rounding error of evaluating ``f`` (the
oracle passes :func:`refgrad.oracle.first_order.output_error_bound`: the torch error
model's tolerance for the output, or the first-order bound
``sum |d f / d node| * (2 * U * |node| + 2**-1074)`` if larger), and is at
least ``(2 * U * max|f| + 2**-1074) * steps`` here: one relative rounding per
step, or one absolute one where values are subnormal. The step is
``h = cbrt(eps) * max(1, |x|)``: it balances a truncation error of order
``h**2`` against a rounding error of order ``eps / h``.

**Kinks and boundaries.** Finite differences mean nothing across a kink
(``relu`` at 0) or a hole in a domain (``1 / y`` at ``y = 0``). Before trusting
a stencil, every node's operands are compared at the five points: if any
operand of an op crosses one of the op's kinks (from the registry) or a point
where the op's domain has a hole (``domain.contains`` false with that operand
at 0) or comes within half its distance to it (or moves twice as far away),
or an evaluation leaves a domain, the step is divided by 4 and tried again,
down to ``h / 4**10``. An input still that close to a kink is skipped and
counted, with the op to blame; the torch comparison still covers it. An
operand the input does not move is no concern, even one sitting on its kink.

**Second order.** :func:`gradient_finite_differences` runs the same stencil on
an engine's own gradients with respect to the inputs instead of the output:
one stencil along input ``j`` estimates column ``j`` of the Hessian, each
component accepted at the first refinement where it converges.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from refgrad.errors import DomainError
from refgrad.kernel import evaluate
from refgrad.oracle.optable import op_table
from refgrad.oracle.program import Program, Ref
from refgrad.oracle.rounding import PARTIAL_SPACINGS, U

__all__ = [
    "REFINEMENTS",
    "FiniteDifference",
    "FiniteDifferenceSkip",
    "GradientsAt",
    "finite_difference",
    "gradient_finite_differences",
    "initial_step",
]

_EPS: Final = 2.0**-52
_STEP: Final = _EPS ** (1.0 / 3.0)
REFINEMENTS: Final = 10
"""How many times the step may be divided by 4 (down to ``h / 4**10``)."""
_SUBNORMAL: Final = 2.0**-1074  # the spacing of floats below the normal range


@dataclass(frozen=True, slots=True)
class FiniteDifference:
    """An estimate of d output / d input and a bound on its error."""

    estimate: float
    error_bound: float
    step: float
    refinement: int = 0
    """How many times the first step was divided by 4 before the differences converged."""


@dataclass(frozen=True, slots=True)
class FiniteDifferenceSkip:
    """Why an input got no estimate: node ``node`` (op ``op``) is a step from a kink or boundary, or no step converged.

    For ``"not converging"`` and ``"engine failure"`` (second order: the engine's
    gradients fail at a stencil point), ``node`` is the input and ``op`` is None.
    """

    reason: Literal["kink", "domain boundary", "not converging", "engine failure"]
    node: int
    op: str | None


def initial_step(x: float) -> float:
    """The first step tried at ``x``: ``cbrt(eps) * max(1, |x|)``."""
    return _STEP * max(1.0, abs(x))


@dataclass(frozen=True, slots=True)
class _Watch:
    node: int
    position: int
    at: float
    reason: Literal["kink", "domain boundary"]


def _watches(program: Program, values: Sequence[float]) -> list[_Watch]:
    """The (operand, point) pairs whose side must not change across a stencil."""
    found: list[_Watch] = []
    for node, step in program.numbered_steps():
        spec = op_table[step.op]
        args = list(step.arguments(values))
        for kink in spec.kinks:
            if isinstance(step.operands[kink.input], Ref):
                found.append(_Watch(node, kink.input, kink.at, "kink"))
        for position, operand in enumerate(step.operands):
            if isinstance(operand, Ref):
                at_zero = list(args)
                at_zero[position] = 0.0
                if not spec.domain.contains(*at_zero, *step.params):
                    found.append(_Watch(node, position, 0.0, "domain boundary"))
    return found


def _evaluate(program: Program, inputs: list[float]) -> list[float] | int:
    """Every node's value, or the node whose op left its domain."""
    values: list[float] = list(inputs)
    for node, step in program.numbered_steps():
        try:
            values.append(evaluate(op_table[step.op], step.arguments(values), step.params))
        except DomainError:
            return node
    return values


def finite_difference(
    program: Program, input_index: int, value_error: float, center: Sequence[float] | None = None
) -> FiniteDifference | FiniteDifferenceSkip:
    """d output / d input ``input_index`` by Richardson-extrapolated central differences.

    ``value_error`` bounds the rounding error of evaluating the output (the
    torch reference's value tolerance); ``center`` may pass the node values at
    the program's own inputs if already computed.
    """

    def output(values: Sequence[float], inputs: Sequence[float]) -> tuple[float, ...]:
        return (values[-1],)

    (found,) = _differences(
        program, input_index, output, errors=(value_error,), roundings=len(program.steps), center=center
    )
    return found


GradientsAt = Callable[[Sequence[float]], Sequence[float] | None]
"""The engine's first-order gradients of the program's output at other input values (None if it fails there)."""


def gradient_finite_differences(
    program: Program,
    input_index: int,
    gradients_at: GradientsAt,
    gradient_errors: Sequence[float],
    center: Sequence[float] | None = None,
    *,
    start: int = 0,
) -> tuple[FiniteDifference | FiniteDifferenceSkip, ...]:
    """d (d output / d input j) / d input ``input_index`` for every input j: a Hessian column, from gradients.

    The same stencil, refinement and kink watching as :func:`finite_difference`,
    applied to ``gradients_at`` (an engine's own first-order gradients with
    respect to the inputs) instead of the output. ``gradient_errors[j]``
    bounds the rounding error of gradient j; at least ``(2 * U * max|g_j| +
    2**-1074)`` per rounding is assumed, five per step (the step's value,
    then a product and a sum for each of up to two operands on the way back).
    A stencil point where the engine fails is skipped like a domain boundary.
    ``start`` skips the first refinements: the caller asks again with a smaller
    step when an estimate disagrees, since differences that look converged at
    one scale (all rounding noise, say) can still be blind to a narrower feature.
    """

    def gradients(values: Sequence[float], inputs: Sequence[float]) -> tuple[float, ...] | None:
        found = gradients_at(inputs)
        return None if found is None else tuple(found)

    return _differences(
        program,
        input_index,
        gradients,
        errors=gradient_errors,
        roundings=5 * len(program.steps),
        center=center,
        start=start,
    )


_Components = Callable[[Sequence[float], Sequence[float]], tuple[float, ...] | None]


def _differences(
    program: Program,
    input_index: int,
    components: _Components,
    *,
    errors: Sequence[float],
    roundings: int,
    center: Sequence[float] | None,
    start: int = 0,
) -> tuple[FiniteDifference | FiniteDifferenceSkip, ...]:
    """Estimates of d component / d input for each component of ``components(values, inputs)``.

    Each component is accepted at the first refinement where its differences
    converge; a stencil that crosses a kink or boundary refines the step for
    all of them.
    """
    values = program.evaluate() if center is None else center
    watches = _watches(program, values)
    centers = [_operand_value(program, values, w) - w.at for w in watches]
    x = program.inputs[input_index]
    h0 = initial_step(x)
    count = len(errors)
    results: list[FiniteDifference | FiniteDifferenceSkip] = [
        FiniteDifferenceSkip("not converging", input_index, None)
    ] * count
    pending = list(range(count))
    local = [program.reference_partials(values, index) for index in range(len(program.steps))]
    for refinement in range(start, REFINEMENTS + 1):
        h = h0 / 4.0**refinement
        points = (x + h, x - h, x + h / 2, x - h / 2, x + h / 4, x - h / 4)
        stencil = _stencil(program, input_index, points, components=components, watches=watches, centers=centers)
        if isinstance(stencil, FiniteDifferenceSkip):
            for component in pending:
                results[component] = stencil
            continue
        outputs, at_points = stencil
        if not _resolved(program, at_points, local):
            for component in pending:
                results[component] = FiniteDifferenceSkip("not converging", input_index, None)
            continue
        for component in list(pending):
            column = [output[component] for output in outputs]
            largest = max(abs(value) for value in column)
            # At least one rounding per step, relative or (below the normal range) absolute.
            evaluation_error = max(errors[component], (2.0 * U * largest + _SUBNORMAL) * roundings)
            wide, middle, narrow = ((column[i] - column[i + 1]) / (points[i] - points[i + 1]) for i in (0, 2, 4))
            if _converging(wide - middle, middle - narrow, noise=evaluation_error / (h / 4)):
                estimate = narrow + (narrow - middle) / 3.0
                bound = abs(middle - narrow) / 3.0 + 3.0 * evaluation_error / (h / 2)
                results[component] = FiniteDifference(estimate, bound, h / 2, refinement)
                pending.remove(component)
            else:
                results[component] = FiniteDifferenceSkip("not converging", input_index, None)
        if not pending:
            break
    return tuple(results)


_RESOLUTION_SLACK: Final = 0.25
"""How far (as a share) a node's central difference may stray from the linear response to its operands'."""


def _stencil(
    program: Program,
    input_index: int,
    points: Sequence[float],
    *,
    components: _Components,
    watches: Sequence[_Watch],
    centers: Sequence[float],
) -> tuple[list[tuple[float, ...]], list[Sequence[float]]] | FiniteDifferenceSkip:
    """The components at each point, and every node's values there; or why the stencil is skipped."""
    outputs: list[tuple[float, ...]] = []
    at_points: list[Sequence[float]] = []
    for point in points:
        shifted = list(program.inputs)
        shifted[input_index] = point
        result = _evaluate(program, shifted)
        if isinstance(result, int):
            step = program.step_of(result)
            assert step is not None
            return FiniteDifferenceSkip("domain boundary", result, step.op)
        skip = _first_crossing(program, result, watches, centers)
        if skip is not None:
            return skip
        found = components(result, shifted)
        if found is None:
            return FiniteDifferenceSkip("engine failure", input_index, None)
        outputs.append(found)
        at_points.append(result)
    return outputs, at_points


def _resolved(program: Program, at_points: Sequence[Sequence[float]], local: Sequence[list[float] | None]) -> bool:
    """Whether every op responds to the stencil as its partials say: the step resolves the program.

    For each node, its half differences ``(n(x + s) - n(x - s)) / 2`` at ``s = h/2`` and ``h/4``
    are Richardson-combined (``S = d4 + (d4 - d2 / 2) / 3``, which removes the ``s**3`` term, so
    a smooth node's ``S`` is its slope times ``h/4`` to order ``s**5``), and ``S`` must be the sum
    of its operands' times its partials at the center (:meth:`Program.reference_partials`: the
    registry's, or the slopes of the forward for an op under test), to within
    :data:`_RESOLUTION_SLACK` of that sum and the roundings of the values. Convergence of the
    output's quotients alone can be met by chance where the step is far wider than an op's own
    scale: ``sin`` at ``x = 6e16`` samples its period at random, every step from ``1e11`` down (a
    third of such stencils pass the ratio test), and ``x + sin(x)`` then "converges" to the slope
    of ``x`` alone.
    """
    wide_plus, wide_minus, plus, minus = at_points[2], at_points[3], at_points[4], at_points[5]
    combined: list[float] = []
    noise: list[float] = []
    for values in zip(wide_plus, wide_minus, plus, minus, strict=True):
        narrow = (values[2] - values[3]) / 2.0
        wide = (values[0] - values[1]) / 2.0
        combined.append(narrow + (narrow - wide / 2.0) / 3.0)
        noise.append(1.5 * _rounding(*values))
    for (node, step), partials in zip(program.numbered_steps(), local, strict=True):
        if partials is None or not all(math.isfinite(partial) for partial in partials):
            if partials is not None and op_table.is_extra(step.op):
                return False  # an op under test whose own forward has no slope at this scale
            continue  # a boundary or a pole: the domain watches speak for it
        linear = 0.0
        carried = noise[node]
        for operand, partial in zip(step.operands, partials, strict=True):
            if isinstance(operand, Ref):
                linear += partial * combined[operand.node]
                # The partial's own rounding: below the normal range, a few spacings (0 for a tiny one).
                carried += abs(partial) * noise[operand.node] + PARTIAL_SPACINGS * _SUBNORMAL * abs(
                    combined[operand.node]
                )
        noise[node] = carried
        if not math.isfinite(linear) or not math.isfinite(combined[node]):
            continue
        if abs(combined[node] - linear) > _RESOLUTION_SLACK * abs(linear) + 4.0 * carried:
            return False
    return True


def _rounding(*values: float) -> float:
    """One rounding of the largest of ``values``, relative or (below the normal range) absolute."""
    return 2.0 * U * max(abs(v) for v in values) + _SUBNORMAL


def _converging(coarse: float, fine: float, *, noise: float) -> bool:
    """Whether successive differences shrink like h**2 (ratio 4) to h**4 (16), or are rounding noise."""
    if abs(fine) <= 4.0 * noise and abs(coarse) <= 16.0 * noise:
        return True
    return fine != 0.0 and 2.0 <= coarse / fine <= 20.0


def _operand_value(program: Program, values: Sequence[float], watch: _Watch) -> float:
    step = program.step_of(watch.node)
    assert step is not None
    operand = step.operands[watch.position]
    assert isinstance(operand, Ref)
    return values[operand.node]


def _first_crossing(
    program: Program, values: Sequence[float], watches: Sequence[_Watch], centers: Sequence[float]
) -> FiniteDifferenceSkip | None:
    """The first watched operand that crossed its point, or came within (or left) half its distance to it."""
    for watch, center in zip(watches, centers, strict=True):
        offset = _operand_value(program, values, watch) - watch.at
        if offset == center:
            continue  # an operand the input does not move, even one sitting on its kink
        # Same side, and no more than twice as close or as far: a stencil that
        # brings x**-1's operand x**4 from 1e-120 to 1e-21 sees a symmetric
        # pole, not a slope, even though nothing changed sign.
        if not (offset * center > 0.0 and 0.5 <= offset / center <= 2.0):
            step = program.step_of(watch.node)
            assert step is not None
            return FiniteDifferenceSkip(watch.reason, watch.node, step.op)
    return None
