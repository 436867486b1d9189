"""refgrad: a strictly typed, verification-focused scalar autograd engine.

>>> from refgrad import Value, grad
>>> x = Value(3.0)
>>> y = x * x + 2 * x
>>> grad(y, (x,))
(8.0,)
"""

from __future__ import annotations

from refgrad.autodiff import grad, hessian, jvp, nodes
from refgrad.collector import collector_paused
from refgrad.errors import DomainError
from refgrad.ops import registry
from refgrad.value import Gradients, Value, apply

__all__ = [
    "DomainError",
    "Gradients",
    "Value",
    "apply",
    "collector_paused",
    "grad",
    "hessian",
    "jvp",
    "nodes",
    "registry",
]

__version__ = "0.1.0"
