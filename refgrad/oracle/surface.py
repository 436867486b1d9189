"""The micrograd-style surface: how each registry op is written with Python operators and methods.

micrograd-style engines (and refgrad's own ``Value``, and torch tensors) are
driven through this one table: ``+ - * / **``, unary ``-``, numbers on either
side of an operator, and the methods ``exp``, ``log``, ``tanh``, ``sigmoid``,
``relu`` and ``abs``. The same table spells programs as scripts and builds
them on live objects, so a printed counterexample runs exactly what the oracle ran.
An op missing here (a future registry entry) is built through
:func:`refgrad.apply` on refgrad's engines and reported as unsupported on others.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

__all__ = ["SURFACE", "Spelling", "spell"]


@dataclass(frozen=True, slots=True)
class Spelling:
    """One op on the micrograd-style surface.

    ``template`` formats operands ``{0}``, ``{1}`` and parameters ``{p0}`` as
    source text; ``build`` does the same on live objects:
    ``build(*operands, *params)``. ``method`` names the method an engine must
    have, if the op is a method call.
    """

    template: str
    build: Callable[..., object]
    method: str | None = None


def _method(name: str) -> Spelling:
    return Spelling("{0}." + name + "()", operator.methodcaller(name), method=name)


def _divide(numerator: Any, denominator: Any) -> object:  # any micrograd-style class: duck-typed on purpose
    return numerator / denominator


def _power(base: Any, exponent: Any) -> object:  # as above; unsupported forms are probed out
    return base**exponent


SURFACE: Final[Mapping[str, Spelling]] = MappingProxyType(
    {
        "add": Spelling("{0} + {1}", operator.add),
        "sub": Spelling("{0} - {1}", operator.sub),
        "mul": Spelling("{0} * {1}", operator.mul),
        "div": Spelling("{0} / {1}", _divide),
        "neg": Spelling("-{0}", operator.neg),
        "pow": Spelling("{0} ** {p0}", _power),
        "vpow": Spelling("{0} ** {1}", _power),
        "exp": _method("exp"),
        "log": _method("log"),
        "tanh": _method("tanh"),
        "sigmoid": _method("sigmoid"),
        "relu": _method("relu"),
        "abs": _method("abs"),
    }
)
"""Registry op name to its micrograd-style spelling."""


def spell(op: str, operands: Sequence[str], params: Sequence[str], *, abs_method: bool = True) -> str:
    """Source text applying ``op`` to the operand and parameter texts.

    ``abs_method=False`` writes ``abs(x)`` (for classes with ``__abs__`` but no
    ``abs`` method). An op without a surface spelling is written as
    ``apply(registry["op"], ...)`` (refgrad only).
    """
    if op == "abs" and not abs_method:
        return f"abs({operands[0]})"
    spelling = SURFACE.get(op)
    if spelling is None:
        arguments = ", ".join(operands)
        extra = f", params=({', '.join(params)},)" if params else ""
        return f'apply(registry["{op}"], {arguments}{extra})'
    return spelling.template.format(*operands, **{f"p{i}": text for i, text in enumerate(params)})
