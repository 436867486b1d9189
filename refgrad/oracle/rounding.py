"""How much rounding error one correct implementation of each op may make: the error models' shared table.

Both double-precision error models read it: the torch reference's sampled lanes
(:mod:`refgrad.oracle.torch_reference`) and the exact reference's running error bound
(:mod:`refgrad.oracle.exact_reference`). It needs no torch, so a run against the exact
reference alone never imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from refgrad.ops import scalar
from refgrad.oracle.optable import op_table

__all__ = [
    "OWN_FORWARD_U",
    "OWN_PARTIAL_U",
    "OWN_ROUNDING",
    "PARTIAL_SPACINGS",
    "ROUNDING",
    "Rounding",
    "U",
    "rounding_of",
]

U: Final = 2.0**-53
"""Unit roundoff of float64: the relative error bound of one correctly rounded operation."""

PARTIAL_SPACINGS: Final = 8.0
"""Subnormal spacings a partial computed in a few operations may lose (``-3 * y ** -4`` underflowing in two)."""


@dataclass(frozen=True, slots=True)
class Rounding:
    """The rounding error one implementation of an op may make, in units of :data:`U`.

    ``forward_u`` bounds the relative error of the op's value, ``partial_u`` that of one
    backward contribution ``cotangent * partial`` including its addition into the operand's
    gradient. ``underflow_exact`` says that results below the smallest normal float are exact
    (as for addition), so no absolute underflow error is modelled. ``saved_output_u`` is the
    relative error of the op's own result as its partial reads it (``1 - y*y`` for ``tanh``
    near saturation, where the rounding of ``y*y`` is absolute, not relative to the small partial).
    """

    forward_u: float
    partial_u: float
    underflow_exact: bool
    saved_output_u: float = 0.0


# Bounds: correctly rounded + - * / are 1 U; glibc's and SLEEF's exp, log and
# pow are within 1 ulp (2 U); glibc's tanh within 2 ulp (4 U); sigmoid is
# 1 / (1 + exp(-x)), three roundings with the exp error slightly amplified.
# A contribution is cotangent times a partial of a few roundings, plus the sum.
# Division is allowed two roundings (1 ulp), not one: the textbook engine's
# ``x * y ** -1`` (micrograd's) rounds the reciprocal and then the product, a
# correct implementation that is not correctly rounded; a wrong rule is off by far more.
ROUNDING: Final[Mapping[str, Rounding]] = MappingProxyType(
    {
        scalar.ADD.name: Rounding(forward_u=1.0, partial_u=1.0, underflow_exact=True),
        scalar.SUB.name: Rounding(forward_u=1.0, partial_u=1.0, underflow_exact=True),
        scalar.MUL.name: Rounding(forward_u=1.0, partial_u=2.0, underflow_exact=False),
        scalar.DIV.name: Rounding(forward_u=2.0, partial_u=4.0, underflow_exact=False),
        scalar.NEG.name: Rounding(forward_u=0.0, partial_u=1.0, underflow_exact=True),
        scalar.POW.name: Rounding(forward_u=2.0, partial_u=6.0, underflow_exact=False),
        scalar.VPOW.name: Rounding(forward_u=2.0, partial_u=6.0, underflow_exact=False),
        scalar.EXP.name: Rounding(forward_u=2.0, partial_u=2.0, underflow_exact=False),
        scalar.LOG.name: Rounding(forward_u=2.0, partial_u=2.0, underflow_exact=True),
        scalar.TANH.name: Rounding(forward_u=4.0, partial_u=4.0, underflow_exact=False, saved_output_u=2.0),
        scalar.SIGMOID.name: Rounding(forward_u=6.0, partial_u=4.0, underflow_exact=False),
        scalar.RELU.name: Rounding(forward_u=0.0, partial_u=1.0, underflow_exact=True),
        scalar.ABS.name: Rounding(forward_u=0.0, partial_u=1.0, underflow_exact=True),
    }
)
"""Registry op name to its rounding bounds; one entry per op, checked against the registry by the tests."""

OWN_FORWARD_U: Final = 4.0
"""The rounding bound (in :data:`U`) of the value of an op of the caller's own (``--ops-from``): two ulps."""
OWN_PARTIAL_U: Final = 8.0
"""The rounding bound (in :data:`U`) of one backward contribution through an op of the caller's own."""

OWN_ROUNDING: Final = Rounding(forward_u=OWN_FORWARD_U, partial_u=OWN_PARTIAL_U, underflow_exact=False)
"""The rounding bounds of every op of the caller's own."""


def rounding_of(op: str) -> Rounding:
    """The rounding bounds of ``op``: its :data:`ROUNDING` entry, or an op of the caller's own's."""
    found = ROUNDING.get(op)
    if found is not None:
        return found
    op_table[op]  # KeyError naming the known ops for a name that is no op of this run
    return OWN_ROUNDING
