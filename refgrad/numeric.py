"""The number checks every layer shares: what counts as a real number, a finite float, a count.

refgrad takes any :class:`numbers.Real` but ``bool`` wherever it needs a number, and
refuses NaN and infinity with a ``ValueError``; these functions say so, in one way,
for the node, the optimizers, the datasets, the pictures and the oracle. They
know nothing of nodes or ops, so every other module can import them.
"""

from __future__ import annotations

import math
import numbers
import operator
import sys
from typing import Final, TypeGuard

__all__ = [
    "as_count",
    "as_finite_float",
    "is_bool_like",
    "is_real_number",
    "not_a_number",
    "shown",
    "type_name",
]

_isfinite: Final = math.isfinite


def is_real_number(x: object) -> TypeGuard[float | numbers.Real]:
    """Whether ``x`` is a real number refgrad accepts: any :class:`numbers.Real` but ``bool``."""
    if type(x) is float or type(x) is int:
        return True  # the common cases, without the slow ABC check
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def type_name(x: object) -> str:
    """The name of ``x``'s type for an error message, qualified where a short name would mislead.

    Both surfaces have a class called ``Value``, so either is spelled out
    (``refgrad.Value``, ``refgrad.micrograd.engine.Value``): never "must be a
    Value, got Value".
    """
    kind = type(x)
    if kind.__name__ == "Value" and kind.__module__ == "refgrad.value":
        return "refgrad.Value"
    if kind.__name__ == "Value":
        return f"{kind.__module__}.{kind.__qualname__}"
    return kind.__name__


def shown(x: object, limit: int = 80) -> str:
    """``repr(x)`` cut to ``limit`` characters for an error message; never raises.

    An int of more than 4300 digits has no ``repr`` (Python refuses to convert
    it) and a hostile object's ``__repr__`` may raise: neither may replace the
    error being reported.
    """
    try:
        text = repr(x)
    except Exception:  # any failure of someone else's __repr__ must not hide our error
        if isinstance(x, int):
            return f"<an int of {x.bit_length()} bits>"
        return f"<{type_name(x)} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_bool_like(x: object) -> bool:
    """Whether ``x`` is a ``bool`` or NumPy's ``bool_`` (no bool subclass, but the same mistake)."""
    kind = type(x)
    return isinstance(x, bool) or (kind.__module__ == "numpy" and kind.__name__ in ("bool", "bool_"))


def not_a_number(x: object, what: str) -> TypeError:
    """The ``TypeError`` for ``x`` given as ``what`` where a real number is needed, with a hint for bool and Decimal."""
    if is_bool_like(x):
        return TypeError(
            f"{what} must be a real number (int or float), got a bool ({x!r}); "
            "refgrad does not treat True and False as numbers: write 1.0 or 0.0"
        )
    if type(x).__name__ == "Decimal":
        return TypeError(
            f"{what} must be a real number (int or float), got Decimal: {shown(x)}; "
            "Decimal is not a numbers.Real (it does not mix with float): convert it with float()"
        )
    return TypeError(f"{what} must be a real number (int or float), got {type_name(x)}: {shown(x)}")


def as_finite_float(x: object, what: str) -> float:
    """``x`` as a finite float, or a ``TypeError``/``ValueError`` naming ``what``.

    Accepts every real number (``int``, ``float``, ``fractions.Fraction``,
    NumPy's real scalars: anything registered as :class:`numbers.Real`) except
    ``bool``, which is almost always a mistake in arithmetic. A number beyond
    the float range is a ``ValueError``, as are NaN and infinity; a tiny one
    rounds to the nearest float (possibly ``0.0``), as ``float()`` does.
    """
    if type(x) is float:
        value = x
    elif is_real_number(x):
        try:
            value = float(x)
        except OverflowError:
            raise ValueError(f"{what} is too large for a float: {shown(x)}") from None
        except Exception as error:  # a numbers.Real whose __float__ fails is still not a number we can use
            raise TypeError(f"{what}: float() of the {type_name(x)} {shown(x)} failed: {error!r}") from error
        if not _isfinite(value):
            raise ValueError(f"{what} must be finite (within the float range), got {type_name(x)}: {shown(x)}")
        return value
    else:
        raise not_a_number(x, what)
    if not _isfinite(value):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return value


def as_count(x: object, what: str, minimum: int | None = 1) -> int:
    """``x`` as an int of at least ``minimum`` (a size or a seed; ``None``: any), or an error naming ``what``.

    Accepts ``int`` and NumPy's integer scalars (anything registered as
    :class:`numbers.Integral`) but not ``bool``; a count beyond ``sys.maxsize``
    (in size) could never be the length of a Python sequence and is a ``ValueError``.
    """
    if type(x) is not int:
        if is_bool_like(x) or not isinstance(x, numbers.Integral):
            raise TypeError(f"{what} must be an int, got {type_name(x)}: {shown(x)}")
        try:
            x = operator.index(x)
        except Exception as error:  # an Integral whose __index__ fails is not a count we can use
            raise TypeError(f"{what}: operator.index() of the {type_name(x)} {shown(x)} failed: {error!r}") from error
    if minimum is not None and x < minimum:
        raise ValueError(f"{what} must be at least {minimum}, got {shown(x)}")
    if abs(x) > sys.maxsize:
        raise ValueError(f"{what} is too large: {shown(x)} is beyond sys.maxsize")
    return x
