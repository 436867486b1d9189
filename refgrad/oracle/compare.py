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

The comparison is split by job: :mod:`refgrad.oracle.checks` holds what it produces (checks,
skips, outcomes, the reasons and the words), :mod:`refgrad.oracle.first_order` the domain,
value, gradient and finite-difference checks, :mod:`refgrad.oracle.higher_order` forward mode
and the Hessian; this module runs them in turn.
"""

from __future__ import annotations

from typing import Literal

from refgrad.oracle._arguments import engine_argument, flag_argument, order_argument, program_argument
from refgrad.oracle.checks import (
    NEAR_OVERFLOW,
    SECOND_ORDER_NEEDS_TORCH,
    Comparison,
    KnownReferences,
    Outcome,
    Reference,
)
from refgrad.oracle.engines import Engine, ForwardModeEngine, SecondOrderEngine, second_order_refusal, start_run
from refgrad.oracle.exact_reference import ExactResult, exact_reference
from refgrad.oracle.first_order import check_domain, check_finite_differences, check_gradients, check_values
from refgrad.oracle.higher_order import check_forward_mode, check_second_order
from refgrad.oracle.program import Program
from refgrad.oracle.references import current_references

__all__ = ["check_program", "checked", "references_of"]


def references_of(program: Program, *, second_order: bool = False) -> KnownReferences:
    """The run's references for ``program`` (:func:`~refgrad.oracle.references.current_references`).

    ``torch``: the torch reference; ``mpmath``: the exact one; ``both``: torch's as the primary
    reference (domain, finite differences, forward mode, second order) and the exact one's values
    and gradients checked as well. torch is imported only when it is used.
    """
    choice = current_references()
    if choice == "mpmath":
        if second_order:
            raise ValueError(SECOND_ORDER_NEEDS_TORCH)
        return KnownReferences(exact_reference(program))
    from refgrad.oracle.torch_reference import torch_reference  # torch only where it is used

    primary: Reference = torch_reference(program, second_order=second_order)
    exact: ExactResult | None = exact_reference(program) if choice == "both" else None
    return KnownReferences(primary, exact)


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
    refusal = second_order_refusal(engine) if order == 2 else None
    if refusal is not None:
        raise ValueError(refusal)
    return checked(program, engine, finite_differences=finite_differences, order=order, known=known)


def checked(
    program: Program,
    engine: Engine,
    *,
    finite_differences: bool = True,
    order: Literal[1, 2] = 1,
    known: KnownReferences | None = None,
) -> Outcome:
    """:func:`check_program` for arguments already checked: the oracle's own loops, whose engine was checked once.

    (An engine's check is a protocol's, which walks the protocol's members on every call.)
    """
    finish = start_run(engine, program)  # an engine in a worker process computes while torch does
    try:
        references = known if known is not None else references_of(program, second_order=order == 2)
    finally:
        run = finish()
    comparison = Comparison(program, engine, run, references.primary, known, exact=references.exact)
    if references.primary.finiteness_ambiguous:
        comparison.skip("domain", NEAR_OVERFLOW, None, comparison.live_ops)
    elif run.failure is not None or not comparison.expected_finite:
        check_domain(comparison)
    if run.failure is None and comparison.expected_finite:
        check_values(comparison)
        check_gradients(comparison)
        if finite_differences:
            check_finite_differences(comparison)
        if isinstance(engine, ForwardModeEngine):
            check_forward_mode(comparison, engine)
        if order == 2:
            if not isinstance(engine, SecondOrderEngine):
                raise ValueError(second_order_refusal(engine))
            check_second_order(comparison, engine, finite_differences=finite_differences)
    return Outcome(program, tuple(comparison.checks), tuple(comparison.skips), run.failure)
