"""Errors raised by refgrad."""

from __future__ import annotations

__all__ = ["DomainError"]


class DomainError(ValueError):
    """An operation left the set of finite real numbers.

    Raised when a forward value would be non-finite or complex (``log(-1)``,
    ``1 / 0``, ``exp(1000)``, ``(-2.0) ** 0.5``) and when a gradient would be
    non-finite (the derivative of ``x ** 0.5`` at ``0``). The message names the
    op and its operands. It subclasses :class:`ValueError`, so code that already
    handles bad values keeps working.
    """
