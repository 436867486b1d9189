"""Ops of your own next to the built-ins: checked entries, and the registry that holds both.

An op of your own is one :class:`~refgrad.ops.OpSpec`, written like the built-ins in
:mod:`refgrad.ops.scalar`. ``refgrad.apply(MY_OP, x)`` builds nodes with it anywhere;
:func:`extra_ops_argument` checks a collection of them, :func:`load_ops` reads a module's
``OPS`` (for ``python -m refgrad verify --ops-from MODULE`` and ``python -m refgrad ops
--ops-from MODULE``), and :func:`with_extras` makes the registry of the built-ins followed
by them, which the oracle draws from.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable
from types import ModuleType
from typing import cast

from refgrad.numeric import shown, type_name
from refgrad.ops.spec import OpSpec, Registry

__all__ = ["extra_ops_argument", "import_user_module", "load_ops", "with_extras"]


def extra_ops_argument(extra: object, builtin: Registry, what: str = "extra_ops") -> tuple[OpSpec, ...]:
    """``extra`` as a tuple of :class:`OpSpec` the oracle can draw next to ``builtin``'s.

    ``TypeError`` for anything but an iterable of ``OpSpec`` (a single ``OpSpec`` included: wrap it
    in a tuple); ``ValueError`` naming the op for a name that is built in or given twice, an arity
    other than 1 or 2, a partial formula count that is not the arity, or a kink on an operand the
    op does not have.
    """
    if isinstance(extra, OpSpec):
        raise TypeError(f"{what} must be a tuple of OpSpec, not one OpSpec: pass ({extra.name.upper()},)")
    if isinstance(extra, str) or not isinstance(extra, Iterable):
        raise TypeError(f"{what} must be a tuple of OpSpec, got {type_name(extra)}: {shown(extra)}")
    specs: list[OpSpec] = []
    seen: set[str] = set()
    for spec in cast("Iterable[object]", extra):  # each item is checked below
        if not isinstance(spec, OpSpec):
            raise TypeError(f"{what} must hold OpSpec entries, got {type_name(spec)}: {shown(spec)}")
        if spec.name in builtin:
            raise ValueError(f"{what}: op {spec.name!r} is built in; an op of your own needs a name of its own")
        if spec.name in seen:
            raise ValueError(f"{what}: two ops are named {spec.name!r}")
        if spec.arity not in (1, 2):
            raise ValueError(
                f"{what}: op {spec.name!r} has arity {spec.arity}; the oracle draws ops of 1 or 2 operands"
            )
        if len(spec.partial_formulas) != spec.arity:
            raise ValueError(
                f"{what}: op {spec.name!r} has {len(spec.partial_formulas)} partial formulas for arity {spec.arity}"
            )
        for kink in spec.kinks:
            if not 0 <= kink.input < spec.arity:
                raise ValueError(f"{what}: op {spec.name!r} has a kink on operand {kink.input}, which it does not have")
        seen.add(spec.name)
        specs.append(spec)
    return tuple(specs)


def import_user_module(module_name: str) -> ModuleType:
    """Import a user's module by name, from the current folder too (as ``python -m`` would); raises what it raises."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    return importlib.import_module(module_name)


def load_ops(module_name: str, builtin: Registry) -> tuple[OpSpec, ...]:
    """The ``OPS`` of module ``module_name`` (imported from the current folder too), checked.

    ``ValueError`` naming the module when it cannot be imported, has no ``OPS``, or its
    ``OPS`` is not a valid collection of ops (see :func:`extra_ops_argument`).
    """
    if not module_name:
        raise ValueError("--ops-from must name a module")
    try:
        module = import_user_module(module_name)
    except Exception as error:  # whatever importing user code raises is a usage error here
        raise ValueError(f"--ops-from: cannot import module {module_name!r}: {error}") from None
    if not hasattr(module, "OPS"):
        raise ValueError(f"--ops-from: module {module_name!r} has no OPS (a tuple of refgrad.ops.OpSpec)")
    ops: object = module.OPS
    try:
        specs = extra_ops_argument(ops, builtin, f"--ops-from {module_name}: OPS")
    except TypeError as error:
        raise ValueError(str(error)) from None
    if not specs:
        raise ValueError(f"--ops-from: {module_name}.OPS holds no ops")
    return specs


def with_extras(builtin: Registry, extra: tuple[OpSpec, ...]) -> Registry:
    """The registry of ``builtin``'s ops followed by ``extra`` (already checked)."""
    return Registry((*builtin, *extra))
