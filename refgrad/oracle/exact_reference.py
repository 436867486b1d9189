"""Reference 3: the exact result, to 77 significant digits with mpmath, and a rigorous first-order error bound.

Each registry op has one entry in :data:`EXACT_OPS`: its value and its local partial
derivatives written afresh in mpmath terms (not read from the registry, so a wrong partial
there cannot hide behind itself), the derivatives of those partials, and, for partials an
implementation reads off the op's own result (``exp``, ``tanh``, ``sigmoid``, ``x ** y``),
how much they move with it. :func:`exact_reference` evaluates a program on them: every node's
value and d output / d node at the program's float inputs, exactly up to mpmath's working
precision (:data:`PRECISION` bits for functions, :data:`ARITHMETIC_PRECISION` for ``+ - *
/``, where any sum of two floats is exact). Conventions at kinks and domain edges are the
registry's (PyTorch's): ``relu'(0) = 0``, ``abs'(0) = 0``, ``d/dx x ** 0 = 0``, ``d/dy 0 ** y
= 0`` for ``y >= 0``.

**The error bound.** An engine whose every op rounds within its entry in the shared table
(:data:`~refgrad.oracle.rounding.ROUNDING`) computes each node's value within the running
first-order bound::

    e(node) = sum over operands m of |d node / d m| * e(m) + rho(op) * |node|  (+ the smallest
              normal float where an op that can underflow inexactly lands below it)

and each d output / d node within::

    E(m) = sum over uses k of m of  E(k) * |p| + |a(k)| * dp + rho'(op_k) * |a(k) * p|  (+ subnormal spacings)

where ``p`` is the partial d k / d m, ``a(k)`` the exact adjoint, and ``dp`` how far the
engine's partial may be off: ``sum_j |d p / d operand_j| * e(operand_j)``, plus the op's own
rounding times ``|d p / d k|`` for a partial read off the op's result. These are bounds, not
samples: unlike the torch reference, whose tolerance multiplies the spread of 16 sampled lanes
by ``2 * 2 * sqrt(N)`` (two implementations that round, the sampling, the worst alignment of
N roundings), only the engine rounds here, so the tolerance is the bound itself times
:data:`SLACK` for the second-order terms the bound leaves out. That is what catches an error
of 2e-15 relative in one partial: the torch reference's tolerance for the same gradient is
several times larger.

Where the premise of a first-order bound fails (an operand's error moves an op's slope by a
sizeable share of itself), the node is reported as beyond first order and checks through it
are skipped, as with the torch reference. Ops of the caller's own (``--ops-from``) have no
exact counterpart: their values are their own forward's, and checks through them are skipped
with :data:`~refgrad.oracle.checks.NO_EXACT` (finite differences are the reference there).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, Final

import mpmath
from mpmath import mpf

from refgrad.ops import scalar
from refgrad.oracle._arguments import program_argument
from refgrad.oracle.optable import op_table
from refgrad.oracle.program import Const, Program, Ref, forward_slopes
from refgrad.oracle.rounding import PARTIAL_SPACINGS, U, rounding_of

__all__ = [
    "ARITHMETIC_PRECISION",
    "EXACT_OPS",
    "PRECISION",
    "SLACK",
    "ExactOp",
    "ExactResult",
    "exact_reference",
    "has_exact",
    "ulps_between",
]

PRECISION: Final = 256
"""Working precision of the exact reference's functions, in bits (77 significant digits)."""
ARITHMETIC_PRECISION: Final = 2200
"""Working precision of ``+ - * /``, in bits: the sum of any two floats (``1e308 + 5e-324``) is exact."""
SLACK: Final = 1.5
"""The tolerance is the first-order bound times this: room for the second-order terms it leaves out."""

_MAX: Final = sys.float_info.max
_TINY: Final = sys.float_info.min
_SUBNORMAL_SPACING: Final = 2.0**-1074
_FIRST_ORDER_SHARE: Final = 0.25
"""A node whose operand's error moves its slope by more than this share of it is beyond first order."""
_ZERO: Final = mpf(0)
_ONE: Final = mpf(1)

Numbers = Sequence[mpf]
Params = Sequence[float]


@dataclass(frozen=True, slots=True)
class ExactOp:
    """One op in mpmath terms.

    ``forward(operands, params)`` is the exact value, or None outside the op's domain (a pole,
    a complex result). ``partials(operands, output, params)`` is d output / d operand, one per
    operand (mpmath's ``inf`` or ``nan`` where it does not exist). ``curvature(operands, output,
    params)[i][j]`` is ``|d partial_i / d operand_j|``, ``reads_output(operands, output)[i]`` is
    ``|d partial_i / d output|`` for a partial an implementation computes from the op's result
    (0 where it does not); both as floats, for the error bound only.
    """

    forward: Callable[[Numbers, Params], mpf | None]
    partials: Callable[[Numbers, mpf, Params], tuple[mpf, ...]]
    curvature: Callable[[Numbers, mpf, Params], tuple[tuple[float, ...], ...]]
    reads_output: Callable[[Numbers, mpf], tuple[float, ...]] | None = None
    edges: tuple[int, ...] = ()
    """Operands whose zero is an edge of the domain (a pole, a log's zero, a zero base)."""
    integer_exponent: bool = False
    """A negative base takes only integer exponents (operand 1): rounding the exponent can leave the domain."""
    switches: Callable[[Numbers, Sequence[float]], bool] | None = None
    """Whether, at these operands and their error bounds, the op is within rounding of a switch between
    conventions: ``0 ** y`` is 1 at ``y = 0`` and 0 beyond, and its d/dx is 0 at ``y = 0``, 1 at ``y = 1`` and
    infinite in between. There rounding decides the value and whether a gradient is finite."""
    functions: bool = False
    """Computed with mpmath's functions, at :data:`PRECISION`: with an operand of more bits than that (an exact
    sum such as ``0.25 + 3e-201``), at the operand's precision instead (mpmath's ``log`` of such a number at 256
    bits gave ``1.2e-200`` for ``log(0.25 + 3e-201)``), the results then rounded to :data:`PRECISION`."""
    parameter_rounding: Callable[[Numbers, Params], tuple[float, ...]] | None = None
    """Per partial, the relative error (in :data:`~refgrad.oracle.rounding.U`) its textbook formula makes by
    rounding an exponent it computes: ``c * x ** (c - 1)`` rounds ``c - 1``, which ``x ** (c - 1)`` amplifies
    by ``|(c - 1) * log(x)|`` (3.9e-14 relative at ``x = 1.8e308, c = 1/3``, where torch agrees with it)."""


def _f(value: mpf) -> float:
    """A magnitude as a float (inf where it overflows, NaN stays NaN)."""
    return abs(float(value))


def _arithmetic(compute: Callable[[mpf, mpf], mpf]) -> Callable[[Numbers, Params], mpf | None]:
    def forward(operands: Numbers, params: Params) -> mpf | None:
        with mpmath.workprec(ARITHMETIC_PRECISION):
            return +compute(operands[0], operands[1])

    return forward


def _div(operands: Numbers, params: Params) -> mpf | None:
    x, y = operands
    if y == 0:
        return None
    with mpmath.workprec(ARITHMETIC_PRECISION):
        return x / y


def _power(x: mpf, y: mpf) -> mpf | None:
    """``x ** y`` where it is real: None at a pole (0 to a negative power) or a negative base to a fractional power."""
    if x < 0 and not mpmath.isint(y):
        return None
    if x == 0:
        return None if y < 0 else (_ONE if y == 0 else _ZERO)
    if mpmath.isint(y) and abs(y) <= 64:
        with mpmath.workprec(ARITHMETIC_PRECISION):
            return x ** int(y)  # exact at this precision for small integer powers of a float
    return mpmath.power(x, y)


def _pow_partials(x: mpf, y: mpf, output: mpf) -> tuple[mpf, mpf]:
    """(d/dx, d/dy) of ``x ** y`` with PyTorch's conventions at a zero base and a zero exponent."""
    if y == 0:
        d_base = _ZERO
    elif x == 0:
        d_base = mpmath.inf if y < 1 else (_ONE if y == 1 else _ZERO)
    else:
        d_base = y * mpmath.power(x, y - 1)
    if x == 0 and y >= 0:
        d_exponent = _ZERO
    elif x < 0:
        d_exponent = mpmath.nan  # log of a negative base
    else:
        d_exponent = output * mpmath.log(x)
    return d_base, d_exponent


def _pow_curvature(x: mpf, y: mpf) -> tuple[tuple[float, float], tuple[float, float]]:
    """|second partials| of ``x ** y`` (from |x| for the log terms: magnitudes for the bound only)."""
    if x == 0:
        xx = 0.0 if y >= 2 or y in {0, 1} else math.inf
        return (xx, 0.0), (0.0, 0.0)
    size = abs(x)
    log = mpmath.log(size)
    xx = _f(y * (y - 1) * mpmath.power(size, y - 2))
    xy = _f(mpmath.power(size, y - 1) * (1 + y * log))
    yy = _f(mpmath.power(size, y) * log * log)
    return (xx, xy), (xy, yy)


def _exponent_rounding(x: mpf, y: mpf) -> float:
    """``|(y - 1) * log|x||``: how much ``x ** (y - 1)`` amplifies the rounding of ``y - 1`` (in units of it)."""
    return 0.0 if x == 0 else _f((y - 1) * mpmath.log(abs(x)))


def _zero_base_switch(operands: Numbers, errors: Sequence[float]) -> bool:
    """``0 ** y`` with ``y`` within rounding of 0 or 1, where the conventions switch (:attr:`ExactOp.switches`)."""
    x, y = operands
    return x == 0 and errors[1] > 0.0 and any(abs(float(y - at)) <= errors[1] for at in (0, 1))


def _sigmoid(x: mpf) -> mpf:
    return 1 / (1 + mpmath.exp(-x))


EXACT_OPS: Final[Mapping[str, ExactOp]] = MappingProxyType(
    {
        scalar.ADD.name: ExactOp(
            _arithmetic(lambda x, y: x + y),
            lambda o, out, p: (_ONE, _ONE),
            lambda o, out, p: ((0.0, 0.0), (0.0, 0.0)),
        ),
        scalar.SUB.name: ExactOp(
            _arithmetic(lambda x, y: x - y),
            lambda o, out, p: (_ONE, -_ONE),
            lambda o, out, p: ((0.0, 0.0), (0.0, 0.0)),
        ),
        scalar.MUL.name: ExactOp(
            _arithmetic(lambda x, y: x * y),
            lambda o, out, p: (o[1], o[0]),
            lambda o, out, p: ((0.0, 1.0), (1.0, 0.0)),
        ),
        scalar.DIV.name: ExactOp(
            _div,
            lambda o, out, p: (1 / o[1], -o[0] / (o[1] * o[1])),
            lambda o, out, p: (
                (0.0, _f(1 / (o[1] * o[1]))),
                (_f(1 / (o[1] * o[1])), _f(2 * o[0] / (o[1] * o[1] * o[1]))),
            ),
            edges=(1,),
        ),
        scalar.NEG.name: ExactOp(lambda o, p: -o[0], lambda o, out, p: (-_ONE,), lambda o, out, p: ((0.0,),)),
        scalar.POW.name: ExactOp(
            lambda o, p: _power(o[0], mpf(p[0])),
            lambda o, out, p: (_pow_partials(o[0], mpf(p[0]), out)[0],),
            lambda o, out, p: ((_pow_curvature(o[0], mpf(p[0]))[0][0],),),
            edges=(0,),
            parameter_rounding=lambda o, p: (_exponent_rounding(o[0], mpf(p[0])),),
            functions=True,
        ),
        scalar.VPOW.name: ExactOp(
            lambda o, p: _power(o[0], o[1]),
            lambda o, out, p: _pow_partials(o[0], o[1], out),
            lambda o, out, p: _pow_curvature(o[0], o[1]),
            # d/dy is read as output * log(x) by engines that save the result.
            lambda o, out: (0.0, _f(mpmath.log(abs(o[0]))) if o[0] != 0 else 0.0),
            edges=(0,),
            integer_exponent=True,
            switches=_zero_base_switch,
            parameter_rounding=lambda o, p: (_exponent_rounding(o[0], o[1]), 0.0),
            functions=True,
        ),
        scalar.EXP.name: ExactOp(
            lambda o, p: mpmath.exp(o[0]),
            lambda o, out, p: (out,),
            lambda o, out, p: ((_f(out),),),
            lambda o, out: (1.0,),
            functions=True,
        ),
        scalar.LOG.name: ExactOp(
            lambda o, p: mpmath.log(o[0]) if o[0] > 0 else None,
            lambda o, out, p: (1 / o[0],),
            lambda o, out, p: ((_f(1 / (o[0] * o[0])),),),
            edges=(0,),
            functions=True,
        ),
        scalar.TANH.name: ExactOp(
            lambda o, p: mpmath.tanh(o[0]),
            lambda o, out, p: (mpmath.sech(o[0]) ** 2,),
            lambda o, out, p: ((_f(2 * out * mpmath.sech(o[0]) ** 2),),),
            lambda o, out: (_f(2 * out),),  # 1 - y * y
            functions=True,
        ),
        scalar.SIGMOID.name: ExactOp(
            lambda o, p: _sigmoid(o[0]),
            # s * (1 - s), with 1 - s computed as sigmoid(-x): no cancellation at large x
            lambda o, out, p: (out * _sigmoid(-o[0]),),
            lambda o, out, p: ((_f(out * _sigmoid(-o[0]) * (1 - 2 * out)),),),
            lambda o, out: (_f(1 - 2 * out),),  # y * (1 - y)
            functions=True,
        ),
        scalar.RELU.name: ExactOp(
            lambda o, p: o[0] if o[0] > 0 else _ZERO,
            lambda o, out, p: (_ONE if o[0] > 0 else _ZERO,),  # relu'(0) = 0
            lambda o, out, p: ((0.0,),),
        ),
        scalar.ABS.name: ExactOp(
            lambda o, p: abs(o[0]),
            lambda o, out, p: (mpf(mpmath.sign(o[0])),),  # abs'(0) = 0
            lambda o, out, p: ((0.0,),),
        ),
    }
)
"""Registry op name to its exact counterpart; one entry per op, checked against the registry by the tests."""


def has_exact(op: str) -> bool:
    """Whether the exact reference computes ``op`` itself (every registry op; no op of the caller's own)."""
    return op in EXACT_OPS and not op_table.is_extra(op)


def ulps_between(got: float, exact: mpf) -> float:
    """``|got - exact|`` in units in the last place of the float nearest ``exact`` (infinite for a non-finite one)."""
    nearest = float(exact)
    if not math.isfinite(got) or not math.isfinite(nearest):
        return 0.0 if got == nearest else math.inf
    with mpmath.workprec(ARITHMETIC_PRECISION):
        return float(abs(mpf(got) - exact) / math.ulp(nearest))


@dataclass(frozen=True, slots=True)
class ExactResult:
    """What the exact reference says about one program, with the error bound's tolerances.

    The same fields as :class:`~refgrad.oracle.torch_reference.TorchResult` where they mean the
    same, so that every check can be made against either: ``values[i]`` and ``gradients[i]`` are
    the floats nearest the exact value of node ``i`` and d output / d node ``i``;
    ``exact_values`` and ``exact_gradients`` the mpmath numbers themselves, which ulps are
    measured against.
    """

    name: ClassVar[str] = "mpmath"
    values: tuple[float, ...]
    gradients: tuple[float, ...]
    value_tolerances: tuple[float, ...]
    gradient_tolerances: tuple[float, ...]
    finite: bool
    """Every value and every gradient (nodes and constants) is finite (as a float)."""
    nodes_finite: bool
    """Every node's value and gradient is finite (constants' gradients aside)."""
    finiteness_ambiguous: bool
    """Some node is within its error bound of an overflow or a domain edge: rounding decides."""
    first_non_finite_value: int | None
    kink_ambiguous: tuple[int, ...]
    """Nodes whose op has a kink its operand is within its error bound of."""
    beyond_first_order: tuple[int, ...]
    exact_values: tuple[mpf, ...]
    exact_gradients: tuple[mpf, ...]
    partial_overflow: int | None
    """The first node with a local partial that is not finite as a float (``1 / x`` at ``x = 5e-324``)."""
    partials: tuple[tuple[mpf, ...], ...] = ()
    """Each step's exact local partials, one per operand."""

    def directional(self, program: Program, tangents: Sequence[float]) -> tuple[float, float]:
        """``sum_i t_i * d output / d input i``, exactly, and how far a correct engine's forward mode may be from it.

        Forward mode makes the same first-order roundings as reverse mode, edge by edge (see
        :mod:`refgrad.oracle.torch_reference`), so each input's gradient bound, weighted by its
        tangent, bounds it, plus the rounding of the products and of their sum.
        """
        count = len(tangents)
        # Below the normal range a tangent's product rounds absolutely, by up to a subnormal spacing
        # (a sum landing there is exact), where reverse mode's adjoint at the same node can be large:
        # ``log(log(x) ** -4)`` at ``x = 1.8e308`` carries a tangent of 1e-322 into a partial of 3e11.
        # Each such node adds spacings amplified by d output / d node.
        underflowing = 0.0
        with mpmath.workprec(ARITHMETIC_PRECISION):
            exact = mpmath.fsum(mpf(t) * g for t, g in zip(tangents, self.exact_gradients[:count], strict=True))
            # Forward mode carries a tangent per node: where one is within reach of overflowing, rounding
            # decides whether the engine's is finite (torch's jvp overflows there too).
            carried = [mpf(t) for t in tangents]
            for index, (step, partials) in enumerate(zip(program.steps, self.partials, strict=False)):
                terms = [
                    p * carried[o.node] for o, p in zip(step.operands, partials, strict=True) if isinstance(o, Ref)
                ]
                if any(0 < abs(term) < 2 * _TINY for term in terms):
                    underflowing += _f(self.exact_gradients[count + index])
                carried.append(mpmath.fsum(terms))
        if any(not abs(float(t)) <= _MAX / 4.0 for t in carried):
            return float(exact), math.inf
        combination = math.fsum(abs(t * g) for t, g in zip(tangents, self.gradients[:count], strict=True))
        bound = math.fsum(abs(t) * e for t, e in zip(tangents, self.gradient_tolerances[:count], strict=True))
        spacings = 2.0 * count + SLACK * PARTIAL_SPACINGS * underflowing
        spread = bound + SLACK * 2.0 * U * combination + spacings * _SUBNORMAL_SPACING
        return float(exact), spread + _rounded_away(exact)

    def first_infinite_partial(self, program: Program) -> int | None:
        """The first node with a local partial that is not finite as a float (see :attr:`partial_overflow`)."""
        return self.partial_overflow

    def ulps_of(self, node: int, got: float, *, value: bool) -> float | None:
        """How many ulps of the exact result ``got`` is from node ``node``'s exact value or gradient."""
        return ulps_between(got, self.exact_values[node] if value else self.exact_gradients[node])


def _rounded_away(exact: mpf) -> float:
    """How far the float nearest ``exact`` is from it: engines are compared with that float, not the exact number.

    A correct engine's result is within the bound of the exact number; its distance to the rounded one can be
    up to half an ulp more (1 ulp apart where the exact number is near the midpoint of two floats).
    """
    if not mpmath.isfinite(exact):
        return 0.0
    with mpmath.workprec(ARITHMETIC_PRECISION):
        return _f(mpf(float(exact)) - exact)


def _times(first: float, second: float) -> float:
    """A bound's product, rounded up: never 0 unless a factor is (0 * inf is 0: that term is absent).

    The bounds are floats, and a product of two small ones would underflow to 0 and vanish, though
    a large partial further on can scale it back up.
    """
    if first == 0.0 or second == 0.0:
        return 0.0
    return max(first * second, _SUBNORMAL_SPACING)


def _working_bits(exact_op: ExactOp | None, operands: Numbers) -> int:
    """The precision to compute a step at: :data:`PRECISION`, or more for a function of an operand with more bits."""
    if exact_op is None or not exact_op.functions:
        return PRECISION
    return max(PRECISION, *(operand.bc + 64 for operand in operands))


def _operands(step_operands: Sequence[Ref | Const], values: Sequence[mpf]) -> list[mpf]:
    return [values[o.node] if isinstance(o, Ref) else mpf(o.value) for o in step_operands]


def _own_forward(op: str, operands: Numbers, params: Params) -> mpf | None:
    """An op of the caller's own at the floats nearest its operands: its own forward (no exact counterpart)."""
    spec = op_table[op]
    args = [float(o) for o in operands]
    if not spec.domain.contains(*args, *params):
        return None
    try:
        result = float(spec.forward(*args, *params))
    except (ArithmeticError, ValueError):
        return None
    return mpf(result) if math.isfinite(result) else None


def _own_partials(op: str, operands: Numbers, params: Params) -> tuple[mpf, ...]:
    """An op of the caller's own: the slopes of its own forward (never the partials under test)."""
    slopes = forward_slopes(op_table[op], [float(o) for o in operands], params)
    if slopes is None:
        return tuple(mpmath.nan for _ in operands)
    return tuple(mpf(s) for s in slopes)


def _partial_overflows(program: Program, index: int, values: Sequence[mpf], partials: Sequence[mpf]) -> bool:
    """A local partial at this node is not finite as a float: exactly, or as the op's textbook formula computes it.

    ``y * x ** (y - 1)`` at ``x = y = 5e-324`` is about 1, but ``x ** (y - 1)`` overflows on the way: an
    engine built on local partials (refgrad is) meets that where the gradient is finite, as with
    ``log``'s ``1 / x`` at ``5e-324`` (see :data:`~refgrad.oracle.checks.PARTIAL_OVERFLOW`). The float
    formula read here is the registry's, for this question only, never for a derivative's value.
    """
    if any(not math.isfinite(float(p)) for p in partials):
        return True
    floats = [float(v) for v in values]
    found = program.reference_partials(floats, index)
    return found is None or not all(math.isfinite(p) for p in found)


def exact_reference(program: Program) -> ExactResult:
    """Every node's exact value and d output / d node, with the tolerances of the first-order error bound."""
    program = program_argument(program)
    with mpmath.workprec(PRECISION):
        return _evaluate(program)


def _evaluate(program: Program) -> ExactResult:  # noqa: PLR0915  (one pass forward, one back)
    count = program.node_count
    inputs = len(program.inputs)
    values: list[mpf] = [mpf(x) for x in program.inputs]
    errors: list[float] = [0.0] * inputs
    local: list[tuple[mpf, ...]] = []
    curvatures: list[tuple[tuple[float, ...], ...]] = []
    parameter_roundings: list[tuple[float, ...]] = []
    output_reads: list[tuple[float, ...]] = []
    first_bad: int | None = None
    ambiguous = False
    kinks: list[int] = []
    beyond: list[int] = []
    partial_overflow: int | None = None
    for node, step in program.numbered_steps():
        index = node - inputs
        operands = _operands(step.operands, values)
        operand_errors = [errors[o.node] if isinstance(o, Ref) else 0.0 for o in step.operands]
        exact_op = EXACT_OPS.get(step.op) if has_exact(step.op) else None
        bits = _working_bits(exact_op, operands)
        with mpmath.workprec(bits):
            result = (
                exact_op.forward(operands, step.params)
                if exact_op is not None
                else _own_forward(step.op, operands, step.params)
            )
        if result is not None and bits > PRECISION:
            result = +result  # back to the reference's precision
        # A domain edge within rounding: a pole or a log's zero, a negative base's integer exponent.
        if exact_op is not None:
            for edge in exact_op.edges:
                if operand_errors[edge] > 0.0 and abs(float(operands[edge])) <= operand_errors[edge]:
                    ambiguous = True
            if exact_op.integer_exponent and operands[0] < 0 and operand_errors[1] > 0.0:
                ambiguous = True
            if exact_op.switches is not None and exact_op.switches(operands, operand_errors):
                ambiguous = True
                kinks.append(node)
                beyond.append(node)  # 0 ** y jumps from 0 to 1 at y = 0: no first-order bound
        if result is None or not math.isfinite(float(result)):
            first_bad = node
            values.append(mpmath.nan if result is None else result)
            break
        values.append(result)
        rounding = rounding_of(step.op)
        with mpmath.workprec(bits):
            partials = (
                exact_op.partials(operands, result, step.params)
                if exact_op is not None
                else _own_partials(step.op, operands, step.params)
            )
        if bits > PRECISION:
            partials = tuple(+partial for partial in partials)
        curvature = (
            exact_op.curvature(operands, result, step.params)
            if exact_op is not None
            else tuple(tuple(0.0 for _ in operands) for _ in operands)
        )
        reads = (
            exact_op.reads_output(operands, result)
            if exact_op is not None and exact_op.reads_output is not None
            else tuple(0.0 for _ in operands)
        )
        local.append(partials)
        parameter_roundings.append(
            exact_op.parameter_rounding(operands, step.params)
            if exact_op is not None and exact_op.parameter_rounding is not None
            else tuple(0.0 for _ in operands)
        )
        curvatures.append(curvature)
        output_reads.append(reads)
        size = _f(result)
        error = rounding.forward_u * U * size
        if size < _TINY and not rounding.underflow_exact and all(o != 0 for o in operands):
            error += _TINY
        for position, (partial, operand_error) in enumerate(zip(partials, operand_errors, strict=True)):
            slope = _f(partial)
            error += _times(slope, operand_error)
            # First order holds while the operand's error moves the slope by a small share of it.
            moves = _times(curvature[position][position], operand_error)
            if moves > _FIRST_ORDER_SHARE * slope and node not in beyond:  # (a switch may have added it)
                beyond.append(node)
        errors.append(error)
        if size + error > _MAX:
            ambiguous = True
        if partial_overflow is None and _partial_overflows(program, index, values, partials):
            partial_overflow = node
        for kink in op_table[step.op].kinks:
            spread = operand_errors[kink.input]
            if spread > 0.0 and abs(float(operands[kink.input] - kink.at)) <= spread:
                kinks.append(node)

    nan = math.nan
    if first_bad is not None:
        padded = [*(float(v) for v in values), *([nan] * (count - len(values)))]
        return ExactResult(
            values=tuple(padded),
            gradients=(nan,) * count,
            value_tolerances=(nan,) * count,
            gradient_tolerances=(nan,) * count,
            finite=False,
            nodes_finite=False,
            finiteness_ambiguous=ambiguous,
            first_non_finite_value=first_bad,
            kink_ambiguous=tuple(kinks),
            beyond_first_order=tuple(beyond),
            exact_values=tuple(values) + (mpmath.nan,) * (count - len(values)),
            exact_gradients=(mpmath.nan,) * count,
            partial_overflow=partial_overflow,
        )

    live = program.live()
    adjoints: list[mpf] = [_ZERO] * count
    adjoints[-1] = _ONE
    bounds = [0.0] * count
    constants_finite = True
    for index in range(len(program.steps) - 1, -1, -1):
        step = program.steps[index]
        node = inputs + index
        adjoint = adjoints[node]
        # As in torch, a zero cotangent (a relu switched off) times an infinite partial is NaN, which the
        # domain checks must see; a node the output does not use sends nothing back.
        if not live[node] or (adjoint == 0 and bounds[node] == 0.0 and all(mpmath.isfinite(p) for p in local[index])):
            continue
        rounding = rounding_of(step.op)
        size = _f(adjoint)
        operand_errors = [errors[o.node] if isinstance(o, Ref) else 0.0 for o in step.operands]
        extra = parameter_roundings[index]
        for position, (operand, partial) in enumerate(zip(step.operands, local[index], strict=True)):
            with mpmath.workprec(ARITHMETIC_PRECISION):
                contribution = adjoint * partial
            if not isinstance(operand, Ref):
                constants_finite = constants_finite and math.isfinite(float(contribution))
                continue
            with mpmath.workprec(ARITHMETIC_PRECISION):
                adjoints[operand.node] = adjoints[operand.node] + contribution
            slope = _f(partial)
            moved = sum(
                _times(curvature, error)
                for curvature, error in zip(curvatures[index][position], operand_errors, strict=True)
            )
            moved += _times(
                output_reads[index][position], (rounding.forward_u + rounding.saved_output_u) * U * _f(values[node])
            )
            carried = (
                _times(slope, bounds[node])
                + _times(size, moved)
                + (rounding.partial_u + extra[position]) * U * _times(size, slope)
                # Below the normal range a product rounds absolutely; only a partial of 0 or 1 leaves it exact.
                + (0.0 if partial == 0 or abs(partial) == 1 else _SUBNORMAL_SPACING * (PARTIAL_SPACINGS * size + 1.0))
            )
            bounds[operand.node] += carried

    gradients = tuple(float(a) for a in adjoints)
    finite_gradients = all(math.isfinite(g) for g in gradients)
    for gradient, bound in zip(gradients, bounds, strict=True):
        if math.isfinite(gradient) and abs(gradient) + bound > _MAX:
            ambiguous = True
    if not (finite_gradients and constants_finite) and any(
        live[node] and errors[node] > 0.0 and abs(float(values[node])) <= errors[node] for node in range(len(values))
    ):
        # A gradient (a node's or a constant's) that overflows while a node it may depend on is all rounding
        # error (log(2 ** -8.5e-33) is -5.9e-33 exactly and 0 in floats, so its 1 / x0 ** 2 at x0 = 8e-256 is
        # 9e477 exactly and 0 in floats): whether a float engine's gradient is finite is rounding's to decide.
        # (The bound cannot say it: a bound on an overflowing gradient is itself infinite.)
        ambiguous = True
    return ExactResult(
        values=tuple(float(v) for v in values),
        gradients=gradients,
        value_tolerances=tuple(SLACK * e + _rounded_away(v) for e, v in zip(errors, values, strict=True)),
        gradient_tolerances=tuple(SLACK * b + _rounded_away(a) for b, a in zip(bounds, adjoints, strict=True)),
        finite=finite_gradients and constants_finite,
        nodes_finite=finite_gradients,
        finiteness_ambiguous=ambiguous,
        first_non_finite_value=None,
        kink_ambiguous=tuple(kinks),
        beyond_first_order=tuple(beyond),
        exact_values=tuple(values),
        exact_gradients=tuple(adjoints),
        partial_overflow=partial_overflow,
        partials=tuple(local),
    )
