"""The op registry: every operation refgrad performs, one typed entry each.

``registry`` is the single source of truth. Iterating it yields every
:class:`OpSpec`; ``registry["mul"]`` looks one up by name. The node type,
reverse and forward mode, the micrograd surface, the docs' op table and the
oracle's graph generator all read these entries, so adding an op is adding an
entry here (and its torch reference in the oracle).
"""

from __future__ import annotations

from typing import Final

from refgrad.ops.scalar import (
    ABS,
    ADD,
    DIV,
    EXP,
    LOG,
    MUL,
    NEG,
    POW,
    RELU,
    SCALAR_OPS,
    SIGMOID,
    SUB,
    TANH,
    VPOW,
    primal,
)
from refgrad.ops.spec import Domain, Kink, N, NodeLike, OpSpec, Params, Partials, Registry, Spelling, log_of

__all__ = [
    "ABS",
    "ADD",
    "DIV",
    "EXP",
    "LOG",
    "MUL",
    "NEG",
    "POW",
    "RELU",
    "SIGMOID",
    "SUB",
    "TANH",
    "VPOW",
    "Domain",
    "Kink",
    "N",
    "NodeLike",
    "OpSpec",
    "Params",
    "Partials",
    "Registry",
    "Spelling",
    "log_of",
    "primal",
    "registry",
]

registry: Final = Registry(SCALAR_OPS)
"""Every op refgrad knows, in a fixed order."""
