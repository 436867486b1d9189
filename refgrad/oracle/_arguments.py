"""Checks of the oracle's public arguments: ``TypeError`` or ``ValueError`` naming the argument, not a crash inside."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, cast

from refgrad.numeric import is_bool_like, shown, type_name
from refgrad.oracle.engines import Engine
from refgrad.oracle.optable import op_table
from refgrad.oracle.program import Program


def order_argument(order: object, what: str = "order") -> Literal[1, 2]:
    """``order`` as 1 or 2; ``TypeError`` for anything but an int (a bool included), ``ValueError`` otherwise."""
    if is_bool_like(order) or not isinstance(order, int):
        raise TypeError(f"{what} must be the int 1 or 2, got {type_name(order)}: {shown(order)}")
    if order not in (1, 2):
        raise ValueError(f"{what} must be 1 or 2, got {shown(order)}")
    return 2 if order == 2 else 1


def flag_argument(flag: object, what: str) -> bool:
    """``flag`` if it is a bool; ``TypeError`` naming ``what`` otherwise (a truthy 'no' is not a yes)."""
    if not isinstance(flag, bool):
        raise TypeError(f"{what} must be a bool, got {type_name(flag)}: {shown(flag)}")
    return flag


def op_names_argument(ops: object, what: str = "ops") -> tuple[str, ...]:
    """``ops`` as registry op names, in the caller's order; an error naming ``what`` and the bad name otherwise.

    A ``str`` is refused rather than taken apart letter by letter (or guessed to be one name).
    """
    if isinstance(ops, str):
        raise TypeError(f"{what} must be a list of op names, not a str: pass [{ops!r:.80}]")
    if not isinstance(ops, Iterable):
        raise TypeError(f"{what} must be a list of op names, got {type_name(ops)}: {shown(ops)}")
    names: list[str] = []
    for name in cast("Iterable[object]", ops):  # each name is checked below
        if not isinstance(name, str):
            raise TypeError(f"{what} must hold op names (str), got {type_name(name)}: {shown(name)}")
        op_table.check_name(name, f"{what}: ")
        names.append(name)
    if not names:
        raise ValueError(f"{what} must name at least one op (None: every op of the registry)")
    return tuple(names)


def program_argument(program: object, what: str = "program") -> Program:
    """``program`` if it is a :class:`Program`; ``TypeError`` naming ``what`` otherwise."""
    if not isinstance(program, Program):
        raise TypeError(f"{what} must be a refgrad.oracle.Program, got {type_name(program)}: {shown(program)}")
    return program


def engine_argument(engine: object, what: str = "engine") -> Engine:
    """``engine`` if it has what the oracle needs of one (:class:`Engine`); ``TypeError`` naming ``what`` otherwise."""
    if not isinstance(engine, Engine):
        raise TypeError(
            f"{what} must be an oracle Engine (name, strict, run, script), such as RefgradEngine() or "
            f"load_engine('MODULE:CLASS'), got {type_name(engine)}: {shown(engine)}"
        )
    return engine
