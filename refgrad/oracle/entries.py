"""An op entry against itself and its torch function: is its declared domain where the op is defined?

The oracle draws operands inside an op's :class:`~refgrad.ops.Domain` and expects a domain
signal outside it, so a domain that says less or more than the op's forward (and its torch
function) is a wrong fact that random programs would never show: drawn only inside it, the
op passes. :func:`domain_disagreements` evaluates the entry on a fixed grid of points
(ordinary, kinks, edges, both signs) and reports where the declaration and the op disagree.
A verification run does this for ops of your own (``--ops-from``); the tests do it for every
registry op.
"""

from __future__ import annotations

import math
from typing import Final, Literal

from refgrad.ops import OpSpec
from refgrad.oracle.findings import WRONG_DOMAIN, Finding
from refgrad.oracle.optable import op_table
from refgrad.oracle.references import uses_torch

__all__ = ["domain_disagreements", "entry_findings"]

_POINTS: Final = (0.5, -0.5, 1.5, -1.5, 2.0, -2.0, 0.0, -0.0, 1.0, -1.0, 3.0, -3.0, 10.0, -10.0, 1e-10, -1e-10)
_PARAMS: Final = (2.0, 0.5, -1.0, 3.0, 0.0)
_SHOWN: Final = 3  # points named per disagreement

_Defined = Literal["defined", "undefined", "unknown"]


def _forward(spec: OpSpec, args: tuple[float, ...], params: tuple[float, ...]) -> _Defined:
    """Whether the entry's float forward is defined at ``args``: a real result, or one too large for a float."""
    try:
        result: object = spec.forward(*args, *params)
    except OverflowError:
        return "defined"
    except Exception:  # any failure of the forward: not defined there
        return "undefined"
    if not isinstance(result, float | int) or math.isnan(result):
        return "undefined"
    return "defined"


def _torch(spec: OpSpec, args: tuple[float, ...], params: tuple[float, ...]) -> _Defined:
    """Whether torch's function is defined there: finite is, NaN is not, an infinity says nothing (pole or overflow)."""
    if spec.torch is None or not uses_torch():
        return "unknown"  # no torch function, or a run that does not use torch (which may not be installed)
    import torch  # only where it is used

    from refgrad.oracle.torch_reference import reference_for

    reference = reference_for(spec)
    if reference is None:
        return "unknown"
    operands = [torch.tensor(arg, dtype=torch.float64) for arg in args]
    try:
        with torch.no_grad():
            value = float(reference.forward(*operands, *params).item())
    except Exception:  # torch refusing the point says nothing about the domain
        return "unknown"
    if math.isnan(value):
        return "undefined"
    return "defined" if math.isfinite(value) else "unknown"


def _grid(spec: OpSpec) -> list[tuple[tuple[float, ...], tuple[float, ...]]]:
    points = [*_POINTS, *(kink.at for kink in spec.kinks)]
    params = [(value,) * len(spec.params) for value in _PARAMS] if spec.params else [()]
    if spec.arity == 1:
        return [((x,), p) for x in points for p in params]
    return [((x, y), p) for x in points for y in points for p in params]


def domain_disagreements(spec: OpSpec) -> tuple[str, ...]:
    """Where ``spec``'s declared domain and the op disagree, each as one sentence (empty if nowhere).

    Too narrow: the domain leaves out points where the forward is defined and torch's function
    (if the entry names one) computes a finite value. Too wide: the domain takes in points where
    the forward fails or gives NaN, and torch's function is NaN too (or the entry names none).
    Where the forward and torch's function disagree with each other the value checks speak.
    """
    narrow: list[str] = []
    wide: list[str] = []
    for args, params in _grid(spec):
        try:
            declared = bool(spec.domain.contains(*args, *params))
        except Exception as error:  # a domain must answer everywhere: outside it is an answer too
            point = ", ".join(f"{value!r}" for value in (*args, *params))
            return (
                f"the domain of {spec.name} ({spec.domain.description!r}) raises at ({point}) instead of "
                f"answering: {type(error).__name__}: {error}",
            )
        forward = _forward(spec, args, params)
        reference = _torch(spec, args, params)
        point = ", ".join(f"{value!r}" for value in (*args, *params))
        if not declared and forward == "defined" and reference != "undefined":
            narrow.append(point)
        elif declared and forward == "undefined" and reference != "defined":
            wide.append(point)
    found: list[str] = []
    gives = "gives" if spec.torch is None else f"and {spec.torch} give"
    for points, what in (
        (narrow, f"leaves out points where its forward {gives} a number"),
        (wide, "takes in points where its forward fails" + ("" if spec.torch is None else f" and {spec.torch} is NaN")),
    ):
        if points:
            shown = "; ".join(f"({point})" for point in points[:_SHOWN])
            more = f" and {len(points) - _SHOWN} more" if len(points) > _SHOWN else ""
            found.append(f"the domain of {spec.name} ({spec.domain.description!r}) {what}: {shown}{more}")
    return tuple(found)


def entry_findings() -> list[Finding]:
    """A wrong-domain defect for each op of the caller's (:data:`~refgrad.oracle.optable.op_table`), domain off"""
    return [
        Finding(WRONG_DOMAIN, name, None, sentence)
        for name in op_table.names
        if op_table.is_extra(name)
        for sentence in domain_disagreements(op_table[name])
    ]
