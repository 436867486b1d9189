"""The structured part of a verification run: programs chosen so that a failure says what is wrong.

Before any random program, :func:`~refgrad.oracle.runner.verify` runs these, in order:

* **op alone at ordinary points** (:func:`ordinary_programs`): each op form as the only step, at
  points of moderate magnitude inside its domain. A failure here is the op's own rule: its value
  or its local derivative in one operand.
* **op alone at its kinks** (:func:`kink_programs`): the registry's points of non-differentiability
  (``relu`` and ``abs`` at 0, ``x ** c`` at ``x = 0`` for several ``c``), where PyTorch's
  conventions decide the derivative.
* **op alone at edge inputs** (:func:`edge_programs`): zeros, subnormals, magnitudes near the ends
  of the float range and arguments where ``exp`` overflows. A rule right at ordinary points that
  fails here is fragile, not wrong. (Checked at first order, even in a run at order 2.)
* **shared nodes and chains** (:func:`composition_programs`): ``x + x``, ``x * x``, a diamond and
  a chain of three, built from forms that passed alone: a failure is the backward pass's
  (accumulation, or the order nodes are visited in).
* **a deep chain** (:func:`deep_chain`): 1,200 steps (``x + c`` where the engine has it), past
  Python's default recursion limit.

Every program here is fixed: the same for every engine and every seed.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from refgrad.errors import DomainError
from refgrad.ops import OpSpec
from refgrad.oracle.optable import op_table
from refgrad.oracle.program import Const, Form, Program, Ref, Step

__all__ = [
    "DEEP_CHAIN_STEPS",
    "EDGE_POINTS",
    "ORDINARY_HIGH",
    "ORDINARY_LOW",
    "AccumulationPrograms",
    "Pattern",
    "PatternProgram",
    "accumulation_programs",
    "at_kink",
    "composition_programs",
    "deep_chain",
    "edge_programs",
    "is_ordinary",
    "kink_programs",
    "ordinary_programs",
    "redrawn",
]

ORDINARY_LOW: Final = 1e-4
ORDINARY_HIGH: Final = 1e4
"""Non-zero magnitudes from ``ORDINARY_LOW`` to ``ORDINARY_HIGH`` are ordinary: a rule must be right there."""

# Moderate points, none at a kink, the two of a pair distinct, signs mixed.
_ORDINARY_PAIRS: Final = ((0.5, -1.25), (2.0, 0.75), (-1.5, 2.5), (3.0, -0.5), (1.25, 1.75))
_ORDINARY_EXPONENTS: Final = (2.0, 3.0, 0.5, -1.0, 0.0, 1.0, -2.0, 2.5)

EDGE_POINTS: Final = (1e-300, -1e-300, 5e-324, 1e-10, -1e-10, 1e300, -1e300, 400.0, -400.0, 746.0, -746.0, 1e5)
"""Edge inputs: tiny and huge magnitudes, a subnormal, and where exp (or e ** 2x) overflows."""
_EDGE_PARTNER: Final = 1.5

DEEP_CHAIN_STEPS: Final = 1200
"""Steps in the deep chain: past Python's default recursion limit of 1,000."""

Pattern = Literal["alone", "kink", "edge", "shared", "chain", "deep"]


@dataclass(frozen=True, slots=True)
class PatternProgram:
    """One structured program: which pattern it is, the op form it is about (None for compositions), the program."""

    pattern: Pattern
    op: str | None
    form: Form | None
    program: Program
    description: str


def _in_domain(op: str, args: Sequence[float], params: Sequence[float]) -> bool:
    spec = op_table[op]
    try:
        return bool(spec.domain.contains(*args, *params))
    except (ArithmeticError, ValueError):
        return False


def _finite(program: Program) -> bool:
    """The registry computes every node finitely (torch then agrees up to rounding, or the checks say so)."""
    try:
        program.evaluate()
    except (DomainError, ArithmeticError, ValueError):
        return False
    return True


def _one_step(op: str, form: Form, args: Sequence[float], params: tuple[float, ...]) -> Program | None:
    """``op`` in ``form`` on ``args`` (nodes become inputs, constants stay in the step), if in the domain."""
    if not _in_domain(op, args, params):
        return None
    inputs: list[float] = []
    operands: list[Ref | Const] = []
    for kind, value in zip(form, args, strict=True):
        if kind == "node":
            operands.append(Ref(len(inputs)))
            inputs.append(value)
        else:
            operands.append(Const(value))
    program = Program(tuple(inputs), (Step(op, tuple(operands), params),))
    return program if _finite(program) else None


def _param_choices(op: str, exponents: Sequence[float]) -> tuple[tuple[float, ...], ...]:
    count = len(op_table[op].params)
    return ((),) if count == 0 else tuple((exponent,) * count for exponent in exponents)


def _describe_point(form: Form, args: Sequence[float], params: tuple[float, ...]) -> str:
    names = iter(("x", "y"))
    parts = [f"{next(names) if kind == 'node' else 'c'} = {value!r}" for kind, value in zip(form, args, strict=True)]
    parts += [f"c = {value!r}" for value in params]
    return ", ".join(parts)


def ordinary_programs(op: str, form: Form) -> tuple[PatternProgram, ...]:
    """``op`` alone in ``form`` at moderate points inside its domain (several exponents for ``x ** c``)."""
    return _ordinary_programs(op, form, op_table.key)


@functools.cache  # per run's own ops too (op_table.key): another run's 'sin' is another op
def _ordinary_programs(op: str, form: Form, key: tuple[OpSpec, ...]) -> tuple[PatternProgram, ...]:
    found: list[PatternProgram] = []
    arity = op_table[op].arity
    for params in _param_choices(op, _ORDINARY_EXPONENTS):
        for pair in _ORDINARY_PAIRS:
            args = pair[:arity]
            program = _one_step(op, form, args, params)
            if program is not None:
                found.append(PatternProgram("alone", op, form, program, _describe_point(form, args, params)))
    return tuple(found)


def kink_programs(op: str, form: Form) -> tuple[PatternProgram, ...]:
    """``op`` alone with an operand at each of its registry kinks (the other operand moderate)."""
    return _kink_programs(op, form, op_table.key)


@functools.cache  # per run's own ops too (op_table.key): another run's 'sin' is another op
def _kink_programs(op: str, form: Form, key: tuple[OpSpec, ...]) -> tuple[PatternProgram, ...]:
    spec = op_table[op]
    found: list[PatternProgram] = []
    for kink in spec.kinks:
        if kink.input >= len(form) or form[kink.input] != "node":
            continue
        for params in _param_choices(op, (0.0, 1.0, 2.0, 3.0, 0.5)):
            partners = (0.0, 1.0, 2.0, 0.5) if spec.arity == 2 else (0.0,)
            for partner in partners:
                args = [partner] * spec.arity
                args[kink.input] = kink.at
                program = _one_step(op, form, args, params)
                if program is not None:
                    point = _describe_point(form, args, params)
                    found.append(PatternProgram("kink", op, form, program, point))
    return tuple(found)


def edge_programs(op: str, form: Form) -> tuple[PatternProgram, ...]:
    """``op`` alone at edge inputs: each edge point as the operand (a binary op's second, or both of them)."""
    return _edge_programs(op, form, op_table.key)


@functools.cache  # per run's own ops too (op_table.key): another run's 'sin' is another op
def _edge_programs(op: str, form: Form, key: tuple[OpSpec, ...]) -> tuple[PatternProgram, ...]:
    spec = op_table[op]
    found: list[PatternProgram] = []
    for params in _param_choices(op, (0.0, 2.0, -1.0, 0.5)):
        for edge in EDGE_POINTS:
            if spec.arity == 1:
                candidates: list[tuple[float, ...]] = [(edge,)]
            else:
                # Both at the edge (x / x at 1e-300), and the second alone (1.5 / 1e-300): an edge
                # first operand with a moderate second adds little that these two do not show.
                candidates = [(edge, edge), (_EDGE_PARTNER, edge)]
            for args in candidates:
                program = _one_step(op, form, args, params)
                if program is not None:
                    point = _describe_point(form, args, params)
                    found.append(PatternProgram("edge", op, form, program, point))
    return tuple(found)


_SHARED_POINTS: Final = (0.75, -1.5, 2.0)


def _diamond_ops(binary: Sequence[str]) -> tuple[str, str]:
    """The diamond's two ops: the first two binary ops given (the first twice if there is one)."""
    return binary[0], binary[1] if len(binary) > 1 else binary[0]


def _diamond(first: str, second: str, last: tuple[Ref, Ref]) -> tuple[Step, ...]:
    """n2 = first(x, y); n3 = second(n2, x); n4 = first(*last), ``last`` being n3 and n2 in either order."""
    return (Step(first, (Ref(0), Ref(1))), Step(second, (Ref(2), Ref(0))), Step(first, last))


def composition_programs(forms: Sequence[tuple[str, Form]]) -> tuple[PatternProgram, ...]:
    """Shared nodes (``x op x`` for each binary form given), a diamond and a chain, from ``forms`` only.

    ``forms`` are the forms that passed alone, so a failure here is the backward pass's.
    """
    found: list[PatternProgram] = []
    binary = [op for op, form in forms if form == ("node", "node")]
    unary = [op for op, form in forms if form == ("node",) and not op_table[op].params]
    for op in binary:
        for x in _SHARED_POINTS:
            program = Program((x,), (Step(op, (Ref(0), Ref(0))),))
            if _in_domain(op, (x, x), ()) and _finite(program):
                found.append(PatternProgram("shared", op, None, program, f"{op}(x, x) at x = {x!r}"))
                break
    if binary:
        # n2 = a(x, y); n3 = b(n2, x); n4 = a(n3, n2) and a(n2, n3): x and n2 each feed two nodes, by paths
        # of different lengths, and n4 reads the short path first or last (a breadth-first backward
        # passes n2 on before its gradient is complete when the short path comes first).
        first, second = _diamond_ops(binary)
        for last in ((Ref(3), Ref(2)), (Ref(2), Ref(3))):
            steps = _diamond(first, second, last)
            for x, y in ((0.75, -1.5), (1.5, 0.5), (2.0, 3.0)):
                program = Program((x, y), steps)
                if _finite(program):
                    found.append(PatternProgram("shared", None, None, program, f"a diamond of {first} and {second}"))
                    break
    chain_ops = (unary * 3)[:3] if unary else []
    if not chain_ops and binary:
        chain_ops = [binary[0]] * 3
    if chain_ops:
        for x in (0.75, -0.5, 1.5):
            steps = tuple(
                Step(op, (Ref(index),) if op_table[op].arity == 1 else (Ref(index), Ref(index)))
                for index, op in enumerate(chain_ops)
            )
            program = Program((x,), steps)
            if _finite(program):
                found.append(PatternProgram("chain", None, None, program, f"a chain {' -> '.join(chain_ops)}"))
                break
    return tuple(found)


@dataclass(frozen=True, slots=True)
class AccumulationPrograms:
    """Two graphs for checking backward() more than once: ``first``, and ``then``, built on ``first``'s node n2."""

    first: Program
    then: Program
    description: str


def accumulation_programs(forms: Sequence[tuple[str, Form]]) -> AccumulationPrograms | None:
    """The diamond of :func:`composition_programs` (n2 = a(x, y); n3 = b(n2, x); n4 = a(n3, n2)), and b(x, n2).

    The diamond's interior nodes n2 and n3 carry gradients, which is what a second backward() must
    not pass on again; ``then`` (n2 = a(x, y); n3 = b(x, n2)) is built on ``first``'s own n2: a node
    reused by a second graph. Drawn from the binary forms on two nodes that passed alone, at
    ordinary points; None without one.
    """
    binary = [op for op, form in forms if form == ("node", "node")]
    if not binary:
        return None
    first_op, second_op = _diamond_ops(binary)
    steps = _diamond(first_op, second_op, (Ref(3), Ref(2)))
    for x, y in ((0.75, 1.5), (1.5, 0.5), (2.0, 3.0)):
        first = Program((x, y), steps)
        if _finite(first) and is_ordinary(first):
            description = f"a diamond of {first_op} and {second_op}"
            then = Program((x, y), (steps[0], Step(second_op, (Ref(0), Ref(2)))))
            if _finite(then) and is_ordinary(then):
                return AccumulationPrograms(first, then, description)
    return None


def deep_chain(forms: Sequence[tuple[str, Form]]) -> PatternProgram | None:
    """:data:`DEEP_CHAIN_STEPS` steps of the first form of ``forms`` (``x op c`` or unary) whose chain stays ordinary.

    Constants alternate between 0.5 and -0.5 (``x + c`` then wanders around its input); a chain
    whose values leave the ordinary range (``exp``'s overflow, ``x * c``'s underflow) is passed over.
    """
    for op, form in forms:
        if form not in (("node",), ("node", "const")) or op_table[op].params:
            continue
        steps: list[Step] = []
        for index in range(DEEP_CHAIN_STEPS):
            if form == ("node",):
                steps.append(Step(op, (Ref(index),)))
            else:
                steps.append(Step(op, (Ref(index), Const(0.5 if index % 2 == 0 else -0.5))))
        program = Program((0.25,), tuple(steps))
        if is_ordinary(program):
            return PatternProgram("deep", None, None, program, f"a chain of {DEEP_CHAIN_STEPS} {op} steps")
    return None


def _ordinary_number(value: float) -> bool:
    return value == 0.0 or ORDINARY_LOW <= abs(value) <= ORDINARY_HIGH


def is_ordinary(program: Program) -> bool:
    """Every input, constant, parameter and node value is 0 or of moderate magnitude, and no operand sits at a kink.

    A program that is not ordinary is at an edge: a failure there may be a fragile formula
    rather than a wrong rule (the run then checks the same program at ordinary points).
    """
    try:
        values = program.evaluate()
    except (DomainError, ArithmeticError, ValueError):
        return False
    if not all(map(_ordinary_number, values)):
        return False
    for step in program.steps:
        spec = op_table[step.op]
        if not all(map(_ordinary_number, step.params)):
            return False
        operands = list(step.arguments(values))
        if not all(map(_ordinary_number, operands)):
            return False
        if any(operands[kink.input] == kink.at for kink in spec.kinks):
            return False
    return True


def at_kink(program: Program) -> bool:
    """Some step has an operand exactly at one of its op's kinks."""
    try:
        values = program.evaluate()
    except (DomainError, ArithmeticError, ValueError):
        return False
    for step in program.steps:
        operands = list(step.arguments(values))
        if any(operands[kink.input] == kink.at for kink in op_table[step.op].kinks):
            return True
    return False


def redrawn(program: Program, count: int, seed: int) -> tuple[Program, ...]:
    """``program`` with its inputs redrawn at ordinary magnitudes (in [0.25, 4], random signs), kept if ordinary."""
    generator = random.Random(seed)
    found: list[Program] = []
    for _ in range(count * 4):
        if len(found) >= count:
            break
        inputs = tuple(generator.choice((-1.0, 1.0)) * generator.uniform(0.25, 4.0) for _ in program.inputs)
        candidate = Program(inputs, program.steps)
        if is_ordinary(candidate):
            found.append(candidate)
    return tuple(found)
