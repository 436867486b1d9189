"""The ops a verification run draws from: the registry's, and the caller's own.

Every part of the oracle reads op facts through :data:`op_table`, which looks like
:data:`refgrad.ops.registry` (``op_table["mul"]``, ``op_table.names``, iteration, ``in``,
``check_name``). Outside :func:`using_ops` it is the registry; inside, the registry's
ops followed by the caller's (``verify(..., extra_ops=...)``,
``python -m refgrad verify --ops-from MODULE``). The choice is a context variable, so a
run in one thread does not change another's.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Final

from refgrad.ops import OpSpec, Registry, registry
from refgrad.ops.extra import extra_ops_argument, with_extras

__all__ = ["OpTable", "op_table", "using_ops"]


@dataclass(frozen=True, slots=True)
class _Current:
    ops: Registry
    extra: frozenset[str]
    origin: str | None


_BUILTIN: Final = _Current(registry, frozenset(), None)
_CURRENT: Final[ContextVar[_Current]] = ContextVar("refgrad_op_table", default=_BUILTIN)


class OpTable:
    """The current run's ops, read like :data:`refgrad.ops.registry` (see the module's docstring)."""

    __slots__ = ()

    def __iter__(self) -> Iterator[OpSpec]:
        return iter(_CURRENT.get().ops)

    def __len__(self) -> int:
        return len(_CURRENT.get().ops)

    def __contains__(self, item: object) -> bool:
        return item in _CURRENT.get().ops

    def __getitem__(self, name: str) -> OpSpec:
        """The op called ``name``; ``KeyError`` listing the known names otherwise."""
        return _CURRENT.get().ops[name]

    def check_name(self, name: object, where: str = "") -> None:
        """``ValueError`` (prefixed by ``where``) unless ``name`` is one of the run's ops."""
        _CURRENT.get().ops.check_name(name, where)

    @property
    def names(self) -> tuple[str, ...]:
        """Every op's name: the registry's, then the caller's."""
        return _CURRENT.get().ops.names

    @property
    def extra(self) -> frozenset[str]:
        """The names of the caller's own ops (empty outside :func:`using_ops`)."""
        return _CURRENT.get().extra

    @property
    def origin(self) -> str | None:
        """The module the caller's ops came from (``--ops-from``), if known."""
        return _CURRENT.get().origin

    @property
    def key(self) -> tuple[OpSpec, ...]:
        """The caller's own ops as a cache key: what is cached per op name is cached per key too.

        Empty outside :func:`using_ops`; two runs with the same entries share it. (Entries compare
        by identity, so a different ``sin`` is another key.)
        """
        current = _CURRENT.get()
        return tuple(spec for spec in current.ops if spec.name in current.extra)

    def is_extra(self, name: str) -> bool:
        """Whether ``name`` is one of the caller's own ops rather than a registry op."""
        return name in _CURRENT.get().extra

    def __repr__(self) -> str:
        return f"OpTable({', '.join(self.names)})"


op_table: Final = OpTable()
"""The current run's ops (the registry's outside :func:`using_ops`)."""


@contextmanager
def using_ops(extra: Iterable[OpSpec], *, origin: str | None = None) -> Generator[tuple[OpSpec, ...]]:
    """Within the block, :data:`op_table` holds the registry's ops followed by ``extra`` (checked first).

    ``origin`` names the module they came from, for the scripts a report prints. Yields the
    checked ops. Nesting replaces the outer block's ops for the inner block.
    """
    checked = extra_ops_argument(extra, registry)
    token = _CURRENT.set(_Current(with_extras(registry, checked), frozenset(s.name for s in checked), origin))
    try:
        yield checked
    finally:
        _CURRENT.reset(token)
