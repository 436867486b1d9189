"""What a comparison produces: checks and skips, attributed to ops, and the words they are told in.

A :class:`Check` is one comparison of an engine's number with a reference's (or of its
domain signal with torch's), a :class:`Skip` one left out with its reason, an
:class:`Outcome` everything for one program. :class:`Comparison` is the record being made
while the checks of :mod:`refgrad.oracle.first_order` and :mod:`refgrad.oracle.higher_order`
run; :func:`refgrad.oracle.compare.check_program` runs them in turn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Final, Literal, Protocol, cast, get_args

from refgrad.oracle.engines import Engine, EngineFailure, EngineRun, constants_are_plain
from refgrad.oracle.finite_differences import FiniteDifference, FiniteDifferenceSkip
from refgrad.oracle.optable import op_table
from refgrad.oracle.program import Program, Ref

if TYPE_CHECKING:
    from refgrad.oracle.exact_reference import ExactResult
    from refgrad.oracle.torch_reference import TorchResult

__all__ = [
    "BELOW_NORMAL",
    "BEYOND_FIRST_ORDER",
    "CHECK_KINDS",
    "EDGE_WEIGHT_OVERFLOW",
    "FD_SAFETY",
    "FD_USEFUL",
    "NEAR_OVERFLOW",
    "NO_EXACT",
    "NO_TORCH",
    "PARTIAL_OVERFLOW",
    "RECIPROCAL_OVERFLOW",
    "SECOND_ORDER_NEEDS_TORCH",
    "SECOND_PARTIAL_OVERFLOW",
    "UNRESOLVED_INPUT",
    "ZERO_BASE_POWER",
    "ZERO_EXPONENT_POWER",
    "Check",
    "CheckKind",
    "Comparison",
    "KnownReferences",
    "Outcome",
    "Reference",
    "Skip",
    "cones",
    "counterparts",
    "describe_number",
    "error_ratio",
    "no_counterpart",
    "relative_and_ulps",
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
# get_args reads the kinds off the Literal, so they are written once; it is typed as any tuple.
CHECK_KINDS: Final = cast("tuple[CheckKind, ...]", get_args(CheckKind))
"""Every kind of check, in the order reports list them."""

FD_USEFUL: Final = 1e-4
"""A finite-difference estimate whose error bound exceeds this share of the gradient is skipped as imprecise."""

FD_SAFETY: Final = 2.0
"""A finite-difference estimate's error bound is trusted to within this factor."""
NO_TORCH: Final = "an op without a torch counterpart (torch=None) takes part: finite differences are the reference"
"""Skip reason for a torch check through an op of the caller's that names no torch function.

torch runs such an op through a stand-in made of the op's own entry, which cannot judge the entry;
its value and the gradients through it are checked against finite differences only.
"""
NO_EXACT: Final = (
    "an op of your own takes part, which the exact reference has no counterpart of: "
    "finite differences are the reference"
)
"""Skip reason for a check against the exact reference (mpmath) through an op of the caller's own."""
BEYOND_FIRST_ORDER: Final = "an op answers rounding errors nonlinearly (sin of a huge operand, a jump): no error model"
"""Skip reason for torch and finite-difference checks through a node beyond the error model's first-order regime.

Values from that node on, and every gradient, depend on roundings the model cannot bound
(see :attr:`~refgrad.oracle.torch_reference.TorchResult.beyond_first_order`).
"""
SECOND_ORDER_NEEDS_TORCH: Final = (
    "second order (--order 2) is checked against torch's double backward: use --reference torch or both"
)
"""Why ``order=2`` is refused against the exact reference alone."""
NEAR_OVERFLOW: Final = "within rounding of an overflow or a domain edge"
"""Skip reason where torch's tolerance is not finite: rounding decides whether a result is."""


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
    reference: str = ""
    """The reference it was compared with (``torch``, ``mpmath``, ``finite differences``), for numeric checks."""
    exact_ulps: float | None = None
    """Against the exact reference: the error in ulps of the exact result itself, not of the float nearest it."""

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
        if self.exact_ulps is not None:
            return self.exact_ulps
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


def error_ratio(error: float, tolerance: float) -> float:
    """The error over the tolerance: 0 for no error, infinite for a NaN error or a zero tolerance."""
    if error == 0.0:
        return 0.0
    if tolerance == 0.0 or math.isnan(error):
        return math.inf
    return error / tolerance


def cones(program: Program, live: tuple[bool, ...]) -> tuple[list[frozenset[str]], list[frozenset[str]]]:
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


def describe_number(kind: str, node: int, *, engine: float, expected: float, tolerance: float, reference: str) -> str:
    """A disagreement in words: both numbers, their difference (absolute, relative, in ulps), the tolerance."""
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


class Reference(Protocol):
    """What a reference says about one program: the torch reference's result or the exact reference's.

    ``values[i]`` and ``gradients[i]`` are node ``i``'s value and d output / d node ``i``, the
    tolerances how far a correct engine may be from them; the rest says where the comparison
    cannot judge (see :class:`~refgrad.oracle.torch_reference.TorchResult`).
    """

    name: ClassVar[str]
    """How reports name the reference (``torch``, ``mpmath``)."""

    @property
    def values(self) -> tuple[float, ...]: ...
    @property
    def gradients(self) -> tuple[float, ...]: ...
    @property
    def value_tolerances(self) -> tuple[float, ...]: ...
    @property
    def gradient_tolerances(self) -> tuple[float, ...]: ...
    @property
    def finite(self) -> bool: ...
    @property
    def nodes_finite(self) -> bool: ...
    @property
    def finiteness_ambiguous(self) -> bool: ...
    @property
    def first_non_finite_value(self) -> int | None: ...
    @property
    def kink_ambiguous(self) -> tuple[int, ...]: ...
    @property
    def beyond_first_order(self) -> tuple[int, ...]: ...

    def directional(self, program: Program, tangents: Sequence[float]) -> tuple[float, float]:
        """``sum_i t_i * d output / d input i`` and how far a correct engine's forward mode may be from it."""
        ...

    def first_infinite_partial(self, program: Program) -> int | None:
        """The first node with a local partial that overflows where the reference's gradient is finite."""
        ...

    def ulps_of(self, node: int, got: float, *, value: bool) -> float | None:
        """How many ulps ``got`` is from the exact value (``value``) or gradient of ``node``; None if not exact."""
        ...


def counterparts(reference: Reference, op: str) -> bool:
    """Whether ``reference`` computes ``op`` itself, so that it can judge the engine's rule for it.

    Every registry op; an op of the caller's own only in torch, and only where its entry names a torch function.
    """
    if not op_table.is_extra(op):
        return True
    return reference.name == "torch" and op_table[op].torch is not None


def no_counterpart(reference: Reference) -> str:
    """The skip reason for a check against ``reference`` through an op it has no counterpart of."""
    return NO_TORCH if reference.name == "torch" else NO_EXACT


@dataclass(slots=True)
class KnownReferences:
    """torch's result for one program, and its finite-difference estimates and forward mode as they are made.

    Passed to :func:`~refgrad.oracle.compare.check_program` to check the same program on engine after engine without
    computing the references again (the structured programs of a verification run are the
    same in every run).
    """

    primary: Reference
    """The reference the domain, finite-difference and forward-mode checks are made against."""
    exact: ExactResult | None = None
    """With both references, the exact one (value and gradient checks against it too)."""
    estimates: dict[int, FiniteDifference | FiniteDifferenceSkip] = field(
        default_factory=dict[int, FiniteDifference | FiniteDifferenceSkip]
    )
    directional: tuple[float, float] | None = None
    """The primary reference's jvp along the program's tangents (tangents_for), and its tolerance."""


class Comparison:
    """The checks and skips being made for one program, one engine run and its references.

    The first-order checks (:mod:`refgrad.oracle.first_order`) and the higher-order ones
    (:mod:`refgrad.oracle.higher_order`) add to :attr:`checks` and :attr:`skips`; each
    check is attributed to ops by the program's cones (``upward``: the ops that computed a
    node; ``downward``: the live ops between a node and the output).
    """

    def __init__(
        self,
        program: Program,
        engine: Engine,
        run: EngineRun,
        reference: Reference,
        known: KnownReferences | None,
        *,
        exact: ExactResult | None = None,
    ) -> None:
        self.program = program
        self.known = known
        self.engine = engine
        self.run = run
        self.reference = reference
        self.exact = exact
        """With both references, the exact one, against which values and gradients are checked as well."""
        self.live = program.live()
        self.upward, self.downward = cones(program, self.live)
        input_count = len(program.inputs)
        self.live_ops = frozenset(step.op for i, step in enumerate(program.steps) if self.live[input_count + i])
        self.references: tuple[Reference, ...] = (reference,) if exact is None else (reference, exact)
        """The references values and gradients are checked against: the primary one, then the exact one."""
        self._gaps = {reference.name: self.gaps(reference)}
        self.without_torch, self.unmodelled, self.beyond_first_order = self._gaps[reference.name]
        """The program's ops ``reference`` cannot judge (:data:`NO_TORCH`); the nodes whose value depends on a
        live node beyond first order (:data:`BEYOND_FIRST_ORDER`); the live nodes beyond first order (then no
        gradient, finite-difference or forward-mode check is modelled)."""
        self.checks: list[Check] = []
        self.skips: list[Skip] = []
        # refgrad's engines differentiate constants too and must refuse if one's gradient is not
        # finite; a micrograd-style engine's constants are its own, invisible to the oracle, and an
        # adapter's are plain numbers (PlainConstants), so there only the program's nodes decide,
        # and a refusal over a constant is allowed.
        constants_checked = engine.strict and not constants_are_plain(engine)
        self.expected_finite = reference.finite if constants_checked else reference.nodes_finite
        self.optional_signal = not constants_checked and reference.nodes_finite and not reference.finite

    def gaps(self, reference: Reference) -> tuple[frozenset[str], frozenset[int], frozenset[int]]:
        """What ``reference`` cannot judge: ops it has no counterpart of, unmodelled nodes, nodes beyond first order."""
        program = self.program
        without = frozenset(step.op for step in program.steps if not counterparts(reference, step.op))
        beyond = [node for node in reference.beyond_first_order if self.live[node]]
        unmodelled = set(reference.beyond_first_order)  # a value is unmodelled whether or not the output uses it
        for node, step in program.numbered_steps():  # operands come first: one pass carries it forward
            if any(isinstance(o, Ref) and o.node in unmodelled for o in step.operands):
                unmodelled.add(node)
        return without, frozenset(unmodelled), frozenset(beyond)

    @property
    def torch(self) -> TorchResult:
        """The torch reference, which the second-order checks need; ``ValueError`` against the exact one alone."""
        from refgrad.oracle.torch_reference import TorchResult  # torch only where it is used

        if not isinstance(self.reference, TorchResult):
            raise ValueError(SECOND_ORDER_NEEDS_TORCH)
        return self.reference

    def gaps_of(self, reference: Reference) -> tuple[frozenset[str], frozenset[int], frozenset[int]]:
        """:meth:`gaps` of ``reference``, computed once."""
        found = self._gaps.get(reference.name)
        if found is None:
            found = self._gaps[reference.name] = self.gaps(reference)
        return found

    def skip(self, kind: CheckKind, reason: str, node: int | None, ops: frozenset[str]) -> None:
        """Leave a check out, saying why and blaming ``ops``."""
        self.skips.append(Skip(kind, reason, node, ops))

    def op_of(self, node: int) -> frozenset[str]:
        """The op of the step computing ``node``, as a blame set."""
        step = self.program.step_of(node)
        assert step is not None
        return frozenset({step.op})
