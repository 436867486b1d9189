"""The micrograd-style surface: each registry op written with Python operators and methods.

micrograd-style engines (and refgrad's own ``Value``, and torch tensors) are
driven by each op's :class:`~refgrad.ops.Spelling` (its registry entry's
``spelling``): ``+ - * / **``, unary ``-``, numbers on either side of an
operator, and methods such as ``exp``. The same spelling writes programs as
scripts and builds them on live objects, so a printed counterexample runs
exactly what the oracle ran. An op without one (an op of your own) is built
through :func:`refgrad.apply` on refgrad's engines and reported as unsupported
on others.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from types import MappingProxyType
from typing import Any, Final

from refgrad.ops import Spelling, registry

__all__ = ["SURFACE", "builder", "spell"]


def _divide(numerator: Any, denominator: Any) -> object:  # any micrograd-style class: duck-typed on purpose
    return numerator / denominator


def _power(base: Any, exponent: Any) -> object:  # as above; unsupported forms are probed out
    return base**exponent


# The Python operators a spelling may use, by template: how each is applied to live objects.
_OPERATORS: Final[Mapping[str, Callable[..., object]]] = MappingProxyType(
    {
        "{0} + {1}": operator.add,
        "{0} - {1}": operator.sub,
        "{0} * {1}": operator.mul,
        "{0} / {1}": _divide,
        "-{0}": operator.neg,
        "{0} ** {p0}": _power,
        "{0} ** {1}": _power,
    }
)

SURFACE: Final[Mapping[str, Spelling]] = MappingProxyType(
    {spec.name: spec.spelling for spec in registry if spec.spelling is not None}
)
"""Registry op name to its micrograd-style spelling (the registry entries' ``spelling``)."""


@cache
def builder(spelling: Spelling) -> Callable[..., object]:
    """What ``spelling`` does on live objects: ``builder(spelling)(*operands, *params)``.

    A method call for a spelling with a ``method``; otherwise one of Python's operators,
    by its template (``ValueError`` naming the template for any other).
    """
    if spelling.method is not None:
        return operator.methodcaller(spelling.method)
    try:
        return _OPERATORS[spelling.template]
    except KeyError:
        known = ", ".join(repr(template) for template in _OPERATORS)
        raise ValueError(
            f"spelling {spelling.template!r} names no method and is none of the operators: {known}"
        ) from None


def spell(op: str, operands: Sequence[str], params: Sequence[str], *, abs_method: bool = True) -> str:
    """Source text applying ``op`` to the operand and parameter texts.

    ``abs_method=False`` writes an op with a builtin spelling through the builtin
    (``abs(x)``, for classes with ``__abs__`` but no ``abs`` method). An op without
    a surface spelling is written as ``apply(registry["op"], ...)`` (refgrad only).
    """
    spelling = SURFACE.get(op)
    if spelling is None:
        arguments = ", ".join(operands)
        extra = f", params=({', '.join(params)},)" if params else ""
        return f'apply(registry["{op}"], {arguments}{extra})'
    if spelling.builtin is not None and not abs_method:
        return f"{spelling.builtin}({operands[0]})"
    return spelling.template.format(*operands, **{f"p{i}": text for i, text in enumerate(params)})
