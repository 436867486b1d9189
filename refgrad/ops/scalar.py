"""The scalar ops: one :class:`~refgrad.ops.spec.OpSpec` each, rules beside their op.

Conventions at non-differentiable points follow PyTorch (``relu'(0) = 0``,
``abs'(0) = 0``, ``d/dx x ** 0 = 0``); where PyTorch's derivative is infinite
or NaN, refgrad's backward raises :class:`refgrad.DomainError` instead.
"""

from __future__ import annotations

import math
import operator
import sys
from typing import Final

from refgrad.ops.spec import Domain, Kink, N, NodeLike, OpSpec, Params, Spelling, log_of

__all__ = [
    "ABS",
    "ADD",
    "DIV",
    "EXP",
    "EXP_MAX",
    "LOG",
    "MUL",
    "NEG",
    "POW",
    "RELU",
    "SCALAR_OPS",
    "SIGMOID",
    "SUB",
    "TANH",
    "VPOW",
    "primal",
]

EXP_MAX: Final = math.log(sys.float_info.max)
"""Largest ``x`` with a finite ``exp(x)`` (``log`` of the largest float)."""


def primal(x: float | NodeLike) -> float:
    """The float value of a rule operand, whether it is a float or a node."""
    if isinstance(x, float | int):
        return x
    return x.data


def _finite(value: float) -> bool:
    return math.isfinite(value)


def _everywhere(x: float) -> bool:
    return True


# add ------------------------------------------------------------------------
def _sum_finite(x: float, y: float) -> bool:
    return _finite(x + y)


def _add_partials(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N | float, ...]:
    return (1.0, 1.0)


ADD: Final = OpSpec(
    name="add",
    arity=2,
    params=(),
    forward=operator.add,
    partials=_add_partials,
    domain=Domain("all reals with x + y finite", _sum_finite),
    kinks=(),
    formula="x + y",
    partial_formulas=("1", "1"),
    symbol="+",
    torch="torch.add",
    spelling=Spelling("{0} + {1}"),
)


# sub ------------------------------------------------------------------------
def _difference_finite(x: float, y: float) -> bool:
    return _finite(x - y)


def _sub_partials(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N | float, ...]:
    return (1.0, -1.0)


SUB: Final = OpSpec(
    name="sub",
    arity=2,
    params=(),
    forward=operator.sub,
    partials=_sub_partials,
    domain=Domain("all reals with x - y finite", _difference_finite),
    kinks=(),
    formula="x - y",
    partial_formulas=("1", "-1"),
    symbol="-",
    torch="torch.sub",
    spelling=Spelling("{0} - {1}"),
)


# mul ------------------------------------------------------------------------
def _product_finite(x: float, y: float) -> bool:
    return _finite(x * y)


def _mul_partials(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N | float, ...]:
    x, y = inputs
    return (y, x)


MUL: Final = OpSpec(
    name="mul",
    arity=2,
    params=(),
    forward=operator.mul,
    partials=_mul_partials,
    domain=Domain("all reals with x * y finite", _product_finite),
    kinks=(),
    formula="x * y",
    partial_formulas=("y", "x"),
    symbol="*",
    torch="torch.mul",
    spelling=Spelling("{0} * {1}"),
)


# div ------------------------------------------------------------------------
def _divide(x: float, y: float) -> float:
    return x / y


def _quotient_finite(x: float, y: float) -> bool:
    return y != 0.0 and _finite(x / y)


def _div_partials(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N | float, ...]:
    _, y = inputs
    # d/dy (x / y) = -x / y**2, written with the output so it costs one division.
    return (1.0 / y, -output / y)


DIV: Final = OpSpec(
    name="div",
    arity=2,
    params=(),
    forward=_divide,
    partials=_div_partials,
    domain=Domain("y != 0 and x / y finite", _quotient_finite),
    kinks=(),
    formula="x / y",
    partial_formulas=("1 / y", "-x / y**2"),
    symbol="/",
    torch="torch.div",
    spelling=Spelling("{0} / {1}"),
    divides=True,
)


# neg ------------------------------------------------------------------------
def _negate(x: float) -> float:
    return -x


def _neg_partials(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N | float, ...]:
    return (-1.0,)


NEG: Final = OpSpec(
    name="neg",
    arity=1,
    params=(),
    forward=_negate,
    partials=_neg_partials,
    domain=Domain("all reals", _everywhere),
    kinks=(),
    formula="-x",
    partial_formulas=("-1",),
    symbol="neg",
    torch="torch.neg",
    spelling=Spelling("-{0}"),
)


# pow: x ** c with a fixed number c ---------------------------------------------
def _pow_in_domain(x: float, c: float) -> bool:
    if x < 0.0 and not c.is_integer():
        return False  # a negative base to a fractional power is complex
    if x == 0.0 and c < 0.0:
        return False  # a pole
    try:
        return _finite(math.pow(x, c))
    except OverflowError:
        return False


def _pow_partials(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N | float, ...]:
    (x,) = inputs
    (c,) = params
    if c == 0.0:
        return (0.0,)  # PyTorch: the derivative of x ** 0 is 0, even at x = 0
    return (c * x ** (c - 1.0),)


POW: Final = OpSpec(
    name="pow",
    arity=1,
    params=("exponent",),
    forward=math.pow,
    partials=_pow_partials,
    domain=Domain(
        "x ** c real and finite: x > 0, or x == 0 with c >= 0, or x < 0 with c an integer",
        _pow_in_domain,
    ),
    kinks=(
        Kink(
            0,
            0.0,
            "at x = 0 the derivative is c * 0 ** (c - 1): 0 for c == 0 or c > 1, 1 for c == 1, "
            "infinite for c < 1 (backward raises DomainError)",
        ),
    ),
    formula="x ** c",
    partial_formulas=("c * x ** (c - 1)",),
    symbol="**",
    torch="torch.pow",
    spelling=Spelling("{0} ** {p0}"),
    divides=True,
)


# vpow: x ** y where the exponent is a node too ------------------------------------
def _vpow_partials(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N | float, ...]:
    x, y = inputs
    base, exponent = primal(x), primal(y)
    at_zero = base == 0.0
    # On floats, a partial that does not exist is returned as inf or NaN instead of
    # raised, so that reverse mode fails only if a gradient someone asked for is not
    # finite: grad(0.0 ** y, [y]) is 0, as in torch, though d/dx is infinite at the
    # constant base; backward(), which maps every node, still raises DomainError.
    on_floats = isinstance(x, float | int)
    # PyTorch's conventions at a zero base: d/dx is 0 when y == 0 and d/dy is 0 when y >= 0.
    d_base: N | float
    if exponent == 0.0:
        d_base = 0.0
    elif on_floats and at_zero and exponent < 1.0:
        d_base = math.inf  # y * 0 ** (y - 1) with 0 < y < 1
    else:
        d_base = y * x ** (y - 1.0)
    d_exponent: N | float
    if at_zero and exponent >= 0.0:
        d_exponent = 0.0
    elif on_floats and base < 0.0:
        d_exponent = math.nan  # log of a negative base (torch: NaN)
    else:
        d_exponent = output * log_of(x)
    return (d_base, d_exponent)


def _zero_exponent(base: float, exponent: float) -> bool:
    """x ** y at y == 0: d/dx is PyTorch's constant 0 there."""
    return exponent == 0.0


VPOW: Final = OpSpec(
    name="vpow",
    arity=2,
    params=(),
    forward=math.pow,
    partials=_vpow_partials,
    domain=Domain(
        "x ** y real and finite: x > 0, or x == 0 with y >= 0, or x < 0 with y an integer",
        _pow_in_domain,
    ),
    kinks=(
        Kink(
            0,
            0.0,
            "at x = 0 (PyTorch): d/dx is 0 when y == 0, d/dy is 0 when y >= 0; "
            "log(x) makes d/dy undefined for x < 0 (backward raises DomainError)",
        ),
    ),
    formula="x ** y",
    partial_formulas=("y * x ** (y - 1)", "x ** y * log(x)"),
    symbol="**",
    torch="torch.pow",
    spelling=Spelling("{0} ** {1}"),
    node_only=(1,),
    divides=True,
    constant_partials=_zero_exponent,
)


# exp ------------------------------------------------------------------------
def _exp_finite(x: float) -> bool:
    return x <= EXP_MAX


def _exp_partials(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N | float, ...]:
    return (output,)


EXP: Final = OpSpec(
    name="exp",
    arity=1,
    params=(),
    forward=math.exp,
    partials=_exp_partials,
    domain=Domain(f"x <= {EXP_MAX!r} (exp(x) finite)", _exp_finite),
    kinks=(),
    formula="exp(x)",
    partial_formulas=("exp(x)",),
    symbol="exp",
    torch="torch.exp",
    spelling=Spelling("{0}.exp()", method="exp"),
)


# log ------------------------------------------------------------------------
def _positive(x: float) -> bool:
    return x > 0.0


def _log_partials(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N | float, ...]:
    (x,) = inputs
    return (1.0 / x,)


LOG: Final = OpSpec(
    name="log",
    arity=1,
    params=(),
    forward=math.log,
    partials=_log_partials,
    domain=Domain("x > 0", _positive),
    kinks=(),
    formula="log(x)",
    partial_formulas=("1 / x",),
    symbol="log",
    torch="torch.log",
    spelling=Spelling("{0}.log()", method="log"),
    divides=True,
)


# tanh -----------------------------------------------------------------------
def _tanh_partials(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N | float, ...]:
    return (1.0 - output * output,)


TANH: Final = OpSpec(
    name="tanh",
    arity=1,
    params=(),
    forward=math.tanh,
    partials=_tanh_partials,
    domain=Domain("all reals", _everywhere),
    kinks=(),
    formula="tanh(x)",
    partial_formulas=("1 - tanh(x)**2",),
    symbol="tanh",
    torch="torch.tanh",
    spelling=Spelling("{0}.tanh()", method="tanh"),
)


# sigmoid --------------------------------------------------------------------
def _sigmoid(x: float) -> float:
    # Two branches so that exp never overflows: sigmoid(-1000) is 0.0, not an error.
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _sigmoid_partials(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N | float, ...]:
    return (output * (1.0 - output),)


SIGMOID: Final = OpSpec(
    name="sigmoid",
    arity=1,
    params=(),
    forward=_sigmoid,
    partials=_sigmoid_partials,
    domain=Domain("all reals", _everywhere),
    kinks=(),
    formula="1 / (1 + exp(-x))",
    partial_formulas=("sigmoid(x) * (1 - sigmoid(x))",),
    symbol="sigmoid",
    torch="torch.sigmoid",
    spelling=Spelling("{0}.sigmoid()", method="sigmoid"),
)


# relu -----------------------------------------------------------------------
def _relu(x: float) -> float:
    return x if x > 0.0 else 0.0


def _relu_partials(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N | float, ...]:
    (x,) = inputs
    return (1.0 if primal(x) > 0.0 else 0.0,)


RELU: Final = OpSpec(
    name="relu",
    arity=1,
    params=(),
    forward=_relu,
    partials=_relu_partials,
    domain=Domain("all reals", _everywhere),
    kinks=(Kink(0, 0.0, "relu'(0) = 0 (PyTorch)"),),
    formula="max(x, 0)",
    partial_formulas=("1 if x > 0 else 0",),
    symbol="ReLU",
    torch="torch.relu",
    spelling=Spelling("{0}.relu()", method="relu"),
)


# abs ------------------------------------------------------------------------
def _absolute(x: float) -> float:
    return abs(x)


def _abs_partials(inputs: tuple[N, ...], output: N, params: Params) -> tuple[N | float, ...]:
    (x,) = inputs
    value = primal(x)
    return (1.0 if value > 0.0 else -1.0 if value < 0.0 else 0.0,)


ABS: Final = OpSpec(
    name="abs",
    arity=1,
    params=(),
    forward=_absolute,
    partials=_abs_partials,
    domain=Domain("all reals", _everywhere),
    kinks=(Kink(0, 0.0, "abs'(0) = 0 (PyTorch's sign(0) = 0)"),),
    formula="|x|",
    partial_formulas=("sign(x)",),
    symbol="abs",
    torch="torch.abs",
    spelling=Spelling("{0}.abs()", method="abs", builtin="abs"),
)


SCALAR_OPS: Final = (ADD, SUB, MUL, DIV, NEG, POW, VPOW, EXP, LOG, TANH, SIGMOID, RELU, ABS)
"""Every scalar op, in the order the registry lists them."""
