"""Which references a run checks against: torch, the exact reference (mpmath), or both.

The choice is made once per run (``verify --reference``, :func:`using_references`) and read by
every comparison through :func:`current_references`, as the run's ops are read through
:data:`~refgrad.oracle.optable.op_table`. torch is imported only when a run uses it, so a run
against the exact reference alone needs neither torch nor a machine with room for it
(``pip install 'refgrad[exact]'``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Generator
from contextvars import ContextVar
from typing import Final, Literal, cast, get_args

__all__ = [
    "REFERENCE_CHOICES",
    "ReferenceChoice",
    "current_references",
    "default_references",
    "reference_argument",
    "script_reference",
    "torch_installed",
    "uses_exact",
    "uses_torch",
    "using_references",
]

ReferenceChoice = Literal["torch", "mpmath", "both"]
# get_args reads the choices off the Literal, so they are written once; it is typed as any tuple.
REFERENCE_CHOICES: Final = cast("tuple[ReferenceChoice, ...]", get_args(ReferenceChoice))
"""Every choice of ``--reference``."""

_CHOSEN: Final[ContextVar[ReferenceChoice | None]] = ContextVar("refgrad_references", default=None)


def torch_installed() -> bool:
    """Whether torch can be imported here (without importing it; a module blocked in ``sys.modules`` is not)."""
    if "torch" in sys.modules:
        return sys.modules.get("torch") is not None  # None there blocks the import
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def default_references() -> ReferenceChoice:
    """``both`` where torch is installed, ``mpmath`` (the exact reference alone) where it is not."""
    return "both" if torch_installed() else "mpmath"


def current_references() -> ReferenceChoice:
    """The references of the run in progress (:func:`default_references` outside :func:`using_references`)."""
    chosen = _CHOSEN.get()
    return default_references() if chosen is None else chosen


def uses_torch() -> bool:
    """Whether the run in progress checks against torch."""
    return current_references() != "mpmath"


def script_reference() -> Literal["torch", "mpmath"]:
    """What a reproduce script compares the engine with: torch where the run uses it, else the exact reference."""
    return "torch" if uses_torch() else "mpmath"


def uses_exact() -> bool:
    """Whether the run in progress checks against the exact reference."""
    return current_references() != "torch"


def reference_argument(value: object) -> ReferenceChoice:
    """``value`` as a choice of references; ``ValueError`` naming the choices, or missing torch, otherwise."""
    if not isinstance(value, str):
        raise TypeError(f"references must be a str ({', '.join(REFERENCE_CHOICES)}), not {type(value).__name__}")
    if value not in REFERENCE_CHOICES:
        raise ValueError(f"references must be one of {', '.join(REFERENCE_CHOICES)}, not {value!r}")
    choice: ReferenceChoice = value
    if choice != "mpmath" and not torch_installed():
        raise ValueError(
            f"the {choice} reference needs torch, which is not installed: "
            "use --reference mpmath, or install torch (pip install 'refgrad[oracle]')"
        )
    if choice != "torch" and importlib.util.find_spec("mpmath") is None:
        raise ValueError(f"the {choice} reference needs mpmath, which is not installed: pip install 'refgrad[exact]'")
    return choice


@contextlib.contextmanager
def using_references(choice: ReferenceChoice) -> Generator[None]:
    """Run the block's comparisons against ``choice`` (checked by :func:`reference_argument`)."""
    token = _CHOSEN.set(reference_argument(choice))
    try:
        yield
    finally:
        _CHOSEN.reset(token)
