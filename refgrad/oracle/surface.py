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

__all__ = [
    "SURFACE",
    "builder",
    "own_prelude",
    "spell",
]


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
    a surface spelling is written as ``apply(registry["op"], ...)`` (refgrad only), an op of
    the caller's (:data:`~refgrad.oracle.optable.op_table`) as ``own("op", ...)`` (see :func:`own_prelude`).
    """
    if op not in registry:  # an op of the caller's (read after the run too, when the table is the registry again)
        extra = f", params=({', '.join(params)},)" if params else ""
        return f"own({op!r}, {', '.join(operands)}{extra})"
    spelling = SURFACE.get(op)
    if spelling is None:
        arguments = ", ".join(operands)
        extra = f", params=({', '.join(params)},)" if params else ""
        return f'apply(registry["{op}"], {arguments}{extra})'
    if spelling.builtin is not None and not abs_method:
        return f"{spelling.builtin}({operands[0]})"
    return spelling.template.format(*operands, **{f"p{i}": text for i, text in enumerate(params)})


def own_prelude(origin: str | None) -> str:
    """Script lines defining ``own(op, *operands, params=())`` for ops of the caller's, from module ``origin``.

    ``own`` applies the op's entry to refgrad nodes and its torch function to tensors, so the
    script's one function runs on both.
    """
    source = (
        f"from {origin} import OPS  # your ops (--ops-from {origin})"
        if origin is not None
        else "OPS = ()  # your OpSpec entries: put them here"
    )
    return (
        "import functools\n\n"
        "from refgrad import apply\n"
        f"{source}\n\n"
        "_OWN = {spec.name: spec for spec in OPS}\n\n\n"
        "def own(op, *operands, params=()):\n"
        '    """Your op: its entry on refgrad nodes, the torch function it names on tensors."""\n'
        "    spec = _OWN[op]\n"
        "    if any(isinstance(o, torch.Tensor) for o in operands):\n"
        "        if spec.torch is None:\n"
        '            raise NotImplementedError(f"{op} has no torch counterpart (torch=None)")\n'
        '        function = functools.reduce(getattr, spec.torch.split(".")[1:], torch)\n'
        "        return function(*operands, *params)\n"
        "    return apply(spec, *operands, params=params)\n"
    )
